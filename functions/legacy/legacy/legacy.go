// Package legacy is the core of the legacy function: the predecessor's HTTP API (Go + Gin,
// 2022), which omni-manager speaks, served under a prefix and translated request by request
// into calls of the /v1 API of submit and query, as the caller (docs/compat.md).
package legacy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/ids"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/version"
)

// Name is the function's name (its Knative Service).
const Name = "legacy"

// Settings are legacy's own settings (its binary adds the releases file's).
type Settings struct {
	// Prefix is the path the legacy API is served under: omni-manager's base URL is
	// https://<user>:<password>@<host><Prefix>. Default /legacy.
	Prefix string `envconfig:"OMNI_LEGACY_PREFIX" default:"/legacy"`
	// SubmitURL is the base URL of submit's /v1 API (creates and stops go there). Default
	// http://submit.omni.svc.cluster.local.
	SubmitURL string `envconfig:"OMNI_LEGACY_SUBMIT_URL" default:"http://submit.omni.svc.cluster.local"`
	// QueryURL is the base URL of query's /v1 API (jobs and logs are read there). Default
	// http://query.omni.svc.cluster.local.
	QueryURL string `envconfig:"OMNI_LEGACY_QUERY_URL" default:"http://query.omni.svc.cluster.local"`
	// Timeout bounds each call of the /v1 API (omni-manager itself waits forever). Default 2m.
	Timeout time.Duration `envconfig:"OMNI_LEGACY_TIMEOUT" default:"2m"`
}

// Deps are what legacy uses.
type Deps struct {
	// Releases returns the current releases (version → repositories).
	Releases func() *Releases
	// Client sends the /v1 calls; nil: an http.Client with the settings' timeout.
	Client Doer
}

// Handler is the legacy function.
type Handler struct {
	prefix, submit, query string
	client                Doer
	releases              func() *Releases
}

// BatchChunk is how many ids one /v1 batchGet of a legacy batchQuery asks for (the /v1 API
// takes at most 500).
const BatchChunk = 100

// MaxBody bounds a legacy request body (a batchQuery may name many ids).
const MaxBody = 8 << 20

// MaxRecord is the most log lines one legacy log page returns (a larger maxRecord is clamped).
const MaxRecord = 10000

// New builds the legacy handler.
func New(s Settings, d Deps) (*Handler, error) {
	p := strings.TrimSuffix(s.Prefix, "/")
	if !strings.HasPrefix(p, "/") || p == "/v1" || strings.HasPrefix(p, "/v1/") || strings.ContainsAny(p, "{}?# ") {
		return nil, fmt.Errorf("OMNI_LEGACY_PREFIX %q: want a path such as /legacy, not /v1", s.Prefix)
	}
	for k, v := range map[string]string{"OMNI_LEGACY_SUBMIT_URL": s.SubmitURL, "OMNI_LEGACY_QUERY_URL": s.QueryURL} {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s %q: want an http(s) URL", k, v)
		}
	}
	c := d.Client
	if c == nil {
		c = &http.Client{Timeout: s.Timeout}
	}
	return &Handler{prefix: p, submit: s.SubmitURL, query: s.QueryURL, client: c, releases: d.Releases}, nil
}

// Mux is where routes are registered (*http.ServeMux is one); tests record the patterns.
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// Routes registers the legacy routes on mux, each path with and without a trailing slash
// (the predecessor's router answered both).
func (h *Handler) Routes(mux Mux) {
	for _, r := range []struct {
		method, path string
		fn           http.HandlerFunc
	}{
		{http.MethodPost, "/v1/jobs", h.serveCreate},
		{http.MethodGet, "/v1/jobs", h.serveGet},
		{http.MethodDelete, "/v1/jobs", h.serveStop},
		{http.MethodPost, "/v1/jobs/batchQuery", h.serveBatch},
		{http.MethodGet, "/v1/jobs/logs", h.serveLogs},
		{http.MethodGet, "/v1/health", h.serveHealth},
	} {
		mux.Handle(r.method+" "+h.prefix+r.path, r.fn)
		mux.Handle(r.method+" "+h.prefix+r.path+"/{$}", r.fn)
	}
}

// Function serves h's routes. It has no readiness check of its own: the /v1 functions it calls
// have theirs.
func (h *Handler) Function() *runtime.Function {
	return &runtime.Function{Name: Name, Routes: func(mux *http.ServeMux) { h.Routes(mux) }}
}

// writeJSON writes v as the predecessor did (Gin's c.JSON).
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// writeError answers err as {"error": …}: an *Error with its status; bad input 400; others
// with the status httpapi.Status gives them, and internal failures logged, once, here.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if errors.As(err, &e) {
		for k, v := range e.Header {
			w.Header()[k] = v
		}
		writeJSON(w, e.Code, map[string]string{"error": e.Message})
		return
	}
	code := httpapi.Status(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		logging.FromContext(r.Context()).Errorw("legacy request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		msg = "internal error"
	}
	writeJSON(w, code, map[string]string{"error": msg})
}

// identity is the service, task, domain and id a legacy request names.
type identity struct {
	service, task, domain, id string
}

// matches reports whether j is the job ident names: the predecessor looked jobs up by service,
// task, domain and id together.
func (ident identity) matches(j *jobs.Job) bool {
	return j.Service == ident.service && j.Task == ident.task && j.Domain == ident.domain
}

// queryIdentity reads service, task, domain and ID (or id) from the query string; each is required.
func queryIdentity(q url.Values) (identity, error) {
	ident := identity{service: q.Get("service"), task: q.Get("task"), domain: q.Get("domain"), id: q.Get("ID")}
	if ident.id == "" {
		ident.id = q.Get("id")
	}
	for _, f := range []struct{ name, v string }{{"service", ident.service}, {"task", ident.task}, {"domain", ident.domain}, {"ID", ident.id}} {
		if f.v == "" {
			return ident, jobs.Invalid(f.name, "required")
		}
	}
	return ident, nil
}

// jobOf reads the job r's query string names (see job).
func (h *Handler) jobOf(r *http.Request) (*jobs.Job, error) {
	ident, err := queryIdentity(r.URL.Query())
	if err != nil {
		return nil, err
	}
	return h.job(r, ident)
}

// job reads the job ident names through the /v1 API: errJobNotFound when it does not exist, is
// not visible to the caller, or is not of ident's service, task and domain.
func (h *Handler) job(r *http.Request, ident identity) (*jobs.Job, error) {
	if !ids.Valid(ident.id) {
		return nil, errJobNotFound // e.g. a UUID of the predecessor's jobs
	}
	var j jobs.Job
	if err := h.call(r, CallGetJob, ident.id, nil, nil, &j); err != nil {
		return nil, notFound(err)
	}
	if !ident.matches(&j) {
		return nil, errJobNotFound
	}
	return &j, nil
}

// view returns j in the legacy shape.
func (h *Handler) view(j *jobs.Job) *Job { return FromJob(j, SpecOf(j, h.releases())) }

// serveCreate: POST {prefix}/v1/jobs → POST /v1/jobs on submit.
func (h *Handler) serveCreate(w http.ResponseWriter, r *http.Request) {
	var req CreateRequest
	b, err := readBody(w, r)
	if err == nil {
		err = decodeCase(b, &req, "body")
	}
	var v1 V1Request
	if err == nil {
		v1, err = ToV1(req, h.releases())
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	var j jobs.Job
	if err := h.call(r, CallCreate, "", nil, v1, &j); err != nil {
		writeError(w, r, err)
		return
	}
	out := h.view(&j)
	// The answer to the create shows the spec as it was sent.
	var spec map[string]any
	if json.Unmarshal(req.Spec, &spec) == nil {
		out.Spec = spec
	}
	writeJSON(w, http.StatusCreated, out)
}

// readBody reads a legacy request body of at most MaxBody bytes, whatever its Content-Type
// (omni-manager sends batchQuery without one).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &Error{Code: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("body over %d bytes", MaxBody)}
	}
	if err != nil {
		return nil, jobs.Invalid("body", "read: %v", err)
	}
	return b, nil
}

// serveGet: GET {prefix}/v1/jobs?service&task&domain&ID → GET /v1/jobs/{id} on query.
func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request) {
	j, err := h.jobOf(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.view(j))
}

// BatchRequest is the body of a legacy batchQuery; field names match ignoring case.
type BatchRequest struct {
	Service string   `json:"service"`
	Task    string   `json:"task"`
	Domain  string   `json:"domain"`
	IDs     []string `json:"IDs"`
}

// serveBatch: POST {prefix}/v1/jobs/batchQuery → POST /v1/jobs:batchGet on query, BatchChunk
// ids at a time; the answer is a bare array of the jobs found, in the order asked.
func (h *Handler) serveBatch(w http.ResponseWriter, r *http.Request) {
	var req BatchRequest
	b, err := readBody(w, r)
	if err == nil {
		err = decodeCase(b, &req, "body")
	}
	if err == nil {
		for _, f := range []struct{ name, v string }{{"service", req.Service}, {"task", req.Task}, {"domain", req.Domain}} {
			if f.v == "" {
				err = jobs.Invalid(f.name, "required")
				break
			}
		}
	}
	if err == nil && req.IDs == nil {
		err = jobs.Invalid("IDs", "required")
	}
	var found []*Job
	if err == nil {
		found, err = h.batch(r, identity{service: req.Service, task: req.Task, domain: req.Domain}, req.IDs)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, found)
}

// batch returns the jobs among ids of ident's service, task and domain that the caller may see.
func (h *Handler) batch(r *http.Request, ident identity, idList []string) ([]*Job, error) {
	var want []string
	seen := map[string]bool{}
	for _, id := range idList {
		if ids.Valid(id) && !seen[id] {
			seen[id] = true
			want = append(want, id)
		}
	}
	found := []*Job{}
	for start := 0; start < len(want); start += BatchChunk {
		chunk := want[start:min(start+BatchChunk, len(want))]
		var resp struct {
			Jobs []*jobs.Job `json:"jobs"`
		}
		if err := h.call(r, CallBatchGet, "", nil, map[string]any{"ids": chunk}, &resp); err != nil {
			return nil, err
		}
		for _, j := range resp.Jobs {
			if ident.matches(j) {
				found = append(found, h.view(j))
			}
		}
	}
	return found, nil
}

// serveStop: DELETE {prefix}/v1/jobs?service&task&domain&ID → DELETE /v1/jobs/{id} on submit,
// for a job that has not ended only (the /v1 DELETE of an ended job would delete its objects).
func (h *Handler) serveStop(w http.ResponseWriter, r *http.Request) {
	j, err := h.jobOf(r)
	if err == nil && j.Status.Terminal() {
		err = finished(j)
	}
	if err == nil {
		var after jobs.Job
		err = notFound(h.call(r, CallCancel, j.ID, nil, nil, &after))
		if err == nil && after.Status != jobs.StatusCancelled {
			err = finished(&after) // it ended by itself just before the cancel
		}
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, "")
}

// finished is the predecessor's answer to stopping a job that has ended.
func finished(j *jobs.Job) error {
	return &Error{Code: http.StatusInternalServerError, Message: fmt.Sprintf("unable to delete job %s/%s, it's already finished", j.Namespace, j.ID)}
}

// The headers of a legacy log page.
const (
	HeaderLogPosition  = "logTimeUUID"
	HeaderLogCompleted = "logCompleted"
)

// logPage is the part of a /v1 log page the layer uses.
type logPage struct {
	Lines []struct {
		Text string `json:"text"`
	} `json:"lines"`
	Cursor     string `json:"cursor"`
	Complete   bool   `json:"complete"`
	Incomplete bool   `json:"incomplete"`
}

// serveLogs: GET {prefix}/v1/jobs/logs?service&task&domain&ID&stepID&startTimeUUID&maxRecord →
// GET /v1/jobs/{id}/logs?step&after&limit on query. startTimeUUID carries the /v1 cursor.
func (h *Handler) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ident, err := queryIdentity(q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	step, err := strconv.Atoi(q.Get("stepID"))
	if err != nil || step < 1 {
		writeError(w, r, jobs.Invalid("stepID", "want a step number from 1"))
		return
	}
	limit := 1000
	if v := q.Get("maxRecord"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(w, r, jobs.Invalid("maxRecord", "want a number"))
			return
		}
		limit = int(max(1, min(n, MaxRecord)))
	}
	j, err := h.job(r, ident)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if step > len(j.Steps) {
		writeError(w, r, jobs.Invalid("stepID", "job %s has %d steps", j.ID, len(j.Steps)))
		return
	}
	v1q := url.Values{"step": {j.Steps[step-1].Name}, "limit": {strconv.Itoa(limit)}}
	if pos := q.Get("startTimeUUID"); pos != "" {
		v1q.Set("after", pos)
	}
	var page logPage
	if err := h.call(r, CallLogs, j.ID, v1q, nil, &page); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == http.StatusBadRequest {
			e.Message = strings.Replace(e.Message, "after", "startTimeUUID", 1)
		}
		writeError(w, r, notFound(err))
		return
	}
	done := page.Complete || page.Incomplete
	if len(page.Lines) == 0 && !done {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "job log not found"})
		return
	}
	var body strings.Builder
	for _, l := range page.Lines {
		body.WriteString(l.Text)
		body.WriteByte('\n')
	}
	w.Header().Set(HeaderLogPosition, page.Cursor)
	w.Header().Set(HeaderLogCompleted, strconv.FormatBool(done))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, body.String())
}

// Health is the body of GET {prefix}/v1/health.
type Health struct {
	Status string     `json:"Status"`
	Info   HealthInfo `json:"Info"`
}

// HealthInfo names the build.
type HealthInfo struct {
	Tag       string `json:"tag"`
	CommitID  string `json:"commitID"`
	ReleaseAt string `json:"releaseAt"`
}

func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	info := HealthInfo{Tag: version.Version, CommitID: version.Commit, ReleaseAt: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				info.ReleaseAt = s.Value
			}
		}
	}
	writeJSON(w, http.StatusOK, Health{Status: "up", Info: info})
}
