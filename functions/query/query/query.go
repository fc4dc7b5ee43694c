// Package query is the core of the query function: jobs by id, lists with signed page tokens,
// batch get, the job type catalogue, the caller's identity, the OpenAPI document and the web
// console (/ui/).
package query

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Store is what query needs of the job store.
type Store interface {
	GetJob(ctx context.Context, id string) (*jobs.Job, error)
	BatchGet(ctx context.Context, ids []string) ([]*jobs.Job, error)
	ListJobs(ctx context.Context, f store.Filter) (store.Page, error)
}

// Catalogue lists the job types.
type Catalogue interface {
	Tasks() []manifest.Task
}

// Handler is the query function.
type Handler struct {
	Store     Store
	Catalogue func() Catalogue
	// Tokens signs and checks page tokens.
	Tokens *Tokens
	// Logs serves the log routes (none when nil).
	Logs *LogHandler
	// Follows bounds the follow streams of the log routes (nil: unbounded).
	Follows *FollowLimit
	// authn wraps the /v1 routes in authentication (New sets it).
	authn func(http.Handler) http.Handler
}

// Name is the function's name.
const Name = "query"

// MaxBatch is the most ids one batchGet takes.
const MaxBatch = 500

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document of the project's HTTP API.
func OpenAPI() []byte { return openAPI }

// Mux is where routes are registered (*http.ServeMux is one); tests record the patterns.
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// Routes registers the query routes on mux: the /v1 ones and the web console wrapped in authn,
// the OpenAPI document without.
func (h *Handler) Routes(mux Mux, authn func(http.Handler) http.Handler) {
	mux.Handle("GET /v1/jobs/{id}", authn(http.HandlerFunc(h.serveGet)))
	mux.Handle("GET /v1/jobs", authn(http.HandlerFunc(h.serveList)))
	mux.Handle("POST /v1/jobs:batchGet", authn(http.HandlerFunc(h.serveBatchGet)))
	mux.Handle("GET /v1/tasks", authn(http.HandlerFunc(h.serveTasks)))
	mux.Handle("GET /v1/me", authn(http.HandlerFunc(h.serveMe)))
	mux.Handle("GET "+ConsolePrefix, authn(console()))
	if h.Logs != nil {
		// Log follows and downloads stream: no write deadline, and follows are bounded.
		h.Logs.Routes(mux, func(next http.Handler) http.Handler {
			return runtime.NoWriteDeadline(authn(h.Follows.Wrap(next)))
		})
	}
	mux.Handle("GET /openapi.json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	}))
}

// Settings are query's own settings (its binary adds the store's, the clusters', the job
// types' and the users').
type Settings struct {
	// PageTokenKey signs page tokens and log cursors (base64, ≥ 32 bytes); every replica must
	// share it. Empty (the default) makes a random key: tokens then only work on the replica
	// that made them.
	PageTokenKey string `envconfig:"OMNI_PAGE_TOKEN_KEY"`
	// FollowsPerUser is the most log follow streams (`follow=true`) one user may hold open on a
	// replica; past it the answer is 429 with Retry-After. Default 20; 0 is unlimited.
	FollowsPerUser int `envconfig:"OMNI_FOLLOWS_PER_USER" default:"20"`
	// Follows is the most log follow streams open on a replica, everyone's together. Default
	// 500; 0 is unlimited.
	Follows int `envconfig:"OMNI_FOLLOWS" default:"500"`
}

// TokenKey returns the page token key s names, or a random one (with a warning) when unset.
func (s Settings) TokenKey(ctx context.Context) ([]byte, error) {
	if s.PageTokenKey == "" {
		logging.FromContext(ctx).Warn("OMNI_PAGE_TOKEN_KEY is not set: page tokens are valid on this replica only")
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		return k, nil
	}
	k, err := base64.StdEncoding.DecodeString(s.PageTokenKey)
	if err != nil || len(k) < 32 {
		return nil, fmt.Errorf("OMNI_PAGE_TOKEN_KEY: want base64 of at least 32 bytes")
	}
	return k, nil
}

// Deps are what query uses.
type Deps struct {
	Store     Store
	Logs      LogStore
	Catalogue func() Catalogue
	// Live reads the logs of running steps from their cluster.
	Live LiveLogs
	// Authn wraps the /v1 routes in authentication.
	Authn func(http.Handler) http.Handler
}

// New builds the query handler; its log follows end when ctx does.
func New(ctx context.Context, s Settings, d Deps) (*Handler, error) {
	key, err := s.TokenKey(ctx)
	if err != nil {
		return nil, err
	}
	h := &Handler{Store: d.Store, Catalogue: d.Catalogue, Tokens: NewTokens(key), authn: d.Authn,
		Follows: &FollowLimit{PerUser: s.FollowsPerUser, Total: s.Follows}}
	h.Logs = &LogHandler{Jobs: visibleJobs{d.Store}, Store: d.Logs, Live: d.Live, Tokens: h.Tokens, Stop: ctx.Done()}
	return h, nil
}

// Function serves h's routes; checks are its readiness checks.
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

// Get returns job id if p may see it; otherwise jobs.ErrNotFound, as if it did not exist.
func (h *Handler) Get(ctx context.Context, p *auth.Principal, id string) (*jobs.Job, error) {
	j, err := visibleJobs{h.Store}.GetJob(ctx, id)
	if err != nil {
		return nil, err
	}
	if p == nil || !p.Can(auth.RoleViewer, j.Service) {
		return nil, jobs.NotFound(id)
	}
	return j, nil
}

// visibleJobs reads jobs for the API: a job that does not exist is jobs.NotFound, the very
// error of a job the caller may not see.
type visibleJobs struct{ JobGetter }

func (v visibleJobs) GetJob(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := v.JobGetter.GetJob(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, jobs.NotFound(id)
	}
	return j, err
}

func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request) {
	j, err := h.Get(r.Context(), auth.FromContext(r.Context()), r.PathValue("id"))
	if err != nil {
		httpapi.Error(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, j.Redacted())
}

// redacted returns js with their callback URLs redacted (jobs.Job.Redacted).
func redacted(js []*jobs.Job) []*jobs.Job {
	out := make([]*jobs.Job, len(js))
	for i, j := range js {
		out[i] = j.Redacted()
	}
	return out
}

// ListResponse is the body of GET /v1/jobs.
type ListResponse struct {
	Jobs          []*jobs.Job `json:"jobs"`
	NextPageToken string      `json:"nextPageToken,omitempty"`
}

func (h *Handler) serveList(w http.ResponseWriter, r *http.Request) {
	f, err := h.parseFilter(r)
	if err == nil {
		var resp ListResponse
		resp, err = h.List(r.Context(), auth.FromContext(r.Context()), f)
		if err == nil {
			resp.Jobs = redacted(resp.Jobs)
			httpapi.JSON(w, http.StatusOK, resp)
			return
		}
	}
	httpapi.Error(w, r, err)
}

// List returns one page of jobs matching f. f.Cursor is the client's page token.
func (h *Handler) List(ctx context.Context, p *auth.Principal, f store.Filter) (ListResponse, error) {
	if f.Service == "" && p != nil {
		if only, ok := p.OnlyService(); ok {
			f.Service = only
		}
	}
	if f.Service == "" {
		return ListResponse{}, jobs.Invalid("service", "required")
	}
	if p == nil || !p.Can(auth.RoleViewer, f.Service) {
		return ListResponse{}, fmt.Errorf("list jobs of service %q: %w", f.Service, jobs.ErrForbidden)
	}
	if f.Cursor != "" {
		c, err := h.Tokens.Open(f.Cursor, f)
		if err != nil {
			return ListResponse{}, err
		}
		f.Cursor = c
	}
	page, err := h.Store.ListJobs(ctx, f)
	if err != nil {
		return ListResponse{}, err
	}
	resp := ListResponse{Jobs: page.Jobs}
	if resp.Jobs == nil {
		resp.Jobs = []*jobs.Job{}
	}
	if page.Next != "" {
		resp.NextPageToken = h.Tokens.Seal(page.Next, f)
	}
	return resp, nil
}

func (h *Handler) parseFilter(r *http.Request) (store.Filter, error) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "service", "task", "domain", "status", "since", "until", "limit", "page_token":
		default:
			return store.Filter{}, jobs.Invalid(k, "unknown query parameter")
		}
	}
	f := store.Filter{Service: q.Get("service"), Task: q.Get("task"), Domain: q.Get("domain"),
		Status: jobs.Status(q.Get("status")), Cursor: q.Get("page_token")}
	if f.Status != "" && !f.Status.Valid() {
		return f, jobs.Invalid("status", "unknown status %q (want one of %v)", f.Status, jobs.Statuses)
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, jobs.Invalid(name, "want an RFC 3339 time such as 2026-11-27T19:00:00Z")
			}
			*dst = t.UTC()
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, jobs.Invalid("until", "must be after since")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, jobs.Invalid("limit", "want an integer from 1 to 1000")
		}
		f.Limit = n
	}
	return f, nil
}

// BatchRequest is the body of POST /v1/jobs:batchGet.
type BatchRequest struct {
	IDs []string `json:"ids"`
}

// BatchResponse lists the jobs found, in the order asked, and the ids not found (or not visible).
type BatchResponse struct {
	Jobs    []*jobs.Job `json:"jobs"`
	Missing []string    `json:"missing"`
}

func (h *Handler) serveBatchGet(w http.ResponseWriter, r *http.Request) {
	var req BatchRequest
	if err := httpapi.Decode(w, r, 64<<10, &req); err != nil {
		httpapi.Error(w, r, err)
		return
	}
	resp, err := h.BatchGet(r.Context(), auth.FromContext(r.Context()), req.IDs)
	if err != nil {
		httpapi.Error(w, r, err)
		return
	}
	resp.Jobs = redacted(resp.Jobs)
	httpapi.JSON(w, http.StatusOK, resp)
}

// BatchGet returns the jobs among ids that p may see.
func (h *Handler) BatchGet(ctx context.Context, p *auth.Principal, ids []string) (BatchResponse, error) {
	if len(ids) == 0 {
		return BatchResponse{}, jobs.Invalid("ids", "required: at least one id")
	}
	if len(ids) > MaxBatch {
		return BatchResponse{}, jobs.Invalid("ids", "at most %d ids per call", MaxBatch)
	}
	found, err := h.Store.BatchGet(ctx, ids)
	if err != nil {
		return BatchResponse{}, err
	}
	resp := BatchResponse{Jobs: []*jobs.Job{}, Missing: []string{}}
	seen := map[string]bool{}
	for _, j := range found {
		if p != nil && p.Can(auth.RoleViewer, j.Service) {
			resp.Jobs = append(resp.Jobs, j)
			seen[j.ID] = true
		}
	}
	for _, id := range ids {
		if !seen[id] {
			resp.Missing = append(resp.Missing, id)
		}
	}
	return resp, nil
}

// TasksResponse is the body of GET /v1/tasks.
type TasksResponse struct {
	Tasks []manifest.Task `json:"tasks"`
}

func (h *Handler) serveTasks(w http.ResponseWriter, r *http.Request) {
	httpapi.JSON(w, http.StatusOK, TasksResponse{Tasks: h.Catalogue().Tasks()})
}
