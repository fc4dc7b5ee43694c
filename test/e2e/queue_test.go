package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
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
	path := filepath.Join(filepath.Dir(omni.ClustersDir), "queue.yaml")
	if omni.Policy == nil {
		t.Fatal("the all-in-one has no queue policy")
	}
	policy := `aging: 1h
services:
  qa: {weight: 1, maxClass: urgent}
  qb: {weight: 2, maxClass: urgent}
  "*": {maxClass: urgent}
instances:
  ` + instance + `: {capacity: 2}
`
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(path)
		omni.Policy.Reload()
	})
	// The file watch reloads it; a reload here makes the test independent of its debounce.
	if err := omni.Policy.Reload(); err != nil || omni.Policy.Current().Capacity(instance, 0) != 2 {
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

	// Nothing else may hold the instance: wait for earlier tests' aarch64 jobs to end.
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		active, _, err := omni.Deps.Store.ListActive(context.Background(), "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		busy := 0
		for _, j := range active {
			if j.Arch == arch {
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

	// The watches: every Job of the instance in creation order (the start order), and every pod
	// with the most that had not ended at once (the slots in use). A slot is in use from the
	// Job's creation to its pod's end: the Job controller may mark a Job complete a little after
	// its pod ended, when the job is already terminal and its slot free.
	cs := omni.Platform.Cluster(arch).Clientset()
	sel := metav1.ListOptions{LabelSelector: manifest.LabelService + " in (qa,qb)"}
	jw, err := cs.BatchV1().Jobs("default").Watch(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	defer jw.Stop()
	pw, err := cs.CoreV1().Pods("default").Watch(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Stop()
	var mu sync.Mutex
	var started []string
	seen := map[string]bool{}
	live := map[string]bool{}  // jobs created whose pod has not ended
	ended := map[string]bool{} // jobs whose pod ended
	maxLive := 0
	startedCh := make(chan string, 64)
	go func() {
		for ev := range jw.ResultChan() {
			kj, ok := ev.Object.(*batchv1.Job)
			if !ok || ev.Type != watch.Added {
				continue
			}
			id := kj.Labels[jobIDLabel]
			mu.Lock()
			if !seen[id] {
				seen[id] = true
				started = append(started, id)
				if !ended[id] {
					live[id] = true
				}
				maxLive = max(maxLive, len(live))
				startedCh <- id
			}
			mu.Unlock()
		}
	}()
	go func() {
		for ev := range pw.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			id := pod.Labels[jobIDLabel]
			mu.Lock()
			if ev.Type == watch.Deleted || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				ended[id] = true
				delete(live, id)
			} else if !ended[id] {
				live[id] = true
			}
			maxLive = max(maxLive, len(live))
			mu.Unlock()
		}
	}()

	// A second dispatcher over the same store, clusters and policy: another replica.
	other := submit.New(submit.Settings{JobTTLSecondsAfterFinished: 3600}, submit.Deps{
		Store: omni.Deps.Store, Catalogue: func() submit.Catalogue { return omni.Deps.Catalogue.Current() },
		Clusters: submit.KubePlacer{Clusters: omni.Deps.Clusters}, Emitter: omni.Deps.Emitter,
		Queue: submit.QueueDeps{Store: omni.Deps.Store, Instances: submit.KubeInstances{Clusters: omni.Deps.Clusters}, Policy: omni.Policy.Current},
	})
	storm := func() {
		var wg sync.WaitGroup
		for _, h := range []*submit.Handler{omni.Submit, other, omni.Submit, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := h.Dispatch(context.Background(), submit.DispatchOptions{}); err != nil {
					t.Errorf("dispatch: %v", err)
				}
			}()
		}
		wg.Wait()
	}

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
		if j.Status != want || j.Queue == nil || j.Queue.Class != p.class {
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

	waitStart := func(what string) string {
		t.Helper()
		select {
		case id := <-startedCh:
			return id
		case <-time.After(2 * time.Minute):
			t.Fatalf("no Job started within 2 minutes (%s)", what)
			return ""
		}
	}
	byID := map[string]*qJob{}
	for _, j := range all {
		byID[j.id] = j
	}
	running := []*qJob{byID[waitStart("first")], byID[waitStart("second")]}
	waiting := append([]*qJob(nil), all[2:]...)
	for len(waiting) > 0 {
		// Let the oldest running job end; the next start must be the model's pick.
		done := running[0]
		running = running[1:]
		lqSetHold(t, arch, done.id, "")
		storm()
		use := map[string]int{}
		for _, j := range running {
			use[j.service]++
		}
		want := qNext(waiting, use)
		got := byID[waitStart("after "+done.id)]
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
		lqSetHold(t, arch, j.id, "")
	}
	for _, j := range all {
		root.wait(t, j.id, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	}
	mu.Lock()
	defer mu.Unlock()
	if maxLive > 2 {
		t.Errorf("the watches saw %d jobs in progress at once on an instance of 2 slots", maxLive)
	}
	if len(started) != len(all) {
		t.Errorf("the watch saw %d Jobs start for %d jobs (a job placed twice, or the cancelled one created)", len(started), len(all))
	}
	for _, id := range started {
		if id == c.ID {
			t.Errorf("the job cancelled while queued was created on the cluster")
		}
	}
}
