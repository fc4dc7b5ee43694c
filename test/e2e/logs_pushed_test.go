package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// lqPush sends one logs.appended event for step of job id to the Broker stand-in, as a worker
// does, with the lines texts (stamped now).
func lqPush(t *testing.T, id, step string, seq int64, texts []string) {
	t.Helper()
	d := events.LogsAppendedData{Step: step, Seq: seq}
	for _, text := range texts {
		d.Lines = append(d.Lines, events.AppendedLine{Time: time.Now().UTC(), Text: text})
	}
	e, err := events.NewLogsAppendedEvent("/omni/worker/e2e", id, d)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(omni.Sink))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res := c.Send(ctx, e); !cloudevents.IsACK(res) {
		t.Fatalf("push %d of %s/%s to the Broker: %v", seq, id, step, res)
	}
}

// Lines a worker pushes (logs.appended through the Broker, stored by log-archive) are served as
// the step's pushed stream (?source=push): a follower connected while the step runs gets every
// pushed line once and in push order — though the pushes arrive out of order and one is sent
// twice — and an end once the job has ended; pages and the download give the same lines. The
// step's cluster log (live, then archived) is served as before and holds none of them: no reader
// sees a line twice.
func TestLogPushedLines(t *testing.T) {
	const cluster, step = "x86_64", "build-rpm"
	lf := lqUseLogFile(t, cluster)
	tag := fmt.Sprintf("lp-%d", time.Now().UnixNano())
	lf.add(t, 4, tag)
	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: step}))
	alice.wait(t, j.ID, "running", func(j *jobs.Job) bool { return j.Status == jobs.StatusRunning })
	held := true
	t.Cleanup(func() {
		if held {
			lqSetHold(t, cluster, j.ID, "")
		}
	})

	pushes := [][]string{}
	for p := range 3 {
		var texts []string
		for i := range 3 + p {
			texts = append(texts, fmt.Sprintf("%s pushed %d.%d", tag, p+1, i+1))
		}
		pushes = append(pushes, texts)
	}
	var want []string
	for _, texts := range pushes {
		want = append(want, texts...)
	}
	f := alice.lqFollowQuery(t, j.ID, url.Values{"step": {step}, "source": {"push"}})
	f.until("the push state", 30*time.Second, func() bool { return len(f.states) > 0 })
	// Push 2 first: nothing can be shown before push 1 is stored.
	lqPush(t, j.ID, step, 2, pushes[1])
	lqPush(t, j.ID, step, 1, pushes[0])
	lqPush(t, j.ID, step, 1, pushes[0]) // a worker's retry
	f.until("pushes 1 and 2 (through the Broker and log-archive)", time.Minute, f.has(len(pushes[0])+len(pushes[1])))
	lqPush(t, j.ID, step, 3, pushes[2])
	f.until("push 3", time.Minute, f.has(len(want)))
	if r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs/"+step+":download?source=push", nil); r.code != http.StatusConflict {
		t.Errorf("download of pushed lines while the job runs: %d %s, want 409", r.code, r.body)
	}

	lqSetHold(t, cluster, j.ID, "")
	held = false
	f.until("the end of the pushed stream", 2*time.Minute, f.ended)
	lqCheckLines(t, "follower of pushed lines", f.lines, want)
	if !f.end.Complete || f.end.Incomplete || len(f.states) != 1 || f.states[0] != "push" {
		t.Errorf("end %+v, states %v: want complete, [push]", f.end, f.states)
	}

	// Pages of 4 walk the pushed lines to their complete end.
	var paged []lqLine
	after := ""
	for i := 0; ; i++ {
		var p lqPage
		r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs?source=push&limit=4&step="+step+"&after="+after, nil)
		if r.code != http.StatusOK || json.Unmarshal(r.body, &p) != nil || p.Source != "push" || i > len(want) {
			t.Fatalf("page %d of pushed lines: %d %s", i, r.code, r.body)
		}
		paged, after = append(paged, p.Lines...), p.Cursor
		if p.Complete {
			break
		}
	}
	lqCheckLines(t, "pages of pushed lines", paged, want)

	// The download of the pushed lines, its status in a trailer.
	req, _ := http.NewRequest(http.MethodGet, omni.URL+"/v1/jobs/"+j.ID+"/logs/"+step+":download?source=push", nil)
	req.SetBasicAuth(alice.user, alice.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != strings.Join(want, "\n")+"\n" || resp.Trailer.Get("Omni-Log-Status") != "complete" {
		t.Errorf("download of pushed lines: %d %q, trailer %v", resp.StatusCode, b, resp.Trailer)
	}

	// The cluster's log of the step, archived, is what the container wrote: no pushed line.
	alice.wait(t, j.ID, "archived", func(*jobs.Job) bool {
		return alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs/"+step+":download", nil).code == http.StatusOK
	})
	if r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs/"+step+":download", nil); string(r.body) != strings.Join(lf.texts, "\n")+"\n" {
		t.Errorf("download of the cluster's log: %q, want the %d lines of the container", r.body, len(lf.texts))
	}
}
