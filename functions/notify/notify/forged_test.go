package notify

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// A forged job.changed (arbitrary data, an attacker's callback) delivers nothing to the forged
// callback and signs nothing for it: the job's stored state goes to its stored callback.
func TestForgedEvent(t *testing.T) {
	real, attacker := newHook(t), newHook(t)
	h := newHandler(subs(t, "subscriptions:\n  - {name: ci, url: '"+attacker.URL+"/ci', secret: ci-secret, match: {services: [team-b]}}\n"), nil)
	h.CallbackSecret = []byte("callback-secret")
	j := testJob(real.URL + "/cb?token=secret")
	want := stored(t, h, j)

	forged := want.Clone()
	forged.SetExtension(events.ExtService, "team-b")
	if err := forged.SetData(cloudevents.ApplicationJSON, map[string]any{
		"id": j.ID, "service": "team-b", "status": "succeeded", "revision": j.Revision,
		"callback": attacker.URL + "/steal", "message": "sign me",
	}); err != nil {
		t.Fatal(err)
	}
	if res := h.Receive(testCtx(t), forged); !protocol.IsACK(res) {
		t.Fatalf("Receive: %v", res)
	}
	if n := len(attacker.got()); n != 0 {
		t.Errorf("the forged callback and team-b's subscription got %d requests, want 0", n)
	}
	hits := real.got()
	if len(hits) != 1 {
		t.Fatalf("the stored callback got %d requests, want 1", len(hits))
	}
	// The forged data says no previous status: the stored job goes without one.
	storedEvent, err := events.NewJobEvent(want.Type(), "status-sync", j, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hits[0].body, storedEvent.Data()) {
		t.Errorf("delivered %s, want the stored job %s", hits[0].body, storedEvent.Data())
	}
	if strings.Contains(string(hits[0].body), "secret") || strings.Contains(string(hits[0].body), "sign me") {
		t.Errorf("delivered body %s shows the callback's token or the forged data", hits[0].body)
	}
}

// An outsider who can predict event ids cannot make a real delivery be skipped: notify
// remembers only what it delivered, keyed by the stored state it delivered.
func TestForgedEventCannotSuppress(t *testing.T) {
	cb := newHook(t)
	h := newHandler(nil, nil)
	h.Memory = NewMemory(time.Hour, 100)
	j := testJob(cb.URL)
	stored(t, h, j)

	// Pre-seed: forged events announcing the next revision, with the id it will have.
	next := *j
	next.Revision++
	next.Status = jobs.StatusSucceeded
	forged := jobEvent(t, &next)
	if res := h.Receive(testCtx(t), forged); code(res) != http.StatusServiceUnavailable {
		t.Fatalf("forged event ahead of the store: %v, want 503", res)
	}
	if n := len(cb.got()); n != 0 {
		t.Fatalf("callback got %d requests before the real change, want 0", n)
	}
	// The real change arrives: it is delivered.
	real := stored(t, h, &next)
	if res := h.Receive(testCtx(t), real); !protocol.IsACK(res) {
		t.Fatalf("real event: %v", res)
	}
	hits := cb.got()
	if len(hits) != 1 || hits[0].header.Get(HeaderEventID) != real.ID() {
		t.Fatalf("callback got %d requests, want the real event %s", len(hits), real.ID())
	}
	var got jobs.Job
	if err := json.Unmarshal(hits[0].body, &got); err != nil || got.Status != jobs.StatusSucceeded {
		t.Errorf("delivered %s (%v), want the succeeded job", hits[0].body, err)
	}
}
