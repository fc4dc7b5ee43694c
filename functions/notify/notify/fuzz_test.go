package notify

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// FuzzParseSubscriptions feeds subscriptions files to the parser: a file is refused with an
// error, or every subscription has a unique DNS-label name, an absolute http(s) URL and a
// secret, and the file written back from what was read parses to the same subscriptions.
func FuzzParseSubscriptions(f *testing.F) {
	dir := f.TempDir()
	for name, content := range map[string]string{"ci.secret": "from-file\n", "empty.secret": "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	getenv := func(k string) (string, bool) {
		if k == "CI_SECRET" {
			return "from-env", true
		}
		return "", false
	}
	for _, seed := range []string{
		"subscriptions:\n  - name: literal\n    url: https://a.example.org/hook\n    secret: plain\n  - name: file\n    url: http://b.example.org\n    secretRef: ci.secret\n    match: {services: [team-a], tasks: [buildrpm], domains: [\"\"], statuses: [succeeded, failed], types: [org.openeuler.omni.job.changed]}\n  - name: env\n    url: http://c.example.org\n    secretEnv: CI_SECRET\n",
		"subscriptions: [{url: 'http://x', secret: s}]",
		"subscriptions: [{name: Bad_Name, url: 'http://x', secret: s}]",
		"subscriptions: [{name: a, url: 'http://x', secret: s}, {name: a, url: 'http://y', secret: s}]",
		"subscriptions: [{name: a, url: 'ftp://x', secret: s}]",
		"subscriptions: [{name: a, url: '/hook', secret: s}]",
		"subscriptions: [{name: a, url: 'http://x'}]",
		"subscriptions: [{name: a, url: 'http://x', secret: s, secretEnv: CI_SECRET}]",
		"subscriptions: [{name: a, url: 'http://x', secretRef: nope}]",
		"subscriptions: [{name: a, url: 'http://x', secretRef: empty.secret}]",
		"subscriptions: [{name: a, url: 'http://x', secretRef: /dev/zero}]",
		"subscriptions: [{name: a, url: 'http://x', secretEnv: NOPE}]",
		"subscriptions: [{name: a, url: 'http://x', secret: s, match: {statuses: [done]}}]",
		"subscriptions: [{name: a, url: 'http://x', secret: s, match: {types: [job.changed]}}]",
		"subscriptions: [{name: a, url: 'http://x', secret: s, match: {status: [failed]}}]",
		"subscriptions: [",
		"",
	} {
		f.Add([]byte(seed))
	}
	job := &jobs.Job{ID: "j", Service: "team-a", Task: "buildrpm", Status: jobs.StatusFailed}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSubscriptions(b, dir, getenv)
		if err != nil {
			if s != nil {
				t.Fatalf("error %v with subscriptions", err)
			}
			return
		}
		seen := map[string]bool{}
		var back File
		for _, sub := range s.list {
			u, err := url.Parse(sub.URL)
			switch {
			case len(validation.IsDNS1123Label(sub.Name)) > 0 || seen[sub.Name]:
				t.Errorf("name %q taken (bad or twice)", sub.Name)
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || sub.url == nil:
				t.Errorf("subscription %s: url %q taken", sub.Name, sub.URL)
			case len(sub.secret) == 0:
				t.Errorf("subscription %s: no secret", sub.Name)
			}
			seen[sub.Name] = true
			back.Subscriptions = append(back.Subscriptions, *sub)
		}
		for _, typ := range []string{events.TypeJobCreated, events.TypeJobChanged} {
			s.Matching(typ, job)
		}
		enc, err := yaml.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSubscriptions(enc, dir, getenv)
		if err != nil {
			t.Fatalf("the file written back does not parse: %v\n%s", err, enc)
		}
		if len(again.list) != len(s.list) {
			t.Fatalf("%d subscriptions read back, want %d", len(again.list), len(s.list))
		}
		for i, sub := range again.list {
			if sub.Name != s.list[i].Name || sub.URL != s.list[i].URL || string(sub.secret) != string(s.list[i].secret) {
				t.Errorf("subscription %d read back as %s %s, want %s %s", i, sub.Name, sub.URL, s.list[i].Name, s.list[i].URL)
			}
		}
	})
}
