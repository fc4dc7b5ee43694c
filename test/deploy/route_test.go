package deploy

import (
	"net/http"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/config"
	"github.com/omnibuildplatform/omni-orchestrator/functions/query/query"
	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
)

// httpRoute is the part of a Gateway API HTTPRoute that config/900-api-route.yaml uses.
type httpRoute struct {
	Kind string `json:"kind"`
	Spec struct {
		Rules []struct {
			Matches []struct {
				Method string `json:"method"`
				Path   struct {
					Type  string `json:"type"`
					Value string `json:"value"`
				} `json:"path"`
			} `json:"matches"`
			Filters []struct {
				URLRewrite struct {
					Hostname string `json:"hostname"`
				} `json:"urlRewrite"`
			} `json:"filters"`
		} `json:"rules"`
	} `json:"spec"`
}

// routeTo returns the host the route rewrites a request to, by Gateway API's precedence: an
// Exact path match, then the longest PathPrefix match, then a match that names the method.
// PathPrefix matches whole path elements, and a trailing "/" of its value is ignored.
func (r *httpRoute) routeTo(method, path string) string {
	best, bestRank := "", -1
	for _, rule := range r.Spec.Rules {
		for _, m := range rule.Matches {
			if m.Method != "" && m.Method != method {
				continue
			}
			rank := 0
			switch v := strings.TrimSuffix(m.Path.Value, "/"); m.Path.Type {
			case "Exact":
				if path != m.Path.Value {
					continue
				}
				rank = 1 << 20
			case "PathPrefix":
				if path != v && !strings.HasPrefix(path, v+"/") {
					continue
				}
				rank = len(v) << 1
			default:
				continue
			}
			if m.Method != "" {
				rank++
			}
			if rank > bestRank && len(rule.Filters) > 0 {
				best, bestRank = rule.Filters[0].URLRewrite.Hostname, rank
			}
		}
	}
	return best
}

// routeRecorder records the patterns registered on it.
type routeRecorder []string

func (r *routeRecorder) Handle(pattern string, _ http.Handler) { *r = append(*r, pattern) }

// The public HTTPRoute sends every public route of a function (/v1, the console, the OpenAPI
// document) to that function, as the local all-in-one's single mux does.
func TestPublicRouteReachesEveryRoute(t *testing.T) {
	b, err := config.FS.ReadFile("900-api-route.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var route httpRoute
	if err := yaml.Unmarshal([]byte(strings.Split(string(b), "\n---\n")[0]), &route); err != nil || route.Kind != "HTTPRoute" {
		t.Fatalf("900-api-route.yaml: first document is not an HTTPRoute (%v)", err)
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
			if got, want := route.routeTo(method, path), fn+".omni.svc.cluster.local"; got != want {
				t.Errorf("%s %s (%s of %s): the HTTPRoute sends it to %q, want %q", method, path, pattern, fn, got, want)
			}
		}
	}
	if n < 10 {
		t.Errorf("checked %d public routes; the functions register more", n)
	}
}
