package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/functions/status-sync/statussync"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
)

// podEndDropper drops, on their way to status-sync, the events of the pods labelled with its
// case label that show the pod's end: a main container ended, the pod Succeeded or Failed, or
// deleted. It remembers what it dropped.
type podEndDropper struct {
	label string
	mu    sync.Mutex
	drops map[string]bool // "<pod>/<resourceVersion>"
}

const caseLabel = "e2e-case"

func (d *podEndDropper) drop(trigger string, e event.Event) bool {
	if trigger != statussync.Name {
		return false
	}
	var pod corev1.Pod
	if err := json.Unmarshal(e.Data(), &pod); err != nil || pod.Kind != "Pod" || pod.Labels[caseLabel] != d.label {
		return false
	}
	end := e.Type() == events.TypeResourceDelete || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	for _, cs := range pod.Status.ContainerStatuses {
		end = end || cs.State.Terminated != nil
	}
	if end {
		d.mu.Lock()
		d.drops[pod.Name+"/"+pod.ResourceVersion] = true
		d.mu.Unlock()
	}
	return end
}

func (d *podEndDropper) dropped(pod, rv string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drops[pod+"/"+rv]
}

// With every event showing the end of a job's pod lost, the job still ends (from its Job's
// events) but its steps cannot agree: the failing step is still running and the failure names no
// step. The resync reads the pod back and settles the steps: the step failed with its exit code,
// the job's failure names it, and the job leaves the resync's list.
func TestResyncSettlesStepsOfDroppedPodEnd(t *testing.T) {
	const cluster = "x86_64"
	d := &podEndDropper{label: fmt.Sprintf("settle-%d", time.Now().UnixNano()), drops: map[string]bool{}}
	omni.Router.SetDrop(d.drop)
	t.Cleanup(func() { omni.Router.SetDrop(nil) })
	pingsBefore := omni.Router.Stats().Pings

	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{
		caseLabel: d.label, platform.AnnotationFailStep: "upload", platform.AnnotationExitCode: "7",
	}))
	// Everything the cluster says about the job is handled, or dropped on purpose.
	ended := alice.wait(t, j.ID, "failed, its cluster's last snapshots handled or dropped", func(live *jobs.Job) bool {
		return live.Status.Terminal() && handledOrDropped(t, cluster, j.ID, d)
	})
	if len(d.drops) == 0 {
		t.Fatal("no pod event was dropped: the test shows nothing")
	}
	if ended.Status != jobs.StatusFailed {
		t.Fatalf("job %s before the resync, want failed (its Job's end)", ended.Status)
	}
	if omni.Router.Stats().Pings != pingsBefore {
		t.Log("a scheduled resync ran meanwhile: the unsettled state before the resync is not checked")
	} else {
		if s := ended.Steps[len(ended.Steps)-1]; s.Name != "upload" || s.Settled() || !ended.NeedsResync() {
			t.Fatalf("before the resync: step %s %s (%s), needs resync %v; want step upload not settled (its end was dropped)",
				s.Name, s.Status, s.Reason, ended.NeedsResync())
		}
		if ended.Reason == statussync.ReasonStepFailed {
			t.Fatalf("before the resync the failure already names a step: %s", ended.Message)
		}
	}

	if err := omni.Router.Ping(context.Background(), "omni", "resync"); err != nil {
		t.Fatal(err)
	}
	done := alice.wait(t, j.ID, "steps settled by the resync", func(live *jobs.Job) bool { return !live.NeedsResync() })
	if done.Status != jobs.StatusFailed || done.Reason != statussync.ReasonStepFailed ||
		!strings.Contains(done.Message, "step upload failed with exit code 7 (Error)") {
		t.Errorf("after the resync: %s %s %q; want failed naming step upload and exit code 7", done.Status, done.Reason, done.Message)
	}
	want := map[string]jobs.StepStatus{"fetch-srpm": jobs.StepSucceeded, "build-rpm": jobs.StepSucceeded, "upload": jobs.StepFailed}
	for _, s := range done.Steps {
		if s.Status != want[s.Name] || s.ExitCode == nil || s.FinishedAt == nil {
			t.Errorf("after the resync: step %s %s exit %v finished %v; want %s with its exit code and end", s.Name, s.Status, s.ExitCode, s.FinishedAt, want[s.Name])
		}
	}
	// Settled, the job ends when its last step ended: the Job controller's end (all that was
	// known before) comes at the same time or a little later.
	if up := done.Steps[len(done.Steps)-1]; up.FinishedAt == nil || !done.FinishedAt.Equal(*up.FinishedAt) || done.FinishedAt.After(*ended.FinishedAt) {
		t.Errorf("after the resync the job ends at %v; want its last step's end %v, not after the Job's end %v", done.FinishedAt, up.FinishedAt, ended.FinishedAt)
	}
}

// handledOrDropped reports whether status-sync has handled the current state of the job's
// Kubernetes Job, and handled or lost (dropped by d) that of each of its pods.
func handledOrDropped(t *testing.T, cluster, id string, d *podEndDropper) bool {
	kjs := k8sJobs(t, cluster, id)
	if len(kjs) != 1 || !finished(&kjs[0]) || !rec.has("Job", kjs[0].Name, kjs[0].ResourceVersion) {
		return false
	}
	pods, err := omni.Platform.Cluster(cluster).Clientset().CoreV1().Pods("default").List(context.Background(),
		metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if !rec.has("Pod", p.Name, p.ResourceVersion) && !d.dropped(p.Name, p.ResourceVersion) {
			return false
		}
	}
	return len(pods.Items) > 0
}

// noEmit takes the resync's job.changed events and drops them (the replay store is not the live one).
type noEmit struct{}

func (noEmit) Emit(context.Context, event.Event) error { return nil }

// The operator's experiment on a real job set: the events the adapter sent for a success, a step
// failure and a cancel, replayed into a fresh store shuffled, duplicated and with a share dropped,
// then one resync against the live clusters: each job is the live one (for the cancel, whose
// objects are gone by then, up to steps marked unknown and its end's time of observation).
func TestReplayDroppedEventsThenResync(t *testing.T) {
	const cluster = "x86_64"
	success := alice.submit(t, rpmJob("team-a", cluster, nil))
	failure := alice.submit(t, rpmJob("team-a", cluster, map[string]string{
		platform.AnnotationFailStep: "build-rpm", platform.AnnotationExitCode: "3", platform.AnnotationReason: "BuildFailed",
	}))
	cancelled := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: "build-rpm"}))
	alice.wait(t, cancelled.ID, "running build-rpm", func(j *jobs.Job) bool { return stepStatus(j, "build-rpm") == jobs.StepRunning })
	if r := alice.do(t, http.MethodDelete, "/v1/jobs/"+cancelled.ID, nil); r.code != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	var live []*jobs.Job
	for _, j := range []*jobs.Job{success, failure} {
		alice.wait(t, j.ID, "settled with the cluster's last snapshots handled", func(l *jobs.Job) bool {
			return !l.NeedsResync() && lastSnapshotsHandled(t, cluster, j.ID)
		})
		live = append(live, alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t))
	}
	alice.wait(t, cancelled.ID, "settled with its objects gone", func(l *jobs.Job) bool {
		return !l.NeedsResync() && len(k8sJobs(t, cluster, l.ID)) == 0 && len(pods(t, cluster, l.ID)) == 0
	})
	live = append(live, alice.do(t, http.MethodGet, "/v1/jobs/"+cancelled.ID, nil).job(t))
	if c := live[2]; c.Status != jobs.StatusCancelled || stepStatus(c, "build-rpm") != jobs.StepCancelled {
		t.Fatalf("live cancelled job: %s, build-rpm %s; want cancelled with the step cancelled", c.Status, stepStatus(c, "build-rpm"))
	}

	ctx := context.Background()
	exact := cmpopts.IgnoreFields(jobs.Job{}, "Revision", "UpdatedAt", "Observed", "Parameters")
	for seed := uint64(1); seed <= 6; seed++ {
		share := 0.3
		if seed == 6 {
			share = 1 // every event lost: the resync alone
		}
		st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "replay.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		rng := rand.New(rand.NewPCG(seed, 7))
		var list []event.Event
		for _, l := range live {
			fresh := l.Clone()
			fresh.Status, fresh.Reason, fresh.Message, fresh.StartedAt, fresh.FinishedAt, fresh.Observed = jobs.StatusPending, "", "", nil, nil, nil
			for i := range fresh.Steps {
				fresh.Steps[i] = jobs.Step{Name: fresh.Steps[i].Name, Status: jobs.StepWaiting}
			}
			if err := st.CreateJob(ctx, fresh); err != nil {
				t.Fatal(err)
			}
			for _, e := range rec.of(l.ID) {
				if rng.Float64() < share {
					continue
				}
				list = append(list, e)
				if rng.IntN(3) == 0 {
					list = append(list, e)
				}
			}
		}
		rng.Shuffle(len(list), func(a, b int) { list[a], list[b] = list[b], list[a] })
		h := &statussync.Handler{Store: st, Observer: omni.StatusSync.Observer, Emitter: noEmit{}, Grace: time.Millisecond}
		for _, e := range list {
			if _, res := h.Receive(ctx, e); !protocol.IsACK(res) {
				t.Fatalf("seed %d: event %s: %v", seed, e.ID(), res)
			}
		}
		if _, err := h.Resync(ctx); err != nil {
			t.Fatalf("seed %d: resync: %v", seed, err)
		}
		for i, l := range live {
			got, err := st.GetJob(ctx, l.ID)
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("seed %d (drop share %.1f, %d events replayed), job %s", seed, share, len(list), l.ID)
			if i < 2 {
				if d := cmp.Diff(l, got, exact); d != "" {
					t.Errorf("%s: differs from the live job (-live +replayed):\n%s", what, d)
				}
				continue
			}
			if got.Status != l.Status || got.Reason != l.Reason || got.Message != l.Message || got.NeedsResync() {
				t.Errorf("%s: %s %s %q (needs resync %v), want %s %s %q", what, got.Status, got.Reason, got.Message, got.NeedsResync(), l.Status, l.Reason, l.Message)
			}
			for k, s := range got.Steps {
				if s.Status == jobs.StepUnknown && s.Reason == jobs.StepReasonPodGone {
					continue // its end was only in the lost events, and the pod is gone
				}
				if d := cmp.Diff(l.Steps[k], s); d != "" {
					t.Errorf("%s: step %s (-live +replayed):\n%s", what, s.Name, d)
				}
			}
		}
	}
}

func pods(t *testing.T, cluster, id string) []corev1.Pod {
	t.Helper()
	list, err := omni.Platform.Cluster(cluster).Clientset().CoreV1().Pods("default").List(context.Background(),
		metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// TestDeadLetteredArchiveIsRepaired: a job whose job.changed never reaches log-archive (every
// delivery to its Trigger dropped, as when they end in the dead-letter sink) keeps its pods held
// by the log-archive finalizer and stays on the resync's list. A status-sync resync (a replica
// with a short archive grace) asks log-archive again (logs.requested, its own Trigger): the logs
// are archived, the job recorded archived and off the list, and no pod keeps the finalizer.
func TestDeadLetteredArchiveIsRepaired(t *testing.T) {
	const cluster, step = "x86_64", "build-rpm"
	ctx := context.Background()
	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: step}))
	omni.Router.SetDrop(func(trigger string, e event.Event) bool { return trigger == "log-archive" && e.Subject() == j.ID })
	t.Cleanup(func() { omni.Router.SetDrop(nil) })
	qRelease(t, cluster, j.ID, "")
	ended := alice.wait(t, j.ID, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded && !j.NeedsResync() })
	if ended.LogsArchived {
		t.Fatal("the job is recorded archived although every delivery to log-archive was dropped")
	}
	held := 0
	for _, p := range pods(t, cluster, j.ID) {
		if slices.Contains(p.Finalizers, names.PodFinalizer) {
			held++
		}
	}
	if held == 0 {
		t.Fatal("no pod of the job holds the log-archive finalizer: the dropped archive left nothing to repair")
	}
	replica := statussync.New(statussync.Settings{ResyncGrace: time.Minute, ArchiveGrace: time.Millisecond}, statussync.Deps{
		Store: omni.Deps.Store, Observer: statussync.KubeObserver{Clusters: omni.Deps.Clusters}, Emitter: omni.Deps.Emitter})
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := replica.Resync(ctx); err != nil {
			t.Fatalf("resync: %v", err)
		}
		got := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t)
		left := 0
		for _, p := range pods(t, cluster, j.ID) {
			if slices.Contains(p.Finalizers, names.PodFinalizer) {
				left++
			}
		}
		if got.LogsArchived && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("2 minutes after the resync asked again: logs archived %v, %d pods still holding the finalizer", got.LogsArchived, left)
		}
		<-tick.C
	}
	if r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs/"+step+":download", nil); r.code != http.StatusOK || len(r.body) == 0 {
		t.Errorf("download after the repaired archive: %d (%d bytes)", r.code, len(r.body))
	}
}
