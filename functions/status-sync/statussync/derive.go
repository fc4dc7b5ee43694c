// Package statussync is the core of the status-sync function: it turns snapshots of a job's
// Kubernetes Job and Pods (from ApiServerSource events or from a resync read) into the job's
// status and steps, writing only forward.
package statussync

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Reasons set on jobs by status-sync.
const (
	ReasonStepFailed = "StepFailed"
	ReasonJobDeleted = "JobDeleted"
	ReasonJobGone    = "JobGone"
	ReasonCancelled  = "Cancelled"
)

// Outcome says what applying one snapshot did to a job.
type Outcome int

const (
	// Stale: an newer snapshot of the object was applied before; nothing changed.
	Stale Outcome = iota
	// Duplicate: this very snapshot was applied before (a redelivery); nothing changed.
	Duplicate
	// Recorded: only the object's resourceVersion watermark moved; nothing a client sees changed.
	Recorded
	// Changed: the job's status, steps or times changed.
	Changed
)

// Stored reports whether the job must be written back.
func (o Outcome) Stored() bool { return o >= Recorded }

// observe records that the snapshot of object key at resourceVersion rv is being applied. A
// snapshot older than or equal to one applied before is not applied again. Resource versions are
// compared as numbers, and only for the same object of the same cluster (the job's own).
func observe(j *jobs.Job, key, rv string, deleted bool) Outcome {
	if j.Observed == nil {
		j.Observed = map[string]string{}
	}
	mark := rv
	if deleted {
		mark = rv + "-deleted"
	}
	prev, seen := j.Observed[key]
	if seen {
		if prev == mark {
			return Duplicate
		}
		if strings.HasSuffix(prev, "-deleted") {
			return Stale // nothing follows a delete
		}
		pn, perr := strconv.ParseUint(prev, 10, 64)
		n, err := strconv.ParseUint(rv, 10, 64)
		if !deleted && perr == nil && err == nil && n <= pn {
			return Stale
		}
	}
	j.Observed[key] = mark
	return Recorded
}

// ApplyJob applies a snapshot of the job's Kubernetes Job. deleted says it came with a delete.
// The Job's own end time (completionTime, or the Failed condition's time) is the job's end
// whenever a Job snapshot shows it, so the result does not depend on which event came first.
func ApplyJob(j *jobs.Job, kj *batchv1.Job, deleted bool, now time.Time) Outcome {
	before := j.Clone()
	if o := observe(j, "Job/"+kj.Name, kj.ResourceVersion, deleted); o != Recorded {
		return o
	}
	if s, reason, msg, end := jobEnd(kj); s != "" {
		finish(j, s, reason, msg, end)
		if j.Status == s {
			end = end.UTC()
			j.FinishedAt = &end
		}
	}
	if kj.Status.Ready != nil && *kj.Status.Ready > 0 {
		start(j, nil)
	}
	if deleted && !j.Status.Terminal() {
		if j.CancelRequested {
			finish(j, jobs.StatusCancelled, ReasonCancelled, "cancelled on request", now)
		} else {
			finish(j, jobs.StatusLost, ReasonJobDeleted,
				fmt.Sprintf("Kubernetes Job %s was deleted before it finished", kj.Name), now)
		}
	}
	explainFailure(j)
	return touch(before, j, now)
}

// jobEnd returns the terminal status a Job snapshot shows, if any, with its reason and time.
func jobEnd(kj *batchv1.Job) (jobs.Status, string, string, time.Time) {
	for _, c := range kj.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobFailed || c.Type == batchv1.JobFailureTarget) {
			return jobs.StatusFailed, c.Reason, c.Message, c.LastTransitionTime.Time
		}
	}
	for _, c := range kj.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobSuccessCriteriaMet) {
			end := c.LastTransitionTime.Time
			if kj.Status.CompletionTime != nil {
				end = kj.Status.CompletionTime.Time
			}
			return jobs.StatusSucceeded, "", "", end
		}
	}
	return "", "", "", time.Time{}
}

// ApplyPod applies a snapshot of one of the job's pods: its containers are the job's steps.
func ApplyPod(j *jobs.Job, pod *corev1.Pod, deleted bool, now time.Time) Outcome {
	before := j.Clone()
	if o := observe(j, "Pod/"+pod.Name, pod.ResourceVersion, deleted); o != Recorded {
		return o
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		mergeStep(j, stepOf(cs))
	}
	started := pod.Status.Phase != corev1.PodPending
	for _, s := range j.Steps {
		started = started || s.Status != jobs.StepWaiting
	}
	if started {
		start(j, ptrTime(pod.Status.StartTime)) // the earliest pod start is the job's start
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		// backoffLimit is 0 and completions 1: the pod's end is the job's end.
		finish(j, jobs.StatusSucceeded, "", "", lastFinish(j, now))
	case corev1.PodFailed:
		finish(j, jobs.StatusFailed, pod.Status.Reason, pod.Status.Message, lastFinish(j, now))
	}
	explainFailure(j)
	return touch(before, j, now)
}

// MarkGone ends a non-terminal job whose objects are no longer on its cluster.
func MarkGone(j *jobs.Job, now time.Time) Outcome {
	before := j.Clone()
	if j.CancelRequested {
		finish(j, jobs.StatusCancelled, ReasonCancelled, "cancelled on request", now)
	} else {
		finish(j, jobs.StatusLost, ReasonJobGone, fmt.Sprintf(
			"the Kubernetes Job of this job no longer exists on cluster %s and its end was not observed", j.Cluster), now)
	}
	return touch(before, j, now)
}

// touch compares j with its state before, ignoring the watermarks, and stamps a change.
func touch(before, j *jobs.Job, now time.Time) Outcome {
	obs := before.Observed
	before.Observed = j.Observed
	defer func() { before.Observed = obs }()
	if reflect.DeepEqual(before, j) {
		if reflect.DeepEqual(obs, j.Observed) {
			return Stale
		}
		return Recorded
	}
	j.UpdatedAt = now
	return Changed
}

// start moves a pending job to running and keeps the earliest known start time.
func start(j *jobs.Job, at *time.Time) {
	if j.Status == jobs.StatusPending {
		j.Status = jobs.StatusRunning
	}
	if at != nil && (j.StartedAt == nil || at.Before(*j.StartedAt)) {
		t := at.UTC()
		j.StartedAt = &t
	}
}

// finish moves j to a terminal status unless it already has one (terminal states are sticky).
func finish(j *jobs.Job, s jobs.Status, reason, msg string, at time.Time) {
	if j.Status.Terminal() {
		return
	}
	if j.StartedAt == nil && s != jobs.StatusLost && s != jobs.StatusCancelled {
		if first := firstStart(j); first != nil {
			j.StartedAt = first
		}
	}
	j.Status, j.Reason, j.Message = s, reason, msg
	at = at.UTC()
	j.FinishedAt = &at
}

// explainFailure names the failing step, exit code and reason in a failed job's message as soon
// as the step's end is known, whichever of the Job and Pod events came first.
func explainFailure(j *jobs.Job) {
	if j.Status != jobs.StatusFailed || j.Reason == ReasonStepFailed {
		return
	}
	for _, s := range j.Steps {
		if s.Status != jobs.StepFailed {
			continue
		}
		code := int32(-1)
		if s.ExitCode != nil {
			code = *s.ExitCode
		}
		msg := fmt.Sprintf("step %s failed with exit code %d (%s)", s.Name, code, s.Reason)
		if s.Message != "" {
			msg += ": " + s.Message
		}
		j.Reason, j.Message = ReasonStepFailed, msg
		return
	}
}

func stepOf(cs corev1.ContainerStatus) jobs.Step {
	s := jobs.Step{Name: cs.Name, Status: jobs.StepWaiting}
	switch {
	case cs.State.Terminated != nil:
		t := cs.State.Terminated
		code := t.ExitCode
		s.ExitCode, s.Reason, s.Message = &code, t.Reason, t.Message
		s.Status = jobs.StepSucceeded
		if code != 0 {
			s.Status = jobs.StepFailed
		}
		s.StartedAt, s.FinishedAt = ptrTime(&t.StartedAt), ptrTime(&t.FinishedAt)
	case cs.State.Running != nil:
		s.Status = jobs.StepRunning
		s.StartedAt = ptrTime(&cs.State.Running.StartedAt)
	case cs.State.Waiting != nil:
		s.Reason, s.Message = cs.State.Waiting.Reason, cs.State.Waiting.Message
	}
	return s
}

// mergeStep moves the named step forward to s; a step never goes back and an ended step keeps
// its first recorded end.
func mergeStep(j *jobs.Job, s jobs.Step) {
	for i := range j.Steps {
		cur := &j.Steps[i]
		if cur.Name != s.Name {
			continue
		}
		switch {
		case rank(s.Status) > rank(cur.Status):
			if s.StartedAt == nil {
				s.StartedAt = cur.StartedAt
			}
			*cur = s
		case rank(s.Status) == rank(cur.Status) && cur.Status == jobs.StepWaiting:
			cur.Reason, cur.Message = s.Reason, s.Message
		case rank(s.Status) == rank(cur.Status) && cur.StartedAt == nil:
			cur.StartedAt = s.StartedAt
		}
		return
	}
	j.Steps = append(j.Steps, s)
}

func rank(s jobs.StepStatus) int {
	switch s {
	case jobs.StepRunning:
		return 1
	case jobs.StepSucceeded, jobs.StepFailed:
		return 2
	}
	return 0
}

func firstStart(j *jobs.Job) *time.Time {
	var first *time.Time
	for _, s := range j.Steps {
		if s.StartedAt != nil && (first == nil || s.StartedAt.Before(*first)) {
			first = s.StartedAt
		}
	}
	return first
}

func lastFinish(j *jobs.Job, now time.Time) time.Time {
	var last time.Time
	for _, s := range j.Steps {
		if s.FinishedAt != nil && s.FinishedAt.After(last) {
			last = *s.FinishedAt
		}
	}
	if last.IsZero() {
		return now
	}
	return last
}

func ptrTime(t *metav1.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.Time.UTC()
	return &u
}
