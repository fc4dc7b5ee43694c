package fleet

import (
	"net/http"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/config"
)

// The public route of config/ sends each request to the function that serves it (test/deploy
// checks every route each function registers; this checks the fleet's reading of the file).
func TestRouteService(t *testing.T) {
	r, err := LoadRoute(config.FS)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, want string }{
		{http.MethodPost, "/v1/jobs", "submit"},
		{http.MethodGet, "/v1/jobs", "query"},
		{http.MethodDelete, "/v1/jobs/01jd8x1y2z3a4b5c6d7e8f9g0h", "submit"},
		{http.MethodGet, "/v1/jobs/01jd8x1y2z3a4b5c6d7e8f9g0h", "query"},
		{http.MethodPost, "/v1/jobs/01jd8x1y2z3a4b5c6d7e8f9g0h:rerun", "submit"},
		{http.MethodPost, "/v1/jobs:batchGet", "query"},
		{http.MethodGet, "/v1/queue", "submit"},
		{http.MethodGet, "/ui/app.js", "query"},
		{http.MethodPost, "/legacy/api/v1/jobs", "legacy"},
		{http.MethodGet, "/metrics", ""},
		{http.MethodGet, "/v1x", ""},
	} {
		if got := r.Service(c.method, c.path); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

// freePort never returns a port twice, so that two replicas started at once never share one.
func TestFreePortNeverTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
