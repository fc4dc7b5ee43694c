package kube

import (
	"context"
	"errors"
	"fmt"
	"io"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Labels and values set on every object this project creates.
const (
	LabelJobID     = "omni.openeuler.org/job-id"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "omni-orchestrator"
	// PodFinalizer holds a job's pods until log-archive has stored their logs.
	PodFinalizer = "omni.openeuler.org/log-archive"
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
		_, err := c.Dynamic.Resource(gvr).Namespace(o.GetNamespace()).Create(ctx, o, metav1.CreateOptions{FieldManager: ManagedBy})
		if apierrors.IsAlreadyExists(err) {
			cur, gerr := c.Dynamic.Resource(gvr).Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
			if gerr == nil && cur.GetLabels()[LabelJobID] == jobID {
				continue
			}
		}
		if err != nil {
			cerr := fmt.Errorf("create %s %s on %s: %w", o.GetKind(), o.GetName(), c.Name, err)
			if derr := c.DeleteJobObjects(context.WithoutCancel(ctx), jobID); derr != nil {
				return errors.Join(cerr, fmt.Errorf("clean up: %w", derr))
			}
			return cerr
		}
	}
	return nil
}

// DeleteJobObjects deletes every Job, ConfigMap and Secret labelled with jobID, with
// propagation Background (the Job controller then removes the pods). Missing objects are fine.
func (c *Cluster) DeleteJobObjects(ctx context.Context, jobID string) error {
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	sel := listOpts(LabelJobID + "=" + jobID)
	var errs []error
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "batch", Version: "v1", Resource: "jobs"},
		{Version: "v1", Resource: "configmaps"},
		{Version: "v1", Resource: "secrets"},
	} {
		if err := c.Dynamic.Resource(gvr).Namespace(c.Namespace).DeleteCollection(ctx, opts, sel); err != nil && !apierrors.IsNotFound(err) {
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

// Observe reads the Kubernetes Job and the pods labelled with jobID from the cluster.
func (c *Cluster) Observe(ctx context.Context, jobID string) (Snapshot, error) {
	var s Snapshot
	list, err := c.Client.BatchV1().Jobs(c.Namespace).List(ctx, listOpts(LabelJobID+"="+jobID))
	if err != nil {
		return s, fmt.Errorf("list jobs of %s on %s: %w", jobID, c.Name, err)
	}
	if len(list.Items) > 0 {
		s.Job = &list.Items[0]
	}
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, listOpts(LabelJobID+"="+jobID))
	if err != nil {
		return s, fmt.Errorf("list pods of %s on %s: %w", jobID, c.Name, err)
	}
	s.Pods = pods.Items
	return s, nil
}

// Ping checks that the cluster's API server answers.
func (c *Cluster) Ping(ctx context.Context) error {
	_, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("cluster %s: %w: %w", c.Name, jobs.ErrUnavailable, err)
	}
	return nil
}

// StreamLogs opens the log of one container of a pod, each line prefixed with its timestamp
// (read it with shared/logs.NewReader). With follow, the stream stays open while the container runs.
func (c *Cluster) StreamLogs(ctx context.Context, pod, container string, follow bool) (io.ReadCloser, error) {
	req := c.Client.CoreV1().Pods(c.Namespace).GetLogs(pod, &corev1.PodLogOptions{
		Container: container, Follow: follow, Timestamps: true,
	})
	rc, err := req.Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream log of %s/%s on %s: %w", pod, container, c.Name, err)
	}
	return rc, nil
}
