package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Cancelling a running job ends it cancelled, its pods go (once their logs are archived), and a
// second cancel answers the same.
func TestCancelRunningJob(t *testing.T) {
	const cluster = "x86_64"
	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: "build-rpm"}))
	alice.wait(t, j.ID, "running build-rpm", func(j *jobs.Job) bool { return stepStatus(j, "build-rpm") == jobs.StepRunning })

	if r := bob.do(t, http.MethodDelete, "/v1/jobs/"+j.ID, nil); r.code != http.StatusNotFound {
		t.Errorf("another service's user cancels: %d, want 404", r.code)
	}
	r := alice.do(t, http.MethodDelete, "/v1/jobs/"+j.ID, nil)
	if r.code != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	first := r.job(t)
	if first.Status != jobs.StatusCancelled || first.Reason != "Cancelled" || first.FinishedAt == nil {
		t.Fatalf("after cancel: %s %s", first.Status, first.Reason)
	}
	if n := len(k8sJobs(t, cluster, j.ID)); n != 0 {
		t.Errorf("%d Kubernetes Jobs left after cancel", n)
	}
	again := alice.do(t, http.MethodDelete, "/v1/jobs/"+j.ID, nil)
	if again.code != http.StatusOK || again.job(t).Status != jobs.StatusCancelled || *again.job(t).FinishedAt != *first.FinishedAt {
		t.Errorf("second cancel: %d %s", again.code, again.body)
	}
	// The pods are terminated and, once log-archive has their logs, removed.
	cs := omni.Platform.Cluster(cluster).Clientset()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: jobIDLabel + "=" + j.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pods of the cancelled job still exist (finalizers %v)", len(pods.Items), pods.Items[0].Finalizers)
		}
	}
	final := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t)
	if final.Status != jobs.StatusCancelled {
		t.Errorf("final status %s", final.Status)
	}
	// The logs written before the cancel were archived before the pods went: the step that ran
	// and the one cut short are settled, and the first has lines.
	for _, step := range []string{"fetch-srpm", "build-rpm"} {
		r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs?step="+step+"&limit=10000", nil)
		var page struct {
			Lines      []json.RawMessage `json:"lines"`
			Complete   bool              `json:"complete"`
			Incomplete bool              `json:"incomplete"`
		}
		if r.code != http.StatusOK || json.Unmarshal(r.body, &page) != nil {
			t.Fatalf("logs of %s: %d %s", step, r.code, r.body)
		}
		if !page.Complete && !page.Incomplete {
			t.Errorf("logs of %s not settled after the pods went", step)
		}
		if step == "fetch-srpm" && (len(page.Lines) == 0 || !page.Complete) {
			t.Errorf("logs of %s: %d lines, complete %v; want the archived log", step, len(page.Lines), page.Complete)
		}
	}
}

// Deleting a finished job removes its cluster objects and keeps its record.
func TestDeleteFinishedJob(t *testing.T) {
	const cluster = "aarch64"
	j := alice.submit(t, rpmJob("team-a", cluster, nil))
	done := alice.wait(t, j.ID, "succeeded", terminal)
	r := alice.do(t, http.MethodDelete, "/v1/jobs/"+j.ID, nil)
	if r.code != http.StatusOK || r.job(t).Status != done.Status {
		t.Fatalf("delete finished: %d %s", r.code, r.body)
	}
	if n := len(k8sJobs(t, cluster, j.ID)); n != 0 {
		t.Errorf("%d Kubernetes Jobs left", n)
	}
	if got := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil); got.code != 200 || got.job(t).Status != jobs.StatusSucceeded {
		t.Errorf("record after delete: %d %s", got.code, got.body)
	}
}
