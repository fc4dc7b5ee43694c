package statussync

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
)

var t0 = time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)

func newJob() *jobs.Job {
	return &jobs.Job{ID: "j1", Cluster: "x86_64", Status: jobs.StatusPending, CreatedAt: t0,
		Steps: []jobs.Step{{Name: "fetch", Status: jobs.StepWaiting}, {Name: "build", Status: jobs.StepWaiting}}}
}

func kjob(rv string, conds ...batchv1.JobCondition) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "omni-j1", ResourceVersion: rv}, Status: batchv1.JobStatus{Conditions: conds}}
}

func cond(t batchv1.JobConditionType, reason string) batchv1.JobCondition {
	return batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, LastTransitionTime: metav1.NewTime(t0.Add(time.Minute))}
}

func terminated(name string, code int32, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, StartedAt: metav1.NewTime(t0), FinishedAt: metav1.NewTime(t0.Add(time.Second))}}}
}

func running(name string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}}}
}

func pod(rv string, phase corev1.PodPhase, init []corev1.ContainerStatus, main ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "omni-j1-abc", ResourceVersion: rv},
		Status: corev1.PodStatus{Phase: phase, InitContainerStatuses: init, ContainerStatuses: main}}
}

type step func(j *jobs.Job) Outcome

func TestApply(t *testing.T) {
	now := t0.Add(time.Hour)
	tests := map[string]struct {
		steps       []step
		want        jobs.Status
		wantOutcome []Outcome
		check       func(t *testing.T, j *jobs.Job)
	}{
		"running then succeeded": {
			steps: []step{
				func(j *jobs.Job) Outcome {
					return ApplyPod(j, pod("10", corev1.PodRunning, []corev1.ContainerStatus{running("fetch")}), false, now)
				},
				func(j *jobs.Job) Outcome {
					return ApplyPod(j, pod("12", corev1.PodSucceeded, []corev1.ContainerStatus{terminated("fetch", 0, "Completed")}, terminated("build", 0, "Completed")), false, now)
				},
				func(j *jobs.Job) Outcome { return ApplyJob(j, kjob("13", cond(batchv1.JobComplete, "")), false, now) },
			},
			want: jobs.StatusSucceeded,
			// The pod's last step end is the job's end: the Job's later completion time does
			// not move it.
			wantOutcome: []Outcome{Changed, Changed, Recorded},
		},
		"failing init step is named with exit code and reason": {
			steps: []step{
				func(j *jobs.Job) Outcome {
					return ApplyJob(j, kjob("20", cond(batchv1.JobFailed, "BackoffLimitExceeded")), false, now)
				},
				func(j *jobs.Job) Outcome {
					return ApplyPod(j, pod("19", corev1.PodFailed, []corev1.ContainerStatus{terminated("fetch", 3, "Error")}), false, now)
				},
			},
			want:        jobs.StatusFailed,
			wantOutcome: []Outcome{Changed, Changed},
			check: func(t *testing.T, j *jobs.Job) {
				if j.Reason != ReasonStepFailed || !strings.Contains(j.Message, "step fetch failed with exit code 3 (Error)") {
					t.Errorf("reason %q message %q", j.Reason, j.Message)
				}
			},
		},
		"older snapshot after newer is ignored": {
			steps: []step{
				func(j *jobs.Job) Outcome {
					return ApplyPod(j, pod("30", corev1.PodSucceeded, []corev1.ContainerStatus{terminated("fetch", 0, "Completed")}, terminated("build", 0, "Completed")), false, now)
				},
				func(j *jobs.Job) Outcome {
					return ApplyPod(j, pod("25", corev1.PodRunning, []corev1.ContainerStatus{running("fetch")}), false, now)
				},
			},
			want:        jobs.StatusSucceeded,
			wantOutcome: []Outcome{Changed, Stale},
		},
		"same snapshot twice is a duplicate": {
			steps: []step{
				func(j *jobs.Job) Outcome {
					return ApplyPod(j, pod("10", corev1.PodRunning, []corev1.ContainerStatus{running("fetch")}), false, now)
				},
				func(j *jobs.Job) Outcome {
					return ApplyPod(j, pod("10", corev1.PodRunning, []corev1.ContainerStatus{running("fetch")}), false, now)
				},
			},
			want:        jobs.StatusRunning,
			wantOutcome: []Outcome{Changed, Duplicate},
		},
		"terminal is sticky": {
			steps: []step{
				func(j *jobs.Job) Outcome { return ApplyJob(j, kjob("40", cond(batchv1.JobComplete, "")), false, now) },
				func(j *jobs.Job) Outcome {
					return ApplyJob(j, kjob("41", cond(batchv1.JobFailed, "DeadlineExceeded")), false, now)
				},
			},
			want:        jobs.StatusSucceeded,
			wantOutcome: []Outcome{Changed, Recorded},
		},
		"job deleted before finishing is lost": {
			steps: []step{
				func(j *jobs.Job) Outcome { return ApplyJob(j, kjob("50"), true, now) },
			},
			want:        jobs.StatusLost,
			wantOutcome: []Outcome{Changed},
			check: func(t *testing.T, j *jobs.Job) {
				if j.Reason != ReasonJobDeleted {
					t.Errorf("reason %q", j.Reason)
				}
			},
		},
		"job deleted after cancel request is cancelled": {
			steps: []step{
				func(j *jobs.Job) Outcome { j.CancelRequested = true; return ApplyJob(j, kjob("50"), true, now) },
			},
			want:        jobs.StatusCancelled,
			wantOutcome: []Outcome{Changed},
		},
		"gone job is lost": {
			steps:       []step{func(j *jobs.Job) Outcome { return MarkGone(j, now) }, func(j *jobs.Job) Outcome { return MarkGone(j, now) }},
			want:        jobs.StatusLost,
			wantOutcome: []Outcome{Changed, Stale},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			j := newJob()
			for i, s := range tc.steps {
				if got := s(j); got != tc.wantOutcome[i] {
					t.Errorf("step %d: outcome %v, want %v", i, got, tc.wantOutcome[i])
				}
			}
			if j.Status != tc.want {
				t.Errorf("status %s, want %s (reason %q)", j.Status, tc.want, j.Reason)
			}
			if j.Status.Terminal() && j.FinishedAt == nil {
				t.Error("terminal job without finishedAt")
			}
			if tc.check != nil {
				tc.check(t, j)
			}
		})
	}
}

// Reconcile marks the unsettled steps of an ended job unknown only when no pod can still come.
func TestReconcile(t *testing.T) {
	now := t0.Add(time.Hour)
	ended := func() *jobs.Job {
		j := newJob()
		j.Status, j.FinishedAt = jobs.StatusSucceeded, &now
		j.Steps[0] = jobs.Step{Name: "fetch", Status: jobs.StepSucceeded}
		j.Steps[1] = jobs.Step{Name: "build", Status: jobs.StepRunning}
		return j
	}
	tests := map[string]struct {
		job       *jobs.Job
		snap      kube.Snapshot
		want      jobs.StepStatus
		wantOut   Outcome
		wantState jobs.Status
	}{
		"ended, Job and pods gone": {job: ended(), snap: kube.Snapshot{}, want: jobs.StepUnknown, wantOut: Changed, wantState: jobs.StatusSucceeded},
		"ended, Job shows its end, pods gone": {job: ended(), snap: kube.Snapshot{Job: kjob("90", cond(batchv1.JobComplete, ""))},
			want: jobs.StepUnknown, wantOut: Changed, wantState: jobs.StatusSucceeded},
		"ended, the pod still there and final": {job: ended(),
			snap: kube.Snapshot{Pods: []corev1.Pod{*pod("91", corev1.PodSucceeded, []corev1.ContainerStatus{terminated("fetch", 0, "Completed")}, terminated("build", 0, "Completed"))}},
			want: jobs.StepSucceeded, wantOut: Changed, wantState: jobs.StatusSucceeded},
		"ended by cancel, the Job still being deleted, pods not listed": {
			job: func() *jobs.Job {
				j := ended()
				j.Status, j.CancelRequested = jobs.StatusCancelled, true
				return j
			}(),
			snap: kube.Snapshot{Job: kjob("92")}, want: jobs.StepRunning, wantOut: Recorded, wantState: jobs.StatusCancelled},
		"not ended, Job gone after the grace, cancel requested": {
			job: func() *jobs.Job {
				j := newJob()
				j.Status, j.CancelRequested = jobs.StatusRunning, true
				j.Steps[1].Status = jobs.StepRunning
				return j
			}(),
			snap: kube.Snapshot{}, want: jobs.StepUnknown, wantOut: Changed, wantState: jobs.StatusCancelled},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Reconcile(tc.job, tc.snap, now, time.Minute); got != tc.wantOut {
				t.Errorf("outcome %v, want %v", got, tc.wantOut)
			}
			build := tc.job.Steps[1]
			if tc.job.Status != tc.wantState || build.Status != tc.want {
				t.Errorf("job %s, step build %s (%s); want %s, %s", tc.job.Status, build.Status, build.Reason, tc.wantState, tc.want)
			}
			if build.Status == jobs.StepUnknown && (build.Reason != jobs.StepReasonPodGone || build.Message == "") {
				t.Errorf("unknown step without its reason: %+v", build)
			}
		})
	}
}
