package cassandra

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

const (
	// DefaultWindow is how far back ListJobs looks when Filter.Since is zero.
	DefaultWindow = 90 * 24 * time.Hour
	// MaxWindow is the longest Since..Until that ListJobs accepts: a longer one is an
	// *InvalidError naming "since", rather than a walk through thousands of empty buckets.
	MaxWindow = 366 * 24 * time.Hour
	// untilSlack is how far past now ListJobs looks when Filter.Until is zero, for jobs stamped
	// by a clock slightly ahead of ours.
	untilSlack = 24 * time.Hour
	// maxBucketsPerPage and maxRowsPerPage bound the work of one ListJobs call. When either is
	// reached the page ends early (possibly empty) with a Next that resumes where it stopped.
	// DefaultWindow fits in maxBucketsPerPage, so an unfiltered default listing never stops
	// short for lack of buckets.
	maxBucketsPerPage = 120
	maxRowsPerPage    = 5000
	// orphanGrace is the age after which an active_jobs row without its job in jobs_by_id is
	// taken as the trace of a failed creation and deleted.
	orphanGrace = time.Hour
)

// listCursor is where the next ListJobs page starts: in bucket Day (days since the Unix
// epoch), after the row (T, ID) if ID is set, else at the top of the bucket.
type listCursor struct {
	Day int64  `json:"d"`
	T   int64  `json:"t,omitempty"`
	ID  string `json:"i,omitempty"`
}

func encodeListCursor(c listCursor) string {
	b, _ := json.Marshal(c) // cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeListCursor(s string) (listCursor, error) {
	var c listCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		return listCursor{}, jobs.Invalid("cursor", "malformed")
	}
	return c, nil
}

func dayNumber(day time.Time) int64 { return day.Unix() / 86400 }

func dayFromNumber(n int64) time.Time { return time.Unix(n*86400, 0).UTC() }

// key is a position in a list: created_at, then id.
type key struct {
	t  time.Time
	id string
}

// ListJobs implements store.Store.
//
// It walks the day buckets of jobs_by_task (when Filter.Task is set) or jobs_by_service from
// Until back to Since, newest first, reading only the small index rows and filtering domain and
// status on them, then reads the matching jobs from jobs_by_id and checks the filter again on
// them (an index row may lag its job for a moment). A zero Since means Until minus
// DefaultWindow; a zero Until means now plus a day; a window longer than MaxWindow is refused.
// Each call does bounded work, so a page may be short, or empty, with a Next to follow.
func (s *Store) ListJobs(ctx context.Context, f store.Filter) (store.Page, error) {
	limit, err := store.CheckFilter(f)
	if err != nil {
		return store.Page{}, err
	}
	until, since := store.CeilMS(f.Until), store.CeilMS(f.Since)
	if until.IsZero() {
		until = store.MS(time.Now().Add(untilSlack))
	}
	if since.IsZero() {
		since = until.Add(-DefaultWindow)
	}
	if !since.Before(until) {
		return store.Page{}, nil
	}
	if until.Sub(since) > MaxWindow {
		return store.Page{}, jobs.Invalid("since", "the window from since to until is longer than %d days", MaxWindow/(24*time.Hour))
	}
	first, last := dayOf(until.Add(-time.Millisecond)), dayOf(since)
	day := first
	var after *key
	if f.Cursor != "" {
		c, err := decodeListCursor(f.Cursor)
		if err != nil {
			return store.Page{}, err
		}
		day = dayFromNumber(c.Day)
		if day.After(first) || day.Before(last) {
			return store.Page{}, jobs.Invalid("cursor", "does not belong to this filter")
		}
		if c.ID != "" {
			after = &key{time.UnixMilli(c.T).UTC(), c.ID}
		}
	}

	var (
		hits    []key
		next    string
		scanned int
	)
walk:
	for buckets := 0; !day.Before(last); buckets++ {
		if buckets == maxBucketsPerPage {
			next = encodeListCursor(listCursor{Day: dayNumber(day)})
			break
		}
		upper := key{until, ""}
		if after != nil {
			upper, after = *after, nil
		}
		iter := s.listQuery(ctx, f, day, upper, key{since, ""}, limit).Iter()
		var (
			created                  time.Time
			id, task, domain, status string
		)
		for iter.Scan(&created, &id, &task, &domain, &status) {
			scanned++
			if (f.Task == "" || task == f.Task) && (f.Domain == "" || domain == f.Domain) &&
				(f.Status == "" || status == string(f.Status)) {
				hits = append(hits, key{created.UTC(), id})
			}
			if len(hits) == limit || scanned >= maxRowsPerPage {
				next = encodeListCursor(listCursor{Day: dayNumber(day), T: created.UnixMilli(), ID: id})
				if err := iter.Close(); err != nil {
					return store.Page{}, wrap("list jobs", err)
				}
				break walk
			}
		}
		if err := iter.Close(); err != nil {
			return store.Page{}, wrap("list jobs", err)
		}
		day = day.AddDate(0, 0, -1)
	}

	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.id
	}
	got, err := s.getMany(ctx, ids)
	if err != nil {
		return store.Page{}, fmt.Errorf("list jobs: %w", err)
	}
	p := store.Page{Next: next, Jobs: make([]*jobs.Job, 0, len(got))}
	for i, j := range got {
		if j == nil || j.Service != f.Service || !j.CreatedAt.Equal(hits[i].t) ||
			(f.Task != "" && j.Task != f.Task) || (f.Domain != "" && j.Domain != f.Domain) ||
			(f.Status != "" && j.Status != f.Status) {
			continue // an index row of a failed creation, or one that lags its job
		}
		p.Jobs = append(p.Jobs, j)
	}
	return p, nil
}

// listQuery selects the index rows of one bucket with lower <= (created_at, id) < upper. Both
// bounds are multi-column so that they combine (Cassandra refuses to mix single- and
// multi-column restrictions on clustering columns); an empty id sorts before every id.
func (s *Store) listQuery(ctx context.Context, f store.Filter, day time.Time, upper, lower key, limit int) *gocql.Query {
	// Without client-side filtering the page needs limit rows; with it, bigger pages save
	// round trips.
	pageSize := limit + 1
	if f.Domain != "" || f.Status != "" {
		pageSize = 1000
	}
	var q *gocql.Query
	if f.Task != "" {
		q = s.s.Query(`SELECT created_at, id, task, domain, status FROM jobs_by_task
			WHERE service = ? AND task = ? AND day = ? AND (created_at, id) < (?, ?) AND (created_at, id) >= (?, ?)`,
			f.Service, f.Task, day, upper.t, upper.id, lower.t, lower.id)
	} else {
		q = s.s.Query(`SELECT created_at, id, task, domain, status FROM jobs_by_service
			WHERE service = ? AND day = ? AND (created_at, id) < (?, ?) AND (created_at, id) >= (?, ?)`,
			f.Service, day, upper.t, upper.id, lower.t, lower.id)
	}
	return q.WithContext(ctx).PageSize(pageSize).Idempotent(true)
}

// activeCursor is where the next ListUnsettled page starts: after the row (T, ID).
type activeCursor struct {
	T  int64  `json:"t"`
	ID string `json:"i"`
}

// ListUnsettled implements store.Store. It reads up to limit rows after the cursor from every
// shard of active_jobs (the jobs for which jobs.Job.Unsettled held when written), merges them
// oldest first, and reads the jobs from jobs_by_id. A row whose job no longer needs the resync
// (its index write failed after the job's last update) is repaired and skipped; a row without a job, older than an hour, is deleted. So a page may be short while
// next is not "".
func (s *Store) ListUnsettled(ctx context.Context, cur string, limit int) ([]*jobs.Job, string, error) {
	limit = store.ActiveLimit(limit)
	var after *key
	if cur != "" {
		var c activeCursor
		b, err := base64.RawURLEncoding.DecodeString(cur)
		if err == nil {
			err = json.Unmarshal(b, &c)
		}
		if err != nil || c.ID == "" {
			return nil, "", jobs.Invalid("cursor", "malformed")
		}
		after = &key{time.UnixMilli(c.T).UTC(), c.ID}
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		rows []key
		full bool // some shard may hold more rows
		errs []error
	)
	for shard := range activeShards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var q *gocql.Query
			if after != nil {
				q = s.s.Query(`SELECT created_at, id FROM active_jobs WHERE shard = ? AND (created_at, id) > (?, ?) LIMIT ?`,
					shard, after.t, after.id, limit)
			} else {
				q = s.s.Query(`SELECT created_at, id FROM active_jobs WHERE shard = ? LIMIT ?`, shard, limit)
			}
			iter := q.WithContext(ctx).Idempotent(true).Iter()
			var (
				got     []key
				created time.Time
				id      string
			)
			for iter.Scan(&created, &id) {
				got = append(got, key{created.UTC(), id})
			}
			err := iter.Close()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			rows = append(rows, got...)
			full = full || len(got) == limit
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, "", wrap("list active jobs", errors.Join(errs...))
	}
	sort.Slice(rows, func(a, b int) bool {
		if !rows[a].t.Equal(rows[b].t) {
			return rows[a].t.Before(rows[b].t)
		}
		return rows[a].id < rows[b].id
	})
	next := ""
	if len(rows) > limit {
		rows, full = rows[:limit], true
	}
	if full && len(rows) > 0 {
		last := rows[len(rows)-1]
		b, _ := json.Marshal(activeCursor{T: last.t.UnixMilli(), ID: last.id})
		next = base64.RawURLEncoding.EncodeToString(b)
	}

	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.id
	}
	got, err := s.getMany(ctx, ids)
	if err != nil {
		return nil, "", fmt.Errorf("list active jobs: %w", err)
	}
	out := make([]*jobs.Job, 0, len(got))
	for i, j := range got {
		switch {
		case j == nil || !j.CreatedAt.Equal(rows[i].t):
			if time.Since(rows[i].t) > orphanGrace {
				orphan := &jobs.Job{ID: rows[i].id, CreatedAt: rows[i].t, Revision: 1}
				_ = s.s.Query(`DELETE FROM active_jobs WHERE shard = ? AND created_at = ? AND id = ?`,
					shardOf(orphan.ID), orphan.CreatedAt, orphan.ID).
					WithContext(ctx).WithTimestamp(writeTime(orphan)).Idempotent(true).Exec()
			}
		case !j.Unsettled():
			_ = s.writeIndexes(ctx, j) // finishes the update whose index write was lost
		default:
			out = append(out, j)
		}
	}
	return out, next, nil
}
