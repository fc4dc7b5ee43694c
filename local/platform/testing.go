package platform

import (
	"context"
	"strings"
	"time"
)

// TB is the part of testing.TB that StartForTest uses (so that this package does not import
// testing into binaries).
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// StartForTest starts a platform for a test: WorkDir defaults to t.TempDir(), progress goes to
// t.Logf, failure to start fails the test, and the platform stops when the test ends.
func StartForTest(t TB, opts Options) *Platform {
	t.Helper()
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	if opts.Log == nil {
		opts.Log = logWriter{t}
	}
	p, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start the local platform: %v", err)
	}
	t.Cleanup(func() {
		began := time.Now()
		p.Stop()
		t.Logf("platform: stopped in %s", time.Since(began).Round(time.Millisecond))
	})
	return p
}

type logWriter struct{ t TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
