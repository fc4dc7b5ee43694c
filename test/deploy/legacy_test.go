package deploy

import (
	"net/url"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/functions/legacy/legacy"
)

// httpRoute is the part of a Gateway API HTTPRoute that routing uses.
type httpRoute struct {
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
				Type       string `json:"type"`
				URLRewrite struct {
					Hostname string `json:"hostname"`
				} `json:"urlRewrite"`
			} `json:"filters"`
		} `json:"rules"`
	} `json:"spec"`
}

// route returns the host name the route rewrites a request of method to path to, choosing among
// the matching rules as Gateway API does: an Exact path before a PathPrefix, a longer prefix
// before a shorter one, a match with a method before one without. "" when nothing matches.
func (r httpRoute) route(method, path string) string {
	best, host := -1, ""
	for _, rule := range r.Spec.Rules {
		for _, m := range rule.Matches {
			if m.Method != "" && m.Method != method {
				continue
			}
			score := 0
			switch m.Path.Type {
			case "Exact":
				if path != m.Path.Value {
					continue
				}
				score = 1 << 20
			case "PathPrefix":
				v := strings.TrimSuffix(m.Path.Value, "/")
				if path != v && !strings.HasPrefix(path, v+"/") {
					continue
				}
				score = len(v) << 1
			default:
				continue
			}
			if m.Method != "" {
				score++
			}
			if score > best {
				best = score
				for _, f := range rule.Filters {
					if f.Type == "URLRewrite" {
						host = f.URLRewrite.Hostname
					}
				}
			}
		}
	}
	return host
}

// The legacy function calls each /v1 route on the function the public HTTPRoute sends that
// route to (its Service's URLs name those functions), and the HTTPRoute sends the legacy
// prefix to legacy.
func TestLegacyRoutes(t *testing.T) {
	t.Parallel()
	d := loadDeployment(t, "config")
	var routes []httpRoute
	for _, m := range d.all {
		if m.Kind == "HTTPRoute" {
			var r httpRoute
			if err := yaml.Unmarshal(m.Raw, &r); err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			routes = append(routes, r)
		}
	}
	if len(routes) != 1 {
		t.Fatalf("%d HTTPRoutes in config/, want 1", len(routes))
	}
	route := routes[0]
	s := d.services[legacy.Name]
	if s == nil {
		t.Fatal("no Service legacy in config/")
	}
	env := map[string]string{}
	for _, e := range s.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	prefix := env["OMNI_LEGACY_PREFIX"]
	if prefix == "" {
		prefix = "/legacy" // the default (docs/configuration.md)
	}
	urls := map[string]string{"submit": env["OMNI_LEGACY_SUBMIT_URL"], "query": env["OMNI_LEGACY_QUERY_URL"]}
	for _, c := range legacy.Calls {
		path := strings.ReplaceAll(c.Path, "{id}", "01m8f9d6ecg576fhj04x11ggjg")
		want := c.Function + ".omni.svc.cluster.local"
		if got := route.route(c.Method, path); got != want {
			t.Errorf("%s %s: the HTTPRoute sends it to %q, the legacy function to %s", c.Method, path, got, want)
		}
		u, err := url.Parse(urls[c.Function])
		if err != nil || u.Host != want {
			t.Errorf("Service legacy: the URL of %s is %q, want http://%s", c.Function, urls[c.Function], want)
		}
	}
	for _, p := range []string{"/v1/jobs", "/v1/jobs/", "/v1/jobs/batchQuery", "/v1/jobs/logs", "/v1/health"} {
		for _, m := range []string{"GET", "POST", "DELETE"} {
			if got := route.route(m, prefix+p); got != "legacy.omni.svc.cluster.local" {
				t.Errorf("%s %s%s: the HTTPRoute sends it to %q, want legacy", m, prefix, p, got)
			}
		}
	}
}
