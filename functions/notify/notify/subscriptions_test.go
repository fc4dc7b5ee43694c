package notify

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap/zaptest"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/filewatch"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseSubscriptions(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ci.secret"), "from-file\n")
	writeFile(t, filepath.Join(dir, "empty.secret"), "\n")
	env := map[string]string{"CI_SECRET": "from-env"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	t.Run("valid", func(t *testing.T) {
		s, err := ParseSubscriptions([]byte(`
subscriptions:
  - name: literal
    url: https://a.example.org/hook
    secret: plain
  - name: file
    url: http://b.example.org
    secretRef: ci.secret
    match: {services: [team-a], tasks: [buildrpm], domains: [""], statuses: [succeeded, failed], types: [org.openeuler.omni.job.changed]}
  - name: env
    url: http://c.example.org
    secretEnv: CI_SECRET
`), dir, getenv)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, sub := range s.list {
			got[sub.Name] = string(sub.secret)
		}
		want := map[string]string{"literal": "plain", "file": "from-file", "env": "from-env"}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("secrets (-want +got):\n%s", d)
		}
		if s.list[1].secretPath != filepath.Join(dir, "ci.secret") {
			t.Errorf("secretRef resolved to %q", s.list[1].secretPath)
		}
		if d := cmp.Diff([]string{"literal", "file", "env"}, s.Names()); d != "" {
			t.Errorf("Names (-want +got):\n%s", d)
		}
	})

	for name, c := range map[string]struct {
		yaml string
		want []string // every one must be in the error
	}{
		"no name":          {"subscriptions: [{url: 'http://x', secret: s}]", []string{"subscriptions[0]: name: required"}},
		"bad name":         {"subscriptions: [{name: Bad_Name, url: 'http://x', secret: s}]", []string{`"Bad_Name": name: must be a DNS label`}},
		"twice":            {"subscriptions: [{name: a, url: 'http://x', secret: s}, {name: a, url: 'http://y', secret: s}]", []string{`"a": name: used twice`}},
		"bad url":          {"subscriptions: [{name: a, url: 'ftp://x', secret: s}]", []string{`"a": url: must be an absolute http`}},
		"relative url":     {"subscriptions: [{name: a, url: '/hook', secret: s}]", []string{`"a": url:`}},
		"no secret":        {"subscriptions: [{name: a, url: 'http://x'}]", []string{`"a": secret: give exactly one`}},
		"two secrets":      {"subscriptions: [{name: a, url: 'http://x', secret: s, secretEnv: CI_SECRET}]", []string{`"a": secret: give exactly one`}},
		"missing file":     {"subscriptions: [{name: a, url: 'http://x', secretRef: nope}]", []string{`"a": secretRef:`, "nope"}},
		"empty file":       {"subscriptions: [{name: a, url: 'http://x', secretRef: empty.secret}]", []string{`"a": secretRef:`, "is empty"}},
		"unset env":        {"subscriptions: [{name: a, url: 'http://x', secretEnv: NOPE}]", []string{`"a": secretEnv: environment variable NOPE is not set`}},
		"unknown status":   {"subscriptions: [{name: a, url: 'http://x', secret: s, match: {statuses: [done]}}]", []string{`"a": match.statuses: unknown status "done"`}},
		"unknown type":     {"subscriptions: [{name: a, url: 'http://x', secret: s, match: {types: [job.changed]}}]", []string{`"a": match.types: unknown type "job.changed"`}},
		"unknown field":    {"subscriptions: [{name: a, url: 'http://x', secret: s, match: {status: [failed]}}]", []string{`unknown field "status"`}},
		"not YAML":         {"subscriptions: [", []string{"parse:"}},
		"several problems": {"subscriptions: [{name: a, url: 'ftp://x'}, {url: 'http://y', secret: s}]", []string{`"a": url`, `"a": secret`, "subscriptions[1]: name"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSubscriptions([]byte(c.yaml), dir, getenv)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestMatch(t *testing.T) {
	j := &jobs.Job{Service: "team-a", Task: "buildrpm", Domain: "", Status: jobs.StatusFailed}
	for name, c := range map[string]struct {
		m    Match
		typ  string
		want bool
	}{
		"empty matches anything":      {Match{}, events.TypeJobCreated, true},
		"service":                     {Match{Services: []string{"team-b", "team-a"}}, events.TypeJobChanged, true},
		"other service":               {Match{Services: []string{"team-b"}}, events.TypeJobChanged, false},
		"task":                        {Match{Tasks: []string{"buildrpm"}}, events.TypeJobChanged, true},
		"other task":                  {Match{Tasks: []string{"buildsrpm"}}, events.TypeJobChanged, false},
		"empty domain listed":         {Match{Domains: []string{""}}, events.TypeJobChanged, true},
		"domain":                      {Match{Domains: []string{"e2e"}}, events.TypeJobChanged, false},
		"status":                      {Match{Statuses: []jobs.Status{jobs.StatusSucceeded, jobs.StatusFailed}}, events.TypeJobChanged, true},
		"other status":                {Match{Statuses: []jobs.Status{jobs.StatusSucceeded}}, events.TypeJobChanged, false},
		"type":                        {Match{Types: []string{events.TypeJobChanged}}, events.TypeJobChanged, true},
		"other type":                  {Match{Types: []string{events.TypeJobChanged}}, events.TypeJobCreated, false},
		"all criteria must hold":      {Match{Services: []string{"team-a"}, Statuses: []jobs.Status{jobs.StatusRunning}}, events.TypeJobChanged, false},
		"all criteria hold":           {Match{Services: []string{"team-a"}, Tasks: []string{"buildrpm"}, Statuses: []jobs.Status{jobs.StatusFailed}}, events.TypeJobChanged, true},
		"values are compared exactly": {Match{Services: []string{"Team-A"}}, events.TypeJobChanged, false},
	} {
		if got := c.m.Matches(c.typ, j); got != c.want {
			t.Errorf("%s: Matches = %v, want %v", name, got, c.want)
		}
	}
	s, err := ParseSubscriptions([]byte(`
subscriptions:
  - {name: all, url: 'http://x', secret: s}
  - {name: b, url: 'http://x', secret: s, match: {services: [team-b]}}
  - {name: failures, url: 'http://x', secret: s, match: {statuses: [failed, lost]}}
`), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sub := range s.Matching(events.TypeJobChanged, j) {
		got = append(got, sub.Name)
	}
	if d := cmp.Diff([]string{"all", "failures"}, got); d != "" {
		t.Errorf("Matching (-want +got):\n%s", d)
	}
}

// waitTimeout bounds every wait for a reload; reloads normally take well under a second.
const waitTimeout = 20 * time.Second

func watch(t *testing.T, s *Source) <-chan error {
	t.Helper()
	reloads := make(chan error, 1000)
	s.OnReload = func(err error) { reloads <- err }
	ctx, cancel := context.WithCancel(logging.WithLogger(context.Background(), zaptest.NewLogger(t).Sugar()))
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	waitReload(t, reloads, "watch started", func(err error) bool { return err == nil })
	return reloads
}

func waitReload(t *testing.T, reloads <-chan error, what string, ok func(err error) bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		select {
		case err := <-reloads:
			if ok(err) {
				return
			}
		case <-deadline.C:
			t.Fatalf("timed out waiting for a reload: %s", what)
		}
	}
}

func secretOf(s *Source, name string) string {
	for _, sub := range s.Current().list {
		if sub.Name == name {
			return string(sub.secret)
		}
	}
	return ""
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "subscriptions.yaml")
	src, err := NewSource(path)
	if err != nil {
		t.Fatalf("NewSource of a missing file: %v", err)
	}
	if src.Current().Len() != 0 {
		t.Fatal("a missing file has subscriptions")
	}
	reloads := watch(t, src)

	t.Run("file appears", func(t *testing.T) {
		writeFile(t, filepath.Join(secrets, "ci"), "one")
		writeFile(t, path, "subscriptions:\n  - {name: ci, url: 'http://x', secretRef: "+filepath.Join(secrets, "ci")+"}\n")
		waitReload(t, reloads, "ci appears", func(error) bool { return src.Current().Len() == 1 })
		if got := secretOf(src, "ci"); got != "one" {
			t.Errorf("secret %q", got)
		}
	})

	t.Run("secret rotated", func(t *testing.T) {
		writeFile(t, filepath.Join(secrets, "ci"), "two")
		waitReload(t, reloads, "secret two", func(error) bool { return secretOf(src, "ci") == "two" })
	})

	t.Run("broken edit keeps the subscriptions", func(t *testing.T) {
		before := src.Current()
		writeFile(t, path, "subscriptions:\n  - {name: ci, url: 'ftp://x', secret: s}\n")
		waitReload(t, reloads, "failed reload", func(err error) bool { return err != nil })
		if src.Current() != before {
			t.Error("a failed reload replaced the subscriptions")
		}
		if err := src.Err(); err == nil || !strings.Contains(err.Error(), `subscription "ci": url`) {
			t.Errorf("Err() = %v", err)
		}
		writeFile(t, path, "subscriptions:\n  - {name: ci, url: 'http://x', secret: s}\n  - {name: cd, url: 'http://y', secret: s}\n")
		waitReload(t, reloads, "repaired", func(err error) bool { return err == nil && src.Current().Len() == 2 })
		if src.Err() != nil {
			t.Errorf("Err() after a good reload = %v", src.Err())
		}
	})

	t.Run("file removed", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		waitReload(t, reloads, "no subscriptions", func(error) bool { return src.Current().Len() == 0 })
	})
}

// TestWatchConfigMapSwap mimics how the kubelet updates a mounted ConfigMap: the content lives
// in a timestamped directory, ..data links to it, subscriptions.yaml links into ..data, and an
// update swaps ..data atomically (rename of ..data_tmp).
func TestWatchConfigMapSwap(t *testing.T) {
	root := t.TempDir()
	gen := func(name, yaml string) {
		if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, name, "subscriptions.yaml"), yaml)
	}
	gen("..2026_11_27_19_00_00.1", "subscriptions:\n  - {name: one, url: 'http://x', secret: s}\n")
	if err := os.Symlink("..2026_11_27_19_00_00.1", filepath.Join(root, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "subscriptions.yaml"), filepath.Join(root, "subscriptions.yaml")); err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(filepath.Join(root, "subscriptions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"one"}, src.Current().Names()); d != "" {
		t.Fatalf("first load (-want +got):\n%s", d)
	}
	reloads := watch(t, src)

	gen("..2026_11_27_19_05_00.2", "subscriptions:\n  - {name: two, url: 'http://x', secret: s}\n")
	if err := os.Symlink("..2026_11_27_19_05_00.2", filepath.Join(root, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "..data_tmp"), filepath.Join(root, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "..2026_11_27_19_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitReload(t, reloads, "swapped", func(error) bool { return cmp.Equal([]string{"two"}, src.Current().Names()) })
}

func TestNewSourceInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subscriptions.yaml")
	writeFile(t, path, "subscriptions: [{name: a}]")
	if _, err := NewSource(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("NewSource of an invalid file: %v, want an error naming the file", err)
	}
}

func TestRelevant(t *testing.T) {
	src := &Source{path: "/etc/omni/notify/subscriptions.yaml"}
	src.Value = filewatch.NewValue(src.load)
	subs, err := ParseSubscriptions([]byte("subscriptions: [{name: a, url: 'http://x', secret: s}]"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	subs.list[0].secretPath = "/etc/omni/notify-secrets/a"
	src.Store(subs)
	names := src.watched()
	for path, want := range map[string]bool{
		"/etc/omni/notify/subscriptions.yaml":   true,
		"/etc/omni/notify/..data":               true,
		"/etc/omni/notify/..data_tmp":           true,
		"/etc/omni/notify-secrets/a":            true,
		"/etc/omni/notify-secrets/..2026_11_27": true,
		"/etc/omni/notify/omni.db-wal":          false,
		"/etc/omni/notify-secrets/b":            false,
		"/etc/omni/other/subscriptions.yaml":    false,
	} {
		if got := relevant(names, path); got != want {
			t.Errorf("relevant(%s) = %v, want %v", path, got, want)
		}
	}
}
