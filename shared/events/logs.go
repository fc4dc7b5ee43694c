package events

import (
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// LogsArchivedData is the data of logs.archived: the archive state of every step of the job.
type LogsArchivedData struct {
	// JobID is the job's id (also the event's subject).
	JobID string `json:"jobId"`
	// Status is the job's status when its logs were archived.
	Status jobs.Status `json:"status"`
	// Complete is true when every step's log is archived whole.
	Complete bool `json:"complete"`
	// Steps are the job's steps in order.
	Steps []LogsStep `json:"steps"`
}

// LogsStep is the archive state of one step in a logs.archived event.
type LogsStep struct {
	Name string `json:"name"`
	// Bytes and Lines count what is archived.
	Bytes int64 `json:"bytes"`
	Lines int64 `json:"lines"`
	// Complete: the whole log of the step is archived.
	Complete bool `json:"complete"`
	// Incomplete: the pod went away before its log was archived; Reason says how.
	Incomplete bool   `json:"incomplete,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// NewLogsArchivedEvent builds the logs.archived event of job j from function fn. Its id is
// "<job id>.logs.archived": it is sent once the log of every step is settled, which never
// changes after, so every copy (a redelivered archive replies again) carries the same id and
// the same data.
func NewLogsArchivedEvent(fn string, j *jobs.Job, d LogsArchivedData) (event.Event, error) {
	e := cloudevents.NewEvent()
	e.SetID(j.ID + ".logs.archived")
	e.SetType(TypeLogsArchived)
	e.SetSource(Source(fn))
	e.SetSubject(j.ID)
	t := j.UpdatedAt
	if j.FinishedAt != nil {
		t = *j.FinishedAt
	}
	e.SetTime(t.UTC().Truncate(time.Microsecond))
	e.SetExtension(ExtService, j.Service)
	e.SetExtension(ExtTask, j.Task)
	e.SetExtension(ExtDomain, j.Domain)
	e.SetExtension(ExtArch, j.Arch)
	e.SetExtension(ExtStatus, string(j.Status))
	if err := e.SetData(cloudevents.ApplicationJSON, d); err != nil {
		return e, fmt.Errorf("encode logs.archived event: %w", err)
	}
	return e, nil
}

// LogsAppendedData is the data of logs.appended, the event a worker sends to push lines of a
// step while it runs (docs/logs.md). The event's subject is the job id.
type LogsAppendedData struct {
	// Step is the container name of the step.
	Step string `json:"step"`
	// Seq numbers the worker's pushes for this step from 1, without gaps; a push sent again
	// (a retry) carries the same seq and the same lines.
	Seq int64 `json:"seq"`
	// Lines are the lines, in order.
	Lines []AppendedLine `json:"lines"`
}

// AppendedLine is one pushed line.
type AppendedLine struct {
	// Time is when the worker wrote the line (RFC 3339).
	Time time.Time `json:"time"`
	// Text is the line without its newline; a text holding newlines counts as several lines.
	Text string `json:"text"`
}

// NewLogsAppendedEvent builds a logs.appended event for job jobID from source (a worker names
// itself, e.g. /omni/worker/<pod>). Its id is "<job id>.<step>.logs.appended.<seq>", the same
// for a push sent again.
func NewLogsAppendedEvent(source, jobID string, d LogsAppendedData) (event.Event, error) {
	e := cloudevents.NewEvent()
	e.SetID(fmt.Sprintf("%s.%s.logs.appended.%d", jobID, d.Step, d.Seq))
	e.SetType(TypeLogsAppended)
	e.SetSource(source)
	e.SetSubject(jobID)
	if n := len(d.Lines); n > 0 {
		e.SetTime(d.Lines[n-1].Time.UTC())
	}
	if err := e.SetData(cloudevents.ApplicationJSON, d); err != nil {
		return e, fmt.Errorf("encode logs.appended event: %w", err)
	}
	return e, nil
}
