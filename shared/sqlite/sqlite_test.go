package sqlite_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "omni.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}

func TestReopenKeepsJobs(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "omni.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	j := &jobs.Job{ID: "job-1", Service: "svc", Task: "iso", Parameters: map[string]any{"n": 1.0}}
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(ctx, path) // migrations already applied: a no-op
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, err := s.GetJob(ctx, "job-1")
	if err != nil || got.Parameters["n"] != 1.0 {
		t.Fatalf("GetJob after reopen = %+v, %v", got, err)
	}
}

// TestTwoStoresOneFile has two stores (as two processes would) update one job at once: the
// busy timeout and the revision check keep every update.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "omni.db")
	var stores []*sqlite.Store
	for range 2 {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	if err := stores[0].CreateJob(ctx, &jobs.Job{ID: "job-1", Service: "svc", Task: "iso"}); err != nil {
		t.Fatal(err)
	}
	const perStore, writers = 25, 4
	var wg sync.WaitGroup
	errs := make(chan error, len(stores)*writers)
	for _, s := range stores {
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perStore {
					if _, _, err := s.UpdateJob(ctx, "job-1", func(j *jobs.Job) (bool, error) {
						n := j.Labels["n"]
						if j.Labels == nil {
							j.Labels = map[string]string{}
						}
						j.Labels["n"] = n + "x"
						return true, nil
					}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := stores[1].GetJob(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := len(stores) * writers * perStore; len(got.Labels["n"]) != want || got.Revision != int64(want+1) {
		t.Errorf("after %d updates: %d recorded, revision %d", want, len(got.Labels["n"]), got.Revision)
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	dir := t.TempDir()
	for name, path := range map[string]string{
		"empty":          "",
		"query":          filepath.Join(dir, "x.db?mode=memory"),
		"uri":            "file:" + filepath.Join(dir, "x.db"),
		"missing folder": filepath.Join(dir, "no", "such", "x.db"),
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := sqlite.Open(t.Context(), path); err == nil {
				s.Close()
				t.Errorf("Open(%q) succeeded", path)
			}
		})
	}
}
