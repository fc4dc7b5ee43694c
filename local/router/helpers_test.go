package router_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/omnibuildplatform/omni-orchestrator/local/router"
)

// received is one request a sink got.
type received struct {
	path   string
	header http.Header
	event  cloudevents.Event
}

// sink is a scripted event receiver: it answers the n-th request with responses[n] (the last
// one repeats; none means 202) and records what it received.
type sink struct {
	mu        sync.Mutex
	got       []received
	responses []response
}

type response struct {
	code   int
	body   string
	header map[string]string
	reply  *cloudevents.Event // sent as a binary-mode reply
}

func (s *sink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ev, err := binding.ToEvent(req.Context(), cehttp.NewMessageFromHttpRequest(req))
	if err != nil {
		http.Error(w, "sink: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	n := len(s.got)
	s.got = append(s.got, received{path: req.URL.Path, header: req.Header.Clone(), event: *ev})
	resp := response{code: http.StatusAccepted}
	if len(s.responses) > 0 {
		resp = s.responses[min(n, len(s.responses)-1)]
	}
	s.mu.Unlock()

	for k, v := range resp.header {
		w.Header().Set(k, v)
	}
	if resp.reply != nil {
		if err := cehttp.WriteResponseWriter(req.Context(), binding.ToMessage(resp.reply), resp.code, w); err != nil {
			panic(err)
		}
		return
	}
	w.WriteHeader(resp.code)
	_, _ = w.Write([]byte(resp.body))
}

func (s *sink) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

func (s *sink) types() []string {
	var ts []string
	for _, r := range s.received() {
		ts = append(ts, r.event.Type())
	}
	return ts
}

// serve starts an httptest server for h, closed when the test ends.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// load parses manifests given as file name → YAML.
func load(t *testing.T, files map[string]string) *router.Config {
	t.Helper()
	cfg, err := router.Load(mapFS(files))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

// start builds a router that is closed when the test ends.
func start(t *testing.T, cfg *router.Config, resolve router.Resolver, opts ...router.Option) *router.Router {
	t.Helper()
	opts = append([]router.Option{router.WithBackoffScale(0)}, opts...)
	r, err := router.New(cfg, resolve, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// drain waits until the router has finished everything it accepted.
func drain(t *testing.T, r *router.Router) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
}

// urls resolves Services by name to the URLs of test servers.
func urls(m map[string]string) router.Resolver {
	return func(ref router.Ref) (router.Target, error) {
		u, ok := m[ref.Name]
		if !ok {
			return router.Target{}, router.ErrUnresolved
		}
		t, err := parseURL(u)
		return router.Target{URL: t}, err
	}
}

func newEvent(typ string, ext map[string]any) cloudevents.Event {
	ev := cloudevents.NewEvent()
	ev.SetID("id-1")
	ev.SetSource("/test")
	ev.SetType(typ)
	ev.SetSubject("job-1")
	for k, v := range ext {
		ev.SetExtension(k, v)
	}
	_ = ev.SetData(cloudevents.ApplicationJSON, map[string]string{"hello": "world"})
	return ev
}

const brokerYAML = `
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  namespace: omni
  annotations:
    eventing.knative.dev/broker.class: MTChannelBasedBroker
spec:
  delivery:
    retry: 3
    backoffPolicy: exponential
    backoffDelay: PT0.2S
    deadLetterSink:
      ref:
        apiVersion: serving.knative.dev/v1
        kind: Service
        name: dead-letter
`

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }

func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, body := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return fsys
}
