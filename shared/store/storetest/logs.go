package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// The logs part of the contract (store.LogStore). Run runs it for every store that implements
// store.LogStore, under names starting with "Logs"; RunLogs runs it alone. Decisions it pins
// down:
//   - PutLogChunk is idempotent and the first write wins, also when writers race.
//   - LogChunks returns chunks in Seq order whatever order they were written in; pages by
//     after/limit are exact; sources, steps and jobs are separate sequences.
//   - Line times keep their nanoseconds and come back in UTC; Data comes back byte for byte.
//   - PutLogStep never moves a field back: counts keep their maximum, Complete and Incomplete
//     stay set, the first non-empty Reason stays.
//   - Bad keys, sources, sequence numbers and empty chunks are a *jobs.InvalidError.
//
// Chunk sequences in these tests run past 130 so that a store which splits a step's chunks
// over several partitions (Cassandra: 64 per bucket) is read across its boundaries.
var logTests = map[string]func(t *testing.T, f *logFixture){
	"LogsRoundTrip":         testLogsRoundTrip,
	"LogsPaging":            testLogsPaging,
	"LogsIdempotent":        testLogsIdempotent,
	"LogsConcurrentPut":     testLogsConcurrentPut,
	"LogsOutOfOrder":        testLogsOutOfOrder,
	"LogsSeparateSequences": testLogsSeparateSequences,
	"LogsInvalid":           testLogsInvalid,
	"LogStepMonotonic":      testLogStepMonotonic,
	"LogStepConcurrent":     testLogStepConcurrent,
	"LogStepsOfJob":         testLogStepsOfJob,
}

// RunLogs runs the logs part of the contract suite against the stores newStore returns, with
// the same rules as Run.
func RunLogs(t *testing.T, newStore func(t *testing.T) store.LogStore) {
	names := make([]string, 0, len(logTests))
	for name := range logTests {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		test := logTests[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, newLogFixture(t, newStore(t)))
		})
	}
}

// logTestsOf adapts the logs tests to Run's fixtures: skipped for a store without logs.
func logTestsOf() map[string]func(t *testing.T, f *fixture) {
	out := map[string]func(t *testing.T, f *fixture){}
	for name, test := range logTests {
		out[name] = func(t *testing.T, f *fixture) {
			ls, ok := f.s.(store.LogStore)
			if !ok {
				t.Skipf("%T does not implement store.LogStore", f.s)
			}
			test(t, newLogFixture(t, ls))
		}
	}
	return out
}

type logFixture struct {
	s    store.LogStore
	t    *testing.T
	job  string
	base time.Time
}

func newLogFixture(t *testing.T, s store.LogStore) *logFixture {
	loc := time.FixedZone("UTC-3", -3*3600)
	return &logFixture{
		s:    s,
		t:    t,
		job:  "job-" + randHex(8),
		base: time.Date(2026, 11, 27, 19, 0, 0, 123456789, loc),
	}
}

// chunk returns chunk seq of (job, step, source) with distinct, non-UTF-8 content.
func (f *logFixture) chunk(step, source string, seq int64) store.LogChunk {
	var data bytes.Buffer
	lines := int(seq%3) + 1
	for i := range lines {
		fmt.Fprintf(&data, "%s %s %d line %d \xff\xfe\t ünïcode\n", f.job, step, seq, i)
	}
	first := f.base.Add(time.Duration(seq) * time.Second)
	return store.LogChunk{
		JobID: f.job, Step: step, Source: source, Seq: seq,
		Data: data.Bytes(), Lines: lines,
		FirstTime: first, LastTime: first.Add(time.Duration(lines-1) * time.Microsecond),
	}
}

func (f *logFixture) put(c store.LogChunk) {
	f.t.Helper()
	if err := f.s.PutLogChunk(f.t.Context(), c); err != nil {
		f.t.Fatalf("PutLogChunk(%s/%s/%d): %v", c.Step, c.Source, c.Seq, err)
	}
}

func (f *logFixture) read(step, source string, after int64, limit int) []store.LogChunk {
	f.t.Helper()
	cs, err := f.s.LogChunks(f.t.Context(), f.job, step, source, after, limit)
	if err != nil {
		f.t.Fatalf("LogChunks(%s, %s, after %d, limit %d): %v", step, source, after, limit, err)
	}
	for _, c := range cs {
		for _, tm := range []time.Time{c.FirstTime, c.LastTime} {
			if tm.Location() != time.UTC {
				f.t.Fatalf("chunk %d: time %v not in UTC", c.Seq, tm)
			}
		}
	}
	return cs
}

func seqs(cs []store.LogChunk) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = c.Seq
	}
	return out
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func testLogsRoundTrip(t *testing.T, f *logFixture) {
	var want []store.LogChunk
	for seq := int64(1); seq <= 3; seq++ {
		c := f.chunk("build", store.LogSourceArchive, seq)
		f.put(c)
		c.FirstTime, c.LastTime = c.FirstTime.UTC(), c.LastTime.UTC()
		want = append(want, c)
	}
	big := f.chunk("build", store.LogSourceArchive, 4)
	big.Data = bytes.Repeat([]byte("0123456789abcde\n"), 80<<10) // 1.25 MiB, 81920 lines
	big.Lines = 80 << 10
	big.FirstTime, big.LastTime = time.Time{}, time.Time{} // unknown times stay zero
	f.put(big)
	want = append(want, big)
	got := f.read("build", store.LogSourceArchive, 0, 0)
	// Data is compared alone: cmp walks a []byte element by element.
	for i := range min(len(want), len(got)) {
		if !bytes.Equal(want[i].Data, got[i].Data) {
			t.Errorf("chunk %d: data %q…, want %q…", want[i].Seq, truncate(got[i].Data), truncate(want[i].Data))
		}
		want[i].Data, got[i].Data = nil, nil
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("chunks read back (-want +got):\n%s", d)
	}
}

func truncate(b []byte) []byte { return b[:min(len(b), 80)] }

func testLogsPaging(t *testing.T, f *logFixture) {
	const n = 140
	for seq := int64(1); seq <= n; seq++ {
		f.put(f.chunk("build", store.LogSourceArchive, seq))
	}
	tests := map[string]struct {
		after int64
		limit int
		want  []int64
	}{
		"first":                {0, 1, []int64{1}},
		"negative after":       {-5, 3, []int64{1, 2, 3}},
		"across a bucket edge": {60, 10, seqRange(61, 70)},
		"up to the end":        {135, 10, seqRange(136, 140)},
		"past the end":         {140, 10, nil},
		"far past the end":     {1000, 10, nil},
		"default limit":        {0, 0, seqRange(1, 100)},
		"limit above maximum":  {0, 100000, seqRange(1, 140)},
	}
	for name, tc := range tests {
		got := seqs(f.read("build", store.LogSourceArchive, tc.after, tc.limit))
		if d := cmp.Diff(tc.want, got); d != "" && !(len(tc.want) == 0 && len(got) == 0) {
			t.Errorf("%s: after %d limit %d (-want +got):\n%s", name, tc.after, tc.limit, d)
		}
	}
	// Walking the pages gives every chunk once, in order.
	var all []int64
	for after := int64(0); ; {
		page := f.read("build", store.LogSourceArchive, after, 9)
		if len(page) == 0 {
			break
		}
		all = append(all, seqs(page)...)
		after = page[len(page)-1].Seq
	}
	if d := cmp.Diff(seqRange(1, n), all); d != "" {
		t.Errorf("pages of 9 (-want +got):\n%s", d)
	}
}

func testLogsIdempotent(t *testing.T, f *logFixture) {
	first := f.chunk("build", store.LogSourceArchive, 1)
	f.put(first)
	f.put(first)
	other := first
	other.Data, other.Lines = []byte("something else\n"), 1
	f.put(other) // nil: the chunk exists, the first write stays
	got := f.read("build", store.LogSourceArchive, 0, 10)
	if len(got) != 1 || !bytes.Equal(got[0].Data, first.Data) || got[0].Lines != first.Lines {
		t.Errorf("after rewriting chunk 1: %d chunks, %+v; want only the first write", len(got), got)
	}
}

func testLogsConcurrentPut(t *testing.T, f *logFixture) {
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			c := f.chunk("build", store.LogSourcePush, 1)
			c.Data = []byte(fmt.Sprintf("writer %d\n", w))
			c.Lines = 1
			errs <- f.s.PutLogChunk(t.Context(), c)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent PutLogChunk: %v", err)
		}
	}
	got := f.read("build", store.LogSourcePush, 0, 10)
	if len(got) != 1 {
		t.Fatalf("%d chunks after concurrent writes of one seq, want 1", len(got))
	}
	again := f.read("build", store.LogSourcePush, 0, 10)
	if !bytes.Equal(again[0].Data, got[0].Data) {
		t.Errorf("the stored chunk changed between reads: %q then %q", got[0].Data, again[0].Data)
	}
}

func testLogsOutOfOrder(t *testing.T, f *logFixture) {
	for seq := int64(130); seq >= 1; seq-- {
		f.put(f.chunk("build", store.LogSourcePush, seq))
	}
	if d := cmp.Diff(seqRange(1, 130), seqs(f.read("build", store.LogSourcePush, 0, 1000))); d != "" {
		t.Errorf("chunks written backwards, read (-want +got):\n%s", d)
	}
}

func testLogsSeparateSequences(t *testing.T, f *logFixture) {
	f.put(f.chunk("fetch", store.LogSourceArchive, 1))
	f.put(f.chunk("fetch", store.LogSourceArchive, 2))
	f.put(f.chunk("fetch", store.LogSourcePush, 1))
	f.put(f.chunk("build", store.LogSourceArchive, 1))
	other := &logFixture{s: f.s, t: t, job: f.job + "-other", base: f.base}
	other.put(other.chunk("fetch", store.LogSourceArchive, 1))
	for _, tc := range []struct {
		step, source string
		want         []int64
	}{
		{"fetch", store.LogSourceArchive, []int64{1, 2}},
		{"fetch", store.LogSourcePush, []int64{1}},
		{"build", store.LogSourceArchive, []int64{1}},
		{"build", store.LogSourcePush, nil},
		{"upload", store.LogSourceArchive, nil},
	} {
		got := f.read(tc.step, tc.source, 0, 100)
		if d := cmp.Diff(tc.want, seqs(got)); d != "" && len(tc.want)+len(got) > 0 {
			t.Errorf("%s/%s (-want +got):\n%s", tc.step, tc.source, d)
		}
		for _, c := range got {
			if c.JobID != f.job || c.Step != tc.step || c.Source != tc.source || !bytes.Contains(c.Data, []byte(f.job+" "+tc.step)) {
				t.Errorf("%s/%s: got a chunk of %s/%s/%s: %q", tc.step, tc.source, c.JobID, c.Step, c.Source, c.Data)
			}
		}
	}
}

func testLogsInvalid(t *testing.T, f *logFixture) {
	good := f.chunk("build", store.LogSourceArchive, 1)
	long := string(bytes.Repeat([]byte("x"), 257))
	tests := map[string]func(c *store.LogChunk){
		"no job":         func(c *store.LogChunk) { c.JobID = "" },
		"long job":       func(c *store.LogChunk) { c.JobID = long },
		"no step":        func(c *store.LogChunk) { c.Step = "" },
		"unknown source": func(c *store.LogChunk) { c.Source = "stdout" },
		"seq 0":          func(c *store.LogChunk) { c.Seq = 0 },
		"negative seq":   func(c *store.LogChunk) { c.Seq = -1 },
		"no lines":       func(c *store.LogChunk) { c.Lines = 0 },
		"no data":        func(c *store.LogChunk) { c.Data = nil },
	}
	for name, mutate := range tests {
		c := good
		mutate(&c)
		if err := f.s.PutLogChunk(t.Context(), c); !jobs.IsInvalid(err) {
			t.Errorf("%s: PutLogChunk = %v, want an InvalidError", name, err)
		}
	}
	if _, err := f.s.LogChunks(t.Context(), f.job, "build", "stdout", 0, 10); !jobs.IsInvalid(err) {
		t.Errorf("LogChunks with an unknown source = %v, want an InvalidError", err)
	}
	if _, err := f.s.LogChunks(t.Context(), "", "build", store.LogSourceArchive, 0, 10); !jobs.IsInvalid(err) {
		t.Errorf("LogChunks without a job = %v, want an InvalidError", err)
	}
	for name, s := range map[string]store.LogStep{
		"no job":   {Step: "build"},
		"no step":  {JobID: f.job},
		"negative": {JobID: f.job, Step: "build", Bytes: -1},
	} {
		if err := f.s.PutLogStep(t.Context(), s); !jobs.IsInvalid(err) {
			t.Errorf("PutLogStep %s = %v, want an InvalidError", name, err)
		}
	}
	if got := f.read("build", store.LogSourceArchive, 0, 10); len(got) != 0 {
		t.Errorf("invalid chunks were stored: %d", len(got))
	}
}

func (f *logFixture) steps() map[string]store.LogStep {
	f.t.Helper()
	ss, err := f.s.LogSteps(f.t.Context(), f.job)
	if err != nil {
		f.t.Fatalf("LogSteps: %v", err)
	}
	out := map[string]store.LogStep{}
	for _, s := range ss {
		if s.JobID != f.job {
			f.t.Errorf("LogSteps(%s) returned a step of %s", f.job, s.JobID)
		}
		out[s.Step] = s
	}
	return out
}

func (f *logFixture) putStep(s store.LogStep) {
	f.t.Helper()
	s.JobID = f.job
	if err := f.s.PutLogStep(f.t.Context(), s); err != nil {
		f.t.Fatalf("PutLogStep(%+v): %v", s, err)
	}
}

func testLogStepMonotonic(t *testing.T, f *logFixture) {
	steps := []struct {
		name string
		put  store.LogStep
		want store.LogStep
	}{
		{"first", store.LogStep{Step: "build", LastSeq: 5, Bytes: 500, Lines: 50},
			store.LogStep{Step: "build", LastSeq: 5, Bytes: 500, Lines: 50}},
		{"smaller counts are ignored", store.LogStep{Step: "build", LastSeq: 3, Bytes: 300, Lines: 30},
			store.LogStep{Step: "build", LastSeq: 5, Bytes: 500, Lines: 50}},
		{"larger counts grow", store.LogStep{Step: "build", LastSeq: 7, Bytes: 700, Lines: 70},
			store.LogStep{Step: "build", LastSeq: 7, Bytes: 700, Lines: 70}},
		{"complete", store.LogStep{Step: "build", LastSeq: 7, Bytes: 700, Lines: 70, Complete: true},
			store.LogStep{Step: "build", LastSeq: 7, Bytes: 700, Lines: 70, Complete: true}},
		{"complete stays", store.LogStep{Step: "build", LastSeq: 2},
			store.LogStep{Step: "build", LastSeq: 7, Bytes: 700, Lines: 70, Complete: true}},
		{"incomplete with a reason", store.LogStep{Step: "build", Incomplete: true, Reason: "pod gone"},
			store.LogStep{Step: "build", LastSeq: 7, Bytes: 700, Lines: 70, Complete: true, Incomplete: true, Reason: "pod gone"}},
		{"first reason stays", store.LogStep{Step: "build", Incomplete: false, Reason: "other"},
			store.LogStep{Step: "build", LastSeq: 7, Bytes: 700, Lines: 70, Complete: true, Incomplete: true, Reason: "pod gone"}},
	}
	for _, s := range steps {
		f.putStep(s.put)
		want := s.want
		want.JobID = f.job
		if d := cmp.Diff(want, f.steps()["build"]); d != "" {
			t.Errorf("after %s (-want +got):\n%s", s.name, d)
		}
	}
	// A fresh step that starts incomplete with nothing archived.
	f.putStep(store.LogStep{Step: "upload", Incomplete: true, Reason: "pod gone before archiving"})
	if got := f.steps()["upload"]; !got.Incomplete || got.Complete || got.LastSeq != 0 || got.Reason != "pod gone before archiving" {
		t.Errorf("incomplete step: %+v", got)
	}
}

func testLogStepConcurrent(t *testing.T, f *logFixture) {
	const writers = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for w := range writers {
		wg.Go(func() {
			for i := range 5 {
				n := int64(w*10 + i)
				err := f.s.PutLogStep(t.Context(), store.LogStep{JobID: f.job, Step: "build", LastSeq: n, Bytes: n * 100, Lines: n * 10, Complete: w == 3 && i == 2})
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent PutLogStep: %v", err)
	}
	want := store.LogStep{JobID: f.job, Step: "build", LastSeq: 74, Bytes: 7400, Lines: 740, Complete: true}
	if d := cmp.Diff(want, f.steps()["build"]); d != "" {
		t.Errorf("after concurrent writes (-want +got):\n%s", d)
	}
}

func testLogStepsOfJob(t *testing.T, f *logFixture) {
	if got := f.steps(); len(got) != 0 {
		t.Errorf("steps of a job without logs: %v", got)
	}
	for _, s := range []string{"upload", "build", "fetch"} {
		f.putStep(store.LogStep{Step: s, LastSeq: 1, Bytes: 10, Lines: 1, Complete: true})
	}
	other := &logFixture{s: f.s, t: t, job: f.job + "-other"}
	other.putStep(store.LogStep{Step: "build", LastSeq: 9})
	ss, err := f.s.LogSteps(t.Context(), f.job)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range ss {
		names = append(names, s.Step)
	}
	if d := cmp.Diff([]string{"build", "fetch", "upload"}, names); d != "" {
		t.Errorf("LogSteps: steps in name order (-want +got):\n%s", d)
	}
}
