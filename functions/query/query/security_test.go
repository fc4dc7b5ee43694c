package query

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
)

// apiServer serves query as the function does (runtime.Mux) on a real store holding one job of
// service svc with a callback URL that carries credentials and a token.
func apiServer(t *testing.T) (*httptest.Server, *jobs.Job) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	j := &jobs.Job{ID: "01jd8x1y2z3a4b5c6d7e8f9g0h", Service: "svc", Task: "buildrpm", Arch: "x86_64",
		Callback: "https://user:hunter2@hooks.example.org/omni?token=s3cret#frag"}
	if err := st.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	h, err := New(ctx, Settings{PageTokenKey: ""}, Deps{Store: st, Logs: newFakeLogStore(), Live: newFakeLive(),
		Authn: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p := &auth.Principal{User: r.Header.Get("X-Test-User"), Role: auth.RoleViewer, Services: []string{r.Header.Get("X-Test-User")}}
				next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), p)))
			})
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(runtime.Mux(ctx, h.Function()))
	t.Cleanup(srv.Close)
	return srv, j
}

func call(t *testing.T, srv *httptest.Server, user, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-User", user)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Another service's job and a job that does not exist answer the very same 404 (but for the id).
func TestNotFoundIndistinguishable(t *testing.T) {
	srv, j := apiServer(t)
	const unknown = "01jd8x1y2z3a4b5c6d7e8f9zzz"
	for _, path := range []string{"/v1/jobs/%s", "/v1/jobs/%s/logs", "/v1/jobs/%s/logs/build:download"} {
		oc, other := call(t, srv, "another", http.MethodGet, strings.ReplaceAll(path, "%s", j.ID), "")
		uc, missing := call(t, srv, "svc", http.MethodGet, strings.ReplaceAll(path, "%s", unknown), "")
		if oc != http.StatusNotFound || uc != http.StatusNotFound {
			t.Errorf("%s: %d and %d, want 404 for both", path, oc, uc)
		}
		if d := cmp.Diff(strings.ReplaceAll(missing, unknown, "ID"), strings.ReplaceAll(other, j.ID, "ID")); d != "" {
			t.Errorf("%s: no such job (-) and another service's job (+) differ:\n%s", path, d)
		}
	}
}

// Callback URLs are shown without credentials, query or fragment, in every answer.
func TestCallbackRedacted(t *testing.T) {
	srv, j := apiServer(t)
	want := "https://hooks.example.org/omni"
	for name, c := range map[string]struct{ method, path, body string }{
		"get":      {http.MethodGet, "/v1/jobs/" + j.ID, ""},
		"list":     {http.MethodGet, "/v1/jobs?service=svc", ""},
		"batchGet": {http.MethodPost, "/v1/jobs:batchGet", `{"ids":["` + j.ID + `"]}`},
	} {
		code, body := call(t, srv, "svc", c.method, c.path, c.body)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", name, code, body)
		}
		if strings.Contains(body, "hunter2") || strings.Contains(body, "s3cret") || strings.Contains(body, "frag") {
			t.Errorf("%s shows the callback's secrets: %s", name, body)
		}
		if !strings.Contains(body, `"callback":"`+want+`"`) {
			t.Errorf("%s: want callback %s in %s", name, want, body)
		}
	}
}

// More than 10,000 query parameters are refused, not served with the ones Go's parser keeps.
func TestTooManyQueryParameters(t *testing.T) {
	srv, _ := apiServer(t)
	q := "service=svc" + strings.Repeat("&limit=5", runtime.MaxQueryParams)
	code, body := call(t, srv, "svc", http.MethodGet, "/v1/jobs?"+q, "")
	var p struct{ Field string }
	_ = json.Unmarshal([]byte(body), &p)
	if code != http.StatusBadRequest || p.Field != "query" {
		t.Errorf("%d %s; want 400 naming the query", code, body)
	}
	if code, body := call(t, srv, "svc", http.MethodGet, "/v1/jobs?service=svc"+strings.Repeat("&limit=5", 100), ""); code != http.StatusOK {
		t.Errorf("101 parameters: %d %s, want 200", code, body)
	}
}
