package cassandra_test

import (
	"bytes"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// BenchmarkStatusSync measures what status-sync does per event on a real node — UpdateJob: a
// read, a compare-and-set of jobs_by_id and the index batch — beside a raw upsert of the same
// row (no transaction, no index), from 8 concurrent writers on distinct jobs, as replicas
// handling events of different jobs are. Compare events/s of the two sub-benchmarks.
func BenchmarkStatusSync(b *testing.B) {
	cfg := cassandratest.Shared(b)
	s := openStore(b, cfg)
	ctx := b.Context()
	const jobsN = 256
	service := "bench-" + randHex(4)
	created := time.Now().UTC().Truncate(time.Millisecond)
	ids := make([]string, jobsN)
	for i := range ids {
		j := newJob(service, "iso", created)
		if err := s.CreateJob(ctx, j); err != nil {
			b.Fatalf("CreateJob: %v", err)
		}
		ids[i] = j.ID
	}
	b.Run("store", func(b *testing.B) {
		var next atomic.Int64
		b.SetParallelism(4) // × GOMAXPROCS writers
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := next.Add(1)
				id := ids[n%jobsN]
				if _, _, err := s.UpdateJob(ctx, id, func(j *jobs.Job) (bool, error) {
					if j.Observed == nil {
						j.Observed = map[string]string{}
					}
					j.Observed[podKey], j.Status = strconv.FormatInt(n, 10), jobs.StatusRunning
					return true, nil
				}); err != nil {
					b.Errorf("UpdateJob: %v", err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("raw", func(b *testing.B) {
		raw := cassandratest.Session(b, cfg, cfg.Keyspace)
		var next atomic.Int64
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := next.Add(1)
				j := newJob(service, "iso", created)
				j.ID, j.Status, j.Revision = ids[n%jobsN], jobs.StatusRunning, n
				j.Observed = map[string]string{podKey: strconv.FormatInt(n, 10)}
				stmt, args, err := cassandra.RawUpsert(j)
				if err == nil {
					err = raw.Query(stmt, args...).WithContext(ctx).Exec()
				}
				if err != nil {
					b.Errorf("raw upsert: %v", err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkLogIngest measures PutLogChunk of 256 KiB chunks (INSERT … IF NOT EXISTS) beside a
// raw INSERT of the same rows, from 4 concurrent writers; MB/s is Go's figure from SetBytes.
func BenchmarkLogIngest(b *testing.B) {
	cfg := cassandratest.Shared(b)
	s := openStore(b, cfg)
	ctx := b.Context()
	line := bytes.Repeat([]byte("x"), 127)
	line = append(line, '\n')
	data := bytes.Repeat(line, 256*1024/len(line))
	chunk := func(job string, seq int64) store.LogChunk {
		return store.LogChunk{JobID: job, Step: "build", Source: store.LogSourceArchive, Seq: seq, Data: data,
			Lines: bytes.Count(data, []byte("\n")), FirstTime: time.Unix(seq, 0), LastTime: time.Unix(seq, 1)}
	}
	run := func(b *testing.B, put func(c store.LogChunk) error) {
		job := "job-" + randHex(8)
		var seq atomic.Int64
		b.SetBytes(int64(len(data)))
		b.SetParallelism(2)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := put(chunk(job, seq.Add(1))); err != nil {
					b.Errorf("put: %v", err)
					return
				}
			}
		})
	}
	b.Run("store", func(b *testing.B) { run(b, func(c store.LogChunk) error { return s.PutLogChunk(ctx, c) }) })
	b.Run("raw", func(b *testing.B) {
		raw := cassandratest.Session(b, cfg, cfg.Keyspace)
		run(b, func(c store.LogChunk) error {
			err := raw.Query(`INSERT INTO log_chunks (job_id, step, source, bucket, seq, data, lines, first_time, last_time)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.JobID, c.Step, c.Source, int((c.Seq-1)/cassandra.ChunksPerBucket), c.Seq,
				c.Data, c.Lines, c.FirstTime.UnixNano(), c.LastTime.UnixNano()).WithContext(ctx).Exec()
			if err != nil {
				return fmt.Errorf("raw insert: %w", err)
			}
			return nil
		})
	})
}
