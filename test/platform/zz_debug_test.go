package platform_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/omnibuildplatform/omni-orchestrator/test/platform"
)

func TestDebug(t *testing.T) {
	if os.Getenv("DEBUG_PLATFORM") == "" {
		t.Skip()
	}
	sink := newSink(t)
	p := platform.StartForTest(t, platform.Options{Sink: sink.srv.URL, WorkDir: "/tmp/scratch/wd"})
	c := p.Cluster("x86_64")
	cs := c.Clientset()
	ctx := context.Background()
	j := newJob("dbg", "amd64", map[string]string{platform.AnnotationStepDuration: "1s", platform.AnnotationDurationPrefix + "fetch": "2s"})
	j.Spec.Template.Finalizers = []string{"omni.openeuler.org/logs"}
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, ctx, cs, "dbg", "Complete")
	pod := jobPod(t, ctx, cs, "dbg")
	b, _ := json.MarshalIndent(pod.Status, "", "  ")
	t.Logf("status: %s", b)
	// logs
	raw, err := cs.CoreV1().Pods("default").GetLogs(pod.Name, &corev1.PodLogOptions{Container: "fetch"}).DoRaw(ctx)
	t.Logf("logs: %q err %v", raw, err)
	// delete with finalizer
	bg := metav1.DeletePropagationBackground
	if err := cs.BatchV1().Jobs("default").Delete(ctx, "dbg", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	pod2, err := cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
	t.Logf("after job delete: %v %v finalizers %v phase %s", err, pod2.DeletionTimestamp, pod2.Finalizers, pod2.Status.Phase)
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, pod.Name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	_, err = cs.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
	t.Logf("after finalizer removal: %v", err)

	// running job deleted
	j2 := newJob("dbg2", "amd64", map[string]string{platform.AnnotationHoldStep: "fetch"})
	j2.Spec.Template.Finalizers = []string{"omni.openeuler.org/logs"}
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, j2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	pod3 := jobPod(t, ctx, cs, "dbg2")
	b, _ = json.MarshalIndent(pod3.Status.InitContainerStatuses, "", "  ")
	t.Logf("held: phase %s %s", pod3.Status.Phase, b)
	if err := cs.BatchV1().Jobs("default").Delete(ctx, "dbg2", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	pod3, err = cs.CoreV1().Pods("default").Get(ctx, pod3.Name, metav1.GetOptions{})
	b, _ = json.MarshalIndent(pod3.Status, "", "  ")
	t.Logf("deleted held: %v %s", err, b)
	sink.mu.Lock()
	for _, e := range sink.events {
		t.Logf("event %s %s %s %s %s", e.Type, e.Kind, e.Name, e.Cluster, e.Phase)
	}
	sink.mu.Unlock()
	out, _ := os.ReadFile(c.KwokDir + "/logs/kwok-controller.log")
	os.WriteFile("/tmp/scratch/kwok-controller.log", out, 0o644)
	out, _ = os.ReadFile(c.AdapterLog())
	os.WriteFile("/tmp/scratch/adapter.log", out, 0o644)
}
