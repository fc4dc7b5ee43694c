package templates_test

import (
	"io/fs"
	"slices"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

// TestBuiltinTasksLoad checks that every embedded folder is a task that loads (shared/manifest
// renders each task's example for every architecture while loading).
func TestBuiltinTasksLoad(t *testing.T) {
	c, err := manifest.Load(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := fs.ReadDir(templates.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	var folders, tasks []string
	for _, e := range entries {
		folders = append(folders, e.Name())
	}
	for _, tk := range c.Tasks() {
		tasks = append(tasks, tk.Name)
	}
	want := []string{"buildimagefromiso", "buildimagefromrelease", "buildrpm", "buildsrpm"}
	if !slices.Equal(folders, want) || !slices.Equal(tasks, want) {
		t.Errorf("folders %v, tasks %v, want %v", folders, tasks, want)
	}
}
