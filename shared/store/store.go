// Package store declares the persistence interface of omni-orchestrator. Two implementations
// exist, shared/sqlite (embedded default) and shared/cassandra (production); both must pass the
// contract suite in shared/store/storetest.
package store

import (
	"context"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Store keeps jobs. Every method is safe for concurrent use and idempotent where it says so.
//
// What a round trip keeps: times to the millisecond, in UTC (the writing methods normalise the
// job they return, so it equals what a later read returns); Parameters as JSON does, so every
// number comes back as float64 and nested values as map[string]any / []any; nil and empty maps
// as they were; Observed, although the job's JSON form omits it. Bad input (no id, service or
// task; an id, service or task longer than 256 bytes; an unknown status) is a *jobs.InvalidError.
type Store interface {
	// CreateJob inserts j. It returns jobs.ErrExists if a job with j.ID exists (idempotent callers
	// treat that as success after re-reading). j.Revision is set to 1; a zero CreatedAt becomes
	// now, a zero UpdatedAt becomes CreatedAt, an empty Status becomes pending.
	CreateJob(ctx context.Context, j *jobs.Job) error
	// GetJob returns the job with that id or jobs.ErrNotFound.
	GetJob(ctx context.Context, id string) (*jobs.Job, error)
	// BatchGet returns the jobs that exist among ids, in the order of ids; missing ids are skipped.
	BatchGet(ctx context.Context, ids []string) ([]*jobs.Job, error)
	// UpdateJob reads the job, calls fn on a copy and, if fn reports a change, stores the copy
	// with Revision+1 unless another writer stored first, in which case it re-reads and calls fn
	// again. It returns the job as stored and whether this call changed it. fn must be pure.
	// fn may not change ID, Service, Task or CreatedAt (they key the lists): that is a
	// *jobs.InvalidError. The store sets Revision and stamps UpdatedAt with the time of the write.
	UpdateJob(ctx context.Context, id string, fn func(*jobs.Job) (bool, error)) (*jobs.Job, bool, error)
	// ListJobs returns one page of a service's jobs, newest first (CreatedAt, then ID, both
	// descending). A page may hold fewer than Limit jobs, even none, while Next is not "": only an
	// empty Next ends the listing.
	ListJobs(ctx context.Context, f Filter) (Page, error)
	// ListUnsettled returns up to limit jobs for which jobs.Job.Unsettled holds as last stored
	// — not ended, or ended with steps not settled or logs not archived yet — oldest first, starting after the cursor;
	// next is "" at the end. The resync reads them back from their clusters.
	ListUnsettled(ctx context.Context, cursor string, limit int) (js []*jobs.Job, next string, err error)
	// ClaimIdempotencyKey records that (service, key) created jobID, unless the pair is already
	// recorded: then it returns the job id recorded first. Entries expire after ttl, which must be
	// positive (a store may round it up: Cassandra keeps whole seconds).
	ClaimIdempotencyKey(ctx context.Context, service, key, jobID string, ttl time.Duration) (string, error)
	// Ping reports whether the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// Filter selects jobs for ListJobs. Service is required; the rest are optional.
type Filter struct {
	Service string
	Task    string
	Domain  string
	Status  jobs.Status
	// Since and Until bound CreatedAt: Since <= CreatedAt < Until. Zero means unbounded, but
	// implementations may cap the window (Cassandra walks day buckets; see docs/data-model.md).
	Since, Until time.Time
	// Limit is the page size, 1..1000 (0 means 100).
	Limit int
	// Cursor is the Next of the previous page, as returned by the store (not signed; the query
	// function signs it before handing it to clients). It is only valid with the same filter.
	Cursor string
}

// Page is one page of ListJobs.
type Page struct {
	Jobs []*jobs.Job
	// Next is the cursor of the following page, "" when this is the last one.
	Next string
}
