package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
)

// enqueue records the job queued, runs a dispatch pass (which places it at once when there is
// room and nothing waits before it) and answers with the job as the pass left it.
func (h *Handler) enqueue(ctx context.Context, req Request, params map[string]any, id, key, rerunOf string, now time.Time) (*jobs.Job, bool, error) {
	d := h.Dispatcher
	pol := d.Policy()
	if len(d.Instances.Instances(req.Arch)) == 0 {
		if jobs.KubeArch(req.Arch) == "" {
			return nil, false, jobs.Invalid("arch", "unknown architecture %q (want one of %s)", req.Arch, strings.Join(jobs.Arches, ", "))
		}
		return nil, false, jobs.Invalid("arch", "no engine instance is configured for %s", req.Arch)
	}
	class, err := pol.Class(req.Service, req.Class)
	if err != nil {
		return nil, false, err
	}
	ckey, _, err := pol.ConcurrencyKey(req.Task, req.Arch, req.Domain, req.Service, params)
	if err != nil {
		return nil, false, jobs.Invalid("parameters", "%v", err)
	}
	cat := h.Catalogue()
	// Rendered once now so that a job that can never be created is refused, not queued.
	if _, err := cat.Render(req.Task, manifest.Input{
		JobID: id, Namespace: "default", Service: req.Service, Task: req.Task,
		Domain: req.Domain, Arch: req.Arch, Parameters: params,
		TTLSecondsAfterFinished: h.TTLSecondsAfterFinished, Labels: req.Labels,
	}); err != nil {
		return nil, false, fmt.Errorf("render %s: %w", req.Task, err)
	}
	j := &jobs.Job{
		ID: id, Service: req.Service, Task: req.Task, Domain: req.Domain, Arch: req.Arch,
		Status: jobs.StatusQueued, Parameters: params, Labels: req.Labels, Callback: req.Callback, RerunOf: rerunOf,
		Queue:     &jobs.Queue{Class: class, Slots: pol.Slots(req.Task), ConcurrencyKey: ckey, MaxAttempts: pol.MaxAttempts(req.Task)},
		CreatedAt: now, UpdatedAt: now,
	}
	for _, s := range cat.Steps(req.Task) {
		j.Steps = append(j.Steps, jobs.Step{Name: s, Status: jobs.StepWaiting})
	}
	// Hushed from before it is stored: a pass of this process that places it (the one below,
	// or one already running) does not emit job.changed before job.created.
	// The pass that places it announces it (job.created, pending) before creating its objects.
	var (
		amu       sync.Mutex
		announced bool
	)
	actx := context.WithoutCancel(ctx)
	unhush := d.Hush(id, func(placed *jobs.Job) {
		amu.Lock()
		announced = true
		amu.Unlock()
		h.emit(actx, events.TypeJobCreated, placed, "")
	})
	defer unhush()
	if err := h.Store.CreateJob(ctx, j); errors.Is(err, jobs.ErrExists) && key != "" {
		return h.replay(ctx, req, id)
	} else if err != nil {
		return nil, false, fmt.Errorf("record job: %w", err)
	}
	// Recorded: the rest does not depend on the client staying (a client that went away
	// retries with its key and gets this job replayed, so job.created must still be emitted).
	ctx = context.WithoutCancel(ctx)
	if _, err := h.Dispatch(ctx, DispatchOptions{}); err != nil {
		// The job is stored queued: the next pass (a trigger or the resync) places it.
		logging.FromContext(ctx).Warnw("dispatch after submit failed", "job", id, "error", err)
	} else if err := d.CreationDone(ctx, id); err != nil {
		return nil, false, err
	}
	unhush() // a later pass that places it emits queued → pending
	stored, err := h.Store.GetJob(ctx, id)
	if err != nil {
		return nil, false, fmt.Errorf("read job back: %w", err)
	}
	amu.Lock()
	wasAnnounced := announced
	amu.Unlock()
	if stored.Status == jobs.StatusFailed && stored.Reason == ReasonCreateFailed {
		h.emit(ctx, events.TypeJobChanged, stored, jobs.StatusPending)
		return nil, false, &CreateError{Job: stored, Err: errors.New(stored.Message)}
	}
	switch {
	case !wasAnnounced:
		h.emit(ctx, events.TypeJobCreated, stored, "")
	case stored.Status == jobs.StatusQueued:
		// Placed, announced, then sent back to the queue (a transient refusal): say so.
		h.emit(ctx, events.TypeJobChanged, stored, jobs.StatusPending)
	}
	return stored, false, nil
}

// cancelQueued ends a queued job cancelled without anything created: done is false when a
// dispatcher placed it first (the caller then cancels it as a dispatched job).
func (h *Handler) cancelQueued(ctx context.Context, p *auth.Principal, id string) (*jobs.Job, bool, error) {
	stored, changed, err := h.Store.UpdateJob(ctx, id, func(j *jobs.Job) (bool, error) {
		if j.Status != jobs.StatusQueued {
			return false, nil
		}
		at := h.now()
		j.Status, j.Reason, j.Message = jobs.StatusCancelled, ReasonCancelled, "cancelled by "+p.User+" while queued"
		j.CancelRequested = true
		j.FinishedAt, j.UpdatedAt = &at, at
		if j.Queue != nil {
			j.Queue.Position, j.Queue.Reason = 0, ""
		}
		return true, nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("record cancel: %w", err)
	}
	if !changed {
		return stored, stored.Status.Terminal(), nil
	}
	h.emit(ctx, events.TypeJobChanged, stored, jobs.StatusQueued)
	return stored, true, nil
}

// QueueView is the body of GET /v1/queue.
type QueueView struct {
	// Waiting are the queued jobs the caller may see, in dispatch order.
	Waiting []WaitingJob `json:"waiting"`
	// Hidden counts the matching queued jobs of services the caller may not see.
	Hidden int `json:"hidden"`
	// Instances are the engine instances with their slots.
	Instances []InstanceView `json:"instances"`
}

// WaitingJob is one queued job in GET /v1/queue.
type WaitingJob struct {
	ID        string    `json:"id"`
	Service   string    `json:"service"`
	Task      string    `json:"task"`
	Arch      string    `json:"arch"`
	Class     string    `json:"class"`
	Slots     int       `json:"slots"`
	Position  int       `json:"position"`
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// InstanceView is one engine instance's slots in GET /v1/queue.
type InstanceView struct {
	Name string `json:"name"`
	Arch string `json:"arch"`
	// Capacity in slots, 0 = unlimited.
	Capacity int `json:"capacity"`
	InUse    int `json:"inUse"`
	// Free is Capacity - InUse (0 when unlimited).
	Free int `json:"free"`
	// Unlimited says the instance has no capacity set: it never makes a job wait.
	Unlimited bool `json:"unlimited,omitempty"`
}

// Queue computes the queue as principal p may see it, filtered by arch, service and class.
func (h *Handler) Queue(ctx context.Context, p *auth.Principal, arch, service, class string) (*QueueView, error) {
	d := h.Dispatcher
	st, _, err := h.loadView(ctx)
	if err != nil {
		return nil, err
	}
	pol := d.Policy()
	var waiting []*jobs.Job
	for _, j := range st.active {
		if j.Status == jobs.StatusQueued && !j.CancelRequested {
			waiting = append(waiting, j)
		}
	}
	v := &QueueView{Waiting: []WaitingJob{}, Instances: []InstanceView{}}
	lengths := map[[2]string]int{}
	for i, j := range pol.Order(waiting, st.running, h.now()) {
		cls := pol.DefaultClass
		if j.Queue != nil && j.Queue.Class != "" {
			cls = j.Queue.Class
		}
		lengths[[2]string{j.Arch, cls}]++
		if (arch != "" && j.Arch != arch) || (service != "" && j.Service != service) || (class != "" && cls != class) {
			continue
		}
		if !p.Can(auth.RoleViewer, j.Service) {
			v.Hidden++
			continue
		}
		w := WaitingJob{ID: j.ID, Service: j.Service, Task: j.Task, Arch: j.Arch, Class: cls,
			Slots: pol.JobSlots(j), Position: i + 1, CreatedAt: j.CreatedAt}
		if j.Queue != nil {
			w.Reason = j.Queue.Reason
		}
		v.Waiting = append(v.Waiting, w)
	}
	setQueueLength(lengths)
	for _, a := range jobs.Arches {
		if arch != "" && a != arch {
			continue
		}
		for _, in := range d.Instances.Instances(a) {
			c := pol.Capacity(in.ClusterName(), in.Capacity())
			n := len(st.held[instanceScope(in.ClusterName())])
			v.Instances = append(v.Instances, InstanceView{Name: in.ClusterName(), Arch: a, Capacity: c, InUse: n, Free: max(c-n, 0), Unlimited: c <= 0})
		}
	}
	sort.Slice(v.Instances, func(a, b int) bool { return v.Instances[a].Name < v.Instances[b].Name })
	return v, nil
}

// loadView reads the queue's state without freeing anything (a read-only request).
func (h *Handler) loadView(ctx context.Context) (*state, int, error) {
	st, slots, err := h.readState(ctx, "queue")
	if err != nil {
		return nil, 0, err
	}
	for _, sl := range slots {
		st.hold(sl)
	}
	st.countRunning(h.Dispatcher.Policy())
	return st, 0, nil
}

func (h *Handler) serveQueue(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	arch, service, class := q.Get("arch"), q.Get("service"), q.Get("class")
	if arch != "" && jobs.KubeArch(arch) == "" {
		httpapi.Error(w, r, jobs.Invalid("arch", "unknown architecture %q", arch))
		return
	}
	v, err := h.Queue(r.Context(), auth.FromContext(r.Context()), arch, service, class)
	if err != nil {
		httpapi.Error(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, v)
}

var (
	metricsOnce sync.Once
	queueLength *prometheus.GaugeVec
	queueWait   *prometheus.HistogramVec
	queueLag    *prometheus.HistogramVec
)

func registerMetrics() {
	metricsOnce.Do(func() {
		queueLength = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "omni_queue_length", Help: "Queued jobs by arch and class, as of the last dispatch pass or queue read.",
		}, []string{"arch", "class"})
		queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omni_queue_wait_seconds", Help: "Time from submission to dispatch of dispatched jobs, by arch and class.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 12),
		}, []string{"arch", "class"})
		queueLag = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omni_queue_dispatch_lag_seconds", Help: "Time from a job's end freeing instance slots to the next job's objects created there, by arch (only when a queued job took the freed slots in the pass that freed them).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"arch"})
		prometheus.MustRegister(queueLength, queueWait, queueLag)
	})
}

// observeWait records the wait of a job just dispatched in omni_queue_wait_seconds.
func observeWait(j *jobs.Job) {
	registerMetrics()
	class := ""
	if j.Queue != nil {
		class = j.Queue.Class
	}
	queueWait.WithLabelValues(j.Arch, class).Observe(j.Wait().Seconds())
}

// observeLag records a dispatch lag in omni_queue_dispatch_lag_seconds.
func observeLag(arch string, d time.Duration) {
	registerMetrics()
	queueLag.WithLabelValues(arch).Observe(d.Seconds())
}

// setQueueLength publishes omni_queue_length{arch,class}.
func setQueueLength(lengths map[[2]string]int) {
	registerMetrics()
	queueLength.Reset()
	for k, n := range lengths {
		queueLength.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
}
