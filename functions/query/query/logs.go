package query

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// JobGetter reads jobs.
type JobGetter interface {
	GetJob(ctx context.Context, id string) (*jobs.Job, error)
}

// LogStore is what the log routes need of the log store: the archived chunks of a step and the
// archive state of a job's steps.
type LogStore interface {
	LogChunks(ctx context.Context, jobID, step, source string, after int64, limit int) ([]store.LogChunk, error)
	LogSteps(ctx context.Context, jobID string) ([]store.LogStep, error)
}

// LiveLogs reads a step's log from the job's cluster while its pod is there.
type LiveLogs interface {
	// StepState reports the job's pod and where the step's container stands in it.
	StepState(ctx context.Context, j *jobs.Job, step string) (StepState, error)
	// OpenLog streams the log of the step's container in pod, each line prefixed with its
	// timestamp (shared/logs reads it): from its first line, or from the lines stamped since
	// o.Since; with o.Follow it stays open while the container runs.
	OpenLog(ctx context.Context, j *jobs.Job, pod, step string, o kube.LogOptions) (io.ReadCloser, error)
}

// ContainerPhase is where a step's container stands on the cluster.
type ContainerPhase int

// The container phases. NoPod: the job has no pod (not yet, or no more).
const (
	NoPod ContainerPhase = iota
	ContainerWaiting
	ContainerRunning
	ContainerTerminated
)

func (p ContainerPhase) String() string {
	return [...]string{"no pod", "waiting", "running", "terminated"}[p]
}

// StepState is the answer of LiveLogs.StepState.
type StepState struct {
	// Pod is the name of the job's pod ("" with NoPod).
	Pod   string
	Phase ContainerPhase
}

// started reports whether the container has a log to read.
func (s StepState) started() bool {
	return s.Phase == ContainerRunning || s.Phase == ContainerTerminated
}

// LogHandler serves the log routes of the query function.
type LogHandler struct {
	Jobs   JobGetter
	Store  LogStore
	Live   LiveLogs
	Tokens *Tokens
	// Stop ends follow streams (on SIGTERM), so that the drain does not wait for them; clients
	// resume with their cursor on another replica. Nil: never.
	Stop <-chan struct{}
	// PollMin and PollMax bound the interval at which a follow stream polls the store, the job
	// and the cluster while it waits (the interval doubles from PollMin up to PollMax). Defaults
	// 200ms and 2s.
	PollMin, PollMax time.Duration
	// LivePoll is how often a live stream checks whether its container has ended (a runtime's
	// follow stream may stay open after that, as kwok's does). Default 1s.
	LivePoll time.Duration
	// Heartbeat is the longest a follow stream stays silent: then it sends an SSE comment, so
	// that proxies keep the connection. Default 15s.
	Heartbeat time.Duration
}

// Page and download limits.
const (
	// DefaultLogLimit and MaxLogLimit bound the lines of one page.
	DefaultLogLimit = 1000
	MaxLogLimit     = 10000
	// maxPageBytes bounds the text of one page (at least one line is always returned).
	maxPageBytes = 4 << 20
	// downloadBuffer is how much of a download is written at once.
	downloadBuffer = 256 << 10
)

// Routes registers the log routes on mux, wrapped in authn.
func (h *LogHandler) Routes(mux Mux, authn func(http.Handler) http.Handler) {
	mux.Handle("GET /v1/jobs/{id}/logs", authn(http.HandlerFunc(h.serveLogs)))
	mux.Handle("GET /v1/jobs/{id}/logs/{file}", authn(http.HandlerFunc(h.serveDownload)))
}

// job returns job id if p may see it; otherwise jobs.ErrNotFound, as if it did not exist.
func (h *LogHandler) job(ctx context.Context, p *auth.Principal, id string) (*jobs.Job, error) {
	j, err := h.Jobs.GetJob(ctx, id)
	if err != nil {
		return nil, err
	}
	if !p.Can(auth.RoleViewer, j.Service) {
		return nil, fmt.Errorf("job %s: %w", id, jobs.ErrNotFound)
	}
	return j, nil
}

// stepOf returns the step named name of j (the first step when name is empty).
// attemptStep resolves the attempt and step of a log request: the job as that attempt ran
// (jobs.Job.AttemptView; attempt "" is the current one) and the key of the step's log
// (jobs.LogStepKey; step "" is the first).
func attemptStep(j *jobs.Job, attempt, step string) (*jobs.Job, string, error) {
	n := j.CurrentAttempt()
	if attempt != "" {
		var err error
		if n, err = strconv.Atoi(attempt); err != nil || n < 1 {
			return nil, "", jobs.Invalid("attempt", "want an attempt number from 1 to %d", j.CurrentAttempt())
		}
	}
	v, ok := j.AttemptView(n)
	if !ok {
		return nil, "", jobs.Invalid("attempt", "job %s has attempts 1 to %d", j.ID, j.CurrentAttempt())
	}
	name, err := stepOf(v, step)
	if err != nil {
		return nil, "", err
	}
	return v, jobs.LogStepKey(name, n), nil
}

// viewOf returns j as the attempt of the log key ran (j itself for the current attempt, or an
// attempt j does not know).
func viewOf(j *jobs.Job, key string) *jobs.Job {
	_, n := jobs.SplitLogStepKey(key)
	if v, ok := j.AttemptView(n); ok {
		return v
	}
	return j
}

func stepOf(j *jobs.Job, name string) (string, error) {
	if len(j.Steps) == 0 {
		return "", jobs.Invalid("step", "job %s has no steps", j.ID)
	}
	if name == "" {
		return j.Steps[0].Name, nil
	}
	names := make([]string, len(j.Steps))
	for i, s := range j.Steps {
		if s.Name == name {
			return name, nil
		}
		names[i] = s.Name
	}
	return "", jobs.Invalid("step", "job %s has no step %q (steps: %s)", j.ID, name, strings.Join(names, ", "))
}

// LogLine is one line of a step's log.
type LogLine struct {
	// N is the line number, from 1.
	N int64 `json:"n"`
	// Time is the cluster's timestamp of the line, when known: lines read live from the cluster
	// have one; the archive keeps times per chunk, not per line.
	Time *time.Time `json:"time,omitempty"`
	// Text is the line without its newline.
	Text string `json:"text"`
}

// LogPage is the answer of GET /v1/jobs/{id}/logs without follow.
type LogPage struct {
	Step  string    `json:"step"`
	Lines []LogLine `json:"lines"`
	// Cursor is the position after the last line of the page (or the asked position when the
	// page is empty): pass it back as `after`.
	Cursor string `json:"cursor"`
	// Source is where the lines came from: "archive", or "cluster" while the step is not
	// archived yet; "push" for the lines the worker pushed (?source=push).
	Source string `json:"source"`
	// Complete: the step's whole log is archived and the page reaches its end; nothing more
	// will come. Of the pushed lines: the job has ended and the page reaches their end.
	Complete bool `json:"complete"`
	// Incomplete: the step's log is archived as far as it could be (the pod went away first)
	// and the page reaches the end of it; nothing more will come. Of the pushed lines: the job
	// has ended and a push is missing (never stored) after the page's lines. Reason says why.
	Incomplete bool   `json:"incomplete"`
	Reason     string `json:"reason,omitempty"`
}

// logRequest is a parsed request of GET /v1/jobs/{id}/logs.
type logRequest struct {
	job  *jobs.Job
	step string
	// stream is "" (the log the cluster served, live or archived) or streamPushed.
	stream string
	pos    logs.Pos
	limit  int
	follow bool
	text   bool
	// resumed: the position came from Last-Event-ID (an EventSource reconnecting).
	resumed bool
}

func (h *LogHandler) parseLogRequest(r *http.Request) (logRequest, error) {
	var lr logRequest
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "step", "attempt", "after", "limit", "follow", "format", "source":
		default:
			return lr, jobs.Invalid(k, "unknown query parameter")
		}
	}
	j, err := h.job(r.Context(), auth.FromContext(r.Context()), r.PathValue("id"))
	if err != nil {
		return lr, err
	}
	if lr.job, lr.step, err = attemptStep(j, q.Get("attempt"), q.Get("step")); err != nil {
		return lr, err
	}
	if lr.stream, err = streamOf(q); err != nil {
		return lr, err
	}
	switch f := q.Get("format"); f {
	case "", "json":
	case "text":
		lr.text = true
	default:
		return lr, jobs.Invalid("format", "want json or text, got %q", f)
	}
	if v := q.Get("follow"); v != "" {
		if lr.follow, err = strconv.ParseBool(v); err != nil {
			return lr, jobs.Invalid("follow", "want true or false")
		}
	}
	if lr.text && (lr.follow || q.Has("after") || q.Has("limit")) {
		return lr, jobs.Invalid("format", "format=text downloads the whole step: no follow, after or limit")
	}
	lr.limit = DefaultLogLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLogLimit {
			return lr, jobs.Invalid("limit", "want an integer from 1 to %d", MaxLogLimit)
		}
		lr.limit = n
	}
	if c := q.Get("after"); c != "" {
		if lr.pos, err = h.Tokens.openCursor("after", c, j.ID, lr.step, lr.stream); err != nil {
			return lr, err
		}
	} else if c := r.Header.Get("Last-Event-ID"); c != "" && lr.follow {
		if lr.pos, err = h.Tokens.openCursor("Last-Event-ID", c, j.ID, lr.step, lr.stream); err != nil {
			return lr, err
		}
		lr.resumed = true
	}
	return lr, nil
}

func (h *LogHandler) serveLogs(w http.ResponseWriter, r *http.Request) {
	lr, err := h.parseLogRequest(r)
	switch {
	case err != nil:
		httpapi.Error(w, r, err)
	case lr.text:
		h.download(w, r, lr.job, lr.step, lr.stream)
	case lr.follow:
		h.follow(w, r, lr)
	default:
		pager := h.Page
		if lr.stream == streamPushed {
			pager = h.PushedPage
		}
		page, err := pager(r.Context(), lr.job, lr.step, lr.pos, lr.limit)
		if err != nil {
			httpapi.Error(w, r, err)
			return
		}
		httpapi.JSON(w, http.StatusOK, page)
	}
}

// logStep returns the archive state of step of job (zero if it has none yet).
func (h *LogHandler) logStep(ctx context.Context, jobID, step string) (store.LogStep, error) {
	all, err := h.Store.LogSteps(ctx, jobID)
	if err != nil {
		return store.LogStep{}, fmt.Errorf("read log state of job %s: %w", jobID, err)
	}
	for _, s := range all {
		if s.Step == step {
			return s, nil
		}
	}
	return store.LogStep{JobID: jobID, Step: step}, nil
}

// final reports whether a step's archive will not change any more.
func final(s store.LogStep) bool { return s.Complete || s.Incomplete }

// atArchiveEnd reports whether pos is known to be at the end of the step's whole archive
// without reading it: the line count of a complete archive is counted in the pass that stored
// every chunk. (An incomplete one may hold chunks of an interrupted pass that it does not count.)
func atArchiveEnd(s store.LogStep, pos logs.Pos) bool { return s.Complete && pos.N >= s.Lines }

// archiveLines is the line source of the step's archive after pos.
func (h *LogHandler) archiveLines(ctx context.Context, jobID, step string, pos logs.Pos) logs.Lines {
	return logs.Archive(ctx, h.Store, jobID, step, pos)
}

// clusterLines is the line source of the step's container in pod after pos; with follow it
// goes on while the container runs. It asks the cluster only for the lines since pos (its
// cluster hint), so a page or a resumed stream does not re-read the log from line 1.
func (h *LogHandler) clusterLines(ctx context.Context, j *jobs.Job, pod, step string, pos logs.Pos, follow bool) (*logs.ClusterLines, error) {
	return logs.Cluster(ctx, func(ctx context.Context, since time.Time) (io.ReadCloser, error) {
		return h.Live.OpenLog(ctx, j, pod, step, kube.LogOptions{Follow: follow, Since: since})
	}, pos)
}

// fill calls add with each line of src until add returns false or src has no more now; it
// returns the position after the last line given and whether src had no more.
func fill(src logs.Lines, add func(LogLine) bool) (logs.Pos, bool, error) {
	for {
		l, err := src.Next()
		if errors.Is(err, io.EOF) {
			return src.Pos(), true, nil
		}
		if err != nil {
			return src.Pos(), false, err
		}
		if !add(logLine(l)) {
			return src.Pos(), false, nil
		}
	}
}

// Page returns up to limit lines of the step's log after pos: from the archive once the step is
// archived, from the cluster before.
func (h *LogHandler) Page(ctx context.Context, j *jobs.Job, step string, pos logs.Pos, limit int) (LogPage, error) {
	page := LogPage{Step: step, Lines: []LogLine{}, Source: "archive"}
	st, err := h.logStep(ctx, j.ID, step)
	if err != nil {
		return page, err
	}
	size := 0
	add := func(l LogLine) bool {
		page.Lines = append(page.Lines, l)
		size += len(l.Text)
		return len(page.Lines) < limit && size < maxPageBytes
	}
	end := pos
	atEnd := false
	if !final(st) && h.Live != nil {
		if state, err := h.Live.StepState(ctx, j, step); err == nil && state.started() {
			page.Source = "cluster"
			if end, err = h.livePage(ctx, j, step, state.Pod, pos, add); err != nil {
				// The pod may have just gone; what the archive holds is the answer then.
				logging.FromContext(ctx).Debugw("read live log for a page", "job", j.ID, "step", step, "error", err)
				page.Source, page.Lines, size, end = "archive", page.Lines[:0], 0, pos
			}
		}
	}
	if page.Source == "archive" {
		if atArchiveEnd(st, pos) {
			atEnd = true
		} else if end, atEnd, err = fill(h.archiveLines(ctx, j.ID, step, pos), add); err != nil {
			return page, err
		}
	}
	page.Cursor = h.Tokens.sealCursor(j.ID, step, "", end)
	if final(st) && atEnd {
		page.Complete, page.Incomplete, page.Reason = st.Complete, !st.Complete && st.Incomplete, st.Reason
	}
	return page, nil
}

// livePage reads a page of the step's log from the cluster, without follow.
func (h *LogHandler) livePage(ctx context.Context, j *jobs.Job, step, pod string, pos logs.Pos, add func(LogLine) bool) (logs.Pos, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src, err := h.clusterLines(ctx, j, pod, step, pos, false)
	if err != nil {
		return pos, err
	}
	defer src.Close()
	end, _, err := fill(src, add)
	if err != nil {
		return pos, fmt.Errorf("read log of %s/%s: %w", pod, step, err)
	}
	return end, nil
}

// logLine is the API form of a numbered line.
func logLine(l logs.Numbered) LogLine {
	ll := LogLine{N: l.N, Text: string(l.Text)}
	if !l.Time.IsZero() {
		t := l.Time
		ll.Time = &t
	}
	return ll
}

// errNotArchived answers a download of a step whose log is not archived yet.
var errNotArchived = fmt.Errorf("the step's log is not archived yet (it is while the job runs and until log-archive has stored it at the job's end): follow it with ?follow=true, or download once the job has ended: %w", jobs.ErrConflict)

func (h *LogHandler) serveDownload(w http.ResponseWriter, r *http.Request) {
	step, ok := strings.CutSuffix(r.PathValue("file"), ":download")
	if !ok {
		httpapi.Error(w, r, fmt.Errorf("%s: %w (the download is /v1/jobs/{id}/logs/{step}:download)", r.URL.Path, jobs.ErrNotFound))
		return
	}
	for k := range r.URL.Query() {
		if k != "attempt" && k != "source" {
			httpapi.Error(w, r, jobs.Invalid(k, "unknown query parameter"))
			return
		}
	}
	stream, err := streamOf(r.URL.Query())
	var j *jobs.Job
	if err == nil {
		j, err = h.job(r.Context(), auth.FromContext(r.Context()), r.PathValue("id"))
	}
	if err == nil {
		if step == "" {
			err = jobs.Invalid("step", "required: /v1/jobs/{id}/logs/{step}:download")
		} else {
			j, step, err = attemptStep(j, r.URL.Query().Get("attempt"), step)
		}
	}
	if err != nil {
		httpapi.Error(w, r, err)
		return
	}
	h.download(w, r, j, step, stream)
}

// download writes the whole archived log of step (or, with streamPushed, every line its worker
// pushed) as text, streamed chunk by chunk.
func (h *LogHandler) download(w http.ResponseWriter, r *http.Request, j *jobs.Job, step, stream string) {
	ctx := r.Context()
	var st store.LogStep
	var err error
	var src *logs.ArchiveLines
	if stream == streamPushed {
		// The pushed lines are whole once the job has ended: only a running job takes pushes.
		if !j.Status.Terminal() {
			w.Header().Set("Retry-After", "10")
			err = fmt.Errorf("download pushed lines of job %s step %s: %w", j.ID, step, errPushNotEnded)
		}
		src = logs.Pushed(ctx, h.Store, j.ID, step, logs.Pos{})
	} else {
		st, err = h.logStep(ctx, j.ID, step)
		if err == nil && !final(st) {
			w.Header().Set("Retry-After", "10")
			err = fmt.Errorf("download log of job %s step %s: %w", j.ID, step, errNotArchived)
		}
		src = logs.Archive(ctx, h.Store, j.ID, step, logs.Pos{})
	}
	var first logs.Numbered
	if err == nil {
		// The first read decides the status: a store that fails now is a problem document.
		if first, err = src.Next(); errors.Is(err, io.EOF) {
			first.N, err = 0, nil
		}
	}
	if err != nil {
		httpapi.Error(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	if stream == streamPushed {
		hd.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.pushed.log"`, j.ID, step))
		// Whether a push is missing is known at the end of the body: the status is a trailer.
		hd.Set("Trailer", "Omni-Log-Status, Omni-Log-Incomplete-Reason")
	} else {
		hd.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.log"`, j.ID, step))
	}
	switch {
	case stream == streamPushed:
	case st.Complete:
		hd.Set("Omni-Log-Status", "complete")
	default:
		hd.Set("Omni-Log-Status", "incomplete")
		hd.Set("Omni-Log-Incomplete-Reason", strings.Map(func(r rune) rune {
			if r < ' ' || r > '~' {
				return ' '
			}
			return r
		}, st.Reason))
	}
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, downloadBuffer)
	for l := first; l.N > 0; {
		bw.Write(l.Text)
		if err := bw.WriteByte('\n'); err != nil {
			return // the client went away
		}
		if l, err = src.Next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			// Too late for a status: cut the body short, so the client sees a broken download.
			logging.FromContext(ctx).Errorw("download log", "job", j.ID, "step", step, "error", err)
			panic(http.ErrAbortHandler)
		}
	}
	switch {
	case stream == streamPushed && src.Gap():
		hd.Set("Omni-Log-Status", "incomplete")
		hd.Set("Omni-Log-Incomplete-Reason", pushGapReason(src.Pos()))
	case stream == streamPushed:
		hd.Set("Omni-Log-Status", "complete")
	case src.Gap():
		logging.FromContext(ctx).Warnw("archived log has a gap", "job", j.ID, "step", step, "after", src.Pos().N)
	}
	_ = bw.Flush()
}
