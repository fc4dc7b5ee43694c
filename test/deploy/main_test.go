// Package deploy tests what an operator deploys (DESIGN §7, issue 4): that `ko resolve -f config/`
// builds and pushes multi-arch images of every function to a registry, that the images start,
// that every manifest of config/ is accepted by a Kubernetes API server that has the Knative and
// Gateway API CRDs, and that the manifests agree with the code (every function deployed, every
// Trigger's subscriber present, every emitted event consumed, every setting set, RBAC in step).
//
// The tools come from the tools cache (hack/tools.sh, with OMNI_TOOLS_IMAGES=1 for ko and
// crane); the CRDs from the Go module cache (go mod download). The first run builds ko and
// crane and cross-compiles every function for two architectures: several minutes; later runs
// reuse the Go build cache. -short skips everything that needs the tools.
package deploy

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The functions keep state in Cassandra only (no function binary links SQLite): the tests
	// that start them get keyspaces on one real local node (or OMNI_TEST_CASSANDRA's).
	os.Exit(cassandratest.Main(m))
}

// repoRoot is the module root (two folders up from this file).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// progress prints a line at once (go test -v shows t.Logf only at the end of a test), so that a
// long first build shows where it is.
func progress(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "deploy: %s: %s\n", t.Name(), msg)
}

var (
	imageToolsOnce sync.Once
	imageToolsDir  string
	imageToolsErr  error
)

// imageTools returns the folder holding ko and crane, building them (hack/tools.sh, about two
// minutes the first time) if needed.
func imageTools(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs ko and crane from the tools cache (not in -short mode)")
	}
	imageToolsOnce.Do(func() {
		root := repoRoot(t)
		cmd := exec.Command("bash", filepath.Join(root, "hack", "tools.sh"))
		cmd.Env = append(os.Environ(), "OMNI_TOOLS_IMAGES=1")
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = os.Stderr // progress of a first build
		if imageToolsErr = cmd.Run(); imageToolsErr != nil {
			return
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		imageToolsDir = lines[len(lines)-1]
	})
	if imageToolsErr != nil {
		t.Fatalf("build ko and crane with hack/tools.sh: %v", imageToolsErr)
	}
	return imageToolsDir
}

// command runs name with args in dir and returns its stdout; a failure fails the test with
// stderr.
func command(t testing.TB, ctx context.Context, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	out, err := commandErr(ctx, dir, env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func commandErr(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s (after %s): %w\n%s", filepath.Base(name), strings.Join(args, " "),
			time.Since(began).Round(time.Millisecond), err, tail(stderr.String(), 40))
	}
	return stdout.Bytes(), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
