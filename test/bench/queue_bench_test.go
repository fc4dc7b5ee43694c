package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

const (
	// queueSlots is the capacity of each instance, set by the benchmark's queue policy.
	queueSlots = 25
	// queueStep is how long each of a job's three steps runs.
	queueStep = "1s"
	// queueClients submit the mass rebuild at once.
	queueClients = 32
	// Labels of the benchmark's jobs: the run they belong to and their number in it.
	labelRun, labelSeq = "omni-bench-run", "omni-bench-seq"
)

// queueInstances are the local clusters of BenchmarkQueue: two instances per arch.
var queueInstances = []platform.ClusterSpec{
	{Name: "x86_64", Arch: "x86_64"}, {Name: "x86_64-b", Arch: "x86_64"},
	{Name: "aarch64", Arch: "aarch64"}, {Name: "aarch64-b", Arch: "aarch64"},
}

// queueJobs is the size of the mass rebuild: $OMNI_BENCH_QUEUE_JOBS, default 400 (the issue's
// 5,000 take more than ten times as long on two cores).
func queueJobs(b *testing.B) int {
	if s := os.Getenv("OMNI_BENCH_QUEUE_JOBS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			b.Fatalf("OMNI_BENCH_QUEUE_JOBS=%q: want a number of jobs ≥ 2", s)
		}
		return n
	}
	return 400
}

// BenchmarkQueue is the mass rebuild of issue 9: n buildrpm jobs (half per arch, steps of
// about a second) submitted at once into two instances × 25 slots per arch, through POST
// /v1/jobs and the build queue; against a baseline in the same run on the same clusters: a
// client-side loop that creates the same ConfigMaps and Jobs directly with client-go, 25 at a
// time per instance (a semaphore of the same capacity), the next one as soon as a watch sees a
// pod end. Everything is measured from the clusters' point of view (informers on every
// cluster, this process's clock): a job holds a slot from its Job's creation to its pod's end.
// Printed: slot utilisation (busy slot-seconds over available slot-seconds while some job of
// the arch waits), dispatch lag (a pod's end while work waits → the next Job created on that
// instance; p50, p99; and, for the queue, the dispatcher's share of it: from the end stored
// by status-sync, the time of its terminal job.changed, to the next Job created on the
// instance), the most jobs in progress on one instance (in the cluster's own
// resourceVersion order; above 25 fails the benchmark) and the total time. A figure that
// cannot be (a lag ≤ 0, a utilisation above 1) fails the benchmark. The baseline runs first;
// its objects carry no job-id label, so the adapters and functions never see them.
func BenchmarkQueue(b *testing.B) {
	n := queueJobs(b)
	m := startQueueAllInOne(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	base := runQueueBaseline(ctx, b, m, n)
	settleAll(b, m)
	before := m.Router.Stats()
	queued := runQueueSubmit(ctx, b, m, n)
	after := m.Router.Stats()
	fmt.Fprintf(os.Stderr, "bench: the Broker stand-in during the queue run: %d events accepted, %d refused (503, the sender retries), %d deliveries, %d retried, %d lost\n",
		after.Accepted-before.Accepted, after.Rejected-before.Rejected, after.Delivered-before.Delivered, after.Retried-before.Retried, after.Lost-before.Lost)

	bs, qs := base.analyse(b, "baseline"), queued.analyse(b, "queue")
	b.ReportMetric(qs.util, "utilisation")
	b.ReportMetric(ms(qs.lagQ(.5)), "lag-p50-ms")
	b.ReportMetric(ms(qs.lagQ(.99)), "lag-p99-ms")
	b.ReportMetric(ms(qs.storedLagQ(.5)), "stored-lag-p50-ms")
	b.ReportMetric(ms(qs.storedLagQ(.99)), "stored-lag-p99-ms")
	b.ReportMetric(qs.total.Seconds(), "total-s")
	b.ReportMetric(bs.util, "client-go-utilisation")
	b.ReportMetric(bs.total.Seconds(), "client-go-total-s")
	b.ReportMetric(qs.total.Seconds()/bs.total.Seconds(), "total/client-go")
	row := func(path string, s queueStats, vs string) []string {
		return []string{path, fmt.Sprint(s.jobs), fmt.Sprintf("%.3f", s.util), fmt.Sprint(len(s.lags)),
			fmt.Sprintf("%.0f", ms(s.lagQ(.5))), fmt.Sprintf("%.0f", ms(s.lagQ(.99))),
			fmt.Sprint(s.most), fmt.Sprintf("%.1f", s.total.Seconds()), vs}
	}
	table(fmt.Sprintf("Queue: mass rebuild of %d buildrpm jobs (3 steps of %s) into 2 instances × %d slots per arch", n, queueStep, queueSlots),
		[]string{"path", "jobs", "utilisation", "lags", "lag p50 ms", "lag p99 ms", "most in progress", "total s", "vs baseline"},
		[][]string{
			row("client-go, semaphore of 25 per instance (baseline)", bs, ""),
			row("POST /v1/jobs, build queue", qs, "total "+ratio(qs.total.Seconds(), bs.total.Seconds())),
		})
	var trig sample
	for _, j := range queued.jobs {
		if !j.stored.IsZero() && !j.triggered.IsZero() {
			trig.lat = append(trig.lat, j.triggered.Sub(j.stored))
		}
	}
	trig.mustBePossible(b, "end stored → dispatch Trigger answered")
	fmt.Printf("  of the queue's lag, from the end stored by status-sync to the next Job created (the dispatcher's share): %d lags, p50 %.0f ms, p99 %.0f ms\n",
		len(qs.storedLags), ms(qs.storedLagQ(.5)), ms(qs.storedLagQ(.99)))
	fmt.Printf("  of which: end stored → submit answered the dispatch Trigger's delivery (the Broker's queue, and a pass when none ran): %d, p50 %.0f ms, p99 %.0f ms\n\n",
		len(trig.lat), ms(trig.quantile(.5)), ms(trig.quantile(.99)))
}

// startQueueAllInOne starts an all-in-one of its own with the four instances, 2 fake nodes each
// (a buildrpm pod asks for 2 CPUs: 32 fit), and a queue policy of 25 slots per instance.
func startQueueAllInOne(b *testing.B) *allinone.Main {
	b.Helper()
	began := time.Now()
	dir := b.TempDir()
	policy := "instances:\n"
	for _, c := range queueInstances {
		policy += fmt.Sprintf("  %s: {capacity: %d}\n", c.Name, queueSlots)
	}
	if err := os.WriteFile(filepath.Join(dir, "queue.yaml"), []byte(policy), 0o644); err != nil {
		b.Fatal(err)
	}
	logger, err := runtime.NewLogger("error")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := allinone.Start(ctx, allinone.Options{
		DataDir: dir, Addr: "127.0.0.1:0", Logger: logger, Progress: os.Stderr,
		Platform: platform.Options{Clusters: queueInstances, NodesPerCluster: 2},
		Tap:      storedEnds.tap,
	})
	if err != nil {
		b.Fatalf("start the all-in-one with four clusters: %v", err)
	}
	b.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = m.Router.Drain(dctx)
		if err := m.Close(); err != nil {
			b.Logf("stop the all-in-one: %v", err)
		}
	})
	for _, c := range queueInstances {
		if got := m.Policy.Current().Capacity(c.Name, 0); got != queueSlots {
			b.Fatalf("instance %s has capacity %d, want %d", c.Name, got, queueSlots)
		}
	}
	fmt.Fprintf(os.Stderr, "bench: all-in-one with %d clusters ready in %s\n", len(queueInstances), time.Since(began).Round(time.Millisecond))
	return m
}

// storedEnds records when status-sync stored each job's end: the time of its terminal
// job.changed (set by status-sync in this process when it records the change), as the router
// delivered it to any function.
// It also records when submit answered the dispatch Trigger's delivery of that event.
var storedEnds = &endTap{at: map[string]time.Time{}, triggered: map[string]time.Time{}}

type endTap struct {
	mu        sync.Mutex
	at        map[string]time.Time
	triggered map[string]time.Time
}

func (t *endTap) tap(fn string, e event.Event) {
	status, _ := e.Extensions()[events.ExtStatus].(string)
	if e.Type() != events.TypeJobChanged || !jobs.Status(status).Terminal() {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.at[e.Subject()]; !ok {
		t.at[e.Subject()] = e.Time()
	}
	if _, ok := t.triggered[e.Subject()]; !ok && fn == submit.Name {
		t.triggered[e.Subject()] = now
	}
}

func (t *endTap) get(id string) (stored, triggered time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.at[id], t.triggered[id]
}

// queueRun is what the informers saw of one run's jobs.
type queueRun struct {
	name  string
	began time.Time

	mu    sync.Mutex
	jobs  []*benchJob // by seq
	ended map[int]chan struct{}
}

// benchJob is one job of a run: when it could start (submitted, or at once for the baseline),
// when its Job was created and its pod ended (this process's clock, as the informers saw them),
// on which instance, and the resourceVersions of both (the cluster's order).
type benchJob struct {
	arch, instance string
	// stored is when status-sync stored the job's end (the time of its terminal job.changed;
	// queue run only).
	stored time.Time
	// triggered is when submit answered the dispatch Trigger's delivery of that event.
	triggered             time.Time
	ready, created, ended time.Time
	createdRV, endedRV    int64
	failed                bool
	id                    string
}

func newQueueRun(name string, n int) *queueRun {
	r := &queueRun{name: name, jobs: make([]*benchJob, n), ended: map[int]chan struct{}{}}
	for i := range r.jobs {
		r.jobs[i] = &benchJob{arch: queueArch(i)}
		r.ended[i] = make(chan struct{})
	}
	return r
}

// queueArch is the arch of job i: half each.
func queueArch(i int) string {
	if i%2 == 0 {
		return "x86_64"
	}
	return "aarch64"
}

// watch starts informers on every cluster for the run's Jobs and pods.
func (r *queueRun) watch(ctx context.Context, b *testing.B, m *allinone.Main) {
	b.Helper()
	for _, c := range m.Platform.Clusters() {
		f := informers.NewSharedInformerFactoryWithOptions(c.Clientset(), 0, informers.WithNamespace("default"),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labelRun + "=" + r.name }))
		ji := f.Batch().V1().Jobs().Informer()
		pi := f.Core().V1().Pods().Informer()
		instance := c.Name
		if _, err := ji.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) {
			if kj, ok := o.(*batchv1.Job); ok {
				r.sawCreated(b, instance, kj.Labels, kj.ResourceVersion)
			}
		}}); err != nil {
			b.Fatal(err)
		}
		onPod := func(o any) {
			if p, ok := o.(*corev1.Pod); ok && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
				r.sawEnded(b, p.Labels, p.ResourceVersion, p.Status.Phase == corev1.PodFailed)
			}
		}
		if _, err := pi.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) }}); err != nil {
			b.Fatal(err)
		}
		f.Start(ctx.Done())
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				b.Fatalf("informer of %v on %s did not sync", typ, c.Name)
			}
		}
	}
}

func (r *queueRun) seqOf(b *testing.B, labels map[string]string) (*benchJob, int) {
	i, err := strconv.Atoi(labels[labelSeq])
	if err != nil || i < 0 || i >= len(r.jobs) {
		b.Errorf("%s: an object with %s=%q", r.name, labelSeq, labels[labelSeq])
		return nil, -1
	}
	return r.jobs[i], i
}

func rvOf(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func (r *queueRun) sawCreated(b *testing.B, instance string, labels map[string]string, rv string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	j, _ := r.seqOf(b, labels)
	if j == nil {
		return
	}
	if !j.created.IsZero() {
		b.Errorf("%s: job %s created twice (on %s and %s)", r.name, labels[labelSeq], j.instance, instance)
		return
	}
	j.created, j.instance, j.createdRV = now, instance, rvOf(rv)
}

func (r *queueRun) sawEnded(b *testing.B, labels map[string]string, rv string, failed bool) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	j, i := r.seqOf(b, labels)
	if j == nil || !j.ended.IsZero() {
		return
	}
	j.ended, j.endedRV, j.failed = now, rvOf(rv), failed
	close(r.ended[i])
}

// waitAll waits until every job's pod has ended.
func (r *queueRun) waitAll(b *testing.B, within time.Duration) {
	b.Helper()
	deadline := time.After(within)
	for i, ch := range r.ended {
		select {
		case <-ch:
		case <-deadline:
			r.mu.Lock()
			left := 0
			for _, j := range r.jobs {
				if j.ended.IsZero() {
					left++
				}
			}
			r.mu.Unlock()
			b.Fatalf("%s: %d of %d jobs' pods not ended within %s (job %d among them)", r.name, left, len(r.jobs), within, i)
		}
	}
}

// runDeadline bounds a run: four times the ideal time of n jobs of 3 steps on 50 slots per
// arch, plus 5 minutes.
func runDeadline(n int) time.Duration {
	return 5*time.Minute + time.Duration(4*n/(4*queueSlots)*3+1)*time.Second*4
}

// stepLabels are the client labels of job i of run.
func stepLabels(run string, i int) map[string]string {
	return map[string]string{labelRun: run, labelSeq: strconv.Itoa(i), platform.AnnotationStepDuration: queueStep}
}

// runQueueBaseline creates the n jobs directly with client-go, queueSlots at a time per
// instance: each instance's workers take the next job of its arch, create its objects, and
// wait for its pod's end.
func runQueueBaseline(ctx context.Context, b *testing.B, m *allinone.Main, n int) *queueRun {
	b.Helper()
	r := newQueueRun("baseline", n)
	r.watch(ctx, b, m)
	objs := make([][]*unstructured.Unstructured, n)
	for i := range objs {
		var err error
		if objs[i], err = renderRPM(m, queueArch(i), stepLabels(r.name, i)); err != nil {
			b.Fatal(err)
		}
		// Without the job-id label the adapters (and so the functions) never see them.
		for _, o := range objs[i] {
			unstructured.RemoveNestedField(o.Object, "metadata", "labels", names.LabelJobID)
			unstructured.RemoveNestedField(o.Object, "spec", "template", "metadata", "labels", names.LabelJobID)
		}
	}
	next := map[string]chan int{"x86_64": make(chan int, n), "aarch64": make(chan int, n)}
	for i := range n {
		next[queueArch(i)] <- i
	}
	close(next["x86_64"])
	close(next["aarch64"])
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	r.began = time.Now()
	for i := range r.jobs {
		r.jobs[i].ready = r.began
	}
	for _, c := range m.Platform.Clusters() {
		dyn, err := dynamic.NewForConfig(c.RESTConfig())
		if err != nil {
			b.Fatal(err)
		}
		for range queueSlots {
			wg.Go(func() {
				for i := range next[c.Arch] {
					if failed.Load() != nil {
						return
					}
					for _, o := range objs[i] {
						if _, err := dyn.Resource(resources[o.GroupVersionKind()]).Namespace("default").Create(ctx, o, metav1.CreateOptions{FieldManager: names.ManagedBy}); err != nil {
							err = fmt.Errorf("create %s %s on %s: %w", o.GetKind(), o.GetName(), c.Name, err)
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
					select {
					case <-r.ended[i]:
					case <-time.After(5 * time.Minute):
						err := fmt.Errorf("baseline job %d on %s: no pod end within 5 minutes", i, c.Name)
						failed.CompareAndSwap(nil, &err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	r.waitAll(b, time.Minute)
	return r
}

// runQueueSubmit submits the n jobs through POST /v1/jobs from queueClients clients at once
// and waits until every pod ended and every job is stored succeeded.
func runQueueSubmit(ctx context.Context, b *testing.B, m *allinone.Main, n int) *queueRun {
	b.Helper()
	r := newQueueRun("queue", n)
	r.watch(ctx, b, m)
	hc := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: queueClients}}
	post := func(i int) (string, error) {
		return postJob(ctx, m, hc, map[string]any{"service": "bench", "task": "buildrpm", "arch": queueArch(i), "domain": "bench",
			"parameters": rpmJob["parameters"], "labels": stepLabels(r.name, i)})
	}
	r.began = time.Now()
	postLat := measure(b, queueClients, n, func(i int) error {
		id, err := post(i)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.jobs[i].ready, r.jobs[i].id = time.Now(), id
		r.mu.Unlock()
		return nil
	})
	fmt.Fprintf(os.Stderr, "bench: queue: %d jobs submitted in %s (POST p50 %.0f ms, p99 %.0f ms)\n", n,
		postLat.elapsed.Round(time.Millisecond), ms(postLat.quantile(.5)), ms(postLat.quantile(.99)))
	r.waitAll(b, runDeadline(n))
	// Every job stored succeeded (status-sync may be a moment behind the pods), and when.
	deadline := time.Now().Add(5 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond) // a poll with a deadline: the store has no watch
	defer tick.Stop()
	for _, j := range r.jobs {
		for {
			got, err := m.Deps.Store.GetJob(ctx, j.id)
			if err != nil {
				b.Fatalf("read job %s: %v", j.id, err)
			}
			if got.Status == jobs.StatusSucceeded {
				r.mu.Lock()
				j.stored, j.triggered = storedEnds.get(j.id)
				r.mu.Unlock()
				break
			}
			if got.Status.Terminal() || time.Now().After(deadline) {
				b.Fatalf("job %s is %s (%s), want succeeded", j.id, got.Status, got.Reason)
			}
			<-tick.C
		}
	}
	return r
}

// settleAll waits until no pod is pending or running on any cluster.
func settleAll(b *testing.B, m *allinone.Main) {
	b.Helper()
	for _, c := range m.Platform.Clusters() {
		settle(b, c.Clientset())
	}
}

// queueStats are the figures of one run.
type queueStats struct {
	jobs int
	util float64
	lags []time.Duration
	// storedLags are from an end stored (status-sync's terminal job.changed) to the next Job
	// created on the instance: the dispatcher's share of the lag (queue run only).
	storedLags []time.Duration
	most       int
	total      time.Duration
}

func (s queueStats) lagQ(q float64) time.Duration {
	return sample{lat: s.lags}.quantile(q)
}

func (s queueStats) storedLagQ(q float64) time.Duration {
	return sample{lat: s.storedLags}.quantile(q)
}

// analyse computes the run's figures, failing the benchmark on one that cannot be.
func (r *queueRun) analyse(b *testing.B, what string) queueStats {
	b.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	st := queueStats{jobs: len(r.jobs)}
	perArch := map[string][]string{}
	for _, c := range queueInstances {
		perArch[c.Arch] = append(perArch[c.Arch], c.Name)
	}
	var last time.Time
	for i, j := range r.jobs {
		if j.created.IsZero() || j.ended.IsZero() || j.failed {
			b.Fatalf("%s: job %d: created %v, ended %v, failed %v", what, i, j.created, j.ended, j.failed)
		}
		if !j.ended.After(j.created) {
			b.Fatalf("%s: job %d ended (%v) before its Job was created (%v): the clocks are wrong", what, i, j.ended, j.created)
		}
		if j.ended.After(last) {
			last = j.ended
		}
	}
	st.total = last.Sub(r.began)

	// The most jobs in progress on one instance, in the cluster's resourceVersion order.
	type rvEdge struct {
		rv    int64
		delta int
	}
	edges := map[string][]rvEdge{}
	for _, j := range r.jobs {
		edges[j.instance] = append(edges[j.instance], rvEdge{j.createdRV, +1}, rvEdge{j.endedRV, -1})
	}
	for in, es := range edges {
		sort.Slice(es, func(a, c int) bool {
			if es[a].rv != es[c].rv {
				return es[a].rv < es[c].rv
			}
			return es[a].delta < es[c].delta
		})
		cur := 0
		for _, e := range es {
			cur += e.delta
			st.most = max(st.most, cur)
		}
		if st.most > queueSlots {
			b.Errorf("%s: %d jobs in progress at once on %s, which has %d slots", what, st.most, in, queueSlots)
		}
	}

	// Sweep each arch's events in time order.
	const (
		// Kinds of events, in the order they count at a tie: a slot freed, then taken.
		evEnd = iota
		evStored
		evCreated
		evReady
	)
	type ev struct {
		at       time.Time
		kind     int
		instance string
		waited   bool // of a created: the job waited before
	}
	var busyS, availS float64
	for arch, ins := range perArch {
		var evs []ev
		for _, j := range r.jobs {
			if j.arch != arch {
				continue
			}
			waited := j.created.After(j.ready)
			evs = append(evs, ev{j.created, evCreated, j.instance, waited}, ev{j.ended, evEnd, j.instance, false})
			if waited {
				evs = append(evs, ev{j.ready, evReady, "", false})
			}
			if !j.stored.IsZero() {
				evs = append(evs, ev{j.stored, evStored, j.instance, false})
			}
		}
		sort.SliceStable(evs, func(a, c int) bool {
			if !evs[a].at.Equal(evs[c].at) {
				return evs[a].at.Before(evs[c].at)
			}
			return evs[a].kind < evs[c].kind
		})
		waiting := 0
		busy := map[string]int{}
		freed := map[string][]time.Time{}  // per instance, pod ends while work waited, oldest first
		stored := map[string][]time.Time{} // per instance, ends stored while work waited
		for k, e := range evs {
			if k > 0 && waiting > 0 {
				dt := e.at.Sub(evs[k-1].at).Seconds()
				for _, in := range ins {
					busyS += float64(min(busy[in], queueSlots)) * dt
					availS += float64(queueSlots) * dt
				}
			}
			switch e.kind {
			case evReady:
				waiting++
			case evCreated:
				if e.waited {
					waiting--
				}
				busy[e.instance]++
				if fr := freed[e.instance]; len(fr) > 0 {
					lag := e.at.Sub(fr[0])
					if lag <= 0 {
						b.Fatalf("%s: impossible dispatch lag %v on %s", what, lag, e.instance)
					}
					st.lags = append(st.lags, lag)
					freed[e.instance] = fr[1:]
				}
				// The slot taken was freed by an end stored before: the k-th creation after
				// the instance filled needs k ends stored.
				if sd := stored[e.instance]; len(sd) > 0 {
					lag := e.at.Sub(sd[0])
					if lag <= 0 {
						b.Fatalf("%s: a Job created on %s %v before the end that freed its slot was stored", what, e.instance, -lag)
					}
					st.storedLags = append(st.storedLags, lag)
					stored[e.instance] = sd[1:]
				}
			case evEnd:
				busy[e.instance]--
				if waiting > 0 {
					freed[e.instance] = append(freed[e.instance], e.at)
				}
			case evStored:
				if waiting > 0 {
					stored[e.instance] = append(stored[e.instance], e.at)
				}
			}
		}
	}
	if availS > 0 {
		st.util = busyS / availS
	}
	if st.util > 1 || st.util < 0 {
		b.Fatalf("%s: utilisation %.3f cannot be", what, st.util)
	}
	return st
}
