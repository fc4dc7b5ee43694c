package manifest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/filewatch"
)

// Source holds the current catalogue and swaps in a new one on reload. A request should call
// Current once and use that catalogue to the end; a reload never changes a loaded catalogue.
// A reload that fails keeps the previous catalogue.
type Source struct {
	fsys fs.FS
	dir  string // "" when the source is not a directory (e.g. the built-in templates.FS)
	// Value holds the current catalogue (Current, Err, Reload).
	*filewatch.Value[Catalogue]

	// sighupReady, a test hook set before watching starts, is closed once the SIGHUP handler
	// is installed.
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
	s.Value = filewatch.NewValue(func() (*Catalogue, error) { return Load(s.fsys) })
	if err := s.Reload(); err != nil {
		if dir != "" {
			return nil, fmt.Errorf("task templates in %s: %w", dir, err)
		}
		return nil, err
	}
	return s, nil
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
	if s.dir == "" {
		return errors.New("watch task templates: the source is not a directory")
	}
	err := filewatch.Loop(ctx, func() ([]string, error) { return taskFolders(s.dir) }, nil,
		func(why string) { s.reloadAndLog(ctx, why) })
	if err != nil {
		logging.FromContext(ctx).Errorw("Cannot watch the task templates; they reload on SIGHUP only", zap.String("dir", s.dir), zap.Error(err))
		return fmt.Errorf("watch %s: %w", s.dir, err)
	}
	return nil
}

// taskFolders returns dir and its subdirectories (through symlinks), dir first.
func taskFolders(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := []string{dir}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			out = append(out, p)
		}
	}
	return out, nil
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
