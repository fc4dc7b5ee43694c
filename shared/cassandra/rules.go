package cassandra

// The rules of the store contract that do not depend on the database. shared/sqlite has the
// same rules (its rules.go differs only in its cursor); the contract suite
// (shared/store/storetest) keeps the two in step.

import (
	"encoding/json"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

const (
	defaultLimit = 100
	maxLimit     = 1000
	// maxKeyLen bounds the key fields (id, service, task): they are parts of primary keys.
	maxKeyLen = 256
)

// ms returns t at the precision both stores keep: milliseconds, in UTC.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Millisecond).UTC()
}

// ceilMS rounds a bound up to the stored precision: for a time c kept in whole milliseconds,
// c >= t and c < t hold exactly when they hold for ceilMS(t).
func ceilMS(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	if c := ms(t); c.Before(t) {
		return c.Add(time.Millisecond)
	}
	return t.UTC()
}

func msp(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ms(*t)
	return &v
}

// normalize brings every time of j to the stored precision, so that what a caller holds after
// a write equals what a later read returns.
func normalize(j *jobs.Job) {
	j.CreatedAt = ms(j.CreatedAt)
	j.UpdatedAt = ms(j.UpdatedAt)
	j.StartedAt = msp(j.StartedAt)
	j.FinishedAt = msp(j.FinishedAt)
	for i := range j.Steps {
		j.Steps[i].StartedAt = msp(j.Steps[i].StartedAt)
		j.Steps[i].FinishedAt = msp(j.Steps[i].FinishedAt)
	}
}

func checkKey(field, v string) error {
	if v == "" {
		return jobs.Invalid(field, "required")
	}
	if len(v) > maxKeyLen {
		return jobs.Invalid(field, "longer than %d bytes", maxKeyLen)
	}
	return nil
}

// prepareCreate validates j and completes it as CreateJob stores it.
func prepareCreate(j *jobs.Job, now time.Time) error {
	if j == nil {
		return jobs.Invalid("", "nil job")
	}
	for _, k := range []struct{ field, v string }{{"id", j.ID}, {"service", j.Service}, {"task", j.Task}} {
		if err := checkKey(k.field, k.v); err != nil {
			return err
		}
	}
	if j.Status == "" {
		j.Status = jobs.StatusPending
	}
	if !j.Status.Valid() {
		return jobs.Invalid("status", "unknown status %q", j.Status)
	}
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = j.CreatedAt
	}
	j.Revision = 1
	normalize(j)
	return nil
}

// prepareUpdate checks what fn did to next (a copy of cur) and completes it as UpdateJob stores
// it. The fields that key the list indexes cannot change.
func prepareUpdate(cur, next *jobs.Job, now time.Time) error {
	switch {
	case next.ID != cur.ID:
		return jobs.Invalid("id", "cannot change")
	case next.Service != cur.Service:
		return jobs.Invalid("service", "cannot change")
	case next.Task != cur.Task:
		return jobs.Invalid("task", "cannot change")
	case !ms(next.CreatedAt).Equal(cur.CreatedAt):
		return jobs.Invalid("createdAt", "cannot change")
	case !next.Status.Valid():
		return jobs.Invalid("status", "unknown status %q", next.Status)
	}
	next.Revision = cur.Revision + 1
	next.UpdatedAt = now
	if next.UpdatedAt.Before(cur.UpdatedAt) {
		next.UpdatedAt = cur.UpdatedAt // never backwards, whatever the clock does
	}
	normalize(next)
	return nil
}

// checkFilter validates f and returns the page size.
func checkFilter(f store.Filter) (int, error) {
	if err := checkKey("service", f.Service); err != nil {
		return 0, err
	}
	if f.Status != "" && !f.Status.Valid() {
		return 0, jobs.Invalid("status", "unknown status %q", f.Status)
	}
	switch {
	case f.Limit == 0:
		return defaultLimit, nil
	case f.Limit < 0 || f.Limit > maxLimit:
		return 0, jobs.Invalid("limit", "must be between 1 and %d", maxLimit)
	}
	return f.Limit, nil
}

func activeLimit(limit int) int {
	if limit <= 0 {
		return defaultLimit
	}
	return min(limit, maxLimit)
}

func checkClaim(service, key, jobID string, ttl time.Duration) error {
	for _, k := range []struct{ field, v string }{{"service", service}, {"idempotencyKey", key}, {"id", jobID}} {
		if err := checkKey(k.field, k.v); err != nil {
			return err
		}
	}
	if ttl <= 0 {
		return jobs.Invalid("ttl", "must be positive")
	}
	return nil
}

// encodeJSON marshals one of the JSON-text columns.
func encodeJSON(field string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", jobs.Invalid(field, "not representable as JSON: %v", err)
	}
	return string(b), nil
}
