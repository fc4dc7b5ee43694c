package platform_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
)

func TestPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts two kwok clusters and their ApiServerSource adapters (run without -short)")
	}
	sink := newSink(t)
	began := time.Now()
	p := platform.StartForTest(t, platform.Options{Sink: sink.srv.URL, NodesPerCluster: 1})
	t.Logf("two clusters with adapters started in %s", time.Since(began).Round(time.Millisecond))

	if got := len(p.Clusters()); got != 2 {
		t.Fatalf("clusters: got %d, want 2", got)
	}
	for _, want := range []struct{ name, arch, kubeArch string }{{"x86_64", "x86_64", "amd64"}, {"aarch64", "aarch64", "arm64"}} {
		c := p.Cluster(want.name)
		if c == nil {
			t.Fatalf("no cluster %s", want.name)
		}
		if c.Arch != want.arch || c.KubeArch != want.kubeArch || c.Kubeconfig == "" {
			t.Errorf("cluster %s: arch %q kube arch %q kubeconfig %q", c.Name, c.Arch, c.KubeArch, c.Kubeconfig)
		}
		nodes, err := c.Clientset().CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: "kubernetes.io/arch=" + want.kubeArch})
		if err != nil || len(nodes.Items) != 1 {
			t.Errorf("cluster %s: nodes with arch %s: %v (err %v)", c.Name, want.kubeArch, len(nodes.Items), err)
		}
	}

	t.Run("group", func(t *testing.T) {
		for _, c := range p.Clusters() {
			t.Run("completes on "+c.Name, func(t *testing.T) {
				t.Parallel()
				testJobCompletes(t, sink, c)
			})
		}
		t.Run("failed step", func(t *testing.T) {
			t.Parallel()
			testFailedStep(t, p.Cluster("aarch64"))
		})
		t.Run("step durations", func(t *testing.T) {
			t.Parallel()
			testStepDurations(t, p.Cluster("x86_64"))
		})
		t.Run("wrong arch stays pending", func(t *testing.T) {
			t.Parallel()
			testWrongArchPending(t, p.Cluster("x86_64"))
		})
	})
	// Alone, because it stops an adapter.
	t.Run("adapter restart", func(t *testing.T) {
		testAdapterRestart(t, sink, p)
	})
}

func testJobCompletes(t *testing.T, sink *sink, c *platform.Cluster) {
	ctx := testContext(t)
	cs := c.Clientset()
	name := "ok-" + strings.ReplaceAll(c.Name, "_", "-")
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, newJob(name, c.KubeArch, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := waitJob(t, ctx, cs, name, batchv1.JobComplete)
	pod := jobPod(t, ctx, cs, name)
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	if pod.Spec.NodeName == "" || !strings.HasPrefix(pod.Spec.NodeName, strings.ReplaceAll(c.Name, "_", "-")) {
		t.Errorf("pod ran on node %q", pod.Spec.NodeName)
	}
	// Steps run one by one, each ending with exit code 0.
	var steps []corev1.ContainerStatus
	steps = append(steps, pod.Status.InitContainerStatuses...)
	steps = append(steps, pod.Status.ContainerStatuses...)
	if len(steps) != 3 {
		t.Fatalf("got %d container statuses, want 3: %+v", len(steps), steps)
	}
	for i, s := range steps {
		term := s.State.Terminated
		if term == nil || term.ExitCode != 0 || term.Reason != "Completed" {
			t.Errorf("step %s: state %+v, want terminated with exit code 0", s.Name, s.State)
			continue
		}
		if i > 0 && steps[i-1].State.Terminated != nil && term.StartedAt.Before(&steps[i-1].State.Terminated.FinishedAt) {
			t.Errorf("step %s started at %s, before step %s ended at %s", s.Name, term.StartedAt, steps[i-1].Name, steps[i-1].State.Terminated.FinishedAt)
		}
	}

	// pods/log answers with the cluster's log file.
	logs, err := cs.CoreV1().Pods("default").GetLogs(pod.Name, &corev1.PodLogOptions{Container: "fetch"}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(logs), "step done") {
		t.Errorf("logs of step fetch: %q, %v; want the lines of %s", logs, err, c.LogsFile)
	}

	// The adapter reported the Job and its Pod, marked with the cluster's name.
	for _, want := range []struct{ kind, name, typ string }{
		{"Job", job.Name, "dev.knative.apiserver.resource.add"},
		{"Job", job.Name, "dev.knative.apiserver.resource.update"},
		{"Pod", pod.Name, "dev.knative.apiserver.resource.add"},
		{"Pod", pod.Name, "dev.knative.apiserver.resource.update"},
	} {
		sink.wait(t, ctx, fmt.Sprintf("%s %s %s from %s", want.typ, want.kind, want.name, c.Name), func(e event) bool {
			return e.Type == want.typ && e.Kind == want.kind && e.Name == want.name && e.Cluster == c.Name
		})
	}
	// The last Pod event shows it finished.
	sink.wait(t, ctx, "Pod update with phase Succeeded", func(e event) bool {
		return e.Kind == "Pod" && e.Name == pod.Name && e.Cluster == c.Name && e.Phase == "Succeeded"
	})
}

func testFailedStep(t *testing.T, c *platform.Cluster) {
	ctx := testContext(t)
	cs := c.Clientset()
	ann := map[string]string{
		platform.AnnotationFailStep: "fetch",
		platform.AnnotationExitCode: "3",
		platform.AnnotationReason:   "BuildFailed",
	}
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, newJob("fails", c.KubeArch, ann), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, ctx, cs, "fails", batchv1.JobFailed)
	pod := jobPod(t, ctx, cs, "fails")
	if pod.Status.Phase != corev1.PodFailed {
		t.Errorf("pod phase %s, want Failed", pod.Status.Phase)
	}
	st := pod.Status.InitContainerStatuses
	if len(st) != 2 {
		t.Fatalf("init container statuses: %+v", st)
	}
	if term := st[0].State.Terminated; term == nil || term.ExitCode != 0 {
		t.Errorf("step prepare: %+v, want exit code 0", st[0].State)
	}
	if term := st[1].State.Terminated; term == nil || term.ExitCode != 3 || term.Reason != "BuildFailed" {
		t.Errorf("step fetch: %+v, want exit code 3, reason BuildFailed", st[1].State)
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Waiting == nil {
			t.Errorf("container %s after a failed init container: %+v, want waiting", s.Name, s.State)
		}
	}
}

func testStepDurations(t *testing.T, c *platform.Cluster) {
	ctx := testContext(t)
	cs := c.Clientset()
	ann := map[string]string{
		platform.AnnotationStepDuration:             "1s",
		platform.AnnotationDurationPrefix + "fetch": "2s",
	}
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, newJob("timed", c.KubeArch, ann), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, ctx, cs, "timed", batchv1.JobComplete)
	pod := jobPod(t, ctx, cs, "timed")
	want := map[string]time.Duration{"prepare": time.Second, "fetch": 2 * time.Second, "build": time.Second}
	// The API keeps whole seconds; a step that ran d ends at least d (in whole seconds) after
	// the second it started in.
	for _, s := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		term := s.State.Terminated
		if term == nil {
			t.Errorf("step %s: %+v, want terminated", s.Name, s.State)
			continue
		}
		if got := term.FinishedAt.Sub(term.StartedAt.Time); got < want[s.Name] {
			t.Errorf("step %s ran %s, want at least %s", s.Name, got, want[s.Name])
		}
	}
}

func testWrongArchPending(t *testing.T, c *platform.Cluster) {
	ctx := testContext(t)
	cs := c.Clientset()
	// An arm64 job on the x86_64 cluster: the scheduler finds no node for it.
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, newJob("wrong-arch", "arm64", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: platform.JobIDLabel + "=wrong-arch"})
		if err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		pod = &pods.Items[0]
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("wait for the pod to be unschedulable: %v (pod: %+v)", err, pod)
	}
	if pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" {
		t.Errorf("pod phase %s on node %q, want Pending on none", pod.Status.Phase, pod.Spec.NodeName)
	}
}

// testAdapterRestart: a job finishes while the adapter is down, so no event tells of it; after
// the restart, later changes are reported again.
func testAdapterRestart(t *testing.T, sink *sink, p *platform.Platform) {
	ctx := testContext(t)
	c := p.Cluster("x86_64")
	cs := c.Clientset()
	ann := map[string]string{platform.AnnotationHoldStep: "build"}
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, newJob("restart", c.KubeArch, ann), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The main container is held running.
	var pod *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pod = jobPodOrNil(ctx, cs, "restart")
		return pod != nil && len(pod.Status.ContainerStatuses) == 1 && pod.Status.ContainerStatuses[0].State.Running != nil, nil
	})
	if err != nil {
		t.Fatalf("wait for step build to run: %v (pod %+v)", err, pod)
	}
	sink.wait(t, ctx, "the event of the running pod", func(e event) bool {
		return e.Kind == "Pod" && e.Name == pod.Name && e.Phase == "Running"
	})

	if err := p.StopAdapter(c.Name); err != nil {
		t.Fatal(err)
	}
	if got := jobPod(t, ctx, cs, "restart"); got.Status.Phase != corev1.PodRunning {
		t.Fatalf("held pod is %s, want Running", got.Status.Phase)
	}
	// Release the step: the job completes unseen.
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, platform.AnnotationHoldStep)
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, ctx, cs, "restart", batchv1.JobComplete)

	if err := p.StartAdapter(ctx, c.Name); err != nil {
		t.Fatal(err)
	}
	if sink.has(func(e event) bool { return e.Kind == "Pod" && e.Name == pod.Name && e.Phase == "Succeeded" }) {
		t.Errorf("an event told of the pod's end, which happened while the adapter was down")
	}
	// A change after the restart is reported.
	label := `{"metadata":{"labels":{"omni.test/touched":"yes"}}}`
	if _, err := cs.BatchV1().Jobs("default").Patch(ctx, "restart", types.MergePatchType, []byte(label), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.wait(t, ctx, "the Job update after the restart", func(e event) bool {
		return e.Kind == "Job" && e.Name == "restart" && e.Cluster == c.Name && e.Labels["omni.test/touched"] == "yes"
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newJob is a build-like Job: two init containers (steps prepare, fetch), one container
// (build), placed on nodes of kubeArch.
func newJob(name, kubeArch string, podAnnotations map[string]string) *batchv1.Job {
	labels := map[string]string{platform.JobIDLabel: name}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: podAnnotations},
				Spec: corev1.PodSpec{
					RestartPolicy:  corev1.RestartPolicyNever,
					NodeSelector:   map[string]string{"kubernetes.io/arch": kubeArch},
					InitContainers: []corev1.Container{{Name: "prepare", Image: "busybox"}, {Name: "fetch", Image: "busybox"}},
					Containers:     []corev1.Container{{Name: "build", Image: "busybox"}},
				},
			},
		},
	}
}

// waitJob waits until the Job has condition cond (and fails the test if it gets the other
// terminal one).
func waitJob(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string, cond batchv1.JobConditionType) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		var err error
		if job, err = cs.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, nil
		}
		for _, c := range job.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			if c.Type == cond {
				return true, nil
			}
			if c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed {
				return false, fmt.Errorf("job %s ended %s: %s", name, c.Type, c.Message)
			}
		}
		return false, nil
	})
	if err != nil {
		var st any
		if job != nil {
			st = job.Status
		}
		pod := jobPodOrNil(context.Background(), cs, name)
		t.Fatalf("wait for job %s to be %s: %v\njob status: %+v\npod: %+v", name, cond, err, st, pod)
	}
	return job
}

func jobPod(t *testing.T, ctx context.Context, cs kubernetes.Interface, job string) *corev1.Pod {
	t.Helper()
	pod := jobPodOrNil(ctx, cs, job)
	if pod == nil {
		t.Fatalf("no pod of job %s", job)
	}
	return pod
}

func jobPodOrNil(ctx context.Context, cs kubernetes.Interface, job string) *corev1.Pod {
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job})
	if err != nil || len(pods.Items) == 0 {
		return nil
	}
	return &pods.Items[0]
}

// event is what the test reads of a received CloudEvent.
type event struct {
	Type, Source, Subject   string
	Cluster, Kind, Name, NS string
	// Of data (the object):
	Phase  string
	Labels map[string]string
}

// sink is a CloudEvents receiver (binary or structured HTTP mode) that keeps what it gets.
type sink struct {
	srv *httptest.Server

	mu      sync.Mutex
	events  []event
	changed chan struct{} // closed and replaced on every event
}

func newSink(t *testing.T) *sink {
	s := &sink{changed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := func(k string) string { return r.Header.Get("ce-" + k) }
	var data []byte
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/cloudevents+json" {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h = func(k string) string { s, _ := m[k].(string); return s }
		data, _ = json.Marshal(m["data"])
	} else {
		data = body
	}
	e := event{Type: h("type"), Source: h("source"), Subject: h("subject"), Cluster: h("cluster"), Kind: h("kind"), Name: h("name"), NS: h("namespace")}
	if e.Type == "" || h("id") == "" || h("specversion") == "" {
		http.Error(w, "not a CloudEvent", http.StatusBadRequest)
		return
	}
	var obj struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Status struct {
			Phase string `json:"phase"`
		} `json:"status"`
	}
	_ = json.Unmarshal(data, &obj)
	e.Phase, e.Labels = obj.Status.Phase, obj.Metadata.Labels
	s.mu.Lock()
	s.events = append(s.events, e)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *sink) has(match func(event) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if match(e) {
			return true
		}
	}
	return false
}

// wait waits until an event matches.
func (s *sink) wait(t *testing.T, ctx context.Context, what string, match func(event) bool) {
	t.Helper()
	for {
		s.mu.Lock()
		for _, e := range s.events {
			if match(e) {
				s.mu.Unlock()
				return
			}
		}
		changed, n := s.changed, len(s.events)
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("no event: %s (%d events received)", what, n)
		}
	}
}
