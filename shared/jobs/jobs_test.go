package jobs

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	t1 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	t2 = t1.Add(time.Hour)
)

func code(c int32) *int32 { return &c }

// End is the one rule for every end: sticky, and a cancel once requested.
func TestEnd(t *testing.T) {
	running := func(cancel bool) *Job {
		return &Job{Status: StatusRunning, CancelRequested: cancel, Steps: []Step{
			{Name: "fetch", Status: StepSucceeded, ExitCode: code(0)},
			{Name: "build", Status: StepFailed, ExitCode: code(137), Reason: "Error"},
			{Name: "test", Status: StepFailed, ExitCode: code(137), Reason: "OOMKilled"},
			{Name: "lint", Status: StepFailed, ExitCode: code(3), Reason: "Error"},
			{Name: "upload", Status: StepWaiting},
		}}
	}
	tests := map[string]struct {
		job        *Job
		end        func(j *Job) bool
		wantEnded  bool
		wantStatus Status
		wantReason string
		wantAt     time.Time
		wantSteps  []StepStatus
	}{
		"failure": {
			job: running(false), end: func(j *Job) bool { return j.End(StatusFailed, "StepFailed", "m", t1, t2) },
			wantEnded: true, wantStatus: StatusFailed, wantReason: "StepFailed", wantAt: t1,
			wantSteps: []StepStatus{StepSucceeded, StepFailed, StepFailed, StepFailed, StepWaiting},
		},
		"failure once a cancel is requested is a cancel, at the observation": {
			job: running(true), end: func(j *Job) bool { return j.End(StatusFailed, "StepFailed", "m", t1, t2) },
			wantEnded: true, wantStatus: StatusCancelled, wantReason: ReasonCancelled, wantAt: t2,
			// Killed by the cancel: 137 other than OOMKilled. A step failing on its own stays failed.
			wantSteps: []StepStatus{StepSucceeded, StepCancelled, StepFailed, StepFailed, StepWaiting},
		},
		"ended is sticky": {
			job:        &Job{Status: StatusSucceeded, FinishedAt: &t1},
			end:        func(j *Job) bool { return j.End(StatusFailed, "x", "y", t2, t2) },
			wantStatus: StatusSucceeded, wantAt: t1, wantSteps: []StepStatus{},
		},
		"cancel's write after an end keeps the end": {
			job:        &Job{Status: StatusFailed, FinishedAt: &t1, CancelRequested: true},
			end:        func(j *Job) bool { return j.EndCancelled(t2) },
			wantStatus: StatusFailed, wantAt: t1, wantSteps: []StepStatus{},
		},
		"not an end": {
			job: running(false), end: func(j *Job) bool { return j.End(StatusRunning, "", "", t1, t1) },
			wantStatus: StatusRunning, wantSteps: []StepStatus{StepSucceeded, StepFailed, StepFailed, StepFailed, StepWaiting},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			j := tc.job
			if got := tc.end(j); got != tc.wantEnded {
				t.Errorf("ended = %v, want %v", got, tc.wantEnded)
			}
			if j.Status != tc.wantStatus || j.Reason != tc.wantReason {
				t.Errorf("status %s %q, want %s %q", j.Status, j.Reason, tc.wantStatus, tc.wantReason)
			}
			if tc.wantAt.IsZero() != (j.FinishedAt == nil) || (j.FinishedAt != nil && !j.FinishedAt.Equal(tc.wantAt)) {
				t.Errorf("finishedAt %v, want %v", j.FinishedAt, tc.wantAt)
			}
			steps := []StepStatus{}
			for _, s := range j.Steps {
				steps = append(steps, s.Status)
			}
			if d := cmp.Diff(tc.wantSteps, steps); d != "" {
				t.Errorf("steps (-want +got):\n%s", d)
			}
		})
	}
}

// NeedsResync: until it ended and its steps agree with that.
func TestNeedsResync(t *testing.T) {
	tests := map[string]struct {
		job  Job
		want bool
	}{
		"running":                        {Job{Status: StatusRunning}, true},
		"ended, no steps":                {Job{Status: StatusLost}, false},
		"ended, a step running":          {Job{Status: StatusSucceeded, Steps: []Step{{Status: StepSucceeded}, {Status: StepRunning}}}, true},
		"ended, a step waiting":          {Job{Status: StatusFailed, Steps: []Step{{Status: StepFailed}, {Status: StepWaiting, Reason: "PodInitializing"}}}, true},
		"ended, a step not started":      {Job{Status: StatusFailed, Steps: []Step{{Status: StepFailed}, {Status: StepWaiting, Reason: StepReasonNotStarted}}}, false},
		"ended, steps cancelled/unknown": {Job{Status: StatusCancelled, Steps: []Step{{Status: StepCancelled}, {Status: StepUnknown}}}, false},
	}
	for name, tc := range tests {
		if got := tc.job.NeedsResync(); got != tc.want {
			t.Errorf("%s: NeedsResync = %v, want %v", name, got, tc.want)
		}
	}
}

// Unsettled: on the resync's list until it needs no resync and its logs are archived.
func TestUnsettled(t *testing.T) {
	for name, tc := range map[string]struct {
		job  Job
		want bool
	}{
		"running":                    {Job{Status: StatusRunning, LogsArchived: true}, true},
		"ended, steps settled":       {Job{Status: StatusSucceeded, Steps: []Step{{Status: StepSucceeded}}}, true},
		"ended, logs archived":       {Job{Status: StatusSucceeded, LogsArchived: true, Steps: []Step{{Status: StepSucceeded}}}, false},
		"ended, archived, step runs": {Job{Status: StatusSucceeded, LogsArchived: true, Steps: []Step{{Status: StepRunning}}}, true},
	} {
		if got := tc.job.Unsettled(); got != tc.want {
			t.Errorf("%s: Unsettled = %v, want %v", name, got, tc.want)
		}
	}
}
