package statussync

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
)

// fuzzJobID in a seed stands for the id of the job each input is about.
const fuzzJobID = "FUZZJOBID"

// FuzzReceive feeds ApiServerSource payloads (a Job or a Pod as the API server serves it, with
// the cluster extension) to status-sync, about a running job of cluster x86_64: every input is
// acknowledged or refused with 400 — never a crash, never an error the Broker would retry for
// ever — and whatever it does to the job, the job stays one the store takes, on its cluster,
// and an event from another cluster changes nothing.
func FuzzReceive(f *testing.F) {
	st, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "omni.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	h := &Handler{Store: st}
	finished := metav1.NewTime(time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC))
	meta := metav1.ObjectMeta{Name: "omni-" + fuzzJobID, Namespace: "omni-jobs", ResourceVersion: "42",
		Labels: map[string]string{names.LabelJobID: fuzzJobID}}
	seeds := []any{
		corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: meta,
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "build", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, FinishedAt: finished}}}}}},
		corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: meta,
			Status: corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: []corev1.ContainerStatus{{
				Name: "build", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: finished}}}}}},
		corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: meta,
			Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}},
		batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}, ObjectMeta: meta,
			Status: batchv1.JobStatus{Succeeded: 1, CompletionTime: &finished, Conditions: []batchv1.JobCondition{{
				Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: finished}}}},
		batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}, ObjectMeta: meta,
			Status: batchv1.JobStatus{Failed: 1, Conditions: []batchv1.JobCondition{{
				Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: finished}}}},
		map[string]any{"kind": "Secret", "metadata": map[string]any{"labels": map[string]string{names.LabelJobID: fuzzJobID}}},
		map[string]any{"kind": "Pod", "metadata": map[string]any{"name": "x"}},
		map[string]any{"kind": "Pod", "metadata": map[string]any{"labels": map[string]string{names.LabelJobID: fuzzJobID}}, "status": "running"},
		"not an object",
	}
	types := []string{events.TypeResourceAdd, events.TypeResourceUpdate, events.TypeResourceDelete, "org.example.other"}
	for i, s := range seeds {
		b, _ := json.Marshal(s)
		f.Add(uint8(i%3), "x86_64", b)
	}
	f.Add(uint8(1), "aarch64", mustJSON(f, seeds[0]))
	f.Add(uint8(2), "", mustJSON(f, seeds[3]))
	f.Add(uint8(3), "x86_64", mustJSON(f, seeds[0]))
	n := 0
	f.Fuzz(func(t *testing.T, typ uint8, cluster string, data []byte) {
		n++
		id := "01jd8x1y2z3a4b5c6d7e8f9g" + strconv.Itoa(n)
		job := &jobs.Job{ID: id, Service: "team-b", Task: "buildrpm", Arch: "x86_64", Cluster: "x86_64", Namespace: "omni-jobs",
			Status: jobs.StatusRunning, Steps: []jobs.Step{{Name: "build", Status: jobs.StepRunning}}}
		if err := st.CreateJob(t.Context(), job); err != nil {
			t.Fatal(err)
		}
		e := cloudevents.NewEvent()
		e.SetID("fuzz")
		e.SetSource("https://10.96.0.1:443")
		e.SetType(types[int(typ)%len(types)])
		if cluster != "" {
			e.SetExtension(events.ExtCluster, cluster)
		}
		if err := e.SetData(cloudevents.ApplicationJSON, json.RawMessage(bytes.ReplaceAll(data, []byte(fuzzJobID), []byte(id)))); err != nil {
			t.Skip("not an event body")
		}
		reply, res := h.Receive(t.Context(), e)
		if code, _ := runtime.EventStatus(res); !protocol.IsACK(res) && code != http.StatusBadRequest {
			t.Fatalf("event %s %q: %v (status %d), want ACK or 400", e.Type(), data, res, code)
		}
		after, err := st.GetJob(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !after.Status.Valid() || after.Cluster != "x86_64" || after.ID != id {
			t.Errorf("job after the event: %+v", after)
		}
		if cluster != "x86_64" && (after.Status != jobs.StatusRunning || reply != nil) {
			t.Errorf("an event of cluster %q changed the job to %s (reply %v)", cluster, after.Status, reply)
		}
		if reply != nil && (reply.Type() != events.TypeJobChanged || reply.Subject() != id) {
			t.Errorf("reply %s about %s", reply.Type(), reply.Subject())
		}
	})
}

func mustJSON(f *testing.F, v any) []byte {
	f.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
