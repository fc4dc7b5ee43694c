package sqlite_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Purge deletes by age what a Cassandra TTL would have expired, and never an unfinished job.
func TestPurge(t *testing.T) {
	ctx := t.Context()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, j := range []*jobs.Job{
		{ID: "done", Service: "svc", Task: "iso", Status: jobs.StatusSucceeded, LogsArchived: true},
		{ID: "running", Service: "svc", Task: "iso", Status: jobs.StatusRunning},
	} {
		if err := s.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	for seq := int64(1); seq <= 1200; seq++ { // more than one purge batch
		if err := s.PutLogChunk(ctx, store.LogChunk{JobID: "done", Step: "build", Source: store.LogSourceArchive,
			Seq: seq, Data: []byte("line\n"), Lines: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutLogStep(ctx, store.LogStep{JobID: "done", Step: "build", LastSeq: 1200, Complete: true}); err != nil {
		t.Fatal(err)
	}

	past := time.Now().Add(-time.Hour)
	p, err := s.Purge(ctx, past, past)
	if err != nil || p != (sqlite.Purged{}) {
		t.Fatalf("Purge of what is older than an hour = %+v, %v; want nothing", p, err)
	}
	p, err = s.Purge(ctx, time.Time{}, time.Now().Add(time.Second))
	if err != nil || p != (sqlite.Purged{LogChunks: 1200, LogSteps: 1}) {
		t.Fatalf("Purge of all logs = %+v, %v", p, err)
	}
	if cs, _ := s.LogChunks(ctx, "done", "build", store.LogSourceArchive, 0, 10); len(cs) != 0 {
		t.Errorf("%d chunks left after the purge", len(cs))
	}
	if _, err := s.GetJob(ctx, "done"); err != nil {
		t.Errorf("a zero jobsBefore purged a job: %v", err)
	}
	p, err = s.Purge(ctx, time.Now().Add(time.Second), time.Time{})
	if err != nil || p != (sqlite.Purged{Jobs: 1}) {
		t.Fatalf("Purge of jobs = %+v, %v; want the finished job only", p, err)
	}
	if _, err := s.GetJob(ctx, "running"); err != nil {
		t.Errorf("the unfinished job was purged: %v", err)
	}
}
