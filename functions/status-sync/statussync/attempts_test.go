package statussync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/protocol"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// queuedJob is newJob dispatched from the queue, with attempts left.
func queuedJob(maxAttempts int) *jobs.Job {
	j := newJob()
	j.Service, j.Task = "svc", "buildrpm"
	at := t0
	j.Queue = &jobs.Queue{Class: "normal", Slots: 1, MaxAttempts: maxAttempts, DispatchedAt: &at, Claim: "a1-x"}
	return j
}

// evictedPod is the pod of j running step build when the Eviction API stopped it: the
// DisruptionTarget condition, then (final) ended with the killed container's 137.
func evictedPod(rv string, final bool) *corev1.Pod {
	p := pod(rv, corev1.PodRunning, []corev1.ContainerStatus{terminated("fetch", 0, "Completed")}, running("build"))
	if final {
		p = pod(rv, corev1.PodFailed, []corev1.ContainerStatus{terminated("fetch", 0, "Completed")}, terminated("build", 137, "Error"))
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
		Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"}}
	return p
}

// disruptedJob is the Job's snapshot once its podFailurePolicy failed it for a disrupted pod.
func disruptedJob(rv string) *batchv1.Job {
	c := cond(batchv1.JobFailed, "PodFailurePolicy")
	c.Message = "Pod default/omni-j1-abc has condition DisruptionTarget matching FailJob rule at index 0"
	return kjob(rv, c)
}

// An evicted pod sends its job back to the queue as attempt 2, whatever the order in which the
// pod's and the Job's snapshots arrive, and however often; the ended attempt is kept with its
// steps, and the job's own steps start again.
func TestDisruptionRetriesInAnyOrder(t *testing.T) {
	now := t0.Add(time.Hour)
	evs := []recEvent{
		{pod: pod("10", corev1.PodRunning, []corev1.ContainerStatus{terminated("fetch", 0, "Completed")}, running("build"))},
		{pod: evictedPod("11", false)},
		{pod: evictedPod("12", true)},
		{job: disruptedJob("13")},
		{pod: evictedPod("14", true), deleted: true},
	}
	n := 0
	permute(evs, func(order []recEvent) {
		n++
		j := queuedJob(3)
		for _, e := range append(order, order[len(order)-1]) { // the last one twice
			e.apply(j, now)
		}
		what := fmt.Sprint(order)
		if j.Status != jobs.StatusQueued || j.Attempt != 2 || len(j.Attempts) != 1 {
			t.Fatalf("%s: status %s attempt %d with %d attempts recorded, want queued attempt 2 with 1", what, j.Status, j.Attempt, len(j.Attempts))
		}
		a := j.Attempts[0]
		if a.Number != 1 || a.Reason != jobs.ReasonDisrupted || a.Status != jobs.StatusFailed || a.Cluster != "x86_64" || a.FinishedAt == nil {
			t.Fatalf("%s: attempt 1 recorded as %+v", what, a)
		}
		if j.Cluster != "" || j.Queue.Claim != "" || j.Queue.DispatchedAt != nil || j.StartedAt != nil || j.Disruption != "" {
			t.Fatalf("%s: the new attempt kept the old one's placement: %+v %+v", what, j, j.Queue)
		}
		for _, s := range j.Steps {
			if s.Status != jobs.StepWaiting || s.ExitCode != nil {
				t.Fatalf("%s: step %s of attempt 2 is %s, want waiting", what, s.Name, s.Status)
			}
		}
		for _, s := range a.Steps {
			if !s.Settled() {
				t.Fatalf("%s: step %s of attempt 1 is not settled: %+v", what, s.Name, s)
			}
		}
	})
	if n != 120 {
		t.Fatalf("%d orders tried, want 120", n)
	}
}

// A build failure is never retried, a cancel is never turned into a retry, and a job without
// attempts left ends as before.
func TestNoRetry(t *testing.T) {
	now := t0.Add(time.Hour)
	failed := pod("12", corev1.PodFailed, []corev1.ContainerStatus{terminated("fetch", 0, "Completed")}, terminated("build", 1, "Error"))
	for name, tc := range map[string]struct {
		job  func() *jobs.Job
		evs  []recEvent
		want jobs.Status
	}{
		"a step exits 1":          {func() *jobs.Job { return queuedJob(3) }, []recEvent{{pod: failed}, {job: kjob("13", cond(batchv1.JobFailed, "BackoffLimitExceeded"))}}, jobs.StatusFailed},
		"killed by 137, no sign":  {func() *jobs.Job { return queuedJob(3) }, []recEvent{{pod: pod("12", corev1.PodFailed, nil, terminated("build", 137, "Error"))}}, jobs.StatusFailed},
		"last attempt evicted":    {func() *jobs.Job { j := queuedJob(3); j.Attempt = 3; return j }, []recEvent{{pod: evictedPod("12", true)}}, jobs.StatusFailed},
		"no queue record":         {newJob, []recEvent{{pod: evictedPod("12", true)}}, jobs.StatusFailed},
		"evicted while cancelled": {func() *jobs.Job { j := queuedJob(3); j.CancelRequested = true; return j }, []recEvent{{pod: evictedPod("12", true)}}, jobs.StatusCancelled},
	} {
		j := tc.job()
		for _, e := range tc.evs {
			e.apply(j, now)
		}
		if j.Status != tc.want || len(j.Attempts) != 0 {
			t.Errorf("%s: %s with %d earlier attempts, want %s and none", name, j.Status, len(j.Attempts), tc.want)
		}
	}
}

// A Job gone from its cluster sends the job back to the queue; the next attempt's grace counts
// from its own dispatch.
func TestJobGoneRetries(t *testing.T) {
	j := queuedJob(2)
	j.Status = jobs.StatusRunning
	if out := Reconcile(j, kube.Snapshot{}, t0.Add(2*time.Minute), time.Minute); out != Changed {
		t.Fatalf("outcome %v, want Changed", out)
	}
	if j.Status != jobs.StatusQueued || j.Attempt != 2 || j.Attempts[0].Reason != jobs.ReasonJobGone || j.Attempts[0].Status != jobs.StatusLost {
		t.Fatalf("got %s attempt %d %+v, want queued attempt 2 after a JobGone", j.Status, j.Attempt, j.Attempts)
	}
	// Attempt 2 is lost too: no attempt left, the job ends lost.
	at := t0.Add(3 * time.Minute)
	j.Status, j.Cluster, j.Queue.DispatchedAt = jobs.StatusPending, "x86_64", &at
	Reconcile(j, kube.Snapshot{}, at.Add(2*time.Minute), time.Minute)
	if j.Status != jobs.StatusLost || len(j.Attempts) != 1 {
		t.Fatalf("got %s with %d earlier attempts, want lost with 1", j.Status, len(j.Attempts))
	}
}

// After a retry, the events of the earlier attempt's objects (their labels carry no attempt, or
// an older one) change nothing, and are acknowledged, not refused.
func TestEventsOfEarlierAttemptIgnored(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	h := New(Settings{}, Deps{Store: st, Observer: observer{}, Emitter: &emitter{}})
	j := queuedJob(3)
	j.Attempts = []jobs.Attempt{{Number: 1, Status: jobs.StatusFailed, Reason: jobs.ReasonDisrupted}}
	j.Attempt, j.Status, j.Cluster = 2, jobs.StatusRunning, "aarch64" // attempt 2 runs elsewhere
	if err := st.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	old := evictedPod("20", true)
	old.Labels, old.Kind = map[string]string{names.LabelJobID: "j1"}, "Pod"
	reply, res := h.Receive(ctx, cloudEvent(t, recEvent{pod: old, deleted: true}))
	if !protocol.IsACK(res) || reply != nil {
		t.Fatalf("event of attempt 1: reply %v, result %v; want an ACK and no reply", reply, res)
	}
	got, err := st.GetJob(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != jobs.StatusRunning || got.Revision != 1 {
		t.Fatalf("job changed by an event of attempt 1: %s revision %d", got.Status, got.Revision)
	}
	// The current attempt's own pod, on its own cluster, is applied.
	cur := pod("21", corev1.PodSucceeded, []corev1.ContainerStatus{terminated("fetch", 0, "Completed")}, terminated("build", 0, "Completed"))
	cur.Kind, cur.Name, cur.Labels = "Pod", "omni-j1-a2-xyz", map[string]string{names.LabelJobID: "j1", names.LabelAttempt: "2"}
	ev := cloudEvent(t, recEvent{pod: cur})
	ev.SetExtension("cluster", "aarch64")
	if _, res := h.Receive(ctx, ev); !protocol.IsACK(res) {
		t.Fatalf("event of attempt 2: %v", res)
	}
	if got, _ = st.GetJob(ctx, "j1"); got.Status != jobs.StatusSucceeded || len(got.Attempts) != 1 {
		t.Fatalf("after attempt 2's pod succeeded: %s with %d earlier attempts", got.Status, len(got.Attempts))
	}
}

// The event that ends an attempt lost is acknowledged, and its reply announces the job queued
// again (its own retry leaves the job on no cluster: that is no foreign cluster).
func TestRetryingEventAnnouncesQueued(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	h := New(Settings{}, Deps{Store: st, Observer: observer{}, Emitter: &emitter{}})
	j := queuedJob(3)
	j.Status = jobs.StatusRunning
	if err := st.CreateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	p := evictedPod("30", true)
	p.Kind, p.Labels = "Pod", map[string]string{names.LabelJobID: "j1"}
	reply, res := h.Receive(ctx, cloudEvent(t, recEvent{pod: p}))
	if !protocol.IsACK(res) || reply == nil || reply.Extensions()["omnistatus"] != "queued" {
		t.Fatalf("reply %v, result %v; want an ACK and job.changed to queued", reply, res)
	}
}
