package logarchive

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

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
	return c, nil
}
