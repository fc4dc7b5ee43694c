// Package sqlite is the embedded store.Store of omni-orchestrator, over modernc.org/sqlite (pure
// Go, no cgo). It serves the local all-in-one mode and the default tests; a cluster always uses
// shared/cassandra. Both pass the contract suite in shared/store/storetest.
//
// One process owns the database file. Writes go through a single connection, so they are
// serialised in the process and never fail with SQLITE_BUSY among themselves; reads use a pool of
// read-only connections that WAL mode lets run beside the writer. busy_timeout covers the other
// processes that may open the file briefly (`omni db migrate`, the sqlite3 shell).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratesqlite "github.com/golang-migrate/migrate/v4/database/sqlite"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"

	"github.com/omnibuildplatform/omni-orchestrator/migrations"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// busyTimeout is how long a connection waits for a lock held by another process before
// SQLITE_BUSY; such a failure is reported as jobs.ErrUnavailable.
const busyTimeout = 10 * time.Second

// Store is the SQLite store.Store. Create it with Open.
type Store struct {
	w *sql.DB // exactly one connection: every write transaction
	r *sql.DB // read-only connections
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and brings its schema up to date.
//
// Unlike the Cassandra store, Open migrates: the embedded mode is a single process on a single
// machine, so there is no fleet of instances racing on golang-migrate's per-process lock, and
// having the local binary need a separate `db migrate` step would only be a trap.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := Migrate(ctx, path); err != nil {
		return nil, err
	}
	w, err := openDB(path, false)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	r, err := openDB(path, true)
	if err != nil {
		w.Close()
		return nil, err
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s := &Store{w: w, r: r}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Migrate applies the embedded SQLite migrations to the database file at path, creating it if
// needed. Open calls it; `omni db migrate -store sqlite:<path>` calls it alone.
func Migrate(ctx context.Context, path string) (err error) {
	db, err := openDB(path, false)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	drv, err := migratesqlite.WithInstance(db, &migratesqlite.Config{})
	if err != nil {
		db.Close()
		return fmt.Errorf("migrate sqlite %s: %w", path, err)
	}
	src, err := iofs.New(migrations.SQLite, ".")
	if err != nil {
		drv.Close()
		return fmt.Errorf("migrate sqlite %s: %w", path, err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "sqlite", drv)
	if err != nil {
		src.Close()
		drv.Close()
		return fmt.Errorf("migrate sqlite %s: %w", path, err)
	}
	defer func() {
		// Closes db as well: the migrate driver owns the *sql.DB it was given.
		srcErr, dbErr := m.Close()
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
		return fmt.Errorf("migrate sqlite %s: %w", path, err)
	}
	return ctx.Err()
}

// openDB opens a pool on path. Pragmas run on every new connection: WAL lets readers proceed
// beside the writer, synchronous=NORMAL is durable across process crashes in WAL mode, and
// _txlock=immediate takes the write lock at BEGIN so a read-modify-write transaction cannot be
// failed by a lock upgrade.
func openDB(path string, readOnly bool) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("open sqlite: empty path")
	}
	if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite %q: the path must be a plain file name (no '?', '#' or file: URI)", path)
	}
	q := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()),
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		"_txlock=immediate",
	}
	if readOnly {
		q = append(q, "_pragma=query_only(1)")
	}
	db, err := sql.Open("sqlite", path+"?"+strings.Join(q, "&"))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return wrap("ping sqlite", err)
	}
	if err := s.w.PingContext(ctx); err != nil {
		return wrap("ping sqlite", err)
	}
	return nil
}

// Close implements store.Store. It checkpoints the WAL into the database file.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// CreateJob implements store.Store.
func (s *Store) CreateJob(ctx context.Context, j *jobs.Job) error {
	if err := store.PrepareCreate(j, time.Now()); err != nil {
		return err
	}
	row, err := encodeJob(j)
	if err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, row.args()...)
	if isConstraint(err) {
		return fmt.Errorf("create job %s: %w", j.ID, jobs.ErrExists)
	}
	return wrap("create job "+j.ID, err)
}

// GetJob implements store.Store.
func (s *Store) GetJob(ctx context.Context, id string) (*jobs.Job, error) {
	return getJob(ctx, s.r, id)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getJob(ctx context.Context, q querier, id string) (*jobs.Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get job %s: %w", id, jobs.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get job "+id, err)
	}
	return j, nil
}

// batchChunk stays far below SQLite's limit on bound parameters.
const batchChunk = 500

// BatchGet implements store.Store.
func (s *Store) BatchGet(ctx context.Context, ids []string) ([]*jobs.Job, error) {
	found := make(map[string]*jobs.Job, len(ids))
	for start := 0; start < len(ids); start += batchChunk {
		chunk := ids[start:min(start+batchChunk, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		marks := strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")
		rows, err := s.r.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id IN (`+marks+`)`, args...)
		if err != nil {
			return nil, wrap("batch get jobs", err)
		}
		js, err := scanJobs(rows)
		if err != nil {
			return nil, wrap("batch get jobs", err)
		}
		for _, j := range js {
			found[j.ID] = j
		}
	}
	out := make([]*jobs.Job, 0, len(found))
	for _, id := range ids {
		if j, ok := found[id]; ok {
			out = append(out, j.Clone())
		}
	}
	return out, nil
}

// UpdateJob implements store.Store. The read, fn and the write happen in one IMMEDIATE
// transaction on the single writer connection, so concurrent callers in this process queue up
// instead of conflicting; the revision comparison in the UPDATE still guards against a writer
// in another process.
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*jobs.Job) (bool, error)) (*jobs.Job, bool, error) {
	const attempts = 10
	for range attempts {
		j, changed, retry, err := s.updateOnce(ctx, id, fn)
		if !retry {
			return j, changed, err
		}
	}
	return nil, false, fmt.Errorf("update job %s: %w", id, jobs.ErrConflict)
}

func (s *Store) updateOnce(ctx context.Context, id string, fn func(*jobs.Job) (bool, error)) (_ *jobs.Job, changed, retry bool, err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, false, wrap("update job "+id, err)
	}
	defer func() {
		if err != nil || !changed {
			tx.Rollback()
		}
	}()
	cur, err := getJob(ctx, tx, id)
	if err != nil {
		return nil, false, false, err
	}
	next := cur.Clone()
	ok, err := fn(next)
	if err != nil {
		return nil, false, false, fmt.Errorf("update job %s: %w", id, err)
	}
	if !ok {
		return cur, false, false, nil
	}
	if err := store.PrepareUpdate(cur, next, time.Now()); err != nil {
		return nil, false, false, err
	}
	row, err := encodeJob(next)
	if err != nil {
		return nil, false, false, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE jobs SET `+updateSet+` WHERE id = ? AND revision = ?`,
		append(row.args()[1:], id, cur.Revision)...)
	if err != nil {
		return nil, false, false, wrap("update job "+id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return nil, false, true, wrap("update job "+id, err) // another process wrote first
	}
	if err := tx.Commit(); err != nil {
		return nil, false, false, wrap("update job "+id, err)
	}
	return next, true, false, nil
}

// ListJobs implements store.Store. Pages are exact: Next is "" exactly when no job follows.
func (s *Store) ListJobs(ctx context.Context, f store.Filter) (store.Page, error) {
	limit, err := store.CheckFilter(f)
	if err != nil {
		return store.Page{}, err
	}
	where := []string{"service = ?"}
	args := []any{f.Service}
	if f.Task != "" {
		where, args = append(where, "task = ?"), append(args, f.Task)
	}
	if f.Domain != "" {
		where, args = append(where, "domain = ?"), append(args, f.Domain)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if !f.Since.IsZero() {
		where, args = append(where, "created_at >= ?"), append(args, store.CeilMS(f.Since).UnixMilli())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "created_at < ?"), append(args, store.CeilMS(f.Until).UnixMilli())
	}
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return store.Page{}, err
		}
		where, args = append(where, "(created_at, id) < (?, ?)"), append(args, c.T, c.ID)
	}
	args = append(args, limit+1)
	rows, err := s.r.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE `+strings.Join(where, " AND ")+
		` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return store.Page{}, wrap("list jobs", err)
	}
	js, err := scanJobs(rows)
	if err != nil {
		return store.Page{}, wrap("list jobs", err)
	}
	var p store.Page
	if len(js) > limit {
		js = js[:limit]
		last := js[limit-1]
		p.Next = encodeCursor(cursor{T: last.CreatedAt.UnixMilli(), ID: last.ID})
	}
	p.Jobs = js
	return p, nil
}

// ListUnsettled implements store.Store: the jobs whose column active (jobs.Job.Unsettled as
// last written) is 1.
func (s *Store) ListUnsettled(ctx context.Context, cur string, limit int) ([]*jobs.Job, string, error) {
	limit = store.ActiveLimit(limit)
	c := cursor{T: -1 << 63}
	if cur != "" {
		var err error
		if c, err = decodeCursor(cur); err != nil {
			return nil, "", err
		}
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs
		WHERE active = 1 AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?`, c.T, c.ID, limit+1)
	if err != nil {
		return nil, "", wrap("list unsettled jobs", err)
	}
	js, err := scanJobs(rows)
	if err != nil {
		return nil, "", wrap("list unsettled jobs", err)
	}
	next := ""
	if len(js) > limit {
		js = js[:limit]
		last := js[limit-1]
		next = encodeCursor(cursor{T: last.CreatedAt.UnixMilli(), ID: last.ID})
	}
	return js, next, nil
}

// ClaimIdempotencyKey implements store.Store. Expired keys are deleted on the way.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, service, key, jobID string, ttl time.Duration) (_ string, err error) {
	if err := store.CheckClaim(service, key, jobID, ttl); err != nil {
		return "", err
	}
	now := time.Now()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return "", wrap("claim idempotency key", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= ?`, now.UnixMilli()); err != nil {
		return "", wrap("claim idempotency key", err)
	}
	expires := now.Add(ttl)
	if exp := expires.UnixMilli(); exp <= now.UnixMilli() {
		expires = now.Add(time.Millisecond) // a TTL below the millisecond still lasts one
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (service, idem_key, job_id, expires_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (service, idem_key) DO NOTHING`, service, key, jobID, expires.UnixMilli()); err != nil {
		return "", wrap("claim idempotency key", err)
	}
	var winner string
	if err := tx.QueryRowContext(ctx, `SELECT job_id FROM idempotency_keys WHERE service = ? AND idem_key = ?`,
		service, key).Scan(&winner); err != nil {
		return "", wrap("claim idempotency key", err)
	}
	if err := tx.Commit(); err != nil {
		return "", wrap("claim idempotency key", err)
	}
	return winner, nil
}

// wrap names the operation and marks lock timeouts (another process holding the database) as
// jobs.ErrUnavailable, which callers retry.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3lib.SQLITE_BUSY, sqlite3lib.SQLITE_LOCKED:
			return fmt.Errorf("%s: %w: %w", op, jobs.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isConstraint(err error) bool {
	var se *sqlite3.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3lib.SQLITE_CONSTRAINT
}
