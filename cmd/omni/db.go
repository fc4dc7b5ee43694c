package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra/schema"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

const dbUsage = `usage: omni db init    [flags]   create the keyspace if needed, then migrate
       omni db migrate [flags]   bring the schema up to date

Run once per deploy (the Kubernetes Job in config/ does), never from several processes at once:
golang-migrate's lock only holds inside one process. Both are idempotent.

The store is -store, else $OMNI_STORE:
  sqlite:<path>                    migrate that file (init and migrate do the same)
  cassandra://host[:port][,host…]/keyspace[?consistency=…&serial_consistency=…&local_dc=…&timeout=…]
  cassandra                        use -hosts, -keyspace, … (the default when hosts are given)
Every flag defaults to its environment variable (shown in brackets); a flag given explicitly
wins over the -store URL. Prefer $OMNI_CASSANDRA_PASSWORD to -password, which other users of the
machine can read in the process list.

flags:
`

// dbCommand runs `omni db <init|migrate> [flags]`: keyspace creation and schema migration, once
// per deploy. args are the arguments after "db".
func dbCommand(ctx context.Context, args []string) error {
	return runDB(ctx, args, os.Stdout, os.Stderr)
}

func runDB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dbUsage)
		return errors.New("db: want a subcommand: init or migrate")
	}
	sub := args[0]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		fmt.Fprint(stdout, dbUsage)
		return nil
	}
	if sub != "init" && sub != "migrate" {
		fmt.Fprint(stderr, dbUsage)
		return fmt.Errorf("db: unknown subcommand %q: want init or migrate", sub)
	}

	// The environment first (OMNI_CASSANDRA_*, with the defaults of cassandra.Config), then flags.
	var env cassandra.Config
	if err := envconfig.Process("omni", &env); err != nil {
		return fmt.Errorf("db %s: %w", sub, err)
	}
	var ret store.RetentionEnv
	if err := envconfig.Process("", &ret); err != nil {
		return fmt.Errorf("db %s: %w", sub, err)
	}
	fs := flag.NewFlagSet("omni db "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dbUsage); fs.PrintDefaults() }
	var (
		storeSpec   = fs.String("store", os.Getenv("OMNI_STORE"), "sqlite:<path>, cassandra://hosts/keyspace or cassandra [OMNI_STORE]")
		hosts       = fs.String("hosts", strings.Join(env.Hosts, ","), "Cassandra contact points, host[:port],… [OMNI_CASSANDRA_HOSTS]")
		keyspace    = fs.String("keyspace", env.Keyspace, "Cassandra keyspace [OMNI_CASSANDRA_KEYSPACE]")
		replication = fs.String("replication", os.Getenv("OMNI_CASSANDRA_REPLICATION"),
			"replication of a new keyspace (init only): a factor (SimpleStrategy, e.g. 1), dc:factor,… (NetworkTopologyStrategy, e.g. dc1:3,dc2:3) or a CQL map; default "+schema.DefaultReplication+" [OMNI_CASSANDRA_REPLICATION]")
		username    = fs.String("username", env.Username, "Cassandra user [OMNI_CASSANDRA_USERNAME]")
		password    = fs.String("password", env.Password, "Cassandra password; prefer the environment variable [OMNI_CASSANDRA_PASSWORD]")
		consistency = fs.String("consistency", env.Consistency, "consistency level of the migration statements [OMNI_CASSANDRA_CONSISTENCY]")
		localDC     = fs.String("local-dc", env.LocalDC, "preferred Cassandra data centre [OMNI_CASSANDRA_LOCAL_DC]")
		timeout     = fs.Duration("timeout", env.Timeout, "timeout of one Cassandra request [OMNI_CASSANDRA_TIMEOUT]")
		jobRet      = fs.Duration("job-retention", ret.JobRetention, "Cassandra: how long jobs are kept after their last change; 0 keeps them for ever [OMNI_JOB_RETENTION]")
		logRet      = fs.Duration("log-retention", ret.LogRetention, "Cassandra: how long logs are kept; 0 keeps them for ever [OMNI_LOG_RETENTION]")
	)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("db %s: %w", sub, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("db %s: unexpected arguments %q", sub, fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	spec := *storeSpec
	if given["hosts"] && !given["store"] {
		spec = "cassandra" // -hosts says which store is meant
	}
	switch {
	case spec == "":
		if *hosts == "" {
			return fmt.Errorf("db %s: no store: give -store sqlite:<path>, -store cassandra://host/keyspace or -hosts (or set OMNI_STORE / OMNI_CASSANDRA_HOSTS)", sub)
		}
		spec = "cassandra"
	case strings.HasPrefix(spec, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(spec, "sqlite:"), "//")
		if err := sqlite.Migrate(ctx, path); err != nil {
			return fmt.Errorf("db %s: %w", sub, err)
		}
		fmt.Fprintf(stdout, "sqlite %s: schema up to date\n", path)
		return nil
	}

	var cfg cassandra.Config
	switch {
	case spec == "cassandra":
		cfg = env
		cfg.Hosts = splitHosts(*hosts)
		cfg.Keyspace, cfg.Consistency, cfg.LocalDC, cfg.Timeout = *keyspace, *consistency, *localDC, *timeout
	case strings.HasPrefix(spec, "cassandra://"):
		var err error
		if cfg, err = cassandra.ParseURL(spec); err != nil {
			return fmt.Errorf("db %s: %w", sub, err)
		}
		// Explicit flags win over the URL; the URL wins over the environment.
		override := func(name string, dst *string, v string) {
			if given[name] || (*dst == "" && v != "") {
				*dst = v
			}
		}
		if given["hosts"] {
			cfg.Hosts = splitHosts(*hosts)
		}
		override("keyspace", &cfg.Keyspace, *keyspace)
		override("consistency", &cfg.Consistency, *consistency)
		override("local-dc", &cfg.LocalDC, *localDC)
		if given["timeout"] || cfg.Timeout == 0 {
			cfg.Timeout = *timeout
		}
	default:
		return fmt.Errorf("db %s: store %q: want sqlite:<path>, cassandra://hosts/keyspace or cassandra", sub, spec)
	}
	cfg.Username, cfg.Password = *username, *password
	if len(cfg.Hosts) == 0 {
		return fmt.Errorf("db %s: no Cassandra hosts: give -hosts or set OMNI_CASSANDRA_HOSTS", sub)
	}
	if cfg.Keyspace == "" {
		cfg.Keyspace = "omni"
	}

	start := time.Now()
	if sub == "init" {
		if err := schema.InitKeyspace(ctx, cfg, *replication); err != nil {
			return fmt.Errorf("db init: %w", err)
		}
		repl, _ := schema.ParseReplication(*replication) // InitKeyspace accepted it
		fmt.Fprintf(stdout, "keyspace %s: present (created with replication %s if it was missing)\n", cfg.Keyspace, repl)
	} else if given["replication"] {
		return errors.New("db migrate: -replication only applies to db init")
	}
	if err := schema.Migrate(ctx, cfg); err != nil {
		return fmt.Errorf("db %s: %w", sub, err)
	}
	if err := schema.SetRetention(ctx, cfg, schema.Retention{Jobs: *jobRet, Logs: *logRet}); err != nil {
		return fmt.Errorf("db %s: set retention: %w", sub, err)
	}
	fmt.Fprintf(stdout, "keyspace %s: schema up to date, jobs kept %s, logs kept %s (%s)\n", cfg.Keyspace,
		retention(*jobRet), retention(*logRet), time.Since(start).Round(time.Millisecond))
	return nil
}

func splitHosts(s string) []string {
	var out []string
	for _, h := range strings.Split(s, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

func retention(d time.Duration) string {
	if d <= 0 {
		return "for ever"
	}
	return d.String()
}
