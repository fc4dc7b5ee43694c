// Package events defines the CloudEvents omni-orchestrator emits and consumes (docs/events.md):
// their types, the extensions every job event carries, and deterministic event ids so that a
// handler called twice emits the same event twice, which receivers de-duplicate by id.
package events

import (
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// The event types this project emits.
const (
	TypeJobCreated   = "org.openeuler.omni.job.created"
	TypeJobChanged   = "org.openeuler.omni.job.changed"
	TypeLogsArchived = "org.openeuler.omni.logs.archived"
	TypeLogsAppended = "org.openeuler.omni.logs.appended"
	// TypeLogsRequested asks log-archive again for the logs of an ended job whose logs are not
	// archived after the archive grace (its job.changed ended in the dead-letter sink, or was
	// lost): status-sync's resync sends it, with the job as data (JobData), to log-archive only.
	TypeLogsRequested = "org.openeuler.omni.logs.requested"
)

// The event types this project consumes from the Knative ApiServerSource (Resource mode) and PingSource.
const (
	TypeResourceAdd    = "dev.knative.apiserver.resource.add"
	TypeResourceUpdate = "dev.knative.apiserver.resource.update"
	TypeResourceDelete = "dev.knative.apiserver.resource.delete"
	TypePing           = "dev.knative.sources.ping"
)

// The extensions every job event carries, so that Triggers filter without reading data.
const (
	ExtService = "omniservice"
	ExtTask    = "omnitask"
	ExtDomain  = "omnidomain"
	ExtArch    = "omniarch"
	ExtStatus  = "omnistatus"
	// ExtCluster is set by the ApiServerSource's ceOverrides to the engine instance name.
	ExtCluster = "cluster"
)

// Source returns the source attribute of events emitted by function fn.
func Source(fn string) string { return "/omni/" + fn }

// JobData is the data of job.created and job.changed: the job as the query API returns it,
// plus the status it had before this change.
type JobData struct {
	*jobs.Job
	PreviousStatus jobs.Status `json:"previousStatus,omitempty"`
}

// NewJobEvent builds a job event of type typ from function fn. Its id is derived from the job
// id, type and revision, so the same stored state always yields the same event id. Its data
// shows the callback URL redacted (jobs.RedactURL).
func NewJobEvent(typ, fn string, j *jobs.Job, previous jobs.Status) (event.Event, error) {
	e := cloudevents.NewEvent()
	e.SetID(JobEventID(typ, j.ID, j.Revision))
	e.SetType(typ)
	e.SetSource(Source(fn))
	e.SetSubject(j.ID)
	e.SetTime(j.UpdatedAt.UTC().Truncate(time.Microsecond))
	e.SetExtension(ExtService, j.Service)
	e.SetExtension(ExtTask, j.Task)
	e.SetExtension(ExtDomain, j.Domain)
	e.SetExtension(ExtArch, j.Arch)
	e.SetExtension(ExtStatus, string(j.Status))
	// Everyone subscribed to the Broker sees the data: the callback URL goes without its secrets.
	if err := e.SetData(cloudevents.ApplicationJSON, JobData{Job: j.Redacted(), PreviousStatus: previous}); err != nil {
		return e, fmt.Errorf("encode job event: %w", err)
	}
	return e, nil
}

// CreatedRevision is the revision in the id of every job.created: the job's first stored one.
const CreatedRevision = 1

// JobEventID is the id of the job event of type typ announcing revision rev of job id. Every
// job.created has the id of revision CreatedRevision, whatever revision its data carries: it
// announces the job's record, so that announcing it again (a replayed submit whose first process
// died before announcing) gives the same id, which receivers de-duplicate.
func JobEventID(typ, id string, rev int64) string {
	if typ == TypeJobCreated {
		rev = CreatedRevision
	}
	return fmt.Sprintf("%s.%s.%d", id, shortType(typ), rev)
}

func shortType(typ string) string {
	switch typ {
	case TypeJobCreated:
		return "created"
	case TypeJobChanged:
		return "changed"
	case TypeLogsRequested:
		return "logs-requested"
	}
	return typ
}
