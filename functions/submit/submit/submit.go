// Package submit is the core of the submit function: validate a job request, choose an engine
// instance of the requested arch, record the job, create its objects on that cluster, and
// answer with the job.
package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/callback"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/ids"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// Name is the function's name, the source of the events it emits.
const Name = "submit"

// ReasonCreateFailed is the reason of a job whose cluster objects could not be created.
const ReasonCreateFailed = "CreateFailed"

// Store is what submit needs of the job store.
type Store interface {
	CreateJob(ctx context.Context, j *jobs.Job) error
	GetJob(ctx context.Context, id string) (*jobs.Job, error)
	UpdateJob(ctx context.Context, id string, fn func(*jobs.Job) (bool, error)) (*jobs.Job, bool, error)
	ClaimIdempotencyKey(ctx context.Context, service, key, jobID string, ttl time.Duration) (string, error)
}

// Catalogue is the current set of job types.
type Catalogue interface {
	Validate(task, arch string, params map[string]any) (map[string]any, error)
	Steps(task string) []string
	Render(task string, in manifest.Input) ([]*unstructured.Unstructured, error)
	// Digest identifies the job type's current revision (recorded with each dispatch).
	Digest(task string) string
}

// Target is the engine instance chosen for a job.
type Target interface {
	ClusterName() string
	JobNamespace() string
	Create(ctx context.Context, jobID string, objs []*unstructured.Unstructured) error
}

// Placer chooses an engine instance of an arch.
type Placer interface {
	Place(ctx context.Context, arch string) (Target, error)
}

// Emitter sends events to the Broker.
type Emitter interface {
	Emit(ctx context.Context, e event.Event) error
}

// Request is the body of POST /v1/jobs.
type Request struct {
	Service    string            `json:"service"`
	Task       string            `json:"task"`
	Domain     string            `json:"domain"`
	Arch       string            `json:"arch"`
	Parameters map[string]any    `json:"parameters"`
	Labels     map[string]string `json:"labels,omitempty"`
	Callback   string            `json:"callback,omitempty"`
	// Class is the priority class (docs/queue.md); empty: the service's default.
	Class string `json:"class,omitempty"`
}

// Handler is the submit function.
type Handler struct {
	Store     Store
	Catalogue func() Catalogue
	Placer    Placer
	Deleter   Deleter
	Emitter   Emitter
	// Guard checks callback URLs (nil checks only their syntax).
	Guard *callback.Guard
	// RepoAllowList is the operator's allow-list of repository URLs per service (CheckRepos);
	// empty or a missing file allows every repository.
	RepoAllowList string
	// MaxBody is the request body limit in bytes (default 1 MiB).
	MaxBody int64
	// IdempotencyTTL is how long an Idempotency-Key is remembered (default 24h).
	IdempotencyTTL time.Duration
	// TTLSecondsAfterFinished is set on every Kubernetes Job (nil: the template's default).
	TTLSecondsAfterFinished *int32
	Now                     func() time.Time
	// Dispatcher, when set, queues jobs and places them in policy order (docs/queue.md);
	// without it a job is placed at once or refused with 503.
	Dispatcher *Dispatcher
	// authn wraps the /v1 routes in authentication (New sets it).
	authn func(http.Handler) http.Handler
}

func (h *Handler) serveSubmit(w http.ResponseWriter, r *http.Request) {
	limit := h.MaxBody
	if limit <= 0 {
		limit = 1 << 20
	}
	var req Request
	if err := httpapi.Decode(w, r, limit, &req); err != nil {
		httpapi.Error(w, r, err)
		return
	}
	j, replayed, err := h.Submit(r.Context(), auth.FromContext(r.Context()), req, r.Header.Get("Idempotency-Key"))
	var cf *CreateError
	switch {
	case errors.As(err, &cf):
		w.Header().Set("Location", "/v1/jobs/"+cf.Job.ID)
		httpapi.WriteProblem(w, httpapi.Problem{Title: "Bad Gateway", Status: http.StatusBadGateway,
			Detail: cf.Error(), Instance: "/v1/jobs/" + cf.Job.ID})
		return
	case err != nil:
		httpapi.Error(w, r, err)
		return
	}
	writeCreated(w, j, replayed)
}

// writeCreated answers a request that created j (201), or that repeated the Idempotency-Key of
// the request that did (200, Idempotent-Replayed), with j as a viewer sees it.
func writeCreated(w http.ResponseWriter, j *jobs.Job, replayed bool) {
	w.Header().Set("Location", "/v1/jobs/"+j.ID)
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		httpapi.JSON(w, http.StatusOK, j.Redacted())
		return
	}
	httpapi.JSON(w, http.StatusCreated, j.Redacted())
}

// CreateError is returned when the job was recorded but its objects could not be created; the
// job is stored as failed with the reason.
type CreateError struct {
	Job *jobs.Job
	Err error
}

func (e *CreateError) Error() string {
	return fmt.Sprintf("job %s failed: its objects could not be created: %v", e.Job.ID, e.Err)
}

func (e *CreateError) Unwrap() error { return e.Err }

// Submit runs one submission for principal p. With a non-empty idempotency key, a repeat of a
// submission returns the job of the first one (replayed = true) and creates nothing.
func (h *Handler) Submit(ctx context.Context, p *auth.Principal, req Request, key string) (*jobs.Job, bool, error) {
	return h.submit(ctx, p, req, key, "")
}

// submit is Submit of a job that reruns job rerunOf ("" for none).
func (h *Handler) submit(ctx context.Context, p *auth.Principal, req Request, key, rerunOf string) (*jobs.Job, bool, error) {
	if err := validate(req, key); err != nil {
		return nil, false, err
	}
	if req.Callback != "" {
		// The same guard notify's dialer applies at connect time, so a callback refused there
		// is refused here first, as a 400 naming the field.
		guard := h.Guard
		if guard == nil {
			guard = &callback.Guard{}
		}
		if _, err := guard.Check(req.Callback); err != nil {
			return nil, false, jobs.Invalid("callback", "%v", err)
		}
	}
	if p == nil || !p.Can(auth.RoleSubmitter, req.Service) {
		return nil, false, fmt.Errorf("submit to service %q: %w", req.Service, jobs.ErrForbidden)
	}
	cat := h.Catalogue()
	params, err := cat.Validate(req.Task, req.Arch, req.Parameters)
	if err != nil {
		return nil, false, err
	}
	if err := CheckRepos(h.RepoAllowList, req.Service, params); err != nil {
		return nil, false, err
	}
	now := h.now()
	id := ids.New(now)
	if key != "" {
		first, err := h.Store.ClaimIdempotencyKey(ctx, req.Service, key, id, h.idempotencyTTL())
		if err != nil {
			return nil, false, err // the store names the operation
		}
		if first != id {
			j, replayed, err := h.replay(ctx, req, first)
			if !errors.Is(err, jobs.ErrNotFound) {
				return j, replayed, err
			}
			// The first submission with this key never recorded its job (it failed before, or
			// is still before that point): carry on under its id. CreateJob lets only one of
			// two such submissions record it; the other replays.
			id = first
		}
	}
	if h.Dispatcher == nil {
		return h.submitDirect(ctx, req, params, id, key, rerunOf, now)
	}
	return h.enqueue(ctx, req, params, id, key, rerunOf, now)
}

// submitDirect places the job at once on an instance with room (503 when none has): the
// behaviour of a submit without a dispatcher.
func (h *Handler) submitDirect(ctx context.Context, req Request, params map[string]any, id, key, rerunOf string, now time.Time) (*jobs.Job, bool, error) {
	cat := h.Catalogue()
	target, err := h.Placer.Place(ctx, req.Arch)
	if err != nil {
		return nil, false, err
	}
	objs, err := cat.Render(req.Task, manifest.Input{
		JobID: id, Namespace: target.JobNamespace(), Service: req.Service, Task: req.Task,
		Domain: req.Domain, Arch: req.Arch, Parameters: params,
		TTLSecondsAfterFinished: h.TTLSecondsAfterFinished, Labels: req.Labels,
	})
	if err != nil {
		return nil, false, fmt.Errorf("render %s: %w", req.Task, err)
	}
	j := &jobs.Job{
		ID: id, Service: req.Service, Task: req.Task, Domain: req.Domain, Arch: req.Arch,
		Cluster: target.ClusterName(), Namespace: target.JobNamespace(), Status: jobs.StatusPending,
		Parameters: params, Labels: req.Labels, Callback: req.Callback, RerunOf: rerunOf,
		CreatedAt: now, UpdatedAt: now,
	}
	for _, s := range cat.Steps(req.Task) {
		j.Steps = append(j.Steps, jobs.Step{Name: s, Status: jobs.StepWaiting})
	}
	if err := h.Store.CreateJob(ctx, j); errors.Is(err, jobs.ErrExists) && key != "" {
		return h.replay(ctx, req, id)
	} else if err != nil {
		return nil, false, fmt.Errorf("record job: %w", err)
	}
	// Recorded: a client that went away must not fail the job (its retry replays it).
	ctx = context.WithoutCancel(ctx)
	if cerr := target.Create(ctx, id, objs); cerr != nil {
		failed, _, err := h.Store.UpdateJob(context.WithoutCancel(ctx), id, func(j *jobs.Job) (bool, error) {
			if j.Status.Terminal() {
				return false, nil
			}
			at := h.now()
			j.Status, j.Reason, j.Message = jobs.StatusFailed, ReasonCreateFailed, cerr.Error()
			j.FinishedAt, j.UpdatedAt = &at, at
			return true, nil
		})
		if err != nil {
			return nil, false, errors.Join(cerr, fmt.Errorf("record failure: %w", err))
		}
		h.emit(ctx, events.TypeJobChanged, failed, jobs.StatusPending)
		return nil, false, &CreateError{Job: failed, Err: cerr}
	}
	h.emit(ctx, events.TypeJobCreated, j, "")
	return j, false, nil
}

// replay answers a repeated submission with the job of the first one (jobs.ErrNotFound if that
// job was never recorded).
func (h *Handler) replay(ctx context.Context, req Request, id string) (*jobs.Job, bool, error) {
	j, err := h.Store.GetJob(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if j.Task != req.Task || j.Arch != req.Arch || j.Domain != req.Domain {
		return nil, false, jobs.Invalid("Idempotency-Key", "already used for job %s with another task, arch or domain", id)
	}
	// The process that recorded the job may have died before announcing it (a client retries
	// because it got no answer): announce it again. job.created's id does not change with the
	// job's revision, so receivers that got the first one de-duplicate this one.
	h.emit(context.WithoutCancel(ctx), events.TypeJobCreated, j, "")
	return j, true, nil
}

// emit sends e to the Broker. A failure is logged, not returned: the job is stored, and
// status-sync emits job.changed for every later change.
func (h *Handler) emit(ctx context.Context, typ string, j *jobs.Job, prev jobs.Status) {
	e, err := events.NewJobEvent(typ, Name, j, prev)
	if err == nil {
		err = h.Emitter.Emit(ctx, e)
	}
	if err != nil {
		logging.FromContext(ctx).Warnw("could not emit event", "type", typ, "job", j.ID, "error", err)
	}
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

func (h *Handler) idempotencyTTL() time.Duration {
	if h.IdempotencyTTL > 0 {
		return h.IdempotencyTTL
	}
	return 24 * time.Hour
}

// validate checks the fields the job types do not: names, labels, callback, key.
func validate(req Request, key string) error {
	if req.Service == "" {
		return jobs.Invalid("service", "required")
	}
	if errs := validation.IsDNS1123Label(req.Service); len(errs) > 0 {
		return jobs.Invalid("service", "must be a DNS label: %s", errs[0])
	}
	if req.Task == "" {
		return jobs.Invalid("task", "required")
	}
	if req.Arch == "" {
		return jobs.Invalid("arch", "required (x86_64 or aarch64)")
	}
	if len(req.Domain) > 253 {
		return jobs.Invalid("domain", "longer than 253 bytes")
	}
	if len(req.Labels) > 64 {
		return jobs.Invalid("labels", "more than 64 labels")
	}
	if err := manifest.CheckLabels(req.Labels); err != nil {
		return err
	}
	if req.Callback != "" {
		u, err := url.Parse(req.Callback)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return jobs.Invalid("callback", "must be an absolute http or https URL")
		}
	}
	if len(key) > 255 {
		return jobs.Invalid("Idempotency-Key", "longer than 255 bytes")
	}
	return nil
}

// KubePlacer places jobs on the configured build clusters.
type KubePlacer struct{ Clusters *kube.Clusters }

// Place picks an engine instance of arch.
func (k KubePlacer) Place(ctx context.Context, arch string) (Target, error) {
	c, err := k.Clusters.Pick(ctx, arch)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Settings are submit's own settings (its binary adds the store's, the clusters', the job
// types', the users' and the Broker sender's).
type Settings struct {
	// MaxBodyBytes limits request bodies. Default 1048576.
	MaxBodyBytes int64 `envconfig:"OMNI_MAX_BODY_BYTES" default:"1048576"`
	// RepoAllowList is the file of repository URL prefixes allowed per service (CheckRepos),
	// read at each submission; a missing file allows every repository. Default
	// /etc/omni/repos/allowlist.yaml.
	RepoAllowList string `envconfig:"OMNI_REPO_ALLOWLIST" default:"/etc/omni/repos/allowlist.yaml"`
	// JobTTLSecondsAfterFinished is set on every Kubernetes Job. Default 3600.
	JobTTLSecondsAfterFinished int32 `envconfig:"OMNI_JOB_TTL_SECONDS_AFTER_FINISHED" default:"3600"`
}

// Deps are what submit uses.
type Deps struct {
	Store     Store
	Catalogue func() Catalogue
	// Clusters places jobs and deletes their objects.
	Clusters interface {
		Placer
		Deleter
	}
	Emitter Emitter
	// Guard checks callback URLs: the one notify's dialer applies.
	Guard *callback.Guard
	// Authn wraps the /v1 routes in authentication.
	Authn func(http.Handler) http.Handler
	// Queue is the build queue's store, instances and policy; nil Queue.Store: no queue.
	Queue QueueDeps
}

// QueueDeps are what the dispatcher uses.
type QueueDeps struct {
	Store     QueueStore
	Instances Instances
	Policy    func() *queue.Policy
}

// New builds the submit handler.
func New(s Settings, d Deps) *Handler {
	ttl := s.JobTTLSecondsAfterFinished
	return &Handler{
		Store:                   d.Store,
		Catalogue:               d.Catalogue,
		Placer:                  d.Clusters,
		Deleter:                 d.Clusters,
		Emitter:                 d.Emitter,
		Guard:                   d.Guard,
		MaxBody:                 s.MaxBodyBytes,
		RepoAllowList:           s.RepoAllowList,
		TTLSecondsAfterFinished: &ttl,
		authn:                   d.Authn,
		Dispatcher:              newDispatcher(d.Queue),
	}
}

func newDispatcher(q QueueDeps) *Dispatcher {
	if q.Store == nil {
		return nil
	}
	return &Dispatcher{Store: q.Store, Instances: q.Instances, Policy: q.Policy}
}

// Function serves h: POST /v1/jobs and DELETE /v1/jobs/{id}; checks are its readiness checks.
func (h *Handler) Function(checks ...runtime.Check) *runtime.Function {
	authn := h.authn
	if authn == nil {
		authn = func(next http.Handler) http.Handler { return next }
	}
	return &runtime.Function{
		Name:   Name,
		Routes: func(mux *http.ServeMux) { h.Routes(mux, authn) },
		Checks: checks,
	}
}

// Mux is where routes are registered (*http.ServeMux is one); tests record the patterns.
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// Routes registers the submit routes on mux, wrapped in authn. The routes that change jobs also
// refuse a browser's cross-site request (403): a page of another site must not submit, cancel or
// rerun with the basic-auth credentials a browser keeps for the web console's origin (a rerun
// has no body, so a cross-site form could send one). API clients send no Sec-Fetch-Site or
// Origin and pass.
func (h *Handler) Routes(mux Mux, authn func(http.Handler) http.Handler) {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, r, fmt.Errorf("%s %s: a cross-site request from a browser: %w", r.Method, r.URL.Path, jobs.ErrForbidden))
	}))
	change := func(f http.HandlerFunc) http.Handler { return authn(csrf.Handler(f)) }
	mux.Handle("POST /v1/jobs", change(h.serveSubmit))
	mux.Handle("DELETE /v1/jobs/{id}", change(h.serveDelete))
	mux.Handle("POST /v1/jobs/{action}", change(h.serveRerun))
	if h.Dispatcher != nil {
		mux.Handle("GET /v1/queue", authn(http.HandlerFunc(h.serveQueue)))
		mux.Handle("POST /dispatch", runtime.CloudEvents(h.receiveDispatch))
		mux.Handle("POST /dispatch/resync", runtime.CloudEvents(h.receiveResync))
	}
}
