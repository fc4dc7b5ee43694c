// Package jobs holds the domain types of omni-orchestrator: a build job, its steps, its status
// and the rules by which status only ever moves forward. Every other package speaks these types.
package jobs

import (
	"net/url"
	"time"
)

// Status is the lifecycle state of a job.
type Status string

// The job statuses. queued → pending → running → one of the terminal ones; terminal states
// are sticky.
const (
	// StatusQueued: recorded, waiting in the build queue for room on an engine instance of its
	// arch (docs/queue.md); nothing exists on a cluster yet.
	StatusQueued Status = "queued"
	// StatusPending: recorded; the cluster objects are created or being created, no pod runs yet.
	StatusPending Status = "pending"
	// StatusRunning: a pod of the job has started.
	StatusRunning Status = "running"
	// StatusSucceeded: the Kubernetes Job completed.
	StatusSucceeded Status = "succeeded"
	// StatusFailed: a step failed, the Job failed, or its objects could not be created.
	StatusFailed Status = "failed"
	// StatusCancelled: stopped on request.
	StatusCancelled Status = "cancelled"
	// StatusLost: the cluster objects disappeared before the job reached an end we could observe.
	StatusLost Status = "lost"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{StatusQueued, StatusPending, StatusRunning, StatusSucceeded, StatusFailed, StatusCancelled, StatusLost}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Terminal reports whether s is an end state, which no later observation may change.
func (s Status) Terminal() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusCancelled, StatusLost:
		return true
	}
	return false
}

// rank orders statuses so that a job only moves forward.
func (s Status) rank() int {
	switch s {
	case StatusQueued:
		return 0
	case StatusPending:
		return 1
	case StatusRunning:
		return 2
	}
	if s.Terminal() {
		return 3
	}
	return -1
}

// StepStatus is the state of one step (one container of the job's pod).
type StepStatus string

// The step statuses. A step goes waiting → running → an end; unknown says its end can no longer be
// observed, and gives way to the true end should a late snapshot still bring it.
const (
	// StepWaiting: the step has not started. In an ended job whose steps are settled, a step still
	// waiting carries the reason StepReasonNotStarted: it never ran.
	StepWaiting StepStatus = "waiting"
	// StepRunning: the step's container runs.
	StepRunning StepStatus = "running"
	// StepSucceeded: the container exited 0.
	StepSucceeded StepStatus = "succeeded"
	// StepFailed: the container exited with another code, or was killed other than by a cancel.
	StepFailed StepStatus = "failed"
	// StepCancelled: the container was killed by the job's cancel (its exit code is kept).
	StepCancelled StepStatus = "cancelled"
	// StepUnknown: the job ended and its pods are gone without the step's end being observed.
	StepUnknown StepStatus = "unknown"
)

// Reasons of steps set by the job's own rules (a container's reasons come from Kubernetes).
const (
	// StepReasonNotStarted: the step was still waiting when the job's pod ended; it never ran.
	StepReasonNotStarted = "NotStarted"
	// StepReasonPodGone: the step's end was not observed before the job's pods disappeared.
	StepReasonPodGone = "PodGone"
)

// Terminal reports whether the step has ended.
func (s StepStatus) Terminal() bool {
	return s == StepSucceeded || s == StepFailed || s == StepCancelled
}

// Rank orders step statuses so that a step only moves forward: waiting, running, unknown, then
// the ends (which rank equal: the first end recorded stays).
func (s StepStatus) Rank() int {
	switch s {
	case StepWaiting:
		return 0
	case StepRunning:
		return 1
	case StepUnknown:
		return 2
	case StepSucceeded, StepFailed, StepCancelled:
		return 3
	}
	return -1
}

// Settled reports whether the step's state is final: it ended, it is unknown for good, or it
// never started in a job that ended.
func (s Step) Settled() bool {
	return s.Status.Terminal() || s.Status == StepUnknown || (s.Status == StepWaiting && s.Reason == StepReasonNotStarted)
}

// Arches are the supported build architectures, named as the build platform names them.
var Arches = []string{"x86_64", "aarch64"}

// KubeArch maps a build architecture to the kubernetes.io/arch node label value.
func KubeArch(arch string) string {
	switch arch {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return ""
}

// Job is a build job as the store keeps it and the query API returns it.
type Job struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Task    string `json:"task"`
	Domain  string `json:"domain"`
	// Arch is the build architecture asked for (x86_64 or aarch64).
	Arch string `json:"arch"`
	// Cluster is the engine instance the job's objects were created on.
	Cluster string `json:"cluster"`
	// Namespace is the Kubernetes namespace of the job's objects on Cluster.
	Namespace  string            `json:"namespace"`
	Status     Status            `json:"status"`
	Reason     string            `json:"reason,omitempty"`
	Message    string            `json:"message,omitempty"`
	Parameters map[string]any    `json:"parameters"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Callback is the URL notified of every change of this job, if any.
	Callback string `json:"callback,omitempty"`
	Steps    []Step `json:"steps"`
	// Queue is how the job went through the build queue: its class, its slots, why and where it
	// waits, when it was dispatched (nil for a job recorded before the queue existed).
	Queue *Queue `json:"queue,omitempty"`
	// RerunOf is the job this one reruns (POST /v1/jobs/{id}:rerun); Reruns are the jobs that
	// rerun this one, oldest first.
	RerunOf string   `json:"rerunOf,omitempty"`
	Reruns  []string `json:"reruns,omitempty"`
	// Attempt is the number of the job's attempt under way, from 1 (0 in a job recorded before
	// attempts existed: its first). Attempts are the earlier attempts, lost to the
	// infrastructure, oldest first (docs/queue.md).
	Attempt  int       `json:"attempt,omitempty"`
	Attempts []Attempt `json:"attempts,omitempty"`
	// Disruption is set when a pod of the current attempt showed that the infrastructure
	// stopped it (evicted, preempted, node lost): its end then sends the job back to the queue
	// rather than ending it (Retry).
	Disruption string `json:"disruption,omitempty"`
	// Ran is what the job was dispatched with (nil until it is dispatched from the queue).
	Ran *Ran `json:"ran,omitempty"`
	// LogsArchived is set by log-archive once the log of every step of the ended job is
	// archived, whole or as far as it could be, and the pods are released. Until then the job
	// stays on the resync list (NeedsResync), so that an archive whose event was lost or
	// dead-lettered is asked for again (docs/logs.md).
	LogsArchived bool `json:"logsArchived,omitempty"`
	// CancelRequested is set when a client asked to stop the job; the next observation ends it cancelled.
	CancelRequested bool       `json:"cancelRequested,omitempty"`
	CreatedAt       time.Time  `json:"createdAt"`
	StartedAt       *time.Time `json:"startedAt,omitempty"`
	FinishedAt      *time.Time `json:"finishedAt,omitempty"`
	UpdatedAt       time.Time  `json:"updatedAt"`
	// Revision counts stored changes; it orders job.changed events and guards concurrent writers.
	Revision int64 `json:"revision"`
	// Observed holds, per cluster object ("Job/<name>", "Pod/<name>"), the highest resourceVersion
	// applied, so that older or repeated snapshots are ignored. Internal; not part of the API.
	Observed map[string]string `json:"-"`
}

// Redacted returns a copy of j fit to show anyone who may see the job (API responses, job
// events): its callback URL without credentials, query or fragment (callback URLs often carry
// tokens). The store keeps the full URL for notify.
func (j *Job) Redacted() *Job {
	if j == nil || j.Callback == "" {
		return j
	}
	c := *j
	c.Callback = RedactURL(j.Callback)
	return &c
}

// RedactURL shows raw without credentials, query and fragment; a URL that does not parse
// becomes "(invalid URL)".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Step is one container of the job's pod: init containers first, in order, then the main ones.
type Step struct {
	Name       string     `json:"name"`
	Status     StepStatus `json:"status"`
	ExitCode   *int32     `json:"exitCode,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Message    string     `json:"message,omitempty"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// ReasonCancelled and MessageCancelled are the reason and message of a job stopped on request,
// whoever records its end (cancel itself, or status-sync observing the objects go).
const (
	ReasonCancelled  = "Cancelled"
	MessageCancelled = "cancelled on request"
)

// End moves j to the terminal status s with reason and message, unless j has ended already
// (terminal statuses are sticky); it reports whether it did. at is when the job ended as its
// objects show it, observed when this end is being recorded. Once a cancel is requested every
// end is a cancel, at observed (EndCancelled), whatever s says: the cancel's kill is what ends
// the job, and which observation records the end first must not matter.
func (j *Job) End(s Status, reason, msg string, at, observed time.Time) bool {
	if j.CancelRequested {
		return j.EndCancelled(observed)
	}
	if j.Status.Terminal() || !s.Terminal() {
		return false
	}
	j.Status, j.Reason, j.Message = s, reason, msg
	at = at.UTC()
	j.FinishedAt = &at
	return true
}

// EndCancelled ends j cancelled at at (when the end is recorded) unless j has ended already, and
// marks the steps the cancel killed (see MarkCancelledSteps); it reports whether it ended j. Cancel's own write and every
// derivation of status-sync end a cancelled job through it, so the job reads the same whichever
// comes first.
func (j *Job) EndCancelled(at time.Time) bool {
	if j.Status.Terminal() {
		j.MarkCancelledSteps()
		return false
	}
	j.Status, j.Reason, j.Message = StatusCancelled, ReasonCancelled, MessageCancelled
	at = at.UTC()
	j.FinishedAt = &at
	j.MarkCancelledSteps()
	return true
}

// MarkCancelledSteps marks, in a cancelled job, each step that the cancel killed as cancelled:
// a step that ended with the exit code of a container stopped by SIGKILL (137) or SIGTERM (143),
// other than by the out-of-memory killer. Its exit code, reason and times are kept. A step that
// failed on its own (any other code) stays failed. Calling it again changes nothing.
func (j *Job) MarkCancelledSteps() {
	if j.Status != StatusCancelled {
		return
	}
	for i := range j.Steps {
		s := &j.Steps[i]
		if s.Status == StepFailed && s.ExitCode != nil && (*s.ExitCode == 137 || *s.ExitCode == 143) && s.Reason != "OOMKilled" {
			s.Status = StepCancelled
		}
	}
}

// StepsSettled reports whether every step of j is settled (Step.Settled).
func (j *Job) StepsSettled() bool {
	for _, s := range j.Steps {
		if !s.Settled() {
			return false
		}
	}
	return true
}

// NeedsResync reports whether the resync must still read j back from its cluster: j has not
// ended, or it ended but its steps do not agree with that yet (one is waiting without having been
// seen not to start, or running).
func (j *Job) NeedsResync() bool {
	return !j.Status.Terminal() || !j.StepsSettled()
}

// Unsettled reports whether j belongs on the resync's list (ListUnsettled): it needs a resync
// (NeedsResync), or it ended and its logs are not archived yet (LogsArchived), so that an
// archive whose event was lost or dead-lettered is asked for again. The stores keep the jobs for
// which it holds on that list.
func (j *Job) Unsettled() bool {
	return j.NeedsResync() || !j.LogsArchived
}

// Clone returns a deep copy of j.
func (j *Job) Clone() *Job {
	if j == nil {
		return nil
	}
	c := *j
	c.Parameters = cloneAny(j.Parameters)
	if j.Labels != nil {
		c.Labels = make(map[string]string, len(j.Labels))
		for k, v := range j.Labels {
			c.Labels[k] = v
		}
	}
	if j.Observed != nil {
		c.Observed = make(map[string]string, len(j.Observed))
		for k, v := range j.Observed {
			c.Observed[k] = v
		}
	}
	if j.Queue != nil {
		q := *j.Queue
		if q.DispatchedAt != nil {
			at := *q.DispatchedAt
			q.DispatchedAt = &at
		}
		c.Queue = &q
	}
	if j.Ran != nil {
		r := *j.Ran
		r.Images = append([]string(nil), j.Ran.Images...)
		c.Ran = &r
	}
	if j.Attempts != nil {
		c.Attempts = make([]Attempt, len(j.Attempts))
		for i, a := range j.Attempts {
			a.Steps = append([]Step(nil), a.Steps...)
			c.Attempts[i] = a
		}
	}
	if j.Reruns != nil {
		c.Reruns = append([]string(nil), j.Reruns...)
	}
	c.Steps = make([]Step, len(j.Steps))
	copy(c.Steps, j.Steps)
	return &c
}

func cloneAny(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch t := v.(type) {
		case map[string]any:
			out[k] = cloneAny(t)
		case []any:
			s := make([]any, len(t))
			copy(s, t)
			out[k] = s
		default:
			out[k] = v
		}
	}
	return out
}
