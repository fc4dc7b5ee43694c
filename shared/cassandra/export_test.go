package cassandra

import "github.com/omnibuildplatform/omni-orchestrator/shared/jobs"

// Limits of the tables, for the tests on a real node (real_test.go).
const (
	ChunksPerBucket   = chunksPerBucket
	ActiveShards      = activeShards
	MaxBucketsPerPage = maxBucketsPerPage
)

// RawUpsert is a plain INSERT of j's jobs_by_id row (no transaction, no index rows) with the
// store's own encoding: the baseline of the benchmarks (bench_test.go).
func RawUpsert(j *jobs.Job) (stmt string, args []any, err error) {
	r, err := encodeJob(j)
	if err != nil {
		return "", nil, err
	}
	return `INSERT INTO jobs_by_id (` + jobColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.args(), nil
}
