package submit

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/callback"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

// fakeTarget is an engine instance that records creations and fails when told to.
type fakeTarget struct {
	mu        sync.Mutex
	created   []string
	createErr error
}

func (f *fakeTarget) ClusterName() string  { return "fake" }
func (f *fakeTarget) JobNamespace() string { return "builds" }
func (f *fakeTarget) Create(_ context.Context, id string, _ []*unstructured.Unstructured) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.createErr != nil {
		return f.createErr
	}
	f.created = append(f.created, id)
	return nil
}

// fakePlacer places on its target, or fails while err is set.
type fakePlacer struct {
	target *fakeTarget
	err    error
}

func (f *fakePlacer) Place(context.Context, string) (Target, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.target, nil
}

type recorder struct {
	mu  sync.Mutex
	got []event.Event
}

func (e *recorder) Emit(_ context.Context, ev event.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
	return nil
}

func newHandler(t testing.TB) (*Handler, *fakePlacer, *recorder) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := manifest.Load(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	pl := &fakePlacer{target: &fakeTarget{}}
	ev := &recorder{}
	guard, err := callback.GuardEnv{Deny: callback.DefaultDeny, DenyHosts: callback.DefaultDenyHosts}.Guard()
	if err != nil {
		t.Fatal(err)
	}
	return &Handler{Store: st, Catalogue: func() Catalogue { return cat }, Placer: pl, Emitter: ev, Guard: guard}, pl, ev
}

var submitter = &auth.Principal{User: "ci", Role: auth.RoleSubmitter, Services: []string{"release"}}

func request() Request {
	return Request{Service: "release", Task: "buildrpm", Arch: "aarch64",
		Parameters: map[string]any{"srpmUrl": "https://example.org/a.src.rpm"}}
}

func TestIdempotencyKey(t *testing.T) {
	h, pl, _ := newHandler(t)
	ctx := context.Background()
	first, replayed, err := h.Submit(ctx, submitter, request(), "k1")
	if err != nil || replayed {
		t.Fatalf("first: %v %v", err, replayed)
	}
	again, replayed, err := h.Submit(ctx, submitter, request(), "k1")
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("repeat: %v replayed=%v id %s want %s", err, replayed, again.ID, first.ID)
	}
	if n := len(pl.target.created); n != 1 {
		t.Errorf("objects created %d times, want 1", n)
	}
	other := request()
	other.Task = "buildsrpm"
	other.Parameters = map[string]any{"spec": "Name: x\n"}
	if _, _, err := h.Submit(ctx, submitter, other, "k1"); !jobs.IsInvalid(err) {
		t.Errorf("key reused for another task: %v, want invalid", err)
	}
}

// A submission that failed before recording its job does not block its key: the retry creates it.
func TestIdempotencyKeyAfterEarlyFailure(t *testing.T) {
	h, pl, _ := newHandler(t)
	ctx := context.Background()
	pl.err = errors.Join(jobs.ErrUnavailable, errors.New("no room"))
	if _, _, err := h.Submit(ctx, submitter, request(), "k2"); !errors.Is(err, jobs.ErrUnavailable) {
		t.Fatalf("first: %v", err)
	}
	pl.err = nil
	j, replayed, err := h.Submit(ctx, submitter, request(), "k2")
	if err != nil || replayed || j == nil {
		t.Fatalf("retry after early failure: %v replayed=%v", err, replayed)
	}
	if again, replayed, err := h.Submit(ctx, submitter, request(), "k2"); err != nil || !replayed || again.ID != j.ID {
		t.Fatalf("third: %v", err)
	}
}

func TestCreateFailureRecordsFailedJob(t *testing.T) {
	h, pl, ev := newHandler(t)
	pl.target.createErr = errors.New("admission webhook denied the request")
	_, _, err := h.Submit(context.Background(), submitter, request(), "")
	var ce *CreateError
	if !errors.As(err, &ce) {
		t.Fatalf("err %v, want *CreateError", err)
	}
	stored, err := h.Store.GetJob(context.Background(), ce.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != jobs.StatusFailed || stored.Reason != ReasonCreateFailed || stored.FinishedAt == nil {
		t.Errorf("stored %s %s", stored.Status, stored.Reason)
	}
	if len(ev.got) != 1 || ev.got[0].Extensions()["omnistatus"] != "failed" {
		t.Errorf("events %v, want one job.changed failed", ev.got)
	}
}

func TestSubmitChecks(t *testing.T) {
	h, _, _ := newHandler(t)
	viewer := &auth.Principal{User: "v", Role: auth.RoleViewer, Services: []string{"release"}}
	tests := map[string]struct {
		p     *auth.Principal
		req   func(*Request)
		field string
		err   error
	}{
		"viewer":             {viewer, func(*Request) {}, "", jobs.ErrForbidden},
		"other service":      {submitter, func(r *Request) { r.Service = "other" }, "", jobs.ErrForbidden},
		"bad service":        {submitter, func(r *Request) { r.Service = "Bad_Name" }, "service", nil},
		"no arch":            {submitter, func(r *Request) { r.Arch = "" }, "arch", nil},
		"bad callback":       {submitter, func(r *Request) { r.Callback = "file:///etc/passwd" }, "callback", nil},
		"zoned callback":     {submitter, func(r *Request) { r.Callback = "http://[::1%25lo]:8080/" }, "callback", nil},
		"numeric host":       {submitter, func(r *Request) { r.Callback = "http://2130706433/" }, "callback", nil},
		"private callback":   {submitter, func(r *Request) { r.Callback = "http://10.1.2.3/" }, "callback", nil},
		"function callback":  {submitter, func(r *Request) { r.Callback = "http://notify.omni.svc.cluster.local/" }, "callback", nil},
		"one-label callback": {submitter, func(r *Request) { r.Callback = "http://status-sync/resync" }, "callback", nil},
		"reserved label":     {submitter, func(r *Request) { r.Labels = map[string]string{"app.kubernetes.io/managed-by": "me"} }, "labels", nil},
		"bad parameter":      {submitter, func(r *Request) { r.Parameters = map[string]any{"srpmUrl": 7} }, "parameters.srpmUrl", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := request()
			tc.req(&req)
			_, _, err := h.Submit(context.Background(), tc.p, req, "")
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			var ie *jobs.InvalidError
			if !errors.As(err, &ie) || ie.Field != tc.field {
				t.Fatalf("err %v, want invalid %s", err, tc.field)
			}
		})
	}
}
