package queue_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
)

// TestPolicyReloadsOnChange: the policy file is reloaded when it changes; a broken edit keeps
// the previous policy; no file is the default policy.
func TestPolicyReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "queue.yaml")
	src, err := queue.PolicyEnv{PolicyFile: path}.Open()
	if err != nil {
		t.Fatal(err)
	}
	if w := src.Current().Weight("a"); w != 1 {
		t.Fatalf("no file: weight %d, want the default 1", w)
	}
	reloaded := make(chan error, 16)
	src.OnReload = func(err error) { reloaded <- err }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Watch(ctx)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !ok() {
			select {
			case <-reloaded:
			case <-deadline:
				t.Fatalf("policy: %s not seen within 30s (last error %v)", what, src.Err())
			}
		}
	}
	<-reloaded // "watch started"
	if err := os.WriteFile(path, []byte("services: {a: {weight: 3}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("weight 3", func() bool { return src.Current().Weight("a") == 3 })
	if err := os.WriteFile(path, []byte("services: {a: {weight: -1}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("the broken edit refused", func() bool { return src.Err() != nil })
	if w := src.Current().Weight("a"); w != 3 {
		t.Errorf("after a broken edit: weight %d, want the previous 3", w)
	}
}
