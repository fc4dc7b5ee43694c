package query

import (
	"context"
	"io"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// KubeLogs is LiveLogs on the build clusters, through shared/kube: the job's pods in the
// namespace stored with the job, on the cluster the job records.
type KubeLogs struct {
	Clusters *kube.Clusters
}

var _ LiveLogs = KubeLogs{}

// StepState implements LiveLogs: the newest pod in which the step's container started
// (kube.StepContainer); waiting while the job has pods but none has started it. step is the
// step's log key (jobs.LogStepKey): its attempt picks the pods, j shows that attempt.
func (k KubeLogs) StepState(ctx context.Context, j *jobs.Job, step string) (StepState, error) {
	c, err := k.Clusters.Get(j.Cluster)
	if err != nil {
		return StepState{}, err
	}
	step, n := jobs.SplitLogStepKey(step)
	pods, err := c.Pods(ctx, j.Namespace, names.AttemptKey(j.ID, n))
	if err != nil {
		return StepState{}, err
	}
	pod, cs := kube.StepContainer(pods, step)
	switch {
	case pod == nil && len(pods) == 0:
		return StepState{Phase: NoPod}, nil
	case pod == nil:
		return StepState{Phase: ContainerWaiting}, nil
	case cs.State.Running != nil:
		return StepState{Pod: pod.Name, Phase: ContainerRunning}, nil
	default:
		return StepState{Pod: pod.Name, Phase: ContainerTerminated}, nil
	}
}

// OpenLog implements LiveLogs.
func (k KubeLogs) OpenLog(ctx context.Context, j *jobs.Job, pod, step string, o kube.LogOptions) (io.ReadCloser, error) {
	c, err := k.Clusters.Get(j.Cluster)
	if err != nil {
		return nil, err
	}
	container, _ := jobs.SplitLogStepKey(step)
	return c.StreamLogs(ctx, j.Namespace, pod, container, o)
}
