package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// qJob is one job of the queue test, as the test models it.
type qJob struct {
	service, class string
	id             string
	created        time.Time
}

// qWeights and qRank are the test's own copy of the policy it writes (weights 1 and 2).
var (
	qWeights = map[string]int{"qa": 1, "qb": 2}
	qRank    = map[string]int{"urgent": 0, "normal": 1, "background": 2}
)

// qNext is the test's independent model of the policy: the highest class first; among its
// jobs, the service with the fewest running slots per weight (exact cross-multiplication), a
// tie to the older job; FIFO within a service.
func qNext(waiting []*qJob, running map[string]int) *qJob {
	var best *qJob
	for _, j := range waiting {
		if best == nil {
			best = j
			continue
		}
		rj, rb := qRank[j.class], qRank[best.class]
		if rj != rb {
			if rj < rb {
				best = j
			}
			continue
		}
		uj, ub := running[j.service]*qWeights[best.service], running[best.service]*qWeights[j.service]
		if uj != ub {
			if uj < ub {
				best = j
			}
			continue
		}
		if j.created.Before(best.created) {
			best = j
		}
	}
	return best
}

// qUsePolicy writes the local host's queue policy and waits until it is loaded; the previous
// policy (none) comes back at the end.
func qUsePolicy(t *testing.T, instance string) {
	t.Helper()
	qWritePolicy(t, instance, `aging: 1h
services:
  qa: {weight: 1, maxClass: urgent}
  qb: {weight: 2, maxClass: urgent}
  "*": {maxClass: urgent}
instances:
  `+instance+`: {capacity: 2}
`)
}

// qWritePolicy writes policy as the local host's queue policy and loads it; the previous
// policy (none) comes back at the end.
func qWritePolicy(t *testing.T, instance, policy string) {
	t.Helper()
	path := filepath.Join(filepath.Dir(omni.ClustersDir), "queue.yaml")
	if omni.Policy == nil {
		t.Fatal("the all-in-one has no queue policy")
	}
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(path)
		omni.Policy.Reload()
	})
	// The file watch reloads it; a reload here makes the test independent of its debounce.
	if err := omni.Policy.Reload(); err != nil || omni.Policy.Current().Capacity(instance, -1) == -1 {
		t.Fatalf("queue policy %s not loaded: %v", path, err)
	}
}

// TestQueueFairOrder: aarch64 with one instance of 2 slots, 12 jobs of two services with
// weights 1 and 2 in mixed classes, each held running until the test lets it end. A watch on
// the cluster never sees more than 2 Jobs unfinished at once; each Job starts in the order the
// test's own model of the policy gives; every dispatch pass is also run, duplicated, by the
// local dispatcher and a second one over the same store (as another replica would be); all
// succeed; nothing is refused with 503. A job cancelled while queued ends cancelled and the
// watch never sees an object of it.
func TestQueueFairOrder(t *testing.T) {
	const arch, step = "aarch64", "build-rpm"
	ins := omni.Deps.Clusters.Instances(arch)
	if len(ins) != 1 {
		t.Fatalf("%d %s instances, want 1", len(ins), arch)
	}
	qUsePolicy(t, ins[0].Name)
	qWaitIdle(t, arch)
	w := qWatch(t, arch, "qa,qb")
	storm := qStorm(t, omni)

	plan := []struct{ service, class string }{
		{"qa", "normal"}, {"qb", "normal"}, // these two start at once
		{"qa", "background"}, {"qa", "normal"}, {"qb", "normal"}, {"qb", "background"}, {"qa", "urgent"},
		{"qb", "normal"}, {"qa", "normal"}, {"qb", "urgent"}, {"qb", "normal"}, {"qa", "background"},
	}
	var all []*qJob
	for i, p := range plan {
		req := rpmJob(p.service, arch, map[string]string{platform.AnnotationHoldStep: step})
		req["class"] = p.class
		r := root.do(t, http.MethodPost, "/v1/jobs", req)
		if r.code != http.StatusCreated {
			t.Fatalf("submit %d: %d %s (want 201, never 503)", i, r.code, r.body)
		}
		j := r.job(t)
		want := jobs.StatusQueued
		if i < 2 {
			want = jobs.StatusPending
		}
		placedRunning := want == jobs.StatusPending && j.Status == jobs.StatusRunning // started already
		if (j.Status != want && !placedRunning) || j.Queue == nil || j.Queue.Class != p.class {
			t.Fatalf("submit %d: status %s queue %+v, want %s of class %s", i, j.Status, j.Queue, want, p.class)
		}
		if want == jobs.StatusQueued && (j.Queue.Position < 1 || j.Queue.Reason == "") {
			t.Errorf("queued job %d shows no position or reason: %+v", i, j.Queue)
		}
		all = append(all, &qJob{service: p.service, class: p.class, id: j.ID, created: j.CreatedAt})
	}

	// Cancel while queued: cancelled, and never on the cluster.
	c := root.submit(t, rpmJob("qa", arch, nil))
	if c.Status != jobs.StatusQueued {
		t.Fatalf("13th job is %s, want queued", c.Status)
	}
	r := root.do(t, http.MethodDelete, "/v1/jobs/"+c.ID, nil)
	if r.code != http.StatusOK || r.job(t).Status != jobs.StatusCancelled {
		t.Fatalf("cancel of a queued job: %d %s", r.code, r.body)
	}

	// GET /v1/queue: the 10 waiting jobs, the instance full.
	var view submit.QueueView
	if r := root.do(t, http.MethodGet, "/v1/queue?arch="+arch, nil); r.code != http.StatusOK {
		t.Fatalf("GET /v1/queue: %d %s", r.code, r.body)
	} else if err := json.Unmarshal(r.body, &view); err != nil {
		t.Fatal(err)
	}
	if len(view.Waiting) != 10 || len(view.Instances) != 1 || view.Instances[0].InUse != 2 || view.Instances[0].Free != 0 {
		t.Errorf("GET /v1/queue: %d waiting, instances %+v; want 10 and 2 of 2 in use", len(view.Waiting), view.Instances)
	}

	byID := map[string]*qJob{}
	for _, j := range all {
		byID[j.id] = j
	}
	running := []*qJob{byID[w.next(t, "first")], byID[w.next(t, "second")]}
	waiting := append([]*qJob(nil), all[2:]...)
	for len(waiting) > 0 {
		// Let the oldest running job end; the next start must be the model's pick.
		done := running[0]
		running = running[1:]
		qRelease(t, arch, done.id, "")
		storm()
		use := map[string]int{}
		for _, j := range running {
			use[j.service]++
		}
		want := qNext(waiting, use)
		got := byID[w.next(t, "after "+done.id)]
		if got == nil || got.id != want.id {
			t.Fatalf("started %+v, want %+v (waiting %d, running %v)", got, want, len(waiting), use)
		}
		for i, j := range waiting {
			if j == want {
				waiting = append(waiting[:i], waiting[i+1:]...)
				break
			}
		}
		running = append(running, got)
	}
	for _, j := range running {
		qRelease(t, arch, j.id, "")
	}
	for _, j := range all {
		root.wait(t, j.id, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	}
	for _, j := range all {
		w.waitEnded(t, j.id)
	}
	if n := w.maxInProgress(); n > 2 {
		t.Errorf("the watches saw %d jobs in progress at once on an instance of 2 slots", n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.started) != len(all) {
		t.Errorf("the watch saw %d Jobs start for %d jobs (a job placed twice, or the cancelled one created)", len(w.started), len(all))
	}
	for _, id := range w.started {
		if id == c.ID {
			t.Errorf("the job cancelled while queued was created on the cluster")
		}
	}
}

// qStorm returns a func that runs four dispatch passes at once: two by m's dispatcher and two
// by a second one over the same store, clusters and policy (another replica).
func qStorm(t *testing.T, m *allinone.Main) func() {
	other := submit.New(submit.Settings{JobTTLSecondsAfterFinished: 3600}, submit.Deps{
		Store: m.Deps.Store, Catalogue: func() submit.Catalogue { return m.Deps.Catalogue.Current() },
		Clusters: submit.KubePlacer{Clusters: m.Deps.Clusters}, Emitter: m.Deps.Emitter,
		Queue: submit.QueueDeps{Store: m.Deps.Store, Instances: submit.KubeInstances{Clusters: m.Deps.Clusters}, Policy: m.Policy.Current},
	})
	return func() {
		var wg sync.WaitGroup
		for _, h := range []*submit.Handler{m.Submit, other, m.Submit, other} {
			wg.Go(func() {
				if _, err := h.Dispatch(context.Background(), submit.DispatchOptions{}); err != nil {
					t.Errorf("dispatch: %v", err)
				}
			})
		}
		wg.Wait()
	}
}

// qWaitIdle waits until no job of arch is unfinished (earlier tests' jobs hold no slots but
// would share the cluster).
func qWaitIdle(t *testing.T, arch string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		active, _, err := omni.Deps.Store.ListUnsettled(context.Background(), "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		busy := 0
		for _, j := range active {
			if j.Arch == arch && !j.Status.Terminal() {
				busy++
			}
		}
		if busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s jobs of earlier tests still unfinished after 2 minutes", busy, arch)
		}
		<-tick.C
	}
}

// qWatcher follows the Jobs and pods of some services on a cluster. A job is in progress
// (holds its slots) from its Job's creation to its pod's end; both are recorded with their
// resourceVersion, which one API server (etcd) orders globally, so overlaps are judged in the
// cluster's own order, not in the order two watches happen to deliver. (The Job controller may
// mark a Job complete a little after its pod ended, when the job is already terminal and its
// slot free: the pod's end is what counts.)
type qWatcher struct {
	mu        sync.Mutex
	started   []string         // job ids in Job creation order
	createdRV map[string]int64 // job id → resourceVersion of its Job's creation
	endedRV   map[string]int64 // job id → resourceVersion of its pod's end
	startedCh chan string
}

// qWatch starts watching the Jobs and pods of services (comma-separated) on arch's cluster.
func qWatch(t *testing.T, arch, services string) *qWatcher {
	t.Helper()
	return qWatchOn(t, omni.Platform.Cluster(arch).Clientset(), services)
}

// qWatchOn starts watching the Jobs and pods of services (comma-separated) on cs.
func qWatchOn(t *testing.T, cs kubernetes.Interface, services string) *qWatcher {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: names.LabelService + " in (" + services + ")"}
	jw, err := cs.BatchV1().Jobs("default").Watch(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jw.Stop)
	pw, err := cs.CoreV1().Pods("default").Watch(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pw.Stop)
	w := &qWatcher{createdRV: map[string]int64{}, endedRV: map[string]int64{}, startedCh: make(chan string, 64)}
	rv := func(o metav1.Object) int64 {
		n, err := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
		if err != nil {
			t.Errorf("resourceVersion %q of %s is not a number", o.GetResourceVersion(), o.GetName())
		}
		return n
	}
	go func() {
		for ev := range jw.ResultChan() {
			kj, ok := ev.Object.(*batchv1.Job)
			if !ok || ev.Type != watch.Added {
				continue
			}
			id := kj.Labels[jobIDLabel]
			w.mu.Lock()
			if _, seen := w.createdRV[id]; !seen {
				w.createdRV[id] = rv(kj)
				w.started = append(w.started, id)
				w.startedCh <- id
			}
			w.mu.Unlock()
		}
	}()
	go func() {
		for ev := range pw.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			id := pod.Labels[jobIDLabel]
			w.mu.Lock()
			if _, done := w.endedRV[id]; !done && (ev.Type == watch.Deleted || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed) {
				w.endedRV[id] = rv(pod)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// maxInProgress is the most jobs in progress at once, in the cluster's order; a job whose end
// was not seen counts to the end.
func (w *qWatcher) maxInProgress() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	type edge struct {
		rv    int64
		delta int
	}
	var edges []edge
	for id, c := range w.createdRV {
		edges = append(edges, edge{c, +1})
		if e, ok := w.endedRV[id]; ok {
			edges = append(edges, edge{e, -1})
		}
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].rv != edges[j].rv {
			return edges[i].rv < edges[j].rv
		}
		return edges[i].delta < edges[j].delta
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// waitEnded waits until the end of job id's pod was seen and returns its resourceVersion.
func (w *qWatcher) waitEnded(t *testing.T, id string) int64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		rv, ok := w.endedRV[id]
		w.mu.Unlock()
		if ok {
			return rv
		}
		if time.Now().After(deadline) {
			t.Fatalf("the end of job %s's pod was not seen within 2 minutes", id)
		}
		<-tick.C
	}
}

// next waits for the next Job to be created.
func (w *qWatcher) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case id := <-w.startedCh:
		return id
	case <-time.After(2 * time.Minute):
		t.Fatalf("no Job created within 2 minutes (%s)", what)
		return ""
	}
}

// TestQueueConcurrencyKey: two jobs with the same concurrency key (limit 1) on an instance with
// room for both: the second waits, with the key as its reason, and its Job is created only
// after the first one's pod ended; a job with another key runs beside the first.
func TestQueueConcurrencyKey(t *testing.T) {
	const arch, step = "aarch64", "build-rpm"
	ins := omni.Deps.Clusters.Instances(arch)
	qWritePolicy(t, ins[0].Name, `jobTypes:
  buildrpm: {concurrencyKey: "{{.parameters.srpmUrl}}", concurrencyLimit: 1}
instances:
  `+ins[0].Name+`: {capacity: 5}
`)
	qWaitIdle(t, arch)
	w := qWatch(t, arch, "qk")
	hold := map[string]string{platform.AnnotationHoldStep: step}
	first := root.submit(t, rpmJob("qk", arch, hold))
	second := root.submit(t, rpmJob("qk", arch, hold))
	other := rpmJob("qk", arch, hold)
	other["parameters"] = map[string]any{"srpmUrl": "https://repo.example.org/src/other-1.0-1.src.rpm"}
	third := root.submit(t, other)
	t.Cleanup(func() { qCancelUnfinished(t, first.ID, second.ID, third.ID) })
	// Placed at once: the answer shows them pending, or running already (a loaded machine).
	placed := func(j *jobs.Job) bool { return j.Status == jobs.StatusPending || j.Status == jobs.StatusRunning }
	if !placed(first) || !placed(third) {
		t.Fatalf("first %s, other key %s: want both placed (pending or running)", first.Status, third.Status)
	}
	if second.Status != jobs.StatusQueued || second.Queue == nil || !strings.Contains(second.Queue.Reason, "concurrency key") {
		t.Fatalf("second of the same key: %s %+v, want queued for its concurrency key", second.Status, second.Queue)
	}
	got := map[string]bool{w.next(t, "first"): true, w.next(t, "other key"): true}
	if !got[first.ID] || !got[third.ID] {
		t.Fatalf("created %v, want %s and %s", got, first.ID, third.ID)
	}
	qRelease(t, arch, first.ID, "")
	if id := w.next(t, "second after the first ended"); id != second.ID {
		t.Fatalf("created %s, want %s", id, second.ID)
	}
	firstEnd := w.waitEnded(t, first.ID)
	w.mu.Lock()
	secondCreated := w.createdRV[second.ID]
	w.mu.Unlock()
	if secondCreated < firstEnd {
		t.Errorf("the second job of the key was created (resourceVersion %d) before the first one's pod ended (%d)", secondCreated, firstEnd)
	}
	qRelease(t, arch, second.ID, "")
	qRelease(t, arch, third.ID, "")
	for _, j := range []*jobs.Job{first, second, third} {
		root.wait(t, j.ID, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	}
}

// TestRerunLinksBothWays: POST /v1/jobs/{id}:rerun queues a new job with the same request,
// linked both ways, and it runs; a viewer may not rerun.
func TestRerunLinksBothWays(t *testing.T) {
	orig := alice.submit(t, rpmJob("team-a", "x86_64", nil))
	alice.wait(t, orig.ID, "ended", terminal)
	if r := bob.do(t, http.MethodPost, "/v1/jobs/"+orig.ID+":rerun", nil); r.code != http.StatusNotFound {
		t.Errorf("another service's viewer reruns: %d, want 404", r.code)
	}
	r := alice.do(t, http.MethodPost, "/v1/jobs/"+orig.ID+":rerun", nil)
	if r.code != http.StatusCreated {
		t.Fatalf("rerun: %d %s", r.code, r.body)
	}
	re := r.job(t)
	if re.RerunOf != orig.ID || re.Task != orig.Task || re.Arch != orig.Arch {
		t.Errorf("rerun job: rerunOf %q task %s arch %s", re.RerunOf, re.Task, re.Arch)
	}
	got := alice.do(t, http.MethodGet, "/v1/jobs/"+orig.ID, nil).job(t)
	if len(got.Reruns) != 1 || got.Reruns[0] != re.ID {
		t.Errorf("original's reruns %v, want [%s]", got.Reruns, re.ID)
	}
	done := alice.wait(t, re.ID, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	// What it ran with: the job type's current digest (GET /v1/tasks) and its images.
	var tasks struct {
		Tasks []struct{ Name, Digest string } `json:"tasks"`
	}
	if err := json.Unmarshal(alice.do(t, http.MethodGet, "/v1/tasks", nil).body, &tasks); err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, tk := range tasks.Tasks {
		if tk.Name == done.Task {
			want = tk.Digest
		}
	}
	if done.Ran == nil || want == "" || done.Ran.TaskDigest != want || len(done.Ran.Images) == 0 {
		t.Errorf("rerun ran with %+v, want digest %q and images", done.Ran, want)
	}
}

// qRelease lets job id's held step end, once its pod exists.
func qRelease(t *testing.T, arch, id, _ string) {
	t.Helper()
	qReleaseOn(t, omni.Platform.Cluster(arch).Clientset(), id)
}

// qReleaseOn lets job id's held step end on cs, once its pod exists.
func qReleaseOn(t *testing.T, cs kubernetes.Interface, id string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s has %d pods after 2 minutes, want 1", id, len(pods.Items))
		}
		<-tick.C
	}
	lqSetHoldOn(t, cs, id, "")
}

// TestEvictedPodRunsAgain: a pod evicted mid-build (the Eviction API, as `kubectl drain` does)
// sends its job back to the queue as attempt 2, on objects of its own; attempt 2 runs and
// succeeds; both attempts' logs are archived and readable apart. A step that fails on its own
// is not retried.
func TestEvictedPodRunsAgain(t *testing.T) {
	const arch, step = "x86_64", "build-rpm"
	ctx := context.Background()
	cs := omni.Platform.Cluster(arch).Clientset()
	j := alice.submit(t, rpmJob("team-a", arch, map[string]string{platform.AnnotationHoldStep: step}))
	stepRunning := func(j *jobs.Job) bool {
		for _, s := range j.Steps {
			if s.Name == step {
				return s.Status == jobs.StepRunning
			}
		}
		return false
	}
	alice.wait(t, j.ID, "step "+step+" of attempt 1 running", func(j *jobs.Job) bool { return j.CurrentAttempt() == 1 && stepRunning(j) })
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: names.Selector(j.ID)})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of attempt 1: %v (%d)", err, len(pods.Items))
	}
	first := pods.Items[0].Name
	if err := cs.CoreV1().Pods("default").EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: first, Namespace: "default"}}); err != nil {
		t.Fatalf("evict pod %s: %v", first, err)
	}
	again := alice.wait(t, j.ID, "step "+step+" of attempt 2 running", func(j *jobs.Job) bool { return j.CurrentAttempt() == 2 && stepRunning(j) })
	if len(again.Attempts) != 1 || again.Attempts[0].Reason != jobs.ReasonDisrupted || again.Attempts[0].Status != jobs.StatusFailed {
		t.Fatalf("attempt 1 recorded as %+v, want failed, Disrupted", again.Attempts)
	}
	pods, err = cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: names.Selector(names.AttemptKey(j.ID, 2))})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Name == first {
		t.Fatalf("pods of attempt 2: %v (%d)", err, len(pods.Items))
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, platform.AnnotationHoldStep)
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, pods.Items[0].Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	done := alice.wait(t, j.ID, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	if done.Attempt != 2 || len(done.Attempts) != 1 {
		t.Errorf("ended as attempt %d with %d earlier attempts, want 2 and 1", done.Attempt, len(done.Attempts))
	}
	// Both attempts' logs, each archived under its own key, each served by its number.
	for _, attempt := range []string{"1", "2"} {
		path := "/v1/jobs/" + j.ID + "/logs/" + step + ":download?attempt=" + attempt
		deadline := time.Now().Add(2 * time.Minute)
		tick := time.NewTicker(50 * time.Millisecond)
		for {
			r := alice.do(t, http.MethodGet, path, nil)
			if r.code == http.StatusOK && len(r.body) > 0 {
				break
			}
			if r.code != http.StatusConflict || time.Now().After(deadline) {
				t.Fatalf("download of attempt %s: %d %s, want the archived log within 2 minutes", attempt, r.code, r.body)
			}
			<-tick.C
		}
		tick.Stop()
	}
	if r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs?step="+step+"&attempt=3", nil); r.code != http.StatusBadRequest {
		t.Errorf("logs of attempt 3 of a job with 2: %d, want 400", r.code)
	}

	// A step that fails on its own ends the job failed, as attempt 1.
	failing := alice.submit(t, rpmJob("team-a", arch, map[string]string{"omni.test/fail-step": step}))
	got := alice.wait(t, failing.ID, "ended", terminal)
	if got.Status != jobs.StatusFailed || got.CurrentAttempt() != 1 || len(got.Attempts) != 0 {
		t.Errorf("failing step: %s as attempt %d with %d earlier attempts, want failed as attempt 1", got.Status, got.CurrentAttempt(), len(got.Attempts))
	}
}

// dyingStore is the store of a dispatcher that dies (its goroutine ends, as the process would)
// right after its first slot claim, before recording any dispatch.
type dyingStore struct{ submit.QueueStore }

func (d dyingStore) ClaimSlot(ctx context.Context, scope string, index int, holder string) (bool, error) {
	ok, err := d.QueueStore.ClaimSlot(ctx, scope, index, holder)
	if ok && err == nil {
		goruntime.Goexit()
	}
	return ok, err
}

// dyingInstances are the instances of a dispatcher that dies right before creating a job's
// objects, its dispatch recorded.
type dyingInstances struct{ all submit.Instances }

type dyingInstance struct{ submit.Instance }

func (d dyingInstances) Instances(arch string) []submit.Instance {
	var out []submit.Instance
	for _, in := range d.all.Instances(arch) {
		out = append(out, dyingInstance{in})
	}
	return out
}

// Instance returns the instance called name.
func (d dyingInstances) Instance(name string) (submit.Instance, error) {
	in, err := d.all.Instance(name)
	return dyingInstance{in}, err
}

func (dyingInstance) Create(context.Context, string, []*unstructured.Unstructured) error {
	goruntime.Goexit()
	return nil
}

// TestDispatcherStoppedMidway: a dispatcher that stops between claiming a slot and recording the
// dispatch, and one that stops between recording it and creating the objects: another replica
// (its orphan and repair ages shortened) frees the orphaned claim and creates the objects, and
// each job runs exactly once, on an instance never over its 2 slots. The dispatch Trigger's
// deliveries and the dispatch resync's ticks are dropped meanwhile, so that only the test's
// dispatchers place the jobs.
func TestDispatcherStoppedMidway(t *testing.T) {
	const arch, step = "aarch64", "build-rpm"
	ins := omni.Deps.Clusters.Instances(arch)
	qUsePolicy(t, ins[0].Name)
	qWaitIdle(t, arch)
	omni.Router.SetDrop(func(trigger string, _ event.Event) bool { return trigger == "dispatch" || trigger == "dispatch-resync" })
	t.Cleanup(func() { omni.Router.SetDrop(nil) })
	w := qWatch(t, arch, "qa")
	replica := func(st submit.QueueStore, in submit.Instances) *submit.Handler {
		return submit.New(submit.Settings{JobTTLSecondsAfterFinished: 3600}, submit.Deps{
			Store: omni.Deps.Store, Catalogue: func() submit.Catalogue { return omni.Deps.Catalogue.Current() },
			Clusters: submit.KubePlacer{Clusters: omni.Deps.Clusters}, Emitter: omni.Deps.Emitter,
			Queue: submit.QueueDeps{Store: st, Instances: in, Policy: omni.Policy.Current},
		})
	}
	kubeIns := submit.KubeInstances{Clusters: omni.Deps.Clusters}
	healthy := replica(omni.Deps.Store, kubeIns)
	healthy.Dispatcher.OrphanAge, healthy.Dispatcher.RepairAfter = time.Second, time.Second
	die := func(h *submit.Handler) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.Dispatch(context.Background(), submit.DispatchOptions{})
			t.Error("the dying dispatcher's pass returned instead of stopping")
		}()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("the dying dispatcher's pass did not stop within a minute")
		}
	}
	// Two held jobs fill the instance; x and y wait.
	a := root.submit(t, rpmJob("qa", arch, map[string]string{platform.AnnotationHoldStep: step}))
	b := root.submit(t, rpmJob("qa", arch, map[string]string{platform.AnnotationHoldStep: step}))
	x, y := root.submit(t, rpmJob("qa", arch, nil)), root.submit(t, rpmJob("qa", arch, nil))
	t.Cleanup(func() { qCancelUnfinished(t, a.ID, b.ID, x.ID, y.ID) })
	if a.Status == jobs.StatusQueued || b.Status == jobs.StatusQueued || x.Status != jobs.StatusQueued || y.Status != jobs.StatusQueued {
		t.Fatalf("statuses %s %s %s %s, want two placed (pending or running), then queued queued", a.Status, b.Status, x.Status, y.Status)
	}
	qRelease(t, arch, a.ID, "")
	root.wait(t, a.ID, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })

	// 1. Stopped after claiming the freed slot for x: x stays queued, the claim orphaned.
	die(replica(dyingStore{omni.Deps.Store}, kubeIns))
	if got := qGet(t, x.ID); got.Status != jobs.StatusQueued {
		t.Fatalf("x after its dispatcher died holding a claim: %s, want queued", got.Status)
	}
	qDispatchUntil(t, healthy, "x dispatched once its orphaned claim is freed", func() bool { return qGet(t, x.ID).Status != jobs.StatusQueued })
	root.wait(t, x.ID, "x succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })

	// 2. Stopped after recording y's dispatch, before creating its objects.
	die(replica(omni.Deps.Store, dyingInstances{kubeIns}))
	if got := qGet(t, y.ID); got.Status != jobs.StatusPending {
		t.Fatalf("y after its dispatcher died before creating: %s, want pending", got.Status)
	}
	qDispatchUntil(t, healthy, "y's objects created by the repair", func() bool {
		ok, err := ins[0].HasJob(context.Background(), "default", y.ID)
		return err == nil && ok
	})
	root.wait(t, y.ID, "y succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	qRelease(t, arch, b.ID, "")
	root.wait(t, b.ID, "b succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	for _, j := range []*jobs.Job{a, b, x, y} {
		w.waitEnded(t, j.ID)
	}
	if n := w.maxInProgress(); n > 2 {
		t.Errorf("the watches saw %d jobs in progress at once on an instance of 2 slots", n)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	count := map[string]int{}
	for _, id := range w.started {
		count[id]++
	}
	for _, j := range []*jobs.Job{a, b, x, y} {
		if count[j.ID] != 1 {
			t.Errorf("job %s was created %d times, want once", j.ID, count[j.ID])
		}
	}
}

// qDispatchUntil runs passes with repairs of h until cond holds (within 2 minutes).
func qDispatchUntil(t *testing.T, h *submit.Handler, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if _, err := h.Dispatch(context.Background(), submit.DispatchOptions{Repair: true}); err != nil {
			t.Fatalf("dispatch: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 2 minutes for %s", what)
		}
		<-tick.C
	}
}

// qGet reads job id as root.
func qGet(t *testing.T, id string) *jobs.Job {
	t.Helper()
	return root.do(t, http.MethodGet, "/v1/jobs/"+id, nil).job(t)
}

// qCancelUnfinished cancels those of ids that have not ended (a test that failed half way leaves
// held jobs running, which would hold the slots of the tests after it).
func qCancelUnfinished(t *testing.T, ids ...string) {
	for _, id := range ids {
		if j := qGet(t, id); !j.Status.Terminal() {
			if r := root.do(t, http.MethodDelete, "/v1/jobs/"+id, nil); r.code != http.StatusOK {
				t.Errorf("cancel %s after the test: %d %s", id, r.code, r.body)
			}
		}
	}
}
