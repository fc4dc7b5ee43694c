package cassandra

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Retention says how long Cassandra keeps jobs and logs, as table default TTLs (DESIGN §3): a
// row expires that long after its last write. Zero keeps rows for ever.
type Retention struct {
	// Jobs applies to jobs_by_id and the list tables jobs_by_service and jobs_by_task; every
	// write of a job rewrites all its columns, so a job expires Jobs after its last change.
	// active_jobs never expires: its rows leave when their job ends.
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

// SetRetention sets the table TTLs of r on cfg's keyspace (after Migrate). A changed TTL
// applies to rows written from then on; rows already stored keep the expiry they were written
// with. Run it with the migration, once per deploy (`omni db migrate`).
func SetRetention(ctx context.Context, c Config, r Retention) error {
	stmts, err := r.Statements()
	if err != nil {
		return err
	}
	cfg, err := c.resolve()
	if err != nil {
		return err
	}
	sess, err := cfg.session(ctx, cfg.Keyspace)
	if err != nil {
		return err
	}
	defer sess.Close()
	for _, stmt := range stmts {
		if err := sess.Query(stmt).WithContext(ctx).Exec(); err != nil {
			return wrap("set retention", err)
		}
	}
	return nil
}
