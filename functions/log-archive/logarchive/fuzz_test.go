package logarchive

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// FuzzReceivePush feeds logs.appended payloads (anyone who reaches the Broker may send one) to
// log-archive, for a running job: a payload is either stored — and then the push's chunk holds
// exactly its lines, each once, ending in "\n" — or refused with 400 (never retried); it never
// crashes, and is never an error that the Broker would retry for ever.
func FuzzReceivePush(f *testing.F) {
	fx := newFixture(f, 1)
	setStatus(f, fx, jobs.StatusRunning)
	fx.h.MaxPushBytes, fx.h.MaxPushes = 4096, 8
	for _, seed := range []any{
		events.LogsAppendedData{Step: "build", Seq: 1, Lines: []events.AppendedLine{{Time: t0, Text: "one"}, {Time: t0, Text: "two\nthree"}}},
		events.LogsAppendedData{Step: "build", Seq: 2, Lines: []events.AppendedLine{{Time: t0, Text: "four"}}},
		events.LogsAppendedData{Step: "upload", Seq: 1, Lines: []events.AppendedLine{{Text: ""}}},
		events.LogsAppendedData{Step: "build", Seq: 1},
		events.LogsAppendedData{Step: "nope", Seq: 1, Lines: []events.AppendedLine{{Text: "x"}}},
		events.LogsAppendedData{Step: "build", Lines: []events.AppendedLine{{Text: "x"}}},
		events.LogsAppendedData{Step: "build", Seq: 9, Lines: []events.AppendedLine{{Text: "x"}}},
		events.LogsAppendedData{Step: "build", Seq: 3, Lines: []events.AppendedLine{{Text: strings.Repeat("x", 5000)}}},
		"text", nil, []int{1},
	} {
		b, _ := json.Marshal(seed)
		f.Add(b)
	}
	f.Add([]byte(`{"step":"build","seq":1,"lines":[{"time":"not a time","text":"x"}]}`))
	f.Add([]byte(`{"step":"build","seq":1e3,"lines":[]}`))
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		// Each input pushes to a job of its own: the first write of a push wins, so another
		// input's push with the same seq must not be what this one finds.
		n++
		j := fx.job.Clone()
		j.ID = "fuzz-" + strconv.Itoa(n)
		j.Status = jobs.StatusRunning
		if err := fx.st.CreateJob(t.Context(), j); err != nil {
			t.Fatal(err)
		}
		e := cloudevents.NewEvent()
		e.SetID("push")
		e.SetSource("/omni/worker/fuzz")
		e.SetType(events.TypeLogsAppended)
		e.SetSubject(j.ID)
		if err := e.SetData(cloudevents.ApplicationJSON, json.RawMessage(data)); err != nil {
			t.Skip("not an event body")
		}
		reply, res := fx.h.Receive(t.Context(), e)
		if reply != nil {
			t.Errorf("a push replied %v", reply)
		}
		code, _ := runtime.EventStatus(res)
		if !protocol.IsACK(res) {
			if code != http.StatusBadRequest {
				t.Fatalf("push %q: %v (status %d), want stored or 400", data, res, code)
			}
			return
		}
		var d events.LogsAppendedData
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("push %q stored though it does not decode: %v", data, err)
		}
		cs, err := fx.st.LogChunks(t.Context(), j.ID, d.Step, store.LogSourcePush, d.Seq-1, 1)
		if err != nil || len(cs) != 1 || cs[0].Seq != d.Seq {
			t.Fatalf("push %q acknowledged, chunk %d not stored: %v %v", data, d.Seq, cs, err)
		}
		var want strings.Builder
		lines := 0
		for _, l := range d.Lines {
			for _, text := range strings.Split(l.Text, "\n") {
				want.WriteString(text + "\n")
				lines++
			}
		}
		if string(cs[0].Data) != want.String() || cs[0].Lines != lines {
			t.Errorf("push %q stored as %d lines %q, want %d lines %q", data, cs[0].Lines, cs[0].Data, lines, want.String())
		}
	})
}
