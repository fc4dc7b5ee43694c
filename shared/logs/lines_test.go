package logs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Lines are counted as log-archive counts them: one without a timestamp is kept, with the time
// of the line before, so numbers agree between the cluster and the archive.
func TestNumbererKeepsLinesWithoutTimestamp(t *testing.T) {
	in := "2026-11-27T19:00:00.000000001Z one\nno timestamp here\n2026-11-27T19:00:02Z three\n"
	nr := logs.NewNumberer(strings.NewReader(in))
	var got []string
	for {
		l, err := nr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s@%s", l.N, l.Text, l.Time.Format(time.StampNano)))
	}
	want := []string{"1 one@Nov 27 19:00:00.000000001", "2 no timestamp here@Nov 27 19:00:00.000000001", "3 three@Nov 27 19:00:02.000000000"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("lines (-want +got):\n%s", d)
	}
	if d := cmp.Diff(logs.Pos{N: 3, Time: t0.Add(2*time.Second - 1).UnixNano(), Same: 1}, nr.Pos()); d != "" {
		t.Errorf("Pos (-want +got):\n%s", d)
	}
}

// clusterLog serves a timestamped log as the API server does: from the lines stamped since
// the given time rounded down to the second.
type clusterLog struct {
	stamps []time.Time
	texts  []string
	opens  int
	read   int64 // lines the readers took from the served streams
}

func (c *clusterLog) open(_ context.Context, since time.Time) (io.ReadCloser, error) {
	c.opens++
	since = since.Truncate(time.Second)
	var b strings.Builder
	for i, s := range c.stamps {
		if s.Before(since) {
			continue
		}
		fmt.Fprintf(&b, "%s %s\n", s.Format(time.RFC3339Nano), c.texts[i])
	}
	return io.NopCloser(strings.NewReader(b.String())), nil
}

// newClusterLog: n lines, stamped every step from t0, except that every fifth line repeats the
// stamp of the line before (equal stamps happen: a split long line, a burst).
func newClusterLog(n int, step time.Duration) *clusterLog {
	c := &clusterLog{}
	at := t0
	for i := range n {
		if i%5 != 4 {
			at = at.Add(step)
		}
		c.stamps = append(c.stamps, at)
		c.texts = append(c.texts, fmt.Sprintf("line %d", i+1))
	}
	return c
}

// pages reads the whole log in pages of size through logs.Cluster, each page resuming from the
// position the last one ended at, as the query API's cursor does.
func pages(t *testing.T, c *clusterLog, size int) []string {
	t.Helper()
	var got []string
	var pos logs.Pos
	for {
		src, err := logs.Cluster(t.Context(), c.open, pos)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for n < size {
			l, err := src.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%d %s", l.N, l.Text))
			n++
		}
		pos = src.Pos()
		c.read += src.Read
		src.Close()
		if n == 0 {
			return got
		}
	}
}

func wantLines(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("%d line %d", i, i))
	}
	return out
}

func TestClusterPagesReadEachLineAboutOnce(t *testing.T) {
	tests := map[string]struct {
		lines, page int
		step        time.Duration
		maxRead     int64
	}{
		// Lines far apart: a page asks only for its own lines (and the one it resumes after).
		"one line a second": {lines: 2000, page: 100, step: time.Second, maxRead: 2000 + 2*21},
		// Many lines per second: a page also re-reads the lines of the second it resumes in.
		"1000 lines a second": {lines: 10000, page: 1000, step: time.Millisecond, maxRead: 10000 + 11*1000},
		// Every line in the same second as the next page's start.
		"all in one second": {lines: 300, page: 7, step: time.Microsecond, maxRead: 300 * 45},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := newClusterLog(tc.lines, tc.step)
			if d := cmp.Diff(wantLines(tc.lines), pages(t, c, tc.page)); d != "" {
				t.Fatalf("lines (-want +got):\n%s", d)
			}
			if c.read > tc.maxRead {
				t.Errorf("%d lines read from the cluster for %d lines in pages of %d, want at most %d", c.read, tc.lines, tc.page, tc.maxRead)
			}
			t.Logf("%d lines read from the cluster for %d", c.read, tc.lines)
		})
	}
}

// A position whose hint does not match the log (another pod's log, a cursor of an older
// container) still resumes at the right line number: the lines are counted from the start.
func TestClusterHintMismatch(t *testing.T) {
	c := newClusterLog(50, time.Second)
	tests := map[string]logs.Pos{
		"no line of that stamp":    {N: 10, Time: t0.Add(-time.Hour).UnixNano(), Same: 1},
		"more lines of that stamp": {N: 10, Time: c.stamps[9].UnixNano(), Same: 3},
		"no hint":                  {N: 10},
	}
	for name, pos := range tests {
		t.Run(name, func(t *testing.T) {
			src, err := logs.Cluster(t.Context(), c.open, pos)
			if err != nil {
				t.Fatal(err)
			}
			l, err := src.Next()
			if err != nil || l.N != 11 || string(l.Text) != "line 11" {
				t.Errorf("first line after %+v: %d %q %v, want 11 \"line 11\"", pos, l.N, l.Text, err)
			}
		})
	}
}

type chunkStore struct{ chunks []store.LogChunk }

func (s *chunkStore) LogChunks(_ context.Context, _, _, _ string, after int64, limit int) ([]store.LogChunk, error) {
	var out []store.LogChunk
	for _, c := range s.chunks {
		if c.Seq > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func TestArchiveLines(t *testing.T) {
	// chunks of 3, 1, 4 and 2 lines: lines 1-3, 4, 5-8, 9-10.
	sizes := []int{3, 1, 4, 2}
	st := &chunkStore{}
	n := 0
	for i, size := range sizes {
		var b strings.Builder
		for range size {
			n++
			fmt.Fprintf(&b, "line %d\n", n)
		}
		st.chunks = append(st.chunks, store.LogChunk{Seq: int64(i + 1), Data: []byte(b.String()), Lines: size})
	}
	read := func(from logs.Pos, limit int) ([]string, logs.Pos) {
		src := logs.Archive(t.Context(), st, "job", "step", from)
		var got []string
		for len(got) < limit {
			l, err := src.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%d line %d", l.N, l.N))
			if string(l.Text) != fmt.Sprintf("line %d", l.N) {
				t.Fatalf("line %d is %q", l.N, l.Text)
			}
		}
		return got, src.Pos()
	}
	// Pages of every size give every line once, resuming by the hints.
	for size := 1; size <= 11; size++ {
		var all []string
		pos := logs.Pos{}
		for {
			got, next := read(pos, size)
			if len(got) == 0 {
				break
			}
			all, pos = append(all, got...), next
		}
		if d := cmp.Diff(wantLines(10), all); d != "" {
			t.Errorf("pages of %d (-want +got):\n%s", size, d)
		}
	}
	tests := map[string]struct {
		from logs.Pos
		want string
	}{
		"no hint": {logs.Pos{N: 5}, "6 line 6"},
		"hint":    {logs.Pos{N: 5, Seq: 3, Base: 4}, "6 line 6"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, _ := read(tc.from, 1)
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("after %+v: %v, want %s", tc.from, got, tc.want)
			}
		})
	}
	// A gap ends the lines (an archive still being written).
	st.chunks = append(st.chunks[:2], st.chunks[3])
	if got, _ := read(logs.Pos{}, 100); len(got) != 4 {
		t.Errorf("with chunk 3 missing: %v, want lines 1-4", got)
	}
}

// The reader's shortcut for stamps that share the second of the line before gives what
// time.Parse gives, and rejects what it rejects.
func TestReaderStampsAsTimeParse(t *testing.T) {
	stamps := []string{
		"2026-11-27T19:00:00.000000001Z", "2026-11-27T19:00:00.5Z", "2026-11-27T19:00:00Z",
		"2026-11-27T19:00:00.123456789Z", "2026-11-27T19:00:00.12Z", "2026-11-27T19:00:01.7Z",
		"2026-11-27T19:00:01.000000001+01:00", "2026-11-27T19:00:01.25+01:00", "2026-11-27T19:00:01.25Z",
		"2026-11-27T19:00:01.2x5Z", "2026-11-27T19:00:01.1234567891Z", "2026-11-27T19:00:01.Z", "2026-11-27T19:00:01",
	}
	var in strings.Builder
	for i, s := range stamps {
		fmt.Fprintf(&in, "%s line %d\n", s, i)
	}
	r := logs.NewReader(strings.NewReader(in.String()))
	for i, s := range stamps {
		l, err := r.Next()
		want, werr := time.Parse(time.RFC3339Nano, s)
		switch {
		case werr != nil && !errors.Is(err, logs.ErrNoTimestamp):
			t.Errorf("%s: %v at %v, want ErrNoTimestamp as time.Parse: %v", s, err, l.Time, werr)
		case werr == nil && (err != nil || !l.Time.Equal(want) || string(l.Text) != fmt.Sprintf("line %d", i)):
			t.Errorf("%s: %v %q %v, want %v", s, l.Time, l.Text, err, want.UTC())
		}
	}
}

// sourceStore holds chunks of both sources of one step.
type sourceStore map[string][]store.LogChunk

func (s sourceStore) LogChunks(_ context.Context, _, _, source string, after int64, limit int) ([]store.LogChunk, error) {
	var out []store.LogChunk
	for _, c := range s[source] {
		if c.Seq > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

// Archive and Pushed each read their own source, numbered from 1: the pushed lines are a
// sequence of their own, never mixed with the archive's.
func TestPushedLinesAreTheirOwnSequence(t *testing.T) {
	st := sourceStore{
		store.LogSourceArchive: {{Seq: 1, Data: []byte("a1\na2\n"), Lines: 2}},
		store.LogSourcePush:    {{Seq: 1, Data: []byte("p1\n"), Lines: 1}, {Seq: 2, Data: []byte("p2\np3\n"), Lines: 2}},
	}
	read := func(src *logs.ArchiveLines) []string {
		var got []string
		for {
			l, err := src.Next()
			if errors.Is(err, io.EOF) {
				return got
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%d %s", l.N, l.Text))
		}
	}
	if d := cmp.Diff([]string{"1 a1", "2 a2"}, read(logs.Archive(t.Context(), st, "job", "step", logs.Pos{}))); d != "" {
		t.Errorf("archive (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"1 p1", "2 p2", "3 p3"}, read(logs.Pushed(t.Context(), st, "job", "step", logs.Pos{}))); d != "" {
		t.Errorf("pushed (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"3 p3"}, read(logs.Pushed(t.Context(), st, "job", "step", logs.Pos{N: 2, Seq: 2, Base: 1}))); d != "" {
		t.Errorf("pushed after line 2 (-want +got):\n%s", d)
	}
}
