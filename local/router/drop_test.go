package router_test

import (
	"net/http"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/local/router"
)

// SetDrop drops the chosen deliveries of one Trigger and no other.
func TestSetDrop(t *testing.T) {
	first, second := &sink{}, &sink{}
	cfg := load(t, map[string]string{
		"broker.yaml": brokerYAML,
		"first.yaml":  strings.ReplaceAll(triggerYAML("first", ""), "name: subscriber", "name: first"),
		"second.yaml": strings.ReplaceAll(triggerYAML("second", ""), "name: subscriber", "name: second"),
	})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"first": first, "second": second, "dead-letter": &sink{}}))
	r.SetDrop(func(trigger string, e cloudevents.Event) bool { return trigger == "first" && e.ID() == "drop-me" })
	for _, id := range []string{"keep-1", "drop-me", "keep-2"} {
		e := newEvent("dev.knative.apiserver.resource.update", nil)
		e.SetID(id)
		if err := r.Ingest("omni", "default", e); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, r)

	ids := func(s *sink) map[string]int {
		out := map[string]int{}
		for _, got := range s.received() {
			out[got.event.ID()]++
		}
		return out
	}
	if d := cmp.Diff(map[string]int{"keep-1": 1, "keep-2": 1}, ids(first)); d != "" {
		t.Errorf("first got (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]int{"keep-1": 1, "keep-2": 1, "drop-me": 1}, ids(second)); d != "" {
		t.Errorf("second got (-want +got):\n%s", d)
	}
}
