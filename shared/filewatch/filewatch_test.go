package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoop(t *testing.T) {
	dir, extra := t.TempDir(), t.TempDir()
	var mu sync.Mutex
	watchExtra := false
	folders := func() ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if watchExtra {
			return []string{dir, extra}, nil
		}
		return []string{dir}, nil
	}
	reloads := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Loop(ctx, folders, func(p string) bool { return !strings.HasSuffix(p, ".ignored") },
			func(why string) {
				if why == "file change" {
					mu.Lock()
					watchExtra = true // what this reload read names a new folder
					mu.Unlock()
				}
				reloads <- why
			})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Loop: %v", err)
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-reloads:
			if got != want {
				t.Fatalf("reload %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no reload %q", want)
		}
	}
	write := func(p string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(time.Now().String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	expect("watch started")

	// An ignored file then a relevant one: one reload, for the relevant change.
	write(filepath.Join(dir, "x.ignored"))
	write(filepath.Join(dir, "config.yaml"))
	expect("file change")
	expect("new folder watched")

	// The new folder is watched from then on.
	write(filepath.Join(extra, "secret"))
	expect("file change")
	select {
	case why := <-reloads:
		t.Fatalf("unexpected reload %q", why)
	default:
	}
}

func TestLoopNeedsFirstFolder(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	err := Loop(context.Background(), func() ([]string, error) { return []string{missing}, nil }, nil, func(string) {})
	if err == nil {
		t.Fatal("Loop watched a missing folder")
	}
}
