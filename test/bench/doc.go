// Package bench holds omni-orchestrator's benchmarks (`make bench`). Every figure is measured
// next to a baseline in the same run and printed with the ratio, so that a noisy machine moves
// both and the ratio still means something. Nothing is asserted.
//
//   - BenchmarkSubmit: POST /v1/jobs (buildrpm on x86_64) through the all-in-one — auth,
//     validation, rendering, SQLite insert, the Kubernetes creates and the job.created event —
//     against raw client-go creates of the same rendered ConfigMap and Job on the same local
//     cluster, with the same client rate limits. Latency p50/p99 and jobs/s, with one client and
//     with a few concurrent ones. Before each run the cluster is let settle (no pod pending or
//     running), so the pods of the previous run do not load the next one.
//   - BenchmarkStatusSync: statussync.Handler.Receive of ApiServerSource pod update events
//     (increasing resourceVersion, round robin over many jobs, the pod moving through its steps)
//     on a fresh SQLite store, against a bare store.UpdateJob with a trivial change of the same
//     jobs, in the same order: what decoding and deriving the status cost on top of the write.
//   - BenchmarkColdStart: each function binary (built once) from exec to the first 200 on
//     /readyz, its resident memory (VmRSS) right then, and the time from SIGTERM to exit, against
//     a minimal net/http server answering /readyz, built the same way. The functions get a
//     migrated SQLite file, real credentials files and the local clusters' configs.
//
// The local clusters (and the all-in-one) start once, on first use, and stop when the run ends.
package bench
