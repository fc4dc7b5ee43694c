// Package cassandra is the production store.Store of omni-orchestrator, over gocql. It passes
// the contract suite in shared/store/storetest, run on a real node by its tests (local/cassandra).
//
// The tables, their keys and why are described in docs/data-model.md and in
// migrations/cassandra. In short: jobs_by_id is the source of truth and the only table a
// lightweight transaction touches; jobs_by_service, jobs_by_task (day-bucketed lists) and
// active_jobs (sharded set of jobs the resync still reads back) are indexes derived from it, written with a
// timestamp derived from the job's revision so that racing writers converge on the newest.
//
// Open does not create or migrate the schema: package schema does, once per deploy (`omni db
// init`, `omni db migrate`), because golang-migrate's lock only holds inside one process; so no
// function links golang-migrate.
package cassandra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Config says how to reach Cassandra. The envconfig tags let a function embed it and read
// OMNI_CASSANDRA_* with envconfig.Process("omni", &cfg); ParseURL reads the cassandra:// form.
type Config struct {
	// Hosts are the contact points, "host" or "host:port" (port 9042 when omitted). Required.
	Hosts []string `envconfig:"CASSANDRA_HOSTS"`
	// Keyspace holds the tables. Default "omni".
	Keyspace string `envconfig:"CASSANDRA_KEYSPACE" default:"omni"`
	// Consistency of ordinary reads and writes, a CQL level name in any case. Default
	// LOCAL_QUORUM.
	Consistency string `envconfig:"CASSANDRA_CONSISTENCY" default:"LOCAL_QUORUM"`
	// SerialConsistency of the lightweight transactions and of the reads that settle them,
	// SERIAL or LOCAL_SERIAL. Default LOCAL_SERIAL: every writer of a job runs in the data centre
	// that holds the functions; use SERIAL if writers span data centres.
	SerialConsistency string `envconfig:"CASSANDRA_SERIAL_CONSISTENCY" default:"LOCAL_SERIAL"`
	// LocalDC, if set, makes the driver prefer that data centre's nodes. Default: no preference.
	LocalDC string `envconfig:"CASSANDRA_LOCAL_DC"`
	// Username and Password enable password authentication when Username is set. Default: none.
	Username string `envconfig:"CASSANDRA_USERNAME"`
	Password string `envconfig:"CASSANDRA_PASSWORD"`
	// Timeout bounds one request and one connection attempt. Default 10s.
	Timeout time.Duration `envconfig:"CASSANDRA_TIMEOUT" default:"10s"`
	// TokenAware routes each statement to a replica of its partition. Default false: the token
	// ring and the keyspace's schema are then not read when a session opens, which takes about
	// 40 ms off every cold start of a function (docs/performance.md); the price is one hop inside
	// the cluster per statement.
	TokenAware bool `envconfig:"CASSANDRA_TOKEN_AWARE" default:"false"`
}

// ParseURL reads cassandra://host[:port][,host[:port]...]/keyspace with the optional query
// parameters consistency, serial_consistency, local_dc and timeout (a Go duration). The
// credentials are not part of the URL: set Username and Password on the result.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "cassandra" || u.Host == "" {
		return Config{}, fmt.Errorf("cassandra URL %q: want cassandra://host[:port][,host…]/keyspace", raw)
	}
	c := Config{Hosts: strings.Split(u.Host, ","), Keyspace: strings.Trim(u.Path, "/")}
	q := u.Query()
	c.Consistency = q.Get("consistency")
	c.SerialConsistency = q.Get("serial_consistency")
	c.LocalDC = q.Get("local_dc")
	if ta := q.Get("token_aware"); ta != "" {
		if c.TokenAware, err = strconv.ParseBool(ta); err != nil {
			return Config{}, fmt.Errorf("cassandra URL %q: token_aware: %w", raw, err)
		}
	}
	if t := q.Get("timeout"); t != "" {
		if c.Timeout, err = time.ParseDuration(t); err != nil {
			return Config{}, fmt.Errorf("cassandra URL %q: timeout: %w", raw, err)
		}
	}
	_, err = c.resolve()
	return c, err
}

var keyspaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)

// resolved is a Config with its defaults filled in and its levels parsed.
type resolved struct {
	Config
	consistency gocql.Consistency
	serial      gocql.SerialConsistency
}

func (c Config) resolve() (resolved, error) {
	r := resolved{Config: c}
	if len(c.Hosts) == 0 || slices.Contains(c.Hosts, "") {
		return r, errors.New("cassandra config: no hosts")
	}
	if r.Keyspace == "" {
		r.Keyspace = "omni"
	}
	if !keyspaceName.MatchString(r.Keyspace) {
		return r, fmt.Errorf("cassandra config: keyspace %q: want a letter then up to 47 letters, digits or _", r.Keyspace)
	}
	if r.Consistency == "" {
		r.Consistency = "LOCAL_QUORUM"
	}
	var err error
	if r.consistency, err = gocql.ParseConsistencyWrapper(r.Consistency); err != nil || r.consistency == gocql.Any {
		return r, fmt.Errorf("cassandra config: consistency %q: want ONE, QUORUM, LOCAL_QUORUM, ALL, ...", r.Consistency)
	}
	if r.SerialConsistency == "" {
		r.SerialConsistency = "LOCAL_SERIAL"
	}
	if err := r.serial.UnmarshalText([]byte(strings.ToUpper(r.SerialConsistency))); err != nil {
		return r, fmt.Errorf("cassandra config: serial consistency %q: want SERIAL or LOCAL_SERIAL", r.SerialConsistency)
	}
	if r.Timeout <= 0 {
		r.Timeout = 10 * time.Second
	}
	return r, nil
}

// session connects, using keyspace ("" for none).
func (c resolved) session(ctx context.Context, keyspace string) (*gocql.Session, error) {
	cluster := gocql.NewCluster(c.Hosts...)
	cluster.Keyspace = keyspace
	cluster.Consistency = c.consistency
	cluster.SerialConsistency = c.serial
	cluster.Timeout = c.Timeout
	cluster.ConnectTimeout = c.Timeout
	// Applies to the idempotent statements; lightweight transactions opt out (see jobs.go).
	cluster.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: 2, Min: 50 * time.Millisecond, Max: time.Second}
	policy := gocql.RoundRobinHostPolicy()
	if c.LocalDC != "" {
		policy = gocql.DCAwareRoundRobinPolicy(c.LocalDC)
	}
	if c.TokenAware {
		policy = gocql.TokenAwareHostPolicy(policy)
	}
	cluster.PoolConfig.HostSelectionPolicy = policy
	if c.Username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: c.Username, Password: c.Password}
	}
	// CreateSession takes no context: wait for it aside so that ctx can end the wait.
	type result struct {
		s   *gocql.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := cluster.CreateSession()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to cassandra %s: %w: %w", strings.Join(c.Hosts, ","), jobs.ErrUnavailable, r.err)
		}
		return r.s, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, fmt.Errorf("connect to cassandra: %w", ctx.Err())
	}
}

// Store is the Cassandra store.Store. Create it with Open.
type Store struct {
	s   *gocql.Session
	cfg resolved
}

var _ store.Store = (*Store)(nil)

// Open connects to the keyspace of cfg. It neither creates nor migrates the schema.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	s, err := r.session(ctx, r.Keyspace)
	if err != nil {
		return nil, err
	}
	return &Store{s: s, cfg: r}, nil
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	var v string
	err := s.s.Query(`SELECT release_version FROM system.local`).WithContext(ctx).
		Consistency(gocql.LocalOne).Idempotent(true).Scan(&v)
	return wrap("ping cassandra", err)
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.s.Close()
	return nil
}

// Connect opens a gocql session with cfg's settings (hosts, consistency, timeouts,
// credentials), in keyspace ("" for none). The schema commands (package schema) use it; the
// store itself is opened with Open.
func Connect(ctx context.Context, cfg Config, keyspace string) (*gocql.Session, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	return r.session(ctx, keyspace)
}

// KeyspaceOf returns the keyspace cfg names, "omni" when it names none, after checking cfg.
func KeyspaceOf(cfg Config) (string, error) {
	r, err := cfg.resolve()
	if err != nil {
		return "", err
	}
	return r.Keyspace, nil
}

// wrap names the operation and marks the failures worth retrying as jobs.ErrUnavailable.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case unavailable(err):
		return fmt.Errorf("%s: %w: %w", op, jobs.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// unavailable reports whether err means "try again later": a node down, overloaded or
// bootstrapping, a timeout, a lost connection. A context that ended is not.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re gocql.RequestError
	if errors.As(err, &re) {
		switch re.Code() {
		case gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping,
			gocql.ErrCodeTruncate, gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout,
			gocql.ErrCodeReadFailure, gocql.ErrCodeWriteFailure, gocql.ErrCodeCDCWriteFailure,
			gocql.ErrCodeCASWriteUnknown:
			return true
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, gocql.ErrNoConnections) || errors.Is(err, gocql.ErrTimeoutNoResponse) ||
		errors.Is(err, gocql.ErrConnectionClosed) || errors.Is(err, gocql.ErrNoStreams) ||
		errors.Is(err, gocql.ErrSessionClosed) || errors.Is(err, gocql.ErrNoConnectionsStarted)
}
