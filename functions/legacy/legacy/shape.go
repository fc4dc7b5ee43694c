package legacy

import (
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// State is a legacy job state: exactly one of the five below. omni-manager stores any other
// value as NULL and never polls that job again, so nothing else may ever be sent.
type State string

// The legacy job states.
const (
	JobCreated State = "JobCreated"
	JobRunning State = "JobRunning"
	JobSucceed State = "JobSucceed"
	JobFailed  State = "JobFailed"
	JobStopped State = "JobStopped"
)

// States lists every legacy job state.
var States = []State{JobCreated, JobRunning, JobSucceed, JobFailed, JobStopped}

// StepState is a legacy step state.
type StepState string

// The legacy step states.
const (
	StepCreated StepState = "StepCreated"
	StepRunning StepState = "StepRunning"
	StepSucceed StepState = "StepSucceed"
	StepFailed  StepState = "StepFailed"
	StepStopped StepState = "StepStopped"
)

// StepStates lists every legacy step state.
var StepStates = []StepState{StepCreated, StepRunning, StepSucceed, StepFailed, StepStopped}

// Engine is the only engine the legacy API knows.
const Engine = "kubernetes"

// Job is a job in the predecessor's shape.
type Job struct {
	Service string         `json:"service"`
	Task    string         `json:"task"`
	Domain  string         `json:"domain"`
	ID      string         `json:"id"`
	UserID  string         `json:"userID"`
	Spec    map[string]any `json:"spec"`
	Engine  string         `json:"engine"`
	// StartTime and EndTime are UTC RFC 3339 (Time): never empty, never shorter than 19 characters.
	StartTime string `json:"startTime"`
	EndTime   string `json:"endTime"`
	State     State  `json:"state"`
	Steps     []Step `json:"steps"`
	// Detail is the job's message; Version its revision.
	Detail  string `json:"detail"`
	Version int64  `json:"version"`
}

// Step is a step in the predecessor's shape; ID is its position + 1.
type Step struct {
	ID        int       `json:"id"`
	Name      string    `json:"name"`
	State     StepState `json:"state"`
	StartTime string    `json:"startTime"`
	EndTime   string    `json:"endTime"`
	Message   string    `json:"message"`
}

// ZeroTime is how an unset time is sent: the predecessor sent Go's zero time.Time.
const ZeroTime = "0001-01-01T00:00:00Z"

// Time formats t as the legacy API sends times: UTC RFC 3339 with the fraction when there is
// one, ZeroTime when t is nil or zero. The result is at least 20 characters (omni-manager
// slices [:19]).
func Time(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ZeroTime
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// JobStateOf maps a job status to its legacy state: queued and pending are JobCreated, failed
// and lost JobFailed, cancelled JobStopped. A status this layer does not know is JobFailed when
// terminal and JobRunning otherwise, so that omni-manager keeps polling it.
func JobStateOf(s jobs.Status) State {
	switch s {
	case jobs.StatusQueued, jobs.StatusPending:
		return JobCreated
	case jobs.StatusRunning:
		return JobRunning
	case jobs.StatusSucceeded:
		return JobSucceed
	case jobs.StatusFailed, jobs.StatusLost:
		return JobFailed
	case jobs.StatusCancelled:
		return JobStopped
	}
	if s.Terminal() {
		return JobFailed
	}
	return JobRunning
}

// StepStateOf maps a step's status to its legacy state within a job of status job: in a
// cancelled job every step that did not end by itself is StepStopped; in another ended job a
// step whose end was not seen (unknown, or still running) is StepFailed.
func StepStateOf(job jobs.Status, s jobs.StepStatus) StepState {
	switch s {
	case jobs.StepSucceeded:
		return StepSucceed
	case jobs.StepFailed:
		return StepFailed
	case jobs.StepCancelled:
		return StepStopped
	}
	if job == jobs.StatusCancelled {
		return StepStopped
	}
	switch s {
	case jobs.StepWaiting:
		return StepCreated
	case jobs.StepRunning:
		if !job.Terminal() {
			return StepRunning
		}
	}
	return StepFailed
}

// FromJob returns j in the legacy shape; spec is j's spec as the legacy API shows it.
func FromJob(j *jobs.Job, spec map[string]any) *Job {
	out := &Job{
		Service: j.Service, Task: j.Task, Domain: j.Domain, ID: j.ID,
		Spec: spec, Engine: Engine,
		StartTime: Time(j.StartedAt), EndTime: Time(j.FinishedAt),
		State:  JobStateOf(j.Status),
		Steps:  make([]Step, len(j.Steps)),
		Detail: j.Message, Version: j.Revision,
	}
	if u, ok := j.Parameters[paramUserID].(string); ok {
		out.UserID = u
	}
	if out.Spec == nil {
		out.Spec = map[string]any{}
	}
	for i, s := range j.Steps {
		msg := s.Message
		if msg == "" && s.Status == jobs.StepFailed {
			msg = s.Reason
		}
		out.Steps[i] = Step{
			ID: i + 1, Name: s.Name, State: StepStateOf(j.Status, s.Status),
			StartTime: Time(s.StartedAt), EndTime: Time(s.FinishedAt), Message: msg,
		}
	}
	return out
}
