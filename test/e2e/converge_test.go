package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/functions/status-sync/statussync"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// podEndDropper drops, on their way to status-sync, the events of the pods labelled with its
// case label that show the pod's end: a main container ended, the pod Succeeded or Failed, or
// deleted. It remembers what it dropped.
type podEndDropper struct {
	label string
	mu    sync.Mutex
	drops map[string]bool // "<pod>/<resourceVersion>"
}

const caseLabel = "e2e-case"

func (d *podEndDropper) drop(trigger string, e event.Event) bool {
	if trigger != statussync.Name {
		return false
	}
	var pod corev1.Pod
	if err := json.Unmarshal(e.Data(), &pod); err != nil || pod.Kind != "Pod" || pod.Labels[caseLabel] != d.label {
		return false
	}
	end := e.Type() == events.TypeResourceDelete || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	for _, cs := range pod.Status.ContainerStatuses {
		end = end || cs.State.Terminated != nil
	}
	if end {
		d.mu.Lock()
		d.drops[pod.Name+"/"+pod.ResourceVersion] = true
		d.mu.Unlock()
	}
	return end
}

func (d *podEndDropper) dropped(pod, rv string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.drops[pod+"/"+rv]
}

// With every event showing the end of a job's pod lost, the job still ends (from its Job's
// events) but its steps cannot agree: the failing step is still running and the failure names no
// step. The resync reads the pod back and settles the steps: the step failed with its exit code,
// the job's failure names it, and the job leaves the resync's list.
func TestResyncSettlesStepsOfDroppedPodEnd(t *testing.T) {
	const cluster = "x86_64"
	d := &podEndDropper{label: fmt.Sprintf("settle-%d", time.Now().UnixNano()), drops: map[string]bool{}}
	omni.Router.SetDrop(d.drop)
	t.Cleanup(func() { omni.Router.SetDrop(nil) })
	pingsBefore := omni.Router.Stats().Pings

	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{
		caseLabel: d.label, platform.AnnotationFailStep: "upload", platform.AnnotationExitCode: "7",
	}))
	// Everything the cluster says about the job is handled, or dropped on purpose.
	ended := alice.wait(t, j.ID, "failed, its cluster's last snapshots handled or dropped", func(live *jobs.Job) bool {
		return live.Status.Terminal() && handledOrDropped(t, cluster, j.ID, d)
	})
	if len(d.drops) == 0 {
		t.Fatal("no pod event was dropped: the test shows nothing")
	}
	if ended.Status != jobs.StatusFailed {
		t.Fatalf("job %s before the resync, want failed (its Job's end)", ended.Status)
	}
	if omni.Router.Stats().Pings != pingsBefore {
		t.Log("a scheduled resync ran meanwhile: the unsettled state before the resync is not checked")
	} else {
		if s := ended.Steps[len(ended.Steps)-1]; s.Name != "upload" || s.Settled() || !ended.NeedsResync() {
			t.Fatalf("before the resync: step %s %s (%s), needs resync %v; want step upload not settled (its end was dropped)",
				s.Name, s.Status, s.Reason, ended.NeedsResync())
		}
		if ended.Reason == statussync.ReasonStepFailed {
			t.Fatalf("before the resync the failure already names a step: %s", ended.Message)
		}
	}

	if err := omni.Router.Ping(context.Background(), "omni", "resync"); err != nil {
		t.Fatal(err)
	}
	done := alice.wait(t, j.ID, "steps settled by the resync", func(live *jobs.Job) bool { return !live.NeedsResync() })
	if done.Status != jobs.StatusFailed || done.Reason != statussync.ReasonStepFailed ||
		!strings.Contains(done.Message, "step upload failed with exit code 7 (Error)") {
		t.Errorf("after the resync: %s %s %q; want failed naming step upload and exit code 7", done.Status, done.Reason, done.Message)
	}
	want := map[string]jobs.StepStatus{"fetch-srpm": jobs.StepSucceeded, "build-rpm": jobs.StepSucceeded, "upload": jobs.StepFailed}
	for _, s := range done.Steps {
		if s.Status != want[s.Name] || s.ExitCode == nil || s.FinishedAt == nil {
			t.Errorf("after the resync: step %s %s exit %v finished %v; want %s with its exit code and end", s.Name, s.Status, s.ExitCode, s.FinishedAt, want[s.Name])
		}
	}
	if !done.FinishedAt.Equal(*ended.FinishedAt) {
		t.Errorf("the resync moved the job's end from %v to %v", ended.FinishedAt, done.FinishedAt)
	}
}

// handledOrDropped reports whether status-sync has handled the current state of the job's
// Kubernetes Job, and handled or lost (dropped by d) that of each of its pods.
func handledOrDropped(t *testing.T, cluster, id string, d *podEndDropper) bool {
	kjs := k8sJobs(t, cluster, id)
	if len(kjs) != 1 || !finished(&kjs[0]) || !rec.has("Job", kjs[0].Name, kjs[0].ResourceVersion) {
		return false
	}
	pods, err := omni.Platform.Cluster(cluster).Clientset().CoreV1().Pods("default").List(context.Background(),
		metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if !rec.has("Pod", p.Name, p.ResourceVersion) && !d.dropped(p.Name, p.ResourceVersion) {
			return false
		}
	}
	return len(pods.Items) > 0
}
