package cassandra

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// These tests need no Cassandra.

func TestBucketOf(t *testing.T) {
	for seq, want := range map[int64]int{1: 0, 64: 0, 65: 1, 128: 1, 129: 2} {
		if got := bucketOf(seq); got != want {
			t.Errorf("bucketOf(%d) = %d, want %d", seq, got, want)
		}
	}
}

func TestMergeLogStep(t *testing.T) {
	cur := store.LogStep{JobID: "j", Step: "s", LastSeq: 5, Bytes: 50, Lines: 5, Complete: true, Reason: "first"}
	got := mergeLogStep(cur, store.LogStep{JobID: "j", Step: "s", LastSeq: 3, Bytes: 70, Lines: 1, Incomplete: true, Reason: "second"})
	want := store.LogStep{JobID: "j", Step: "s", LastSeq: 5, Bytes: 70, Lines: 5, Complete: true, Incomplete: true, Reason: "first"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mergeLogStep (-want +got):\n%s", d)
	}
}

func TestRetentionStatements(t *testing.T) {
	tests := map[string]struct {
		r       Retention
		want    []string
		wantErr bool
	}{
		"defaults": {r: Retention{Logs: 30 * 24 * time.Hour}, want: []string{
			"ALTER TABLE jobs_by_id WITH default_time_to_live = 0",
			"ALTER TABLE jobs_by_service WITH default_time_to_live = 0",
			"ALTER TABLE jobs_by_task WITH default_time_to_live = 0",
			"ALTER TABLE log_chunks WITH default_time_to_live = 2592000 AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': 24}",
			"ALTER TABLE log_steps WITH default_time_to_live = 2592000 AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': 24}",
		}},
		"short logs, a year of jobs": {r: Retention{Jobs: 365 * 24 * time.Hour, Logs: 90 * time.Minute}, want: []string{
			"ALTER TABLE jobs_by_id WITH default_time_to_live = 31536000",
			"ALTER TABLE jobs_by_service WITH default_time_to_live = 31536000",
			"ALTER TABLE jobs_by_task WITH default_time_to_live = 31536000",
			"ALTER TABLE log_chunks WITH default_time_to_live = 5400 AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': 1}",
			"ALTER TABLE log_steps WITH default_time_to_live = 5400 AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': 1}",
		}},
		"logs for ever": {r: Retention{}, want: nil},
		"negative":      {r: Retention{Logs: -time.Second}, wantErr: true},
		"too long":      {r: Retention{Jobs: 21 * 365 * 24 * time.Hour}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.r.Statements()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Statements() error %v, want error %v", err, tc.wantErr)
			}
			if tc.want == nil {
				for _, s := range got {
					if strings.HasPrefix(s, "ALTER TABLE log_") && !strings.Contains(s, "default_time_to_live = 0 ") {
						t.Errorf("logs kept for ever: %s", s)
					}
				}
				return
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Statements() (-want +got):\n%s", d)
			}
		})
	}
}
