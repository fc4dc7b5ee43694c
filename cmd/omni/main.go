// Command omni is the operator binary of omni-orchestrator:
//
//	omni run                 every function locally on one port (what `make run` starts)
//	omni run -replicas N     every function as N processes of its own binary (`make run REPLICAS=N`)
//	omni db init [flags]     create the Cassandra keyspace, then migrate
//	omni db migrate [flags]  apply the schema migrations (Cassandra or SQLite)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "omni:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  omni run [flags]            run every function locally (see omni run -h; -replicas N: as N processes each)
  omni db init [flags]        create the Cassandra keyspace and migrate (see omni db -h)
  omni db migrate [flags]     apply the schema migrations`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%s", usage)
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:])
	case "db":
		return dbCommand(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
