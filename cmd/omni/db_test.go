package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
)

// TestMain gives the binary a real Cassandra node, started by the first test that needs one.
func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }

// tableOptions is what `omni db` sets on a table, as system_schema reports it.
type tableOptions struct {
	TTL        int               // default_time_to_live, seconds
	GCGrace    int               // gc_grace_seconds
	Compaction map[string]string // class (short name) and its options
}

// TestDBInitAndMigrateTwice runs `omni db init` twice and `omni db migrate` twice on a fresh
// keyspace of a real Cassandra (every run after the first must change nothing and succeed), then
// reads back from system_schema the retention and compaction options they set, and checks that
// a migrate with other retentions changes them.
func TestDBInitAndMigrateTwice(t *testing.T) {
	hosts := cassandratest.Hosts(t)
	cfg := cassandratest.Config(t, cassandratest.NewKeyspaceName())
	cassandratest.DropAtCleanup(t, cfg)
	url := "cassandra://" + strings.Join(hosts, ",") + "/" + cfg.Keyspace + "?timeout=30s"
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	omniDB := func(args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := runDB(ctx, args, &stdout, &stderr); err != nil {
			t.Fatalf("omni db %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "schema up to date") {
			t.Fatalf("omni db %s printed %q; want it to say the schema is up to date", strings.Join(args, " "), stdout.String())
		}
	}
	for range 2 {
		omniDB("init", "-store", url, "-job-retention", "2160h", "-log-retention", "720h")
	}
	for range 2 {
		omniDB("migrate", "-store", url, "-job-retention", "2160h", "-log-retention", "720h")
	}

	s := cassandratest.Session(t, cfg, "")
	var version int
	var dirty bool
	if err := s.Query(`SELECT version, dirty FROM `+cfg.Keyspace+`.schema_migrations`).WithContext(ctx).Scan(&version, &dirty); err != nil {
		t.Fatalf("read golang-migrate's version: %v", err)
	}
	if version != 3 || dirty {
		t.Errorf("schema_migrations: version %d dirty %v; want version 3 (the last migration), clean", version, dirty)
	}

	jobs, logs := 2160*3600, 720*3600
	lcs := map[string]string{"class": "LeveledCompactionStrategy", "max_threshold": "32", "min_threshold": "4"}
	stcs := map[string]string{"class": "SizeTieredCompactionStrategy", "max_threshold": "32", "min_threshold": "4"}
	twcs := func(hours int) map[string]string {
		return map[string]string{"class": "TimeWindowCompactionStrategy", "compaction_window_unit": "HOURS",
			"compaction_window_size": strconv.Itoa(hours), "max_threshold": "32", "min_threshold": "4"}
	}
	want := map[string]tableOptions{
		"jobs_by_id":        {TTL: jobs, GCGrace: 864000, Compaction: lcs},
		"jobs_by_service":   {TTL: jobs, GCGrace: 864000, Compaction: stcs},
		"jobs_by_task":      {TTL: jobs, GCGrace: 864000, Compaction: stcs},
		"active_jobs":       {TTL: 0, GCGrace: 3600, Compaction: lcs},
		"idempotency_keys":  {TTL: 0, GCGrace: 3600, Compaction: stcs},
		"slots":             {TTL: 0, GCGrace: 3600, Compaction: stcs},
		"log_chunks":        {TTL: logs, GCGrace: 10800, Compaction: twcs(24)},
		"log_steps":         {TTL: logs, GCGrace: 10800, Compaction: twcs(24)},
		"schema_migrations": {TTL: 0, GCGrace: 864000, Compaction: stcs},
	}
	if diff := cmp.Diff(want, readTableOptions(t, ctx, cfg)); diff != "" {
		t.Errorf("table options after db init and migrate (-want +got):\n%s", diff)
	}

	// Other retentions: the TTLs and the log tables' TWCS window (a thirtieth of the TTL, at
	// least an hour) follow.
	omniDB("migrate", "-store", url, "-job-retention", "0", "-log-retention", "48h")
	for _, name := range []string{"jobs_by_id", "jobs_by_service", "jobs_by_task"} {
		o := want[name]
		o.TTL = 0
		want[name] = o
	}
	for _, name := range []string{"log_chunks", "log_steps"} {
		want[name] = tableOptions{TTL: 48 * 3600, GCGrace: 10800, Compaction: twcs(2)}
	}
	if diff := cmp.Diff(want, readTableOptions(t, ctx, cfg)); diff != "" {
		t.Errorf("table options after db migrate with other retentions (-want +got):\n%s", diff)
	}
}

func readTableOptions(t *testing.T, ctx context.Context, cfg cassandra.Config) map[string]tableOptions {
	t.Helper()
	s := cassandratest.Session(t, cfg, "")
	iter := s.Query(`SELECT table_name, default_time_to_live, gc_grace_seconds, compaction
		FROM system_schema.tables WHERE keyspace_name = ?`, cfg.Keyspace).WithContext(ctx).Iter()
	got := map[string]tableOptions{}
	var (
		name string
		o    tableOptions
	)
	for iter.Scan(&name, &o.TTL, &o.GCGrace, &o.Compaction) {
		o.Compaction["class"] = strings.TrimPrefix(o.Compaction["class"], "org.apache.cassandra.db.compaction.")
		got[name] = o
		o = tableOptions{}
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("read system_schema.tables: %v", err)
	}
	return got
}
