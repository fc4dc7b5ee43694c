package manifest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

// waitTimeout bounds every wait for a reload; reloads normally take well under a second.
const waitTimeout = 20 * time.Second

// copyTemplates copies the built-in templates into a new temporary directory.
func copyTemplates(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "templates")
	if err := os.CopyFS(dir, templates.FS); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(logging.WithLogger(context.Background(), zaptest.NewLogger(t).Sugar()))
	t.Cleanup(cancel)
	return ctx
}

// reloadRecorder collects the outcome of every reload attempt of a Source.
func reloadRecorder(s *Source) <-chan error {
	ch := make(chan error, 1000)
	s.OnReload = func(err error) { ch <- err }
	return ch
}

// waitReload waits for a reload attempt after which ok holds.
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

// startWatch runs WatchDir until the test ends, and waits for it to return then (it logs to the
// test's logger, which must not happen after the test).
func startWatch(t *testing.T, src *Source) {
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- src.WatchDir(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchDir: %v", err)
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setDescription rewrites the description line of a task.yaml.
func setDescription(t *testing.T, path, desc string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	skip := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "description:"):
			out = append(out, "description: "+desc)
			skip = true
			continue
		case skip && strings.HasPrefix(line, "  "):
			continue
		}
		skip = false
		out = append(out, line)
	}
	writeFile(t, path, strings.Join(out, "\n"))
}

func description(s *Source, task string) string {
	tk, _ := s.Current().Task(task)
	return tk.Description
}

func TestWatchDir(t *testing.T) {
	dir := copyTemplates(t)
	src, err := NewSource(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	reloads := reloadRecorder(src)
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- src.WatchDir(ctx) }()
	// WatchDir reloads once as soon as its watch is in place.
	waitReload(t, reloads, "watch started", func(err error) bool { return err == nil })

	t.Run("change", func(t *testing.T) {
		old := src.Current()
		setDescription(t, filepath.Join(dir, "buildrpm", "task.yaml"), "Changed once.")
		waitReload(t, reloads, "new description", func(error) bool { return description(src, "buildrpm") == "Changed once." })
		if tk, _ := old.Task("buildrpm"); tk.Description == "Changed once." {
			t.Error("a reload changed a catalogue that was already handed out")
		}
	})

	t.Run("broken edit keeps the old catalogue", func(t *testing.T) {
		before := src.Current()
		path := filepath.Join(dir, "buildsrpm", "job.yaml")
		good, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, strings.Replace(string(good), "{{ yamlstr .Name }}", "{{ .Name }}", 1))
		waitReload(t, reloads, "failed reload", func(err error) bool { return err != nil })
		if src.Current() != before {
			t.Error("a failed reload replaced the catalogue")
		}
		if err := src.Err(); err == nil || !strings.Contains(err.Error(), "quoting helper") {
			t.Errorf("Err() = %v", err)
		}
		writeFile(t, path, string(good))
		waitReload(t, reloads, "repaired", func(err error) bool { return err == nil })
		if src.Err() != nil {
			t.Errorf("Err() after a good reload = %v", src.Err())
		}
	})

	t.Run("new task folder", func(t *testing.T) {
		if err := os.CopyFS(filepath.Join(dir, "buildrpm2"), os.DirFS(filepath.Join(dir, "buildrpm"))); err != nil {
			t.Fatal(err)
		}
		waitReload(t, reloads, "buildrpm2 appears", func(error) bool { _, ok := src.Current().Task("buildrpm2"); return ok })
		// The new folder is watched too.
		setDescription(t, filepath.Join(dir, "buildrpm2", "task.yaml"), "Inside the new folder.")
		waitReload(t, reloads, "edit in the new folder", func(error) bool { return description(src, "buildrpm2") == "Inside the new folder." })
		if err := os.RemoveAll(filepath.Join(dir, "buildrpm2")); err != nil {
			t.Fatal(err)
		}
		waitReload(t, reloads, "buildrpm2 disappears", func(error) bool { _, ok := src.Current().Task("buildrpm2"); return !ok })
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchDir returned %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("WatchDir did not return after cancel")
	}
}

// TestWatchDirConfigMapSwap mimics how the kubelet updates a mounted ConfigMap: the content
// lives in a timestamped directory, ..data links to it, the visible entries link into ..data,
// and an update swaps ..data atomically.
func TestWatchDirConfigMapSwap(t *testing.T) {
	root := t.TempDir()
	gen := func(name, desc string) {
		d := filepath.Join(root, name)
		if err := os.CopyFS(d, templates.FS); err != nil {
			t.Fatal(err)
		}
		if desc != "" {
			setDescription(t, filepath.Join(d, "buildrpm", "task.yaml"), desc)
		}
	}
	gen("..2026_11_27_19_00_00.1", "")
	if err := os.Symlink("..2026_11_27_19_00_00.1", filepath.Join(root, "..data")); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join("..data", e.Name()), filepath.Join(root, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	src, err := NewSource(nil, root)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(src.Current().Tasks()); n != 4 {
		t.Fatalf("%d tasks through symlinks, want 4", n)
	}
	reloads := reloadRecorder(src)
	startWatch(t, src)
	waitReload(t, reloads, "watch started", func(err error) bool { return err == nil })

	gen("..2026_11_27_19_05_00.2", "Swapped in.")
	if err := os.Symlink("..2026_11_27_19_05_00.2", filepath.Join(root, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "..data_tmp"), filepath.Join(root, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "..2026_11_27_19_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitReload(t, reloads, "swapped content", func(error) bool { return description(src, "buildrpm") == "Swapped in." })
}

func TestReloadOnSIGHUP(t *testing.T) {
	dir := copyTemplates(t)
	src, err := NewSource(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	reloads := reloadRecorder(src)
	src.sighupReady = make(chan struct{})
	ctx, cancel := context.WithCancel(testContext(t))
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		src.ReloadOnSIGHUP(ctx)
	}()
	select {
	case <-src.sighupReady:
	case <-time.After(waitTimeout):
		t.Fatal("SIGHUP handler not installed")
	}
	setDescription(t, filepath.Join(dir, "buildimagefromiso", "task.yaml"), "After SIGHUP.")
	if description(src, "buildimagefromiso") == "After SIGHUP." {
		t.Fatal("changed before any reload")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitReload(t, reloads, "SIGHUP reload", func(error) bool { return description(src, "buildimagefromiso") == "After SIGHUP." })
	cancel()
	<-stopped
}

func TestReloadExplicit(t *testing.T) {
	t.Run("directory", func(t *testing.T) {
		dir := copyTemplates(t)
		src, err := NewSource(nil, dir)
		if err != nil {
			t.Fatal(err)
		}
		setDescription(t, filepath.Join(dir, "buildsrpm", "task.yaml"), "Explicit.")
		if err := src.Reload(); err != nil {
			t.Fatal(err)
		}
		if got := description(src, "buildsrpm"); got != "Explicit." {
			t.Errorf("description %q", got)
		}
		writeFile(t, filepath.Join(dir, "buildsrpm", "task.yaml"), "description: [")
		before := src.Current()
		if err := src.Reload(); err == nil {
			t.Fatal("Reload of a broken task succeeded")
		}
		if src.Current() != before || src.Err() == nil {
			t.Error("a failed Reload changed the current catalogue or forgot its error")
		}
	})
	t.Run("embedded", func(t *testing.T) {
		src, err := NewSource(templates.FS, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Reload(); err != nil {
			t.Fatal(err)
		}
		if err := src.WatchDir(testContext(t)); err == nil {
			t.Error("WatchDir on an embedded source succeeded")
		}
	})
	t.Run("broken at start", func(t *testing.T) {
		dir := copyTemplates(t)
		writeFile(t, filepath.Join(dir, "buildrpm", "task.yaml"), "arches: [sparc]")
		if _, err := NewSource(nil, dir); err == nil {
			t.Error("NewSource of a broken directory succeeded")
		}
		if _, err := NewSource(nil, filepath.Join(dir, "missing")); err == nil {
			t.Error("NewSource of a missing directory succeeded")
		}
		if _, err := NewSource(nil, ""); err == nil {
			t.Error("NewSource without anything succeeded")
		}
	})
}

// TestCurrentDuringReloads reads and renders with Current while reloads, good and failed, run
// concurrently: Current is never nil and a catalogue once taken keeps working.
func TestCurrentDuringReloads(t *testing.T) {
	dir := copyTemplates(t)
	src, err := NewSource(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "buildimagefromiso", "task.yaml")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in := goldenInput(t, src.Current(), "buildrpm")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var renders atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := src.Current()
				if c == nil {
					t.Error("Current() returned nil")
					return
				}
				if _, err := c.Render("buildrpm", in); err != nil {
					t.Errorf("Render during reloads: %v", err)
					return
				}
				renders.Add(1)
			}
		}()
	}
	failed := 0
	for i := range 20 {
		if i%2 == 0 {
			writeFile(t, path, "description: [broken")
		} else {
			writeFile(t, path, string(good))
		}
		if err := src.Reload(); err != nil {
			failed++
		}
	}
	close(stop)
	wg.Wait()
	if failed != 10 {
		t.Errorf("%d reloads failed, want 10", failed)
	}
	if renders.Load() == 0 {
		t.Error("no renders ran")
	}
}
