package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// log-archive against the local clusters. kwok serves one file, Cluster.LogsFile, as the log
// of every container, so each step of a job has the same log; the tests write that file (and
// put the previous one back at the end). These tests run one after the other (no t.Parallel),
// so no other test's job is served their file while they run.

// laSteps are the steps of the buildrpm job type, in order.
var laSteps = []string{"fetch-srpm", "build-rpm", "upload"}

// laWriteLog writes a CRI-format log of about size bytes of text to the cluster's container
// log file and returns the text as kubectl logs would show it.
func laWriteLog(t *testing.T, cluster string, size int) []byte {
	t.Helper()
	path := omni.Platform.Cluster(cluster).LogsFile
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Errorf("restore %s: %v", path, err)
		}
	})
	cri, text := platform.SampleLog(size, "")
	if err := os.WriteFile(path, cri, 0o644); err != nil {
		t.Fatal(err)
	}
	return text
}

// laArchived returns the archived text of a step, checking that the chunks are numbered 1, 2, …
func laArchived(t *testing.T, id, step string) []byte {
	t.Helper()
	var b bytes.Buffer
	for after := int64(0); ; {
		cs, err := omni.Deps.Store.LogChunks(context.Background(), id, step, store.LogSourceArchive, after, 50)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return b.Bytes()
		}
		for _, c := range cs {
			if c.Seq != after+1 {
				t.Fatalf("step %s: chunk %d follows chunk %d", step, c.Seq, after)
			}
			after = c.Seq
			b.Write(c.Data)
		}
	}
}

// laLogSteps returns the archive state of each step of job id.
func laLogSteps(t *testing.T, id string) map[string]store.LogStep {
	t.Helper()
	ss, err := omni.Deps.Store.LogSteps(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.LogStep{}
	for _, s := range ss {
		out[s.Step] = s
	}
	return out
}

// laEventually polls cond every 50 ms until it holds, failing the test after timeout.
func laEventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for range tick.C {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s (last error: %v)", what, timeout, last)
		}
	}
}

// laSettled: every step of job id has a final archive state.
func laSettled(t *testing.T, id string) func() (bool, error) {
	return func() (bool, error) {
		got := laLogSteps(t, id)
		for _, s := range laSteps {
			if st := got[s]; !st.Complete && !st.Incomplete {
				return false, fmt.Errorf("step %s: %+v", s, st)
			}
		}
		return true, nil
	}
}

func laPods(t *testing.T, cluster, id string) []corev1.Pod {
	t.Helper()
	pods, err := omni.Platform.Cluster(cluster).Clientset().CoreV1().Pods("default").List(context.Background(),
		metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

func laPatchPod(t *testing.T, cluster, name, patch string) {
	t.Helper()
	_, err := omni.Platform.Cluster(cluster).Clientset().CoreV1().Pods("default").Patch(context.Background(), name,
		types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// laCheckWhole checks that every step of job id is archived complete and byte for byte want.
func laCheckWhole(t *testing.T, id string, want []byte) {
	t.Helper()
	states := laLogSteps(t, id)
	for _, s := range laSteps {
		got := laArchived(t, id, s)
		st := states[s]
		if !bytes.Equal(got, want) {
			t.Errorf("step %s: archived %d bytes / %d lines, the cluster served %d bytes / %d lines", s,
				len(got), bytes.Count(got, []byte("\n")), len(want), bytes.Count(want, []byte("\n")))
		}
		if !st.Complete || st.Incomplete || st.Bytes != int64(len(want)) || st.Lines != int64(bytes.Count(want, []byte("\n"))) {
			t.Errorf("step %s: state %+v, want complete with %d bytes", s, st, len(want))
		}
	}
}

// A job of three steps whose logs total more than 50 MB, whose Kubernetes Job is deleted the
// moment it ends (ttlSecondsAfterFinished: 0): the finalizer holds the pods until log-archive
// has every step, byte for byte as the cluster served it, and then lets them go.
func TestLogsArchiveLargeJobDeletedAtOnce(t *testing.T) {
	const cluster = "aarch64"
	want := laWriteLog(t, cluster, 17<<20+1)
	if total := 3 * len(want); total < 50<<20 {
		t.Fatalf("logs of %d bytes in all, want at least 50 MB", total)
	}

	// The archive of this job waits, after its first chunk, until the test has seen the Job
	// deleted and the pod held by its finalizer; nothing else is slowed down.
	var id atomic.Value
	id.Store("")
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	allinone.SetLogArchiveFault(func(ctx context.Context, c store.LogChunk) error {
		if c.JobID != id.Load().(string) {
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	t.Cleanup(func() { allinone.SetLogArchiveFault(nil) })

	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: "fetch-srpm"}))
	id.Store(j.ID)
	kjs := k8sJobs(t, cluster, j.ID)
	if len(kjs) != 1 {
		t.Fatalf("%d Kubernetes Jobs", len(kjs))
	}
	cs := omni.Platform.Cluster(cluster).Clientset()
	if _, err := cs.BatchV1().Jobs("default").Patch(context.Background(), kjs[0].Name, types.MergePatchType,
		[]byte(`{"spec":{"ttlSecondsAfterFinished":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod string
	laEventually(t, time.Minute, "a pod with the log-archive finalizer", func() (bool, error) {
		for _, p := range laPods(t, cluster, j.ID) {
			if pod = p.Name; len(p.Finalizers) > 0 {
				for _, f := range p.Finalizers {
					if f == names.PodFinalizer {
						return true, nil
					}
				}
			}
		}
		return false, nil
	})
	laPatchPod(t, cluster, pod, fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, platform.AnnotationHoldStep))
	alice.wait(t, j.ID, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })

	// The TTL controller deletes the Job at once; the garbage collector then deletes the pod,
	// which stays, terminating, because log-archive has not finished.
	laEventually(t, time.Minute, "the Job deleted and the pod held terminating", func() (bool, error) {
		js, err := cs.BatchV1().Jobs("default").List(context.Background(), metav1.ListOptions{LabelSelector: jobIDLabel + "=" + j.ID})
		if err != nil {
			return false, err
		}
		if len(js.Items) > 0 && js.Items[0].DeletionTimestamp == nil {
			return false, errors.New("the Job is not deleted")
		}
		p, err := cs.CoreV1().Pods("default").Get(context.Background(), pod, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return p.DeletionTimestamp != nil, fmt.Errorf("pod deletion %v, finalizers %v", p.DeletionTimestamp, p.Finalizers)
	})
	if st := laLogSteps(t, j.ID); st["fetch-srpm"].Complete {
		t.Fatalf("a step was archived before the archive was released: %+v", st)
	}
	began := time.Now()
	releaseAll()
	laEventually(t, 3*time.Minute, "archived", laSettled(t, j.ID))
	t.Logf("archived 3 steps of %d bytes each in %s after the release", len(want), time.Since(began).Round(time.Millisecond))
	laCheckWhole(t, j.ID, want)

	laEventually(t, time.Minute, "the pod and the Job gone", func() (bool, error) {
		if ps := laPods(t, cluster, j.ID); len(ps) > 0 {
			return false, fmt.Errorf("pod %s left, finalizers %v", ps[0].Name, ps[0].Finalizers)
		}
		return len(k8sJobs(t, cluster, j.ID)) == 0, errors.New("the Job is still there")
	})
}

// log-archive killed half-way through a step (the first delivery fails after a few chunks, as
// a crash would): the Broker delivers again, and every line ends up stored exactly once.
func TestLogsArchiveKilledHalfWay(t *testing.T) {
	const cluster = "aarch64"
	want := laWriteLog(t, cluster, 3<<20) // about a dozen chunks per step
	var id atomic.Value
	id.Store("")
	var chunks, failures atomic.Int64
	const failAt = 17 // in the second step
	allinone.SetLogArchiveFault(func(ctx context.Context, c store.LogChunk) error {
		if c.JobID != id.Load().(string) {
			return nil
		}
		if chunks.Add(1) == failAt {
			failures.Add(1)
			return errors.New("log-archive killed (test)")
		}
		return nil
	})
	t.Cleanup(func() { allinone.SetLogArchiveFault(nil) })

	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: "fetch-srpm"}))
	id.Store(j.ID)
	var pod string
	laEventually(t, time.Minute, "a pod", func() (bool, error) {
		ps := laPods(t, cluster, j.ID)
		if len(ps) == 0 {
			return false, nil
		}
		pod = ps[0].Name
		return true, nil
	})
	laPatchPod(t, cluster, pod, fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, platform.AnnotationHoldStep))
	alice.wait(t, j.ID, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	laEventually(t, 2*time.Minute, "archived", laSettled(t, j.ID))
	if failures.Load() != 1 || chunks.Load() <= failAt {
		t.Fatalf("%d failures injected, %d chunks stored in all: want the archive killed once and then done", failures.Load(), chunks.Load())
	}
	laCheckWhole(t, j.ID, want)
	laEventually(t, time.Minute, "the pod released", func() (bool, error) {
		for _, p := range laPods(t, cluster, j.ID) {
			for _, f := range p.Finalizers {
				if f == names.PodFinalizer {
					return false, fmt.Errorf("pod %s still has the finalizer", p.Name)
				}
			}
		}
		return true, nil
	})
}

// A job whose pod is force-deleted (finalizers removed, deleted without grace) while its logs
// are being archived: the first delivery is stopped after one chunk, and when the Broker
// delivers again the pod is gone. The steps that ran are recorded incomplete with the reason and
// what was stored of them; the step that never ran is complete and empty. Never a silently
// partial "complete" log.
func TestLogsIncompleteWhenPodsForceDeleted(t *testing.T) {
	const cluster = "aarch64"
	laWriteLog(t, cluster, 1<<20)
	var id atomic.Value
	id.Store("")
	stopped := make(chan struct{})
	deleted := make(chan struct{})
	var stopOnce, deleteOnce sync.Once
	t.Cleanup(func() { deleteOnce.Do(func() { close(deleted) }) })
	allinone.SetLogArchiveFault(func(ctx context.Context, c store.LogChunk) error {
		if c.JobID != id.Load().(string) {
			return nil
		}
		stopOnce.Do(func() { close(stopped) })
		select { // the first delivery waits here for the pod to be gone, then dies
		case <-deleted:
			return errors.New("log-archive killed (test)")
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	t.Cleanup(func() { allinone.SetLogArchiveFault(nil) })

	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{
		platform.AnnotationFailStep: "build-rpm", platform.AnnotationExitCode: "2",
	}))
	id.Store(j.ID)
	done := alice.wait(t, j.ID, "failed", terminal)
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("log-archive did not start on the ended job")
	}
	ps := laPods(t, cluster, j.ID)
	if len(ps) != 1 {
		t.Fatalf("%d pods", len(ps))
	}
	laPatchPod(t, cluster, ps[0].Name, `{"metadata":{"finalizers":null}}`)
	zero := int64(0)
	if err := omni.Platform.Cluster(cluster).Clientset().CoreV1().Pods("default").Delete(context.Background(), ps[0].Name,
		metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	laEventually(t, time.Minute, "the pod gone", func() (bool, error) { return len(laPods(t, cluster, j.ID)) == 0, nil })
	deleteOnce.Do(func() { close(deleted) })

	laEventually(t, 2*time.Minute, "archived", laSettled(t, j.ID))
	got := laLogSteps(t, j.ID)
	for _, s := range []string{"fetch-srpm", "build-rpm"} {
		st := got[s]
		if !st.Incomplete || st.Complete || st.Reason == "" {
			t.Errorf("step %s, which ran: %+v; want incomplete with a reason", s, st)
		}
		stored := laArchived(t, j.ID, s)
		if st.Bytes != int64(len(stored)) || st.Lines != int64(bytes.Count(stored, []byte("\n"))) {
			t.Errorf("step %s: state counts %d bytes / %d lines, the store holds %d bytes", s, st.Bytes, st.Lines, len(stored))
		}
	}
	if len(laArchived(t, j.ID, "fetch-srpm")) == 0 {
		t.Error("the chunk stored before the pod went is not kept")
	}
	if st := got["upload"]; !st.Complete || st.Incomplete || st.Lines != 0 {
		t.Errorf("step upload, which never ran: %+v; want complete and empty", st)
	}
	t.Logf("job %s (%s): %+v", done.Status, done.Reason, got)
}
