package logarchive

import (
	"testing"

	"github.com/cloudevents/sdk-go/v2/protocol"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// The pushes of a later attempt are stored under the step's key for that attempt: its worker
// numbers them from 1 again, and they neither collide with nor read as the first attempt's.
func TestAppendToALaterAttempt(t *testing.T) {
	f := newFixture(t, 1)
	if _, _, err := f.st.UpdateJob(t.Context(), f.job.ID, func(j *jobs.Job) (bool, error) {
		j.Status, j.Attempt = jobs.StatusRunning, 2
		j.Attempts = []jobs.Attempt{{Number: 1, Cluster: j.Cluster, Namespace: j.Namespace, Status: jobs.StatusLost}}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	e, err := events.NewLogsAppendedEvent("/omni/worker/test", f.job.ID, events.LogsAppendedData{Step: "build", Seq: 1,
		Lines: []events.AppendedLine{{Time: t0, Text: "attempt 2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, res := receive(t, f.h, e); !protocol.IsACK(res) {
		t.Fatalf("push: %v", res)
	}
	for key, want := range map[string]string{"build@2": "attempt 2\n", "build": ""} {
		cs, err := f.st.LogChunks(t.Context(), f.job.ID, key, store.LogSourcePush, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, c := range cs {
			got += string(c.Data)
		}
		if got != want {
			t.Errorf("pushed lines under %s: %q, want %q", key, got, want)
		}
	}
}
