package manifest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// builtin loads the built-in catalogue or fails the test.
func builtin(t testing.TB) *Catalogue {
	t.Helper()
	c, err := Load(templates.FS)
	if err != nil {
		t.Fatalf("Load(templates.FS): %v", err)
	}
	return c
}

// goldenInput is the fixed input of the golden files: the task's first schema example.
func goldenInput(t testing.TB, c *Catalogue, task string) Input {
	t.Helper()
	tk, ok := c.Task(task)
	if !ok {
		t.Fatalf("no task %s", task)
	}
	ex, err := firstExample(tk.Schema)
	if err != nil {
		t.Fatal(err)
	}
	return Input{
		JobID:      "01jdx8m3k9q2w7e5r4t6y1v0ha",
		Namespace:  "omni-jobs",
		Service:    "omni-web",
		Task:       task,
		Domain:     "build.openeuler.org",
		Arch:       "x86_64",
		Parameters: ex,
	}
}

// marshalObjects writes objects as a multi-document YAML stream.
func marshalObjects(t testing.TB, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	c := builtin(t)
	for _, tk := range c.Tasks() {
		t.Run(tk.Name, func(t *testing.T) {
			objs, err := c.Render(tk.Name, goldenInput(t, c, tk.Name))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			got := marshalObjects(t, objs)
			path := filepath.Join("testdata", "golden", tk.Name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
			}
		})
	}
}

// TestGoldenArch checks what the architecture changes: the node selector and the arch label.
func TestGoldenArch(t *testing.T) {
	c := builtin(t)
	for _, tk := range c.Tasks() {
		for _, arch := range tk.Arches {
			in := goldenInput(t, c, tk.Name)
			in.Arch = arch
			objs, err := c.Render(tk.Name, in)
			if err != nil {
				t.Fatalf("%s/%s: %v", tk.Name, arch, err)
			}
			job := objs[len(objs)-1]
			want := map[string]string{"x86_64": "amd64", "aarch64": "arm64"}[arch]
			got, _, _ := unstructured.NestedString(job.Object, "spec", "template", "spec", "nodeSelector", "kubernetes.io/arch")
			if got != want {
				t.Errorf("%s/%s: nodeSelector kubernetes.io/arch = %q, want %q", tk.Name, arch, got, want)
			}
			for _, o := range objs {
				if l := o.GetLabels()[names.LabelArch]; l != arch {
					t.Errorf("%s/%s: %s has arch label %q", tk.Name, arch, o.GetName(), l)
				}
			}
		}
	}
}
