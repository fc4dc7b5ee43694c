package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/omnibuildplatform/omni-orchestrator/functions/status-sync/statussync"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
)

const jobIDLabel = names.LabelJobID

func k8sJobs(t *testing.T, cluster, id string) []batchv1.Job {
	t.Helper()
	c := omni.Platform.Cluster(cluster)
	if c == nil {
		t.Fatalf("no local cluster %s", cluster)
	}
	list, err := c.Clientset().BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// Each arch's job runs on that arch's cluster only, and both reach succeeded through the real
// adapter → router → status-sync path.
func TestJobsRunOnTheirArch(t *testing.T) {
	other := map[string]string{"x86_64": "aarch64", "aarch64": "x86_64"}
	for _, arch := range []string{"x86_64", "aarch64"} {
		t.Run(arch, func(t *testing.T) {
			t.Parallel()
			j := alice.submit(t, rpmJob("team-a", arch, nil))
			// The answer is the job as stored once it was placed: pending, or already further
			// along when status-sync was quicker than the answer (a loaded machine, a fast pod).
			dispatched := j.Status == jobs.StatusPending || j.Status == jobs.StatusRunning || j.Status == jobs.StatusSucceeded
			if j.Arch != arch || j.Cluster != arch || !dispatched {
				t.Fatalf("submitted job: arch %s cluster %s status %s, want placed on %s", j.Arch, j.Cluster, j.Status, arch)
			}
			if n := len(k8sJobs(t, arch, j.ID)); n != 1 {
				t.Errorf("%d Kubernetes Jobs on %s, want 1", n, arch)
			}
			if n := len(k8sJobs(t, other[arch], j.ID)); n != 0 {
				t.Errorf("%d Kubernetes Jobs on %s, want 0", n, other[arch])
			}
			kj := k8sJobs(t, arch, j.ID)[0]
			if sel := kj.Spec.Template.Spec.NodeSelector["kubernetes.io/arch"]; sel != jobs.KubeArch(arch) {
				t.Errorf("nodeSelector kubernetes.io/arch = %q, want %q", sel, jobs.KubeArch(arch))
			}
			done := alice.wait(t, j.ID, "settled", settled)
			if done.Status != jobs.StatusSucceeded {
				t.Fatalf("status %s (%s: %s), want succeeded", done.Status, done.Reason, done.Message)
			}
			for _, s := range done.Steps {
				if s.Status != jobs.StepSucceeded || s.ExitCode == nil || *s.ExitCode != 0 || s.StartedAt == nil || s.FinishedAt == nil {
					t.Errorf("step %+v, want succeeded with exit code 0 and times", s)
				}
			}
			if done.StartedAt == nil || done.FinishedAt == nil || done.FinishedAt.Before(*done.StartedAt) {
				t.Errorf("job times: started %v finished %v", done.StartedAt, done.FinishedAt)
			}
			pods, err := omni.Platform.Cluster(arch).Clientset().CoreV1().Pods("default").List(context.Background(),
				metav1.ListOptions{LabelSelector: jobIDLabel + "=" + j.ID})
			if err != nil || len(pods.Items) == 0 {
				t.Fatalf("pods of %s: %v (%d)", j.ID, err, len(pods.Items))
			}
			node, err := omni.Platform.Cluster(arch).Clientset().CoreV1().Nodes().Get(context.Background(), pods.Items[0].Spec.NodeName, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("node of the pod %q: %v", pods.Items[0].Spec.NodeName, err)
			}
			if got := node.Labels["kubernetes.io/arch"]; got != jobs.KubeArch(arch) {
				t.Errorf("pod ran on node %s of arch %q, want %q", node.Name, got, jobs.KubeArch(arch))
			}
		})
	}
}

// A step made to fail by a kwok stage ends the job failed, naming the step, exit code and reason.
func TestFailedStepIsNamed(t *testing.T) {
	j := alice.submit(t, rpmJob("team-a", "aarch64", map[string]string{
		platform.AnnotationFailStep: "build-rpm", platform.AnnotationExitCode: "3", platform.AnnotationReason: "BuildFailed",
	}))
	done := alice.wait(t, j.ID, "settled", settled)
	if done.Status != jobs.StatusFailed {
		t.Fatalf("status %s, want failed", done.Status)
	}
	if done.Reason != statussync.ReasonStepFailed || !strings.Contains(done.Message, "step build-rpm failed with exit code 3 (BuildFailed)") {
		t.Errorf("reason %q message %q: want the failing step, exit code and reason", done.Reason, done.Message)
	}
	want := map[string]jobs.StepStatus{"fetch-srpm": jobs.StepSucceeded, "build-rpm": jobs.StepFailed, "upload": jobs.StepWaiting}
	for _, s := range done.Steps {
		if s.Status != want[s.Name] {
			t.Errorf("step %s: %s, want %s", s.Name, s.Status, want[s.Name])
		}
		if s.Name == "build-rpm" && (s.ExitCode == nil || *s.ExitCode != 3 || s.Reason != "BuildFailed") {
			t.Errorf("failed step: %+v", s)
		}
	}
}

// The events the adapter produced for a job, replayed shuffled and with duplicates into a fresh
// store, give the same final job.
func TestReplayShuffledEvents(t *testing.T) {
	j := alice.submit(t, rpmJob("team-a", "x86_64", map[string]string{
		platform.AnnotationFailStep: "upload", platform.AnnotationExitCode: "7",
	}))
	alice.wait(t, j.ID, "settled with the cluster's last snapshots handled", func(live *jobs.Job) bool {
		return settled(live) && lastSnapshotsHandled(t, "x86_64", j.ID)
	})
	// Every event was handled before it was recorded, and the cluster's objects no longer
	// change, so the recorded events are all there will be, and the stored job is final.
	evs := rec.of(j.ID)
	live := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t)
	t.Logf("replaying %d events (each twice, shuffled)", len(evs))

	for seed := uint64(1); seed <= 5; seed++ {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "replay.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fresh := live.Clone()
		fresh.Status, fresh.Reason, fresh.Message, fresh.StartedAt, fresh.FinishedAt = jobs.StatusPending, "", "", nil, nil
		fresh.Observed = nil
		for i := range fresh.Steps {
			fresh.Steps[i] = jobs.Step{Name: fresh.Steps[i].Name, Status: jobs.StepWaiting}
		}
		if err := st.CreateJob(context.Background(), fresh); err != nil {
			t.Fatal(err)
		}
		h := &statussync.Handler{Store: st}
		list := append(append([]event.Event{}, evs...), evs...)
		r := rand.New(rand.NewPCG(seed, seed))
		r.Shuffle(len(list), func(a, b int) { list[a], list[b] = list[b], list[a] })
		for _, e := range list {
			if _, res := h.Receive(context.Background(), e); !protocol.IsACK(res) {
				t.Fatalf("seed %d: event %s: %v", seed, e.ID(), res)
			}
		}
		got, err := st.GetJob(context.Background(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		ignore := cmpopts.IgnoreFields(jobs.Job{}, "Revision", "UpdatedAt", "Observed", "Parameters")
		if d := cmp.Diff(live, got, ignore); d != "" {
			t.Errorf("seed %d: replayed job differs from the live one (-live +replayed):\n%s", seed, d)
		}
	}
}

// With the adapter stopped while the job finishes, the resync (fired through the PingSource
// manifest) still brings the job to its true end.
func TestResyncRepairsMissedEnd(t *testing.T) {
	const cluster = "aarch64"
	hook := newWebhook(callbackSecret, nil)
	defer hook.Close()
	req := rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: "build-rpm"})
	req["callback"] = hook.URL
	j := alice.submit(t, req)
	alice.wait(t, j.ID, "running", func(j *jobs.Job) bool {
		return j.Status == jobs.StatusRunning && stepStatus(j, "build-rpm") == jobs.StepRunning
	})
	if err := omni.Platform.StopAdapter(cluster); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := omni.Platform.StartAdapter(context.Background(), cluster); err != nil {
			t.Errorf("restart adapter: %v", err)
		}
	})
	cs := omni.Platform.Cluster(cluster).Clientset()
	pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: jobIDLabel + "=" + j.ID})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods: %v %d", err, len(pods.Items))
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, platform.AnnotationHoldStep)
	if _, err := cs.CoreV1().Pods("default").Patch(context.Background(), pods.Items[0].Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitK8sJob(t, cluster, j.ID)
	if got := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t); got.Status.Terminal() {
		t.Fatalf("job already %s although the adapter was stopped", got.Status)
	}
	if err := omni.Router.Ping(context.Background(), "omni", "resync"); err != nil {
		t.Fatal(err)
	}
	done := alice.wait(t, j.ID, "succeeded after resync", terminal)
	if done.Status != jobs.StatusSucceeded || stepStatus(done, "upload") != jobs.StepSucceeded {
		t.Fatalf("after resync: %s, steps %+v", done.Status, done.Steps)
	}
	// The job.changed of the resync reaches notify and log-archive like any other.
	hook.wait(t, j.ID, "the end notified after resync", hasEnd)
	alice.wait(t, j.ID, "logs archived after resync", func(*jobs.Job) bool {
		r := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID+"/logs?step=upload&limit=10000", nil)
		var page struct {
			Complete bool `json:"complete"`
		}
		return r.code == http.StatusOK && json.Unmarshal(r.body, &page) == nil && page.Complete
	})
}

// lastSnapshotsHandled reports whether status-sync has handled the current state of the job's
// Kubernetes Job and pods.
func lastSnapshotsHandled(t *testing.T, cluster, id string) bool {
	kjs := k8sJobs(t, cluster, id)
	if len(kjs) != 1 || !finished(&kjs[0]) || !rec.has("Job", kjs[0].Name, kjs[0].ResourceVersion) {
		return false // the Job controller has yet to record the end, or that is not handled yet
	}
	pods, err := omni.Platform.Cluster(cluster).Clientset().CoreV1().Pods("default").List(context.Background(),
		metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if !rec.has("Pod", p.Name, p.ResourceVersion) {
			return false
		}
	}
	return len(pods.Items) > 0
}

func finished(kj *batchv1.Job) bool {
	for _, c := range kj.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func stepStatus(j *jobs.Job, name string) jobs.StepStatus {
	for _, s := range j.Steps {
		if s.Name == name {
			return s.Status
		}
	}
	return ""
}

func waitK8sJob(t *testing.T, cluster, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		for _, kj := range k8sJobs(t, cluster, id) {
			for _, c := range kj.Status.Conditions {
				if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kubernetes Job of %s did not complete", id)
		}
	}
}

// When the cluster refuses the Job (here a ResourceQuota allows no Jobs), the job is stored as
// failed with the reason, the client gets a 502 naming it, and no object of it is left behind
// (the ConfigMap created before the Job is removed).
func TestCreateFailureLeavesFailedJobAndNoObjects(t *testing.T) {
	const cluster = "x86_64"
	cs := omni.Platform.Cluster(cluster).Clientset()
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-no-jobs"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/jobs.batch": resource.MustParse("0")}},
	}
	if _, err := cs.CoreV1().ResourceQuotas("default").Create(context.Background(), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().ResourceQuotas("default").Delete(context.Background(), quota.Name, metav1.DeleteOptions{})
	})
	// The API server's quota admission may not see a new quota for a while (it caches "this
	// namespace has no quota" for 30 s after an earlier lookup): wait until a dry-run Job is refused.
	probe := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-quota-probe"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
		}}},
	}
	deadline := time.Now().Add(90 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		_, err := cs.BatchV1().Jobs("default").Create(context.Background(), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if apierrors.IsForbidden(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the no-Jobs quota is not enforced by the API server within 90 s (dry-run create: %v)", err)
		}
	}
	r := alice.do(t, http.MethodPost, "/v1/jobs", rpmJob("team-a", cluster, nil))
	if r.code != http.StatusBadGateway {
		t.Fatalf("submit under a no-Jobs quota: %d %s, want 502", r.code, r.body)
	}
	p := problem(t, r)
	id := strings.TrimPrefix(p.Instance, "/v1/jobs/")
	if id == "" || r.header.Get("Location") != p.Instance {
		t.Fatalf("problem without the failed job: %+v", p)
	}
	j := alice.do(t, http.MethodGet, "/v1/jobs/"+id, nil).job(t)
	if j.Status != jobs.StatusFailed || j.Reason != "CreateFailed" || !strings.Contains(j.Message, "forbidden") || j.FinishedAt == nil {
		t.Errorf("stored job: %s %s %q", j.Status, j.Reason, j.Message)
	}
	cms, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cms.Items) + len(k8sJobs(t, cluster, id)); n != 0 {
		t.Errorf("%d objects of the failed job left on the cluster", n)
	}
}
