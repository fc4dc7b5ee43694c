package query

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
)

// KubeLogs is LiveLogs on the build clusters: the job's pod is found by its job-id label on the
// cluster the job records.
type KubeLogs struct {
	Clusters *kube.Clusters
}

var _ LiveLogs = KubeLogs{}

// StepState implements LiveLogs.
func (k KubeLogs) StepState(ctx context.Context, j *jobs.Job, step string) (StepState, error) {
	c, err := k.Clusters.Get(j.Cluster)
	if err != nil {
		return StepState{}, err
	}
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelJobID + "=" + j.ID})
	if err != nil {
		return StepState{}, fmt.Errorf("list pods of job %s on %s: %w", j.ID, c.Name, err)
	}
	return stepStateOf(pods.Items, step), nil
}

// stepStateOf finds the step's container among the job's pods (the newest pod: with backoffLimit
// 0 there is one, but a Job may have replaced a pod).
func stepStateOf(pods []corev1.Pod, step string) StepState {
	var pod *corev1.Pod
	for i := range pods {
		if pod == nil || pod.CreationTimestamp.Before(&pods[i].CreationTimestamp) {
			pod = &pods[i]
		}
	}
	if pod == nil {
		return StepState{Phase: NoPod}
	}
	s := StepState{Pod: pod.Name, Phase: ContainerWaiting}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if cs.Name != step {
			continue
		}
		switch {
		case cs.State.Running != nil:
			s.Phase = ContainerRunning
		case cs.State.Terminated != nil:
			s.Phase = ContainerTerminated
		}
	}
	return s
}

// OpenLog implements LiveLogs.
func (k KubeLogs) OpenLog(ctx context.Context, j *jobs.Job, pod, step string, follow bool) (io.ReadCloser, error) {
	c, err := k.Clusters.Get(j.Cluster)
	if err != nil {
		return nil, err
	}
	return c.StreamLogs(ctx, pod, step, follow)
}
