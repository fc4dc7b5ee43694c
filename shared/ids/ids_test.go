package ids

import (
	"sort"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestNew(t *testing.T) {
	base := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	var all []string
	seen := map[string]bool{}
	for i := range 1000 {
		id := New(base.Add(time.Duration(i) * time.Millisecond))
		if !Valid(id) || len(id) != 26 {
			t.Fatalf("invalid id %q", id)
		}
		if errs := validation.IsDNS1123Label("omni-" + id); len(errs) > 0 {
			t.Fatalf("id %q not usable in object names: %v", id, errs)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		all = append(all, id)
	}
	if !sort.StringsAreSorted(all) {
		t.Error("ids of increasing times do not sort in time order")
	}
	if Valid("0000000000000000000000000Z") || Valid("short") || Valid("8zzzzzzzzzzzzzzzzzzzzzzzzz") {
		t.Error("Valid accepts a malformed id")
	}
}
