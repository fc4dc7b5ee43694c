package cassandra

import (
	"encoding/json"
	"fmt"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"hash/fnv"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// jobColumns is the column list of jobs_by_id, in the order of row.args and scanJob.
const jobColumns = `id, service, task, domain, arch, cluster, namespace, status, reason, message, callback,
	cancel_requested, parameters, labels, steps, observed, created_at, started_at, finished_at, updated_at, revision, queue`

const (
	selectJob = `SELECT ` + jobColumns + ` FROM jobs_by_id WHERE id = ?`
	insertJob = `INSERT INTO jobs_by_id (` + jobColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS`
	// updateJob sets every column but id (row.args()[1:]), then binds id and the expected revision.
	updateJob = `UPDATE jobs_by_id SET service = ?, task = ?, domain = ?, arch = ?, cluster = ?,
		namespace = ?, status = ?, reason = ?, message = ?, callback = ?, cancel_requested = ?, parameters = ?,
		labels = ?, steps = ?, observed = ?, created_at = ?, started_at = ?, finished_at = ?, updated_at = ?,
		revision = ?, queue = ? WHERE id = ? IF revision = ?`
)

// row is a job as jobs_by_id holds it.
type row struct {
	j *jobs.Job
	store.JSONColumns
}

func encodeJob(j *jobs.Job) (*row, error) {
	c, err := store.EncodeJSONColumns(j)
	if err != nil {
		return nil, err
	}
	return &row{j: j, JSONColumns: c}, nil
}

func (r *row) args() []any {
	j := r.j
	return []any{
		j.ID, j.Service, j.Task, j.Domain, j.Arch, j.Cluster, j.Namespace, string(j.Status),
		j.Reason, j.Message, j.Callback, j.CancelRequested,
		r.Parameters, r.Labels, r.Steps, r.Observed,
		j.CreatedAt, nullTime(j.StartedAt), nullTime(j.FinishedAt), j.UpdatedAt, j.Revision, r.Queue,
	}
}

// nullTime is nil (CQL null) for a nil time.
func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

func scanJob(scan func(dest ...any) error) (*jobs.Job, error) {
	var (
		j                                   jobs.Job
		status                              string
		parameters, labels, steps, observed string
		queue                               string
		started, finished                   time.Time
	)
	if err := scan(&j.ID, &j.Service, &j.Task, &j.Domain, &j.Arch, &j.Cluster, &j.Namespace, &status,
		&j.Reason, &j.Message, &j.Callback, &j.CancelRequested,
		&parameters, &labels, &steps, &observed,
		&j.CreatedAt, &started, &finished, &j.UpdatedAt, &j.Revision, &queue); err != nil {
		return nil, err
	}
	j.Status = jobs.Status(status)
	j.CreatedAt, j.UpdatedAt = j.CreatedAt.UTC(), j.UpdatedAt.UTC()
	if !started.IsZero() {
		t := started.UTC()
		j.StartedAt = &t
	}
	if !finished.IsZero() {
		t := finished.UTC()
		j.FinishedAt = &t
	}
	for _, c := range []struct {
		name string
		text string
		dst  any
	}{
		{"parameters", parameters, &j.Parameters},
		{"labels", labels, &j.Labels},
		{"steps", steps, &j.Steps},
		{"observed", observed, &j.Observed},
	} {
		if c.text == "" {
			continue // a row written by hand, or a column added later: treat as null
		}
		if err := json.Unmarshal([]byte(c.text), c.dst); err != nil {
			return nil, fmt.Errorf("decode %s of job %s: %w", c.name, j.ID, err)
		}
	}
	if err := store.DecodeQueue(&j, queue); err != nil {
		return nil, err
	}
	return &j, nil
}

// activeShards is the number of active_jobs partitions. Changing it needs a migration that
// rewrites active_jobs.
const activeShards = 16

func shardOf(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % activeShards)
}

// dayOf is the list bucket of t: its UTC day.
func dayOf(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// writeTime is the write timestamp (microseconds) of every index row of j. Index rows are
// rewritten after each successful compare-and-set of jobs_by_id; deriving their timestamp
// from the revision makes the newest revision win even when two writers' index writes arrive
// out of order, and makes rewriting the same revision a no-op.
func writeTime(j *jobs.Job) int64 { return j.CreatedAt.UnixMicro() + j.Revision }

// sameWrite reports whether stored is the write w (used when the outcome of a write is
// unknown): same revision and same update stamp.
func sameWrite(stored, w *jobs.Job) bool {
	return stored.Revision == w.Revision && stored.UpdatedAt.Equal(w.UpdatedAt) && stored.CreatedAt.Equal(w.CreatedAt)
}
