package statussync

import (
	"flag"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
)

var (
	convergeSeed  = flag.Uint64("converge.seed", 0, "run the convergence property test with this seed only")
	convergeSeeds = flag.Int("converge.seeds", 300, "how many seeds the convergence property test tries")
)

// now is when every replayed event is applied and every resync runs: an hour after the set's
// first job was created (past the resync's grace for gone objects).
var replayNow = t0.Add(2 * time.Hour)

// ignoreBookkeeping leaves out what differs by design between two histories of the same job.
var ignoreBookkeeping = cmpopts.IgnoreFields(jobs.Job{}, "Observed", "UpdatedAt", "Revision")

// truth is the job as status-sync derives it from every event, in the order they happened.
func truth(r recorded) *jobs.Job {
	j := r.start.Clone()
	for _, e := range r.events {
		e.apply(j, replayNow)
	}
	return j
}

// The recorded job set ends as each job really ended: the truth the replays are held to.
func TestJobSetTruth(t *testing.T) {
	for _, r := range recordSet() {
		j := truth(r)
		sc := r.sc
		name := fmt.Sprintf("%s %s fail=%s/%d hold=%s", j.ID, sc.task, sc.failStep, sc.exit, sc.holdStep)
		if j.NeedsResync() || j.FinishedAt == nil || j.StartedAt == nil {
			t.Errorf("%s: not settled: %+v", name, j)
		}
		for i, s := range j.Steps {
			var want jobs.StepStatus
			pos := stepIndex(j, firstNonEmpty(sc.failStep, sc.holdStep))
			switch {
			case pos < 0 || i < pos:
				want = jobs.StepSucceeded
			case i == pos && sc.failStep != "":
				want = jobs.StepFailed
			case i == pos:
				want = jobs.StepCancelled
			default:
				want = jobs.StepWaiting
			}
			if s.Status != want || (want == jobs.StepWaiting && s.Reason != jobs.StepReasonNotStarted) {
				t.Errorf("%s: step %s is %s (reason %s), want %s (a step waiting in an ended job: reason %s)",
					name, s.Name, s.Status, s.Reason, want, jobs.StepReasonNotStarted)
			}
			if want == jobs.StepCancelled && (s.ExitCode == nil || *s.ExitCode != 137) {
				t.Errorf("%s: cancelled step %s lost its exit code: %v", name, s.Name, s.ExitCode)
			}
		}
		switch {
		case sc.holdStep != "":
			if j.Status != jobs.StatusCancelled || j.Reason != jobs.ReasonCancelled {
				t.Errorf("%s: %s %s, want cancelled", name, j.Status, j.Reason)
			}
		case sc.failStep != "":
			msg := fmt.Sprintf("step %s failed with exit code %d (%s)", sc.failStep, sc.exit, sc.reason)
			if j.Status != jobs.StatusFailed || j.Reason != ReasonStepFailed || !strings.Contains(j.Message, msg) {
				t.Errorf("%s: %s %s %q, want failed naming %q", name, j.Status, j.Reason, j.Message, msg)
			}
		default:
			if j.Status != jobs.StatusSucceeded {
				t.Errorf("%s: %s, want succeeded", name, j.Status)
			}
		}
	}
}

// replay applies the events to a fresh copy of r's job in the given order, checking at each
// step that the status never moves backwards and an end never changes.
func replay(t *testing.T, what string, start *jobs.Job, evs []recEvent) *jobs.Job {
	t.Helper()
	j := start.Clone()
	prev := j.Clone()
	for _, e := range evs {
		e.apply(j, replayNow)
		if backwards(prev, j) {
			t.Fatalf("%s: job %s went from %s to %s on %v", what, j.ID, prev.Status, j.Status, e)
		}
		prev = j.Clone()
	}
	return j
}

// resync applies one resync read of snap, as Handler.Resync does — only to a job on the
// resync's list — checking it moves forward.
func resync(t *testing.T, what string, j *jobs.Job, snap kube.Snapshot) {
	t.Helper()
	if !j.NeedsResync() {
		return // settled: ListUnsettled does not return it
	}
	prev := j.Clone()
	Reconcile(j, snap, replayNow, time.Minute)
	if backwards(prev, j) {
		t.Fatalf("%s: resync moved job %s from %s to %s", what, j.ID, prev.Status, j.Status)
	}
}

func backwards(prev, j *jobs.Job) bool {
	order := map[jobs.Status]int{jobs.StatusPending: 0, jobs.StatusRunning: 1}
	rank := func(s jobs.Status) int {
		if s.Terminal() {
			return 2
		}
		return order[s]
	}
	return rank(j.Status) < rank(prev.Status) || (prev.Status.Terminal() && (j.Status != prev.Status ||
		j.Reason != prev.Reason && prev.Reason == ReasonStepFailed))
}

// checkGone holds a job whose objects were all gone at the resync to the truth: the same end,
// and each step either as it truly ended or, if its end was only in the lost events, unknown
// with the reason — never running or waiting without having been seen not to start.
func checkGone(t *testing.T, what string, got, want *jobs.Job) {
	t.Helper()
	if got.Status != want.Status || got.Reason != want.Reason || got.Message != want.Message || !got.FinishedAt.Equal(*want.FinishedAt) {
		t.Errorf("%s: job %s ended %s %s %q at %v, want %s %s %q at %v", what, got.ID, got.Status, got.Reason, got.Message,
			got.FinishedAt, want.Status, want.Reason, want.Message, want.FinishedAt)
	}
	if got.StartedAt != nil && !got.StartedAt.Equal(*want.StartedAt) {
		t.Errorf("%s: job %s started %v, want %v", what, got.ID, got.StartedAt, want.StartedAt)
	}
	for i, s := range got.Steps {
		if s.Status == jobs.StepUnknown && s.Reason == jobs.StepReasonPodGone && s.Message != "" {
			continue
		}
		if d := cmp.Diff(want.Steps[i], s); d != "" {
			t.Errorf("%s: job %s step %s (-truth +got):\n%s", what, got.ID, s.Name, d)
		}
	}
	if got.NeedsResync() {
		t.Errorf("%s: job %s still needs a resync after its objects are gone: %+v", what, got.ID, got.Steps)
	}
}

// Events shuffled, duplicated, and a random share of them dropped (from none to all), then one
// resync: the job is exactly the truth when the resync finds the cluster's final objects (the
// cancelled pods still held by log-archive's finalizer), and the truth up to steps marked
// unknown when it finds them gone. With nothing dropped, the job is the truth before any resync.
func TestConvergeShuffledDuplicatedDropped(t *testing.T) {
	set := recordSet()
	truths := make([]*jobs.Job, len(set))
	for i, r := range set {
		truths[i] = truth(r)
	}
	seeds := make([]uint64, 0, *convergeSeeds)
	if *convergeSeed != 0 {
		seeds = append(seeds, *convergeSeed)
	} else {
		for s := uint64(1); s <= uint64(*convergeSeeds); s++ {
			seeds = append(seeds, s)
		}
	}
	began := time.Now()
	ran := 0
	for _, seed := range seeds {
		if time.Since(began) > 20*time.Second {
			t.Logf("stopping after %d seeds: the time budget is spent (slow machine)", ran)
			break
		}
		ran++
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		dropShare := []float64{0, 0, 0.1, 0.3, 0.5, 0.8, 1}[rng.IntN(7)]
		for i, r := range set {
			what := fmt.Sprintf("seed %d (rerun: go test -run %s -converge.seed %d), drop share %.1f", seed, t.Name(), seed, dropShare)
			var evs []recEvent
			for _, e := range r.events {
				if rng.Float64() < dropShare {
					continue
				}
				evs = append(evs, e)
				if rng.IntN(3) == 0 {
					evs = append(evs, e)
				}
			}
			rng.Shuffle(len(evs), func(a, b int) { evs[a], evs[b] = evs[b], evs[a] })
			j := replay(t, what, r.start, evs)
			if dropShare == 0 {
				if d := cmp.Diff(truths[i], j, ignoreBookkeeping); d != "" {
					t.Fatalf("%s: job %s without any drop differs from the truth (-truth +got):\n%s", what, j.ID, d)
				}
			}
			gone := j.Clone()
			resync(t, what, j, r.held)
			if d := cmp.Diff(truths[i], j, ignoreBookkeeping); d != "" {
				t.Fatalf("%s: job %s after the resync differs from the truth (-truth +got):\n%s\nevents applied: %v", what, j.ID, d, evs)
			}
			resync(t, what, gone, r.gone)
			checkGone(t, what, gone, truths[i])
			if t.Failed() {
				t.FailNow()
			}
		}
	}
	t.Logf("%d seeds × %d jobs in %v", ran, len(set), time.Since(began).Round(time.Millisecond))
}

// For one job of each kind, every order of its last six events (after the earlier ones, in
// order: for a cancel, from cancel's final write racing the pod's kill to the pod's deletion),
// with none, any one or any two of them dropped, then one resync of the final objects: the truth
// each time, and without a drop the truth before the resync.
func TestConvergeEveryOrder(t *testing.T) {
	const k = 6
	set := recordSet()
	for _, pick := range []int{0, 9, 18, 19} { // a success, an init-step failure, two cancels
		r := set[pick]
		want := truth(r)
		head, tail := r.events[:len(r.events)-k], r.events[len(r.events)-k:]
		mid := replay(t, "the first events in order", r.start, head)
		n := 0
		permute(tail, func(order []recEvent) {
			for mask := 0; mask < 1<<k; mask++ {
				if bits.OnesCount(uint(mask)) > 2 {
					continue // larger drops: TestConvergeShuffledDuplicatedDropped
				}
				n++
				var evs []recEvent
				for i, e := range order {
					if mask&(1<<i) == 0 {
						evs = append(evs, e)
					}
				}
				what := fmt.Sprintf("job %s, last events %v, dropped mask %b", r.start.ID, order, mask)
				j := replay(t, what, mid, evs)
				if mask == 0 && !same(want, j) {
					t.Fatalf("%s: without a drop (-truth +got):\n%s", what, cmp.Diff(want, j, ignoreBookkeeping))
				}
				resync(t, what, j, r.held)
				if !same(want, j) {
					t.Fatalf("%s: after the resync (-truth +got):\n%s", what, cmp.Diff(want, j, ignoreBookkeeping))
				}
			}
		})
		t.Logf("job %s: %d histories", r.start.ID, n)
	}
}

// same is cmp.Equal(want, got, ignoreBookkeeping), fast enough for the exhaustive test.
func same(want, got *jobs.Job) bool {
	w, g := *want, *got
	w.Observed, w.UpdatedAt, w.Revision = nil, time.Time{}, 0
	g.Observed, g.UpdatedAt, g.Revision = nil, time.Time{}, 0
	return reflect.DeepEqual(&w, &g)
}

// permute calls fn with every order of evs (Heap's algorithm).
func permute(evs []recEvent, fn func([]recEvent)) {
	a := append([]recEvent{}, evs...)
	var gen func(n int)
	gen = func(n int) {
		if n == 1 {
			fn(a)
			return
		}
		for i := 0; i < n-1; i++ {
			gen(n - 1)
			if n%2 == 0 {
				a[i], a[n-1] = a[n-1], a[i]
			} else {
				a[0], a[n-1] = a[n-1], a[0]
			}
		}
		gen(n - 1)
	}
	gen(len(a))
}

func stepIndex(j *jobs.Job, name string) int {
	for i, s := range j.Steps {
		if s.Name == name {
			return i
		}
	}
	return -1
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
