package query

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// push stores lines as push seq of the step, as log-archive stores a logs.appended event.
func (f *fakeLogStore) push(jobID, step string, seq int64, lines ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := jobID + "/" + step
	f.chunks[key] = append(f.chunks[key], store.LogChunk{JobID: jobID, Step: step, Source: store.LogSourcePush,
		Seq: seq, Data: []byte(strings.Join(lines, "\n") + "\n"), Lines: len(lines)})
	slices.SortStableFunc(f.chunks[key], func(a, b store.LogChunk) int { return int(a.Seq - b.Seq) })
}

// pushedPages walks the pushed lines of the build step of job1 in pages of limit lines until a
// page is complete or incomplete, and returns the lines and the last page.
func (f *logFixture) pushedPages(t *testing.T, limit int) ([]LogLine, LogPage) {
	t.Helper()
	var got []LogLine
	after := ""
	for i := 0; ; i++ {
		if i > 50 {
			t.Fatal("no end after 50 pages")
		}
		p := f.page(t, "/v1/jobs/job1/logs?step=build&source=push&limit="+strconv.Itoa(limit)+"&after="+after)
		if p.Source != "push" || len(p.Lines) > limit {
			t.Fatalf("page %d: source %q, %d lines (limit %d)", i, p.Source, len(p.Lines), limit)
		}
		got, after = append(got, p.Lines...), p.Cursor
		if p.Complete || p.Incomplete {
			return got, p
		}
		if len(p.Lines) == 0 {
			t.Fatalf("page %d: empty but not the end", i)
		}
	}
}

// Pushed lines are a stream of their own (?source=push): a follower gets every pushed line once
// and in push order, whatever order the pushes were stored in, and an end once the job has
// ended; pages and the download give the same lines; the cluster's log never shows them.
func TestPushedLines(t *testing.T) {
	f := newLogFixture(t)
	f.jobs.setStatus("job1", jobs.StatusRunning)
	f.live.set("build", ContainerRunning)
	c := f.follow(t, "/v1/jobs/job1/logs?step=build&follow=true&source=push")
	c.until("push state", func() bool { return len(c.states) > 0 })
	f.store.push("job1", "build", 1, numbered("p", 1, 3)...)
	c.until("the first push", c.hasLines(3))
	// Push 3 arrives before push 2 (the Broker keeps no order): nothing past the gap is sent.
	f.store.push("job1", "build", 3, numbered("p", 6, 7)...)
	f.store.push("job1", "build", 2, numbered("p", 4, 5)...)
	c.until("pushes 2 and 3", c.hasLines(7))
	// A page while the job runs is not the end.
	if p := f.page(t, "/v1/jobs/job1/logs?step=build&source=push"); p.Complete || p.Incomplete || len(p.Lines) != 7 {
		t.Errorf("page while running: %d lines, complete %v incomplete %v", len(p.Lines), p.Complete, p.Incomplete)
	}
	f.store.push("job1", "build", 4, "p 8")
	f.jobs.setStatus("job1", jobs.StatusSucceeded)
	c.until("the end", c.ended)
	want := numbered("p", 1, 8)
	checkNumbers(t, c.lines, 0)
	if d := cmp.Diff(want, texts(c.lines)); d != "" {
		t.Errorf("followed lines (-want +got):\n%s", d)
	}
	if !c.end.Complete || c.end.Incomplete || cmp.Diff([]string{"push"}, c.states) != "" {
		t.Errorf("end %+v, states %v: want complete, [push]", c.end, c.states)
	}
	// An EventSource reconnecting after the end is told to stop.
	resp := f.get(t, "/v1/jobs/job1/logs?step=build&follow=true&source=push", "Last-Event-ID", c.lastID)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("reconnect after the end: %d, want 204", resp.StatusCode)
	}
	for _, limit := range []int{1, 2, 3, 100} {
		got, last := f.pushedPages(t, limit)
		checkNumbers(t, got, 0)
		if d := cmp.Diff(want, texts(got)); d != "" || !last.Complete {
			t.Errorf("pages of %d: complete %v; lines (-want +got):\n%s", limit, last.Complete, d)
		}
	}
	resp = f.get(t, "/v1/jobs/job1/logs/build:download?source=push")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(b); resp.StatusCode != 200 || got != strings.Join(want, "\n")+"\n" ||
		resp.Trailer.Get("Omni-Log-Status") != "complete" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="job1-build.pushed.log"` {
		t.Errorf("download: %d %q, header %v, trailer %v", resp.StatusCode, got, resp.Header, resp.Trailer)
	}
	// The cluster's log of the step (archived) holds none of the pushed lines.
	f.store.archive("job1", "build", numbered("cluster", 1, 4), nil, "")
	if p := f.page(t, "/v1/jobs/job1/logs?step=build"); p.Source != "archive" || cmp.Diff(numbered("cluster", 1, 4), texts(p.Lines)) != "" {
		t.Errorf("cluster page: source %s, lines %v", p.Source, texts(p.Lines))
	}
}

// When the job has ended with a push missing (dead-lettered), the pushed lines end there and
// say so: the page and the follower are incomplete with the reason, the download's trailer too.
func TestPushedLinesWithAPushMissing(t *testing.T) {
	f := newLogFixture(t)
	f.jobs.setStatus("job1", jobs.StatusFailed)
	f.store.push("job1", "build", 1, "a", "b")
	f.store.push("job1", "build", 3, "e")
	got, last := f.pushedPages(t, 1)
	if d := cmp.Diff([]string{"a", "b"}, texts(got)); d != "" || !last.Incomplete || last.Complete || !strings.Contains(last.Reason, "after line 2") {
		t.Errorf("pages: %+v; lines (-want +got):\n%s", last, d)
	}
	c := f.follow(t, "/v1/jobs/job1/logs?step=build&follow=true&source=push")
	c.until("the end", c.ended)
	if len(c.lines) != 2 || !c.end.Incomplete || c.end.Reason != last.Reason {
		t.Errorf("follow: %d lines, end %+v", len(c.lines), c.end)
	}
	resp := f.get(t, "/v1/jobs/job1/logs?step=build&format=text&source=push")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "a\nb\n" || resp.Trailer.Get("Omni-Log-Status") != "incomplete" || resp.Trailer.Get("Omni-Log-Incomplete-Reason") != last.Reason {
		t.Errorf("download: %q, trailer %v", b, resp.Trailer)
	}
}

// A cursor names its stream: one of the pushed lines is refused for the cluster's log and the
// other way round (their numbers mean different lines); a bad source is a 400 naming it, and
// pushed lines are not downloadable while the job may still take pushes.
func TestPushedLinesErrors(t *testing.T) {
	f := newLogFixture(t)
	f.jobs.setStatus("job1", jobs.StatusRunning)
	pushCursor := f.h.Tokens.sealCursor("job1", "build", streamPushed, logs.Pos{N: 1})
	clusterCursor := f.h.Tokens.sealCursor("job1", "build", "", logs.Pos{N: 1})
	tests := map[string]struct {
		path  string
		code  int
		field string
	}{
		"push cursor for the cluster's log": {"/v1/jobs/job1/logs?step=build&after=" + pushCursor, 400, "after"},
		"cluster cursor for pushed lines":   {"/v1/jobs/job1/logs?step=build&source=push&after=" + clusterCursor, 400, "after"},
		"bad source":                        {"/v1/jobs/job1/logs?step=build&source=worker", 400, "source"},
		"download: bad source":              {"/v1/jobs/job1/logs/build:download?source=archive", 400, "source"},
		"download: job running":             {"/v1/jobs/job1/logs/build:download?source=push", 409, ""},
		"download: unknown parameter":       {"/v1/jobs/job1/logs/build:download?step=build", 400, "step"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := f.get(t, tc.path)
			defer resp.Body.Close()
			var p httpapi.Problem
			_ = json.NewDecoder(resp.Body).Decode(&p)
			if resp.StatusCode != tc.code || p.Field != tc.field {
				t.Errorf("%d field %q (%s); want %d field %q", resp.StatusCode, p.Field, p.Detail, tc.code, tc.field)
			}
		})
	}
	if p := f.page(t, "/v1/jobs/job1/logs?step=build&source=push&after="+pushCursor); p.Source != "push" || len(p.Lines) != 0 {
		t.Errorf("page after a push cursor: %+v", p)
	}
}
