package statussync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"go.uber.org/zap"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// Name is the function's name, used as the source of the events it emits.
const Name = "status-sync"

// Store is what status-sync needs of the job store.
type Store interface {
	GetJob(ctx context.Context, id string) (*jobs.Job, error)
	UpdateJob(ctx context.Context, id string, fn func(*jobs.Job) (bool, error)) (*jobs.Job, bool, error)
	ListUnsettled(ctx context.Context, cursor string, limit int) ([]*jobs.Job, string, error)
}

// Observer reads a job's objects from the cluster the job runs on.
type Observer interface {
	Observe(ctx context.Context, cluster, namespace, jobID string) (kube.Snapshot, error)
}

// Emitter sends an event to the Broker (used by resync, which has no single reply).
type Emitter interface {
	Emit(ctx context.Context, e event.Event) error
}

// Handler is the status-sync function.
type Handler struct {
	Store    Store
	Observer Observer
	Emitter  Emitter
	// Grace is how old a job must be before resync may declare its objects gone (default 1m),
	// so a job whose submit is still creating objects is not taken for lost.
	Grace time.Duration
	// ArchiveGrace is how long after its end a job whose logs are not archived yet is handed to
	// log-archive again by the resync (logs.requested; default 20m: past the log-archive
	// Trigger's own retries, about 17 minutes, so that only a lost or dead-lettered archive is
	// asked for again).
	ArchiveGrace time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

// object is what status-sync reads of a Job or Pod: the fields every event is routed by, and
// the status that ApplyJob and ApplyPod derive the job from. Only these are decoded, once; the
// rest of the object (its spec, its managed fields: most of its bytes) is skipped.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name            string            `json:"name"`
		ResourceVersion string            `json:"resourceVersion"`
		Labels          map[string]string `json:"labels"`
	} `json:"metadata"`
	Status json.RawMessage `json:"status"`
}

func (o *object) meta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: o.Metadata.Name, ResourceVersion: o.Metadata.ResourceVersion, Labels: o.Metadata.Labels}
}

// decodeStatus decodes the object's status into into (an object without one keeps the zero).
func (o *object) decodeStatus(into any) error {
	if len(o.Status) == 0 || string(o.Status) == "null" {
		return nil
	}
	return json.Unmarshal(o.Status, into)
}

// Receive handles one ApiServerSource event. It answers 400 for events it can never use, an
// error (retry) when the store is unavailable, and otherwise replies job.changed when the job
// changed — or when this exact event was applied before, in case the first reply was lost.
func (h *Handler) Receive(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
	log := logging.FromContext(ctx).With(zap.String("event", e.ID()), zap.String("type", e.Type()))
	var deleted bool
	switch e.Type() {
	case events.TypeResourceAdd, events.TypeResourceUpdate:
	case events.TypeResourceDelete:
		deleted = true
	default:
		return nil, jobs.Invalid("type", "status-sync: unexpected event type %q", e.Type())
	}
	var obj object
	if err := json.Unmarshal(e.Data(), &obj); err != nil {
		return nil, jobs.Invalid("data", "status-sync: data is not a Kubernetes object: %v", err)
	}
	id := obj.Metadata.Labels[names.LabelJobID]
	if id == "" {
		log.Debugw("ignoring object without job id", "kind", obj.Kind, "name", obj.Metadata.Name)
		return nil, protocol.ResultACK
	}
	// The ApiServerSource of each engine instance sets cluster (ceOverrides); an event without
	// it, or from another cluster than the job's, is not that cluster's word on the job.
	cluster, _ := e.Extensions()[events.ExtCluster].(string)
	if cluster == "" {
		return nil, jobs.Invalid("cluster", "status-sync: event %s has no cluster extension", e.ID())
	}
	var apply func(j *jobs.Job, now time.Time) Outcome
	switch obj.Kind {
	case "Job":
		kj := batchv1.Job{ObjectMeta: obj.meta()}
		if err := obj.decodeStatus(&kj.Status); err != nil {
			return nil, jobs.Invalid("data.status", "status-sync: decode Job: %v", err)
		}
		apply = func(j *jobs.Job, now time.Time) Outcome { return ApplyJob(j, &kj, deleted, now) }
	case "Pod":
		pod := corev1.Pod{ObjectMeta: obj.meta()}
		if err := obj.decodeStatus(&pod.Status); err != nil {
			return nil, jobs.Invalid("data.status", "status-sync: decode Pod: %v", err)
		}
		apply = func(j *jobs.Job, now time.Time) Outcome { return ApplyPod(j, &pod, deleted, now) }
	default:
		return nil, jobs.Invalid("data.kind", "status-sync: unexpected kind %q", obj.Kind)
	}

	var outcome Outcome
	var previous jobs.Status
	attempt, otherAttempt, foreign := names.AttemptOf(obj.Metadata.Labels), false, false
	j, _, err := h.Store.UpdateJob(ctx, id, func(j *jobs.Job) (bool, error) {
		// An object of an earlier attempt (docs/queue.md) says nothing about the current one.
		otherAttempt = attempt != j.CurrentAttempt()
		foreign = !otherAttempt && cluster != j.Cluster
		if otherAttempt || foreign {
			outcome = Stale
			return false, nil
		}
		previous = j.Status
		outcome = apply(j, h.now())
		return outcome.Stored(), nil
	})
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		// Not ours, or a job whose record is gone: nothing to update, never worth a retry.
		log.Debugw("ignoring object of unknown job", "job", id)
		return nil, protocol.ResultACK
	case err != nil:
		return nil, fmt.Errorf("status-sync: update job %s: %w", id, err)
	}
	if otherAttempt {
		log.Debugw("ignoring an object of another attempt", "job", id, "attempt", attempt, "current", j.CurrentAttempt())
		return nil, protocol.ResultACK
	}
	if foreign { // (judged before the event applied: its own retry leaves the job on no cluster)
		return nil, jobs.Invalid("cluster", "status-sync: event from cluster %q about job %s, which runs on another cluster (%q, %s, attempt %d; the object is of attempt %d)", cluster, id, j.Cluster, j.Status, j.CurrentAttempt(), attempt)
	}
	switch outcome {
	case Changed:
	case Duplicate:
		previous = ""
	default:
		return nil, protocol.ResultACK
	}
	reply, err := events.NewJobEvent(events.TypeJobChanged, Name, j, previous)
	if err != nil {
		return nil, fmt.Errorf("status-sync: %w", err)
	}
	return &reply, protocol.ResultACK
}

// Report sums up one resync.
type Report struct {
	Checked, Changed, Failed int
	// LogsRequested counts the ended jobs handed to log-archive again (logs.requested).
	LogsRequested int
}

// Resync reads back from its cluster every job whose state is not settled — not ended, or ended
// with steps that do not agree with it yet (jobs.Job.NeedsResync) — and applies what it finds
// (Reconcile), so that what the event stream missed (adapter down, events dropped, objects gone)
// is repaired. It emits job.changed for each job it changed. A cluster that cannot be read is
// skipped until next time.
func (h *Handler) Resync(ctx context.Context) (Report, error) {
	return h.resync(ctx, h.archiveGrace())
}

// ResyncAfterRestart is the resync of a host that has just started again after it died, and
// whose Broker's queue died with it (the local mode: its router holds events in memory). It
// is Resync, except that every ended job whose logs are not archived is handed to log-archive
// at once, whatever ArchiveGrace says: the job.changed that would have archived them may have
// been in that queue, and no retry of it is on its way. With a real Broker, which keeps its
// queue, the grace stands (Resync).
func (h *Handler) ResyncAfterRestart(ctx context.Context) (Report, error) {
	return h.resync(ctx, 0)
}

// resync is Resync with archiveGrace as the time after its end that an ended job waits before
// its logs are asked for again.
func (h *Handler) resync(ctx context.Context, archiveGrace time.Duration) (Report, error) {
	var rep Report
	var errs []error
	cursor := ""
	for {
		page, next, err := h.Store.ListUnsettled(ctx, cursor, 200)
		if err != nil {
			return rep, fmt.Errorf("resync: list unsettled jobs: %w", err)
		}
		for _, j := range page {
			rep.Checked++
			changed, requested, err := h.resyncJob(ctx, j, archiveGrace)
			if requested {
				rep.LogsRequested++
			}
			if err != nil {
				rep.Failed++
				errs = append(errs, err)
				continue
			}
			if changed {
				rep.Changed++
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(errs) > 0 {
		logging.FromContext(ctx).Warnw("resync could not repair every job", "failed", len(errs), "first", errs[0])
	}
	return rep, nil
}

// resyncJob resyncs job j: changed says it emitted job.changed, requested that it emitted
// logs.requested.
func (h *Handler) resyncJob(ctx context.Context, j *jobs.Job, archiveGrace time.Duration) (changed, requested bool, err error) {
	if j.Status == jobs.StatusQueued {
		return false, false, nil // nothing on a cluster yet: the dispatcher's business (docs/queue.md)
	}
	if j.Status.Terminal() {
		// Its logs too, even if its steps never settle (a pod that ended without a status
		// of some step): the pods stay held by the finalizer until they are archived.
		if requested, err = h.requestLogs(ctx, j, archiveGrace); err != nil || j.StepsSettled() {
			return false, requested, err
		}
	}
	changed, err = h.reconcileJob(ctx, j)
	return changed, requested, err
}

// reconcileJob reads job j back from its cluster and applies what it finds; it reports whether
// the job changed (and job.changed was emitted).
func (h *Handler) reconcileJob(ctx context.Context, j *jobs.Job) (bool, error) {
	snap, err := h.Observer.Observe(ctx, j.Cluster, j.Namespace, names.AttemptKey(j.ID, j.CurrentAttempt()))
	if err != nil {
		return false, fmt.Errorf("observe job %s: %w", j.ID, err)
	}
	var previous jobs.Status
	var out Outcome
	attempt := j.CurrentAttempt()
	stored, _, err := h.Store.UpdateJob(ctx, j.ID, func(j *jobs.Job) (bool, error) {
		if j.CurrentAttempt() != attempt {
			out = Stale // retried meanwhile: the snapshot is of the attempt before
			return false, nil
		}
		previous = j.Status
		out = Reconcile(j, snap, h.now(), h.grace())
		return out.Stored(), nil
	})
	if err != nil {
		return false, fmt.Errorf("resync job %s: %w", j.ID, err)
	}
	if out != Changed {
		return false, nil
	}
	e, err := events.NewJobEvent(events.TypeJobChanged, Name, stored, previous)
	if err != nil {
		return true, err
	}
	if err := h.Emitter.Emit(ctx, e); err != nil {
		return true, fmt.Errorf("emit job.changed for %s: %w", j.ID, err)
	}
	return true, nil
}

// requestLogs hands ended job j, whose logs are not archived, to log-archive again
// (logs.requested) once it has ended grace ago (ArchiveGrace; none after a restart): its own
// job.changed was lost or ended in the dead-letter sink, and its pods are still held by the
// finalizer. Every resync asks again until log-archive records the job archived. It reports
// whether it asked.
func (h *Handler) requestLogs(ctx context.Context, j *jobs.Job, grace time.Duration) (bool, error) {
	if j.LogsArchived || j.FinishedAt == nil || h.now().Sub(*j.FinishedAt) < grace {
		return false, nil
	}
	e, err := events.NewJobEvent(events.TypeLogsRequested, Name, j, j.Status)
	if err != nil {
		return false, err
	}
	if err := h.Emitter.Emit(ctx, e); err != nil {
		return false, fmt.Errorf("emit logs.requested for %s: %w", j.ID, err)
	}
	logging.FromContext(ctx).Infow("asked log-archive again for the logs of an ended job", "job", j.ID, "finishedAt", j.FinishedAt)
	return true, nil
}

func (h *Handler) archiveGrace() time.Duration {
	if h.ArchiveGrace > 0 {
		return h.ArchiveGrace
	}
	return 20 * time.Minute
}

// since is when a job's objects were first due on its cluster: its dispatch from the queue,
// else its creation.
func since(j *jobs.Job) time.Time {
	if j.Queue != nil && j.Queue.DispatchedAt != nil {
		return *j.Queue.DispatchedAt
	}
	return j.CreatedAt
}

func (h *Handler) grace() time.Duration {
	if h.Grace > 0 {
		return h.Grace
	}
	return time.Minute
}

// KubeObserver reads jobs' objects from the configured build clusters.
type KubeObserver struct{ Clusters *kube.Clusters }

// Observe reads the objects of one attempt of a job from cluster; key is
// names.AttemptKey(job id, attempt).
func (k KubeObserver) Observe(ctx context.Context, cluster, namespace, key string) (kube.Snapshot, error) {
	c, err := k.Clusters.Get(cluster)
	if err != nil {
		return kube.Snapshot{}, err
	}
	return c.Observe(ctx, namespace, key)
}

// Settings are status-sync's own settings (its binary adds the store's, the clusters' and the
// Broker sender's).
type Settings struct {
	// ResyncGrace is how old a job must be before resync may call its objects gone. Default 1m.
	ResyncGrace time.Duration `envconfig:"OMNI_RESYNC_GRACE" default:"1m"`
	// ArchiveGrace is how long after its end a job whose logs are not archived is handed to
	// log-archive again by the resync. Default 20m.
	ArchiveGrace time.Duration `envconfig:"OMNI_ARCHIVE_GRACE" default:"20m"`
}

// Deps are what status-sync uses.
type Deps struct {
	Store    Store
	Observer Observer
	Emitter  Emitter
}

// New builds the status-sync handler.
func New(s Settings, d Deps) *Handler {
	return &Handler{Store: d.Store, Observer: d.Observer, Emitter: d.Emitter, Grace: s.ResyncGrace, ArchiveGrace: s.ArchiveGrace}
}

// Function serves h: POST / takes ApiServerSource events (from the Broker), POST /resync takes
// the PingSource's ticks; checks are its readiness checks.
func (h *Handler) Function(checks ...runtime.Check) *runtime.Function {
	ce := runtime.CloudEvents(h.Receive)
	return &runtime.Function{
		Name: Name,
		Routes: func(mux *http.ServeMux) {
			mux.Handle("POST /{$}", ce)
			mux.HandleFunc("POST /resync", h.serveResync)
		},
		Checks: checks,
	}
}

func (h *Handler) serveResync(w http.ResponseWriter, r *http.Request) {
	rep, err := h.Resync(r.Context())
	if err != nil {
		httpapi.Error(w, r, err)
		return
	}
	logging.FromContext(r.Context()).Infow("resync done", "checked", rep.Checked, "changed", rep.Changed, "failed", rep.Failed, "logsRequested", rep.LogsRequested)
	httpapi.JSON(w, http.StatusOK, rep)
}
