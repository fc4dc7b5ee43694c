package cassandra_test

import (
	"os"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra/schema"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store/storetest"
)

// TestMain gives the binary one real Cassandra node (local/cassandra), started by the first test
// that needs it, or the cluster OMNI_TEST_CASSANDRA=host:port names.
func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }

// TestContract runs the store contract suite against a real Cassandra, in a fresh keyspace
// migrated twice (the second run must be a no-op), with the store's default consistency levels.
func TestContract(t *testing.T) {
	t.Parallel() // beside TestRetentionExpires, which mostly waits
	cfg := cassandratest.Keyspace(t)
	if err := schema.Migrate(t.Context(), cfg); err != nil {
		t.Fatalf("Migrate again (must be a no-op): %v", err)
	}
	s, err := cassandra.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// Runs after every (parallel) subtest has finished.
	t.Cleanup(func() { s.Close() })
	storetest.Run(t, func(t *testing.T) store.Store { return s })
}
