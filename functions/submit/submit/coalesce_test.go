package submit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
)

// heldStore counts the dispatch passes (each starts with the first page of ListUnsettled) and
// holds the first one, after it read its first page, until released.
type heldStore struct {
	*sqlite.Store
	mu       sync.Mutex
	passes   int
	entered  chan struct{} // closed when the first pass started
	release  chan struct{} // the first pass goes on once this is closed
	holdOnce sync.Once
}

func (s *heldStore) ListUnsettled(ctx context.Context, cursor string, limit int) ([]*jobs.Job, string, error) {
	page, next, err := s.Store.ListUnsettled(ctx, cursor, limit)
	if cursor == "" {
		s.mu.Lock()
		s.passes++
		first := s.passes == 1
		s.mu.Unlock()
		if first { // after its read: it does not see what is stored meanwhile
			close(s.entered)
			<-s.release
		}
	}
	return page, next, err
}

func (s *heldStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.passes
}

// holdFirstPass makes f's first handler's next pass wait until the returned func is called.
func holdFirstPass(t *testing.T, f *queueFixture) (*heldStore, func()) {
	t.Helper()
	hs := &heldStore{Store: f.store, entered: make(chan struct{}), release: make(chan struct{})}
	f.handlers[0].Dispatcher.Store = hs
	return hs, sync.OnceFunc(func() { close(hs.release) })
}

// startHeldPass starts a pass of f's first handler and returns once it has read the store; it
// goes on when release is called, and its error comes on the channel.
func startHeldPass(t *testing.T, f *queueFixture) (*heldStore, func(), chan error) {
	t.Helper()
	hs, release := holdFirstPass(t, f)
	done := make(chan error, 1)
	go func() {
		_, err := f.handlers[0].Dispatch(context.Background(), DispatchOptions{})
		done <- err
	}()
	<-hs.entered
	return hs, release, done
}

// storeQueued stores a queued buildrpm job of service release on aarch64, created at created.
func (f *queueFixture) storeQueued(t *testing.T, id string, created time.Time) *jobs.Job {
	t.Helper()
	j := &jobs.Job{ID: id, Service: "release", Task: "buildrpm", Domain: "d", Arch: "aarch64",
		Status: jobs.StatusQueued, Parameters: map[string]any{"srpmUrl": "https://example.org/b.src.rpm"},
		Queue: &jobs.Queue{Class: "normal", Slots: 1}, CreatedAt: created, UpdatedAt: created}
	if err := f.store.CreateJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	return j
}

// waitCalls waits until d has seen n Dispatch calls.
func waitCalls(t *testing.T, d *Dispatcher, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		d.gate.mu.Lock()
		got := d.gate.requested
		d.gate.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Dispatch calls registered after 10s, want %d", got, n)
		}
		<-tick.C
	}
}

// Calls that come while a pass runs are served by one more pass, which starts after all of
// them, and each gets that pass's report: a burst costs two passes, not one each.
func TestDispatchCoalescesPasses(t *testing.T) {
	in := &fakeInstance{name: "arm-1", capacity: 3, weight: 1}
	f := newQueue(t, "", 1, in)
	h := f.handlers[0]
	a := f.submit(t, "release", "")
	if a.Status != jobs.StatusPending {
		t.Fatalf("first job %s, want pending", a.Status)
	}
	hs, release, first := startHeldPass(t, f)
	defer release()
	ctx := context.Background()
	// A job stored while the first pass runs: the calls that come now must see it placed.
	b := f.storeQueued(t, "coalesced-b", time.Now())
	const callers = 10
	reps := make([]Report, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { reps[i], errs[i] = h.Dispatch(ctx, DispatchOptions{Repair: i == 3}) })
	}
	waitCalls(t, h.Dispatcher, 1+callers+1) // the submit's call, the held one, the callers
	release()
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatalf("held pass: %v", err)
	}
	if n := hs.count(); n != 2 {
		t.Errorf("%d passes for a held pass and %d calls during it, want 2", n, callers)
	}
	for i := range callers {
		if errs[i] != nil || reps[i].Dispatched != 1 {
			t.Errorf("call %d: %+v, %v; want the report of the pass that placed the second job", i, reps[i], errs[i])
		}
	}
	if got := f.get(t, b.ID); got.Status != jobs.StatusPending || in.objects[b.ID] != 1 {
		t.Errorf("job stored during the held pass: %s, created %d times; want pending, once", got.Status, in.objects[b.ID])
	}
}

// A submit that comes while a pass runs waits for the next pass: its answer shows its job
// pending when there is room, and job.changed (queued → pending) is not emitted for it, since
// its job.created carries the job as dispatched.
func TestSubmitDuringAPassAnswersPending(t *testing.T) {
	f := newQueue(t, "", 1, &fakeInstance{name: "arm-1", capacity: 2, weight: 1})
	h := f.handlers[0]
	_, release, held := startHeldPass(t, f)
	defer release()
	got := make(chan *jobs.Job, 1)
	go func() { got <- f.submit(t, "release", "") }()
	waitCalls(t, h.Dispatcher, 2)
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	var j *jobs.Job
	select {
	case j = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the submit did not answer within 30s")
	}
	if j.Status != jobs.StatusPending {
		t.Fatalf("submit during a pass: %s, want pending (the instance had room)", j.Status)
	}
	f.events.mu.Lock()
	defer f.events.mu.Unlock()
	var types []string
	for _, e := range f.events.got {
		if e.Subject() == j.ID {
			types = append(types, e.Type())
		}
	}
	if len(types) != 1 || types[0] != events.TypeJobCreated {
		t.Errorf("events of the job: %v, want only job.created", types)
	}
}

// overlappingInstance is a fakeInstance whose creations go through overlapCreate, as the build
// clusters' do, and wait until want of them run at once (or a deadline passes).
type overlappingInstance struct {
	*fakeInstance
	want    int
	mu      sync.Mutex
	running int
	most    int
	all     chan struct{} // closed when want creations run at once
}

func (o *overlappingInstance) Create(ctx context.Context, id string, objs []*unstructured.Unstructured) error {
	return overlapCreate(ctx, func() error {
		o.mu.Lock()
		o.running++
		o.most = max(o.most, o.running)
		if o.running == o.want {
			close(o.all)
		}
		o.mu.Unlock()
		select {
		case <-o.all:
		case <-time.After(10 * time.Second): // the creations did not overlap: go on, the test fails
		}
		o.mu.Lock()
		o.running--
		o.mu.Unlock()
		return o.fakeInstance.Create(ctx, id, objs)
	})
}

type overlappingInstances struct{ in *overlappingInstance }

func (f overlappingInstances) Instances(arch string) []Instance  { return []Instance{f.in} }
func (f overlappingInstances) Instance(string) (Instance, error) { return f.in, nil }

// A pass's creations overlap: five jobs placed in one pass are created at once, each exactly
// once, within the instance's capacity; CreationDone waits for each.
func TestPassCreationsOverlap(t *testing.T) {
	const jobsN = 5
	in := &overlappingInstance{fakeInstance: &fakeInstance{name: "arm-1", capacity: jobsN, weight: 1}, want: jobsN, all: make(chan struct{})}
	f := newQueue(t, "", 1, in.fakeInstance)
	h := f.handlers[0]
	ctx := context.Background()
	var ids []string
	for i := range jobsN + 2 {
		ids = append(ids, f.storeQueued(t, fmt.Sprintf("overlap-%d", i), time.Now().Add(time.Duration(i)*time.Millisecond)).ID)
	}
	h.Dispatcher.Instances = overlappingInstances{in}
	rep, err := h.Dispatch(ctx, DispatchOptions{})
	if err != nil || rep.Dispatched != jobsN || rep.Waiting != 2 {
		t.Fatalf("pass: %+v, %v; want %d dispatched and 2 waiting", rep, err, jobsN)
	}
	for _, id := range ids {
		if err := h.Dispatcher.CreationDone(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.most != jobsN {
		t.Errorf("at most %d creations ran at once, want %d", in.most, jobsN)
	}
	for i, id := range ids {
		got := f.get(t, id)
		want, n := jobs.StatusPending, 1
		if i >= jobsN {
			want, n = jobs.StatusQueued, 0
		}
		if got.Status != want || in.objects[id] != n {
			t.Errorf("job %d: %s, created %d times; want %s, %d", i, got.Status, in.objects[id], want, n)
		}
	}
}

// A call with NoWait during a pass returns at once; a pass that starts after the running one
// ends runs in the background and places the job stored meanwhile.
func TestDispatchNoWaitDuringAPass(t *testing.T) {
	in := &fakeInstance{name: "arm-1", capacity: 3, weight: 1}
	f := newQueue(t, "", 1, in)
	h := f.handlers[0]
	hs, release, held := startHeldPass(t, f)
	defer release()
	ctx := context.Background()
	j := f.storeQueued(t, "nowait-b", time.Now())
	if rep, err := h.Dispatch(ctx, DispatchOptions{NoWait: true}); err != nil || rep != (Report{}) {
		t.Fatalf("NoWait during a pass: %+v, %v; want an empty report at once", rep, err)
	}
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for f.get(t, j.ID).Status != jobs.StatusPending {
		if time.Now().After(deadline) {
			t.Fatalf("the job stored during the held pass is %s after 10s (%d passes); want pending", f.get(t, j.ID).Status, hs.count())
		}
		<-tick.C
	}
	if n := hs.count(); n != 2 {
		t.Errorf("%d passes, want 2 (the held one and the one after it)", n)
	}
}
