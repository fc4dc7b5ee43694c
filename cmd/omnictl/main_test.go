package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl/internal/client"
)

const jobJSON = `{"id":"01m8f9d6ecg576fhj04x11ggjg","service":"release","task":"buildrpm","domain":"","arch":"aarch64",
"status":"failed","reason":"StepFailed","message":"step build-rpm failed with exit code 3 (Error)",
"parameters":{"srpmUrl":"https://x/y.src.rpm","n":3},"labels":{"team":"kernel"},
"steps":[{"name":"fetch-srpm","status":"succeeded","exitCode":0,"reason":"Completed","startedAt":"2026-11-27T19:00:00Z","finishedAt":"2026-11-27T19:00:01.5Z"},
{"name":"build-rpm","status":"failed","exitCode":3,"reason":"Error","startedAt":"2026-11-27T19:00:01.5Z","finishedAt":"2026-11-27T19:00:04Z"},
{"name":"upload","status":"waiting","reason":"NotStarted"}],
"createdAt":"2026-11-27T18:59:59Z","startedAt":"2026-11-27T19:00:00Z","finishedAt":"2026-11-27T19:00:04Z","revision":5}`

func decodeJob(t *testing.T) *client.Job {
	t.Helper()
	var j client.Job
	if err := json.Unmarshal([]byte(jobJSON), &j); err != nil {
		t.Fatal(err)
	}
	return &j
}

func TestJobTable(t *testing.T) {
	var out bytes.Buffer
	a := &app{stdout: &out, stderr: io.Discard, stdoutTTY: true}
	if err := a.printJobs([]*client.Job{decodeJob(t)}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and a row, got:\n%s", out.String())
	}
	for _, want := range []string{"ID", "SERVICE", "STATUS", "REASON"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q misses %s", lines[0], want)
		}
	}
	for _, want := range []string{"01m8f9d6ecg576fhj04x11ggjg", "release", "failed", "4s", "StepFailed (step build-rpm)"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q misses %q", lines[1], want)
		}
	}

	// Piped: tab-separated, no header.
	out.Reset()
	a.stdoutTTY = false
	if err := a.printJobs([]*client.Job{decodeJob(t)}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "01m8f9d6ecg576fhj04x11ggjg\trelease\tbuildrpm\taarch64\tfailed\t") || strings.Count(got, "\n") != 1 {
		t.Errorf("piped table: %q", got)
	}

	// The job's detail view names the steps with exit codes and durations.
	out.Reset()
	a.stdoutTTY = true
	if err := a.printJob(decodeJob(t)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"build-rpm   failed     3     Error", "1.5s", "label       team=kernel"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("detail view misses %q:\n%s", want, out.String())
		}
	}
}

func TestJSONToYAMLKeepsOrderAndTypes(t *testing.T) {
	got, err := jsonToYAML(json.RawMessage(`{"z":1,"a":{"b":[true,null,"2",1.5]},"id":"01"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "z: 1\na:\n  b:\n    - true\n    - null\n    - \"2\"\n    - 1.5\nid: \"01\"\n"
	if d := cmp.Diff(want, string(got)); d != "" {
		t.Errorf("yaml (-want +got):\n%s", d)
	}
}

func TestParseInterspersed(t *testing.T) {
	for name, tc := range map[string]struct {
		args    []string
		wantPos []string
		wantA   string
		wantB   bool
	}{
		"flags after":     {[]string{"TASK", "-a", "x", "-b"}, []string{"TASK"}, "x", true},
		"flags around":    {[]string{"-b", "ID", "--a=y", "STEP"}, []string{"ID", "STEP"}, "y", true},
		"after a --":      {[]string{"-a", "x", "--", "-b"}, []string{"-b"}, "x", false},
		"no flags at all": {[]string{"ID"}, []string{"ID"}, "", false},
	} {
		t.Run(name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			a := fs.String("a", "", "")
			b := fs.Bool("b", false, "")
			pos, err := parseInterspersed(fs, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.wantPos, pos); d != "" || *a != tc.wantA || *b != tc.wantB {
				t.Errorf("pos %v a %q b %v; diff:\n%s", pos, *a, *b, d)
			}
		})
	}
}

const rpmSchema = `{"type":"object","required":["srpmUrl"],
"$defs":{"url":{"type":"string"}},
"properties":{"srpmUrl":{"$ref":"#/$defs/url"},"repos":{"type":"array","items":{"$ref":"#/$defs/url"}},
"jobs":{"type":"integer"},"debug":{"type":"boolean"},"extra":{"type":"object"}}}`

func TestParameters(t *testing.T) {
	s := parseSchema(json.RawMessage(rpmSchema))
	got := map[string]any{}
	for _, p := range []string{"srpmUrl=https://x", "repos=https://a, https://b", "jobs=4", "debug=true", "extra={\"k\":1}", "unknown=7", "jobs2=x"} {
		k, v, _ := strings.Cut(p, "=")
		got[k] = s.coerce(k, v)
	}
	want := map[string]any{
		"srpmUrl": "https://x", "repos": []any{"https://a", "https://b"}, "jobs": int64(4), "debug": true,
		"extra": map[string]any{"k": float64(1)}, "unknown": "7", "jobs2": "x",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("coerced parameters (-want +got):\n%s", d)
	}
	if got := paramSummary(json.RawMessage(rpmSchema)); got != "srpmUrl*:string debug:boolean extra:object jobs:integer repos:[]string" {
		t.Errorf("summary %q", got)
	}
}

// Steps print in order: a later step's lines wait until the earlier step's container ended;
// late lines of an ended step print at once.
func TestOrderedSteps(t *testing.T) {
	var out bytes.Buffer
	o := &orderedSteps{w: newLineWriter(&out, true), steps: []string{"a", "b", "c"}, bufs: make([]stepBuffer, 3)}
	line := func(n int64, text string) []client.LogLine { return []client.LogLine{{N: n, Text: text}} }
	o.state(0, "live")
	o.state(1, "live")
	must(t, o.lines(1, line(1, "b1"))) // held: a still runs
	must(t, o.lines(0, line(1, "a1")))
	o.state(0, "waiting") // a's container ended
	must(t, o.lines(1, line(2, "b2")))
	must(t, o.lines(0, line(2, "a2"))) // late, from a's archive
	must(t, o.end(2))                  // c never ran
	must(t, o.end(1))
	must(t, o.end(0))
	want := "[a] a1\n[b] b1\n[b] b2\n[a] a2\n"
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
