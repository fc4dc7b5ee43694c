package query

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// fakeJobs is a JobGetter whose jobs tests change.
type fakeJobs struct {
	mu   sync.Mutex
	jobs map[string]*jobs.Job
}

var _ JobGetter = (*fakeJobs)(nil)

func (f *fakeJobs) GetJob(_ context.Context, id string) (*jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, fmt.Errorf("job %s: %w", id, jobs.ErrNotFound)
	}
	return j.Clone(), nil
}

func (f *fakeJobs) setStatus(id string, s jobs.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[id].Status = s
}

// fakeLogStore is a LogStore in memory.
type fakeLogStore struct {
	mu     sync.Mutex
	chunks map[string][]store.LogChunk // by job/step, archive source only
	steps  map[string]store.LogStep    // by job/step
}

var _ LogStore = (*fakeLogStore)(nil)

func newFakeLogStore() *fakeLogStore {
	return &fakeLogStore{chunks: map[string][]store.LogChunk{}, steps: map[string]store.LogStep{}}
}

func (f *fakeLogStore) LogChunks(_ context.Context, jobID, step, source string, after int64, limit int) ([]store.LogChunk, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.LogChunk
	for _, c := range f.chunks[jobID+"/"+step] {
		if c.Source == source && c.Seq > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeLogStore) LogSteps(_ context.Context, jobID string) ([]store.LogStep, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.LogStep
	for _, s := range f.steps {
		if s.JobID == jobID {
			out = append(out, s)
		}
	}
	return out, nil
}

// archive stores lines as chunks of the given sizes (the rest in a last chunk) and marks the
// step complete (or incomplete with reason).
func (f *fakeLogStore) archive(jobID, step string, lines []string, sizes []int, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := jobID + "/" + step
	f.chunks[key] = nil
	seq, bytes := int64(0), int64(0)
	for len(lines) > 0 {
		n := len(lines)
		if len(sizes) > 0 {
			n, sizes = min(sizes[0], n), sizes[1:]
		}
		seq++
		data := strings.Join(lines[:n], "\n") + "\n"
		bytes += int64(len(data))
		f.chunks[key] = append(f.chunks[key], store.LogChunk{JobID: jobID, Step: step, Source: store.LogSourceArchive,
			Seq: seq, Data: []byte(data), Lines: n})
		lines = lines[n:]
	}
	var total int64
	for _, c := range f.chunks[key] {
		total += int64(c.Lines)
	}
	f.steps[key] = store.LogStep{JobID: jobID, Step: step, LastSeq: seq, Bytes: bytes, Lines: total,
		Complete: reason == "", Incomplete: reason != "", Reason: reason}
}

// uncount zeroes the counts of a step's archive state, as an incomplete archive recorded after
// an interrupted pass has them.
func (f *fakeLogStore) uncount(jobID, step string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.steps[jobID+"/"+step]
	st.Lines, st.Bytes, st.LastSeq = 0, 0, 0
	f.steps[jobID+"/"+step] = st
}

// fakeLive is LiveLogs for one pod: its steps' states and one log shared by all its containers
// (as kwok serves it). A follow stream replays the log and then waits for more lines until it
// is cancelled, even after the container ended (kwok again), unless endFollow is set (a real
// kubelet ends it when the container has ended).
type fakeLive struct {
	mu        sync.Mutex
	states    map[string]ContainerPhase
	lines     []string
	grew      chan struct{} // closed and replaced when lines grow or a state changes
	endFollow bool
	opens     int
	served    int // lines written to log streams
}

var _ LiveLogs = (*fakeLive)(nil)

func newFakeLive() *fakeLive {
	return &fakeLive{states: map[string]ContainerPhase{}, grew: make(chan struct{})}
}

func (f *fakeLive) changed() {
	close(f.grew)
	f.grew = make(chan struct{})
}

func (f *fakeLive) set(step string, p ContainerPhase) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[step] = p
	f.changed()
}

func (f *fakeLive) write(lines ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, lines...)
	f.changed()
}

func (f *fakeLive) StepState(_ context.Context, _ *jobs.Job, step string) (StepState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.states[step]
	if p == NoPod {
		return StepState{Phase: NoPod}, nil
	}
	return StepState{Pod: "pod-1", Phase: p}, nil
}

var t0 = time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)

func (f *fakeLive) OpenLog(ctx context.Context, _ *jobs.Job, pod, step string, o kube.LogOptions) (io.ReadCloser, error) {
	follow := o.Follow
	since := o.Since.Truncate(time.Second) // the API takes whole seconds
	f.mu.Lock()
	f.opens++
	if f.states[step] == NoPod {
		f.mu.Unlock()
		return nil, fmt.Errorf("pod %s: %w", pod, jobs.ErrNotFound)
	}
	f.mu.Unlock()
	// A follow request is answered once the container has written something (or, with
	// endFollow, has ended), as a kubelet and kwok do.
	for follow {
		f.mu.Lock()
		n, grew, state, end := len(f.lines), f.grew, f.states[step], f.endFollow
		f.mu.Unlock()
		if n > 0 || (end && state != ContainerRunning) || state == NoPod {
			break
		}
		select {
		case <-grew:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	pr, pw := io.Pipe()
	go func() {
		sent := 0
		for {
			f.mu.Lock()
			lines, grew, state, end := f.lines[sent:], f.grew, f.states[step], f.endFollow
			f.mu.Unlock()
			if state == NoPod {
				pw.CloseWithError(errors.New("pod deleted"))
				return
			}
			for _, l := range lines {
				sent++
				stamp := t0.Add(time.Duration(sent) * time.Millisecond)
				if stamp.Before(since) {
					continue
				}
				f.mu.Lock()
				f.served++
				f.mu.Unlock()
				if _, err := fmt.Fprintf(pw, "%s %s\n", stamp.Format(time.RFC3339Nano), l); err != nil {
					return
				}
			}
			if !follow || (end && state != ContainerRunning) {
				pw.Close()
				return
			}
			select {
			case <-grew:
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			}
		}
	}()
	return pr, nil
}

// logFixture is a LogHandler on fakes behind an httptest server, with an auth stand-in that
// takes the principal from the X-Test-User header.
type logFixture struct {
	jobs  *fakeJobs
	store *fakeLogStore
	live  *fakeLive
	h     *LogHandler
	srv   *httptest.Server
}

var testUsers = map[string]*auth.Principal{
	"viewer": {User: "viewer", Role: auth.RoleViewer, Services: []string{"svc"}},
	"other":  {User: "other", Role: auth.RoleAdmin, Services: []string{"another"}},
}

func newLogFixture(t *testing.T) *logFixture {
	t.Helper()
	f := &logFixture{
		jobs: &fakeJobs{jobs: map[string]*jobs.Job{"job1": {ID: "job1", Service: "svc", Task: "buildrpm", Status: jobs.StatusPending,
			Steps: []jobs.Step{{Name: "fetch", Status: jobs.StepWaiting}, {Name: "build", Status: jobs.StepWaiting}, {Name: "upload", Status: jobs.StepWaiting}}}}},
		store: newFakeLogStore(),
		live:  newFakeLive(),
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	f.h = &LogHandler{Jobs: f.jobs, Store: f.store, Live: f.live, Tokens: NewTokens([]byte("0123456789abcdef0123456789abcdef")),
		Stop: stop, PollMin: 2 * time.Millisecond, PollMax: 10 * time.Millisecond, LivePoll: 5 * time.Millisecond, Heartbeat: time.Hour}
	mux := http.NewServeMux()
	f.h.Routes(mux, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), testUsers[r.Header.Get("X-Test-User")])))
		})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *logFixture) get(t *testing.T, path string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-User", "viewer")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (f *logFixture) page(t *testing.T, path string) LogPage {
	t.Helper()
	resp := f.get(t, path)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	var p LogPage
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("decode page: %v: %s", err, b)
	}
	return p
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s %d", prefix, i))
	}
	return out
}

func texts(ls []LogLine) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.Text)
	}
	return out
}

// checkNumbers fails unless ls are numbered from+1, from+2, … without gap or repeat.
func checkNumbers(t *testing.T, ls []LogLine, from int64) {
	t.Helper()
	for i, l := range ls {
		if l.N != from+int64(i)+1 {
			t.Fatalf("line %d has number %d, want %d (lines %v)", i, l.N, from+int64(i)+1, ls)
		}
	}
}

func TestLogPagesOfTheArchive(t *testing.T) {
	all := numbered("build line", 1, 9)
	tests := map[string]struct {
		sizes     []int
		limit     int
		reason    string
		uncounted bool // the step state counts no line (chunks of an interrupted earlier pass)
	}{
		"one chunk, one page":            {sizes: nil, limit: 100},
		"chunks of 3, 2, 4; pages of 2":  {sizes: []int{3, 2, 4}, limit: 2},
		"chunks of 1; pages of 4":        {sizes: []int{1, 1, 1, 1, 1, 1, 1, 1, 1}, limit: 4},
		"chunks of 4; pages of 1":        {sizes: []int{4, 4}, limit: 1},
		"incomplete archive, pages of 5": {sizes: []int{2}, limit: 5, reason: "pod deleted before archiving"},
		"incomplete, lines not counted":  {sizes: []int{4}, limit: 3, reason: "pod gone", uncounted: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newLogFixture(t)
			f.store.archive("job1", "build", all, tc.sizes, tc.reason)
			if tc.uncounted {
				f.store.uncount("job1", "build")
			}
			var got []LogLine
			after := ""
			for i := 0; ; i++ {
				if i > 20 {
					t.Fatal("no end after 20 pages")
				}
				p := f.page(t, fmt.Sprintf("/v1/jobs/job1/logs?step=build&limit=%d&after=%s", tc.limit, after))
				if len(p.Lines) > tc.limit || p.Source != "archive" || p.Step != "build" {
					t.Fatalf("page %d: %d lines (limit %d), source %q, step %q", i, len(p.Lines), tc.limit, p.Source, p.Step)
				}
				got = append(got, p.Lines...)
				after = p.Cursor
				if p.Complete || p.Incomplete {
					if p.Complete == (tc.reason != "") || p.Reason != tc.reason {
						t.Errorf("end page: complete %v incomplete %v reason %q; want reason %q", p.Complete, p.Incomplete, p.Reason, tc.reason)
					}
					break
				}
				if len(p.Lines) == 0 {
					t.Fatalf("page %d: empty but not the end", i)
				}
			}
			checkNumbers(t, got, 0)
			if d := cmp.Diff(all, texts(got)); d != "" {
				t.Errorf("lines (-want +got):\n%s", d)
			}
			// The end cursor stays at the end.
			if p := f.page(t, "/v1/jobs/job1/logs?step=build&after="+after); len(p.Lines) != 0 || !(p.Complete || p.Incomplete) {
				t.Errorf("page after the end: %d lines, complete %v", len(p.Lines), p.Complete)
			}
		})
	}
}

// A cursor made from a live line (no archive hint) and one whose hint names a chunk that is not
// there both continue at the right line of the archive.
func TestLogCursorPositionsAreLineNumbers(t *testing.T) {
	f := newLogFixture(t)
	all := numbered("l", 1, 10)
	f.store.archive("job1", "build", all, []int{3, 3, 3, 1}, "")
	for name, pos := range map[string]logs.Pos{
		"live cursor":     {N: 4},
		"hint to chunk 2": {N: 4, Seq: 2, Base: 3},
	} {
		t.Run(name, func(t *testing.T) {
			p := f.page(t, "/v1/jobs/job1/logs?step=build&after="+f.h.Tokens.sealCursor("job1", "build", "", pos))
			checkNumbers(t, p.Lines, 4)
			if d := cmp.Diff(all[4:], texts(p.Lines)); d != "" || !p.Complete {
				t.Errorf("complete %v; lines (-want +got):\n%s", p.Complete, d)
			}
		})
	}
}

// Paging through a running step asks the cluster only for the lines since the cursor: the
// lines read are about the step's lines (plus, per page, those of the second the page starts
// in), not pages × lines as when every page re-read the log from line 1.
func TestLogPagesOfARunningStepReadEachLineAboutOnce(t *testing.T) {
	const total, limit = 5000, 250 // the fake stamps 1000 lines a second
	f := newLogFixture(t)
	f.live.set("build", ContainerRunning)
	f.live.write(numbered("line", 1, total)...)
	var got []LogLine
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > total/limit+1 {
			t.Fatalf("%d pages for %d lines in pages of %d", pages, total, limit)
		}
		p := f.page(t, fmt.Sprintf("/v1/jobs/job1/logs?step=build&limit=%d&after=%s", limit, cursor))
		if p.Source != "cluster" {
			t.Fatalf("page from %s, want cluster", p.Source)
		}
		if len(p.Lines) == 0 {
			break
		}
		got, cursor = append(got, p.Lines...), p.Cursor
	}
	checkNumbers(t, got, 0)
	if d := cmp.Diff(numbered("line", 1, total), texts(got)); d != "" {
		t.Errorf("lines (-want +got):\n%s", d)
	}
	f.live.mu.Lock()
	served := f.live.served
	f.live.mu.Unlock()
	pages := total/limit + 1
	if bound := total + pages*(1000+1); served > bound {
		t.Errorf("%d pages read %d lines from the cluster, want at most %d (re-reading from line 1 reads about %d)",
			pages, served, bound, pages*total/2)
	}
}

func TestLogPageBeforeArchive(t *testing.T) {
	f := newLogFixture(t)
	// No pod yet: an empty page, not the end.
	p := f.page(t, "/v1/jobs/job1/logs")
	if p.Step != "fetch" || len(p.Lines) != 0 || p.Complete || p.Incomplete {
		t.Fatalf("page before the pod: %+v", p)
	}
	// Running: lines from the cluster, with their times.
	f.live.set("fetch", ContainerRunning)
	f.live.write(numbered("fetch", 1, 5)...)
	p = f.page(t, "/v1/jobs/job1/logs?limit=3&after="+p.Cursor)
	if p.Source != "cluster" || len(p.Lines) != 3 || p.Lines[0].Time == nil || p.Complete {
		t.Fatalf("live page: %+v", p)
	}
	checkNumbers(t, p.Lines, 0)
	// The same cursor works on the archive once the step is archived.
	f.live.write("fetch 6")
	f.store.archive("job1", "fetch", numbered("fetch", 1, 6), []int{2}, "")
	p = f.page(t, "/v1/jobs/job1/logs?after="+p.Cursor)
	checkNumbers(t, p.Lines, 3)
	if d := cmp.Diff(numbered("fetch", 4, 6), texts(p.Lines)); d != "" || !p.Complete || p.Source != "archive" {
		t.Errorf("archive page: complete %v source %s; lines (-want +got):\n%s", p.Complete, p.Source, d)
	}
}

func TestLogRequestErrors(t *testing.T) {
	f := newLogFixture(t)
	f.store.archive("job1", "build", numbered("l", 1, 3), nil, "")
	buildCursor := f.h.Tokens.sealCursor("job1", "build", "", logs.Pos{N: 1})
	tests := map[string]struct {
		path  string
		user  string
		code  int
		field string
	}{
		"unknown step":             {path: "/v1/jobs/job1/logs?step=nope", code: 400, field: "step"},
		"unknown job":              {path: "/v1/jobs/nope/logs", code: 404},
		"other service":            {path: "/v1/jobs/job1/logs", user: "other", code: 404},
		"no principal":             {path: "/v1/jobs/job1/logs", user: "nobody", code: 404},
		"forged cursor":            {path: "/v1/jobs/job1/logs?step=build&after=" + buildCursor[:5] + "x" + buildCursor[6:], code: 400, field: "after"},
		"cursor of another step":   {path: "/v1/jobs/job1/logs?step=fetch&after=" + buildCursor, code: 400, field: "after"},
		"page token as cursor":     {path: "/v1/jobs/job1/logs?step=build&after=" + f.h.Tokens.Seal("x", store.Filter{Service: "svc"}), code: 400, field: "after"},
		"bad limit":                {path: "/v1/jobs/job1/logs?limit=0", code: 400, field: "limit"},
		"bad follow":               {path: "/v1/jobs/job1/logs?follow=maybe", code: 400, field: "follow"},
		"unknown parameter":        {path: "/v1/jobs/job1/logs?stepp=build", code: 400, field: "stepp"},
		"bad format":               {path: "/v1/jobs/job1/logs?format=html", code: 400, field: "format"},
		"text with follow":         {path: "/v1/jobs/job1/logs?format=text&follow=true", code: 400, field: "format"},
		"bad Last-Event-ID":        {path: "/v1/jobs/job1/logs?step=build&follow=true", code: 400, field: "Last-Event-ID"},
		"download: no suffix":      {path: "/v1/jobs/job1/logs/build", code: 404},
		"download: unknown step":   {path: "/v1/jobs/job1/logs/nope:download", code: 400, field: "step"},
		"download: not archived":   {path: "/v1/jobs/job1/logs/fetch:download", code: 409},
		"download: other service":  {path: "/v1/jobs/job1/logs/build:download", user: "other", code: 404},
		"format=text not archived": {path: "/v1/jobs/job1/logs?format=text", code: 409},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, f.srv.URL+tc.path, nil)
			req.Header.Set("X-Test-User", tc.user)
			if tc.user == "" {
				req.Header.Set("X-Test-User", "viewer")
			}
			req.Header.Set("Last-Event-ID", "garbage")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p httpapi.Problem
			_ = json.NewDecoder(resp.Body).Decode(&p)
			if resp.StatusCode != tc.code || p.Field != tc.field || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%d field %q (%s) %s; want %d field %q", resp.StatusCode, p.Field, p.Detail, resp.Header.Get("Content-Type"), tc.code, tc.field)
			}
		})
	}
}

func TestLogDownload(t *testing.T) {
	f := newLogFixture(t)
	lines := numbered("build", 1, 50)
	f.store.archive("job1", "build", lines, []int{7, 7, 7}, "")
	f.store.archive("job1", "upload", numbered("up", 1, 2), nil, "pod deleted")
	for _, path := range []string{"/v1/jobs/job1/logs/build:download", "/v1/jobs/job1/logs?step=build&format=text"} {
		resp := f.get(t, path)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
			resp.Header.Get("Content-Disposition") != `attachment; filename="job1-build.log"` || resp.Header.Get("Omni-Log-Status") != "complete" {
			t.Errorf("%s: %d %v", path, resp.StatusCode, resp.Header)
		}
		if want := strings.Join(lines, "\n") + "\n"; string(b) != want {
			t.Errorf("%s: body differs: %q", path, b)
		}
	}
	resp := f.get(t, "/v1/jobs/job1/logs/upload:download")
	resp.Body.Close()
	if resp.Header.Get("Omni-Log-Status") != "incomplete" || resp.Header.Get("Omni-Log-Incomplete-Reason") != "pod deleted" {
		t.Errorf("incomplete download: %v", resp.Header)
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, name, data string
}

// sseStream reads the events of a follow response into a channel.
func sseStream(t *testing.T, resp *http.Response) <-chan sseEvent {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("follow: %d %s %s", resp.StatusCode, ct, b)
	}
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case strings.HasPrefix(line, ":"):
				ch <- sseEvent{name: ":", data: strings.TrimSpace(strings.TrimPrefix(line, ":"))} // a comment
			}
		}
	}()
	return ch
}

// followClient collects the lines of a follow stream.
type followClient struct {
	t      *testing.T
	events <-chan sseEvent
	body   io.Closer
	lines  []LogLine
	lastID string
	end    *followEnd
	states []string
	// heartbeats counts the heartbeat comments; closed is set when the stream has ended.
	heartbeats int
	closed     bool
}

func (f *logFixture) follow(t *testing.T, path string, header ...string) *followClient {
	resp := f.get(t, path, header...)
	t.Cleanup(func() { resp.Body.Close() })
	return &followClient{t: t, events: sseStream(t, resp), body: resp.Body}
}

// until reads events until ok returns true, the stream ends, or a deadline passes.
func (c *followClient) until(what string, ok func() bool) {
	c.t.Helper()
	c.read(what, ok, false)
}

// untilClosed reads events until the server ends the stream, or a deadline passes.
func (c *followClient) untilClosed(what string) {
	c.t.Helper()
	c.read(what, func() bool { return c.closed }, true)
}

func (c *followClient) read(what string, ok func() bool, closing bool) {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for !ok() {
		select {
		case ev, open := <-c.events:
			if !open {
				if closing {
					c.closed = true
					continue
				}
				c.t.Fatalf("stream ended before %s; got %d lines", what, len(c.lines))
			}
			switch ev.name {
			case ":":
				if ev.data == "heartbeat" {
					c.heartbeats++
				}
			case "lines":
				var b struct{ Lines []LogLine }
				if err := json.Unmarshal([]byte(ev.data), &b); err != nil {
					c.t.Fatal(err)
				}
				c.lines = append(c.lines, b.Lines...)
				c.lastID = ev.id
			case "state":
				var s followState
				_ = json.Unmarshal([]byte(ev.data), &s)
				c.states = append(c.states, s.State)
			case "end":
				c.end = &followEnd{}
				_ = json.Unmarshal([]byte(ev.data), c.end)
				c.lastID = ev.id
			case "error":
				c.t.Fatalf("error event: %s", ev.data)
			}
		case <-deadline:
			c.t.Fatalf("no %s within the deadline; got %d lines, states %v", what, len(c.lines), c.states)
		}
	}
}

func (c *followClient) hasLines(n int) func() bool { return func() bool { return len(c.lines) >= n } }
func (c *followClient) ended() bool                { return c.end != nil }

// A follower connected before the pod exists gets every line once, in order: live while the
// container runs, then from the archive for what the live stream could not read (the pod went
// away), and an end event once the job has ended and the step is archived.
func TestFollowLiveThenArchive(t *testing.T) {
	for _, kubelet := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow stream ends with the container: %v", kubelet), func(t *testing.T) {
			f := newLogFixture(t)
			f.live.endFollow = kubelet
			c := f.follow(t, "/v1/jobs/job1/logs?step=build&follow=true")
			c.until("waiting state", func() bool { return len(c.states) > 0 })
			f.live.set("build", ContainerWaiting)
			f.live.write(numbered("line", 1, 3)...)
			f.live.set("build", ContainerRunning)
			c.until("3 lines", c.hasLines(3))
			f.live.write(numbered("line", 4, 5)...)
			c.until("5 lines", c.hasLines(5))
			f.live.write("line 6")
			f.live.set("build", ContainerTerminated)
			c.until("6 lines", c.hasLines(6))
			// The pod goes away before lines 7 and 8 could be read live; the archive has them.
			f.live.set("build", NoPod)
			f.live.write("line 7", "line 8")
			f.jobs.setStatus("job1", jobs.StatusSucceeded)
			f.store.archive("job1", "build", numbered("line", 1, 8), []int{5}, "")
			c.until("the end", c.ended)
			checkNumbers(t, c.lines, 0)
			if d := cmp.Diff(numbered("line", 1, 8), texts(c.lines)); d != "" {
				t.Errorf("lines (-want +got):\n%s", d)
			}
			if !c.end.Complete || c.end.Incomplete {
				t.Errorf("end: %+v", c.end)
			}
			if n := len(c.states); n < 3 || c.states[0] != "waiting" || c.states[1] != "live" || c.states[n-1] != "archive" {
				t.Errorf("states %v: want waiting, live, …, archive", c.states)
			}
			// An EventSource reconnecting after the end is told to stop.
			resp := f.get(t, "/v1/jobs/job1/logs?step=build&follow=true", "Last-Event-ID", c.lastID)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("reconnect after the end: %d, want 204", resp.StatusCode)
			}
		})
	}
}

// A follower that disconnects and resumes with its last event id, live and then on the archive,
// misses nothing and repeats nothing.
func TestFollowResume(t *testing.T) {
	f := newLogFixture(t)
	f.live.set("build", ContainerRunning)
	f.live.write(numbered("line", 1, 4)...)
	c := f.follow(t, "/v1/jobs/job1/logs?step=build&follow=true")
	c.until("4 lines", c.hasLines(4))
	c.body.Close()
	got := c.lines

	f.live.write(numbered("line", 5, 7)...)
	c = f.follow(t, "/v1/jobs/job1/logs?step=build&follow=true", "Last-Event-ID", c.lastID)
	c.until("3 more lines", c.hasLines(3))
	c.body.Close()
	got = append(got, c.lines...)

	f.live.write(numbered("line", 8, 9)...)
	f.live.set("build", NoPod)
	f.jobs.setStatus("job1", jobs.StatusFailed)
	f.store.archive("job1", "build", numbered("line", 1, 9), []int{2, 2, 2}, "")
	c = f.follow(t, "/v1/jobs/job1/logs?step=build&follow=true&after="+c.lastID)
	c.until("the end", c.ended)
	got = append(got, c.lines...)
	checkNumbers(t, got, 0)
	if d := cmp.Diff(numbered("line", 1, 9), texts(got)); d != "" {
		t.Errorf("lines (-want +got):\n%s", d)
	}
}

// A step that never ran, of a job that ended, has an empty, complete log once the steps that
// ran are archived.
func TestFollowStepThatNeverRan(t *testing.T) {
	f := newLogFixture(t)
	f.jobs.mu.Lock()
	f.jobs.jobs["job1"].Status = jobs.StatusFailed
	f.jobs.jobs["job1"].Steps[0] = jobs.Step{Name: "fetch", Status: jobs.StepFailed, StartedAt: &t0}
	f.jobs.mu.Unlock()
	c := f.follow(t, "/v1/jobs/job1/logs?step=upload&follow=true")
	c.until("waiting state", func() bool { return len(c.states) > 0 })
	f.store.archive("job1", "fetch", numbered("f", 1, 2), nil, "")
	c.until("the end", c.ended)
	if len(c.lines) != 0 || !c.end.Complete {
		t.Errorf("lines %v end %+v", c.lines, c.end)
	}
}

// The stream ends when the function stops (clients resume elsewhere with their cursor): the
// server closes it, without an end event (the step is not done) and without an error event.
func TestFollowEndsOnStop(t *testing.T) {
	f := newLogFixture(t)
	stop := make(chan struct{})
	f.h.Stop = stop
	c := f.follow(t, "/v1/jobs/job1/logs?follow=true")
	c.until("waiting state", func() bool { return len(c.states) > 0 })
	close(stop)
	c.untilClosed("the server closing the stream after Stop")
	if c.end != nil {
		t.Errorf("end event %+v on stop, but the step has not ended", c.end)
	}
	if d := cmp.Diff([]string{"waiting"}, c.states); d != "" {
		t.Errorf("states (-want +got):\n%s", d)
	}
}

// Heartbeats keep a quiet stream alive: a stream with nothing to send sends a comment every
// Heartbeat, and nothing else.
func TestFollowHeartbeat(t *testing.T) {
	f := newLogFixture(t)
	f.h.Heartbeat = 5 * time.Millisecond
	c := f.follow(t, "/v1/jobs/job1/logs?follow=true")
	c.until("three heartbeats", func() bool { return c.heartbeats >= 3 })
	if len(c.lines) != 0 || c.end != nil {
		t.Errorf("a quiet stream sent lines %v / end %+v", c.lines, c.end)
	}
	if d := cmp.Diff([]string{"waiting"}, c.states); d != "" {
		t.Errorf("states (-want +got):\n%s", d)
	}
}

// A container that writes nothing and ends: the follow request, which the runtime holds until
// a first line, does not keep the stream from noticing the end and going on to the archive.
func TestFollowSilentContainer(t *testing.T) {
	for _, kubelet := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow stream ends with the container: %v", kubelet), func(t *testing.T) {
			f := newLogFixture(t)
			f.live.endFollow = kubelet
			f.live.set("build", ContainerRunning)
			c := f.follow(t, "/v1/jobs/job1/logs?step=build&follow=true")
			c.until("live state", func() bool { return len(c.states) > 0 && c.states[len(c.states)-1] == "live" })
			f.live.set("build", ContainerTerminated)
			f.jobs.setStatus("job1", jobs.StatusSucceeded)
			f.store.mu.Lock()
			f.store.steps["job1/build"] = store.LogStep{JobID: "job1", Step: "build", Complete: true}
			f.store.mu.Unlock()
			c.until("the end", c.ended)
			if len(c.lines) != 0 || !c.end.Complete {
				t.Errorf("lines %v end %+v", c.lines, c.end)
			}
		})
	}
}

// A resumed follow of an incomplete archive whose state counts no line still gets the stored
// lines, and a reconnect after them is told to stop.
func TestFollowIncompleteArchive(t *testing.T) {
	f := newLogFixture(t)
	f.jobs.setStatus("job1", jobs.StatusLost)
	f.store.archive("job1", "build", numbered("l", 1, 5), []int{2}, "pod gone")
	f.store.uncount("job1", "build")
	after := f.h.Tokens.sealCursor("job1", "build", "", logs.Pos{N: 1})
	c := f.follow(t, "/v1/jobs/job1/logs?step=build&follow=true", "Last-Event-ID", after)
	c.until("the end", c.ended)
	checkNumbers(t, c.lines, 1)
	if len(c.lines) != 4 || !c.end.Incomplete || c.end.Complete || c.end.Reason != "pod gone" {
		t.Errorf("lines %v end %+v", c.lines, c.end)
	}
	resp := f.get(t, "/v1/jobs/job1/logs?step=build&follow=true", "Last-Event-ID", c.lastID)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("reconnect after the end: %d, want 204", resp.StatusCode)
	}
}
