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
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
)

// Reasons set on jobs by status-sync.
const (
	ReasonStepFailed = "StepFailed"
	ReasonJobDeleted = "JobDeleted"
	ReasonJobGone    = jobs.ReasonJobGone
	// ReasonCancelled is jobs.ReasonCancelled: cancel and status-sync end a cancel alike.
	ReasonCancelled = jobs.ReasonCancelled
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
// For a failure, the Job's reason is the job's whenever a Job snapshot shows it (until a failed
// step is named), and so is the Job's end time (completionTime, or the Failed condition's time)
// until the steps are settled (see settle), so the result does not depend on which came first.
// It reads only the Job's name, resourceVersion and status: Receive decodes no more of an event.
func ApplyJob(j *jobs.Job, kj *batchv1.Job, deleted bool, now time.Time) Outcome {
	if j.Status == jobs.StatusQueued {
		return Stale // nothing of a queued job's attempt is on a cluster: an earlier attempt's object
	}
	before := j.Clone()
	if o := observe(j, "Job/"+kj.Name, kj.ResourceVersion, deleted); o != Recorded {
		return o
	}
	if s, reason, msg, end := jobEnd(kj); s != "" {
		if reason == "PodFailurePolicy" && strings.Contains(msg, string(corev1.DisruptionTarget)) && j.Disruption == "" && !j.Status.Terminal() {
			// The templates' podFailurePolicy fails the Job so when a pod was disrupted.
			j.Disruption = msg
		}
		finish(j, s, reason, msg, end, now)
		if j.Status == s {
			end = end.UTC()
			j.FinishedAt = &end
			if s == jobs.StatusFailed && j.Reason != ReasonStepFailed {
				j.Reason, j.Message = reason, msg
			}
		}
	}
	if kj.Status.Ready != nil && *kj.Status.Ready > 0 {
		start(j, nil)
	}
	if deleted {
		finish(j, jobs.StatusLost, ReasonJobDeleted,
			fmt.Sprintf("Kubernetes Job %s was deleted before it finished", kj.Name), now, now)
	}
	settle(j)
	retryLost(before, j)
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

// ApplyPod applies a snapshot of one of the job's pods: its containers are the job's steps. A
// pod that has ended (or is deleted) is final: a step it shows still waiting never ran, and a step
// it shows running will never be seen ending. It reads only the pod's name, resourceVersion and
// status: Receive decodes no more of an event.
func ApplyPod(j *jobs.Job, pod *corev1.Pod, deleted bool, now time.Time) Outcome {
	if j.Status == jobs.StatusQueued {
		return Stale
	}
	before := j.Clone()
	if o := observe(j, "Pod/"+pod.Name, pod.ResourceVersion, deleted); o != Recorded {
		return o
	}
	if why := disruption(pod); why != "" && j.Disruption == "" && !j.Status.Terminal() {
		j.Disruption = why
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
		finish(j, jobs.StatusSucceeded, "", "", lastFinish(j, now), now)
	case corev1.PodFailed:
		finish(j, jobs.StatusFailed, pod.Status.Reason, pod.Status.Message, lastFinish(j, now), now)
	}
	if j.Status.Terminal() && (deleted || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed) {
		// Every step, not only those the pod has a status of: a pod deleted before it was
		// scheduled (a cancel right after the submit) ends with none.
		for _, s := range j.Steps {
			settleFinal(j, s.Name)
		}
	}
	settle(j)
	retryLost(before, j)
	return touch(before, j, now)
}

// disruption says how the infrastructure stopped pod, if it did: the DisruptionTarget
// condition Kubernetes sets on a pod it evicts, preempts or deletes with its lost node, or the
// reason Evicted of a kubelet's eviction; "" otherwise.
func disruption(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return strings.TrimSuffix(fmt.Sprintf("pod %s: %s: %s", pod.Name, c.Reason, c.Message), ": ")
		}
	}
	if pod.Status.Reason == "Evicted" {
		return strings.TrimSuffix(fmt.Sprintf("pod %s: Evicted: %s", pod.Name, pod.Status.Message), ": ")
	}
	return ""
}

// retryLost sends j back to the queue as a new attempt (jobs.Job.Retry) if it has just ended
// because the infrastructure lost it — a pod of it was disrupted, or its Kubernetes Job is gone
// — rather than because of the build: a step failing on its own is never retried.
func retryLost(before, j *jobs.Job) {
	if before.Status.Terminal() || !j.Status.Terminal() {
		return
	}
	switch {
	case j.Disruption != "":
		j.Retry(jobs.ReasonDisrupted, j.Disruption)
	case j.Status == jobs.StatusLost && j.Reason == ReasonJobGone:
		j.Retry(jobs.ReasonJobGone, j.Message)
	}
}

// settleFinal settles step name of an ended job from the final snapshot of its pod: still
// waiting, it never ran; still running (a pod deleted before its containers' ends were written),
// its end will never be observed.
func settleFinal(j *jobs.Job, name string) {
	for i := range j.Steps {
		s := &j.Steps[i]
		if s.Name != name {
			continue
		}
		switch s.Status {
		case jobs.StepWaiting:
			s.Reason, s.Message = jobs.StepReasonNotStarted, "the job ended before this step started"
		case jobs.StepRunning:
			s.Status, s.Reason, s.Message = jobs.StepUnknown, jobs.StepReasonPodGone, "the pod was deleted before this step's end was observed"
		}
		return
	}
}

// MarkGone ends a non-terminal job whose objects are no longer on its cluster.
func MarkGone(j *jobs.Job, now time.Time) Outcome {
	before := j.Clone()
	finish(j, jobs.StatusLost, ReasonJobGone, fmt.Sprintf(
		"the Kubernetes Job of this job no longer exists on cluster %s and its end was not observed", j.Cluster), now, now)
	settle(j)
	retryLost(before, j)
	return touch(before, j, now)
}

// MarkStepsGone settles the steps of an ended job whose pods are gone: a step not settled yet
// becomes unknown, with the reason, since nothing will ever show its end (never running or
// waiting in an ended job). It changes nothing in a job that has not ended.
func MarkStepsGone(j *jobs.Job, now time.Time) Outcome {
	before := j.Clone()
	if j.Status.Terminal() {
		for i := range j.Steps {
			if s := &j.Steps[i]; !s.Settled() {
				s.Status, s.Reason, s.Message = jobs.StepUnknown, jobs.StepReasonPodGone,
					"no pod of this job is left on its cluster and this step's end was never observed"
			}
		}
	}
	return touch(before, j, now)
}

// Reconcile applies what a resync read of the job's cluster found: its pods, its Kubernetes Job
// or, for a job older than grace, the Job's absence. An ended job whose pods are all gone has its
// unsettled steps marked unknown (MarkStepsGone), but only when the read shows that no pod can
// still come: the Job is gone or shows its end.
func Reconcile(j *jobs.Job, snap kube.Snapshot, now time.Time, grace time.Duration) Outcome {
	out := Stale
	for i := range snap.Pods {
		out = max(out, ApplyPod(j, &snap.Pods[i], false, now))
	}
	ended := snap.Job == nil
	if snap.Job != nil {
		out = max(out, ApplyJob(j, snap.Job, false, now))
		s, _, _, _ := jobEnd(snap.Job)
		ended = s != ""
	} else if !j.Status.Terminal() && now.Sub(since(j)) > grace {
		out = max(out, MarkGone(j, now))
	}
	if len(snap.Pods) == 0 && ended && j.Status.Terminal() {
		out = max(out, MarkStepsGone(j, now))
	}
	return out
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

// finish ends j (jobs.Job.End: a requested cancel turns every end into a cancel, at now) unless
// it has ended already; an end other than a loss or cancel dates the job's start from its steps
// if nothing else did.
func finish(j *jobs.Job, s jobs.Status, reason, msg string, at, now time.Time) {
	if j.Status.Terminal() {
		return
	}
	if j.StartedAt == nil && !j.CancelRequested && s != jobs.StatusLost && s != jobs.StatusCancelled {
		if first := firstStart(j); first != nil {
			j.StartedAt = first
		}
	}
	j.End(s, reason, msg, at, now)
}

// settle applies the rules that hold whatever was applied last: in a cancelled job the steps
// the cancel killed read cancelled; a failed job names its failing step; and a job that
// succeeded or failed, once its steps are settled from its pod's final snapshot, ends when its
// last step ended (the Job controller records its own end a little later, and which of the two
// is seen first must not matter).
func settle(j *jobs.Job) {
	j.MarkCancelledSteps()
	explainFailure(j)
	if (j.Status == jobs.StatusSucceeded || j.Status == jobs.StatusFailed) && j.StepsSettled() {
		var last *time.Time
		for _, s := range j.Steps {
			if s.Status == jobs.StepUnknown {
				return // some end is not known: keep the Job's
			}
			if s.FinishedAt != nil && (last == nil || s.FinishedAt.After(*last)) {
				last = s.FinishedAt
			}
		}
		if last != nil {
			end := *last
			j.FinishedAt = &end
		}
	}
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
		case s.Status.Rank() > cur.Status.Rank():
			if s.StartedAt == nil {
				s.StartedAt = cur.StartedAt
			}
			*cur = s
		case s.Status.Rank() == cur.Status.Rank() && cur.Status == jobs.StepWaiting && cur.Reason != jobs.StepReasonNotStarted:
			cur.Reason, cur.Message = s.Reason, s.Message
		case s.Status.Rank() == cur.Status.Rank() && cur.StartedAt == nil:
			cur.StartedAt = s.StartedAt
		}
		return
	}
	j.Steps = append(j.Steps, s)
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
