package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/functions/legacy/legacy"
	"github.com/omnibuildplatform/omni-orchestrator/functions/query/query"
	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

func problem(t *testing.T, r response) httpapi.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p httpapi.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode problem: %v: %s", err, r.body)
	}
	return p
}

func TestAPIErrors(t *testing.T) {
	j := alice.submit(t, rpmJob("team-a", "x86_64", nil))
	big := bytes.Repeat([]byte("x"), 2<<20)
	tests := map[string]struct {
		c         client
		method    string
		path      string
		body      any
		wantCode  int
		wantField string
	}{
		"no credentials":              {anon, "GET", "/v1/jobs/" + j.ID, nil, 401, ""},
		"wrong password":              {client{user: "alice", password: "nope"}, "GET", "/v1/jobs/" + j.ID, nil, 401, ""},
		"no credentials on submit":    {anon, "POST", "/v1/jobs", rpmJob("team-a", "x86_64", nil), 401, ""},
		"another service's job":       {bob, "GET", "/v1/jobs/" + j.ID, nil, 404, ""},
		"unknown id":                  {root, "GET", "/v1/jobs/0000000000000000000000000z", nil, 404, ""},
		"missing service":             {alice, "POST", "/v1/jobs", map[string]any{"task": "buildrpm", "arch": "x86_64"}, 400, "service"},
		"unknown task":                {alice, "POST", "/v1/jobs", map[string]any{"service": "team-a", "task": "nope", "arch": "x86_64"}, 400, "task"},
		"unknown arch":                {alice, "POST", "/v1/jobs", map[string]any{"service": "team-a", "task": "buildrpm", "arch": "riscv64", "parameters": map[string]any{"srpmUrl": "https://x.org/a.src.rpm"}}, 400, "arch"},
		"bad parameter":               {alice, "POST", "/v1/jobs", map[string]any{"service": "team-a", "task": "buildrpm", "arch": "x86_64", "parameters": map[string]any{"srpmUrl": "ftp://x"}}, 400, "parameters.srpmUrl"},
		"unknown field":               {alice, "POST", "/v1/jobs", map[string]any{"service": "team-a", "task": "buildrpm", "arch": "x86_64", "colour": "red"}, 400, "colour"},
		"wrong type":                  {alice, "POST", "/v1/jobs", map[string]any{"service": 7}, 400, "service"},
		"bad label":                   {alice, "POST", "/v1/jobs", rpmJob("team-a", "x86_64", map[string]string{"omni.openeuler.org/job-id": "x"}), 400, "labels"},
		"malformed JSON":              {alice, "POST", "/v1/jobs", []byte(`{"service":`), 400, ""},
		"body over the limit":         {alice, "POST", "/v1/jobs", big, 413, ""},
		"submit to a foreign service": {alice, "POST", "/v1/jobs", rpmJob("team-b", "x86_64", nil), 403, ""},
		"viewer cannot submit":        {bob, "POST", "/v1/jobs", rpmJob("team-b", "x86_64", nil), 403, ""},
		"list a foreign service":      {bob, "GET", "/v1/jobs?service=team-a", nil, 403, ""},
		"bad status filter":           {alice, "GET", "/v1/jobs?status=done", nil, 400, "status"},
		"forged page token":           {alice, "GET", "/v1/jobs?page_token=eyJjIjoiIn0.AAAA", nil, 400, "page_token"},
		"batchGet without ids":        {alice, "POST", "/v1/jobs:batchGet", map[string]any{"ids": []string{}}, 400, "ids"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := tc.c.do(t, tc.method, tc.path, tc.body)
			if r.code != tc.wantCode {
				t.Fatalf("%d %s, want %d", r.code, r.body, tc.wantCode)
			}
			p := problem(t, r)
			if p.Status != tc.wantCode || p.Detail == "" {
				t.Errorf("problem %+v", p)
			}
			if p.Field != tc.wantField {
				t.Errorf("field %q, want %q (%s)", p.Field, tc.wantField, p.Detail)
			}
			if tc.wantCode == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestIdempotencyKey(t *testing.T) {
	req := rpmJob("team-a", "x86_64", nil)
	first := alice.submit(t, req, "Idempotency-Key", "e2e-key-1")
	r := alice.do(t, http.MethodPost, "/v1/jobs", req, "Idempotency-Key", "e2e-key-1")
	if r.code != http.StatusOK || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %s", r.code, r.body)
	}
	if again := r.job(t); again.ID != first.ID {
		t.Fatalf("repeat returned job %s, want %s", again.ID, first.ID)
	}
	n := 0
	for _, arch := range []string{"x86_64", "aarch64"} {
		all, err := omni.Platform.Cluster(arch).Clientset().BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, kj := range all.Items {
			if kj.Labels[jobIDLabel] == first.ID {
				n++
			}
		}
	}
	if n != 1 {
		t.Errorf("%d Kubernetes Jobs for the job, want 1", n)
	}
	// Another key makes another job; the same key with another task is refused.
	if other := alice.submit(t, req, "Idempotency-Key", "e2e-key-2"); other.ID == first.ID {
		t.Error("a new key returned the old job")
	}
	srpm := map[string]any{"service": "team-a", "task": "buildsrpm", "arch": "x86_64", "domain": "e2e",
		"parameters": map[string]any{"spec": "Name: x\n"}}
	if r := alice.do(t, http.MethodPost, "/v1/jobs", srpm, "Idempotency-Key", "e2e-key-1"); r.code != 400 {
		t.Errorf("key reused for another task: %d %s", r.code, r.body)
	}
}

// Values that look like YAML, template or shell syntax reach the cluster byte for byte.
func TestInjectionReachesClusterVerbatim(t *testing.T) {
	spec := "Name: x\n---\nkind: Secret\n{{ .Settings }}\n&a [*a]\n!!python/object:os.system\n$(rm -rf /); `id` | tee\n'\"\\\n" + strings.Repeat("é", 1000)
	j := alice.submit(t, map[string]any{"service": "team-a", "task": "buildsrpm", "arch": "aarch64", "domain": "e2e",
		"parameters": map[string]any{"spec": spec}})
	cms, err := omni.Platform.Cluster("aarch64").Clientset().CoreV1().ConfigMaps("default").List(context.Background(),
		metav1.ListOptions{LabelSelector: jobIDLabel + "=" + j.ID})
	if err != nil || len(cms.Items) != 1 {
		t.Fatalf("configmaps: %v (%d)", err, len(cms.Items))
	}
	if got := cms.Items[0].Data["package.spec"]; got != spec {
		t.Errorf("spec in the cluster differs from the input:\n got %q\nwant %q", got, spec)
	}
	secrets, _ := omni.Platform.Cluster("aarch64").Clientset().CoreV1().Secrets("default").List(context.Background(),
		metav1.ListOptions{LabelSelector: jobIDLabel + "=" + j.ID})
	if len(secrets.Items) != 0 {
		t.Errorf("a Secret was created from the input")
	}
}

func TestListAndBatchGet(t *testing.T) {
	var ids []string
	for range 3 {
		ids = append(ids, root.submit(t, rpmJob("team-list", "x86_64", nil)).ID)
	}
	var seen []string
	token := ""
	for {
		r := root.do(t, http.MethodGet, "/v1/jobs?service=team-list&limit=2&page_token="+token, nil)
		if r.code != 200 {
			t.Fatalf("list: %d %s", r.code, r.body)
		}
		var page struct {
			Jobs          []*jobs.Job `json:"jobs"`
			NextPageToken string      `json:"nextPageToken"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Jobs {
			seen = append(seen, j.ID)
		}
		if page.NextPageToken == "" {
			break
		}
		// A token is bound to its filters.
		if r := root.do(t, http.MethodGet, "/v1/jobs?service=team-a&page_token="+page.NextPageToken, nil); r.code != 400 {
			t.Errorf("token used with other filters: %d", r.code)
		}
		token = page.NextPageToken
	}
	if len(seen) != 3 || seen[0] != ids[2] || seen[2] != ids[0] {
		t.Errorf("listed %v, want newest first %v", seen, ids)
	}
	r := bob.do(t, http.MethodPost, "/v1/jobs:batchGet", map[string]any{"ids": []string{ids[0], "nope"}})
	var bg struct {
		Jobs    []*jobs.Job `json:"jobs"`
		Missing []string    `json:"missing"`
	}
	if err := json.Unmarshal(r.body, &bg); err != nil || r.code != 200 {
		t.Fatalf("batchGet: %d %s", r.code, r.body)
	}
	if len(bg.Jobs) != 0 || len(bg.Missing) != 2 {
		t.Errorf("bob sees %d jobs of team-list, missing %v", len(bg.Jobs), bg.Missing)
	}
	r = root.do(t, http.MethodPost, "/v1/jobs:batchGet", map[string]any{"ids": []string{ids[1], "nope", ids[0]}})
	if err := json.Unmarshal(r.body, &bg); err != nil || len(bg.Jobs) != 2 || bg.Jobs[0].ID != ids[1] || bg.Missing[0] != "nope" {
		t.Errorf("batchGet: %s", r.body)
	}
}

func TestTasksAndOpenAPI(t *testing.T) {
	r := bob.do(t, http.MethodGet, "/v1/tasks", nil)
	var tasks struct {
		Tasks []struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal(r.body, &tasks); err != nil || r.code != 200 {
		t.Fatalf("tasks: %d %s", r.code, r.body)
	}
	names := map[string]bool{}
	for _, tk := range tasks.Tasks {
		names[tk.Name] = len(tk.Schema) > 2
	}
	for _, want := range []string{"buildimagefromrelease", "buildimagefromiso", "buildrpm", "buildsrpm"} {
		if !names[want] {
			t.Errorf("task %s missing or without schema", want)
		}
	}
	if r := anon.do(t, http.MethodGet, "/openapi.json", nil); r.code != 200 || !json.Valid(r.body) {
		t.Errorf("openapi: %d", r.code)
	}
}

// routeRecorder records the patterns registered on it.
type routeRecorder []string

func (r *routeRecorder) Handle(pattern string, _ http.Handler) { *r = append(*r, pattern) }

// apiRoutes are the routes the HTTP functions register, taken from their own Routes methods
// (the code that fills the real muxes), so that a route added there without documentation is
// found; and the runtime's own routes, found by asking the real runtime mux which pattern
// serves each method on each path of the document and of the functions' routes.
func apiRoutes(t *testing.T) []string {
	t.Helper()
	var rec routeRecorder
	pass := func(h http.Handler) http.Handler { return h }
	(&query.Handler{Logs: &query.LogHandler{}}).Routes(&rec, pass)
	(&submit.Handler{}).Routes(&rec, pass)
	lh, err := legacy.New(legacy.Settings{Prefix: "/legacy", SubmitURL: omni.URL, QueryURL: omni.URL}, legacy.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	lh.Routes(&rec)
	return rec
}

// Every operation of the OpenAPI document is served by a real route (no mux 404/405), and every
// route the functions register is documented.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	r := anon.do(t, http.MethodGet, "/openapi.json", nil)
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			m := strings.ToUpper(method)
			documented[m+" "+path] = true
			p := strings.ReplaceAll(strings.ReplaceAll(path, "{id}", "0000000000000000000000000z"), "{step}", "build")
			var body any
			if m == http.MethodPost {
				body = map[string]any{}
			}
			resp := root.do(t, m, p, body)
			if resp.code == http.StatusMethodNotAllowed || (resp.code == http.StatusNotFound && resp.header.Get("Content-Type") != "application/problem+json") {
				t.Errorf("%s %s is documented but not routed: %d %s", m, path, resp.code, resp.body)
			}
		}
	}
	routes := apiRoutes(t)
	if len(routes) < 5 {
		t.Fatalf("recorded routes %v: the functions register more", routes)
	}
	// The runtime's routes: every method on every path, served by the runtime's real mux.
	probe := runtime.Mux(context.Background())
	paths := map[string]bool{}
	for path := range doc.Paths {
		paths[path] = true
	}
	for _, r := range routes {
		_, path, _ := strings.Cut(r, " ")
		paths[path] = true
	}
	for path := range paths {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			req := httptest.NewRequest(m, strings.ReplaceAll(strings.ReplaceAll(path, "{id}", "x"), "{step}", "build"), nil)
			rec := httptest.NewRecorder()
			probe.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
				routes = append(routes, m+" "+path)
			}
		}
	}
	for _, route := range routes {
		if route == "GET /v1/jobs/{id}/logs/{file}" {
			route = "GET /v1/jobs/{id}/logs/{step}:download" // one route, documented by its only valid form
		}
		// The legacy API answers each path with a trailing slash too, documented once.
		route = strings.TrimSuffix(route, "/{$}")
		if route == "POST /v1/jobs/{action}" {
			route = "POST /v1/jobs/{id}:rerun" // the one action on a job, documented by its form
		}
		if !documented[route] {
			t.Errorf("route %s is not in the OpenAPI document", route)
		}
	}
}
