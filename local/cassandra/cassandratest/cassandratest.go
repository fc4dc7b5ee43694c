// Package cassandratest gives the tests of a test binary one real Cassandra node, started on
// first use and stopped when the binary's tests are done, and a fresh migrated keyspace per
// test. OMNI_TEST_CASSANDRA=host:port[,host:port…] points them at an external cluster instead.
//
// A test binary that uses it calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(cassandratest.Main(m)) }
package cassandratest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	localcassandra "github.com/omnibuildplatform/omni-orchestrator/local/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra/schema"
)

// HostsEnv names the environment variable that points the tests at an external Cassandra.
const HostsEnv = "OMNI_TEST_CASSANDRA"

var (
	inMain bool
	once   sync.Once
	// shared is the keyspace of Shared, dropped by Main.
	sharedOnce sync.Once
	sharedCfg  cassandra.Config
	sharedErr  error
	node       *localcassandra.Node
	nodeDir    string
	hosts      []string
	nodeErr    error
)

// Main runs the tests of m and then stops the shared node, if one was started. When a test
// failed, the node's log is kept and its path and tail printed. It returns m.Run's exit code.
func Main(m *testing.M) int {
	inMain = true
	code := m.Run()
	if sharedCfg.Keyspace != "" {
		if err := drop(sharedCfg); err != nil {
			fmt.Fprintf(os.Stderr, "cassandratest: %v\n", err)
		}
	}
	if node == nil {
		return code
	}
	_ = node.Stop()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "cassandratest: a test failed; the node's log is kept: %s", node.LogProblems(30))
		return code
	}
	os.RemoveAll(nodeDir)
	return code
}

// Hosts returns the contact points of the test cluster: OMNI_TEST_CASSANDRA's, else those of the
// binary's own node, started on the first call (about 20 s). A node that cannot start fails t
// with the reason, never skips it.
func Hosts(t testing.TB) []string {
	t.Helper()
	if !inMain {
		t.Fatalf("cassandratest: call os.Exit(cassandratest.Main(m)) from TestMain to use the test node")
	}
	once.Do(func() {
		if env := os.Getenv(HostsEnv); env != "" {
			hosts = strings.Split(env, ",")
			return
		}
		nodeDir, nodeErr = os.MkdirTemp("", "omni-cassandra-test-")
		if nodeErr != nil {
			return
		}
		began := time.Now()
		// Not t's context: the node serves every later test of the binary.
		node, nodeErr = localcassandra.Start(context.Background(), localcassandra.Options{Dir: nodeDir, Progress: os.Stderr})
		if nodeErr != nil {
			os.RemoveAll(nodeDir)
			return
		}
		hosts = []string{node.Host()}
		t.Logf("cassandratest: node %s up at %s in %s", localcassandra.Version, node.Host(), time.Since(began).Round(100*time.Millisecond))
	})
	if nodeErr != nil {
		t.Fatalf("cassandratest: start the test node: %v", nodeErr)
	}
	return hosts
}

// NewKeyspaceName returns a keyspace name no other test uses.
func NewKeyspaceName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t_" + hex.EncodeToString(b)
}

// Config returns the store configuration of keyspace on the test cluster, with the store's
// default consistency levels and a timeout that suits a loaded machine.
func Config(t testing.TB, keyspace string) cassandra.Config {
	t.Helper()
	return cassandra.Config{Hosts: Hosts(t), Keyspace: keyspace, Timeout: 30 * time.Second}
}

// Keyspace creates a fresh keyspace with the project's migrations (schema.InitKeyspace and
// schema.Migrate) and returns its configuration. The keyspace is dropped when t ends; if t
// failed, the tail of the node's log is logged first.
func Keyspace(t testing.TB) cassandra.Config {
	t.Helper()
	cfg := Config(t, NewKeyspaceName())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := schema.InitKeyspace(ctx, cfg, "1"); err != nil {
		t.Fatalf("cassandratest: create keyspace %s: %v", cfg.Keyspace, err)
	}
	DropAtCleanup(t, cfg)
	if err := schema.Migrate(ctx, cfg); err != nil {
		t.Fatalf("cassandratest: migrate keyspace %s: %v", cfg.Keyspace, err)
	}
	return cfg
}

// Shared returns a migrated keyspace shared by the tests of the binary that change no table
// options (cheaper than a keyspace per test: creating one takes a few seconds). Main drops it.
func Shared(t testing.TB) cassandra.Config {
	t.Helper()
	Hosts(t)
	sharedOnce.Do(func() {
		cfg := cassandra.Config{Hosts: hosts, Keyspace: NewKeyspaceName(), Timeout: 30 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if sharedErr = schema.InitKeyspace(ctx, cfg, "1"); sharedErr != nil {
			return
		}
		sharedCfg = cfg
		sharedErr = schema.Migrate(ctx, cfg)
	})
	if sharedErr != nil {
		t.Fatalf("cassandratest: create the shared keyspace: %v", sharedErr)
	}
	return sharedCfg
}

// StoreURL is cfg as an OMNI_STORE value (cassandra://hosts/keyspace?timeout=…), for tests that
// configure a function or the local host through its environment.
func StoreURL(cfg cassandra.Config) string {
	u := "cassandra://" + strings.Join(cfg.Hosts, ",") + "/" + cfg.Keyspace
	if cfg.Timeout > 0 {
		u += "?timeout=" + cfg.Timeout.String()
	}
	return u
}

// DropAtCleanup drops cfg's keyspace when t ends (and logs the node's log tail if t failed).
func DropAtCleanup(t testing.TB, cfg cassandra.Config) {
	t.Cleanup(func() {
		if t.Failed() && node != nil {
			t.Logf("cassandratest: %s", node.LogProblems(20))
		}
		if err := drop(cfg); err != nil {
			t.Errorf("cassandratest: %v", err)
		}
	})
}

func drop(cfg cassandra.Config) error {
	s, err := session(cfg, "")
	if err != nil {
		return fmt.Errorf("drop keyspace %s: %w", cfg.Keyspace, err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Query(`DROP KEYSPACE IF EXISTS ` + cfg.Keyspace).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("drop keyspace %s: %w", cfg.Keyspace, err)
	}
	return nil
}

// Session opens a plain gocql session on cfg's hosts, in keyspace ("" for none), closed when t
// ends: for tests that look under the store (TTLs, table options).
func Session(t testing.TB, cfg cassandra.Config, keyspace string) *gocql.Session {
	t.Helper()
	s, err := session(cfg, keyspace)
	if err != nil {
		t.Fatalf("cassandratest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func session(cfg cassandra.Config, keyspace string) (*gocql.Session, error) {
	c := gocql.NewCluster(cfg.Hosts...)
	c.Keyspace = keyspace
	c.Timeout, c.ConnectTimeout = 30*time.Second, 30*time.Second
	c.Consistency = gocql.One
	s, err := c.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connect to %v: %w", cfg.Hosts, err)
	}
	return s, nil
}
