package cassandra

import (
	"context"
	"errors"
	"fmt"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

const (
	// maxUpdateAttempts bounds the compare-and-set loop of UpdateJob. Each lost round means
	// another writer stored a change, so the loop always makes progress; the bound is a guard.
	maxUpdateAttempts = 1000
	// maxUnsettled is how many compare-and-sets in a row may end in a timeout that left the job
	// unchanged (Paxos contention does that) before UpdateJob gives up with ErrUnavailable.
	maxUnsettled = 5
	// fetchParallelism bounds the concurrent point reads of BatchGet and the list methods.
	fetchParallelism = 16
)

// serial is the consistency of a read that must see every accepted lightweight transaction.
func (s *Store) serial() gocql.Consistency { return gocql.Consistency(s.cfg.serial) }

func (s *Store) get(ctx context.Context, id string, c gocql.Consistency) (*jobs.Job, error) {
	q := s.s.Query(selectJob, id).WithContext(ctx).Consistency(c).Idempotent(true)
	j, err := scanJob(q.Scan)
	if errors.Is(err, gocql.ErrNotFound) {
		return nil, fmt.Errorf("get job %s: %w", id, jobs.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get job "+id, err)
	}
	return j, nil
}

// GetJob implements store.Store.
func (s *Store) GetJob(ctx context.Context, id string) (*jobs.Job, error) {
	return s.get(ctx, id, s.cfg.consistency)
}

// BatchGet implements store.Store with concurrent point reads of jobs_by_id (an IN query on
// the partition key would load one coordinator with every partition).
func (s *Store) BatchGet(ctx context.Context, ids []string) ([]*jobs.Job, error) {
	got, err := s.getMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*jobs.Job, 0, len(ids))
	for _, j := range got {
		if j != nil {
			out = append(out, j)
		}
	}
	return out, nil
}

// getMany reads the jobs of ids, fetchParallelism at a time; missing ones are nil.
func (s *Store) getMany(ctx context.Context, ids []string) ([]*jobs.Job, error) {
	first := make(map[string]int, len(ids)) // each distinct id is read once
	var distinct []string
	for _, id := range ids {
		if _, ok := first[id]; !ok {
			first[id] = len(distinct)
			distinct = append(distinct, id)
		}
	}
	got := make([]*jobs.Job, len(distinct))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, fetchParallelism)
	)
	for i, id := range distinct {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			j, err := s.get(ctx, id, s.cfg.consistency)
			if err != nil && !errors.Is(err, jobs.ErrNotFound) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
				return
			}
			got[i] = j
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]*jobs.Job, len(ids))
	seen := make(map[string]bool, len(distinct))
	for i, id := range ids {
		j := got[first[id]]
		if j != nil && seen[id] {
			j = j.Clone() // a repeated id gets its own copy
		}
		seen[id] = true
		out[i] = j
	}
	return out, nil
}

// CreateJob implements store.Store. The index rows are written first: once jobs_by_id holds
// the job it is listed and, while unfinished, resynced, even if this process dies right after
// the insert. Index rows of a job that never got stored are skipped by the readers (they check
// jobs_by_id) and, in active_jobs, deleted by ListUnsettled after a grace period.
func (s *Store) CreateJob(ctx context.Context, j *jobs.Job) error {
	if err := store.PrepareCreate(j, time.Now()); err != nil {
		return err
	}
	r, err := encodeJob(j)
	if err != nil {
		return err
	}
	if err := s.writeIndexes(ctx, j); err != nil {
		return wrap("create job "+j.ID, err)
	}
	applied, err := s.s.Query(insertJob, r.args()...).WithContext(ctx).
		SerialConsistency(s.cfg.serial).RetryPolicy(nil).MapScanCAS(map[string]any{})
	if err != nil {
		// The outcome is unknown (a timed-out transaction may still be accepted): a serial read
		// settles it.
		stored, gerr := s.get(ctx, j.ID, s.serial())
		if gerr == nil && sameWrite(stored, j) {
			return nil
		}
		return wrap("create job "+j.ID, err)
	}
	if applied {
		return nil
	}
	// Another job holds this id (or a retry of this creation already stored it).
	if stored, err := s.get(ctx, j.ID, s.serial()); err == nil {
		if stored.Service != j.Service || stored.Task != j.Task || !stored.CreatedAt.Equal(j.CreatedAt) {
			_ = s.deleteIndexes(ctx, j) // best effort: readers skip them anyway
		}
		_ = s.writeIndexes(ctx, stored) // repairs a creation that died between the two writes
	}
	return fmt.Errorf("create job %s: %w", j.ID, jobs.ErrExists)
}

// UpdateJob implements store.Store with a compare-and-set on jobs_by_id.revision. After a lost
// race it re-reads at serial consistency, which sees the winner, and calls fn again; a
// compare-and-set that timed out is settled by that read (and retried if it did not happen).
//
// Once the compare-and-set succeeded the change is stored and UpdateJob reports success even if
// rewriting the index rows then fails: failing would make the caller retry, find nothing to
// change and never emit the change. A stale index row is repaired by the job's next update, and
// a job that ended but is still in active_jobs by ListUnsettled.
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*jobs.Job) (bool, error)) (*jobs.Job, bool, error) {
	cur, err := s.get(ctx, id, s.cfg.consistency)
	if err != nil {
		return nil, false, err
	}
	unsettled := 0
	for attempt := range maxUpdateAttempts {
		next := cur.Clone()
		ok, err := fn(next)
		if err != nil {
			return nil, false, fmt.Errorf("update job %s: %w", id, err)
		}
		if !ok {
			return cur, false, nil
		}
		if err := store.PrepareUpdate(cur, next, time.Now()); err != nil {
			return nil, false, err
		}
		r, err := encodeJob(next)
		if err != nil {
			return nil, false, err
		}
		applied, err := s.s.Query(updateJob, append(r.args()[1:], id, cur.Revision)...).WithContext(ctx).
			SerialConsistency(s.cfg.serial).RetryPolicy(nil).MapScanCAS(map[string]any{})
		if err != nil {
			stored, gerr := s.get(ctx, id, s.serial())
			if gerr != nil {
				return nil, false, wrap("update job "+id, err)
			}
			if !sameWrite(stored, next) {
				if stored.Revision == cur.Revision { // nothing was stored: try again, a few times
					if unsettled++; unsettled > maxUnsettled || !unavailable(err) {
						return nil, false, wrap("update job "+id, err)
					}
				}
				cur = stored
				if err := backoff(ctx, attempt); err != nil {
					return nil, false, fmt.Errorf("update job %s: %w", id, err)
				}
				continue
			}
			applied = true // it went through after all
		}
		if !applied {
			unsettled = 0
			if cur, err = s.get(ctx, id, s.serial()); err != nil {
				return nil, false, err
			}
			if err := backoff(ctx, attempt); err != nil {
				return nil, false, fmt.Errorf("update job %s: %w", id, err)
			}
			continue
		}
		_ = s.writeIndexes(ctx, next) // see the doc comment
		return next, true, nil
	}
	return nil, false, fmt.Errorf("update job %s: %d attempts lost the race: %w", id, maxUpdateAttempts, jobs.ErrConflict)
}

// backoff waits a little, more after more lost races, with jitter so that racing writers spread.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(min(attempt+1, 20)) * int64(2*time.Millisecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeIndexes writes j's rows of the list tables and adds it to or removes it from
// active_jobs (the resync's list: the jobs for which jobs.Job.Unsettled holds), in one
// logged batch (all or, eventually, nothing) with the revision-derived timestamp (see writeTime).
func (s *Store) writeIndexes(ctx context.Context, j *jobs.Job) error {
	day := dayOf(j.CreatedAt)
	b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx).WithTimestamp(writeTime(j))
	b.Query(`INSERT INTO jobs_by_service (service, day, created_at, id, task, domain, status) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		j.Service, day, j.CreatedAt, j.ID, j.Task, j.Domain, string(j.Status))
	b.Query(`INSERT INTO jobs_by_task (service, task, day, created_at, id, domain, status) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		j.Service, j.Task, day, j.CreatedAt, j.ID, j.Domain, string(j.Status))
	if !j.Unsettled() {
		b.Query(`DELETE FROM active_jobs WHERE shard = ? AND created_at = ? AND id = ?`, shardOf(j.ID), j.CreatedAt, j.ID)
	} else {
		b.Query(`INSERT INTO active_jobs (shard, created_at, id) VALUES (?, ?, ?)`, shardOf(j.ID), j.CreatedAt, j.ID)
	}
	return s.s.ExecuteBatch(b)
}

// deleteIndexes removes the index rows written for j at revision j.Revision.
func (s *Store) deleteIndexes(ctx context.Context, j *jobs.Job) error {
	day := dayOf(j.CreatedAt)
	b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx).WithTimestamp(writeTime(j))
	b.Query(`DELETE FROM jobs_by_service WHERE service = ? AND day = ? AND created_at = ? AND id = ?`,
		j.Service, day, j.CreatedAt, j.ID)
	b.Query(`DELETE FROM jobs_by_task WHERE service = ? AND task = ? AND day = ? AND created_at = ? AND id = ?`,
		j.Service, j.Task, day, j.CreatedAt, j.ID)
	b.Query(`DELETE FROM active_jobs WHERE shard = ? AND created_at = ? AND id = ?`, shardOf(j.ID), j.CreatedAt, j.ID)
	return s.s.ExecuteBatch(b)
}
