package store

// The rules of the store contract that do not depend on the database, shared by shared/sqlite
// and shared/cassandra; the contract suite (shared/store/storetest) holds both to them.

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// MaxKeyLen bounds the key fields (id, service, task): they are parts of primary keys.
	MaxKeyLen = 256
)

// MS returns t at the precision both stores keep: milliseconds, in UTC.
func MS(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Millisecond).UTC()
}

// CeilMS rounds a bound up to the stored precision: for a time c kept in whole milliseconds,
// c >= t and c < t hold exactly when they hold for CeilMS(t).
func CeilMS(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	if c := MS(t); c.Before(t) {
		return c.Add(time.Millisecond)
	}
	return t.UTC()
}

func MSP(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := MS(*t)
	return &v
}

// Normalize brings every time of j to the stored precision, so that what a caller holds after
// a write equals what a later read returns.
func Normalize(j *jobs.Job) {
	j.CreatedAt = MS(j.CreatedAt)
	j.UpdatedAt = MS(j.UpdatedAt)
	j.StartedAt = MSP(j.StartedAt)
	j.FinishedAt = MSP(j.FinishedAt)
	if j.Queue != nil {
		j.Queue.DispatchedAt = MSP(j.Queue.DispatchedAt)
	}
	normalizeSteps(j.Steps)
	for i := range j.Attempts {
		a := &j.Attempts[i]
		a.DispatchedAt, a.StartedAt, a.FinishedAt = MSP(a.DispatchedAt), MSP(a.StartedAt), MSP(a.FinishedAt)
		normalizeSteps(a.Steps)
	}
}

func normalizeSteps(steps []jobs.Step) {
	for i := range steps {
		steps[i].StartedAt = MSP(steps[i].StartedAt)
		steps[i].FinishedAt = MSP(steps[i].FinishedAt)
	}
}

func CheckKey(field, v string) error {
	if v == "" {
		return jobs.Invalid(field, "required")
	}
	if len(v) > MaxKeyLen {
		return jobs.Invalid(field, "longer than %d bytes", MaxKeyLen)
	}
	return nil
}

// PrepareCreate validates j and completes it as CreateJob stores it.
func PrepareCreate(j *jobs.Job, now time.Time) error {
	if j == nil {
		return jobs.Invalid("", "nil job")
	}
	for _, k := range []struct{ field, v string }{{"id", j.ID}, {"service", j.Service}, {"task", j.Task}} {
		if err := CheckKey(k.field, k.v); err != nil {
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
	Normalize(j)
	return nil
}

// PrepareUpdate checks what fn did to next (a copy of cur) and completes it as UpdateJob stores
// it. The fields that key the list indexes cannot change.
func PrepareUpdate(cur, next *jobs.Job, now time.Time) error {
	switch {
	case next.ID != cur.ID:
		return jobs.Invalid("id", "cannot change")
	case next.Service != cur.Service:
		return jobs.Invalid("service", "cannot change")
	case next.Task != cur.Task:
		return jobs.Invalid("task", "cannot change")
	case !MS(next.CreatedAt).Equal(cur.CreatedAt):
		return jobs.Invalid("createdAt", "cannot change")
	case !next.Status.Valid():
		return jobs.Invalid("status", "unknown status %q", next.Status)
	}
	next.Revision = cur.Revision + 1
	next.UpdatedAt = now
	if next.UpdatedAt.Before(cur.UpdatedAt) {
		next.UpdatedAt = cur.UpdatedAt // never backwards, whatever the clock does
	}
	Normalize(next)
	return nil
}

// CheckFilter validates f and returns the page size.
func CheckFilter(f Filter) (int, error) {
	if err := CheckKey("service", f.Service); err != nil {
		return 0, err
	}
	if f.Status != "" && !f.Status.Valid() {
		return 0, jobs.Invalid("status", "unknown status %q", f.Status)
	}
	switch {
	case f.Limit == 0:
		return DefaultLimit, nil
	case f.Limit < 0 || f.Limit > MaxLimit:
		return 0, jobs.Invalid("limit", "must be between 1 and %d", MaxLimit)
	}
	return f.Limit, nil
}

func ActiveLimit(limit int) int {
	if limit <= 0 {
		return DefaultLimit
	}
	return min(limit, MaxLimit)
}

func CheckClaim(service, key, jobID string, ttl time.Duration) error {
	for _, k := range []struct{ field, v string }{{"service", service}, {"idempotencyKey", key}, {"id", jobID}} {
		if err := CheckKey(k.field, k.v); err != nil {
			return err
		}
	}
	if ttl <= 0 {
		return jobs.Invalid("ttl", "must be positive")
	}
	return nil
}

// EncodeJSON marshals one of the JSON-text columns.
func EncodeJSON(field string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", jobs.Invalid(field, "not representable as JSON: %v", err)
	}
	return string(b), nil
}

// JSONColumns are the job fields both stores keep as JSON text.
type JSONColumns struct {
	Parameters, Labels, Steps, Observed string
	// Queue is the job's queue record, rerun links and what it ran with, "" for none (a job
	// recorded before the queue existed).
	Queue string
}

// EncodeJSONColumns encodes the JSON-text columns of j; an unencodable field is an InvalidError
// naming it.
func EncodeJSONColumns(j *jobs.Job) (JSONColumns, error) {
	var c JSONColumns
	var err error
	for _, f := range []struct {
		name string
		v    any
		dst  *string
	}{{"parameters", j.Parameters, &c.Parameters}, {"labels", j.Labels, &c.Labels}, {"steps", j.Steps, &c.Steps}, {"observed", j.Observed, &c.Observed}} {
		if *f.dst, err = EncodeJSON(f.name, f.v); err != nil {
			return JSONColumns{}, err
		}
	}
	if j.Queue != nil || j.RerunOf != "" || len(j.Reruns) > 0 || j.Ran != nil || j.Attempt != 0 || len(j.Attempts) > 0 || j.Disruption != "" || j.LogsArchived {
		if c.Queue, err = EncodeJSON("queue", queueColumn{Queue: j.Queue, RerunOf: j.RerunOf, Reruns: j.Reruns, Ran: j.Ran,
			Attempt: j.Attempt, Attempts: j.Attempts, Disruption: j.Disruption, LogsArchived: j.LogsArchived}); err != nil {
			return JSONColumns{}, err
		}
	}
	return c, nil
}

// queueColumn is what the queue column holds: the job's queue record, its rerun links, what it
// was dispatched with and its attempts (fields added since the queue column existed go here too,
// so that no migration is needed).
type queueColumn struct {
	Queue        *jobs.Queue    `json:"queue,omitempty"`
	RerunOf      string         `json:"rerunOf,omitempty"`
	Reruns       []string       `json:"reruns,omitempty"`
	Ran          *jobs.Ran      `json:"ran,omitempty"`
	Attempt      int            `json:"attempt,omitempty"`
	Attempts     []jobs.Attempt `json:"attempts,omitempty"`
	Disruption   string         `json:"disruption,omitempty"`
	LogsArchived bool           `json:"logsArchived,omitempty"`
}

// DecodeQueue decodes the queue column of a stored job ("" is none) into its queue record and
// rerun links.
func DecodeQueue(j *jobs.Job, text string) error {
	if text == "" {
		return nil
	}
	var q queueColumn
	if err := json.Unmarshal([]byte(text), &q); err != nil {
		return fmt.Errorf("decode queue of job %s: %w", j.ID, err)
	}
	j.Queue, j.RerunOf, j.Reruns, j.Ran = q.Queue, q.RerunOf, q.Reruns, q.Ran
	j.Attempt, j.Attempts, j.Disruption, j.LogsArchived = q.Attempt, q.Attempts, q.Disruption, q.LogsArchived
	return nil
}
