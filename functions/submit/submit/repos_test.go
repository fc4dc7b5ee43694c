package submit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// A repository URL not on the operator's allow-list for the job's service is a 400 naming it.
func TestRepoAllowList(t *testing.T) {
	h, _, _ := newHandler(t)
	h.RepoAllowList = filepath.Join(t.TempDir(), "allowlist.yaml")
	withRepos := func(repos ...any) Request {
		r := request()
		r.Parameters["repos"] = repos
		return r
	}
	// No file: every repository is allowed.
	if _, _, err := h.Submit(context.Background(), submitter, withRepos("https://evil.example.com/repo/"), ""); err != nil {
		t.Fatalf("without an allow-list: %v", err)
	}
	if err := os.WriteFile(h.RepoAllowList, []byte(`services:
  release: ["https://mirror.example.org/release/"]
  "*": ["https://repo.openeuler.org/"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		repos []any
		field string
	}{
		"the service's":          {[]any{"https://mirror.example.org/release/24.03/"}, ""},
		"everyone's":             {[]any{"https://repo.openeuler.org/openEuler-24.03-LTS/everything/x86_64/"}, ""},
		"not listed":             {[]any{"https://repo.openeuler.org/x/", "https://evil.example.com/repo/"}, "parameters.repos.1"},
		"a longer host":          {[]any{"https://repo.openeuler.org.evil.com/"}, "parameters.repos.0"},
		"another service's path": {[]any{"https://mirror.example.org/other/"}, "parameters.repos.0"},
	} {
		_, _, err := h.Submit(context.Background(), submitter, withRepos(c.repos...), "")
		var ie *jobs.InvalidError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: %v, want allowed", name, err)
		case c.field != "" && (!errors.As(err, &ie) || ie.Field != c.field):
			t.Errorf("%s: %v, want a 400 naming %s", name, err, c.field)
		}
	}
	// A broken file refuses (503), never lets repositories through.
	if err := os.WriteFile(h.RepoAllowList, []byte("services: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Submit(context.Background(), submitter, withRepos("https://repo.openeuler.org/x/"), ""); !errors.Is(err, jobs.ErrUnavailable) {
		t.Errorf("broken allow-list: %v, want ErrUnavailable", err)
	}
}
