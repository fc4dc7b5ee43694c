package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// The log routes of the query function against the local clusters. kwok serves the file
// Cluster.LogsFile as the log of every container, and its follow stream sends what is appended
// to the file; so lines "arrive" while a held step runs when the test appends them. The step's
// archive (by log-archive, once the job has ended) then holds the whole file.

// lqLine is a line as the API returns it.
type lqLine struct {
	N    int64      `json:"n"`
	Time *time.Time `json:"time"`
	Text string     `json:"text"`
}

// lqPage is a page of GET /v1/jobs/{id}/logs.
type lqPage struct {
	Step       string   `json:"step"`
	Lines      []lqLine `json:"lines"`
	Cursor     string   `json:"cursor"`
	Source     string   `json:"source"`
	Complete   bool     `json:"complete"`
	Incomplete bool     `json:"incomplete"`
	Reason     string   `json:"reason"`
}

// lqFollower is a follow client: it reads the SSE stream of one request into lines and states.
type lqFollower struct {
	t      *testing.T
	cancel context.CancelFunc
	events chan lqEvent
	lines  []lqLine
	states []string
	lastID string
	end    *lqPage // Cursor, Complete, Incomplete, Reason of the end event
	closed bool
}

type lqEvent struct{ id, name, data string }

// lqFollow opens a follow stream of step of job id as c; header is name, value pairs.
func (c client) lqFollow(t *testing.T, id, step, after string, header ...string) *lqFollower {
	t.Helper()
	q := url.Values{"step": {step}}
	if after != "" {
		q.Set("after", after)
	}
	return c.lqFollowQuery(t, id, q, header...)
}

// lqFollowQuery opens a follow stream of job id as c with the query q (plus follow=true).
func (c client) lqFollowQuery(t *testing.T, id string, q url.Values, header ...string) *lqFollower {
	t.Helper()
	q.Set("follow", "true")
	step := q.Get("step")
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, omni.URL+"/v1/jobs/"+id+"/logs?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(c.user, c.password)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("follow %s/%s: %d %s", id, step, resp.StatusCode, b)
	}
	f := &lqFollower{t: t, cancel: cancel, events: make(chan lqEvent, 64)}
	t.Cleanup(f.close)
	go func() {
		defer close(f.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 8<<20)
		var ev lqEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					f.events <- ev
				}
				ev = lqEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return f
}

// close disconnects (what a client that goes away does).
func (f *lqFollower) close() {
	f.cancel()
	for range f.events {
	}
	f.closed = true
}

// until reads events until ok holds; the stream ending first, or the deadline, fails the test.
func (f *lqFollower) until(what string, deadline time.Duration, ok func() bool) {
	f.t.Helper()
	timeout := time.After(deadline)
	for !ok() {
		select {
		case ev, open := <-f.events:
			if !open {
				f.t.Fatalf("follow stream ended before %s (%d lines, states %v)", what, len(f.lines), f.states)
			}
			switch ev.name {
			case "lines":
				var b struct {
					Lines []lqLine `json:"lines"`
				}
				if err := json.Unmarshal([]byte(ev.data), &b); err != nil {
					f.t.Fatalf("lines event: %v: %s", err, ev.data)
				}
				f.lines = append(f.lines, b.Lines...)
				f.lastID = ev.id
			case "state":
				var s struct{ State string }
				_ = json.Unmarshal([]byte(ev.data), &s)
				f.states = append(f.states, s.State)
			case "end":
				f.end = &lqPage{}
				if err := json.Unmarshal([]byte(ev.data), f.end); err != nil {
					f.t.Fatalf("end event: %v: %s", err, ev.data)
				}
				f.lastID = ev.id
			case "error":
				f.t.Fatalf("error event: %s", ev.data)
			}
		case <-timeout:
			f.t.Fatalf("follow: no %s within %s (%d lines, states %v)", what, deadline, len(f.lines), f.states)
		}
	}
}

func (f *lqFollower) has(n int) func() bool { return func() bool { return len(f.lines) >= n } }
func (f *lqFollower) ended() bool           { return f.end != nil }

// lqLogFile replaces the cluster's container log file for the test (and restores it after) and
// appends lines to it in CRI format.
type lqLogFile struct {
	path  string
	texts []string
}

func lqUseLogFile(t *testing.T, cluster string) *lqLogFile {
	t.Helper()
	path := omni.Platform.Cluster(cluster).LogsFile
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Errorf("restore %s: %v", path, err)
		}
	})
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return &lqLogFile{path: path}
}

// add appends n numbered lines, each written whole (kwok's reader waits for the newline).
func (lf *lqLogFile) add(t *testing.T, n int, tag string) {
	t.Helper()
	var sb strings.Builder
	for range n {
		text := fmt.Sprintf("%s line %d: %s", tag, len(lf.texts)+1, strings.Repeat("x", len(lf.texts)%17))
		lf.texts = append(lf.texts, text)
		fmt.Fprintf(&sb, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), text)
	}
	fd, err := os.OpenFile(lf.path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if _, err := fd.WriteString(sb.String()); err != nil {
		t.Fatal(err)
	}
}

// checkLines fails unless got are the lines want, numbered from 1, each once and in order.
func lqCheckLines(t *testing.T, who string, got []lqLine, want []string) {
	t.Helper()
	var texts []string
	for i, l := range got {
		if l.N != int64(i)+1 {
			t.Errorf("%s: line %d is numbered %d (a line missing or repeated)", who, i+1, l.N)
			break
		}
		texts = append(texts, l.Text)
	}
	if d := cmp.Diff(want, texts); d != "" {
		t.Errorf("%s: lines (-want +got):\n%s", who, d)
	}
}

// lqCordon marks the cluster's nodes unschedulable (or schedulable again; also at cleanup).
func lqCordon(t *testing.T, cluster string, on bool) {
	t.Helper()
	c := omni.Platform.Cluster(cluster)
	set := func(on bool) error {
		for _, n := range c.Nodes {
			patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
			if _, err := c.Clientset().CoreV1().Nodes().Patch(context.Background(), n, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return fmt.Errorf("cordon %s: %w", n, err)
			}
		}
		return nil
	}
	if err := set(on); err != nil {
		t.Fatal(err)
	}
	if on {
		t.Cleanup(func() {
			if err := set(false); err != nil {
				t.Error(err)
			}
		})
	}
}

// lqSetHold moves the hold of job id's pod to step ("" releases it).
func lqSetHold(t *testing.T, cluster, id, step string) {
	t.Helper()
	lqSetHoldOn(t, omni.Platform.Cluster(cluster).Clientset(), id, step)
}

// lqSetHoldOn moves the hold of job id's pod on cs to step ("" releases it).
func lqSetHoldOn(t *testing.T, cs kubernetes.Interface, id, step string) {
	t.Helper()
	pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of %s: %v (%d)", id, err, len(pods.Items))
	}
	value := "null"
	if step != "" {
		value = fmt.Sprintf("%q", step)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, platform.AnnotationHoldStep, value)
	if _, err := cs.CoreV1().Pods("default").Patch(context.Background(), pods.Items[0].Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A follow client connected before the job starts receives every line of the step exactly once
// and in order, as the container writes them and across the running → archived switch; a client
// that disconnects mid-stream and resumes with its cursor (Last-Event-ID while the step runs,
// `after` once it is archived) misses nothing and repeats nothing. Pages and the download give
// the same lines.
func TestLogFollowAcrossArchive(t *testing.T) {
	const cluster, step = "x86_64", "build-rpm"
	lf := lqUseLogFile(t, cluster)
	tag := fmt.Sprintf("lq-%d", time.Now().UnixNano())
	lf.add(t, 5, tag)

	// With the nodes cordoned the pod cannot be scheduled: the followers surely connect before
	// the job starts.
	lqCordon(t, cluster, true)
	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: step}))
	a := alice.lqFollow(t, j.ID, step, "")
	b := alice.lqFollow(t, j.ID, step, "")
	a.until("a first state", 30*time.Second, func() bool { return len(a.states) > 0 })
	if a.states[0] != "waiting" {
		t.Errorf("first state %q: want waiting (the step had not started)", a.states[0])
	}
	if got := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t); got.Status != jobs.StatusPending {
		t.Fatalf("job %s while its pod cannot be scheduled, want pending", got.Status)
	}
	lqCordon(t, cluster, false)

	// Live: the file's lines, then lines appended while the step runs.
	a.until("the first lines", time.Minute, a.has(5))
	b.until("the first lines", time.Minute, b.has(5))
	b.close() // b goes away mid-stream
	for range 4 {
		lf.add(t, 5, tag)
		a.until("appended lines", 30*time.Second, a.has(len(lf.texts)))
	}
	if a.lines[len(a.lines)-1].Time == nil {
		t.Errorf("live line without its time: %+v", a.lines[len(a.lines)-1])
	}
	// b resumes with its last event id, as an EventSource does, while the step still runs.
	b2 := alice.lqFollow(t, j.ID, step, "", "Last-Event-ID", b.lastID)
	b2.until("the lines appended while away", 30*time.Second, b2.has(len(lf.texts)-len(b.lines)))
	b2.close()
	lf.add(t, 5, tag)
	a.until("appended lines", 30*time.Second, a.has(len(lf.texts)))

	// The step ends while the next one is held: the follower has read the ended container's log
	// and waits for the archive.
	lqSetHold(t, cluster, j.ID, "upload")
	a.until("waiting for the archive", 30*time.Second, func() bool {
		return len(a.states) >= 3 && a.states[len(a.states)-1] == "waiting"
	})
	// Lines the live stream did not give (kwok serves one file for every container, so they
	// reach the archive of the ended step too) come from the archive: the switch loses nothing.
	lf.add(t, 5, tag)
	// The job ends, log-archive archives: a's stream ends with complete.
	lqSetHold(t, cluster, j.ID, "")
	a.until("the end of the stream (needs log-archive)", 2*time.Minute, a.ended)
	if !a.end.Complete || a.end.Incomplete {
		t.Errorf("end event %+v: want complete", a.end)
	}
	lqCheckLines(t, "follower", a.lines, lf.texts)
	if d := cmp.Diff([]string{"waiting", "live", "waiting", "archive"}, a.states); d != "" {
		t.Errorf("follower states (-want +got):\n%s", d)
	}
	if done := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t); done.Status != jobs.StatusSucceeded {
		t.Errorf("job %s: %s", j.ID, done.Status)
	}

	// b resumes once more, from the archive, with the cursor of a live line.
	b3 := alice.lqFollow(t, j.ID, step, b2.lastID)
	b3.until("the end of the resumed stream", time.Minute, b3.ended)
	resumed := append(append(append([]lqLine{}, b.lines...), b2.lines...), b3.lines...)
	lqCheckLines(t, "resuming follower", resumed, lf.texts)
	if !b3.end.Complete {
		t.Errorf("resumed end event %+v: want complete", b3.end)
	}
	// An EventSource reconnecting after the end is told to stop reconnecting.
	if r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs?follow=true&step="+step, nil, "Last-Event-ID", b3.lastID); r.code != http.StatusNoContent {
		t.Errorf("reconnect after the end: %d %s, want 204", r.code, r.body)
	}

	// Pages of 7 lines walk the archive to its complete end.
	var paged []lqLine
	after := ""
	for i := 0; ; i++ {
		r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs?limit=7&step="+step+"&after="+after, nil)
		var p lqPage
		if r.code != http.StatusOK || json.Unmarshal(r.body, &p) != nil {
			t.Fatalf("page %d: %d %s", i, r.code, r.body)
		}
		if p.Source != "archive" || len(p.Lines) > 7 || i > len(lf.texts) {
			t.Fatalf("page %d: source %s, %d lines", i, p.Source, len(p.Lines))
		}
		paged, after = append(paged, p.Lines...), p.Cursor
		if p.Complete {
			break
		}
	}
	lqCheckLines(t, "pages", paged, lf.texts)

	// The download is the text of the lines.
	r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs/"+step+":download", nil)
	if want := strings.Join(lf.texts, "\n") + "\n"; r.code != http.StatusOK || string(r.body) != want {
		t.Errorf("download: %d %q", r.code, r.body)
	}
	if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("download headers: %v", r.header)
	}
}

// The log routes answer by the rules of the API: other services' jobs are 404, an unknown step
// or a forged cursor a 400 naming the field, and a download before the archive a 409.
func TestLogQueryErrors(t *testing.T) {
	const cluster = "aarch64"
	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: "fetch-srpm"}))
	t.Cleanup(func() {
		alice.wait(t, j.ID, "running", func(j *jobs.Job) bool { return j.Status == jobs.StatusRunning })
		lqSetHold(t, cluster, j.ID, "")
	})
	r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs", nil)
	var page lqPage
	if r.code != http.StatusOK || json.Unmarshal(r.body, &page) != nil || page.Step != "fetch-srpm" || page.Complete {
		t.Fatalf("first page: %d %s", r.code, r.body)
	}
	tests := map[string]struct {
		c     client
		path  string
		code  int
		field string
	}{
		"other service":        {bob, "/v1/jobs/" + j.ID + "/logs", 404, ""},
		"unknown step":         {alice, "/v1/jobs/" + j.ID + "/logs?step=nope", 400, "step"},
		"forged cursor":        {alice, "/v1/jobs/" + j.ID + "/logs?after=" + page.Cursor + "x", 400, "after"},
		"cursor of other step": {alice, "/v1/jobs/" + j.ID + "/logs?step=upload&after=" + page.Cursor, 400, "after"},
		"not archived yet":     {alice, "/v1/jobs/" + j.ID + "/logs/upload:download", 409, ""},
		"download other svc":   {bob, "/v1/jobs/" + j.ID + "/logs/upload:download", 404, ""},
		"no credentials":       {anon, "/v1/jobs/" + j.ID + "/logs", 401, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := tc.c.do(t, http.MethodGet, tc.path, nil)
			if r.code != tc.code || problem(t, r).Field != tc.field {
				t.Errorf("%d %s; want %d field %q", r.code, r.body, tc.code, tc.field)
			}
		})
	}
}
