package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

var _ store.LogStore = (*Store)(nil)

// nanos and fromNanos keep line times at full precision; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// PutLogChunk implements store.LogStore: INSERT … ON CONFLICT DO NOTHING, the first write wins.
func (s *Store) PutLogChunk(ctx context.Context, c store.LogChunk) error {
	if err := store.CheckChunk(&c); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO log_chunks
		(job_id, step, source, seq, data, lines, first_time, last_time, stored_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, step, source, seq) DO NOTHING`,
		c.JobID, c.Step, c.Source, c.Seq, c.Data, c.Lines, nanos(c.FirstTime), nanos(c.LastTime), time.Now().UnixMilli())
	return wrap(fmt.Sprintf("put log chunk %s/%s/%s/%d", c.JobID, c.Step, c.Source, c.Seq), err)
}

// LogChunks implements store.LogStore. limit is 1..1000; 0 means 100.
func (s *Store) LogChunks(ctx context.Context, jobID, step, source string, after int64, limit int) ([]store.LogChunk, error) {
	if err := store.CheckLogKey(jobID, step, source); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq, data, lines, first_time, last_time FROM log_chunks
		WHERE job_id = ? AND step = ? AND source = ? AND seq > ? ORDER BY seq LIMIT ?`,
		jobID, step, source, max(after, 0), store.ChunkLimit(limit))
	if err != nil {
		return nil, wrap("read log chunks", err)
	}
	defer rows.Close()
	var out []store.LogChunk
	for rows.Next() {
		c := store.LogChunk{JobID: jobID, Step: step, Source: source}
		var first, last int64
		if err := rows.Scan(&c.Seq, &c.Data, &c.Lines, &first, &last); err != nil {
			return nil, wrap("read log chunks", err)
		}
		c.FirstTime, c.LastTime = fromNanos(first), fromNanos(last)
		out = append(out, c)
	}
	return out, wrap("read log chunks", rows.Err())
}

// PutLogStep implements store.LogStore: an upsert that merges with what is stored so that no
// field goes back (maxima of the counts, flags or-ed, the first non-empty reason kept).
func (s *Store) PutLogStep(ctx context.Context, st store.LogStep) error {
	if err := store.CheckLogStep(&st); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO log_steps
		(job_id, step, last_seq, bytes, lines, complete, incomplete, reason, stored_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id, step) DO UPDATE SET
			last_seq   = max(last_seq, excluded.last_seq),
			bytes      = max(bytes, excluded.bytes),
			lines      = max(lines, excluded.lines),
			complete   = max(complete, excluded.complete),
			incomplete = max(incomplete, excluded.incomplete),
			reason     = CASE WHEN reason = '' THEN excluded.reason ELSE reason END,
			stored_at  = excluded.stored_at`,
		st.JobID, st.Step, st.LastSeq, st.Bytes, st.Lines, st.Complete, st.Incomplete, st.Reason, time.Now().UnixMilli())
	return wrap(fmt.Sprintf("put log step %s/%s", st.JobID, st.Step), err)
}

// LogSteps implements store.LogStore, in step name order.
func (s *Store) LogSteps(ctx context.Context, jobID string) ([]store.LogStep, error) {
	if err := store.CheckKey("jobId", jobID); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT step, last_seq, bytes, lines, complete, incomplete, reason
		FROM log_steps WHERE job_id = ? ORDER BY step`, jobID)
	if err != nil {
		return nil, wrap("read log steps", err)
	}
	defer rows.Close()
	var out []store.LogStep
	for rows.Next() {
		st := store.LogStep{JobID: jobID}
		if err := rows.Scan(&st.Step, &st.LastSeq, &st.Bytes, &st.Lines, &st.Complete, &st.Incomplete, &st.Reason); err != nil {
			return nil, wrap("read log steps", err)
		}
		out = append(out, st)
	}
	return out, wrap("read log steps", rows.Err())
}

// purgeBatch bounds one delete transaction of Purge, so that the single writer connection is
// never held for long by a large purge.
const purgeBatch = 500

// Purged counts what one Purge deleted.
type Purged struct {
	Jobs, LogChunks, LogSteps int64
}

// Purge deletes the finished jobs last changed before jobsBefore and the log chunks and log
// step states stored before logsBefore; a zero time keeps everything of its kind. It is the
// embedded store's counterpart of Cassandra's table TTLs (docs/logs.md, Retention), run
// periodically by the local all-in-one. Unfinished jobs are never purged.
func (s *Store) Purge(ctx context.Context, jobsBefore, logsBefore time.Time) (Purged, error) {
	var p Purged
	type target struct {
		n     *int64
		query string
		at    time.Time
	}
	for _, t := range []target{
		{&p.LogChunks, `DELETE FROM log_chunks WHERE rowid IN (SELECT rowid FROM log_chunks WHERE stored_at < ? LIMIT ?)`, logsBefore},
		{&p.LogSteps, `DELETE FROM log_steps WHERE (job_id, step) IN (SELECT job_id, step FROM log_steps WHERE stored_at < ? LIMIT ?)`, logsBefore},
		{&p.Jobs, `DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE active = 0 AND updated_at < ? LIMIT ?)`, jobsBefore},
	} {
		if t.at.IsZero() {
			continue
		}
		for {
			res, err := s.w.ExecContext(ctx, t.query, t.at.UnixMilli(), purgeBatch)
			if err != nil {
				return p, wrap("purge", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return p, wrap("purge", err)
			}
			*t.n += n
			if n < purgeBatch {
				break
			}
		}
	}
	return p, nil
}
