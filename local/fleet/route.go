package fleet

import (
	"fmt"
	"io/fs"
	"strings"

	"sigs.k8s.io/yaml"
)

// Route is the part of a Gateway API HTTPRoute that config/900-api-route.yaml uses: which
// function serves each public request.
type Route struct {
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

// RouteFile is the file of config/ that holds the public HTTPRoute (its first document).
const RouteFile = "900-api-route.yaml"

// LoadRoute reads the public HTTPRoute from config (config.FS).
func LoadRoute(config fs.FS) (*Route, error) {
	b, err := fs.ReadFile(config, RouteFile)
	if err != nil {
		return nil, fmt.Errorf("read the public route: %w", err)
	}
	var r Route
	if err := yaml.Unmarshal([]byte(strings.Split(string(b), "\n---\n")[0]), &r); err != nil {
		return nil, fmt.Errorf("%s: %w", RouteFile, err)
	}
	if r.Kind != "HTTPRoute" {
		return nil, fmt.Errorf("%s: first document is a %q, want an HTTPRoute", RouteFile, r.Kind)
	}
	return &r, nil
}

// Host returns the host the route rewrites a request to (e.g. submit.omni.svc.cluster.local),
// by Gateway API's precedence: an Exact path match, then the longest PathPrefix match, then a
// match that names the method. PathPrefix matches whole path elements, and a trailing "/" of its
// value is ignored. "" means no rule matches.
func (r *Route) Host(method, path string) string {
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

// Service returns the Knative Service that serves a request: the first label of Host.
func (r *Route) Service(method, path string) string {
	name, _, _ := strings.Cut(r.Host(method, path), ".")
	return name
}
