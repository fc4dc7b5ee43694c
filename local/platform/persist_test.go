package platform

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// A persistent platform that dies without Stop (its components killed, as its watchdog does
// when the process is killed) is resumed by the next Start on the same work dir: same cluster,
// same kubeconfig, the Job that ran carries on to its end; a cluster folder of an earlier run
// (random suffix) and the processes still running in it are removed; the current ones are not.
func TestPersistentResumesAfterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts a kwok cluster twice (run without -short)")
	}
	dir := t.TempDir()
	opts := Options{WorkDir: dir, Persistent: true, Clusters: []ClusterSpec{{Name: "x86_64", Arch: "x86_64"}}, Log: logWriter{t}}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	p1, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			p1.crash()
		}
	})
	c1 := p1.Cluster("x86_64")
	if c1.KwokName != "omni-x86-64" {
		t.Errorf("kwokctl name %q, want omni-x86-64 (the same in every run)", c1.KwokName)
	}
	// A Job whose build step runs until well after the restart.
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "long", Labels: map[string]string{JobIDLabel: "long"}},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{JobIDLabel: "long"},
					Annotations: map[string]string{AnnotationDurationPrefix + "build": "8s"}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					NodeSelector:  map[string]string{"kubernetes.io/arch": "amd64"},
					Containers:    []corev1.Container{{Name: "build", Image: "busybox"}},
				},
			},
		},
	}
	if _, err := c1.Clientset().BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, c1, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	// What an older run left: a kwokctl folder with a random suffix, a process still in it.
	stale := filepath.Join(dir, "kwok", "clusters", "omni-0a1b2c-x86-64")
	leftover := startIn(t, stale)

	p1.crash()
	stopped = true

	began := time.Now()
	p2, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("second start (resume): %v", err)
	}
	t.Cleanup(p2.Stop)
	t.Logf("resumed in %s", time.Since(began).Round(time.Millisecond))
	c2 := p2.Cluster("x86_64")
	if diff := cmp.Diff([]string{c1.KwokName, c1.Kubeconfig, c1.KwokDir}, []string{c2.KwokName, c2.Kubeconfig, c2.KwokDir}); diff != "" {
		t.Errorf("resumed cluster (-first run +second run):\n%s", diff)
	}
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		j, err := c2.Clientset().BatchV1().Jobs("default").Get(ctx, "long", metav1.GetOptions{})
		return err == nil && j.Status.Succeeded == 1, nil
	}); err != nil {
		t.Fatalf("the Job of the first run did not succeed after the resume: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("folder of an earlier run %s: %v, want removed", stale, err)
	}
	if alive(leftover) {
		t.Errorf("process %d of an earlier run still runs", leftover)
	}
	if got := p2.Removed().Folders; !cmp.Equal(got, []string{stale}) {
		t.Errorf("Removed().Folders = %v, want [%s]", got, stale)
	}
	for _, keep := range []string{c2.KwokDir, c2.Dir} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("folder in use %s: %v", keep, err)
		}
	}

	// A second run on the same work dir is refused while this one holds it.
	if _, err := Start(ctx, opts); err == nil {
		t.Errorf("a second platform started on a work dir in use")
	}

	// Stop keeps the cluster too: the next Start resumes it, with the Job.
	p2.Stop()
	p3, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("third start (after Stop): %v", err)
	}
	t.Cleanup(p3.Stop)
	c3 := p3.Cluster("x86_64")
	if !c3.resume {
		t.Errorf("the cluster was created anew after Stop, want it resumed")
	}
	if _, err := c3.Clientset().BatchV1().Jobs("default").Get(ctx, "long", metav1.GetOptions{}); err != nil {
		t.Errorf("the Job of the first run after Stop and Start: %v", err)
	}
}

// crash ends p as the death of its process does: the watchdog kills the components and
// adapters (nothing else runs: no kwokctl stop or delete), and the lock goes.
func (p *Platform) crash() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, c := range p.clusters {
		if c.adapter != nil {
			c.adapter.stop(0)
		}
		killInDir(readPidFiles(filepath.Join(c.KwokDir, "pids", "*.pid")), c.KwokDir)
	}
	p.watchdog.stop()
	p.lock.Close()
}

// startIn starts a long sleep in dir, as an earlier run's component, with its pid file; it is
// killed when the test ends.
func startIn(t *testing.T, dir string) int {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "600")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	if err := os.WriteFile(filepath.Join(dir, "pids", "etcd.pid"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	return pid
}

func waitPod(t *testing.T, ctx context.Context, c *Cluster, what string, ok func(*corev1.Pod) bool) {
	t.Helper()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Clientset().CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: JobIDLabel})
		return err == nil && len(pods.Items) == 1 && ok(&pods.Items[0]), nil
	})
	if err != nil {
		t.Fatalf("wait for the pod to be %s: %v", what, err)
	}
}
