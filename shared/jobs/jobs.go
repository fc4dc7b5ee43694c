// Package jobs holds the domain types of omni-orchestrator: a build job, its steps, its status
// and the rules by which status only ever moves forward. Every other package speaks these types.
package jobs

import (
	"time"
)

// Status is the lifecycle state of a job.
type Status string

// The job statuses. pending → running → one of the terminal ones; terminal states are sticky.
const (
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
var Statuses = []Status{StatusPending, StatusRunning, StatusSucceeded, StatusFailed, StatusCancelled, StatusLost}

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
	case StatusPending:
		return 0
	case StatusRunning:
		return 1
	}
	if s.Terminal() {
		return 2
	}
	return -1
}

// StepStatus is the state of one step (one container of the job's pod).
type StepStatus string

// The step statuses, in the order a step goes through them.
const (
	StepWaiting   StepStatus = "waiting"
	StepRunning   StepStatus = "running"
	StepSucceeded StepStatus = "succeeded"
	StepFailed    StepStatus = "failed"
)

// Terminal reports whether the step has ended.
func (s StepStatus) Terminal() bool { return s == StepSucceeded || s == StepFailed }

func (s StepStatus) rank() int {
	switch s {
	case StepWaiting:
		return 0
	case StepRunning:
		return 1
	case StepSucceeded, StepFailed:
		return 2
	}
	return -1
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
