// Package filewatch reloads configuration files when they change: it watches folders (a file
// that appears later, and the atomic symlink swap of a mounted ConfigMap or Secret, are only seen
// through its folder), waits until changes settle, and calls a reload function. The job types
// (shared/manifest) and notify's subscriptions use it.
package filewatch

import (
	"context"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"knative.dev/pkg/logging"
)

// Debounce is how long Loop waits after the last change before it reloads: an editor or a
// kubelet swap writes several events for one change.
const Debounce = 200 * time.Millisecond

// Folders returns the folders to watch; the first one is required (Loop fails if it cannot be
// watched), the others are watched when they can be.
type Folders func() ([]string, error)

// Loop watches the folders folders() returns until ctx is done. After a change that relevant
// accepts has settled, it updates the watched folders and calls reload("file change"). Once the
// watch is in place it calls reload("watch started"), so nothing changed since the caller's first
// load is missed; and whenever a reload makes folders() name a folder not watched before, it
// watches it and calls reload("new folder watched"), so a change made in between is not missed
// either. It returns an error only when the first folder cannot be watched; run it with go.
func Loop(ctx context.Context, folders Folders, relevant func(path string) bool, reload func(why string)) error {
	logger := logging.FromContext(ctx)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Close()
	if _, err := syncWatches(w, folders); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	settle := func(why string) {
		reload(why)
		for range 3 { // each round follows the folders the last reload named
			added, err := syncWatches(w, folders)
			if err != nil {
				logger.Warnw("Cannot update the watched folders", zap.Error(err))
			}
			if !added {
				return
			}
			reload("new folder watched")
		}
	}
	settle("watch started")
	timer := time.NewTimer(Debounce)
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
			if ev.Op == fsnotify.Chmod || (relevant != nil && !relevant(ev.Name)) {
				continue
			}
			timer.Reset(Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			logger.Warnw("Watching files", zap.Error(err))
		case <-timer.C:
			if _, err := syncWatches(w, folders); err != nil {
				logger.Warnw("Cannot update the watched folders", zap.Error(err))
			}
			settle("file change")
		}
	}
}

// syncWatches makes w watch exactly the folders folders() returns and reports whether it added one. A
// watch whose folder was deleted is gone from w's list, so a folder recreated under the same
// name is watched again.
func syncWatches(w *fsnotify.Watcher, folders Folders) (bool, error) {
	want, err := folders()
	if err != nil {
		return false, err
	}
	wanted := map[string]bool{}
	for _, f := range want {
		wanted[f] = true
	}
	have := map[string]bool{}
	for _, p := range w.WatchList() {
		if !wanted[p] {
			_ = w.Remove(p) // fails when the folder is gone, which removed the watch anyway
			continue
		}
		have[p] = true
	}
	added := false
	for i, f := range want {
		if have[f] {
			continue
		}
		if err := w.Add(f); err != nil {
			if i == 0 {
				return added, err
			}
			continue // a folder that vanished is picked up again by a later change
		}
		added = true
	}
	return added, nil
}
