package statussync

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// An ended job whose logs are not archived is asked for again by the periodic resync only once
// it ended ArchiveGrace ago, but by the resync after a restart at once; a job whose logs are
// archived never is.
func TestResyncAfterRestartAsksForLogsAtOnce(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	em := &emitter{}
	now := t0.Add(time.Hour)
	h := New(Settings{ArchiveGrace: 20 * time.Minute}, Deps{Store: st, Observer: observer{}, Emitter: em})
	h.Now = func() time.Time { return now }
	for id, archived := range map[string]bool{"ended-unarchived": false, "ended-archived": true} {
		j := newJob()
		j.ID, j.Status, j.LogsArchived = id, jobs.StatusSucceeded, archived
		j.Service, j.Task, j.Arch, j.Namespace = "team-a", "buildrpm", "x86_64", "omni-jobs"
		end := now.Add(-time.Minute) // well within the grace
		j.StartedAt, j.FinishedAt = &t0, &end
		for i := range j.Steps {
			j.Steps[i].Status, j.Steps[i].ExitCode = jobs.StepSucceeded, new(int32(0))
		}
		if err := st.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := h.Resync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Report{Checked: 1}, rep); diff != "" || len(em.got) != 0 {
		t.Fatalf("periodic resync within the grace (-want +got):\n%s\nemitted %d events, want none", diff, len(em.got))
	}

	rep, err = h.ResyncAfterRestart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Report{Checked: 1, LogsRequested: 1}, rep); diff != "" {
		t.Errorf("resync after a restart (-want +got):\n%s", diff)
	}
	var got []string
	for _, e := range em.got {
		got = append(got, e.Type()+" "+e.Subject())
	}
	if diff := cmp.Diff([]string{events.TypeLogsRequested + " ended-unarchived"}, got); diff != "" {
		t.Errorf("emitted (-want +got):\n%s", diff)
	}
}

// A job cancelled before its pod was scheduled: the pod ends (deleted, Failed) with no status of
// any step. Its final snapshot settles every step as never started, and the resync asks for
// its logs even while a step is unsettled, so that its pod is released.
func TestUnscheduledPodSettlesAndIsArchived(t *testing.T) {
	now := t0.Add(time.Hour)
	j := newJob()
	j.Status, j.Reason, j.Message = jobs.StatusCancelled, jobs.ReasonCancelled, jobs.MessageCancelled
	end := now.Add(-time.Hour / 2)
	j.FinishedAt = &end
	final := pod("20", corev1.PodFailed, nil)
	final.DeletionTimestamp = &metav1.Time{Time: end}
	ApplyPod(j, final, false, now)
	if !j.StepsSettled() {
		t.Errorf("steps after the final snapshot of a pod with no statuses: %+v, want all settled", j.Steps)
	}
	for _, s := range j.Steps {
		if s.Status != jobs.StepWaiting || s.Reason != jobs.StepReasonNotStarted {
			t.Errorf("step %s: %s (%s), want waiting (NotStarted)", s.Name, s.Status, s.Reason)
		}
	}

	// A job ended with a step not settled yet, past the archive grace: its logs are asked for.
	ctx := context.Background()
	st := openStore(t)
	em := &emitter{}
	h := New(Settings{ArchiveGrace: 20 * time.Minute}, Deps{Store: st, Observer: observer{}, Emitter: em})
	h.Now = func() time.Time { return now }
	u := newJob()
	u.ID, u.Status, u.Reason, u.Message = "unsettled", jobs.StatusCancelled, jobs.ReasonCancelled, jobs.MessageCancelled
	u.Service, u.Task, u.Arch, u.Namespace = "team-a", "buildrpm", "x86_64", "omni-jobs"
	u.StartedAt, u.FinishedAt = &t0, &end
	if err := st.CreateJob(ctx, u); err != nil {
		t.Fatal(err)
	}
	rep, err := h.Resync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LogsRequested != 1 {
		t.Errorf("resync %+v, want the logs of the unsettled ended job asked for", rep)
	}
}
