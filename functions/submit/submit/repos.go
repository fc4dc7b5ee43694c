package submit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// RepoParameter is the parameter of a job type that lists package repositories (dnf baseurls):
// its URLs must be allowed for the job's service (CheckRepos).
const RepoParameter = "repos"

// repoAllowList is the operator's allow-list of repository URLs: per service (or "*" for
// every service), URL prefixes, each ending in "/".
type repoAllowList struct {
	Services map[string][]string `json:"services"`
}

// CheckRepos checks the repository URLs of params against the allow-list file at path, for
// service: a URL must start with one of the prefixes listed for the service or for "*". A
// missing file (or an empty path) allows every repository; a file that cannot be read or
// parsed refuses every submission with repositories (jobs.ErrUnavailable), never lets them
// through. A refused URL is a *jobs.InvalidError naming it (parameters.repos.<i>).
func CheckRepos(path, service string, params map[string]any) error {
	list, _ := params[RepoParameter].([]any)
	if path == "" || len(list) == 0 {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the repository allow-list: %w: %w", err, jobs.ErrUnavailable)
	}
	var al repoAllowList
	if err := yaml.UnmarshalStrict(b, &al); err != nil {
		return fmt.Errorf("repository allow-list %s: %v: %w", path, err, jobs.ErrUnavailable)
	}
	prefixes := append(append([]string(nil), al.Services[service]...), al.Services["*"]...)
	for i, v := range list {
		u, _ := v.(string)
		if !allowed(u, prefixes) {
			return jobs.Invalid(fmt.Sprintf("parameters.%s.%d", RepoParameter, i),
				"repository %q is not allowed for service %s (the operator's allow-list)", u, service)
		}
	}
	return nil
}

// allowed reports whether u starts with one of prefixes; a prefix that does not end in "/"
// matches only u itself (so https://repo.example.org never matches repo.example.org.evil.com).
func allowed(u string, prefixes []string) bool {
	for _, p := range prefixes {
		if u == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(u, p)) {
			return true
		}
	}
	return false
}
