package cassandra_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store/storetest"
)

// TestContract runs the store contract suite against a real Cassandra (or ScyllaDB) named by
// OMNI_TEST_CASSANDRA=host:port[,host:port...], in a fresh keyspace that it drops afterwards.
func TestContract(t *testing.T) {
	hosts := os.Getenv("OMNI_TEST_CASSANDRA")
	if hosts == "" {
		t.Skip("OMNI_TEST_CASSANDRA not set: Cassandra store contract suite skipped (set OMNI_TEST_CASSANDRA=host:port to run it)")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	cfg := cassandra.Config{
		Hosts:    strings.Split(hosts, ","),
		Keyspace: "omni_test_" + hex.EncodeToString(b),
		// One node is enough for a test cluster; ONE keeps single-node and CI clusters happy.
		Consistency:       "ONE",
		SerialConsistency: "SERIAL",
		Timeout:           30 * time.Second,
	}
	ctx := t.Context()
	if err := cassandra.InitKeyspace(ctx, cfg, "1"); err != nil {
		t.Fatalf("InitKeyspace: %v", err)
	}
	t.Cleanup(func() { dropKeyspace(t, cfg) })
	if err := cassandra.Migrate(ctx, cfg); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if err := cassandra.Migrate(ctx, cfg); err != nil {
		t.Fatalf("Migrate again (must be a no-op): %v", err)
	}
	s, err := cassandra.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// Runs after every (parallel) subtest has finished.
	t.Cleanup(func() { s.Close() })
	storetest.Run(t, func(t *testing.T) store.Store { return s })
}

func dropKeyspace(t *testing.T, cfg cassandra.Config) {
	cluster := gocql.NewCluster(cfg.Hosts...)
	cluster.Timeout = cfg.Timeout
	sess, err := cluster.CreateSession()
	if err != nil {
		t.Errorf("drop keyspace %s: %v", cfg.Keyspace, err)
		return
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sess.Query(`DROP KEYSPACE IF EXISTS ` + cfg.Keyspace).WithContext(ctx).Exec(); err != nil {
		t.Errorf("drop keyspace %s: %v", cfg.Keyspace, err)
	}
}
