package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/local/fleet"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// chaosJobs is how many jobs the chaos test runs (the 200).
const chaosJobs = 200

// planned is one job of the chaos test and what it must end as.
type planned struct {
	n        int
	key      string // its Idempotency-Key
	arch     string
	task     string
	want     jobs.Status
	cancel   bool // held at its second step until cancelled
	callback bool
	big      bool // buildimagefromrelease: its build-image step logs 20 MB
	id       string
}

// plan is the chaos test's jobs: every tenth fails, every tenth is cancelled, every fiftieth
// is a release build with a 20 MB step log, every fifth has a callback; the arches alternate.
func plan(seed uint64) []*planned {
	var ps []*planned
	for i := range chaosJobs {
		p := &planned{n: i, key: fmt.Sprintf("chaos-%d-%d", seed, i), arch: []string{"x86_64", "aarch64"}[i%2], task: "buildrpm", want: jobs.StatusSucceeded}
		switch {
		case i%10 == 3:
			p.want = jobs.StatusFailed
		case i%10 == 7:
			p.want, p.cancel = jobs.StatusCancelled, true
		case i%50 == 11:
			p.task, p.big = "buildimagefromrelease", true
		}
		p.callback = i%5 == 1
		ps = append(ps, p)
	}
	return ps
}

func (p *planned) request(r *rand.Rand, callback string) map[string]any {
	labels := map[string]string{platform.AnnotationStepDuration: fmt.Sprintf("%dms", 200+r.IntN(1300))}
	req := map[string]any{"service": "chaos", "task": p.task, "arch": p.arch, "domain": "chaos", "labels": labels}
	switch p.task {
	case "buildrpm":
		req["parameters"] = map[string]any{"srpmUrl": "https://repo.example.org/src/zlib-1.3.1-1.src.rpm"}
		if p.want == jobs.StatusFailed {
			labels[platform.AnnotationFailStep] = "build-rpm"
			labels[platform.AnnotationExitCode] = "3"
		}
		if p.cancel {
			labels[platform.AnnotationHoldStep] = "build-rpm"
		}
	case "buildimagefromrelease":
		req["parameters"] = map[string]any{
			"version": "openEuler-24.03-LTS", "packages": []string{"bash", "kernel"},
			"repos": []string{"https://repo.openeuler.org/openEuler-24.03-LTS/OS/$basearch/"},
		}
	}
	if p.callback {
		req["callback"] = callback
	}
	return req
}

// receiver is a webhook receiver: it records each delivery's event id, job and status.
type receiver struct {
	mu    sync.Mutex
	got   int
	byJob map[string]map[string]jobs.Status // job id → event id → status delivered
	types map[string]string                 // event id → CloudEvent type
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var d struct {
		ID     string      `json:"id"`
		Status jobs.Status `json:"status"`
	}
	if err := json.Unmarshal(body, &d); err != nil || d.ID == "" {
		http.Error(w, "not a job", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got++
	if rc.byJob[d.ID] == nil {
		rc.byJob[d.ID] = map[string]jobs.Status{}
	}
	id := r.Header.Get("X-Omni-Event-Id")
	rc.byJob[d.ID][id] = d.Status
	rc.types[id] = r.Header.Get("Ce-Type")
}

// disruption counts what the chaos did.
type disruption struct {
	kills, adapterStops, storePauses atomic.Int64
	mu                               sync.Mutex
	errs                             []error
	killed                           map[string]int
}

func (d *disruption) fail(err error) {
	d.mu.Lock()
	d.errs = append(d.errs, err)
	d.mu.Unlock()
}

// pause waits for d (a random part of it from lo to hi) or ctx's end; false on ctx's end.
func pause(ctx context.Context, lo, hi time.Duration) bool {
	t := time.NewTimer(lo + rand.N(hi-lo+1))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// unleash runs the disruptions until ctx ends: a random replica killed (SIGKILL) every 1.5–3 s
// and started again 0.2–1.5 s later; the x86_64 adapter stopped for 8 s; the store frozen for
// 5 s.
func unleash(ctx context.Context, d *disruption) *sync.WaitGroup {
	var wg sync.WaitGroup
	restart := func(fn string, i int) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		if err := omni.Restart(rctx, fn, i); err != nil {
			d.fail(fmt.Errorf("restart %s-%d: %w", fn, i, err))
		}
	}
	wg.Go(func() {
		for pause(ctx, 1500*time.Millisecond, 3*time.Second) {
			fn := fleet.Functions[rand.IntN(len(fleet.Functions))]
			i := rand.IntN(omni.Replicas(fn))
			if err := omni.Kill(fn, i); err != nil {
				d.fail(err)
				continue
			}
			d.kills.Add(1)
			d.mu.Lock()
			d.killed[fn]++
			d.mu.Unlock()
			pause(ctx, 200*time.Millisecond, 1500*time.Millisecond)
			restart(fn, i)
		}
	})
	wg.Go(func() {
		if !pause(ctx, 6*time.Second, 6*time.Second) {
			return
		}
		if err := omni.Platform.StopAdapter("x86_64"); err != nil {
			d.fail(fmt.Errorf("stop the x86_64 adapter: %w", err))
			return
		}
		d.adapterStops.Add(1)
		pause(ctx, 8*time.Second, 8*time.Second)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := omni.Platform.StartAdapter(sctx, "x86_64"); err != nil {
			d.fail(fmt.Errorf("start the x86_64 adapter again: %w", err))
		}
	})
	wg.Go(func() {
		if !pause(ctx, 18*time.Second, 18*time.Second) {
			return
		}
		if err := node.Pause(); err != nil {
			d.fail(err)
			return
		}
		d.storePauses.Add(1)
		pause(ctx, 5*time.Second, 5*time.Second)
		if err := node.Resume(); err != nil {
			d.fail(err)
		}
	})
	return &wg
}

// TestChaos runs 200 jobs across both arches — some failing, some cancelled, some with 20 MB
// logs, some with callbacks — on two replicas of every function while replicas are killed and
// started again, an adapter stops for a while and the store freezes. Afterwards every job has
// the end its cluster says, every step's archived log is byte-identical to what the cluster
// served, every job's creation and end reached its webhook, no pod keeps the log-archive
// finalizer and the queue is empty.
func TestChaos(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	// The small logs: one text per cluster, so that a step archived from the wrong cluster shows.
	small := map[string][]byte{}
	for _, c := range omni.Platform.Clusters() {
		cri, text := platform.SampleLog(64<<10, c.Name+" ")
		if err := os.WriteFile(c.LogsFile, cri, 0o644); err != nil {
			t.Fatal(err)
		}
		small[c.Name] = text
	}
	rc := &receiver{byJob: map[string]map[string]jobs.Status{}, types: map[string]string{}}
	hook := httptest.NewServer(rc)
	defer hook.Close()

	ps := plan(uint64(time.Now().UnixNano()))
	d := &disruption{killed: map[string]int{}}
	chaosCtx, stopChaos := context.WithCancel(ctx)
	chaos := unleash(chaosCtx, d)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopChaos()
			chaos.Wait()
		}
	}
	defer stop()
	defer func() { _ = node.Resume() }() // never leave the store frozen

	// Submit: 8 clients, paced over about 20 s; each retries with its Idempotency-Key.
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		submits atomic.Int64
		errMu   sync.Mutex
		errs    []error
	)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(began.UnixNano())))
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ps) {
					return
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
				p := ps[i]
				a, err := call(ctx, http.MethodPost, "/v1/jobs", p.request(r, hook.URL), "Idempotency-Key", p.key)
				submits.Add(1)
				if err == nil && a.code != http.StatusCreated && a.code != http.StatusOK {
					err = fmt.Errorf("submit job %d: %d %s", i, a.code, a.body)
				}
				var j jobs.Job
				if err == nil {
					err = json.Unmarshal(a.body, &j)
				}
				if err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					continue
				}
				p.id = j.ID
				if p.cancel {
					wg.Go(func() {
						pause(ctx, time.Second, 5*time.Second)
						a, err := call(ctx, http.MethodDelete, "/v1/jobs/"+p.id, nil)
						if err == nil && a.code != http.StatusOK {
							err = fmt.Errorf("cancel %s: %d %s", p.id, a.code, a.body)
						}
						if err != nil {
							errMu.Lock()
							errs = append(errs, err)
							errMu.Unlock()
						}
					})
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("submitting and cancelling: %d errors, first: %v", len(errs), errs[0])
	}
	t.Logf("submitted %d jobs in %s (%d submit calls)", len(ps), time.Since(began).Round(time.Millisecond), submits.Load())
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.id
	}

	// Every job terminal, while the chaos goes on.
	final := waitJobs(ctx, t, ids, 8*time.Minute, "terminal", func(j *jobs.Job) bool { return j.Status.Terminal() })
	stop()
	t.Logf("all %d jobs terminal after %s", len(ps), time.Since(began).Round(time.Millisecond))
	if len(d.errs) > 0 {
		t.Errorf("the chaos itself failed: %v", d.errs)
	}

	// Then every log archived and every pod released.
	final = waitJobs(ctx, t, ids, 4*time.Minute, "archived", func(j *jobs.Job) bool { return j.LogsArchived })
	finalizers := waitFinalizers(ctx, t, 3*time.Minute)

	// Each job's end, against the plan and against its cluster.
	byStatus := map[jobs.Status]int{}
	// The Job controller records a Job's end a moment after its pod's, which status-sync may
	// have applied first: a disagreement is read again until one deadline for all.
	clusterDeadline := time.Now().Add(time.Minute)
	for _, p := range ps {
		j := final[p.id]
		byStatus[j.Status]++
		if j.Status != p.want {
			t.Errorf("job %d (%s, %s): %s (%s: %s), want %s", p.n, p.id, p.task, j.Status, j.Reason, j.Message, p.want)
			continue
		}
		if err := agreesWithClusterBy(ctx, j, clusterDeadline); err != nil {
			t.Errorf("job %d (%s): %v", p.n, p.id, err)
		}
	}

	// Every step that ran: its archived log, byte for byte.
	var steps, lines, bytesCompared int64
	for _, p := range ps {
		j := final[p.id]
		for _, s := range j.Steps {
			if s.Status != jobs.StepSucceeded && s.Status != jobs.StepFailed && s.Status != jobs.StepCancelled {
				continue
			}
			want := small[j.Cluster]
			if p.big && s.Name == bigStep {
				want = bigLog
			}
			got, status, err := download(ctx, j.ID, s.Name)
			if err != nil {
				t.Errorf("job %d (%s) step %s: %v", p.n, j.ID, s.Name, err)
				continue
			}
			if status != "complete" {
				t.Errorf("job %d (%s) step %s: archived log %s", p.n, j.ID, s.Name, status)
			}
			if !bytes.Equal(got, want) {
				js, _ := json.MarshalIndent(j, "    ", "  ")
				t.Errorf("job %d (%s) step %s: archived log of %d bytes (%d lines) differs from the %d bytes (%d lines) the cluster served; first difference at byte %d; the job:\n    %s\nthe replicas' lines about it:\n%s",
					p.n, j.ID, s.Name, len(got), bytes.Count(got, []byte("\n")), len(want), bytes.Count(want, []byte("\n")), firstDiff(got, want), js, omni.LogLines(j.ID, 40))
				continue
			}
			steps++
			lines += int64(bytes.Count(got, []byte("\n")))
			bytesCompared += int64(len(got))
		}
	}

	// Webhooks: each callback job's creation and its end reached the receiver (at least once;
	// the receiver de-duplicates by event id).
	rc.mu.Lock()
	received, unique, callbackJobs := rc.got, 0, 0
	for _, p := range ps {
		if !p.callback {
			continue
		}
		callbackJobs++
		got := rc.byJob[p.id]
		unique += len(got)
		var created, ended bool
		for id, st := range got {
			created = created || rc.types[id] == events.TypeJobCreated
			ended = ended || st == final[p.id].Status
		}
		if !created || !ended {
			t.Errorf("job %d (%s): webhook got %v; want its job.created and a delivery of its end (%s)", p.n, p.id, got, final[p.id].Status)
		}
	}
	rc.mu.Unlock()

	// Nothing left in the queue.
	a, err := call(ctx, http.MethodGet, "/v1/queue", nil)
	var q struct {
		Waiting []json.RawMessage `json:"waiting"`
	}
	if err != nil || a.code != http.StatusOK || json.Unmarshal(a.body, &q) != nil {
		t.Errorf("GET /v1/queue: %d %s %v", a.code, a.body, err)
	} else if len(q.Waiting) > 0 {
		t.Errorf("%d jobs still queued: %s", len(q.Waiting), a.body)
	}
	if err := omni.Crashes(); err != nil {
		t.Errorf("replicas that crashed by themselves: %v", err)
	}

	d.mu.Lock()
	var killed []string
	for fn, n := range d.killed {
		killed = append(killed, fmt.Sprintf("%s %d", fn, n))
	}
	d.mu.Unlock()
	sort.Strings(killed)
	var statuses []string
	for st, n := range byStatus {
		statuses = append(statuses, fmt.Sprintf("%s %d", st, n))
	}
	sort.Strings(statuses)
	summary := fmt.Sprintf("chaos: %d jobs (%s) on %d replicas of each of %d functions in %s; kills %d (%s), adapter stops %d, store freezes %d; "+
		"steps' logs compared %d (%d lines, %.1f MB); webhooks received %d (%d distinct events of %d jobs); dead letters %d; finalizers left %d",
		len(ps), strings.Join(statuses, ", "), omni.Replicas("submit"), len(fleet.Functions), time.Since(began).Round(time.Second),
		d.kills.Load(), strings.Join(killed, ", "), d.adapterStops.Load(), d.storePauses.Load(),
		steps, lines, float64(bytesCompared)/(1<<20), received, unique, callbackJobs, len(omni.DeadLetters()), finalizers)
	t.Log(summary)
	fmt.Println(summary)
	if finalizers != 0 {
		t.Errorf("%d pods still hold the log-archive finalizer", finalizers)
	}
	if d.kills.Load() == 0 || d.adapterStops.Load() == 0 || d.storePauses.Load() == 0 {
		t.Errorf("the chaos did not happen in full (kills %d, adapter stops %d, store freezes %d): the jobs ended too soon", d.kills.Load(), d.adapterStops.Load(), d.storePauses.Load())
	}
}

// waitJobs polls the jobs until done holds for all of them, failing t at the deadline with the
// ones it waited for.
func waitJobs(ctx context.Context, t *testing.T, ids []string, timeout time.Duration, what string, done func(*jobs.Job) bool) map[string]*jobs.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		last    map[string]*jobs.Job
		waiting []string
	)
	for {
		got, err := getJobs(ctx, ids)
		if err == nil {
			last, waiting = got, nil
			for _, id := range ids {
				if !done(got[id]) {
					waiting = append(waiting, id)
				}
			}
			if len(waiting) == 0 {
				return got
			}
		}
		select {
		case <-ctx.Done():
			var show []string
			for _, id := range waiting[:min(len(waiting), 10)] {
				if j := last[id]; j != nil {
					show = append(show, fmt.Sprintf("%s: %s %s (%s) archived=%v; its pods: %s", id, j.Status, j.Reason, j.Cluster, j.LogsArchived, podsOf(j)))
				}
			}
			for _, c := range omni.Platform.Clusters() {
				show = append(show, fmt.Sprintf("kwok-controller of %s, last lines:\n%s", c.Name, tail(filepath.Join(c.KwokDir, "logs", "kwok-controller.log"), 15)))
			}
			t.Fatalf("%d of %d jobs not %s within %s (last error %v); some:\n%s", len(waiting), len(ids), what, timeout, err, strings.Join(show, "\n"))
		case <-tick.C:
		}
	}
}

// waitFinalizers waits until no pod of any cluster holds the log-archive finalizer and returns
// how many still do at the deadline (naming them in the failure).
func waitFinalizers(ctx context.Context, t *testing.T, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var held []string
		var errs []error
		for _, c := range omni.Platform.Clusters() {
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			pods, err := c.Clientset().CoreV1().Pods("default").List(lctx, metav1.ListOptions{LabelSelector: names.LabelJobID})
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("list the pods of %s: %w", c.Name, err))
				continue
			}
			for _, p := range pods.Items {
				if slices.Contains(p.Finalizers, names.PodFinalizer) {
					held = append(held, fmt.Sprintf("%s/%s (job %s, %s, deleted %v)", c.Name, p.Name, p.Labels[names.LabelJobID], p.Status.Phase, p.DeletionTimestamp))
				}
			}
		}
		if len(held) == 0 && len(errs) == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			t.Errorf("after %s, %d pods hold the log-archive finalizer (%v):\n    %s", timeout, len(held), errors.Join(errs...), strings.Join(held, "\n    "))
			return len(held)
		}
		select {
		case <-ctx.Done():
			t.Errorf("waiting for the finalizers: %v", ctx.Err())
			return len(held)
		case <-tick.C:
		}
	}
}

// agreesWithClusterBy is agreesWithCluster, read again every 200 ms until it holds or deadline.
func agreesWithClusterBy(ctx context.Context, j *jobs.Job, deadline time.Time) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := agreesWithCluster(ctx, j)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (then %v)", err, ctx.Err())
		case <-tick.C:
		}
	}
}

// agreesWithCluster checks j's end against its Kubernetes Job: succeeded and failed Jobs carry
// the matching condition; a cancelled job's Job is gone (cancel deletes it).
func agreesWithCluster(ctx context.Context, j *jobs.Job) error {
	if j.Cluster == "" {
		if j.Status == jobs.StatusCancelled {
			return nil // cancelled while queued: nothing was created
		}
		return fmt.Errorf("%s but on no cluster", j.Status)
	}
	c := omni.Platform.Cluster(j.Cluster)
	if c == nil {
		return fmt.Errorf("on unknown cluster %q", j.Cluster)
	}
	list, err := c.Clientset().BatchV1().Jobs("default").List(ctx, metav1.ListOptions{LabelSelector: names.Selector(names.AttemptKey(j.ID, j.Attempt))})
	if err != nil {
		return err
	}
	cond := func(kj batchv1.Job, t batchv1.JobConditionType) bool {
		for _, c := range kj.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}
	switch j.Status {
	case jobs.StatusSucceeded, jobs.StatusFailed:
		want := map[jobs.Status]batchv1.JobConditionType{jobs.StatusSucceeded: batchv1.JobComplete, jobs.StatusFailed: batchv1.JobFailed}[j.Status]
		if len(list.Items) != 1 || !cond(list.Items[0], want) {
			return fmt.Errorf("%s, but its cluster %s has %d Jobs for it, without condition %s", j.Status, j.Cluster, len(list.Items), want)
		}
	case jobs.StatusCancelled:
		for _, kj := range list.Items {
			if kj.DeletionTimestamp == nil {
				return fmt.Errorf("cancelled, but its Job %s on %s is not deleted", kj.Name, j.Cluster)
			}
		}
	}
	return nil
}

// download returns a step's archived log and its Omni-Log-Status.
func download(ctx context.Context, id, step string) ([]byte, string, error) {
	a, err := call(ctx, http.MethodGet, "/v1/jobs/"+id+"/logs/"+step+":download", nil)
	if err != nil {
		return nil, "", err
	}
	if a.code != http.StatusOK {
		return nil, "", fmt.Errorf("download: %d %s", a.code, a.body)
	}
	return a.body, a.header.Get("Omni-Log-Status"), nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// podsOf describes the pods of j's attempt on its cluster: phase, deletion, container states.
func podsOf(j *jobs.Job) string {
	c := omni.Platform.Cluster(j.Cluster)
	if c == nil {
		return "(no cluster)"
	}
	list, err := c.Clientset().CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: names.Selector(names.AttemptKey(j.ID, j.Attempt))})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, p := range list.Items {
		d := fmt.Sprintf("%s %s node=%q deleted=%v finalizers=%v", p.Name, p.Status.Phase, p.Spec.NodeName, p.DeletionTimestamp, p.Finalizers)
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			st, _ := json.Marshal(cs.State)
			d += " " + cs.Name + "=" + string(st)
		}
		out = append(out, d)
	}
	return strings.Join(out, "; ")
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "    " + strings.Join(lines[max(0, len(lines)-n):], "\n    ")
}
