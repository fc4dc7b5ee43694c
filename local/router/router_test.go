package router_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnibuildplatform/omni-orchestrator/local/router"
)

func triggerYAML(name, spec string) string {
	return fmt.Sprintf(`
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: %s
  namespace: omni
spec:
  broker: default
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: subscriber
%s
`, name, spec)
}

func TestFilters(t *testing.T) {
	changed := newEvent("org.openeuler.omni.job.changed", map[string]any{"omnistatus": "succeeded", "omniarch": "aarch64"})
	created := newEvent("org.openeuler.omni.job.created", map[string]any{"omnistatus": "pending", "omniarch": "x86_64"})
	podAdd := newEvent("dev.knative.apiserver.resource.add", map[string]any{"kind": "Pod"})

	tests := map[string]struct {
		spec  string
		event cloudevents.Event
		want  bool
	}{
		"no filter matches everything": {"", podAdd, true},
		"exact matches": {`
  filters:
    - exact: {type: org.openeuler.omni.job.changed}`, changed, true},
		"exact does not match another type": {`
  filters:
    - exact: {type: org.openeuler.omni.job.changed}`, created, false},
		"exact on an extension": {`
  filters:
    - exact: {omnistatus: succeeded}`, changed, true},
		"exact on a missing extension fails": {`
  filters:
    - exact: {omnistatus: succeeded}`, podAdd, false},
		"prefix": {`
  filters:
    - prefix: {type: org.openeuler.omni.}`, created, true},
		"prefix does not match": {`
  filters:
    - prefix: {type: org.openeuler.omni.}`, podAdd, false},
		"suffix": {`
  filters:
    - suffix: {type: .changed}`, changed, true},
		"suffix does not match": {`
  filters:
    - suffix: {type: .changed}`, created, false},
		"all matches when every filter does": {`
  filters:
    - all:
        - exact: {type: org.openeuler.omni.job.changed}
        - exact: {omniarch: aarch64}`, changed, true},
		"all fails when one filter fails": {`
  filters:
    - all:
        - exact: {type: org.openeuler.omni.job.changed}
        - exact: {omniarch: x86_64}`, changed, false},
		"any matches when one filter does": {`
  filters:
    - any:
        - exact: {type: dev.knative.apiserver.resource.add}
        - exact: {type: dev.knative.apiserver.resource.update}`, podAdd, true},
		"any fails when none does": {`
  filters:
    - any:
        - exact: {type: dev.knative.apiserver.resource.add}
        - exact: {type: dev.knative.apiserver.resource.update}`, changed, false},
		"not inverts": {`
  filters:
    - not:
        exact: {omnistatus: pending}`, changed, true},
		"not inverts a match": {`
  filters:
    - not:
        exact: {omnistatus: pending}`, created, false},
		"cesql true": {`
  filters:
    - cesql: "type LIKE 'org.openeuler.omni.%' AND omnistatus IN ('succeeded', 'failed')"`, changed, true},
		"cesql false": {`
  filters:
    - cesql: "type LIKE 'org.openeuler.omni.%' AND omnistatus IN ('succeeded', 'failed')"`, created, false},
		"several filters are all required": {`
  filters:
    - prefix: {type: org.openeuler.omni.}
    - exact: {omniarch: x86_64}`, changed, false},
		"legacy attributes match": {`
  filter:
    attributes:
      type: org.openeuler.omni.job.changed
      omnistatus: succeeded`, changed, true},
		"legacy attributes mismatch": {`
  filter:
    attributes:
      type: org.openeuler.omni.job.changed
      omnistatus: failed`, changed, false},
		"legacy empty value matches any value of a present attribute": {`
  filter:
    attributes:
      omniarch: ""`, created, true},
		"legacy empty value needs the attribute": {`
  filter:
    attributes:
      omniarch: ""`, podAdd, false},
		"filters win over legacy filter": {`
  filter:
    attributes:
      type: no.such.type
  filters:
    - exact: {type: org.openeuler.omni.job.changed}`, changed, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sub := &sink{}
			cfg := load(t, map[string]string{"broker.yaml": brokerYAML, "trigger.yaml": triggerYAML("t", tc.spec)})
			r := start(t, cfg, router.Handlers(map[string]http.Handler{"subscriber": sub, "dead-letter": &sink{}}))
			if err := r.Ingest("omni", "default", tc.event); err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			drain(t, r)
			if got := len(sub.received()) == 1; got != tc.want {
				t.Errorf("delivered = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDelivery(t *testing.T) {
	const retries = 3 // brokerYAML
	tests := map[string]struct {
		delivery     string     // the Trigger's spec.delivery, replacing the Broker's
		responses    []response // of the subscriber
		dead         []response // of the dead-letter sink
		down         bool       // the subscriber is not listening
		wantAttempts int
		wantDead     map[string]any // extensions of the dead letter; nil: none
		wantStats    router.Stats
	}{
		"success": {
			wantAttempts: 1,
			wantStats:    router.Stats{Accepted: 1, Delivered: 1},
		},
		"retry then success": {
			responses:    []response{{code: 503}, {code: 500}, {code: 200}},
			wantAttempts: 3,
			wantStats:    router.Stats{Accepted: 1, Delivered: 1, Retried: 2},
		},
		"404, 408, 409, 429 are retried": {
			responses:    []response{{code: 404}, {code: 408}, {code: 409}, {code: 429}},
			dead:         []response{{code: 202}},
			wantAttempts: retries + 1,
			wantDead:     map[string]any{"knativeerrorcode": "429"},
			wantStats:    router.Stats{Accepted: 1, Retried: 3, DeadLettered: 1},
		},
		"400 goes straight to the dead-letter sink": {
			responses:    []response{{code: 400, body: `{"title":"bad job id"}`}},
			wantAttempts: 1,
			wantDead: map[string]any{
				"knativeerrorcode": "400",
				"knativeerrordata": base64.StdEncoding.EncodeToString([]byte(`{"title":"bad job id"}`)),
			},
			wantStats: router.Stats{Accepted: 1, DeadLettered: 1},
		},
		"exhausted retries go to the dead-letter sink": {
			responses:    []response{{code: 500, body: "store down"}},
			wantAttempts: retries + 1,
			wantDead: map[string]any{
				"knativeerrorcode": "500",
				"knativeerrordata": base64.StdEncoding.EncodeToString([]byte("store down")),
			},
			wantStats: router.Stats{Accepted: 1, Retried: 3, DeadLettered: 1},
		},
		"long error bodies are truncated": {
			responses:    []response{{code: 422, body: strings.Repeat("x", 5000)}},
			wantAttempts: 1,
			wantDead: map[string]any{
				"knativeerrorcode": "422",
				"knativeerrordata": base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 768))),
			},
			wantStats: router.Stats{Accepted: 1, DeadLettered: 1},
		},
		"a 2xx body that is not an event is a failure": {
			responses:    []response{{code: 200, body: `{"ok":true}`}},
			wantAttempts: retries + 1,
			wantDead:     map[string]any{"knativeerrorcode": "502"},
			wantStats:    router.Stats{Accepted: 1, Retried: 3, DeadLettered: 1},
		},
		"a 3xx that is not a redirect is not retried": {
			responses:    []response{{code: 300}},
			wantAttempts: 1,
			wantDead:     map[string]any{"knativeerrorcode": "300"},
			wantStats:    router.Stats{Accepted: 1, DeadLettered: 1},
		},
		"the trigger's delivery replaces the broker's": {
			delivery: `
  delivery:
    retry: 1
    backoffPolicy: linear
    backoffDelay: PT1S
    deadLetterSink:
      ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: dead-letter}`,
			responses:    []response{{code: 500}},
			wantAttempts: 2,
			wantDead:     map[string]any{"knativeerrorcode": "500"},
			wantStats:    router.Stats{Accepted: 1, Retried: 1, DeadLettered: 1},
		},
		"no dead-letter sink: the event is lost": {
			delivery: `
  delivery:
    retry: 1`,
			responses:    []response{{code: 500}},
			wantAttempts: 2,
			wantStats:    router.Stats{Accepted: 1, Retried: 1, Lost: 1},
		},
		"a failing dead-letter sink is retried, then the event is lost": {
			responses:    []response{{code: 400}},
			dead:         []response{{code: 500}},
			wantAttempts: 1,
			wantStats:    router.Stats{Accepted: 1, Retried: 3, Lost: 1},
		},
		"connection errors are retried": {
			down:      true,
			wantDead:  map[string]any{"knativeerrorcode": "500"},
			wantStats: router.Stats{Accepted: 1, Retried: 3, DeadLettered: 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sub, dead := &sink{responses: tc.responses}, &sink{responses: tc.dead}
			subSrv, deadSrv := serve(t, sub), serve(t, dead)
			if tc.down {
				subSrv.Close()
			}
			cfg := load(t, map[string]string{"broker.yaml": brokerYAML, "trigger.yaml": triggerYAML("t", tc.delivery)})
			r := start(t, cfg, urls(map[string]string{"subscriber": subSrv.URL, "dead-letter": deadSrv.URL}))

			ev := newEvent("org.openeuler.omni.job.changed", nil)
			if err := r.Ingest("omni", "default", ev); err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			drain(t, r)

			got := sub.received()
			if len(got) != tc.wantAttempts {
				t.Errorf("subscriber got %d attempts, want %d", len(got), tc.wantAttempts)
			}
			for _, g := range got {
				if g.header.Get("Prefer") != "reply" || g.header.Get("Kn-Namespace") != "omni" {
					t.Errorf("subscriber headers Prefer=%q Kn-Namespace=%q", g.header.Get("Prefer"), g.header.Get("Kn-Namespace"))
				}
				if _, ok := g.event.Extensions()["knativebrokerttl"]; ok {
					t.Errorf("subscriber saw the broker TTL")
				}
				if g.event.ID() != ev.ID() {
					t.Errorf("subscriber got id %q, want %q", g.event.ID(), ev.ID())
				}
			}

			var letters []received
			for _, l := range dead.received() {
				letters = append(letters, l)
			}
			if tc.wantDead == nil {
				if tc.wantStats.DeadLettered > 0 || (len(letters) > 0 && tc.dead == nil) {
					t.Errorf("dead-letter sink got %d events, want none", len(letters))
				}
			} else {
				if len(letters) != 1 {
					t.Fatalf("dead-letter sink got %d events, want 1", len(letters))
				}
				l := letters[0]
				if l.event.ID() != ev.ID() || l.event.Type() != ev.Type() {
					t.Errorf("dead letter is %s/%s, want the original %s/%s", l.event.ID(), l.event.Type(), ev.ID(), ev.Type())
				}
				ext := l.event.Extensions()
				if got, want := fmt.Sprint(ext["knativeerrordest"]), subSrv.URL+"/"; !strings.HasPrefix(got, strings.TrimSuffix(want, "/")) {
					t.Errorf("knativeerrordest = %q, want %q", got, want)
				}
				for k, want := range tc.wantDead {
					if got := fmt.Sprint(ext[k]); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
				if tc.down && !strings.HasPrefix(decode(t, ext["knativeerrordata"]), "dispatch error:") {
					t.Errorf("knativeerrordata = %q, want a dispatch error", decode(t, ext["knativeerrordata"]))
				}
			}
			if diff := cmp.Diff(tc.wantStats, r.Stats()); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

func decode(t *testing.T, v any) string {
	b, err := base64.StdEncoding.DecodeString(fmt.Sprint(v))
	if err != nil {
		t.Fatalf("knativeerrordata %q: %v", v, err)
	}
	return string(b)
}

func TestReply(t *testing.T) {
	reply := newEvent("org.openeuler.omni.job.changed", map[string]any{"omnistatus": "running"})
	reply.SetID("reply-1")
	first := &sink{responses: []response{{code: 200, reply: &reply}}}
	second := &sink{}
	cfg := load(t, map[string]string{
		"broker.yaml": brokerYAML,
		"first.yaml": strings.ReplaceAll(triggerYAML("first", `
  filters:
    - exact: {type: dev.knative.apiserver.resource.update}`), "name: subscriber", "name: first"),
		"second.yaml": strings.ReplaceAll(triggerYAML("second", `
  filters:
    - exact: {type: org.openeuler.omni.job.changed}`), "name: subscriber", "name: second"),
	})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"first": first, "second": second, "dead-letter": &sink{}}))
	if err := r.Ingest("omni", "default", newEvent("dev.knative.apiserver.resource.update", nil)); err != nil {
		t.Fatal(err)
	}
	drain(t, r)

	if diff := cmp.Diff([]string{"dev.knative.apiserver.resource.update"}, first.types()); diff != "" {
		t.Errorf("first got (-want +got):\n%s", diff)
	}
	got := second.received()
	if len(got) != 1 {
		t.Fatalf("second got %d events, want the reply", len(got))
	}
	if got[0].event.ID() != "reply-1" || got[0].event.Extensions()["omnistatus"] != "running" {
		t.Errorf("second got %v, want the reply", got[0].event)
	}
	if diff := cmp.Diff(router.Stats{Accepted: 2, Delivered: 2, Replies: 1}, r.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestReplyLoopStopsAtTTL(t *testing.T) {
	loop := newEvent("loop", nil)
	sub := &sink{responses: []response{{code: 200, reply: &loop}}}
	dead := &sink{}
	cfg := load(t, map[string]string{"broker.yaml": brokerYAML, "trigger.yaml": triggerYAML("t", "")})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"subscriber": sub, "dead-letter": dead}))
	if err := r.Ingest("omni", "default", loop); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	if n := len(sub.received()); n != 255 {
		t.Errorf("subscriber got %d events, want 255 (the broker TTL)", n)
	}
	letters := dead.received()
	if len(letters) != 1 || fmt.Sprint(letters[0].event.Extensions()["knativeerrorcode"]) != "400" {
		t.Errorf("dead letters = %v, want the last reply rejected with 400", letters)
	}
}

func TestIngress(t *testing.T) {
	sub := &sink{}
	cfg := load(t, map[string]string{"broker.yaml": brokerYAML, "trigger.yaml": triggerYAML("t", "")})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"subscriber": sub, "dead-letter": &sink{}}))
	srv := serve(t, r)

	binary := func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/omni/default", strings.NewReader(`{"a":1}`))
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", "b-1")
		req.Header.Set("Ce-Source", "/test")
		req.Header.Set("Ce-Type", "binary.type")
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	structured := func(path string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path,
			strings.NewReader(`{"specversion":"1.0","id":"s-1","source":"/test","type":"structured.type","data":{"a":1}}`))
		req.Header.Set("Content-Type", "application/cloudevents+json")
		return req
	}
	req := func(method, path, body string) *http.Request {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		return req
	}
	tests := map[string]struct {
		req  *http.Request
		want int
	}{
		"binary event":               {binary(), http.StatusAccepted},
		"structured event":           {structured("/omni/default"), http.StatusAccepted},
		"trailing slash":             {structured("/omni/default/"), http.StatusAccepted},
		"unknown broker":             {structured("/omni/other"), http.StatusNotFound},
		"malformed path":             {structured("/omni"), http.StatusBadRequest},
		"root":                       {structured("/"), http.StatusNotFound},
		"not an event":               {req(http.MethodPost, "/omni/default", `{"a":1}`), http.StatusBadRequest},
		"GET is not allowed":         {req(http.MethodGet, "/omni/default", ""), http.StatusMethodNotAllowed},
		"OPTIONS is the CE webhook ": {req(http.MethodOptions, "/omni/default", ""), http.StatusOK},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	drain(t, r)
	if diff := cmp.Diff([]string{"binary.type", "structured.type", "structured.type"}, sortedTypes(sub)); diff != "" {
		t.Errorf("subscriber got (-want +got):\n%s", diff)
	}
}

func sortedTypes(s *sink) []string {
	ts := s.types()
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			if ts[j] < ts[i] {
				ts[i], ts[j] = ts[j], ts[i]
			}
		}
	}
	return ts
}

// blocking is a subscriber that holds every request until release is closed.
type blocking struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b.entered <- struct{}{}
	<-b.release
	w.WriteHeader(http.StatusAccepted)
}

func TestBackpressure(t *testing.T) {
	sub := &blocking{entered: make(chan struct{}, 10), release: make(chan struct{})}
	cfg := load(t, map[string]string{"broker.yaml": brokerYAML, "trigger.yaml": triggerYAML("t", "")})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"subscriber": sub, "dead-letter": &sink{}}),
		router.WithQueueSize(2), router.WithWorkers(1))
	srv := serve(t, r)
	post := func(id string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/omni/default", strings.NewReader("{}"))
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", id)
		req.Header.Set("Ce-Source", "/test")
		req.Header.Set("Ce-Type", "t")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if got := post("1"); got != http.StatusAccepted {
		t.Fatalf("first event: %d", got)
	}
	<-sub.entered // the only worker now holds event 1
	if got := post("2"); got != http.StatusAccepted {
		t.Fatalf("second event (queued): %d", got)
	}
	if got := post("3"); got != http.StatusServiceUnavailable {
		t.Errorf("third event with a full queue: %d, want 503", got)
	}
	close(sub.release)
	drain(t, r)
	if got := post("4"); got != http.StatusServiceUnavailable {
		t.Errorf("event after Drain: %d, want 503", got)
	}
	if diff := cmp.Diff(router.Stats{Accepted: 2, Rejected: 2, Delivered: 2}, r.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestDrainTimesOutAndCloseGivesUp(t *testing.T) {
	sub := &blocking{entered: make(chan struct{}, 10), release: make(chan struct{})}
	defer close(sub.release)
	cfg := load(t, map[string]string{"broker.yaml": brokerYAML, "trigger.yaml": triggerYAML("t", "")})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"subscriber": sub, "dead-letter": &sink{}}),
		router.WithWorkers(1))
	for i := range 3 {
		if err := r.Ingest("omni", "default", newEvent(fmt.Sprint("t", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	<-sub.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Drain(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain with a blocked subscriber = %v, want context.Canceled", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().Lost; got != 3 {
		t.Errorf("Lost = %d, want 3 (one in flight, two queued)", got)
	}
	if err := r.Ingest("omni", "default", newEvent("late", nil)); !errors.Is(err, router.ErrClosed) {
		t.Errorf("Ingest after Close = %v, want ErrClosed", err)
	}
}

func TestPanickingHandlerIsRetried(t *testing.T) {
	calls := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			panic("boom")
		}
		w.WriteHeader(http.StatusNoContent)
	})
	cfg := load(t, map[string]string{"broker.yaml": brokerYAML, "trigger.yaml": triggerYAML("t", "")})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"subscriber": h, "dead-letter": &sink{}}))
	if err := r.Ingest("omni", "default", newEvent("t", nil)); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	if diff := cmp.Diff(router.Stats{Accepted: 1, Delivered: 1, Retried: 1}, r.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestCollector(t *testing.T) {
	cfg := load(t, map[string]string{"broker.yaml": brokerYAML, "trigger.yaml": triggerYAML("t", "")})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"subscriber": &sink{}, "dead-letter": &sink{}}))
	if err := r.Ingest("omni", "default", newEvent("t", nil)); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(r); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	if got["omni_router_delivered_total"] != 1 || got["omni_router_accepted_total"] != 1 || len(got) != 8 {
		t.Errorf("metrics = %v", got)
	}
}
