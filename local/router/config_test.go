package router_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/local/router"
)

// project resolves the Services of the project's config/: status-sync and the dead-letter sink
// to the given sinks, every other Service to a sink that accepts everything, so that Triggers
// added later do not break this test.
func project(statusSync, deadLetter http.Handler) router.Resolver {
	return func(ref router.Ref) (router.Target, error) {
		if ref.Kind != "Service" {
			return router.Target{}, router.ErrUnresolved
		}
		switch ref.Name {
		case "status-sync":
			return router.Target{Handler: statusSync}, nil
		case "omni-dead-letter":
			return router.Target{Handler: deadLetter}, nil
		}
		return router.Target{Handler: &sink{}}, nil
	}
}

// apiServerEvent is shaped like what the ApiServerSource adapter sends in Resource mode.
func apiServerEvent(t *testing.T, typ string) cloudevents.Event {
	ev := cloudevents.NewEvent()
	ev.SetID("a1b2c3")
	ev.SetType(typ)
	ev.SetSource("https://127.0.0.1:6443")
	ev.SetSubject("/apis/batch/v1/namespaces/default/jobs/omni-7f3a")
	ev.SetExtension("kind", "Job")
	ev.SetExtension("name", "omni-7f3a")
	ev.SetExtension("namespace", "default")
	ev.SetExtension("apiversion", "batch/v1")
	ev.SetExtension("cluster", "x86-1")
	job := map[string]any{
		"apiVersion": "batch/v1", "kind": "Job",
		"metadata": map[string]any{"name": "omni-7f3a", "namespace": "default", "resourceVersion": "42",
			"labels": map[string]string{"omni.openeuler.org/job-id": "7f3a"}},
		"status": map[string]any{"active": 1},
	}
	if err := ev.SetData(cloudevents.ApplicationJSON, job); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestProjectConfig(t *testing.T) {
	cfg, err := router.LoadDir("../../config")
	if err != nil {
		t.Fatalf("LoadDir(config): %v", err)
	}
	statusSync, dead := &sink{}, &sink{}
	r := start(t, cfg, project(statusSync, dead))

	t.Run("ApiServerSource events reach status-sync", func(t *testing.T) {
		for _, typ := range []string{
			"dev.knative.apiserver.resource.add",
			"dev.knative.apiserver.resource.update",
			"dev.knative.apiserver.resource.delete",
		} {
			if err := r.Ingest("omni", "default", apiServerEvent(t, typ)); err != nil {
				t.Fatalf("Ingest %s: %v", typ, err)
			}
		}
		// Not for status-sync.
		if err := r.Ingest("omni", "default", newEvent("org.openeuler.omni.job.changed", nil)); err != nil {
			t.Fatal(err)
		}
		drain(t, r)
		var got []string
		for _, rcv := range statusSync.received() {
			if rcv.path != "/" {
				t.Errorf("status-sync got a request for %q, want /", rcv.path)
			}
			if rcv.event.Extensions()["cluster"] != "x86-1" {
				t.Errorf("status-sync lost the cluster extension: %v", rcv.event.Extensions())
			}
			got = append(got, rcv.event.Type())
		}
		want := []string{"dev.knative.apiserver.resource.add", "dev.knative.apiserver.resource.update", "dev.knative.apiserver.resource.delete"}
		if diff := cmp.Diff(want, got, cmpSorted); diff != "" {
			t.Errorf("status-sync got (-want +got):\n%s", diff)
		}
	})
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestProjectConfigDeadLetter(t *testing.T) {
	cfg, err := router.LoadDir("../../config")
	if err != nil {
		t.Fatalf("LoadDir(config): %v", err)
	}
	statusSync := &sink{responses: []response{{code: 400, body: "not a job of ours"}}}
	dead := &sink{}
	r := start(t, cfg, project(statusSync, dead))
	if err := r.Ingest("omni", "default", apiServerEvent(t, "dev.knative.apiserver.resource.update")); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	letters := dead.received()
	if len(letters) != 1 {
		t.Fatalf("omni-dead-letter got %d events, want 1", len(letters))
	}
	ext := letters[0].event.Extensions()
	if ext["knativeerrordest"] != "http://status-sync.omni.svc.cluster.local/" || ext["knativeerrorcode"] != "400" {
		t.Errorf("dead letter extensions = %v", ext)
	}
}

func TestProjectPingSource(t *testing.T) {
	cfg, err := router.LoadDir("../../config")
	if err != nil {
		t.Fatalf("LoadDir(config): %v", err)
	}
	statusSync := &sink{}
	r := start(t, cfg, project(statusSync, &sink{}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Ping(ctx, "omni", "resync"); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	got := statusSync.received()
	if len(got) != 1 {
		t.Fatalf("status-sync got %d events, want 1", len(got))
	}
	ev := got[0].event
	if got[0].path != "/resync" || ev.Type() != "dev.knative.sources.ping" ||
		ev.Source() != "/apis/v1/namespaces/omni/pingsources/resync" || ev.DataContentType() != "application/json" {
		t.Errorf("ping = %s %s", got[0].path, ev)
	}
	var data map[string]any
	if err := json.Unmarshal(ev.Data(), &data); err != nil {
		t.Errorf("ping data %q: %v", ev.Data(), err)
	}
	if err := r.Ping(ctx, "omni", "nope"); !errors.Is(err, router.ErrNoPingSource) {
		t.Errorf("Ping(unknown) = %v, want ErrNoPingSource", err)
	}
	drain(t, r)
	if err := r.Ping(ctx, "omni", "resync"); !errors.Is(err, router.ErrClosed) {
		t.Errorf("Ping after Drain = %v, want ErrClosed", err)
	}
}

func TestRunPing(t *testing.T) {
	got := make(chan string, 100)
	cfg := load(t, map[string]string{"ping.yaml": `
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: tick
  namespace: omni
spec:
  schedule: "0 0 1 1 *"
  sink:
    uri: http://tick.example/ping
`})
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got <- req.Header.Get("Ce-Type")
		w.WriteHeader(http.StatusAccepted)
	})
	r := start(t, cfg, nil, router.WithPingInterval(time.Millisecond), router.WithTransport(handlerTransport{h}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.RunPing(ctx) }()
	for range 2 {
		select {
		case typ := <-got:
			if typ != "dev.knative.sources.ping" {
				t.Errorf("ce-type = %q", typ)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no ping within 30s")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunPing = %v", err)
	}
	drain(t, r)
}

// handlerTransport serves every request with h, standing in for the network.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

func TestLoad(t *testing.T) {
	tests := map[string]struct {
		files   map[string]string
		wantErr string // substring; "" for success
		want    [3]int // brokers, triggers, pingsources
	}{
		"multi-document files, other kinds ignored": {
			files: map[string]string{
				"a.yaml": brokerYAML + "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n" + triggerYAML("t1", ""),
				"b.yml":  triggerYAML("t2", "") + "---\n# only a comment\n",
			},
			want: [3]int{1, 2, 0},
		},
		"documents that are not objects are ignored": {
			files: map[string]string{"list.yaml": "- a\n- b\n", "scalar.yaml": "hello\n", "b.yaml": brokerYAML},
			want:  [3]int{1, 0, 0},
		},
		"other extensions are ignored": {
			files: map[string]string{"README.md": "# not yaml: {", "b.yaml": brokerYAML},
			want:  [3]int{1, 0, 0},
		},
		"YAML syntax error": {
			files:   map[string]string{"bad.yaml": "a: [b\n"},
			wantErr: "bad.yaml: document 1",
		},
		"unknown field": {
			files:   map[string]string{"t.yaml": strings.Replace(triggerYAML("t", ""), "broker: default", "broker: default\n  brokr: x", 1)},
			wantErr: `unknown field "brokr"`,
		},
		"invalid filter rejected like the webhook does": {
			files: map[string]string{"t.yaml": triggerYAML("t", `
  filters:
    - exact: {type: a}
      prefix: {source: b}`)},
			wantErr: "trigger omni/t",
		},
		"invalid cesql": {
			files: map[string]string{"t.yaml": triggerYAML("t", `
  filters:
    - cesql: "type ="`)},
			wantErr: "trigger omni/t",
		},
		"broker without class": {
			files:   map[string]string{"b.yaml": strings.Replace(brokerYAML, "    eventing.knative.dev/broker.class: MTChannelBasedBroker\n", "    x: y\n", 1)},
			wantErr: "", // defaulted, as config-br-defaults does
			want:    [3]int{1, 0, 0},
		},
		"bad schedule": {
			files: map[string]string{"p.yaml": `
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: p, namespace: omni}
spec:
  schedule: "*/5 * * *"
  sink: {uri: http://x.example}
`},
			wantErr: "pingsource omni/p",
		},
		"duplicate trigger": {
			files:   map[string]string{"a.yaml": triggerYAML("t", ""), "b.yaml": triggerYAML("t", "")},
			wantErr: "trigger omni/t defined twice",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fsys := mapFS(tc.files)
			cfg, err := router.Load(fsys)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := [3]int{len(cfg.Brokers), len(cfg.Triggers), len(cfg.PingSources)}
			if got != tc.want {
				t.Errorf("loaded %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := map[string]struct {
		files   map[string]string
		resolve router.Resolver
		wantErr string
	}{
		"trigger of an unknown broker": {
			files:   map[string]string{"t.yaml": triggerYAML("t", "")},
			resolve: router.Handlers(map[string]http.Handler{"subscriber": &sink{}}),
			wantErr: "trigger omni/t: broker omni/default: no such broker",
		},
		"unresolvable subscriber": {
			files:   map[string]string{"b.yaml": brokerYAML, "t.yaml": triggerYAML("t", "")},
			resolve: router.Handlers(map[string]http.Handler{"dead-letter": &sink{}}),
			wantErr: "trigger omni/t: subscriber: resolve serving.knative.dev/v1 Service omni/subscriber: no target for ref",
		},
		"unresolvable dead-letter sink": {
			files:   map[string]string{"b.yaml": brokerYAML, "t.yaml": triggerYAML("t", "")},
			resolve: router.Handlers(map[string]http.Handler{"subscriber": &sink{}}),
			wantErr: "trigger omni/t: dead-letter sink",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := router.Load(mapFS(tc.files))
			if err != nil {
				t.Fatal(err)
			}
			r, err := router.New(cfg, tc.resolve)
			if err == nil {
				r.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestDestinations(t *testing.T) {
	// A PingSource's sink shows how refs, relative URIs and Broker refs resolve.
	ping := func(sink string) string {
		return `
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: p, namespace: omni}
spec:
  sink:
` + sink
	}
	tests := map[string]struct {
		sink     string
		wantPath string // seen by the in-process Service "svc"
		wantErr  string
	}{
		"ref only": {sink: `    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: svc}`, wantPath: "/"},
		"ref and relative uri": {sink: `    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: svc}
    uri: /resync?full=1`, wantPath: "/resync"},
		"ref and relative uri without slash": {sink: `    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: svc}
    uri: resync`, wantPath: "/resync"},
		"ref and absolute uri": {sink: `    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: svc}
    uri: http://elsewhere.example/x`, wantErr: "bsolute URI is not allowed"},
		"ref to a core Service": {sink: `    ref: {apiVersion: v1, kind: Service, name: svc}`, wantPath: "/"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := router.Load(mapFS(map[string]string{"p.yaml": ping(tc.sink)}))
			if err != nil {
				if tc.wantErr != "" && strings.Contains(err.Error(), tc.wantErr) {
					return // the webhook rejects it already
				}
				t.Fatal(err)
			}
			svc := &sink{}
			r, err := router.New(cfg, router.Handlers(map[string]http.Handler{"svc": svc}))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Ping(context.Background(), "omni", "p"); err != nil {
				t.Fatal(err)
			}
			if got := svc.received(); len(got) != 1 || got[0].path != tc.wantPath {
				t.Errorf("svc got %v, want one request for %s", got, tc.wantPath)
			}
		})
	}
}

func TestPingToBroker(t *testing.T) {
	sub := &sink{}
	cfg := load(t, map[string]string{
		"b.yaml": brokerYAML,
		"t.yaml": triggerYAML("t", `
  filters:
    - exact: {type: dev.knative.sources.ping}`),
		"p.yaml": `
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: p, namespace: omni}
spec:
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
`,
	})
	r := start(t, cfg, router.Handlers(map[string]http.Handler{"subscriber": sub, "dead-letter": &sink{}}))
	if err := r.Ping(context.Background(), "omni", "p"); err != nil {
		t.Fatal(err)
	}
	drain(t, r)
	if diff := cmp.Diff([]string{"dev.knative.sources.ping"}, sub.types()); diff != "" {
		t.Errorf("subscriber got (-want +got):\n%s", diff)
	}
}
