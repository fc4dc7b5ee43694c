package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"strings"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// jobColumns is the column list of the jobs table, in the order of row.args and scanJob.
const jobColumns = `id, service, task, domain, arch, cluster, namespace, status, active, reason, message,
	callback, cancel_requested, parameters, labels, steps, observed, created_at, started_at, finished_at,
	updated_at, revision, queue`

// updateSet assigns every column but id, in the order of row.args()[1:].
var updateSet = func() string {
	cols := strings.Split(jobColumns, ",")[1:]
	for i, c := range cols {
		cols[i] = strings.TrimSpace(c) + " = ?"
	}
	return strings.Join(cols, ", ")
}()

// row is a job as the jobs table holds it.
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
		j.Unsettled(), j.Reason, j.Message, j.Callback, j.CancelRequested,
		r.Parameters, r.Labels, r.Steps, r.Observed,
		j.CreatedAt.UnixMilli(), nullMillis(j.StartedAt), nullMillis(j.FinishedAt), j.UpdatedAt.UnixMilli(),
		j.Revision, r.Queue,
	}
}

func nullMillis(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMillis(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMillis(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMillis(v.Int64)
	return &t
}

type scanner interface{ Scan(dest ...any) error }

func scanJob(s scanner) (*jobs.Job, error) {
	var (
		j                                   jobs.Job
		status                              string
		active                              bool
		parameters, labels, steps, observed string
		queue                               string
		created, updated                    int64
		started, finished                   sql.NullInt64
	)
	if err := s.Scan(&j.ID, &j.Service, &j.Task, &j.Domain, &j.Arch, &j.Cluster, &j.Namespace, &status,
		&active, &j.Reason, &j.Message, &j.Callback, &j.CancelRequested,
		&parameters, &labels, &steps, &observed,
		&created, &started, &finished, &updated, &j.Revision, &queue); err != nil {
		return nil, err
	}
	j.Status = jobs.Status(status)
	j.CreatedAt, j.UpdatedAt = fromMillis(created), fromMillis(updated)
	j.StartedAt, j.FinishedAt = fromNullMillis(started), fromNullMillis(finished)
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
		if err := json.Unmarshal([]byte(c.text), c.dst); err != nil {
			return nil, fmt.Errorf("decode %s of job %s: %w", c.name, j.ID, err)
		}
	}
	if err := store.DecodeQueue(&j, queue); err != nil {
		return nil, err
	}
	return &j, nil
}

func scanJobs(rows *sql.Rows) ([]*jobs.Job, error) {
	defer rows.Close()
	var out []*jobs.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}
