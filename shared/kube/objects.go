package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

func listOpts(selector string) metav1.ListOptions { return metav1.ListOptions{LabelSelector: selector} }

func finishedCondition(c batchv1.JobCondition) bool {
	return (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue
}

// resourceOf maps the kinds templates may render to their resources.
var resourceOf = map[schema.GroupVersionKind]schema.GroupVersionResource{
	{Version: "v1", Kind: "ConfigMap"}:           {Version: "v1", Resource: "configmaps"},
	{Version: "v1", Kind: "Secret"}:              {Version: "v1", Resource: "secrets"},
	{Group: "batch", Version: "v1", Kind: "Job"}: {Group: "batch", Version: "v1", Resource: "jobs"},
}

// Create creates objs in order on the cluster. An object that already exists with our job-id
// label counts as created, so a retried submit is harmless. On failure it deletes what it
// created (and anything else carrying the job id) and returns the first error.
func (c *Cluster) Create(ctx context.Context, jobID string, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		gvr, ok := resourceOf[o.GroupVersionKind()]
		if !ok {
			return fmt.Errorf("create %s %s: kind not allowed", o.GetKind(), o.GetName())
		}
		_, err := c.Dynamic.Resource(gvr).Namespace(o.GetNamespace()).Create(ctx, o, metav1.CreateOptions{FieldManager: names.ManagedBy})
		if apierrors.IsAlreadyExists(err) {
			cur, gerr := c.Dynamic.Resource(gvr).Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
			if gerr == nil && cur.GetLabels()[names.LabelJobID] == jobID {
				continue
			}
		}
		if err != nil {
			cerr := fmt.Errorf("create %s %s on %s: %w", o.GetKind(), o.GetName(), c.Name, err)
			if derr := c.DeleteJobObjects(context.WithoutCancel(ctx), o.GetNamespace(), jobID); derr != nil {
				return errors.Join(cerr, fmt.Errorf("clean up: %w", derr))
			}
			return cerr
		}
	}
	return nil
}

// ns returns namespace, the one stored with a job; a job recorded before namespaces were
// stored ("") lives in the instance's namespace.
func (c *Cluster) ns(namespace string) string {
	if namespace == "" {
		return c.Namespace
	}
	return namespace
}

// DeleteJobObjects deletes every Job, ConfigMap and Secret of job jobID in namespace (the one
// stored with the job), with propagation Background (the Job controller then removes the pods).
// Missing objects are fine.
func (c *Cluster) DeleteJobObjects(ctx context.Context, namespace, jobID string) error {
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	sel := listOpts(names.JobSelector(jobID))
	var errs []error
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "batch", Version: "v1", Resource: "jobs"},
		{Version: "v1", Resource: "configmaps"},
		{Version: "v1", Resource: "secrets"},
	} {
		if err := c.Dynamic.Resource(gvr).Namespace(c.ns(namespace)).DeleteCollection(ctx, opts, sel); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s of job %s on %s: %w", gvr.Resource, jobID, c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Snapshot is what a cluster holds of one job: its Kubernetes Job (nil if gone) and its pods.
type Snapshot struct {
	Job  *batchv1.Job
	Pods []corev1.Pod
}

// Observe reads the Kubernetes Job and the pods of one attempt of a job in namespace; key is
// names.AttemptKey(job id, attempt) (the bare job id for the first attempt).
func (c *Cluster) Observe(ctx context.Context, namespace, key string) (Snapshot, error) {
	var s Snapshot
	list, err := c.Client.BatchV1().Jobs(c.ns(namespace)).List(ctx, listOpts(names.Selector(key)))
	if err != nil {
		return s, fmt.Errorf("list jobs of %s on %s: %w", key, c.Name, err)
	}
	if len(list.Items) > 0 {
		s.Job = &list.Items[0]
	}
	if s.Pods, err = c.Pods(ctx, namespace, key); err != nil {
		return s, err
	}
	return s, nil
}

// Pods lists the pods of one attempt of a job in namespace (the one stored with the job); key
// is names.AttemptKey(job id, attempt).
func (c *Cluster) Pods(ctx context.Context, namespace, key string) ([]corev1.Pod, error) {
	pods, err := c.Client.CoreV1().Pods(c.ns(namespace)).List(ctx, listOpts(names.Selector(key)))
	if err != nil {
		return nil, fmt.Errorf("list pods of %s on %s: %w", key, c.Name, err)
	}
	return pods.Items, nil
}

// StepContainer locates a step among a job's pods: the newest pod in which the step's container
// has started (running or terminated), with that container's status. A Job may have replaced
// a pod (a retry, a force-deleted pod): the replacement, until its container starts, holds no
// log of the step, so it is not the answer. Nil when no pod has started the step.
func StepContainer(pods []corev1.Pod, step string) (*corev1.Pod, *corev1.ContainerStatus) {
	var pod *corev1.Pod
	var status *corev1.ContainerStatus
	for i := range pods {
		p := &pods[i]
		for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
			for k := range list {
				cs := &list[k]
				if cs.Name != step || (cs.State.Running == nil && cs.State.Terminated == nil) {
					continue
				}
				if pod == nil || p.CreationTimestamp.After(pod.CreationTimestamp.Time) {
					pod, status = p, cs
				}
			}
		}
	}
	return pod, status
}

// LogOptions choose what StreamLogs reads of a container's log.
type LogOptions struct {
	// Follow keeps the stream open while the container runs.
	Follow bool
	// Since, when set, skips the lines the runtime stamped before it. The API takes whole
	// seconds: Since is rounded down, so lines up to a second before it still come.
	Since time.Time
}

// StreamLogs opens the log of one container of a pod in namespace, each line prefixed with its
// timestamp (read it with shared/logs).
func (c *Cluster) StreamLogs(ctx context.Context, namespace, pod, container string, o LogOptions) (io.ReadCloser, error) {
	opts := &corev1.PodLogOptions{Container: container, Follow: o.Follow, Timestamps: true}
	if !o.Since.IsZero() {
		since := metav1.NewTime(o.Since.Truncate(time.Second))
		opts.SinceTime = &since
	}
	rc, err := c.Client.CoreV1().Pods(c.ns(namespace)).GetLogs(pod, opts).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream log of %s/%s on %s: %w", pod, container, c.Name, err)
	}
	return rc, nil
}

// finalizerAttempts bounds RemovePodFinalizer's read-and-patch rounds; a lost round means
// another writer changed the pod's finalizers in between.
const finalizerAttempts = 10

// RemovePodFinalizer removes names.PodFinalizer from pod in namespace if it is there; a pod
// that is gone is fine. It patches with a JSON patch that first tests that the entry at that
// index is ours, so a concurrent change of the list (another controller adding or removing its
// own finalizer) makes the patch fail instead of removing the wrong entry; the pod is then
// read again.
func (c *Cluster) RemovePodFinalizer(ctx context.Context, namespace, name string) error {
	pods := c.Client.CoreV1().Pods(c.ns(namespace))
	var err error
	for attempt := range finalizerAttempts {
		if attempt > 0 {
			t := time.NewTimer(time.Duration(attempt) * 50 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		var pod *corev1.Pod
		pod, err = pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read pod %s on %s: %w", name, c.Name, err)
		}
		i := slices.Index(pod.Finalizers, names.PodFinalizer)
		if i < 0 {
			return nil
		}
		patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`,
			i, names.PodFinalizer, i)
		_, err = pods.Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: names.ManagedBy})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
			continue // the list changed under us (a failed "test" op): read it again
		default:
			return fmt.Errorf("patch pod %s on %s: %w", name, c.Name, err)
		}
	}
	return errors.Join(fmt.Errorf("pod %s: finalizers kept changing", name), err)
}

// Ping checks that the cluster's API server answers.
func (c *Cluster) Ping(ctx context.Context) error {
	_, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("cluster %s: %w: %w", c.Name, jobs.ErrUnavailable, err)
	}
	return nil
}
