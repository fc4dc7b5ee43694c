package logarchive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

var (
	archivedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omni_log_archive_bytes_total", Help: "Bytes of step logs archived (counted once per archived step).",
	})
	archivedLines = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omni_log_archive_lines_total", Help: "Lines of step logs archived (counted once per archived step).",
	})
	archivedSteps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omni_log_archive_steps_total", Help: "Steps whose log was settled, by outcome (complete, incomplete).",
	}, []string{"outcome"})
	pushedLines = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omni_log_pushed_lines_total", Help: "Lines pushed by workers (logs.appended) and stored.",
	})
)

func init() { prometheus.MustRegister(archivedBytes, archivedLines, archivedSteps, pushedLines) }

// Deps are what log-archive uses.
type Deps struct {
	Logs     Store
	Jobs     Jobs
	Clusters Clusters
}

// New builds the log-archive handler.
func New(d Deps) *Handler {
	return &Handler{Logs: d.Logs, Jobs: d.Jobs, Clusters: d.Clusters}
}

// Function serves h: POST / takes job.changed of ended jobs and logs.appended from the Broker;
// checks are its readiness checks.
func (h *Handler) Function(checks ...runtime.Check) *runtime.Function {
	ce := runtime.CloudEvents(h.Receive)
	return &runtime.Function{
		Name:   Name,
		Routes: func(mux *http.ServeMux) { mux.Handle("POST /{$}", ce) },
		Checks: checks,
	}
}

// KubeClusters are the configured build clusters, as log-archive uses them.
type KubeClusters struct{ Clusters *kube.Clusters }

// Cluster returns the cluster called name or an error wrapping jobs.ErrNotFound.
func (k KubeClusters) Cluster(name string) (Cluster, error) {
	c, err := k.Clusters.Get(name)
	if err != nil {
		return nil, err
	}
	return kubeCluster{c}, nil
}

type kubeCluster struct{ c *kube.Cluster }

func (k kubeCluster) ns(namespace string) string {
	if namespace == "" {
		return k.c.Namespace
	}
	return namespace
}

func (k kubeCluster) Pods(ctx context.Context, namespace, jobID string) ([]corev1.Pod, error) {
	list, err := k.c.Client.CoreV1().Pods(k.ns(namespace)).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelJobID + "=" + jobID})
	if err != nil {
		return nil, fmt.Errorf("list pods of %s on %s: %w", jobID, k.c.Name, err)
	}
	return list.Items, nil
}

func (k kubeCluster) StreamLogs(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error) {
	rc, err := k.c.Client.CoreV1().Pods(k.ns(namespace)).GetLogs(pod, &corev1.PodLogOptions{Container: container, Timestamps: true}).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream log of %s/%s on %s: %w", pod, container, k.c.Name, err)
	}
	return rc, nil
}

// finalizerAttempts bounds RemoveFinalizer's read-and-patch rounds; a lost round means another
// writer changed the pod's finalizers in between.
const finalizerAttempts = 10

// RemoveFinalizer removes kube.PodFinalizer with a JSON patch that first tests that the entry
// at that index is ours, so a concurrent change of the list (another controller adding or
// removing its own finalizer) makes the patch fail instead of removing the wrong entry; the
// pod is then read again.
func (k kubeCluster) RemoveFinalizer(ctx context.Context, namespace, name string) error {
	pods := k.c.Client.CoreV1().Pods(k.ns(namespace))
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
			return err
		}
		i := slices.Index(pod.Finalizers, kube.PodFinalizer)
		if i < 0 {
			return nil
		}
		patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`,
			i, kube.PodFinalizer, i)
		_, err = pods.Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: kube.ManagedBy})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
			continue // the list changed under us (a failed "test" op): read it again
		default:
			return err
		}
	}
	return errors.Join(fmt.Errorf("pod %s: finalizers kept changing", name), err)
}
