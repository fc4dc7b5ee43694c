package query

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

var fuzzTokens = NewTokens([]byte("0123456789abcdef0123456789abcdef"))

// FuzzPageToken: a page token opens to the cursor it was sealed with, under the same filter
// only; any other string given as page_token (clients send anything) is a 400 naming
// page_token, never a crash.
func FuzzPageToken(f *testing.F) {
	sealed := fuzzTokens.Seal("cursor-1", store.Filter{Service: "a"})
	for _, seed := range []string{sealed, sealed[:3] + "x" + sealed[4:], "!!!.???", "", ".", "eyJjIjoiIn0.", "e30.AAAA"} {
		f.Add("cursor-1", "a", seed)
	}
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, cursor, service, token string) {
		filter := store.Filter{Service: service, Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		// Store cursors are base64: a cursor that is not UTF-8 reads back as JSON carries it.
		if got, err := fuzzTokens.Open(fuzzTokens.Seal(cursor, filter), filter); err != nil || got != inJSON(cursor) {
			t.Errorf("Open(Seal(%q)) = %q, %v", cursor, got, err)
		}
		other := filter
		other.Service += "x"
		if _, err := fuzzTokens.Open(fuzzTokens.Seal(cursor, filter), other); err == nil {
			t.Errorf("a token of service %q opened for %q", filter.Service, other.Service)
		}
		got, err := fuzzTokens.Open(token, filter)
		if err != nil {
			var ie *jobs.InvalidError
			if !errors.As(err, &ie) || ie.Field != "page_token" {
				t.Errorf("Open(%q): %v, want a 400 naming page_token", token, err)
			}
			return
		}
		if token != fuzzTokens.Seal(got, filter) {
			t.Errorf("Open(%q) = %q, but that is not the token of %q", token, got, got)
		}
	})
}

// FuzzLogCursor: a log cursor opens to the position it was sealed at, for the same job, step
// and stream only; any other string given as `after` or Last-Event-ID is a 400 naming that
// field, and a cursor that opens holds a valid position.
func FuzzLogCursor(f *testing.F) {
	pos := logs.Pos{N: 10, Seq: 3, Base: 8, Time: 1764270000000000001, Same: 2}
	c := fuzzTokens.sealCursor("job1", "build", "", pos)
	f.Add("job1", "build", false, int64(10), int64(3), int64(8), int64(1764270000000000001), int64(2), c)
	f.Add("job1", "build", true, int64(0), int64(0), int64(0), int64(0), int64(0), c[:5]+"x"+c[6:])
	f.Add("job1", "build", false, int64(4), int64(0), int64(0), int64(0), int64(0), fuzzTokens.Seal("x", store.Filter{Service: "svc"}))
	f.Add("j", "s", true, int64(-1), int64(0), int64(0), int64(0), int64(0), "garbage")
	f.Add("", "", false, int64(1), int64(2), int64(3), int64(4), int64(5), "")
	f.Fuzz(func(t *testing.T, job, step string, pushed bool, n, seq, base, stamp, same int64, cursor string) {
		stream := ""
		if pushed {
			stream = streamPushed
		}
		p := logs.Pos{N: n, Seq: seq, Base: base, Time: stamp, Same: same}
		if p.Valid() {
			sealed := fuzzTokens.sealCursor(job, step, stream, p)
			got, err := fuzzTokens.openCursor("after", sealed, job, step, stream)
			if err != nil {
				t.Fatalf("open the cursor of %+v: %v", p, err)
			}
			if d := cmp.Diff(p, got); d != "" {
				t.Errorf("cursor read back (-sealed +opened):\n%s", d)
			}
			otherStream := streamPushed
			if pushed {
				otherStream = ""
			}
			if _, err := fuzzTokens.openCursor("after", sealed, job, step, otherStream); err == nil {
				t.Errorf("a cursor of stream %q opened for stream %q", stream, otherStream)
			}
			if _, err := fuzzTokens.openCursor("after", sealed, job, step+"x", stream); err == nil {
				t.Errorf("a cursor of step %q opened for step %q", step, step+"x")
			}
		}
		got, err := fuzzTokens.openCursor("Last-Event-ID", cursor, job, step, stream)
		if err != nil {
			var ie *jobs.InvalidError
			if !errors.As(err, &ie) || ie.Field != "Last-Event-ID" {
				t.Errorf("openCursor(%q): %v, want a 400 naming Last-Event-ID", cursor, err)
			}
			return
		}
		if !got.Valid() {
			t.Errorf("openCursor(%q) gave the invalid position %+v", cursor, got)
		}
	})
}
