package jobs

import (
	"strconv"
	"strings"
	"time"
)

// Attempt is one earlier run of a job that the infrastructure lost (docs/queue.md): its
// objects were refused for a transient reason, its pod was evicted or its node lost, or its
// Kubernetes Job disappeared. The job went back to the queue as a new attempt; this is how the
// lost one ended, kept with its steps (their logs stay readable with ?attempt=N).
type Attempt struct {
	// Number is the attempt's number, from 1.
	Number int `json:"number"`
	// Cluster and Namespace are where the attempt ran ("" if its objects were never created).
	Cluster   string `json:"cluster,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Status is how the attempt ended (failed or lost); Reason and Message say why.
	Status  Status `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Steps are the attempt's steps as they ended.
	Steps        []Step     `json:"steps"`
	DispatchedAt *time.Time `json:"dispatchedAt,omitempty"`
	StartedAt    *time.Time `json:"startedAt,omitempty"`
	FinishedAt   *time.Time `json:"finishedAt"`
}

// Reasons of an attempt's end that send the job back to the queue.
const (
	// ReasonDisrupted: the attempt's pod was evicted, preempted or its node lost (the pod's
	// DisruptionTarget condition, or the reason Evicted).
	ReasonDisrupted = "Disrupted"
	// ReasonJobGone: the attempt's Kubernetes Job disappeared before its end was observed.
	ReasonJobGone = "JobGone"
	// ReasonCreateFailed: the cluster refused the attempt's objects.
	ReasonCreateFailed = "CreateFailed"
)

// DefaultMaxAttempts is how many attempts a job gets when its job type sets no limit.
const DefaultMaxAttempts = 3

// CurrentAttempt is the number of the job's attempt under way (or its last): 1 for a job never
// retried (and for one recorded before attempts existed).
func (j *Job) CurrentAttempt() int { return max(j.Attempt, 1) }

// MaxAttempts is the most attempts the job may have: queue.maxAttempts, recorded at submit
// from the job type's policy; 1 for a job recorded without the queue.
func (j *Job) MaxAttempts() int {
	if j.Queue == nil || j.Queue.MaxAttempts < 1 {
		return 1
	}
	return j.Queue.MaxAttempts
}

// Retry sends a job whose current attempt has just ended failed or lost because the
// infrastructure lost it (reason: ReasonDisrupted, ReasonJobGone, ReasonCreateFailed; msg says
// how) back to the queue as a new attempt. The ended attempt, with its status, times and steps
// (still waiting: never started; still running: unknown), is appended to Attempts; the job is
// queued again with its steps waiting, no cluster and no slot claim. It does nothing, and
// reports false, when the job did not end failed or lost, a cancel was requested, it has no
// attempt left or it never went through the queue: the end then stands.
func (j *Job) Retry(reason, msg string) bool {
	if (j.Status != StatusFailed && j.Status != StatusLost) || j.CancelRequested || j.Queue == nil ||
		j.CurrentAttempt() >= j.MaxAttempts() {
		return false
	}
	a := Attempt{
		Number: j.CurrentAttempt(), Cluster: j.Cluster, Namespace: j.Namespace,
		Status: j.Status, Reason: reason, Message: msg,
		Steps: make([]Step, len(j.Steps)), StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
	}
	copy(a.Steps, j.Steps)
	for i := range a.Steps {
		st := &a.Steps[i]
		switch st.Status {
		case StepWaiting:
			st.Reason, st.Message = StepReasonNotStarted, "the attempt ended before this step started"
		case StepRunning:
			st.Status, st.Reason, st.Message = StepUnknown, StepReasonPodGone, "the attempt ended before this step's end was observed"
		}
	}
	if j.Queue.DispatchedAt != nil {
		d := *j.Queue.DispatchedAt
		a.DispatchedAt = &d
	}
	j.Attempts = append(j.Attempts, a)
	j.Attempt = a.Number + 1
	j.Status, j.Reason, j.Message = StatusQueued, "", ""
	j.Cluster, j.Namespace, j.StartedAt, j.FinishedAt, j.Disruption = "", "", nil, nil, ""
	for i := range j.Steps {
		j.Steps[i] = Step{Name: j.Steps[i].Name, Status: StepWaiting}
	}
	j.Queue.Claim, j.Queue.DispatchedAt, j.Queue.Position = "", nil, 0
	j.Queue.Reason = "attempt " + strconv.Itoa(j.Attempt) + " of " + strconv.Itoa(j.MaxAttempts()) +
		": attempt " + strconv.Itoa(a.Number) + " was lost (" + reason + ")"
	return true
}

// AttemptView returns the job as attempt n ran: for an earlier attempt, a copy whose cluster,
// namespace, status, times and steps are the attempt's; for the current one, j itself. ok is
// false for a number the job has no attempt of.
func (j *Job) AttemptView(n int) (*Job, bool) {
	if n == 0 || n == j.CurrentAttempt() {
		return j, true
	}
	for _, a := range j.Attempts {
		if a.Number != n {
			continue
		}
		v := j.Clone()
		v.Attempt, v.Attempts = n, nil
		v.Cluster, v.Namespace, v.Status, v.Reason, v.Message = a.Cluster, a.Namespace, a.Status, a.Reason, a.Message
		v.StartedAt, v.FinishedAt, v.Steps = a.StartedAt, a.FinishedAt, append([]Step(nil), a.Steps...)
		return v, true
	}
	return nil, false
}

// LogStepKey is the key under which the log of step of attempt n is stored: the step's name
// for the first attempt (as before attempts existed), "<step>@<n>" from the second on ('@'
// cannot occur in a container name).
func LogStepKey(step string, attempt int) string {
	if attempt <= 1 {
		return step
	}
	return step + "@" + strconv.Itoa(attempt)
}

// SplitLogStepKey splits a LogStepKey into the step's name and the attempt number.
func SplitLogStepKey(key string) (step string, attempt int) {
	i := strings.LastIndexByte(key, '@')
	if i < 0 {
		return key, 1
	}
	n, err := strconv.Atoi(key[i+1:])
	if err != nil || n < 2 {
		return key, 1
	}
	return key[:i], n
}
