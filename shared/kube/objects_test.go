package kube

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

func TestRemovePodFinalizer(t *testing.T) {
	pod := func(name string, finalizers ...string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Finalizers: finalizers}}
	}
	cs := fake.NewClientset(
		pod("ours-last", "example.com/other", names.PodFinalizer),
		pod("ours-only", names.PodFinalizer),
		pod("not-ours", "example.com/other"),
	)
	k := &Cluster{Instance: Instance{Name: "x86", Namespace: "default"}, Client: cs}
	want := map[string][]string{"ours-last": {"example.com/other"}, "ours-only": nil, "not-ours": {"example.com/other"}}
	for name := range want {
		if err := k.RemovePodFinalizer(t.Context(), "", name); err != nil {
			t.Errorf("RemovePodFinalizer(%s): %v", name, err)
		}
	}
	if err := k.RemovePodFinalizer(t.Context(), "", "missing"); err != nil {
		t.Errorf("RemovePodFinalizer of a missing pod: %v", err)
	}
	for name, fin := range want {
		p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(fin, p.Finalizers); d != "" && len(fin)+len(p.Finalizers) > 0 {
			t.Errorf("%s: finalizers (-want +got):\n%s", name, d)
		}
	}
}
