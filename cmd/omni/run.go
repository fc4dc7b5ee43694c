package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

func runCommand(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("omni run", flag.ContinueOnError)
	var opts allinone.Options
	fs.StringVar(&opts.DataDir, "data", ".data", "data folder: SQLite database, generated credentials, local cluster files")
	fs.StringVar(&opts.Addr, "addr", "127.0.0.1:8088", "listen address of the API")
	fs.StringVar(&opts.ClustersDir, "clusters", "", "folder with x86_64.yaml / aarch64.yaml naming real clusters (default: start two local clusters)")
	fs.BoolVar(&opts.Cassandra, "cassandra", false, "run the store on a local Cassandra node started for this run (needs Java 17 and Maven; its data goes with the run) instead of SQLite")
	fs.DurationVar(&opts.ResyncInterval, "resync", time.Minute, "resync interval (the PingSource's schedule in the cluster)")
	logLevel := fs.String("log-level", "info", "log level of the functions")
	replicas := fs.Int("replicas", 0, "run every function as its own processes, this many replicas each, on a local Cassandra node started for the run (needs Java 17 and Maven), instead of all in one process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := runtime.NewLogger(*logLevel)
	if err != nil {
		return err
	}
	if *replicas > 0 {
		return runFleet(ctx, opts.DataDir, opts.Addr, *replicas, opts.ResyncInterval, logger)
	}
	opts.Logger = logger
	opts.Progress = os.Stderr
	start := time.Now()
	m, err := allinone.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Printf(`
omni-orchestrator is running (started in %s).

  API:          %s   (OpenAPI document: %s/openapi.json)
  console:      %s/ui/   (in a browser; sign in as the user below)
  user:         %s
  password:     %s   (kept in %s/credentials)
  job types:    curl -u %s:%s %s/v1/tasks

Submit an RPM build on the aarch64 cluster and read it back:

  curl -u %s:%s -H 'Content-Type: application/json' %s/v1/jobs -d '{
    "service": "local", "task": "buildrpm", "arch": "aarch64",
    "parameters": {"srpmUrl": "https://repo.openeuler.org/openEuler-24.03-LTS/source/Packages/zlib-1.3.1-1.oe2403.src.rpm"}}'
  curl -u %s:%s '%s/v1/jobs?service=local'
`, time.Since(start).Round(time.Millisecond), m.URL, m.URL, m.URL, m.User, m.Password, opts.DataDir,
		m.User, m.Password, m.URL, m.User, m.Password, m.URL, m.User, m.Password, m.URL)
	fmt.Printf(`
Or with the CLI (go install ./cmd/omnictl; docs/cli.md), following the logs to the job's end:

  export OMNI_URL=%s OMNI_USER=%s OMNI_PASSWORD=%s OMNI_SERVICE=local
  omnictl submit buildrpm --arch aarch64 --param srpmUrl=https://repo.openeuler.org/openEuler-24.03-LTS/source/Packages/zlib-1.3.1-1.oe2403.src.rpm --follow
  omnictl list

Ctrl-C stops everything this started.
`, m.URL, m.User, m.Password)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "stopping…")
	return m.Close()
}
