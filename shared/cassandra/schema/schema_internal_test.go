package schema

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// These tests need no Cassandra.

func TestParseReplication(t *testing.T) {
	tests := map[string]struct {
		in, want string
		wantErr  bool
	}{
		"empty is the default":  {in: "", want: DefaultReplication},
		"factor":                {in: "3", want: "{'class': 'SimpleStrategy', 'replication_factor': 3}"},
		"data centres":          {in: "dc1:3, dc2:2", want: "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"},
		"literal":               {in: "{'class': 'NetworkTopologyStrategy', 'eu-west': 3}", want: "{'class': 'NetworkTopologyStrategy', 'eu-west': 3}"},
		"zero factor":           {in: "0", wantErr: true},
		"zero dc factor":        {in: "dc1:0", wantErr: true},
		"no factor":             {in: "dc1", wantErr: true},
		"injection in literal":  {in: "{'class': 'SimpleStrategy'}; DROP KEYSPACE omni", wantErr: true},
		"injection in dc":       {in: "dc1';DROP:3", wantErr: true},
		"literal without class": {in: "{'dc1': 3}", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseReplication(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseReplication(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
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
