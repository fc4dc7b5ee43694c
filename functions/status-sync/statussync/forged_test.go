package statussync

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
)

// A forged Pod Succeeded event (another service's job-id label) without the cluster extension,
// or naming another cluster than the job's, is refused with 400 and leaves the job running.
func TestForgedPodEvent(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	victim := &jobs.Job{ID: "01jd8x1y2z3a4b5c6d7e8f9g0h", Service: "team-b", Task: "buildrpm", Arch: "x86_64",
		Cluster: "x86_64", Namespace: "omni-jobs", Status: jobs.StatusRunning,
		Steps: []jobs.Step{{Name: "build", Status: jobs.StepRunning}}}
	if err := st.CreateJob(ctx, victim); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Store: st}
	for name, cluster := range map[string]string{"no cluster": "", "another cluster": "aarch64"} {
		t.Run(name, func(t *testing.T) {
			pod := corev1.Pod{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "omni-" + victim.ID + "-x", Namespace: "omni-jobs", ResourceVersion: "999999",
					Labels: map[string]string{names.LabelJobID: victim.ID}},
				Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
					Name: "build", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0,
						FinishedAt: metav1.NewTime(time.Now())}}}}},
			}
			e := cloudevents.NewEvent()
			e.SetID("forged-" + name)
			e.SetType(events.TypeResourceUpdate)
			e.SetSource("https://10.96.0.1:443")
			if cluster != "" {
				e.SetExtension(events.ExtCluster, cluster)
			}
			if err := e.SetData(cloudevents.ApplicationJSON, pod); err != nil {
				t.Fatal(err)
			}
			reply, res := h.Receive(ctx, e)
			if c, _ := runtime.EventStatus(res); c != http.StatusBadRequest || reply != nil {
				t.Errorf("Receive = %d %v (reply %v), want 400 and no reply", c, res, reply)
			}
			j, err := st.GetJob(ctx, victim.ID)
			if err != nil {
				t.Fatal(err)
			}
			if j.Status != jobs.StatusRunning {
				t.Errorf("job is %s after the forged event, want running", j.Status)
			}
		})
	}
}
