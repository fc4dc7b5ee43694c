// Package bench holds omni-orchestrator's benchmarks (`make bench`). Every figure is measured
// next to a baseline in the same run and printed with the ratio (as benchmark metrics and in a
// table after each benchmark), so that a noisy machine moves both and the ratio still means
// something. Nothing is asserted about the figures, except that they can be: a latency of
// zero or less (a clock that measured something else than the path) fails the benchmark.
//
//   - BenchmarkSubmit: POST /v1/jobs (buildrpm on x86_64) through the all-in-one — auth,
//     validation, rendering, the SQLite insert, the Kubernetes creates and the job.created
//     event — against raw client-go creates of the same rendered ConfigMap and Job on the same
//     local cluster, with the same client rate limits. Latency p50/p99 and jobs/s, with one
//     client and with four. One iteration is 100 jobs through each path; the two paths take
//     turns every few jobs, so the load the cluster is under (the pods of the jobs just created
//     and the events they cause) weighs on both alike, and each run starts on a settled cluster
//     (no pod pending or running). ns/op is the time of one such iteration.
//   - BenchmarkStatusSync: statussync.Handler.Receive of ApiServerSource pod update events on a
//     fresh SQLite store — every job's pod pending, then each container running in turn, then
//     succeeded; increasing resourceVersions; round robin over the jobs, so every event changes
//     its job — against a bare store.UpdateJob with a trivial change of the same jobs in the same
//     order: what decoding the object and deriving the status cost on top of the write.
//   - BenchmarkColdStart: each function binary (every functions/<name>, built once) from exec
//     to the first 200 on /readyz, its resident memory (VmRSS) right then, and the time from
//     SIGTERM to exit, against a minimal net/http server answering /readyz, built the same way,
//     the two taking turns. The functions get a migrated keyspace of a real local Cassandra node
//     (as in a cluster: function binaries link no SQLite; the node starts once, before the
//     measured starts), real credentials and notify subscriptions files and the local clusters'
//     configs. ns/op is the time of one turn of each (both starts and stops).
//   - BenchmarkNotify: a job's last step is held, then released; release → the job's callback
//     receives the terminal job.changed (the release causes the end, so this clock cannot start
//     after the webhook), against a raw POST of the same delivery.
//   - BenchmarkLogPages: paging (1000 lines a page) through the log of a running step of
//     100,000 lines: lines read from the cluster per page, against the same handler on a
//     cluster view that ignores sinceTime, so that every page re-reads the log from line 1.
//   - BenchmarkQueue: the mass rebuild of the build queue — buildrpm jobs (400, or
//     $OMNI_BENCH_QUEUE_JOBS) submitted at once into two instances × 25 slots per arch, on an
//     all-in-one of its own with four clusters — against a client-go loop creating the same
//     objects under a semaphore of 25 per instance: slot utilisation while work waits, dispatch
//     lag (and the dispatcher's share of it), the most jobs in progress on an instance, and
//     the total time, all measured by informers on the clusters (docs/performance.md).
//   - BenchmarkReplicas: submit and status-sync with 1, 2 and 4 replicas of both, each
//     function its own processes (local/fleet) on the binary's Cassandra node, the three fleets
//     running at once and taking turns in chunks, the 1-replica fleet being the baseline.
//     submit: POST /v1/jobs through the public URL by 32 clients, every job queued behind a
//     quota of one slot held by a first job (so no cluster work is measured); status-sync: pod
//     events posted to its Service, 32 in flight, for jobs recorded pending beforehand. With
//     the CPU time of each part (/proc) and the store's statements, reads, scans and writes per
//     operation (Cassandra's system_views): what bounds it. $OMNI_BENCH_REPLICAS_JOBS (300) and
//     $OMNI_BENCH_REPLICAS_EVENTS (2000) set the sizes.
//
// The local clusters (and the all-in-one) start once, on first use, and stop when the run ends
// (BenchmarkQueue's own all-in-one and BenchmarkReplicas's fleets stop at their end).
package bench
