package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

const (
	// notifyRound is how many jobs one iteration of BenchmarkNotify follows to their webhook
	// (a job lives for about a second, so b.N alone would measure one or two).
	notifyRound = 100
	// notifyInFlight jobs run at once.
	notifyInFlight = 4
)

// BenchmarkNotify measures job end → webhook received. The job's last step (upload) is held
// (omni.test/hold-step) until the benchmark lets it end; the end's clock starts just before that
// release, which causes the end, so it can never come after the webhook (a watch of the
// cluster, the clock used before, could see the end after the webhook had arrived and gave a
// negative figure). The figure covers kwok ending the step once released, the adapter, the
// Broker (router), status-sync storing the end, the reply re-ingested into the Broker, the notify
// Trigger and the POST to the webhook. Split into release → end stored (the event's time, set by
// status-sync in this process) and stored → received (router + notify). The baseline is a raw
// POST of the same delivery (same body and headers) from this process to the same receiver,
// made right after each job: what the last hop alone costs. Jobs are buildrpm on aarch64,
// notifyInFlight at once. A figure that cannot be (a latency ≤ 0) fails the benchmark. kwok's
// share (release → the pod's end, as a watch of the cluster sees it) is printed for reference:
// on the local platform it is most of the figure.
func BenchmarkNotify(b *testing.B) {
	m := allInOne(b)
	const cluster, last = "aarch64", "upload"
	cl := m.Platform.Cluster(cluster)
	if cl == nil {
		b.Fatal("no aarch64 cluster")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rcv := newEndReceiver()
	defer rcv.Close()
	hc := &http.Client{Timeout: time.Minute}
	// For reference only, never as the end's clock: when a watch of the cluster sees the end.
	ends := watchEnds(ctx, cl.Clientset())

	var seenMu sync.Mutex
	var seen sample // release → the end seen by the watch: kwok's share, roughly
	one := func() (endToHook, endToStored, storedToHook, raw time.Duration, err error) {
		id, err := submitNotifyJob(ctx, m, hc, cluster, rcv.URL+"/hook", last)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		if _, err := runningStep(ctx, cl, id, last); err != nil {
			return 0, 0, 0, 0, err
		}
		released := time.Now() // before the release: the end cannot come earlier
		if err := releaseStep(ctx, cl, id); err != nil {
			return 0, 0, 0, 0, err
		}
		got, err := rcv.wait(id, 2*time.Minute)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		if end, err := ends.wait(id, 10*time.Second); err == nil {
			seenMu.Lock()
			seen.lat = append(seen.lat, end.Sub(released))
			seenMu.Unlock()
		}
		raw, err = rcv.replay(hc, got)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		return got.at.Sub(released), got.eventTime.Sub(released), got.at.Sub(got.eventTime), raw, nil
	}
	round := func(n int) (hook, stored, notified, raw sample, err error) {
		var mu sync.Mutex
		var firstErr error
		sem := make(chan struct{}, notifyInFlight)
		var wg sync.WaitGroup
		began := time.Now()
		for range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				h, s, nt, r, err := one()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				hook.lat, stored.lat = append(hook.lat, h), append(stored.lat, s)
				notified.lat, raw.lat = append(notified.lat, nt), append(raw.lat, r)
			})
		}
		wg.Wait()
		hook.elapsed = time.Since(began)
		return hook, stored, notified, raw, firstErr
	}
	if _, _, _, _, err := round(notifyInFlight); err != nil { // warm up: connections, caches
		b.Fatal(err)
	}
	seenMu.Lock()
	seen = sample{}
	seenMu.Unlock()

	var hook, stored, notified, raw sample
	b.ResetTimer()
	for range b.N {
		h, s, nt, r, err := round(notifyRound)
		if err != nil {
			b.Fatal(err)
		}
		hook.add(h)
		stored.add(s)
		notified.add(nt)
		raw.add(r)
	}
	b.StopTimer()
	for what, s := range map[string]sample{"job end → webhook": hook, "job end → stored": stored, "stored → webhook": notified, "raw POST": raw} {
		s.mustBePossible(b, what)
	}
	b.ReportMetric(ms(hook.quantile(.5)), "p50-ms")
	b.ReportMetric(ms(hook.quantile(.99)), "p99-ms")
	b.ReportMetric(ms(raw.quantile(.5)), "raw-post-p50-ms")
	b.ReportMetric(ms(raw.quantile(.99)), "raw-post-p99-ms")

	row := func(path string, s sample, vs string) []string {
		return []string{path, fmt.Sprint(len(s.lat)), fmt.Sprintf("%.2f", ms(s.quantile(.5))), fmt.Sprintf("%.2f", ms(s.quantile(.99))), vs}
	}
	table(fmt.Sprintf("Notify: job end (its last step released) → the job's callback receives job.changed; buildrpm on %s, %d at once", cluster, notifyInFlight),
		[]string{"path", "jobs", "p50 ms", "p99 ms", "vs baseline"}, [][]string{
			row("raw POST of the same delivery to the receiver (baseline)", raw, ""),
			row("job end → webhook received", hook, fmt.Sprintf("p50 %s, p99 %s",
				ratio(ms(hook.quantile(.5)), ms(raw.quantile(.5))), ratio(ms(hook.quantile(.99)), ms(raw.quantile(.99))))),
			row("  of which job end → end stored (kwok, adapter, router, status-sync)", stored, ""),
			row("    for reference: job end → a watch of the cluster sees it (kwok's share; not a clock)", seen, ""),
			row("  of which end stored → webhook received (reply, router, notify)", notified, fmt.Sprintf("p50 %s, p99 %s",
				ratio(ms(notified.quantile(.5)), ms(raw.quantile(.5))), ratio(ms(notified.quantile(.99)), ms(raw.quantile(.99))))),
		})
}

// submitNotifyJob submits a buildrpm job on cluster's arch with callback, whose step hold runs
// until released (releaseStep), and returns its id.
func submitNotifyJob(ctx context.Context, m *allinone.Main, hc *http.Client, arch, callback, hold string) (string, error) {
	return postJob(ctx, m, hc, map[string]any{
		"service": "bench", "task": "buildrpm", "arch": arch, "domain": "notify",
		"parameters": map[string]any{"srpmUrl": "https://repo.example.org/src/zlib-1.3.1-1.src.rpm"},
		"callback":   callback,
		// Held until released, then ended at once (no simulated run time after the release).
		"labels": map[string]string{platform.AnnotationHoldStep: hold, platform.AnnotationDurationPrefix + hold: "0s"},
	})
}

// postJob submits req through POST /v1/jobs as the all-in-one's admin and returns the job's id.
func postJob(ctx context.Context, m *allinone.Main, hc *http.Client, req map[string]any) (string, error) {
	j, err := submitJob(ctx, hc, m.URL, m.User, m.Password, req)
	return j.ID, err
}

// received is the first delivery of a job's terminal event.
type received struct {
	at, eventTime time.Time
	header        http.Header
	body          []byte
}

// endReceiver is the jobs' callback: it keeps, per job, the first delivery of a terminal event.
type endReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     map[string]received
	waiters map[string]chan struct{}
}

func newEndReceiver() *endReceiver {
	r := &endReceiver{got: map[string]received{}, waiters: map[string]chan struct{}{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

func (r *endReceiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(req.Body)
	if err != nil || req.URL.Path != "/hook" {
		return // the baseline's replays, or a broken request
	}
	var data events.JobData
	if json.Unmarshal(body, &data) != nil || data.Job == nil || !data.Status.Terminal() {
		return
	}
	evTime, _ := time.Parse(time.RFC3339Nano, req.Header.Get("Ce-Time")) // when the change was stored
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.got[data.ID]; ok {
		return
	}
	r.got[data.ID] = received{at: at, eventTime: evTime, header: req.Header.Clone(), body: body}
	if ch, ok := r.waiters[data.ID]; ok {
		close(ch)
	}
}

// wait returns the first terminal delivery of job id.
func (r *endReceiver) wait(id string, timeout time.Duration) (received, error) {
	r.mu.Lock()
	if got, ok := r.got[id]; ok {
		r.mu.Unlock()
		return got, nil
	}
	ch := make(chan struct{})
	r.waiters[id] = ch
	r.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(timeout):
		return received{}, fmt.Errorf("job %s: no terminal event at the callback within %s", id, timeout)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id], nil
}

// replay POSTs got again, as notify sent it, and returns how long it took.
func (r *endReceiver) replay(hc *http.Client, got received) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, r.URL+"/baseline", bytes.NewReader(got.body))
	if err != nil {
		return 0, err
	}
	for k, v := range got.header {
		req.Header[k] = v
	}
	req.Header.Del("Content-Length")
	began := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(began), nil
}

// releaseStep lets the held step of job id's pod end now.
func releaseStep(ctx context.Context, cl *platform.Cluster, id string) error {
	pods, err := cl.Clientset().CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: names.JobSelector(id)})
	if err != nil {
		return fmt.Errorf("list the pods of %s: %w", id, err)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, platform.AnnotationHoldStep)
	for _, p := range pods.Items {
		if _, err := cl.Clientset().CoreV1().Pods("default").Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("release pod %s: %w", p.Name, err)
		}
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("job %s has no pod to release", id)
	}
	return nil
}

// endWatch records when a watch of the cluster first saw each job end: its pod Succeeded or
// Failed, or its Job Complete or Failed, whichever came first.
type endWatch struct {
	mu      sync.Mutex
	ends    map[string]time.Time
	waiters map[string][]chan struct{}
}

func watchEnds(ctx context.Context, cs kubernetes.Interface) *endWatch {
	w := &endWatch{ends: map[string]time.Time{}, waiters: map[string][]chan struct{}{}}
	opts := metav1.ListOptions{LabelSelector: names.LabelJobID}
	go w.follow(ctx, func(ctx context.Context, rv string) (watch.Interface, error) {
		o := opts
		o.ResourceVersion = rv
		return cs.CoreV1().Pods("default").Watch(ctx, o)
	})
	go w.follow(ctx, func(ctx context.Context, rv string) (watch.Interface, error) {
		o := opts
		o.ResourceVersion = rv
		return cs.BatchV1().Jobs("default").Watch(ctx, o)
	})
	return w
}

// follow runs a watch until ctx is done, starting it again (from the last version seen) when
// the server ends it.
func (w *endWatch) follow(ctx context.Context, start func(context.Context, string) (watch.Interface, error)) {
	rv := ""
	for ctx.Err() == nil {
		wi, err := start(ctx, rv)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond): // back off before watching again
			}
			continue
		}
		for ev := range wi.ResultChan() {
			at := time.Now()
			switch o := ev.Object.(type) {
			case *metav1.Status: // e.g. 410 Gone: the version is too old; list afresh
				rv = ""
			case *corev1.Pod:
				rv = o.ResourceVersion
				if o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
					w.saw(o.Labels[names.LabelJobID], at)
				}
			case *batchv1.Job:
				rv = o.ResourceVersion
				for _, c := range o.Status.Conditions {
					if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
						w.saw(o.Labels[names.LabelJobID], at)
					}
				}
			}
		}
		wi.Stop()
	}
}

func (w *endWatch) saw(id string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.ends[id]; ok || id == "" {
		return
	}
	w.ends[id] = at
	for _, ch := range w.waiters[id] {
		close(ch)
	}
	delete(w.waiters, id)
}

// wait returns when the watch first saw job id end.
func (w *endWatch) wait(id string, timeout time.Duration) (time.Time, error) {
	w.mu.Lock()
	if at, ok := w.ends[id]; ok {
		w.mu.Unlock()
		return at, nil
	}
	ch := make(chan struct{})
	w.waiters[id] = append(w.waiters[id], ch)
	w.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(timeout):
		return time.Time{}, fmt.Errorf("job %s: the watch did not see it end within %s", id, timeout)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ends[id], nil
}
