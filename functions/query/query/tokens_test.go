package query

import (
	"strings"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

func TestTokens(t *testing.T) {
	tok := NewTokens([]byte("0123456789abcdef0123456789abcdef"))
	f := store.Filter{Service: "a", Task: "buildrpm", Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	sealed := tok.Seal("cursor-1", f)
	if strings.Contains(sealed, "cursor-1") {
		t.Errorf("token shows the cursor in clear: %s", sealed)
	}
	if c, err := tok.Open(sealed, f); err != nil || c != "cursor-1" {
		t.Fatalf("open own token: %q %v", c, err)
	}
	other := f
	other.Task = "buildsrpm"
	tests := map[string]struct {
		token  string
		filter store.Filter
	}{
		"other filter":     {sealed, other},
		"other key":        {NewTokens([]byte("another key another key another k")).Seal("cursor-1", f), f},
		"flipped byte":     {sealed[:3] + string(sealed[3]^1) + sealed[4:], f},
		"no signature":     {strings.Split(sealed, ".")[0], f},
		"garbage":          {"!!!.???", f},
		"empty signature":  {strings.Split(sealed, ".")[0] + ".", f},
		"other limit only": {tok.Seal("cursor-1", store.Filter{Service: "b"}), f},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := tok.Open(tc.token, tc.filter)
			if err == nil || !jobs.IsInvalid(err) {
				t.Fatalf("opened a bad token: %v", err)
			}
		})
	}
	// The limit is not part of the query identity: paging with another page size is fine.
	withLimit := f
	withLimit.Limit = 7
	if _, err := tok.Open(sealed, withLimit); err != nil {
		t.Errorf("token refused with another limit: %v", err)
	}
}
