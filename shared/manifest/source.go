package manifest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"knative.dev/pkg/logging"
)

// debounce is how long WatchDir waits after the last change before it reloads: an editor or a
// ConfigMap update touches several files in a burst.
const debounce = 200 * time.Millisecond

// Source holds the current catalogue and swaps in a new one on reload. A request should call
// Current once and use that catalogue to the end; a reload never changes a loaded catalogue.
// A reload that fails keeps the previous catalogue.
type Source struct {
	fsys fs.FS
	dir  string // "" when the source is not a directory (e.g. the built-in templates.FS)
	cur  atomic.Pointer[Catalogue]
	mu   sync.Mutex // serialises reloads, so an older load never replaces a newer one

	errMu   sync.Mutex
	lastErr error

	// Test hooks, set before watching starts: onReload is called after every reload attempt,
	// sighupReady is closed once the SIGHUP handler is installed.
	onReload    func(error)
	sighupReady chan struct{}
}

// NewSource loads the catalogue from the directory dir if it is not empty (reloads read it
// again, WatchDir watches it), else from fsys (for example the built-in templates.FS).
func NewSource(fsys fs.FS, dir string) (*Source, error) {
	s := &Source{fsys: fsys, dir: dir}
	if dir != "" {
		s.fsys = os.DirFS(dir)
	}
	if s.fsys == nil {
		return nil, errors.New("task templates: neither a file system nor a directory given")
	}
	if err := s.Reload(); err != nil {
		if dir != "" {
			return nil, fmt.Errorf("task templates in %s: %w", dir, err)
		}
		return nil, err
	}
	return s, nil
}

// Current returns the catalogue loaded last; never nil.
func (s *Source) Current() *Catalogue { return s.cur.Load() }

// Err returns the error of the last reload attempt, nil if it succeeded.
func (s *Source) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.lastErr
}

// Reload loads the catalogue again and, if that succeeds, makes it current. On error the
// previous catalogue stays current.
func (s *Source) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := Load(s.fsys)
	if err == nil {
		s.cur.Store(c)
	}
	s.errMu.Lock()
	s.lastErr = err
	s.errMu.Unlock()
	if s.onReload != nil {
		s.onReload(err)
	}
	return err
}

// reloadAndLog reloads and logs the outcome with the logger of ctx.
func (s *Source) reloadAndLog(ctx context.Context, why string) {
	logger := logging.FromContext(ctx)
	if err := s.Reload(); err != nil {
		logger.Errorw("Reloading the task templates failed; keeping the previous ones", zap.String("trigger", why), zap.Error(err))
		return
	}
	var names []string
	for _, t := range s.Current().Tasks() {
		names = append(names, t.Name)
	}
	logger.Infow("Reloaded the task templates", zap.String("trigger", why), zap.Strings("tasks", names))
}

// WatchDir reloads the catalogue whenever something under the Source's directory changes, until
// ctx is done. Changes are debounced and the whole directory is reloaded; the watch follows task
// folders that appear or go and a mounted ConfigMap's atomic symlink swap. Once the watch is in
// place it reloads once, so that nothing changed since the first load is missed. It returns an
// error (also logged) only when the watch cannot be set up; run it with go.
func (s *Source) WatchDir(ctx context.Context) error {
	logger := logging.FromContext(ctx)
	if s.dir == "" {
		return errors.New("watch task templates: the source is not a directory")
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = rewatch(w, s.dir)
		if err != nil {
			w.Close()
		}
	}
	if err != nil {
		logger.Errorw("Cannot watch the task templates; they reload on SIGHUP only", zap.String("dir", s.dir), zap.Error(err))
		return fmt.Errorf("watch %s: %w", s.dir, err)
	}
	defer w.Close()
	s.reloadAndLog(ctx, "watch started")
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			logger.Warnw("Watching the task templates", zap.String("dir", s.dir), zap.Error(err))
		case <-timer.C:
			if err := rewatch(w, s.dir); err != nil {
				logger.Warnw("Watching the task templates", zap.String("dir", s.dir), zap.Error(err))
			}
			s.reloadAndLog(ctx, "file change")
		}
	}
}

// rewatch makes w watch dir and its subdirectories (through symlinks) and nothing else. A watch
// whose directory was deleted is gone from w's list, so a folder recreated under the same name is
// watched again.
func rewatch(w *fsnotify.Watcher, dir string) error {
	want := map[string]bool{dir: true}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			want[p] = true
		}
	}
	for _, p := range w.WatchList() {
		if !want[p] {
			_ = w.Remove(p) // fails when the directory is gone, which removed the watch anyway
		}
		delete(want, p)
	}
	for p := range want {
		if err := w.Add(p); err != nil && p == dir {
			return err
		} // a subdirectory that vanished since ReadDir is picked up again by the next event
	}
	return nil
}

// ReloadOnSIGHUP reloads the catalogue whenever the process gets SIGHUP, until ctx is done; run
// it with go.
func (s *Source) ReloadOnSIGHUP(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	if s.sighupReady != nil {
		close(s.sighupReady)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			s.reloadAndLog(ctx, "SIGHUP")
		}
	}
}
