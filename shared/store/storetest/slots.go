package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// slotTests hold a store.SlotStore to its contract: the slot accounting of the build queue.
var slotTests = map[string]func(t *testing.T, f *fixture, s store.SlotStore){
	"SlotClaimRelease":     testSlotClaimRelease,
	"SlotRace":             testSlotRace,
	"SlotNeverOverFilled":  testSlotNeverOverFilled,
	"SlotInvalid":          testSlotInvalid,
	"QueueRecordRoundTrip": nil, // set in slotTestsOf: it needs only store.Store
}

func slotTestsOf() map[string]func(t *testing.T, f *fixture) {
	out := map[string]func(t *testing.T, f *fixture){"QueueRecordRoundTrip": testQueueRoundTrip}
	for name, test := range slotTests {
		if test == nil {
			continue
		}
		out[name] = func(t *testing.T, f *fixture) {
			ss, ok := f.s.(store.SlotStore)
			if !ok {
				t.Fatalf("%T does not implement store.SlotStore", f.s)
			}
			test(t, f, ss)
		}
	}
	return out
}

// heldIn returns the held slots of scope.
func heldIn(t *testing.T, f *fixture, s store.SlotStore, scope string) []store.Slot {
	t.Helper()
	all, err := s.ListSlots(f.ctx)
	if err != nil {
		t.Fatalf("ListSlots: %v", err)
	}
	var out []store.Slot
	for _, sl := range all {
		if sl.Scope == scope {
			out = append(out, sl)
		}
	}
	return out
}

func testSlotClaimRelease(t *testing.T, f *fixture, s store.SlotStore) {
	scope := "instance/" + f.service
	before := time.Now().Add(-time.Second)
	claim := func(i int, holder string, want bool) {
		t.Helper()
		got, err := s.ClaimSlot(f.ctx, scope, i, holder)
		if err != nil || got != want {
			t.Fatalf("ClaimSlot(%d, %s) = %v, %v; want %v", i, holder, got, err, want)
		}
	}
	release := func(i int, holder string, want bool) {
		t.Helper()
		got, err := s.ReleaseSlot(f.ctx, scope, i, holder)
		if err != nil || got != want {
			t.Fatalf("ReleaseSlot(%d, %s) = %v, %v; want %v", i, holder, got, err, want)
		}
	}
	claim(0, "a/1", true)
	claim(0, "a/1", true) // a repeat of one's own claim holds
	claim(0, "b/1", false)
	claim(1, "b/1", true)
	held := heldIn(t, f, s, scope)
	if len(held) != 2 {
		t.Fatalf("ListSlots: %d held slots of %s, want 2: %+v", len(held), scope, held)
	}
	for _, sl := range held {
		if sl.ClaimedAt.Before(before) || sl.ClaimedAt.Location() != time.UTC {
			t.Errorf("slot %d ClaimedAt = %v, want a UTC time after %v", sl.Index, sl.ClaimedAt, before)
		}
	}
	got := []string{held[0].Holder, held[1].Holder}
	if d := cmp.Diff([]string{"a/1", "b/1"}, got); d != "" {
		t.Errorf("holders (-want +got):\n%s", d)
	}
	release(0, "b/1", false) // not its slot
	release(0, "a/1", true)
	release(0, "a/1", false) // already free
	claim(0, "b/2", true)
	if n := len(heldIn(t, f, s, scope)); n != 2 {
		t.Errorf("after release and claim: %d held, want 2", n)
	}
	if n := len(heldIn(t, f, s, "instance/other-"+f.service)); n != 0 {
		t.Errorf("another scope has %d held slots", n)
	}
}

// testSlotRace has two dispatchers claim the same slots at once, each under its own holder:
// every slot ends with exactly one holder, and each claim's answer matches the store.
func testSlotRace(t *testing.T, f *fixture, s store.SlotStore) {
	scope := "instance/race-" + f.service
	const slots = 6
	var mu sync.Mutex
	won := map[int][]string{}
	var wg sync.WaitGroup
	for d := range 2 {
		for i := range slots {
			for range 2 { // each claim delivered twice, as a duplicated trigger would
				wg.Add(1)
				go func() {
					defer wg.Done()
					holder := fmt.Sprintf("job-%d/dispatcher-%d", i, d)
					ok, err := s.ClaimSlot(f.ctx, scope, i, holder)
					if err != nil {
						t.Errorf("ClaimSlot: %v", err)
						return
					}
					if ok {
						mu.Lock()
						won[i] = append(won[i], holder)
						mu.Unlock()
					}
				}()
			}
		}
	}
	wg.Wait()
	held := heldIn(t, f, s, scope)
	if len(held) != slots {
		t.Fatalf("%d slots held, want %d", len(held), slots)
	}
	for _, sl := range held {
		w := won[sl.Index]
		if len(w) == 0 || len(w) > 2 || w[0] != sl.Holder || w[len(w)-1] != sl.Holder {
			t.Errorf("slot %d held by %s, but claims reported won by %v", sl.Index, sl.Holder, w)
		}
	}
}

// testSlotNeverOverFilled runs workers that take one of capacity slots (trying the numbers in
// turn), hold it a moment and give it back: the held slots never outnumber capacity.
func testSlotNeverOverFilled(t *testing.T, f *fixture, s store.SlotStore) {
	scope := "instance/cap-" + f.service
	const capacity, workers, rounds = 2, 6, 4
	var holding, maxHolding atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				holder := fmt.Sprintf("job-%d-%d/c", w, r)
				deadline := time.Now().Add(time.Minute)
				idx := -1
				for idx < 0 {
					if time.Now().After(deadline) {
						t.Errorf("worker %d found no free slot of %d within a minute", w, capacity)
						return
					}
					for i := range capacity {
						ok, err := s.ClaimSlot(f.ctx, scope, i, holder)
						if err != nil {
							t.Errorf("ClaimSlot: %v", err)
							return
						}
						if ok {
							idx = i
							break
						}
					}
				}
				n := holding.Add(1)
				for m := maxHolding.Load(); n > m && !maxHolding.CompareAndSwap(m, n); m = maxHolding.Load() {
				}
				holding.Add(-1)
				if ok, err := s.ReleaseSlot(f.ctx, scope, idx, holder); err != nil || !ok {
					t.Errorf("ReleaseSlot(%d, %s) = %v, %v", idx, holder, ok, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if m := maxHolding.Load(); m > capacity {
		t.Errorf("%d holders at once, capacity %d", m, capacity)
	}
	if n := len(heldIn(t, f, s, scope)); n != 0 {
		t.Errorf("%d slots still held after every release", n)
	}
}

func testSlotInvalid(t *testing.T, f *fixture, s store.SlotStore) {
	for name, tc := range map[string]struct {
		scope  string
		index  int
		holder string
	}{
		"no scope":       {"", 0, "h"},
		"no holder":      {"s", 0, ""},
		"negative index": {"s", -1, "h"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.ClaimSlot(f.ctx, tc.scope, tc.index, tc.holder); !jobs.IsInvalid(err) {
				t.Errorf("ClaimSlot: %v, want an InvalidError", err)
			}
			if _, err := s.ReleaseSlot(f.ctx, tc.scope, tc.index, tc.holder); !jobs.IsInvalid(err) {
				t.Errorf("ReleaseSlot: %v, want an InvalidError", err)
			}
		})
	}
}

// testQueueRoundTrip stores a queued job with its queue record and rerun links, dispatches it with a
// conditional update (only one of two racing dispatchers wins) and reads it back.
func testQueueRoundTrip(t *testing.T, f *fixture) {
	j := f.newJob("rpm", f.base)
	j.Status, j.Cluster, j.Namespace = jobs.StatusQueued, "", ""
	j.Queue = &jobs.Queue{Class: "background", Slots: 2, ConcurrencyKey: "24.03/x", Position: 3, Reason: "aarch64: 2 of 2 slots in use"}
	j.RerunOf, j.Reruns = "job-original", []string{"job-r1", "job-r2"}
	want := f.create(t, j)
	if d := diffJob(want, f.get(t, j.ID)); d != "" {
		t.Fatalf("queued job round trip (-want +got):\n%s", d)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for d := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, changed, err := f.s.UpdateJob(f.ctx, j.ID, func(j *jobs.Job) (bool, error) {
				if j.Status != jobs.StatusQueued {
					return false, nil
				}
				at := time.Now().Add(time.Duration(d) * time.Microsecond)
				j.Status, j.Cluster, j.Namespace = jobs.StatusPending, fmt.Sprintf("arm-%d", d), "omni"
				j.Queue.Position, j.Queue.Reason, j.Queue.DispatchedAt, j.Queue.Claim = 0, "", &at, fmt.Sprint(d)
				j.Ran = &jobs.Ran{TaskDigest: "sha256:" + fmt.Sprint(d), Images: []string{"registry.example/a:1", "registry.example/b:2"}}
				return true, nil
			})
			if err != nil {
				t.Errorf("UpdateJob: %v", err)
			}
			if changed {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d dispatchers placed the job, want exactly 1", n)
	}
	got := f.get(t, j.ID)
	if got.Status != jobs.StatusPending || got.Queue == nil || got.Queue.DispatchedAt == nil ||
		got.Cluster != "arm-"+got.Queue.Claim || got.Queue.Class != "background" || got.Queue.Slots != 2 ||
		got.RerunOf != "job-original" || len(got.Reruns) != 2 ||
		got.Ran == nil || got.Ran.TaskDigest != "sha256:"+got.Queue.Claim || len(got.Ran.Images) != 2 {
		t.Errorf("dispatched job: %s on %q, queue %+v", got.Status, got.Cluster, got.Queue)
	}
	if got.Queue.DispatchedAt.Location() != time.UTC || !got.Queue.DispatchedAt.Equal(store.MS(*got.Queue.DispatchedAt)) {
		t.Errorf("DispatchedAt %v is not UTC milliseconds", got.Queue.DispatchedAt)
	}
}
