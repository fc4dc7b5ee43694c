package statussync

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// cloudEvent is e as the ApiServerSource sends it (Resource mode, the cluster extension set).
func cloudEvent(t *testing.T, e recEvent) event.Event {
	t.Helper()
	ev := event.New()
	var obj any
	kind, name, rv := "Job", "", ""
	switch {
	case e.job != nil:
		obj, name, rv = e.job, e.job.Name, e.job.ResourceVersion
	case e.pod != nil:
		obj, kind, name, rv = e.pod, "Pod", e.pod.Name, e.pod.ResourceVersion
	default:
		t.Fatal("cloudEvent: cancel's write is no event")
	}
	ev.SetType(events.TypeResourceUpdate)
	if e.deleted {
		ev.SetType(events.TypeResourceDelete)
	}
	ev.SetID(fmt.Sprintf("%s-%s-%s-%v", kind, name, rv, e.deleted))
	ev.SetSource("https://kubernetes.default.svc")
	ev.SetExtension(events.ExtCluster, "x86_64")
	if err := ev.SetData(event.ApplicationJSON, obj); err != nil {
		t.Fatal(err)
	}
	return ev
}

// observer serves recorded cluster objects by job id.
type observer map[string]kube.Snapshot

func (o observer) Observe(_ context.Context, _, _, id string) (kube.Snapshot, error) {
	return o[id], nil
}

// emitter records what the resync emits.
type emitter struct {
	mu  sync.Mutex
	got []event.Event
}

func (e *emitter) Emit(_ context.Context, ev event.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
	return nil
}

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// The whole job set through the real handler and store: every job's events shuffled together,
// a third duplicated, 30 % dropped; one resync against the final objects brings every job to the
// truth, and leaves none on the resync's list.
func TestResyncSettlesJobSet(t *testing.T) {
	ctx := context.Background()
	set := recordSet()
	for seed := uint64(1); seed <= 3; seed++ {
		st := openStore(t)
		obs := observer{}
		var all []recEvent
		for _, r := range set {
			start := r.start.Clone()
			if err := st.CreateJob(ctx, start); err != nil {
				t.Fatal(err)
			}
			obs[r.start.ID] = r.held
			for _, e := range r.events {
				if e.job != nil || e.pod != nil {
					all = append(all, e)
				}
			}
		}
		rng := rand.New(rand.NewPCG(seed, 12))
		var evs []recEvent
		for _, e := range all {
			if rng.Float64() < 0.3 {
				continue
			}
			evs = append(evs, e)
			if rng.IntN(3) == 0 {
				evs = append(evs, e)
			}
		}
		rng.Shuffle(len(evs), func(a, b int) { evs[a], evs[b] = evs[b], evs[a] })
		h := &Handler{Store: st, Observer: obs, Emitter: &emitter{}, Now: func() time.Time { return replayNow }}
		for _, e := range evs {
			if _, res := h.Receive(ctx, cloudEvent(t, e)); !protocol.IsACK(res) {
				t.Fatalf("seed %d: %v: %v", seed, e, res)
			}
		}
		if _, err := h.Resync(ctx); err != nil {
			t.Fatalf("seed %d: resync: %v", seed, err)
		}
		for _, r := range set {
			want := truth(r)
			store.Normalize(want)
			got, err := st.GetJob(ctx, r.start.ID)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got, ignoreBookkeeping); d != "" {
				t.Errorf("seed %d: job %s after one resync (-truth +stored):\n%s", seed, r.start.ID, d)
			}
		}
		// Every job is settled but its logs: log-archive (not run here) takes them off the list.
		for _, r := range set {
			if _, _, err := st.UpdateJob(ctx, r.start.ID, func(j *jobs.Job) (bool, error) {
				if !j.Status.Terminal() || !j.StepsSettled() {
					t.Errorf("seed %d: job %s is %s with steps unsettled after one resync", seed, j.ID, j.Status)
				}
				j.LogsArchived = true
				return true, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		rep, err := h.Resync(ctx)
		if err != nil || rep.Checked != 0 {
			t.Errorf("seed %d: a second resync checked %d jobs (%v), want none left to settle", seed, rep.Checked, err)
		}
	}
}

// deleter is submit's Deleter, calling during before it returns.
type deleter struct{ during func() }

func (d deleter) DeleteJobObjects(context.Context, string, string, string) error {
	if d.during != nil {
		d.during()
	}
	return nil
}

// failingWrites fails the nth UpdateJob call (counting from 1) and the ones after, until reset.
type failingWrites struct {
	*sqlite.Store
	mu    sync.Mutex
	calls int
	from  int
}

func (f *failingWrites) UpdateJob(ctx context.Context, id string, fn func(*jobs.Job) (bool, error)) (*jobs.Job, bool, error) {
	f.mu.Lock()
	f.calls++
	fail := f.from > 0 && f.calls >= f.from
	f.mu.Unlock()
	if fail {
		return nil, false, fmt.Errorf("update job %s: %w", id, jobs.ErrUnavailable)
	}
	return f.Store.UpdateJob(ctx, id, fn)
}

// A cancel racing the pod's Failed event (the kill it causes, exit 137) ends cancelled every
// time, whichever write lands first: the pod's events handled between the objects' deletion and
// cancel's final write, after that write, or instead of it when it fails — each time before the
// Job's deletion event. The killed step reads cancelled with its exit code.
func TestCancelRacingPodFailed(t *testing.T) {
	ctx := context.Background()
	var r recorded
	for _, rr := range recordSet() {
		if rr.sc.holdStep == "build-rpm" {
			r = rr
		}
	}
	// Split the recorded events at the cancel: before it; the Job's deletion, the pod told to
	// stop, its Failed snapshot with the step killed (exit 137).
	var before, kill []recEvent
	for _, e := range r.events {
		switch {
		case e.job == nil && e.pod == nil: // cancel's write: Delete does it
		case len(kill) == 0 && !(e.job != nil && e.deleted):
			before = append(before, e)
		case len(kill) == 0 || kill[len(kill)-1].pod == nil || kill[len(kill)-1].pod.Status.Phase != corev1.PodFailed:
			kill = append(kill, e)
		}
	}
	if len(kill) != 3 || kill[2].pod == nil || kill[2].pod.Status.Phase != corev1.PodFailed {
		t.Fatalf("recorded job has no Job deletion and pod kill: %v", r.events)
	}
	jobDeleted, podKill := kill[:1], kill[1:]
	alice := &auth.Principal{User: "alice", Role: auth.RoleSubmitter, Services: []string{"team-a"}}

	for name, tc := range map[string]struct {
		during, after bool // deliver the kill during the deletion / after Delete returned
		failFinal     bool // cancel's final write fails
	}{
		"kill between deletion and cancel's final write": {during: true},
		"kill after cancel's final write":                {after: true},
		"cancel's final write fails, kill after":         {after: true, failFinal: true},
		"kill both during and after (redelivered)":       {during: true, after: true},
	} {
		t.Run(name, func(t *testing.T) {
			for round := range 3 { // deterministic: a few rounds show it holds each time
				st := &failingWrites{Store: openStore(t)}
				start := r.start.Clone()
				start.CancelRequested = false
				if err := st.CreateJob(ctx, start); err != nil {
					t.Fatal(err)
				}
				ss := &Handler{Store: st, Observer: observer{}, Emitter: &emitter{}, Now: func() time.Time { return replayNow }}
				deliver := func(evs []recEvent) {
					for _, e := range evs {
						if _, res := ss.Receive(ctx, cloudEvent(t, e)); !protocol.IsACK(res) {
							t.Fatalf("round %d: %v: %v", round, e, res)
						}
					}
				}
				deliver(before)
				d := deleter{}
				if tc.during {
					d.during = func() { deliver(podKill) }
				}
				if tc.failFinal {
					st.from = st.calls + 2 // the cancel request goes through, the final write fails
				}
				cancel := &submit.Handler{Store: st, Deleter: d, Emitter: &emitter{}, Now: func() time.Time { return replayNow }}
				_, err := cancel.Delete(ctx, alice, r.start.ID)
				if tc.failFinal != (err != nil) {
					t.Fatalf("round %d: Delete: %v", round, err)
				}
				st.from = 0
				if tc.after {
					deliver(podKill)
				}
				deliver(jobDeleted) // the Job's deletion event comes last: the pod's kill decides

				got, err := st.GetJob(ctx, r.start.ID)
				if err != nil {
					t.Fatal(err)
				}
				step := got.Steps[stepIndex(got, "build-rpm")]
				exit := int32(-1)
				if step.ExitCode != nil {
					exit = *step.ExitCode
				}
				if got.Status != jobs.StatusCancelled || got.Reason != jobs.ReasonCancelled || step.Status != jobs.StepCancelled || exit != 137 {
					t.Fatalf("round %d: job %s %s %q, step build-rpm %s exit %d; want cancelled, the step cancelled with exit 137",
						round, got.Status, got.Reason, got.Message, step.Status, exit)
				}
			}
		})
	}
}
