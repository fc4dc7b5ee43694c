package submit

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

// fakeInstance is an engine instance that records which jobs' objects exist on it.
type fakeInstance struct {
	name             string
	capacity, weight int

	mu      sync.Mutex
	objects map[string]int // job id → creations
	refuse  []error        // the next creations fail with these, in turn
	// beforeCreate, if set, is called at each creation (before the refusals).
	beforeCreate func(id string)
}

func (f *fakeInstance) ClusterName() string  { return f.name }
func (f *fakeInstance) JobNamespace() string { return "builds" }
func (f *fakeInstance) Capacity() int        { return f.capacity }
func (f *fakeInstance) Weight() int          { return f.weight }
func (f *fakeInstance) Create(_ context.Context, id string, _ []*unstructured.Unstructured) error {
	if f.beforeCreate != nil {
		f.beforeCreate(id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.refuse) > 0 {
		err := f.refuse[0]
		f.refuse = f.refuse[1:]
		return err
	}
	f.objects[id]++
	return nil
}
func (f *fakeInstance) HasJob(_ context.Context, _, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.objects[id] > 0, nil
}
func (f *fakeInstance) DeleteJobObjects(_ context.Context, _, _, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objects, id)
	return nil
}

type fakeInstances []*fakeInstance

func (f fakeInstances) Instances(arch string) []Instance {
	if arch != "aarch64" {
		return nil
	}
	out := make([]Instance, len(f))
	for i, in := range f {
		out[i] = in
	}
	return out
}

func (f fakeInstances) Instance(name string) (Instance, error) {
	for _, in := range f {
		if in.name == name {
			return in, nil
		}
	}
	return nil, jobs.ErrNotFound
}

// queueFixture is a store, a policy, and n dispatchers (replicas) over them.
type queueFixture struct {
	store     *sqlite.Store
	instances fakeInstances
	policy    *queue.Policy
	handlers  []*Handler
	events    *recorder
}

func newQueue(t *testing.T, policy string, replicas int, instances ...*fakeInstance) *queueFixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := manifest.Load(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := queue.Parse([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range instances {
		in.objects = map[string]int{}
	}
	f := &queueFixture{store: st, instances: instances, policy: pol, events: &recorder{}}
	for range replicas {
		h := &Handler{Store: st, Catalogue: func() Catalogue { return cat }, Emitter: f.events, Deleter: instances[0],
			Dispatcher: &Dispatcher{Store: st, Instances: f.instances, Policy: func() *queue.Policy { return f.policy }}}
		f.handlers = append(f.handlers, h)
	}
	return f
}

var admin = &auth.Principal{User: "root", Role: auth.RoleAdmin, Services: []string{"*"}}

func (f *queueFixture) submit(t *testing.T, service, class string) *jobs.Job {
	t.Helper()
	req := request()
	req.Service, req.Class = service, class
	j, _, err := f.handlers[0].Submit(context.Background(), admin, req, "")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return j
}

// end makes job id succeed, as status-sync would.
func (f *queueFixture) end(t *testing.T, id string) {
	t.Helper()
	if _, _, err := f.store.UpdateJob(context.Background(), id, func(j *jobs.Job) (bool, error) {
		at := time.Now()
		j.Status, j.FinishedAt = jobs.StatusSucceeded, &at
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func (f *queueFixture) get(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := f.store.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestQueuedWhenFullThenDispatched(t *testing.T) {
	in := &fakeInstance{name: "arm-1", capacity: 2, weight: 1}
	f := newQueue(t, "", 1, in)
	a, b, c := f.submit(t, "release", ""), f.submit(t, "release", ""), f.submit(t, "release", "")
	if a.Status != jobs.StatusPending || b.Status != jobs.StatusPending || a.Cluster != "arm-1" {
		t.Fatalf("first two: %s %s on %q, want pending on arm-1", a.Status, b.Status, a.Cluster)
	}
	if c.Status != jobs.StatusQueued || c.Queue.Position != 1 || c.Queue.Reason != "aarch64: 2 of 2 slots in use" {
		t.Fatalf("third: %s %+v, want queued at 1 because aarch64 is full", c.Status, c.Queue)
	}
	f.end(t, a.ID)
	rep, err := f.handlers[0].Dispatch(context.Background(), DispatchOptions{})
	if err != nil || rep.Dispatched != 1 || rep.Released != 1 {
		t.Fatalf("pass after an end: %+v, %v; want 1 dispatched and a's slot released", rep, err)
	}
	got := f.get(t, c.ID)
	if got.Status != jobs.StatusPending || got.Queue.DispatchedAt == nil || got.Queue.Position != 0 || got.Queue.Reason != "" {
		t.Errorf("third after a slot freed: %s %+v", got.Status, got.Queue)
	}
	if in.objects[c.ID] != 1 {
		t.Errorf("third created %d times", in.objects[c.ID])
	}
	if got.Ran == nil || !strings.HasPrefix(got.Ran.TaskDigest, "sha256:") || len(got.Ran.Images) == 0 {
		t.Errorf("third ran with %+v, want the job type's digest and its images", got.Ran)
	}
	// The slot a's end freed went to c in the same pass: one dispatch lag observed.
	if n := series(queueLag); n < 1 {
		t.Errorf("omni_queue_dispatch_lag_seconds has %d series, want the aarch64 one", n)
	}
	if n := series(queueWait); n < 1 {
		t.Errorf("omni_queue_wait_seconds has %d series", n)
	}
}

func TestClassAboveMaxIsForbidden(t *testing.T) {
	f := newQueue(t, "services: {release: {maxClass: normal}}\n", 1, &fakeInstance{name: "arm-1", capacity: 1, weight: 1})
	req := request()
	req.Class = "urgent"
	if _, _, err := f.handlers[0].Submit(context.Background(), admin, req, ""); !errors.Is(err, jobs.ErrForbidden) {
		t.Errorf("urgent above maxClass normal: %v, want forbidden", err)
	}
}

// Several replicas run passes at once, each many times (duplicated triggers), while jobs end:
// every job is created exactly once and the instances never hold more than their capacity.
func TestReplicasPlaceEachJobOnce(t *testing.T) {
	ins := []*fakeInstance{{name: "arm-1", capacity: 2, weight: 1}, {name: "arm-2", capacity: 3, weight: 2}}
	f := newQueue(t, "", 3, ins...)
	var all []*jobs.Job
	for i := range 20 {
		all = append(all, f.submit(t, fmt.Sprintf("svc-%d", i%3), ""))
	}
	ctx := context.Background()
	for round := 0; round < 40; round++ {
		var wg sync.WaitGroup
		for _, h := range f.handlers {
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := h.Dispatch(ctx, DispatchOptions{}); err != nil {
						t.Errorf("dispatch: %v", err)
					}
				}()
			}
		}
		wg.Wait()
		running := map[string]int{}
		done := 0
		for _, j := range all {
			j = f.get(t, j.ID)
			switch {
			case j.Status == jobs.StatusPending:
				running[j.Cluster]++
			case j.Status.Terminal():
				done++
			}
		}
		for _, in := range ins {
			if running[in.name] > in.capacity {
				t.Fatalf("round %d: %d jobs on %s of capacity %d", round, running[in.name], in.name, in.capacity)
			}
		}
		if done == len(all) {
			break
		}
		// End one running job per round.
		for _, j := range all {
			if j = f.get(t, j.ID); j.Status == jobs.StatusPending {
				f.end(t, j.ID)
				break
			}
		}
	}
	for _, j := range all {
		if got := f.get(t, j.ID); got.Status != jobs.StatusSucceeded {
			t.Errorf("job %s ended %s", j.ID, got.Status)
		}
		n := 0
		for _, in := range ins {
			n += in.objects[j.ID]
		}
		if n != 1 {
			t.Errorf("job %s created %d times", j.ID, n)
		}
	}
}

// A dispatcher that died after claiming slots (before recording) leaves orphans: they are
// freed once older than OrphanAge. One that died after recording (before creating) leaves a
// pending job without objects: the resync pass creates them, once.
func TestInterruptedDispatchIsRepaired(t *testing.T) {
	in := &fakeInstance{name: "arm-1", capacity: 1, weight: 1}
	f := newQueue(t, "", 1, in)
	h := f.handlers[0]
	ctx := context.Background()
	// Crash 1: a dispatcher claimed the only slot for queued job j, then died.
	x := f.submit(t, "release", "")
	j := f.submit(t, "release", "")
	f.end(t, x.ID)
	if ok, err := f.store.ReleaseSlot(ctx, instanceScope("arm-1"), 0, holderOf(x.ID, x.Queue.Claim)); err != nil || !ok {
		t.Fatalf("release x's slot: %v %v", ok, err)
	}
	if ok, err := f.store.ClaimSlot(ctx, instanceScope("arm-1"), 0, holderOf(j.ID, "dead")); err != nil || !ok {
		t.Fatalf("orphan claim: %v %v", ok, err)
	}
	if _, err := h.Dispatch(ctx, DispatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, j.ID); got.Status != jobs.StatusQueued {
		t.Fatalf("with the slot held by a young orphan claim: %s, want queued", got.Status)
	}
	h.Dispatcher.OrphanAge = time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for f.get(t, j.ID).Status == jobs.StatusQueued {
		if time.Now().After(deadline) {
			t.Fatal("the orphaned slot was not freed within 10s")
		}
		if _, err := h.Dispatch(ctx, DispatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Crash 2: recorded pending, objects never created.
	f.end(t, j.ID)
	k := f.submit(t, "release", "")
	if k.Status != jobs.StatusPending || in.objects[k.ID] != 1 {
		t.Fatalf("second job: %s, created %d times", k.Status, in.objects[k.ID])
	}
	in.DeleteJobObjects(ctx, "", "", k.ID) // as if the dispatcher had died before creating them
	h.Dispatcher.RepairAfter = time.Millisecond
	deadline = time.Now().Add(10 * time.Second)
	for {
		rep, err := h.Dispatch(ctx, DispatchOptions{Repair: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Repaired == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pending job without objects was not repaired within 10s")
		}
	}
	if rep, _ := h.Dispatch(ctx, DispatchOptions{Repair: true}); rep.Repaired != 0 || in.objects[k.ID] != 1 {
		t.Errorf("a second resync repaired %d (objects %d), want nothing more", rep.Repaired, in.objects[k.ID])
	}
}

// Quotas and concurrency keys hold jobs back without blocking others.
func TestQuotaAndConcurrencyKey(t *testing.T) {
	in := &fakeInstance{name: "arm-1", capacity: 10, weight: 1}
	f := newQueue(t, `
services: {release: {quota: {aarch64: 1}}}
jobTypes: {buildrpm: {concurrencyKey: "{{.parameters.srpmUrl}}"}}
`, 1, in)
	a := f.submit(t, "release", "")
	b := f.submit(t, "release", "")
	if a.Status != jobs.StatusPending || b.Status != jobs.StatusQueued || b.Queue.Reason != "service quota 1 of 1 running on aarch64" {
		t.Fatalf("quota: %s, %s %+v", a.Status, b.Status, b.Queue)
	}
	c := f.submit(t, "other", "")
	if c.Status != jobs.StatusQueued || c.Queue.Reason == "" {
		t.Fatalf("same concurrency key while a runs: %s %+v, want queued", c.Status, c.Queue)
	}
	req := request()
	req.Service, req.Parameters = "other", map[string]any{"srpmUrl": "https://example.org/b.src.rpm"}
	d, _, err := f.handlers[0].Submit(context.Background(), admin, req, "")
	if err != nil || d.Status != jobs.StatusPending {
		t.Fatalf("another key, another service: %v %s, want pending (nothing blocks it)", err, d.Status)
	}
}

// Cancel of a queued job: cancelled at once, nothing created, and its slot never claimed.
func TestCancelQueued(t *testing.T) {
	in := &fakeInstance{name: "arm-1", capacity: 1, weight: 1}
	f := newQueue(t, "", 1, in)
	f.submit(t, "release", "")
	q := f.submit(t, "release", "")
	j, err := f.handlers[0].Delete(context.Background(), admin, q.ID)
	if err != nil || j.Status != jobs.StatusCancelled {
		t.Fatalf("cancel queued: %v %v", j, err)
	}
	if _, err := f.handlers[0].Dispatch(context.Background(), DispatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if in.objects[q.ID] != 0 {
		t.Errorf("the cancelled job was created")
	}
}

// A repeat with the same Idempotency-Key answers the queued job.
func TestIdempotencyKeyReplaysQueued(t *testing.T) {
	f := newQueue(t, "", 1, &fakeInstance{name: "arm-1", capacity: 1, weight: 1})
	f.submit(t, "release", "")
	first, _, err := f.handlers[0].Submit(context.Background(), admin, request(), "k")
	if err != nil || first.Status != jobs.StatusQueued {
		t.Fatalf("first: %v %v", first, err)
	}
	again, replayed, err := f.handlers[0].Submit(context.Background(), admin, request(), "k")
	if err != nil || !replayed || again.ID != first.ID || again.Status != jobs.StatusQueued {
		t.Fatalf("repeat: %v replayed=%v %v", again, replayed, err)
	}
}

func TestStalePosition(t *testing.T) {
	for _, tc := range []struct {
		old, pos int
		want     bool
	}{
		{0, 1, true}, {3, 3, false}, {5, 4, true}, {100, 99, true},
		{500, 499, false}, {500, 449, true}, {101, 100, true}, {0, 700, true},
	} {
		if got := stalePosition(tc.old, tc.pos); got != tc.want {
			t.Errorf("stalePosition(%d, %d) = %v, want %v", tc.old, tc.pos, got, tc.want)
		}
	}
}

// A dispatcher taken for dead (its claim freed as an orphan and taken by another job) before it
// recorded its dispatch undoes the dispatch: the instance is never over-filled.
func TestStolenClaimUndoesTheDispatch(t *testing.T) {
	in := &fakeInstance{name: "arm-1", capacity: 1, weight: 1}
	f := newQueue(t, "", 1, in)
	ctx := context.Background()
	x := f.submit(t, "release", "")
	j := f.submit(t, "release", "")
	thief := f.submit(t, "release", "") // queued behind j
	f.end(t, x.ID)
	st := f.store
	// Wrap the store so that, between j's claim and its confirmation, its slot is freed and
	// taken by thief, as a pass of another replica that took the claim for an orphan would.
	h := f.handlers[0]
	h.Dispatcher.Store = &stealingStore{QueueStore: st, victim: j.ID, thief: thief.ID}
	if _, err := h.Dispatch(ctx, DispatchOptions{}); err != nil {
		t.Fatal(err)
	}
	got, thiefGot := f.get(t, j.ID), f.get(t, thief.ID)
	if got.Status != jobs.StatusQueued || got.Cluster != "" || in.objects[j.ID] != 0 {
		t.Errorf("victim after its slot was stolen: %s on %q, created %d times; want queued, nothing created", got.Status, got.Cluster, in.objects[j.ID])
	}
	if thiefGot.Status != jobs.StatusQueued {
		t.Errorf("thief %s (it holds the slot, outside any dispatcher)", thiefGot.Status)
	}
}

// stealingStore hands the victim's first claimed slot to the thief right after the claim.
type stealingStore struct {
	QueueStore
	victim, thief string
	stolen        bool
}

func (s *stealingStore) ClaimSlot(ctx context.Context, scope string, index int, holder string) (bool, error) {
	ok, err := s.QueueStore.ClaimSlot(ctx, scope, index, holder)
	if ok && err == nil && !s.stolen && strings.HasPrefix(holder, s.victim+"/") {
		s.stolen = true
		if _, err := s.QueueStore.ReleaseSlot(ctx, scope, index, holder); err != nil {
			return false, err
		}
		if _, err := s.QueueStore.ClaimSlot(ctx, scope, index, holderOf(s.thief, "other")); err != nil {
			return false, err
		}
	}
	return ok, err
}

// series counts the series a collector has.
func series(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// Rerun queues a new job with the same request, linked both ways; a viewer may not.
func TestRerun(t *testing.T) {
	f := newQueue(t, "services: {release: {maxClass: urgent}}\n", 1, &fakeInstance{name: "arm-1", capacity: 1, weight: 1})
	ctx := context.Background()
	orig := f.submit(t, "release", "urgent")
	f.end(t, orig.ID)
	r, replayed, err := f.handlers[0].Rerun(ctx, admin, orig.ID, "")
	if err != nil || replayed {
		t.Fatalf("rerun: %v replayed=%v", err, replayed)
	}
	if r.ID == orig.ID || r.RerunOf != orig.ID || r.Task != orig.Task || r.Queue.Class != "urgent" ||
		r.Parameters["srpmUrl"] != orig.Parameters["srpmUrl"] {
		t.Errorf("rerun job: %+v", r)
	}
	if got := f.get(t, orig.ID); len(got.Reruns) != 1 || got.Reruns[0] != r.ID || got.Status != jobs.StatusSucceeded {
		t.Errorf("original after rerun: %s reruns %v", got.Status, got.Reruns)
	}
	viewer := &auth.Principal{User: "v", Role: auth.RoleViewer, Services: []string{"release"}}
	if _, _, err := f.handlers[0].Rerun(ctx, viewer, orig.ID, ""); !errors.Is(err, jobs.ErrForbidden) {
		t.Errorf("viewer reruns: %v, want forbidden", err)
	}
	stranger := &auth.Principal{User: "s", Role: auth.RoleSubmitter, Services: []string{"other"}}
	if _, _, err := f.handlers[0].Rerun(ctx, stranger, orig.ID, ""); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("another service's submitter reruns: %v, want not found", err)
	}
}

// A cluster that refuses a job's objects for a transient reason sends the job back to the queue
// as a new attempt, whose slot claim frees the first one's at once; a refusal on the merits, or
// the last attempt's, ends the job failed.
func TestTransientCreateFailureRetries(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("etcd leader changed")
	in := &fakeInstance{name: "arm-1", capacity: 1, weight: 1, refuse: []error{unavailable}}
	f := newQueue(t, "jobTypes: {buildrpm: {maxAttempts: 2}}\n", 1, in)
	ctx := context.Background()
	j := f.submit(t, "release", "")
	if j.Status != jobs.StatusQueued || j.Attempt != 2 || len(j.Attempts) != 1 || j.Attempts[0].Reason != jobs.ReasonCreateFailed {
		t.Fatalf("after a 503 from the cluster: %s attempt %d %+v, want queued as attempt 2", j.Status, j.Attempt, j.Attempts)
	}
	rep, err := f.handlers[0].Dispatch(ctx, DispatchOptions{})
	if err != nil || rep.Dispatched != 1 {
		t.Fatalf("pass: %+v %v; want attempt 2 dispatched on the slot attempt 1 held", rep, err)
	}
	if got := f.get(t, j.ID); got.Status != jobs.StatusPending || in.objects[j.ID] != 1 || claimAttempt(got.Queue.Claim) != 2 {
		t.Fatalf("attempt 2: %s, created %d times, claim %q", got.Status, in.objects[j.ID], got.Queue.Claim)
	}
	f.end(t, j.ID)

	// The last attempt refused too: failed, with attempt 1 kept.
	in.refuse = []error{unavailable, unavailable}
	k := f.submit(t, "release", "")
	if _, err := f.handlers[0].Dispatch(ctx, DispatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, k.ID); got.Status != jobs.StatusFailed || got.Reason != ReasonCreateFailed || len(got.Attempts) != 1 {
		t.Fatalf("two refusals with maxAttempts 2: %s %s with %d earlier attempts, want failed with 1", got.Status, got.Reason, len(got.Attempts))
	}

	// Forbidden (a quota, an admission policy) is final at once.
	in.refuse = []error{apierrors.NewForbidden(schema.GroupResource{Resource: "jobs"}, "x", errors.New("exceeded quota"))}
	var ce *CreateError
	if _, _, err := f.handlers[0].Submit(ctx, admin, request(), ""); !errors.As(err, &ce) || len(ce.Job.Attempts) != 0 {
		t.Fatalf("forbidden: %v, want a CreateError without retry", err)
	}
}

// A submit placed at once is announced (job.created, pending) before its objects exist: no
// job.changed that status-sync derives from them can come first.
func TestCreatedAnnouncedBeforeObjects(t *testing.T) {
	in := &fakeInstance{name: "arm-1", capacity: 2, weight: 1}
	f := newQueue(t, "", 1, in)
	var before []string
	in.beforeCreate = func(string) {
		f.events.mu.Lock()
		defer f.events.mu.Unlock()
		for _, e := range f.events.got {
			before = append(before, e.Type()+"/"+fmt.Sprint(e.Extensions()["omnistatus"]))
		}
	}
	j := f.submit(t, "release", "")
	if j.Status != jobs.StatusPending {
		t.Fatalf("submit answered %s, want pending", j.Status)
	}
	if len(before) != 1 || before[0] != events.TypeJobCreated+"/pending" {
		t.Fatalf("events emitted before the objects were created: %v, want the job.created of the pending job", before)
	}
	f.events.mu.Lock()
	defer f.events.mu.Unlock()
	if len(f.events.got) != 1 {
		t.Errorf("%d events in all, want the one job.created", len(f.events.got))
	}
}
