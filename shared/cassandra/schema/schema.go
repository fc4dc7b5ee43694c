// Package schema creates and migrates the keyspace of the Cassandra store (package cassandra)
// and sets its retention: what `omni db init` and `omni db migrate` run, once per deploy. It is
// apart from the store so that no function links golang-migrate.
package schema

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratecassandra "github.com/golang-migrate/migrate/v4/database/cassandra"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/omnibuildplatform/omni-orchestrator/migrations"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
)

// DefaultReplication is the replication InitKeyspace uses when given "": one replica, for a
// single-node development cluster only.
const DefaultReplication = "{'class': 'SimpleStrategy', 'replication_factor': 1}"

var (
	replicationLiteral = regexp.MustCompile(`^\{[A-Za-z0-9_'":,. \-]*\}$`)
	dcName             = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
)

// ParseReplication turns a replication spec into the CQL map of CREATE KEYSPACE. It accepts a
// CQL map literal as is ("{'class': 'NetworkTopologyStrategy', 'dc1': 3}"), a bare number as a
// SimpleStrategy replication factor ("3"), or data centre factors as NetworkTopologyStrategy
// ("dc1:3,dc2:3"). "" means DefaultReplication.
func ParseReplication(spec string) (string, error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "":
		return DefaultReplication, nil
	case strings.HasPrefix(spec, "{"):
		if !replicationLiteral.MatchString(spec) || !strings.Contains(spec, "class") {
			return "", fmt.Errorf("replication %q: not a CQL replication map", spec)
		}
		return spec, nil
	}
	if n, err := strconv.Atoi(spec); err == nil {
		if n < 1 {
			return "", fmt.Errorf("replication %q: factor must be at least 1", spec)
		}
		return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", n), nil
	}
	parts := []string{"'class': 'NetworkTopologyStrategy'"}
	for _, p := range strings.Split(spec, ",") {
		dc, factor, ok := strings.Cut(strings.TrimSpace(p), ":")
		n, err := strconv.Atoi(strings.TrimSpace(factor))
		dc = strings.TrimSpace(dc)
		if !ok || err != nil || n < 1 || !dcName.MatchString(dc) {
			return "", fmt.Errorf("replication %q: want a CQL map, a factor, or dc:factor[,dc:factor...]", spec)
		}
		parts = append(parts, fmt.Sprintf("'%s': %d", dc, n))
	}
	return "{" + strings.Join(parts, ", ") + "}", nil
}

// InitKeyspace creates keyspace if it does not exist, with the given replication (see
// ParseReplication). An existing keyspace is left as it is: changing its replication is an
// ALTER KEYSPACE followed by a repair, which is an operator's decision.
func InitKeyspace(ctx context.Context, c cassandra.Config, replication string) error {
	keyspace, err := cassandra.KeyspaceOf(c)
	if err != nil {
		return err
	}
	repl, err := ParseReplication(replication)
	if err != nil {
		return err
	}
	sess, err := cassandra.Connect(ctx, c, "")
	if err != nil {
		return err
	}
	defer sess.Close()
	stmt := fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s AND durable_writes = true`, keyspace, repl)
	if err := sess.Query(stmt).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("create keyspace %s: %w", keyspace, err)
	}
	return nil
}

// Migrate brings the schema of keyspace up to date with the embedded migrations. The
// keyspace must exist (InitKeyspace). Run it once per deploy, never from several processes at
// once: golang-migrate's Cassandra lock only holds inside one process.
func Migrate(ctx context.Context, c cassandra.Config) (err error) {
	keyspace, err := cassandra.KeyspaceOf(c)
	if err != nil {
		return err
	}
	sess, err := cassandra.Connect(ctx, c, keyspace)
	if err != nil {
		return fmt.Errorf("migrate (does keyspace %s exist? `omni db init` creates it): %w", keyspace, err)
	}
	drv, err := migratecassandra.WithInstance(sess, &migratecassandra.Config{
		KeyspaceName: keyspace,
		// Our migration files hold several statements; see package migrations for the rules.
		MultiStatementEnabled: true,
	})
	if err != nil {
		sess.Close()
		return fmt.Errorf("migrate cassandra %s: %w", keyspace, err)
	}
	src, err := iofs.New(migrations.Cassandra, ".")
	if err != nil {
		drv.Close()
		return fmt.Errorf("migrate cassandra %s: %w", keyspace, err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "cassandra", drv)
	if err != nil {
		src.Close()
		drv.Close()
		return fmt.Errorf("migrate cassandra %s: %w", keyspace, err)
	}
	defer func() {
		srcErr, dbErr := m.Close() // closes sess too
		if err == nil {
			err = errors.Join(srcErr, dbErr)
		}
	}()
	stop := context.AfterFunc(ctx, func() {
		select {
		case m.GracefulStop <- true:
		default:
		}
	})
	defer stop()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate cassandra %s: %w", keyspace, err)
	}
	return ctx.Err()
}

// Retention says how long Cassandra keeps jobs and logs, as table default TTLs (DESIGN §3): a
// row expires that long after its last write. Zero keeps rows for ever.
type Retention struct {
	// Jobs applies to jobs_by_id and the list tables jobs_by_service and jobs_by_task; every
	// write of a job rewrites all its columns, so a job expires Jobs after its last change.
	// active_jobs never expires: its rows leave when their job is settled (ended, steps too).
	Jobs time.Duration
	// Logs applies to log_chunks and log_steps, whose rows are written once (or a few times
	// at the end of a step); their TWCS window is set to about a thirtieth of it.
	Logs time.Duration
}

// maxTTL is Cassandra's limit on a TTL: 20 years.
const maxTTL = 20 * 365 * 24 * time.Hour

// Statements returns the ALTER TABLE statements that apply r.
func (r Retention) Statements() ([]string, error) {
	jobs, err := ttlSeconds("job retention", r.Jobs)
	if err != nil {
		return nil, err
	}
	logs, err := ttlSeconds("log retention", r.Logs)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range []string{"jobs_by_id", "jobs_by_service", "jobs_by_task"} {
		out = append(out, fmt.Sprintf("ALTER TABLE %s WITH default_time_to_live = %d", t, jobs))
	}
	// About 30 windows per TTL (TWCS' guidance), at least one hour; a week when logs are kept
	// for ever.
	window := 7 * 24
	if logs > 0 {
		window = max(1, int(math.Ceil(float64(logs)/3600/30)))
	}
	for _, t := range []string{"log_chunks", "log_steps"} {
		out = append(out, fmt.Sprintf("ALTER TABLE %s WITH default_time_to_live = %d AND compaction = "+
			"{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': %d}",
			t, logs, window))
	}
	return out, nil
}

func ttlSeconds(what string, d time.Duration) (int, error) {
	if d < 0 || d > maxTTL {
		return 0, fmt.Errorf("%s %s: want 0 (for ever) up to 20 years", what, d)
	}
	return int(math.Ceil(d.Seconds())), nil
}

// SetRetention sets the table TTLs of r on c's keyspace (after Migrate). A changed TTL
// applies to rows written from then on; rows already stored keep the expiry they were written
// with. Run it with the migration, once per deploy (`omni db migrate`).
func SetRetention(ctx context.Context, c cassandra.Config, r Retention) error {
	stmts, err := r.Statements()
	if err != nil {
		return err
	}
	keyspace, err := cassandra.KeyspaceOf(c)
	if err != nil {
		return err
	}
	sess, err := cassandra.Connect(ctx, c, keyspace)
	if err != nil {
		return err
	}
	defer sess.Close()
	for _, stmt := range stmts {
		if err := sess.Query(stmt).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("set retention: %w", err)
		}
	}
	return nil
}
