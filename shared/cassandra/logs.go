package cassandra

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

var _ store.LogStore = (*Store)(nil)

// Limits of the Cassandra log tables (the database-independent ones are in shared/store).
const (
	// chunksPerBucket is how many consecutive chunks share a partition of log_chunks: with
	// chunks of at most 256 KiB, a partition holds at most about 16 MiB (docs/data-model.md).
	// Changing it needs a migration that rewrites the table.
	chunksPerBucket = 64
	// maxStepAttempts bounds the compare-and-set loop of PutLogStep; each lost round means
	// another writer stored a change.
	maxStepAttempts = 100
)

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

func bucketOf(seq int64) int { return int((seq - 1) / chunksPerBucket) }

// PutLogChunk implements store.LogStore with INSERT … IF NOT EXISTS, so the first write wins
// even when two archivers (a redelivery beside a slow first delivery) race. A transaction per
// chunk of up to 256 KiB is a few hundred per 50 MB of log. A timed-out attempt is simply
// tried again: whichever write was accepted, the row then exists and the retry is a no-op.
func (s *Store) PutLogChunk(ctx context.Context, c store.LogChunk) error {
	if err := store.CheckChunk(&c); err != nil {
		return err
	}
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			if werr := sleepCtx(ctx, time.Duration(attempt)*100*time.Millisecond); werr != nil {
				break
			}
		}
		_, err = s.s.Query(`INSERT INTO log_chunks (job_id, step, source, bucket, seq, data, lines, first_time, last_time)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
			c.JobID, c.Step, c.Source, bucketOf(c.Seq), c.Seq, c.Data, c.Lines, nanos(c.FirstTime), nanos(c.LastTime)).
			WithContext(ctx).SerialConsistency(s.cfg.serial).RetryPolicy(nil).MapScanCAS(map[string]any{})
		if err == nil || !unavailable(err) {
			break
		}
	}
	return wrap(fmt.Sprintf("put log chunk %s/%s/%s/%d", c.JobID, c.Step, c.Source, c.Seq), err)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LogChunks implements store.LogStore, reading bucket after bucket. It moves on to the next
// bucket only when the current one was read to its last sequence number, so a reader never
// skips past a chunk that is still missing at a bucket's end (pushed chunks may arrive out
// of order).
func (s *Store) LogChunks(ctx context.Context, jobID, step, source string, after int64, limit int) ([]store.LogChunk, error) {
	if err := store.CheckLogKey(jobID, step, source); err != nil {
		return nil, err
	}
	limit = store.ChunkLimit(limit)
	next := max(after, 0) + 1
	var out []store.LogChunk
	for len(out) < limit {
		b := bucketOf(next)
		iter := s.s.Query(`SELECT seq, data, lines, first_time, last_time FROM log_chunks
			WHERE job_id = ? AND step = ? AND source = ? AND bucket = ? AND seq >= ? LIMIT ?`,
			jobID, step, source, b, next, limit-len(out)).WithContext(ctx).Idempotent(true).Iter()
		n := 0
		c := store.LogChunk{JobID: jobID, Step: step, Source: source}
		var first, last int64
		for iter.Scan(&c.Seq, &c.Data, &c.Lines, &first, &last) {
			c.FirstTime, c.LastTime = fromNanos(first), fromNanos(last)
			out = append(out, c)
			n++
			c = store.LogChunk{JobID: jobID, Step: step, Source: source}
		}
		if err := iter.Close(); err != nil {
			return nil, wrap("read log chunks", err)
		}
		if n == 0 || out[len(out)-1].Seq != int64(b+1)*chunksPerBucket {
			break // this bucket ends here: nothing follows (yet)
		}
		next = out[len(out)-1].Seq + 1
	}
	return out, nil
}

type logStepRow struct {
	store.LogStep
	version int64
}

func (s *Store) readLogStep(ctx context.Context, jobID, step string, c gocql.Consistency) (*logStepRow, error) {
	r := logStepRow{LogStep: store.LogStep{JobID: jobID, Step: step}}
	err := s.s.Query(`SELECT version, last_seq, bytes, lines, complete, incomplete, reason FROM log_steps
		WHERE job_id = ? AND step = ?`, jobID, step).WithContext(ctx).Consistency(c).Idempotent(true).
		Scan(&r.version, &r.LastSeq, &r.Bytes, &r.Lines, &r.Complete, &r.Incomplete, &r.Reason)
	if errors.Is(err, gocql.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// mergeLogStep is what PutLogStep stores over cur: no field goes back.
func mergeLogStep(cur, s store.LogStep) store.LogStep {
	out := cur
	out.LastSeq = max(cur.LastSeq, s.LastSeq)
	out.Bytes = max(cur.Bytes, s.Bytes)
	out.Lines = max(cur.Lines, s.Lines)
	out.Complete = cur.Complete || s.Complete
	out.Incomplete = cur.Incomplete || s.Incomplete
	if out.Reason == "" {
		out.Reason = s.Reason
	}
	return out
}

// PutLogStep implements store.LogStore: read, merge (mergeLogStep), and write every column
// with a compare-and-set on version; a lost race re-reads at serial consistency and merges
// again. Writing every column renews the row's TTL as a whole.
func (s *Store) PutLogStep(ctx context.Context, st store.LogStep) error {
	if err := store.CheckLogStep(&st); err != nil {
		return err
	}
	op := fmt.Sprintf("put log step %s/%s", st.JobID, st.Step)
	cur, err := s.readLogStep(ctx, st.JobID, st.Step, s.cfg.consistency)
	if err != nil {
		return wrap(op, err)
	}
	for range maxStepAttempts {
		var applied bool
		if cur == nil {
			applied, err = s.s.Query(`INSERT INTO log_steps (job_id, step, version, last_seq, bytes, lines, complete, incomplete, reason)
				VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`,
				st.JobID, st.Step, st.LastSeq, st.Bytes, st.Lines, st.Complete, st.Incomplete, st.Reason).
				WithContext(ctx).SerialConsistency(s.cfg.serial).RetryPolicy(nil).MapScanCAS(map[string]any{})
		} else {
			m := mergeLogStep(cur.LogStep, st)
			if m == cur.LogStep {
				return nil
			}
			applied, err = s.s.Query(`UPDATE log_steps SET version = ?, last_seq = ?, bytes = ?, lines = ?,
				complete = ?, incomplete = ?, reason = ? WHERE job_id = ? AND step = ? IF version = ?`,
				cur.version+1, m.LastSeq, m.Bytes, m.Lines, m.Complete, m.Incomplete, m.Reason, st.JobID, st.Step, cur.version).
				WithContext(ctx).SerialConsistency(s.cfg.serial).RetryPolicy(nil).MapScanCAS(map[string]any{})
		}
		if err == nil && applied {
			return nil
		}
		if err != nil && !unavailable(err) {
			return wrap(op, err)
		}
		// Lost a race, or the outcome is unknown: the serial read sees every accepted write,
		// and merging again is harmless if ours was one of them.
		if cur, err = s.readLogStep(ctx, st.JobID, st.Step, s.serial()); err != nil {
			return wrap(op, err)
		}
	}
	return fmt.Errorf("%s: %w", op, jobs.ErrConflict)
}

// LogSteps implements store.LogStore, in step name order.
func (s *Store) LogSteps(ctx context.Context, jobID string) ([]store.LogStep, error) {
	if err := store.CheckKey("jobId", jobID); err != nil {
		return nil, err
	}
	iter := s.s.Query(`SELECT step, last_seq, bytes, lines, complete, incomplete, reason FROM log_steps
		WHERE job_id = ?`, jobID).WithContext(ctx).Idempotent(true).Iter()
	var out []store.LogStep
	st := store.LogStep{JobID: jobID}
	for iter.Scan(&st.Step, &st.LastSeq, &st.Bytes, &st.Lines, &st.Complete, &st.Incomplete, &st.Reason) {
		out = append(out, st)
		st = store.LogStep{JobID: jobID}
	}
	if err := iter.Close(); err != nil {
		return nil, wrap("read log steps", err)
	}
	return out, nil
}
