package notify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap/zaptest"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/callback"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// hit is one request a receiver got.
type hit struct {
	header http.Header
	body   []byte
}

// hook is a webhook receiver: it records every request and answers with the next of its
// codes (the last one repeats; none means 200).
type hook struct {
	*httptest.Server
	mu    sync.Mutex
	hits  []hit
	codes []int
	// block, when set, makes every request wait until it is closed or the request ends.
	block chan struct{}
}

func newHook(t *testing.T, codes ...int) *hook {
	h := &hook{codes: codes}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.hits = append(h.hits, hit{r.Header.Clone(), body})
		code := http.StatusOK
		if n := len(h.hits); len(h.codes) > 0 {
			code = h.codes[min(n, len(h.codes))-1]
		}
		block := h.block
		h.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}
		if code == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}))
	t.Cleanup(func() {
		h.mu.Lock()
		if h.block != nil {
			close(h.block)
			h.block = nil
		}
		h.mu.Unlock()
		h.Close()
	})
	return h
}

func (h *hook) got() []hit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hit(nil), h.hits...)
}

func testJob(callback string) *jobs.Job {
	return &jobs.Job{
		ID: "01jd8x1y2z3a4b5c6d7e8f9g0h", Service: "team-a", Task: "buildrpm", Domain: "e2e", Arch: "x86_64",
		Cluster: "x86_64", Namespace: "default", Status: jobs.StatusRunning, Callback: callback,
		Parameters: map[string]any{"srpmUrl": "https://repo.example.org/zlib.src.rpm"},
		CreatedAt:  time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2026, 11, 27, 19, 0, 1, 123456000, time.UTC),
		Revision: 3,
	}
}

func jobEvent(t *testing.T, j *jobs.Job) event.Event {
	t.Helper()
	e, err := events.NewJobEvent(events.TypeJobChanged, "status-sync", j, jobs.StatusPending)
	if err != nil {
		t.Fatal(err)
	}
	// What the Broker adds; receivers must not see it.
	e.SetExtension("knativearrivaltime", "2026-11-27T19:00:02Z")
	return e
}

func subs(t *testing.T, yaml string) func() *Subscriptions {
	t.Helper()
	s, err := ParseSubscriptions([]byte(yaml), t.TempDir(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return func() *Subscriptions { return s }
}

func testCtx(t *testing.T) context.Context {
	return logging.WithLogger(context.Background(), zaptest.NewLogger(t).Sugar())
}

// fakeJobs is the job store of the tests.
type fakeJobs struct {
	mu   sync.Mutex
	jobs map[string]*jobs.Job
}

var _ Jobs = (*fakeJobs)(nil)

func (f *fakeJobs) GetJob(_ context.Context, id string) (*jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, jobs.ErrNotFound
	}
	c := *j
	return &c, nil
}

func (f *fakeJobs) put(j *jobs.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *j
	f.jobs[j.ID] = &c
}

func newHandler(subscriptions func() *Subscriptions, guard *callback.Guard) *Handler {
	cb, wh := Clients(guard)
	return &Handler{Jobs: &fakeJobs{jobs: map[string]*jobs.Job{}}, Guard: guard, Subscriptions: subscriptions,
		Callbacks: cb, Webhooks: wh, Timeout: 5 * time.Second}
}

// stored records j in h's store and returns the event announcing it.
func stored(t *testing.T, h *Handler, j *jobs.Job) event.Event {
	t.Helper()
	h.Jobs.(*fakeJobs).put(j)
	return jobEvent(t, j)
}

// code is the status the one CloudEvents edge answers for res.
func code(res protocol.Result) int {
	c, _ := runtime.EventStatus(res)
	return c
}

func TestDelivery(t *testing.T) {
	callback, ci, other := newHook(t), newHook(t), newHook(t)
	h := newHandler(subs(t, `
subscriptions:
  - name: ci
    url: `+ci.URL+`/hooks/omni
    secret: ci-secret
    match: {services: [team-a], statuses: [running, succeeded]}
  - name: other
    url: `+other.URL+`
    secret: other-secret
    match: {services: [team-b]}
`), nil)
	h.CallbackSecret = []byte("callback-secret")
	e := stored(t, h, testJob(callback.URL+"/cb?token=x"))
	if res := h.Receive(testCtx(t), e); !protocol.IsACK(res) {
		t.Fatalf("Receive: %v", res)
	}
	if n := len(other.got()); n != 0 {
		t.Errorf("subscription other (team-b) got %d requests, want 0", n)
	}
	for name, c := range map[string]struct {
		hook   *hook
		secret string
	}{
		"callback": {callback, "callback-secret"},
		"ci":       {ci, "ci-secret"},
	} {
		hits := c.hook.got()
		if len(hits) != 1 {
			t.Errorf("%s got %d requests, want 1", name, len(hits))
			continue
		}
		got := hits[0]
		if !bytes.Equal(got.body, e.Data()) {
			t.Errorf("%s body = %s, want the event data %s", name, got.body, e.Data())
		}
		if err := VerifyDelivery([]byte(c.secret), got.header, got.body, time.Now(), 0); err != nil {
			t.Errorf("%s: delivery does not verify: %v", name, err)
		}
		want := map[string]string{
			"Ce-Id": e.ID(), "Ce-Type": events.TypeJobChanged, "Ce-Source": "/omni/status-sync", "Ce-Subject": e.Subject(),
			"Ce-Specversion": "1.0", "Ce-Omnistatus": "running", "Ce-Omniservice": "team-a", "Content-Type": "application/json",
			HeaderEventID: e.ID(), HeaderEventType: events.TypeJobChanged, HeaderReceiver: name,
			"Ce-Time": "2026-11-27T19:00:01.123456Z", "Ce-Knativearrivaltime": "",
		}
		gotHeaders := map[string]string{}
		for k := range want {
			gotHeaders[k] = got.header.Get(k)
		}
		if d := cmp.Diff(want, gotHeaders); d != "" {
			t.Errorf("%s headers (-want +got):\n%s", name, d)
		}
		// A receiver can read the delivery back as the same event.
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(got.body))
		req.Header = got.header
		back, err := binding.ToEvent(context.Background(), cehttp.NewMessageFromHttpRequest(req))
		if err != nil || back.ID() != e.ID() || !bytes.Equal(back.Data(), e.Data()) {
			t.Errorf("%s: delivery is not the event as a binary CloudEvent: %v", name, err)
		}
	}
}

func TestUnsignedCallback(t *testing.T) {
	callback := newHook(t)
	h := newHandler(nil, nil)
	if res := h.Receive(testCtx(t), stored(t, h, testJob(callback.URL))); !protocol.IsACK(res) {
		t.Fatal(res)
	}
	hits := callback.got()
	if len(hits) != 1 || hits[0].header.Get(HeaderSignature) != "" {
		t.Fatalf("got %d requests, signature %q; want 1 unsigned", len(hits), hits[0].header.Get(HeaderSignature))
	}
}

func TestNoReceivers(t *testing.T) {
	h := newHandler(subs(t, "subscriptions: []"), nil)
	if res := h.Receive(testCtx(t), stored(t, h, testJob(""))); !protocol.IsACK(res) {
		t.Fatal(res)
	}
}

func TestBadEvents(t *testing.T) {
	h := newHandler(nil, nil)
	good := func(t *testing.T) event.Event { return stored(t, h, testJob("")) }
	ahead := testJob("")
	ahead.Revision++
	for name, c := range map[string]struct {
		event func(t *testing.T) event.Event
		want  string
	}{
		"wrong type": {func(t *testing.T) event.Event {
			e := good(t)
			e.SetType(events.TypeLogsArchived)
			return e
		}, "unexpected event type"},
		"data not JSON": {func(t *testing.T) event.Event {
			e := good(t)
			_ = e.SetData(cloudevents.TextPlain, "hello")
			return e
		}, "data is not a job"},
		"no id": {func(t *testing.T) event.Event {
			e := good(t)
			e.SetSubject("")
			_ = e.SetData(cloudevents.ApplicationJSON, map[string]any{"service": "x"})
			return e
		}, "no id"},
		"id of another revision": {func(t *testing.T) event.Event {
			e := good(t)
			e.SetID("01jd8x1y2z3a4b5c6d7e8f9g0h.changed.9")
			return e
		}, "is not"},
		"no such job": {func(t *testing.T) event.Event {
			j := testJob("")
			j.ID = "01jd8x1y2z3a4b5c6d7e8f9zzz"
			return jobEvent(t, j)
		}, "no job 01jd8x1y2z3a4b5c6d7e8f9zzz"},
		"subject is another job": {func(t *testing.T) event.Event {
			e := good(t)
			e.SetSubject("someone-else")
			return e
		}, "is not the job id"},
	} {
		t.Run(name, func(t *testing.T) {
			res := h.Receive(testCtx(t), c.event(t))
			if code(res) != http.StatusBadRequest || !strings.Contains(res.Error(), c.want) {
				t.Errorf("Receive = %d %v, want 400 with %q", code(res), res, c.want)
			}
		})
	}
}

// A receiver that fails makes the event fail with 503 (the Broker retries); the others got it.
// With a Memory the retry goes to the failed receiver only; without, to every receiver.
func TestFailureAndRetry(t *testing.T) {
	for name, remember := range map[string]bool{"with memory": true, "without memory": false} {
		t.Run(name, func(t *testing.T) {
			callback, flaky := newHook(t), newHook(t, http.StatusServiceUnavailable, http.StatusOK)
			h := newHandler(subs(t, "subscriptions:\n  - {name: flaky, url: '"+flaky.URL+"/in?key=hidden', secret: s}\n"), nil)
			if remember {
				h.Memory = NewMemory(time.Minute, 100)
			}
			e := stored(t, h, testJob(callback.URL))
			res := h.Receive(testCtx(t), e)
			if code(res) != http.StatusServiceUnavailable {
				t.Fatalf("first Receive = %v, want 503", res)
			}
			msg := res.Error()
			if !strings.Contains(msg, "flaky") || !strings.Contains(msg, "503") || strings.Contains(msg, "hidden") ||
				!strings.Contains(msg, "1 of 2 deliveries failed") {
				t.Errorf("message %q: want the failed receiver and its status, without the URL's query", msg)
			}
			if res := h.Receive(testCtx(t), e); !protocol.IsACK(res) {
				t.Fatalf("retry: %v", res)
			}
			wantCallback := 2
			if remember {
				wantCallback = 1
			}
			if n := len(callback.got()); n != wantCallback {
				t.Errorf("callback got %d requests, want %d", n, wantCallback)
			}
			if n := len(flaky.got()); n != 2 {
				t.Errorf("flaky got %d requests, want 2", n)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	for name, c := range map[string]struct {
		codes   []int
		timeout time.Duration
		block   bool
		want    string
	}{
		"server error": {codes: []int{500}, want: "500 Internal Server Error"},
		"client error": {codes: []int{404}, want: "404 Not Found"},
		"redirect":     {codes: []int{302}, want: "302 Found"},
		"timeout":      {block: true, timeout: 100 * time.Millisecond, want: "deadline exceeded"},
	} {
		t.Run(name, func(t *testing.T) {
			callback := newHook(t, c.codes...)
			if c.block {
				callback.block = make(chan struct{})
			}
			h := newHandler(nil, nil)
			if c.timeout > 0 {
				h.Timeout = c.timeout
			}
			res := h.Receive(testCtx(t), stored(t, h, testJob(callback.URL)))
			if code(res) != http.StatusServiceUnavailable || !strings.Contains(res.Error(), c.want) {
				t.Errorf("Receive = %v, want 503 with %q", res, c.want)
			}
		})
	}
}

// A callback that can never be delivered is a 400 (dead letter at once) — unless another
// receiver failed in a way a retry may fix.
func TestUndeliverableCallback(t *testing.T) {
	deny, err := callback.GuardEnv{Deny: callback.DefaultDeny, DenyHosts: callback.DefaultDenyHosts}.Guard()
	if err != nil {
		t.Fatal(err)
	}
	local, failing := newHook(t), newHook(t, http.StatusServiceUnavailable)
	for name, c := range map[string]struct {
		callback string
		subs     string
		want     int
		msg      string
	}{
		"not http":                  {"ftp://example.org/x", "subscriptions: []", 400, "not an absolute http or https URL"},
		"zoned loopback":            {strings.Replace(local.URL, "127.0.0.1", "[::1%25lo]", 1), "subscriptions: []", 400, "zoned address"},
		"loopback":                  {local.URL, "subscriptions: []", 400, "denied network"},
		"metadata":                  {"http://169.254.169.254/latest/meta-data/", "subscriptions: []", 400, "denied network"},
		"loopback by name":          {strings.Replace(local.URL, "127.0.0.1", "localhost", 1), "subscriptions: []", 400, "denied network"},
		"and a retryable failure":   {local.URL, "subscriptions:\n  - {name: down, url: " + failing.URL + ", secret: s}\n", 503, "2 of 2"},
		"subscriptions not guarded": {"", "subscriptions:\n  - {name: local, url: " + local.URL + ", secret: s}\n", 200, ""},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHandler(subs(t, c.subs), deny)
			res := h.Receive(testCtx(t), stored(t, h, testJob(c.callback)))
			if code(res) != c.want || (c.msg != "" && !strings.Contains(res.Error(), c.msg)) {
				t.Errorf("Receive = %d %v, want %d with %q", code(res), res, c.want, c.msg)
			}
		})
	}
	for _, hit := range local.got() {
		if hit.header.Get(HeaderReceiver) == callbackReceiver {
			t.Errorf("a callback to a denied network was delivered")
		}
	}
}

// ServeHTTP answers the Broker with the status and, for failures, the message as the body
// (which Knative keeps in knativeerrordata).
func TestServeHTTP(t *testing.T) {
	down := newHook(t, http.StatusServiceUnavailable)
	h := newHandler(nil, nil)
	srv := httptest.NewServer(runtime.CloudEvents(h.Event))
	t.Cleanup(srv.Close)
	for name, c := range map[string]struct {
		callback   string
		structured bool
		want       int
		body       string
	}{
		"binary, delivered":     {"", false, 200, ""},
		"structured, delivered": {"", true, 200, ""},
		"receiver down":         {down.URL, false, 503, "callback (" + down.URL + "): 503 Service Unavailable"},
	} {
		t.Run(name, func(t *testing.T) {
			e := stored(t, h, testJob(c.callback))
			ctx := context.Background()
			if c.structured {
				ctx = binding.WithForceStructured(ctx)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
			if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.want || !strings.Contains(string(b), c.body) {
				t.Errorf("got %d %q, want %d with %q", resp.StatusCode, b, c.want, c.body)
			}
		})
	}
	t.Run("not a CloudEvent", func(t *testing.T) {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"hello":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("got %d, want 400", resp.StatusCode)
		}
	})
}

// Deliveries of one event run at once: the event takes about as long as its slowest receiver.
func TestParallel(t *testing.T) {
	release := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(3)
	var once [3]sync.Once
	var yaml strings.Builder
	yaml.WriteString("subscriptions:\n")
	for i := range 3 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			once[i].Do(arrived.Done)
			<-release
		}))
		t.Cleanup(srv.Close)
		fmt.Fprintf(&yaml, "  - {name: s%d, url: %s, secret: x}\n", i, srv.URL)
	}
	h := newHandler(subs(t, yaml.String()), nil)
	done := make(chan protocol.Result, 1)
	go func() { done <- h.Receive(testCtx(t), stored(t, h, testJob(""))) }()
	arrived.Wait() // all three receivers are being called at the same time
	close(release)
	if res := <-done; !protocol.IsACK(res) {
		t.Fatal(res)
	}
}

// Each service's callbacks are signed with its own secret (a file named as the service), and
// with the shared one when it has none: one service's secret verifies no other's deliveries.
func TestCallbackSecretPerService(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "team-a"), []byte("team-a-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cb := newHook(t)
	h := newHandler(nil, nil)
	h.CallbackSecret, h.CallbackSecrets = []byte("shared-secret"), dir
	a := testJob(cb.URL)
	b := testJob(cb.URL)
	b.ID, b.Service = "01jd8x1y2z3a4b5c6d7e8f9zzz", "team-b"
	for _, j := range []*jobs.Job{a, b} {
		if res := h.Receive(testCtx(t), stored(t, h, j)); !protocol.IsACK(res) {
			t.Fatal(res)
		}
	}
	hits := cb.got()
	if len(hits) != 2 {
		t.Fatalf("got %d deliveries, want 2", len(hits))
	}
	for i, want := range []string{"team-a-secret", "shared-secret"} {
		if err := VerifyDelivery([]byte(want), hits[i].header, hits[i].body, time.Now(), 0); err != nil {
			t.Errorf("delivery %d with %s: %v", i, want, err)
		}
	}
	if VerifyDelivery([]byte("team-a-secret"), hits[1].header, hits[1].body, time.Now(), 0) == nil {
		t.Error("team-a's secret verifies team-b's delivery")
	}
}
