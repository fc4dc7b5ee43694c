package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/functions/log-archive/logarchive"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// BenchmarkLogIngest: log-archive's ingest of one step's log (16 MiB, ~110k lines of build
// output), per step:
//   - archive/memory: Handler.Archive of a one-step job whose container log is served from
//     memory — timestamp parsing, chunking, PutLogChunk of every chunk and PutLogStep, into a
//     fresh SQLite store;
//   - archive/cluster: the same through a local cluster — pods/log of a kwok pod streamed by
//     the real API server, then the finalizer removed from the pod;
//   - store.PutLogChunk: the bare inserts of the very chunks archive/memory stores, into the
//     same kind of store — the baseline;
//   - pods-log-read: reading the same pods/log stream from the local cluster into nothing —
//     how fast the cluster serves it, the ceiling of archive/cluster;
//
// each reported as MB/s and lines/s, with the ratio to the raw inserts and to the
// predecessor's 1.6 KiB/s per step. Every iteration writes a new job, so no insert is a no-op.
func BenchmarkLogIngest(b *testing.B) {
	stream, lines := logBenchStream(16 << 20)
	ctx := logging.WithLogger(context.Background(), zap.NewNop().Sugar())
	text := int64(0)
	for _, c := range logBenchChunks(stream) {
		text += int64(len(c.Data))
	}
	var mu sync.Mutex
	rates := map[string]float64{} // name → MB/s of the last run

	run := func(name string, fn func(b *testing.B, st *sqlite.Store, jobID string)) {
		b.Run(name, func(b *testing.B) {
			st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "logs.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			b.SetBytes(text)
			b.ResetTimer()
			began := time.Now()
			for i := range b.N {
				fn(b, st, fmt.Sprintf("bench-%s-%d-%d", strings.ReplaceAll(name, "/", "-"), b.N, i))
			}
			elapsed := time.Since(began)
			b.StopTimer()
			mbps := float64(text) * float64(b.N) / elapsed.Seconds() / 1e6
			b.ReportMetric(mbps, "MB/s")
			b.ReportMetric(float64(lines)*float64(b.N)/elapsed.Seconds(), "lines/s")
			mu.Lock()
			rates[name] = mbps
			mu.Unlock()
		})
	}

	chunks := logBenchChunks(stream)
	run("store.PutLogChunk", func(b *testing.B, st *sqlite.Store, jobID string) {
		for _, c := range chunks {
			c.JobID = jobID
			if err := st.PutLogChunk(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	run("archive/memory", func(b *testing.B, st *sqlite.Store, jobID string) {
		h := &logarchive.Handler{Logs: st, Jobs: st, Clusters: memClusters{stream: stream}}
		logBenchArchive(ctx, b, h, jobID, "omni-bench")
	})
	if cl := logBenchCluster(b, stream); cl != nil {
		run("archive/cluster", func(b *testing.B, st *sqlite.Store, jobID string) {
			b.StopTimer()
			cl.label(b, jobID) // the pod now belongs to this job, with the finalizer set again
			b.StartTimer()
			h := &logarchive.Handler{Logs: st, Jobs: st, Clusters: logarchive.KubeClusters{Clusters: cl.clusters}}
			logBenchArchive(ctx, b, h, jobID, "bench")
		})
		run("pods-log-read", func(b *testing.B, _ *sqlite.Store, _ string) {
			rc, err := cl.client.Clientset().CoreV1().Pods("default").GetLogs(cl.name,
				&corev1.PodLogOptions{Container: "build", Timestamps: true}).Stream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer rc.Close()
			if _, err := io.Copy(io.Discard, rc); err != nil {
				b.Fatal(err)
			}
		})
	}

	raw := rates["store.PutLogChunk"]
	const predecessor = 1.6 * 1024 / 1e6 // MB/s per step
	var rows [][]string
	for _, name := range []string{"store.PutLogChunk", "archive/memory", "archive/cluster", "pods-log-read"} {
		r, ok := rates[name]
		if !ok {
			continue
		}
		rows = append(rows, []string{name, fmt.Sprintf("%.1f", r), fmt.Sprintf("%.0f", r*1e6/float64(text)*float64(lines)),
			fmt.Sprintf("%.2fx", r/raw), fmt.Sprintf("%.0fx", r/predecessor)})
	}
	fmt.Printf("\nlog ingest per step (%d MiB, %d lines; SQLite)\n", text>>20, lines)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  path\tMB/s\tlines/s\tvs raw PutLogChunk\tvs predecessor (1.6 KiB/s)")
	for _, r := range rows {
		fmt.Fprintln(tw, "  "+strings.Join(r, "\t"))
	}
	tw.Flush()
	fmt.Println()
}

// logBenchStream returns a timestamped log stream of about size bytes of text, as the API
// server serves it with timestamps, and its number of lines.
func logBenchStream(size int) ([]byte, int) {
	var b bytes.Buffer
	ts := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	n, text := 0, 0
	for ; text < size; n++ {
		line := fmt.Sprintf("[%7d] gcc -O2 -g -pipe -Wall -c src/module_%d/file_%d.c -o obj/file_%d.o %s", n, n%97, n, n, strings.Repeat("-", n%61))
		text += len(line) + 1
		b.WriteString(ts.Add(time.Duration(n) * time.Millisecond).Format("2006-01-02T15:04:05.000000000Z07:00"))
		b.WriteByte(' ')
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes(), n
}

// logBenchChunks cuts stream as log-archive does.
func logBenchChunks(stream []byte) []store.LogChunk {
	c := &logs.Chunker{JobID: "template", Step: "build", Source: store.LogSourceArchive}
	r := logs.NewReader(bytes.NewReader(stream))
	var out []store.LogChunk
	for {
		l, err := r.Next()
		if err != nil {
			break
		}
		if ch, ok := c.Add(l); ok {
			out = append(out, ch)
		}
	}
	if ch, ok := c.Flush(); ok {
		out = append(out, ch)
	}
	return out
}

// logBenchArchive archives the one step "build" of an ended job jobID on cluster.
func logBenchArchive(ctx context.Context, b *testing.B, h *logarchive.Handler, jobID, cluster string) {
	j := &jobs.Job{ID: jobID, Cluster: cluster, Namespace: "default", Status: jobs.StatusSucceeded,
		Steps: []jobs.Step{{Name: "build", Status: jobs.StepSucceeded}}}
	res, err := h.Archive(ctx, j)
	if err != nil {
		b.Fatal(err)
	}
	if len(res.Steps) != 1 || !res.Steps[0].Complete {
		b.Fatalf("archive: %+v", res.Steps)
	}
}

// memClusters serves one terminated pod per job whose container "build" logs stream.
type memClusters struct{ stream []byte }

func (m memClusters) Cluster(string) (logarchive.Cluster, error) { return m, nil }

func (m memClusters) Pods(_ context.Context, ns, jobID string) ([]corev1.Pod, error) {
	return []corev1.Pod{{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-" + jobID, Namespace: ns},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "build",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}},
	}}, nil
}

func (m memClusters) StreamLogs(context.Context, string, string, string, kube.LogOptions) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m.stream)), nil
}

func (m memClusters) RemovePodFinalizer(context.Context, string, string) error { return nil }

// logBenchPod is a finished pod on a local cluster of its own, whose log is the stream.
type logBenchPod struct {
	clusters *kube.Clusters
	client   *platform.Cluster
	name     string
}

// logBenchCluster starts a one-cluster platform (no adapter: nothing watches it) whose
// container log is stream, and runs a Job's pod with one container "build" to its end there. It
// returns nil, after saying why, when the local platform cannot start.
func logBenchCluster(b *testing.B, stream []byte) *logBenchPod {
	b.Helper()
	p, err := platform.Start(context.Background(), platform.Options{
		WorkDir: b.TempDir(), Clusters: []platform.ClusterSpec{{Name: "bench", Arch: "x86_64"}}, Log: io.Discard,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: BenchmarkLogIngest/archive/cluster skipped: local platform: %v\n", err)
		return nil
	}
	b.Cleanup(p.Stop)
	c := p.Cluster("bench")
	var cri bytes.Buffer // the same lines in CRI format
	for _, line := range bytes.SplitAfter(stream, []byte("\n")) {
		if ts, text, ok := bytes.Cut(line, []byte(" ")); ok {
			cri.Write(ts)
			cri.WriteString(" stdout F ")
			cri.Write(text)
		}
	}
	if err := os.WriteFile(c.LogsFile, cri.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	// kwok ends the containers of pods that a Job owns (kwok/pod-stages.yaml).
	cs := c.Clientset()
	backoff := int32(0)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "log-bench", Namespace: "default"},
		Spec: batchv1.JobSpec{BackoffLimit: &backoff, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			NodeSelector:  map[string]string{"kubernetes.io/arch": c.KubeArch},
			Containers:    []corev1.Container{{Name: "build", Image: "busybox"}},
		}}},
	}
	if _, err := cs.BatchV1().Jobs("default").Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var name string
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=log-bench"})
		if err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodSucceeded {
			name = pods.Items[0].Name
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the bench pod did not succeed: %v %+v", err, pods)
		}
	}
	cls, err := kube.New([]kube.ArchConfig{{Arch: "x86_64", Instances: []kube.Instance{{Name: "bench", Kubeconfig: c.Kubeconfig}}}})
	if err != nil {
		b.Fatal(err)
	}
	return &logBenchPod{clusters: cls, client: c, name: name}
}

// label gives the pod the job id label of jobID and the log-archive finalizer.
func (p *logBenchPod) label(b *testing.B, jobID string) {
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q},"finalizers":[%q]}}`, names.LabelJobID, jobID, names.PodFinalizer)
	if _, err := p.client.Clientset().CoreV1().Pods("default").Patch(context.Background(), p.name, types.MergePatchType,
		[]byte(patch), metav1.PatchOptions{}); err != nil {
		b.Fatal(err)
	}
}
