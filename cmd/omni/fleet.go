package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	localcassandra "github.com/omnibuildplatform/omni-orchestrator/local/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/local/fleet"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra/schema"
)

// runFleet is `omni run -replicas N`: every function as its own processes, N replicas each
// (local/fleet, as the tests of docs/reliability.md run it), on a local Cassandra node and two
// local clusters started for this run in <data>/fleet, which a new run starts afresh.
func runFleet(ctx context.Context, dataDir, addr string, replicas int, resync time.Duration, logger *zap.SugaredLogger) error {
	dir, err := filepath.Abs(filepath.Join(dataDir, "fleet"))
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	start := time.Now()
	fmt.Fprintln(os.Stderr, "starting a local Cassandra node (first time: fetching the pinned Cassandra with Maven)…")
	node, err := localcassandra.Start(ctx, localcassandra.Options{Dir: filepath.Join(dir, "cassandra"), Progress: os.Stderr})
	if err != nil {
		return fmt.Errorf("start local Cassandra: %w", err)
	}
	defer node.Stop()
	cfg := cassandra.Config{Hosts: []string{node.Host()}, Keyspace: "omni", Timeout: 10 * time.Second}
	if err := schema.InitKeyspace(ctx, cfg, "1"); err != nil {
		return fmt.Errorf("local Cassandra: %w", err)
	}
	if err := schema.Migrate(ctx, cfg); err != nil {
		return fmt.Errorf("local Cassandra: %w", err)
	}
	f, err := fleet.Start(ctx, fleet.Options{
		Dir: dir, Addr: addr, Store: "cassandra://" + node.Host() + "/omni?timeout=10s",
		Replicas: replicas, PingInterval: resync, Logger: logger, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Printf(`
omni-orchestrator is running as a fleet (started in %s): every function as its own processes,
%d replicas each, sharing a local Cassandra node (docs/architecture.md, "The multi-process fleet").

  API:          %s   (console: %s/ui/)
  user:         %s
  password:     %s
  replica logs: %s

Ctrl-C stops everything this started; the next run starts afresh.
`, time.Since(start).Round(time.Millisecond), replicas, f.URL, f.URL, f.User, f.Password, filepath.Join(dir, "logs"))
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "stopping…")
	return nil
}
