package deploy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/config"
	"github.com/omnibuildplatform/omni-orchestrator/functions/query/query"
	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/local/fleet"
)

// routeRecorder records the patterns registered on it.
type routeRecorder []string

func (r *routeRecorder) Handle(pattern string, _ http.Handler) { *r = append(*r, pattern) }

// The public HTTPRoute sends every public route of a function (/v1, the console, the OpenAPI
// document) to that function, as the local all-in-one's single mux does.
func TestPublicRouteReachesEveryRoute(t *testing.T) {
	route, err := fleet.LoadRoute(config.FS)
	if err != nil {
		t.Fatal(err)
	}
	pass := func(h http.Handler) http.Handler { return h }
	fns := map[string]func(*routeRecorder){
		query.Name:  func(r *routeRecorder) { (&query.Handler{Logs: &query.LogHandler{}}).Routes(r, pass) },
		submit.Name: func(r *routeRecorder) { (&submit.Handler{Dispatcher: &submit.Dispatcher{}}).Routes(r, pass) },
	}
	// A request for each pattern's wildcards.
	sample := strings.NewReplacer("{id}", "01jd8x1y2z3a4b5c6d7e8f9g0h", "{action}", "01jd8x1y2z3a4b5c6d7e8f9g0h:rerun", "{file}", "build:download")
	n := 0
	for fn, register := range fns {
		var rec routeRecorder
		register(&rec)
		for _, pattern := range rec {
			method, path, _ := strings.Cut(pattern, " ")
			if !strings.HasPrefix(path, "/v1") && !strings.HasPrefix(path, query.ConsolePrefix) && path != "/openapi.json" {
				continue // not public (the Broker's deliveries)
			}
			path = sample.Replace(path)
			if strings.HasSuffix(path, "/") {
				path += "app.js"
			}
			n++
			if got, want := route.Host(method, path), fn+".omni.svc.cluster.local"; got != want {
				t.Errorf("%s %s (%s of %s): the HTTPRoute sends it to %q, want %q", method, path, pattern, fn, got, want)
			}
		}
	}
	if n < 10 {
		t.Errorf("checked %d public routes; the functions register more", n)
	}
}
