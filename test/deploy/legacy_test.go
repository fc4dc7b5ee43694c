package deploy

import (
	"net/url"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/functions/legacy/legacy"
	"github.com/omnibuildplatform/omni-orchestrator/local/fleet"
)

// The legacy function calls each /v1 route on the function the public HTTPRoute sends that
// route to (its Service's URLs name those functions), and the HTTPRoute sends the legacy
// prefix to legacy.
func TestLegacyRoutes(t *testing.T) {
	t.Parallel()
	d := loadDeployment(t, "config")
	var routes []fleet.Route
	for _, m := range d.all {
		if m.Kind == "HTTPRoute" {
			var r fleet.Route
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
		if got := route.Host(c.Method, path); got != want {
			t.Errorf("%s %s: the HTTPRoute sends it to %q, the legacy function to %s", c.Method, path, got, want)
		}
		u, err := url.Parse(urls[c.Function])
		if err != nil || u.Host != want {
			t.Errorf("Service legacy: the URL of %s is %q, want http://%s", c.Function, urls[c.Function], want)
		}
	}
	for _, p := range []string{"/v1/jobs", "/v1/jobs/", "/v1/jobs/batchQuery", "/v1/jobs/logs", "/v1/health"} {
		for _, m := range []string{"GET", "POST", "DELETE"} {
			if got := route.Host(m, prefix+p); got != "legacy.omni.svc.cluster.local" {
				t.Errorf("%s %s%s: the HTTPRoute sends it to %q, want legacy", m, prefix, p, got)
			}
		}
	}
}
