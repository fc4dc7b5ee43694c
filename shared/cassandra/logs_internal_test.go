package cassandra

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// These tests need no Cassandra.

func TestBucketOf(t *testing.T) {
	for seq, want := range map[int64]int{1: 0, 64: 0, 65: 1, 128: 1, 129: 2} {
		if got := bucketOf(seq); got != want {
			t.Errorf("bucketOf(%d) = %d, want %d", seq, got, want)
		}
	}
}

func TestMergeLogStep(t *testing.T) {
	cur := store.LogStep{JobID: "j", Step: "s", LastSeq: 5, Bytes: 50, Lines: 5, Complete: true, Reason: "first"}
	got := mergeLogStep(cur, store.LogStep{JobID: "j", Step: "s", LastSeq: 3, Bytes: 70, Lines: 1, Incomplete: true, Reason: "second"})
	want := store.LogStep{JobID: "j", Step: "s", LastSeq: 5, Bytes: 70, Lines: 5, Complete: true, Incomplete: true, Reason: "first"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mergeLogStep (-want +got):\n%s", d)
	}
}
