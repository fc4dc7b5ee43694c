// Package storetest is the contract suite every store.Store implementation must pass. An
// implementation's own test calls Run with a constructor:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... })
//	}
//
// Decisions the suite pins down (see also the doc comments of store.Store):
//   - Times are kept to the millisecond, in UTC; CreateJob and UpdateJob normalise the job they
//     return (and the one CreateJob is given) so it equals what a later read returns.
//   - Parameters round-trip through JSON: every number comes back as float64, arrays as []any,
//     objects as map[string]any. Integers beyond 2^53 lose precision. A nil map stays nil and an
//     empty one stays empty.
//   - Observed, which the JSON form of a job omits, is stored too.
//   - A ListJobs page may hold fewer jobs than Limit, even none, while Next is not "": only
//     Next == "" ends a listing.
//
// For stores that also implement store.LogStore, Run runs the logs part too (logs.go).
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Run runs the contract suite against the stores newStore returns. newStore is called once per
// subtest, which may run in parallel; it may hand out stores over one shared database (the
// suite uses random ids, service names and keys, and ignores other jobs where it lists across
// services) and must close what it opens with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := map[string]func(t *testing.T, f *fixture){
		"CreateAndGet":          testCreateAndGet,
		"CreateDefaults":        testCreateDefaults,
		"CreateExisting":        testCreateExisting,
		"CreateInvalid":         testCreateInvalid,
		"GetMissing":            testGetMissing,
		"BatchGet":              testBatchGet,
		"Update":                testUpdate,
		"UpdateConcurrent":      testUpdateConcurrent,
		"RevisionOnlyOnChange":  testRevisionOnlyOnChange,
		"ListUnsettled":         testListUnsettled,
		"ListJobs":              testListJobs,
		"ListJobsAfterUpdate":   testListJobsAfterUpdate,
		"ListJobsInvalid":       testListJobsInvalid,
		"IdempotencyKey":        testIdempotencyKey,
		"IdempotencyKeyExpiry":  testIdempotencyKeyExpiry,
		"IdempotencyKeyInvalid": testIdempotencyKeyInvalid,
		"UnicodeAndLongValues":  testUnicodeAndLongValues,
		"ParametersRoundTrip":   testParametersRoundTrip,
		"ObservedRoundTrip":     testObservedRoundTrip,
		"Ping":                  testPing,
	}
	for name, test := range logTestsOf() {
		tests[name] = test
	}
	for name, test := range slotTestsOf() {
		tests[name] = test
	}
	names := make([]string, 0, len(tests))
	for name := range tests {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		test := tests[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, newFixture(t, newStore(t)))
		})
	}
}

// fixture is one subtest's store, context and unique names.
type fixture struct {
	s       store.Store
	ctx     context.Context
	service string
	// base is a whole hour about three days ago: recent enough for any store's default window,
	// far enough back that a few days of jobs after it are still in the past.
	base time.Time
}

func newFixture(t *testing.T, s store.Store) *fixture {
	return &fixture{
		s:       s,
		ctx:     t.Context(),
		service: "svc-" + randHex(6),
		base:    time.Now().UTC().Add(-72 * time.Hour).Truncate(time.Hour),
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newJob returns a minimal valid job of the fixture's service, not yet stored.
func (f *fixture) newJob(task string, created time.Time) *jobs.Job {
	return &jobs.Job{
		ID:         "job-" + randHex(8),
		Service:    f.service,
		Task:       task,
		Domain:     "default",
		Arch:       "x86_64",
		Cluster:    "x86-a",
		Namespace:  "omni",
		Status:     jobs.StatusPending,
		Parameters: map[string]any{"version": "24.03"},
		CreatedAt:  created,
		UpdatedAt:  created,
	}
}

func (f *fixture) create(t *testing.T, j *jobs.Job) *jobs.Job {
	t.Helper()
	if err := f.s.CreateJob(f.ctx, j); err != nil {
		t.Fatalf("CreateJob(%s): %v", j.ID, err)
	}
	return j.Clone()
}

func (f *fixture) get(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := f.s.GetJob(f.ctx, id)
	if err != nil {
		t.Fatalf("GetJob(%s): %v", id, err)
	}
	return j
}

func (f *fixture) update(t *testing.T, id string, fn func(*jobs.Job)) *jobs.Job {
	t.Helper()
	j, changed, err := f.s.UpdateJob(f.ctx, id, func(j *jobs.Job) (bool, error) { fn(j); return true, nil })
	if err != nil || !changed {
		t.Fatalf("UpdateJob(%s) = changed %v, %v; want a change", id, changed, err)
	}
	return j
}

func ptr[T any](v T) *T { return &v }

func diffJob(want, got *jobs.Job) string {
	// time.Time compares with its Equal method, so only instants matter here; the UTC
	// requirement is checked separately. Empty and nil compare equal here (jobs.Clone turns nil
	// Steps into an empty slice); the round-trip tests check nil-ness where it matters.
	return cmp.Diff(want, got, cmpopts.EquateEmpty())
}

func testCreateAndGet(t *testing.T, f *fixture) {
	loc := time.FixedZone("UTC+8", 8*3600)
	created := f.base.In(loc).Add(123456789 * time.Nanosecond) // sub-millisecond part must go
	started := created.Add(1500 * time.Millisecond)
	j := &jobs.Job{
		ID:         "job-" + randHex(8),
		Service:    f.service,
		Task:       "buildimagefromrelease",
		Domain:     "openeuler",
		Arch:       "aarch64",
		Cluster:    "arm-b",
		Namespace:  "omni-jobs",
		Status:     jobs.StatusRunning,
		Reason:     "PodRunning",
		Message:    "step 2 of 3",
		Parameters: map[string]any{"version": "24.03-LTS", "packages": []any{"bash", "kernel"}},
		Labels:     map[string]string{"team": "infra"},
		Callback:   "https://example.com/hook?id=1&x=y",
		Steps: []jobs.Step{
			{Name: "prepare", Status: jobs.StepSucceeded, ExitCode: ptr[int32](0), StartedAt: &started, FinishedAt: ptr(started.Add(time.Second))},
			{Name: "build", Status: jobs.StepFailed, ExitCode: ptr[int32](137), Reason: "OOMKilled", Message: "killed", StartedAt: ptr(started.Add(2 * time.Second))},
			{Name: "upload", Status: jobs.StepWaiting},
		},
		CancelRequested: true,
		CreatedAt:       created,
		StartedAt:       &started,
		UpdatedAt:       started.Add(time.Minute),
		Observed:        map[string]string{"Job/x": "17", "Pod/x-abc": "23"},
	}
	in := j.Clone()
	f.create(t, j)

	trunc := func(t time.Time) time.Time { return t.Truncate(time.Millisecond) }
	want := in.Clone()
	want.Revision = 1
	want.CreatedAt = trunc(created)
	want.StartedAt = ptr(trunc(started))
	want.UpdatedAt = trunc(in.UpdatedAt)
	for i, s := range want.Steps {
		if s.StartedAt != nil {
			want.Steps[i].StartedAt = ptr(trunc(*s.StartedAt))
		}
		if s.FinishedAt != nil {
			want.Steps[i].FinishedAt = ptr(trunc(*s.FinishedAt))
		}
	}
	if !j.CreatedAt.Equal(want.CreatedAt) || j.Revision != 1 {
		t.Errorf("CreateJob left CreatedAt %v, Revision %d; want %v, 1", j.CreatedAt, j.Revision, want.CreatedAt)
	}
	got := f.get(t, j.ID)
	if d := diffJob(want, got); d != "" {
		t.Errorf("GetJob after CreateJob (-want +got):\n%s", d)
	}
	if d := diffJob(j, got); d != "" {
		t.Errorf("the job CreateJob normalised differs from the stored one (-created +got):\n%s", d)
	}
	for name, tm := range map[string]time.Time{"createdAt": got.CreatedAt, "updatedAt": got.UpdatedAt, "startedAt": *got.StartedAt, "steps[0].startedAt": *got.Steps[0].StartedAt} {
		if tm.Location() != time.UTC {
			t.Errorf("%s in %v, want UTC", name, tm.Location())
		}
		if tm.Nanosecond()%int(time.Millisecond) != 0 {
			t.Errorf("%s = %v keeps sub-millisecond precision", name, tm)
		}
	}
	// The stored job is a copy: changing what was returned changes nothing stored.
	got.Labels["team"] = "changed"
	got.Parameters["version"] = "changed"
	if again := f.get(t, j.ID); again.Labels["team"] != "infra" || again.Parameters["version"] != "24.03-LTS" {
		t.Errorf("GetJob returned a job sharing state with the store")
	}
}

func testCreateDefaults(t *testing.T, f *fixture) {
	before := time.Now().Add(-time.Second)
	j := &jobs.Job{ID: "job-" + randHex(8), Service: f.service, Task: "rpm"}
	f.create(t, j)
	after := time.Now().Add(time.Second)
	got := f.get(t, j.ID)
	if got.Status != jobs.StatusPending {
		t.Errorf("Status = %q, want %q", got.Status, jobs.StatusPending)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.After(after) {
		t.Errorf("CreatedAt = %v, want about now", got.CreatedAt)
	}
	if !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("UpdatedAt = %v, want CreatedAt %v", got.UpdatedAt, got.CreatedAt)
	}
	if got.Parameters != nil || got.Labels != nil || got.Steps != nil || got.Observed != nil {
		t.Errorf("nil maps/slices came back non-nil: %+v", got)
	}
	if d := diffJob(j, got); d != "" {
		t.Errorf("CreateJob's completed job differs from the stored one (-created +got):\n%s", d)
	}
}

func testCreateExisting(t *testing.T, f *fixture) {
	first := f.create(t, f.newJob("iso", f.base))
	dup := f.newJob("rpm", f.base.Add(time.Hour))
	dup.ID = first.ID
	dup.Message = "second"
	if err := f.s.CreateJob(f.ctx, dup); !errors.Is(err, jobs.ErrExists) {
		t.Fatalf("CreateJob of an existing id = %v, want ErrExists", err)
	}
	if d := diffJob(first, f.get(t, first.ID)); d != "" {
		t.Errorf("the existing job changed (-first +got):\n%s", d)
	}
	// The failed create leaves no trace in the lists.
	ids := listAll(t, f, store.Filter{Service: f.service, Task: "rpm"})
	if len(ids) != 0 {
		t.Errorf("ListJobs(task=rpm) = %v after a failed create, want none", ids)
	}
}

func testCreateInvalid(t *testing.T, f *fixture) {
	tests := map[string]func(j *jobs.Job){
		"no id":          func(j *jobs.Job) { j.ID = "" },
		"no service":     func(j *jobs.Job) { j.Service = "" },
		"no task":        func(j *jobs.Job) { j.Task = "" },
		"unknown status": func(j *jobs.Job) { j.Status = "exploded" },
		"id too long":    func(j *jobs.Job) { j.ID = strings.Repeat("x", 257) },
		"NaN parameter":  func(j *jobs.Job) { j.Parameters = map[string]any{"x": math.NaN()} },
	}
	for name, mod := range tests {
		t.Run(name, func(t *testing.T) {
			j := f.newJob("iso", f.base)
			mod(j)
			err := f.s.CreateJob(f.ctx, j)
			if !jobs.IsInvalid(err) {
				t.Fatalf("CreateJob = %v, want an *InvalidError", err)
			}
			if j.ID != "" {
				if _, err := f.s.GetJob(f.ctx, j.ID); !errors.Is(err, jobs.ErrNotFound) {
					t.Errorf("GetJob after an invalid create = %v, want ErrNotFound", err)
				}
			}
		})
	}
}

func testGetMissing(t *testing.T, f *fixture) {
	if _, err := f.s.GetJob(f.ctx, "job-missing-"+randHex(8)); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("GetJob of a missing id = %v, want ErrNotFound", err)
	}
}

func testBatchGet(t *testing.T, f *fixture) {
	a := f.create(t, f.newJob("iso", f.base))
	b := f.create(t, f.newJob("iso", f.base.Add(time.Minute)))
	c := f.create(t, f.newJob("rpm", f.base.Add(2*time.Minute)))
	missing := "job-missing-" + randHex(8)

	many := []string{c.ID}
	for i := range 600 { // more ids than one SQL statement binds, nearly all missing
		many = append(many, fmt.Sprintf("job-missing-%d-%s", i, randHex(4)))
	}
	many = append(many, a.ID)

	tests := map[string]struct {
		ids  []string
		want []*jobs.Job
	}{
		"none":                   {ids: nil, want: nil},
		"order of ids":           {ids: []string{c.ID, a.ID, b.ID}, want: []*jobs.Job{c, a, b}},
		"missing skipped":        {ids: []string{missing, b.ID, missing}, want: []*jobs.Job{b}},
		"only missing":           {ids: []string{missing}, want: nil},
		"repeated ids repeat":    {ids: []string{a.ID, b.ID, a.ID}, want: []*jobs.Job{a, b, a}},
		"many ids, few existing": {ids: many, want: []*jobs.Job{c, a}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := f.s.BatchGet(f.ctx, tc.ids)
			if err != nil {
				t.Fatalf("BatchGet: %v", err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("BatchGet (-want +got):\n%s", d)
			}
		})
	}
}

var errBoom = errors.New("boom")

func testUpdate(t *testing.T, f *fixture) {
	tests := map[string]struct {
		missing bool
		fn      func(j *jobs.Job) (bool, error)
		// wantErr checks the error; nil means success is expected.
		wantErr     func(error) bool
		wantChanged bool
		want        func(j *jobs.Job) // applied to the stored job to get the expected one
	}{
		"no change": {
			fn:   func(j *jobs.Job) (bool, error) { return false, nil },
			want: func(j *jobs.Job) {},
		},
		"change": {
			fn: func(j *jobs.Job) (bool, error) {
				j.Status = jobs.StatusRunning
				j.StartedAt = ptr(j.CreatedAt.Add(time.Second))
				j.Steps = []jobs.Step{{Name: "build", Status: jobs.StepRunning}}
				j.Observed = map[string]string{"Pod/p": "5"}
				return true, nil
			},
			wantChanged: true,
			want: func(j *jobs.Job) {
				j.Status = jobs.StatusRunning
				j.StartedAt = ptr(j.CreatedAt.Add(time.Second))
				j.Steps = []jobs.Step{{Name: "build", Status: jobs.StepRunning}}
				j.Observed = map[string]string{"Pod/p": "5"}
				j.Revision = 2
			},
		},
		"fn error": {
			fn:      func(j *jobs.Job) (bool, error) { j.Message = "half done"; return true, errBoom },
			wantErr: func(err error) bool { return errors.Is(err, errBoom) },
		},
		"missing job": {
			missing: true,
			fn:      func(j *jobs.Job) (bool, error) { return true, nil },
			wantErr: func(err error) bool { return errors.Is(err, jobs.ErrNotFound) },
		},
		"id is immutable": {
			fn:      func(j *jobs.Job) (bool, error) { j.ID += "x"; return true, nil },
			wantErr: jobs.IsInvalid,
		},
		"service is immutable": {
			fn:      func(j *jobs.Job) (bool, error) { j.Service += "x"; return true, nil },
			wantErr: jobs.IsInvalid,
		},
		"task is immutable": {
			fn:      func(j *jobs.Job) (bool, error) { j.Task += "x"; return true, nil },
			wantErr: jobs.IsInvalid,
		},
		"createdAt is immutable": {
			fn:      func(j *jobs.Job) (bool, error) { j.CreatedAt = j.CreatedAt.Add(time.Hour); return true, nil },
			wantErr: jobs.IsInvalid,
		},
		"unknown status": {
			fn:      func(j *jobs.Job) (bool, error) { j.Status = "exploded"; return true, nil },
			wantErr: jobs.IsInvalid,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			orig := f.create(t, f.newJob("iso", f.base))
			id := orig.ID
			if tc.missing {
				id = "job-missing-" + randHex(8)
			}
			before := time.Now().Add(-time.Second)
			got, changed, err := f.s.UpdateJob(f.ctx, id, tc.fn)
			stored := f.get(t, orig.ID)
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("UpdateJob = %v, want a matching error", err)
				}
				if d := diffJob(orig, stored); d != "" {
					t.Errorf("a failed update changed the job (-orig +stored):\n%s", d)
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdateJob: %v", err)
			}
			if changed != tc.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			if d := diffJob(stored, got); d != "" {
				t.Errorf("UpdateJob returned something else than it stored (-stored +returned):\n%s", d)
			}
			want := orig.Clone()
			tc.want(want)
			if changed {
				// The store stamps UpdatedAt with the time of the write.
				if stored.UpdatedAt.Before(before) || stored.UpdatedAt.After(time.Now().Add(time.Second)) {
					t.Errorf("UpdatedAt = %v, want the time of the update", stored.UpdatedAt)
				}
				want.UpdatedAt = stored.UpdatedAt
			}
			if d := diffJob(want, stored); d != "" {
				t.Errorf("stored job (-want +got):\n%s", d)
			}
		})
	}
}

func testUpdateConcurrent(t *testing.T, f *fixture) {
	const writers, rounds = 20, 5
	j := f.create(t, f.newJob("iso", f.base))
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		revisions []int64
		errs      = make(chan error, writers*rounds)
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				got, changed, err := f.s.UpdateJob(f.ctx, j.ID, func(j *jobs.Job) (bool, error) {
					n, _ := j.Parameters["count"].(float64)
					j.Parameters["count"] = n + 1
					if j.Observed == nil {
						j.Observed = map[string]string{}
					}
					j.Observed[fmt.Sprintf("Pod/w%02d", w)] = fmt.Sprint(r + 1)
					return true, nil
				})
				if err != nil || !changed {
					errs <- fmt.Errorf("writer %d round %d: changed %v, %v", w, r, changed, err)
					return
				}
				mu.Lock()
				revisions = append(revisions, got.Revision)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := f.get(t, j.ID)
	if n := got.Parameters["count"]; n != float64(writers*rounds) {
		t.Errorf("count = %v, want %d: an update was lost", n, writers*rounds)
	}
	if got.Revision != 1+writers*rounds {
		t.Errorf("Revision = %d, want %d", got.Revision, 1+writers*rounds)
	}
	for w := range writers {
		if v := got.Observed[fmt.Sprintf("Pod/w%02d", w)]; v != fmt.Sprint(rounds) {
			t.Errorf("Observed[Pod/w%02d] = %q, want %q", w, v, fmt.Sprint(rounds))
		}
	}
	slices.Sort(revisions)
	for i, r := range revisions {
		if r != int64(i+2) {
			t.Errorf("the revisions returned are %v, want each of 2..%d once", revisions, 1+writers*rounds)
			break
		}
	}
}

func testRevisionOnlyOnChange(t *testing.T, f *fixture) {
	j := f.create(t, f.newJob("iso", f.base))
	calls := 0
	for range 3 {
		got, changed, err := f.s.UpdateJob(f.ctx, j.ID, func(j *jobs.Job) (bool, error) {
			calls++
			j.Message = "not stored: fn reports no change"
			return false, nil
		})
		if err != nil || changed || got.Revision != 1 || got.Message != "" {
			t.Fatalf("UpdateJob without change = rev %d, message %q, changed %v, %v; want rev 1, unchanged",
				got.Revision, got.Message, changed, err)
		}
	}
	if calls != 3 {
		t.Errorf("fn called %d times for 3 uncontended updates, want 3", calls)
	}
	got := f.update(t, j.ID, func(j *jobs.Job) { j.Message = "now" })
	if got.Revision != 2 {
		t.Errorf("Revision after one change = %d, want 2", got.Revision)
	}
	if stored := f.get(t, j.ID); stored.Revision != 2 || stored.Message != "now" {
		t.Errorf("stored = rev %d, message %q; want 2, now", stored.Revision, stored.Message)
	}
}

// activeIDs walks every page of ListUnsettled with the given page size and returns, in order, the
// ids among mine. It checks the global order (oldest first, then id) and that no job repeats.
func activeIDs(t *testing.T, f *fixture, limit int, mine map[string]bool) []string {
	t.Helper()
	var (
		out    []string
		seen   = map[string]bool{}
		cursor string
		last   *jobs.Job
	)
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("ListUnsettled did not end")
		}
		js, next, err := f.s.ListUnsettled(f.ctx, cursor, limit)
		if err != nil {
			t.Fatalf("ListUnsettled: %v", err)
		}
		if len(js) > limit {
			t.Fatalf("ListUnsettled returned %d jobs for limit %d", len(js), limit)
		}
		for _, j := range js {
			if !j.Unsettled() {
				t.Errorf("ListUnsettled returned %s, settled in status %s", j.ID, j.Status)
			}
			if seen[j.ID] {
				t.Errorf("ListUnsettled returned %s twice", j.ID)
			}
			seen[j.ID] = true
			if last != nil && (j.CreatedAt.Before(last.CreatedAt) || j.CreatedAt.Equal(last.CreatedAt) && j.ID < last.ID) {
				t.Errorf("ListUnsettled returned %s (%v) after %s (%v): not oldest first", j.ID, j.CreatedAt, last.ID, last.CreatedAt)
			}
			last = j
			if mine[j.ID] {
				out = append(out, j.ID)
			}
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// testListUnsettled: the resync's list holds the jobs that have not ended, those that ended
// with steps not settled yet, until they are, and those whose logs are not archived yet.
func testListUnsettled(t *testing.T, f *fixture) {
	mk := func(status jobs.Status, created time.Time) *jobs.Job {
		j := f.newJob("iso", created)
		j.Status, j.LogsArchived = status, true
		return f.create(t, j)
	}
	pending := mk(jobs.StatusPending, f.base.Add(time.Minute))
	running := mk(jobs.StatusRunning, f.base.Add(2*time.Minute))
	done := mk(jobs.StatusSucceeded, f.base.Add(3*time.Minute))
	tie1 := mk(jobs.StatusRunning, f.base.Add(4*time.Minute))
	tie2 := mk(jobs.StatusPending, f.base.Add(4*time.Minute))
	mine := map[string]bool{pending.ID: true, running.ID: true, done.ID: true, tie1.ID: true, tie2.ID: true}
	ties := []string{tie1.ID, tie2.ID}
	slices.Sort(ties)

	want := append([]string{pending.ID, running.ID}, ties...)
	for _, limit := range []int{1, 2, 3, 1000} {
		if got := activeIDs(t, f, limit, mine); !slices.Equal(got, want) {
			t.Errorf("ListUnsettled(limit %d) = %v, want %v", limit, got, want)
		}
	}

	f.update(t, running.ID, func(j *jobs.Job) { j.Status = jobs.StatusFailed })
	f.update(t, pending.ID, func(j *jobs.Job) { j.Status = jobs.StatusRunning })
	f.update(t, tie1.ID, func(j *jobs.Job) { j.Status = jobs.StatusCancelled })
	f.update(t, tie2.ID, func(j *jobs.Job) { j.Status = jobs.StatusLost })
	want = []string{pending.ID}
	if got := activeIDs(t, f, 2, mine); !slices.Equal(got, want) {
		t.Errorf("ListUnsettled after terminal updates = %v, want %v", got, want)
	}

	// Ended, but a step still shows running: listed until the step is settled.
	f.update(t, pending.ID, func(j *jobs.Job) {
		j.Status = jobs.StatusSucceeded
		j.Steps = []jobs.Step{{Name: "build", Status: jobs.StepSucceeded}, {Name: "upload", Status: jobs.StepRunning}}
	})
	f.update(t, done.ID, func(j *jobs.Job) { j.Steps = []jobs.Step{{Name: "build", Status: jobs.StepWaiting}} })
	want = []string{pending.ID, done.ID}
	if got := activeIDs(t, f, 1, mine); !slices.Equal(got, want) {
		t.Errorf("ListUnsettled with ended jobs' steps unsettled = %v, want %v", got, want)
	}
	f.update(t, pending.ID, func(j *jobs.Job) { j.Steps[1].Status = jobs.StepSucceeded })
	f.update(t, done.ID, func(j *jobs.Job) { j.Steps[0].Reason = jobs.StepReasonNotStarted })
	if got := activeIDs(t, f, 2, mine); len(got) != 0 {
		t.Errorf("ListUnsettled after all ended and settled = %v, want none", got)
	}

	// Ended and settled, but its logs are not archived (yet, or again): listed until they are.
	f.update(t, done.ID, func(j *jobs.Job) { j.LogsArchived = false })
	if got := activeIDs(t, f, 2, mine); !slices.Equal(got, []string{done.ID}) {
		t.Errorf("ListUnsettled with a job's logs not archived = %v, want [%s]", got, done.ID)
	}
	f.update(t, done.ID, func(j *jobs.Job) { j.LogsArchived = true })
	if got := activeIDs(t, f, 2, mine); len(got) != 0 {
		t.Errorf("ListUnsettled once its logs are archived = %v, want none", got)
	}
}

// listAll walks every page of ListJobs for flt and returns the ids in order, checking that no
// page is larger than its limit and no job repeats.
func listAll(t *testing.T, f *fixture, flt store.Filter) []string {
	t.Helper()
	limit := flt.Limit
	if limit == 0 {
		limit = 100
	}
	var ids []string
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatalf("ListJobs(%+v) did not end", flt)
		}
		p, err := f.s.ListJobs(f.ctx, flt)
		if err != nil {
			t.Fatalf("ListJobs(%+v): %v", flt, err)
		}
		if len(p.Jobs) > limit {
			t.Fatalf("ListJobs returned %d jobs for limit %d", len(p.Jobs), limit)
		}
		for _, j := range p.Jobs {
			if seen[j.ID] {
				t.Fatalf("ListJobs(%+v) returned %s twice", flt, j.ID)
			}
			seen[j.ID] = true
			ids = append(ids, j.ID)
		}
		if p.Next == "" {
			return ids
		}
		flt.Cursor = p.Next
	}
}

func testListJobs(t *testing.T, f *fixture) {
	type spec struct {
		task, domain string
		status       jobs.Status
		at           time.Duration // after f.base
	}
	// Spread over several UTC days (day-bucketed stores must walk buckets), with two jobs at
	// the same instant (ties are ordered by id, descending).
	specs := []spec{
		{"iso", "d1", jobs.StatusSucceeded, 0},
		{"iso", "d2", jobs.StatusFailed, 5 * time.Hour},
		{"rpm", "d1", jobs.StatusRunning, 10 * time.Hour},
		{"rpm", "d2", jobs.StatusPending, 15 * time.Hour},
		{"iso", "d1", jobs.StatusRunning, 20 * time.Hour},
		{"srpm", "d1", jobs.StatusSucceeded, 25 * time.Hour},
		{"iso", "d2", jobs.StatusSucceeded, 30 * time.Hour},
		{"iso", "d2", jobs.StatusSucceeded, 30 * time.Hour},
		{"rpm", "d1", jobs.StatusCancelled, 35 * time.Hour},
		{"iso", "d1", jobs.StatusLost, 40 * time.Hour},
		{"rpm", "d2", jobs.StatusSucceeded, 45*time.Hour + 1500*time.Millisecond},
		{"iso", "d1", jobs.StatusPending, 50*time.Hour + time.Millisecond},
	}
	all := make([]*jobs.Job, 0, len(specs))
	byID := map[string]*jobs.Job{}
	for _, s := range specs {
		j := f.newJob(s.task, f.base.Add(s.at))
		j.Domain, j.Status = s.domain, s.status
		j = f.create(t, j)
		all = append(all, j)
		byID[j.ID] = j
	}
	other := &fixture{s: f.s, ctx: f.ctx, service: f.service + "-other", base: f.base}
	otherJob := other.create(t, other.newJob("iso", f.base.Add(20*time.Hour)))

	sort.Slice(all, func(a, b int) bool {
		if !all[a].CreatedAt.Equal(all[b].CreatedAt) {
			return all[a].CreatedAt.After(all[b].CreatedAt)
		}
		return all[a].ID > all[b].ID
	})
	at := func(d time.Duration) time.Time { return f.base.Add(d) }

	tests := map[string]struct {
		filter store.Filter
		keep   func(j *jobs.Job) bool
	}{
		"all":                  {store.Filter{}, func(*jobs.Job) bool { return true }},
		"task":                 {store.Filter{Task: "iso"}, func(j *jobs.Job) bool { return j.Task == "iso" }},
		"domain":               {store.Filter{Domain: "d2"}, func(j *jobs.Job) bool { return j.Domain == "d2" }},
		"status":               {store.Filter{Status: jobs.StatusSucceeded}, func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded }},
		"task and domain":      {store.Filter{Task: "rpm", Domain: "d1"}, func(j *jobs.Job) bool { return j.Task == "rpm" && j.Domain == "d1" }},
		"task, domain, status": {store.Filter{Task: "iso", Domain: "d2", Status: jobs.StatusSucceeded}, func(j *jobs.Job) bool { return j.Task == "iso" && j.Domain == "d2" && j.Status == jobs.StatusSucceeded }},
		"unknown task":         {store.Filter{Task: "nothing"}, func(*jobs.Job) bool { return false }},
		"since is inclusive":   {store.Filter{Since: at(10 * time.Hour)}, func(j *jobs.Job) bool { return !j.CreatedAt.Before(at(10 * time.Hour)) }},
		"until is exclusive":   {store.Filter{Until: at(30 * time.Hour)}, func(j *jobs.Job) bool { return j.CreatedAt.Before(at(30 * time.Hour)) }},
		"since and until": {store.Filter{Since: at(5 * time.Hour), Until: at(40 * time.Hour)}, func(j *jobs.Job) bool {
			return !j.CreatedAt.Before(at(5*time.Hour)) && j.CreatedAt.Before(at(40*time.Hour))
		}},
		"millisecond bounds":     {store.Filter{Since: at(45*time.Hour + 1500*time.Millisecond), Until: at(50*time.Hour + time.Millisecond)}, func(j *jobs.Job) bool { return j.CreatedAt.Equal(at(45*time.Hour + 1500*time.Millisecond)) }},
		"sub-millisecond since":  {store.Filter{Since: at(45*time.Hour + 1500*time.Millisecond + 500*time.Microsecond)}, func(j *jobs.Job) bool { return j.CreatedAt.After(at(45*time.Hour + 1500*time.Millisecond)) }},
		"sub-millisecond until":  {store.Filter{Until: at(45*time.Hour + 1500*time.Millisecond + 500*time.Microsecond)}, func(j *jobs.Job) bool { return !j.CreatedAt.After(at(45*time.Hour + 1500*time.Millisecond)) }},
		"empty window":           {store.Filter{Since: at(20 * time.Hour), Until: at(20 * time.Hour)}, func(*jobs.Job) bool { return false }},
		"window before all jobs": {store.Filter{Since: at(-48 * time.Hour), Until: at(-time.Hour)}, func(*jobs.Job) bool { return false }},
		"since, task and status": {store.Filter{Since: at(12 * time.Hour), Task: "iso", Status: jobs.StatusSucceeded}, func(j *jobs.Job) bool {
			return !j.CreatedAt.Before(at(12*time.Hour)) && j.Task == "iso" && j.Status == jobs.StatusSucceeded
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var want []string
			for _, j := range all {
				if tc.keep(j) {
					want = append(want, j.ID)
				}
			}
			for _, limit := range []int{0, 1, 2, 5} {
				flt := tc.filter
				flt.Service, flt.Limit = f.service, limit
				if got := listAll(t, f, flt); !slices.Equal(got, want) {
					t.Errorf("ListJobs(limit %d) = %v, want %v", limit, got, want)
				}
			}
		})
	}

	t.Run("jobs are complete", func(t *testing.T) {
		p, err := f.s.ListJobs(f.ctx, store.Filter{Service: f.service, Task: "srpm"})
		if err != nil || len(p.Jobs) != 1 {
			t.Fatalf("ListJobs(task=srpm) = %d jobs, %v; want 1", len(p.Jobs), err)
		}
		if d := diffJob(byID[p.Jobs[0].ID], p.Jobs[0]); d != "" {
			t.Errorf("listed job differs from the created one (-created +listed):\n%s", d)
		}
	})
	t.Run("other service", func(t *testing.T) {
		got := listAll(t, f, store.Filter{Service: other.service})
		if !slices.Equal(got, []string{otherJob.ID}) {
			t.Errorf("ListJobs(other service) = %v, want [%s]", got, otherJob.ID)
		}
	})
	t.Run("unknown service", func(t *testing.T) {
		if got := listAll(t, f, store.Filter{Service: f.service + "-nobody"}); len(got) != 0 {
			t.Errorf("ListJobs(unknown service) = %v, want none", got)
		}
	})
}

func testListJobsAfterUpdate(t *testing.T, f *fixture) {
	j := f.create(t, f.newJob("iso", f.base))
	f.update(t, j.ID, func(j *jobs.Job) { j.Status = jobs.StatusRunning; j.Domain = "moved" })
	tests := map[string]struct {
		filter store.Filter
		want   []string
	}{
		"new status":  {store.Filter{Status: jobs.StatusRunning}, []string{j.ID}},
		"old status":  {store.Filter{Status: jobs.StatusPending}, nil},
		"new domain":  {store.Filter{Domain: "moved", Task: "iso"}, []string{j.ID}},
		"old domain":  {store.Filter{Domain: "default"}, nil},
		"task+status": {store.Filter{Task: "iso", Status: jobs.StatusRunning}, []string{j.ID}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			flt := tc.filter
			flt.Service = f.service
			if got := listAll(t, f, flt); !slices.Equal(got, tc.want) {
				t.Errorf("ListJobs = %v, want %v", got, tc.want)
			}
		})
	}
}

func testListJobsInvalid(t *testing.T, f *fixture) {
	tests := map[string]store.Filter{
		"no service":     {},
		"negative limit": {Service: f.service, Limit: -1},
		"limit too big":  {Service: f.service, Limit: 1001},
		"unknown status": {Service: f.service, Status: "exploded"},
		"bad cursor":     {Service: f.service, Cursor: "not a cursor!"},
	}
	for name, flt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := f.s.ListJobs(f.ctx, flt); !jobs.IsInvalid(err) {
				t.Errorf("ListJobs(%+v) = %v, want an *InvalidError", flt, err)
			}
		})
	}
}

func testIdempotencyKey(t *testing.T, f *fixture) {
	key := "key-" + randHex(6)
	claims := []struct {
		name, service, key, job, want string
	}{
		{"first claim wins", f.service, key, "job-1", "job-1"},
		{"second claim gets the first", f.service, key, "job-2", "job-1"},
		{"repeat of the first", f.service, key, "job-1", "job-1"},
		{"same key, other service", f.service + "-other", key, "job-3", "job-3"},
		{"other key", f.service, key + "-other", "job-4", "job-4"},
		{"unicode key", f.service, "ключ-🔑-" + key, "job-5", "job-5"},
		{"unicode key again", f.service, "ключ-🔑-" + key, "job-6", "job-5"},
	}
	// Ordered steps, each depending on the previous ones: a list, not a map.
	for _, c := range claims {
		got, err := f.s.ClaimIdempotencyKey(f.ctx, c.service, c.key, c.job, time.Hour)
		if err != nil || got != c.want {
			t.Errorf("%s: ClaimIdempotencyKey(%s, %s, %s) = %q, %v; want %q", c.name, c.service, c.key, c.job, got, err, c.want)
		}
	}
}

func testIdempotencyKeyExpiry(t *testing.T, f *fixture) {
	key := "key-" + randHex(6)
	// The shortest TTL a store keeps may be coarser (Cassandra: one second); the claim lasts
	// at least ttl and then ends.
	got, err := f.s.ClaimIdempotencyKey(f.ctx, f.service, key, "job-1", time.Millisecond)
	if err != nil || got != "job-1" {
		t.Fatalf("first claim = %q, %v; want job-1", got, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := f.s.ClaimIdempotencyKey(f.ctx, f.service, key, "job-2", time.Hour)
		if err != nil {
			t.Fatalf("ClaimIdempotencyKey: %v", err)
		}
		if got == "job-2" {
			break
		}
		if got != "job-1" {
			t.Fatalf("ClaimIdempotencyKey = %q, want job-1 or, once expired, job-2", got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a key claimed with a 1ms TTL still held after 30s")
		}
		select {
		case <-tick.C:
		case <-f.ctx.Done():
			t.Fatal(f.ctx.Err())
		}
	}
	// The new claim holds in turn.
	if got, err := f.s.ClaimIdempotencyKey(f.ctx, f.service, key, "job-3", time.Hour); err != nil || got != "job-2" {
		t.Errorf("claim after re-claim = %q, %v; want job-2", got, err)
	}
}

func testIdempotencyKeyInvalid(t *testing.T, f *fixture) {
	tests := map[string]struct {
		service, key, job string
		ttl               time.Duration
	}{
		"zero ttl":     {f.service, "k", "job-1", 0},
		"negative ttl": {f.service, "k", "job-1", -time.Second},
		"no key":       {f.service, "", "job-1", time.Hour},
		"no service":   {"", "k", "job-1", time.Hour},
		"no job":       {f.service, "k", "", time.Hour},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := f.s.ClaimIdempotencyKey(f.ctx, tc.service, tc.key, tc.job, tc.ttl); !jobs.IsInvalid(err) {
				t.Errorf("ClaimIdempotencyKey = %v, want an *InvalidError", err)
			}
		})
	}
}

func testUnicodeAndLongValues(t *testing.T, f *fixture) {
	long := strings.Repeat("日本語テキスト·ελληνικά·עברית·🚀🔥·", 1200) // ~64 KiB
	tests := map[string]func(j *jobs.Job){
		"unicode scalars": func(j *jobs.Job) {
			j.Domain = "构建-домен-🚀"
			j.Reason = `quotes " ' ` + "` backslash \\ tab \t newline \n"
			j.Message = "RTL: مرحبا — combining: é — ZWJ: 👩‍👩‍👧"
			j.Cluster = "集群-1"
		},
		"long message": func(j *jobs.Job) { j.Message = long },
		"unicode maps": func(j *jobs.Job) {
			j.Labels = map[string]string{"ключ": "值 🎉", "emoji🔑": string([]rune(long)[:1000]), "": "empty key"}
			j.Parameters = map[string]any{"名前": "値", "nul": "a\x00b", "html": "<script>&amp;</script>", "long": long}
			j.Observed = map[string]string{"Pod/ünïcødé": "42"}
		},
		"unicode steps": func(j *jobs.Job) {
			j.Steps = []jobs.Step{{Name: "étape-1", Status: jobs.StepFailed, Message: long, ExitCode: ptr[int32](-1)}}
		},
		"unicode task": func(j *jobs.Job) { j.Task = "задача-📦" },
	}
	for name, mod := range tests {
		t.Run(name, func(t *testing.T) {
			j := f.newJob("iso", f.base.Add(time.Hour))
			mod(j)
			want := j.Clone()
			f.create(t, j)
			want.Revision = 1
			got := f.get(t, j.ID)
			if d := diffJob(want, got); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
			listed := listAll(t, f, store.Filter{Service: f.service, Task: j.Task, Domain: j.Domain})
			if !slices.Contains(listed, j.ID) {
				t.Errorf("ListJobs(task %q, domain %q) = %v, missing %s", j.Task, j.Domain, listed, j.ID)
			}
		})
	}
}

func testParametersRoundTrip(t *testing.T, f *fixture) {
	tests := map[string]struct {
		in, want map[string]any
	}{
		"nil stays nil":     {nil, nil},
		"empty stays empty": {map[string]any{}, map[string]any{}},
		"strings and bools": {
			map[string]any{"s": "x", "t": true, "f": false, "empty": ""},
			map[string]any{"s": "x", "t": true, "f": false, "empty": ""},
		},
		"numbers become float64": {
			map[string]any{"int": 42, "int64": int64(1) << 40, "neg": -7, "float": 1.5, "uint8": uint8(255), "zero": 0},
			map[string]any{"int": 42.0, "int64": float64(int64(1) << 40), "neg": -7.0, "float": 1.5, "uint8": 255.0, "zero": 0.0},
		},
		"null value": {map[string]any{"n": nil}, map[string]any{"n": nil}},
		"nested objects": {
			map[string]any{"a": map[string]any{"b": map[string]any{"c": 1, "d": "e"}}},
			map[string]any{"a": map[string]any{"b": map[string]any{"c": 1.0, "d": "e"}}},
		},
		"arrays": {
			map[string]any{"mixed": []any{1, "two", true, nil, []any{3}}, "strings": []string{"a", "b"}, "empty": []any{}},
			map[string]any{"mixed": []any{1.0, "two", true, nil, []any{3.0}}, "strings": []any{"a", "b"}, "empty": []any{}},
		},
		"array of objects": {
			map[string]any{"repos": []any{map[string]any{"name": "everything", "priority": 1}, map[string]any{"name": "epol"}}},
			map[string]any{"repos": []any{map[string]any{"name": "everything", "priority": 1.0}, map[string]any{"name": "epol"}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			j := f.newJob("iso", f.base)
			j.Parameters = tc.in
			f.create(t, j)
			got := f.get(t, j.ID).Parameters
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("parameters (-want +got):\n%s", d)
			}
			if (tc.want == nil) != (got == nil) {
				t.Errorf("parameters = %#v, want %#v (nil and empty differ)", got, tc.want)
			}
		})
	}
}

func testObservedRoundTrip(t *testing.T, f *fixture) {
	tests := map[string]map[string]string{
		"nil":   nil,
		"empty": {},
		"several": {
			"Job/omni-abc":       "1234",
			"Pod/omni-abc-x7k2q": "1240",
			"Pod/other":          "99999999999999999999",
		},
	}
	for name, observed := range tests {
		t.Run(name, func(t *testing.T) {
			j := f.newJob("iso", f.base)
			j.Observed = observed
			f.create(t, j)
			got := f.get(t, j.ID).Observed
			if d := cmp.Diff(observed, got); d != "" || (observed == nil) != (got == nil) {
				t.Errorf("Observed after create = %#v, want %#v", got, observed)
			}
			upd := f.update(t, j.ID, func(j *jobs.Job) {
				if j.Observed == nil {
					j.Observed = map[string]string{}
				}
				j.Observed["Pod/new"] = "7"
			})
			want := map[string]string{"Pod/new": "7"}
			for k, v := range observed {
				want[k] = v
			}
			if d := cmp.Diff(want, f.get(t, j.ID).Observed); d != "" {
				t.Errorf("Observed after update (-want +got):\n%s", d)
			}
			if d := cmp.Diff(want, upd.Observed); d != "" {
				t.Errorf("Observed returned by UpdateJob (-want +got):\n%s", d)
			}
		})
	}
}

func testPing(t *testing.T, f *fixture) {
	if err := f.s.Ping(f.ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
