package manifest_test

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

// TestDigest: every job type has a sha256 digest, which changes when one of its files does
// and only then.
func TestDigest(t *testing.T) {
	c, err := manifest.Load(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	tk, _ := c.Task("buildrpm")
	if !strings.HasPrefix(tk.Digest, "sha256:") || len(tk.Digest) != len("sha256:")+64 || c.Digest("buildrpm") != tk.Digest {
		t.Fatalf("digest %q", tk.Digest)
	}
	if c.Digest("nope") != "" {
		t.Error("an unknown task has a digest")
	}
	// A copy of the templates with one byte more in a buildrpm file.
	fsys := fstest.MapFS{}
	entries, err := fs.ReadDir(templates.FS, "buildrpm")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(templates.FS, "buildrpm/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		fsys["buildrpm/"+e.Name()] = &fstest.MapFile{Data: b}
	}
	same, err := manifest.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if same.Digest("buildrpm") != tk.Digest {
		t.Errorf("the same files give another digest")
	}
	fsys["buildrpm/task.yaml"] = &fstest.MapFile{Data: append(fsys["buildrpm/task.yaml"].Data, '\n')}
	changed, err := manifest.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if changed.Digest("buildrpm") == tk.Digest {
		t.Errorf("a changed task.yaml keeps its digest")
	}
}
