// Package deps holds each function binary to the dependencies it may link: Knative pays every
// linked package again at each cold start, so a careless import fails here rather than in a
// cluster's latency.
package deps

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const module = "github.com/omnibuildplatform/omni-orchestrator"

// Packages no function binary may link, and why.
var (
	sqlite    = []string{"modernc.org/sqlite", module + "/shared/sqlite"} // serves only the local all-in-one
	migrate   = []string{"github.com/golang-migrate/migrate"}             // the schema Job's (`omni db`), never a function's start-up
	kube      = []string{"k8s.io/client-go", module + "/shared/kube"}
	cassandra = []string{"github.com/gocql/gocql", module + "/shared/cassandra"}
	templates = []string{module + "/shared/manifest", module + "/templates", "github.com/santhosh-tekuri/jsonschema"}
	users     = []string{module + "/shared/auth", "golang.org/x/crypto/bcrypt"}
	localHost = []string{module + "/local/", module + "/test/", module + "/cmd/", "testing"}
)

func TestFunctionDependencies(t *testing.T) {
	for fn, forbidden := range map[string][][]string{
		"submit":      {sqlite, migrate, localHost},
		"query":       {sqlite, migrate, localHost},
		"status-sync": {sqlite, migrate, localHost, templates, users},
		"log-archive": {sqlite, migrate, localHost, templates, users},
		// notify reads each job and its callback URL from the store (events are hints: docs/security.md).
		"notify": {sqlite, migrate, localHost, templates, users, kube},
		// legacy translates into /v1 calls made as its caller: no store, cluster, job type or user of its own.
		"legacy": {sqlite, migrate, localHost, templates, users, kube, cassandra},
	} {
		t.Run(fn, func(t *testing.T) {
			t.Parallel()
			deps := listDeps(t, "./functions/"+fn)
			for _, group := range forbidden {
				for _, prefix := range group {
					for _, d := range deps {
						if d == prefix || strings.HasPrefix(d, strings.TrimSuffix(prefix, "/")+"/") {
							t.Errorf("functions/%s links %s (forbidden: %s); see docs/architecture.md", fn, d, prefix)
							break
						}
					}
				}
			}
		})
	}
}

// The client-only CLI installs anywhere with `go install`: it speaks only the public HTTP API,
// so it links the standard library, a YAML library and terminal detection, and nothing of the
// server (client-go, k8s.io, gocql, SQLite, Knative, CloudEvents, shared/…).
func TestCLIDependencies(t *testing.T) {
	allowed := []string{
		module + "/cmd/omnictl", // its own packages
		"go.yaml.in/yaml/v3",    // the config file, --params-file, -o yaml
		"golang.org/x/term",     // terminal detection, password prompt
		"golang.org/x/sys/",     // x/term's system calls
	}
	deps := goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./cmd/omnictl")
	if len(deps) == 0 {
		t.Fatal("go list found no package of cmd/omnictl")
	}
	for _, d := range deps {
		ok := false
		for _, prefix := range allowed {
			if d == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(d, strings.TrimSuffix(prefix, "/")+"/") {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("cmd/omnictl links %s: the CLI may link only the standard library and %v (docs/cli.md)", d, allowed)
		}
	}
}

// shared/ holds only what the functions share: nothing in it imports a function, the local
// host, a test package or a command.
func TestSharedImportsNothingAbove(t *testing.T) {
	for _, pkg := range listPackages(t, "./shared/...") {
		for _, d := range listDeps(t, pkg) {
			for _, up := range []string{"/functions/", "/local/", "/test/", "/cmd/", "/hack/"} {
				if strings.HasPrefix(d, module+up) {
					t.Errorf("%s depends on %s: shared/ must not depend on %s", pkg, d, strings.Trim(up, "/"))
				}
			}
		}
	}
}

func listDeps(t *testing.T, pkg string) []string {
	t.Helper()
	return goList(t, "-deps", pkg)
}

func listPackages(t *testing.T, pattern string) []string {
	t.Helper()
	return goList(t, pattern)
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"list"}, args...)...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(ee.Stderr)
		}
		t.Fatalf("go list %s: %s", strings.Join(args, " "), msg)
	}
	return strings.Fields(string(out))
}

func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}
