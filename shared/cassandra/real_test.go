package cassandra_test

// Tests of what only a real Cassandra shows: lightweight transactions under racing writers,
// expiry by table TTL, bounded partitions and consistency levels taken from the store URL.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kelseyhightower/envconfig"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra/schema"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// openStore opens a store on cfg, closed when t ends. Each call is its own session, as each
// replica of a function has its own.
func openStore(t testing.TB, cfg cassandra.Config) *cassandra.Store {
	t.Helper()
	s, err := cassandra.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open %s: %v", cfg.Keyspace, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newJob(service, task string, created time.Time) *jobs.Job {
	return &jobs.Job{
		ID: "job-" + randHex(8), Service: service, Task: task, Domain: "default", Arch: "x86_64",
		Cluster: "x86-a", Namespace: "omni", Status: jobs.StatusPending,
		Parameters: map[string]any{"version": "24.03"},
		Steps:      []jobs.Step{{Name: "fetch", Status: jobs.StepWaiting}, {Name: "build", Status: jobs.StepWaiting}},
		CreatedAt:  created, UpdatedAt: created,
	}
}

// snapshot is what one observation of a job's pod (resourceVersion RV) says about the job.
type snapshot struct {
	RV     int
	Status jobs.Status
	Steps  []jobs.StepStatus
}

// snapshots is a job's life as its pod reports it: 30 observations, the last one terminal.
func snapshots() []snapshot {
	var out []snapshot
	for rv := 1; rv <= 30; rv++ {
		s := snapshot{RV: rv, Status: jobs.StatusRunning, Steps: []jobs.StepStatus{jobs.StepRunning, jobs.StepWaiting}}
		if rv > 15 {
			s.Steps = []jobs.StepStatus{jobs.StepSucceeded, jobs.StepRunning}
		}
		if rv == 30 {
			s.Status, s.Steps = jobs.StatusSucceeded, []jobs.StepStatus{jobs.StepSucceeded, jobs.StepSucceeded}
		}
		out = append(out, s)
	}
	return out
}

const podKey = "Pod/p"

// apply is a status-sync handler's pure core in small: a snapshot applies only if it is newer
// than what the job has seen and the job has not ended (terminal states are sticky).
func apply(s snapshot) func(*jobs.Job) (bool, error) {
	return func(j *jobs.Job) (bool, error) {
		seen, _ := strconv.Atoi(j.Observed[podKey])
		if s.RV <= seen || j.Status.Terminal() {
			return false, nil
		}
		if j.Observed == nil {
			j.Observed = map[string]string{}
		}
		j.Observed[podKey] = strconv.Itoa(s.RV)
		j.Status = s.Status
		for i, st := range s.Steps {
			j.Steps[i].Status = st
		}
		return true, nil
	}
}

// cancel is the API's cancel: a job that has not ended ends cancelled.
func cancel(j *jobs.Job) (bool, error) {
	if j.Status.Terminal() {
		return false, nil
	}
	j.Status, j.CancelRequested, j.Reason = jobs.StatusCancelled, true, "Cancelled"
	return true, nil
}

// TestRacingWritersConverge feeds the same job's observations to two stores (two status-sync
// replicas, each with its own session), one in order and one shuffled, while two cancels race
// them. Every lightweight transaction must count: the job ends as one writer applying the same
// changes in turn would leave it, its revision counts exactly the changes the writers reported,
// and at most one cancel wins.
func TestRacingWritersConverge(t *testing.T) {
	cfg := cassandratest.Shared(t)
	a, b := openStore(t, cfg), openStore(t, cfg)
	ctx := t.Context()
	created := time.Now().UTC().Truncate(time.Millisecond)
	j := newJob("svc-"+randHex(4), "iso", created)
	if err := a.CreateJob(ctx, j); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	snaps := snapshots()
	shuffled := slices.Clone(snaps[:len(snaps)-1])
	mrand.New(mrand.NewPCG(1, 2)).Shuffle(len(shuffled), func(x, y int) { shuffled[x], shuffled[y] = shuffled[y], shuffled[x] })
	shuffled = append(shuffled, snaps[len(snaps)-1])

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		changes   int
		cancelled []string
		errs      []error
		halfway   = make(chan struct{})
	)
	record := func(who string, changed bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", who, err))
		}
		if changed {
			changes++
			if strings.HasPrefix(who, "cancel") {
				cancelled = append(cancelled, who)
			}
		}
	}
	feed := func(name string, s *cassandra.Store, order []snapshot) {
		defer wg.Done()
		for i, snap := range order {
			_, changed, err := s.UpdateJob(ctx, j.ID, apply(snap))
			record(fmt.Sprintf("%s rv %d", name, snap.RV), changed, err)
			if name == "sync-a" && i == len(order)/3 {
				close(halfway)
			}
		}
	}
	wg.Add(4)
	go feed("sync-a", a, snaps)
	go feed("sync-b", b, shuffled)
	for i, s := range []*cassandra.Store{a, b} {
		go func() {
			defer wg.Done()
			<-halfway
			_, changed, err := s.UpdateJob(ctx, j.ID, cancel)
			record(fmt.Sprintf("cancel-%d", i), changed, err)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("writers failed: %v", err)
	}

	got, err := a.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	if got.Revision != int64(1+changes) {
		t.Errorf("revision %d, writers reported %d changes: want revision %d (no change lost or counted twice)",
			got.Revision, changes, 1+changes)
	}
	// What one writer would have stored: the newest observation it applied, then the cancel if
	// one won.
	rv, _ := strconv.Atoi(got.Observed[podKey])
	want := j.Clone()
	if _, err := apply(snaps[rv-1])(want); err != nil || rv < 1 {
		t.Fatalf("stored observation rv %q: not one of the snapshots", got.Observed[podKey])
	}
	switch len(cancelled) {
	case 0:
		if rv != 30 {
			t.Errorf("no cancel won, yet the job stopped at observation %d of 30", rv)
		}
	case 1:
		_, _ = cancel(want)
	default:
		t.Errorf("%d cancels won (%v); want at most one", len(cancelled), cancelled)
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(jobs.Job{}, "UpdatedAt", "Revision")); diff != "" {
		t.Errorf("job after the race (-one writer +racing writers):\n%s", diff)
	}
	t.Logf("%d changes stored; %d cancel(s) won; last observation %d", changes, len(cancelled), rv)
}

// TestIdempotentSubmitsRace runs eight submissions with one Idempotency-Key at once, as submit
// does them (claim the key, replay the first job if it exists, else create under the claimed
// id), over two stores: exactly one job is created and every submission answers with it.
func TestIdempotentSubmitsRace(t *testing.T) {
	cfg := cassandratest.Shared(t)
	stores := []*cassandra.Store{openStore(t, cfg), openStore(t, cfg)}
	ctx := t.Context()
	service, key := "svc-"+randHex(4), "key-"+randHex(4)
	const submits = 8

	submit := func(s *cassandra.Store) (id string, created bool, err error) {
		j := newJob(service, "iso", time.Now().UTC())
		first, err := s.ClaimIdempotencyKey(ctx, service, key, j.ID, time.Hour)
		if err != nil {
			return "", false, fmt.Errorf("claim: %w", err)
		}
		if first != j.ID {
			if got, err := s.GetJob(ctx, first); err == nil {
				return got.ID, false, nil
			} else if !errors.Is(err, jobs.ErrNotFound) {
				return "", false, err
			}
			j.ID = first // the first claimant has not stored its job (yet): race it
		}
		switch err := s.CreateJob(ctx, j); {
		case errors.Is(err, jobs.ErrExists):
			got, err := s.GetJob(ctx, j.ID)
			if err != nil {
				return "", false, fmt.Errorf("replay after ErrExists: %w", err)
			}
			return got.ID, false, nil
		case err != nil:
			return "", false, fmt.Errorf("create: %w", err)
		}
		return j.ID, true, nil
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		creates int
		errs    []error
		start   = make(chan struct{})
	)
	for i := range submits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id, created, err := submit(stores[i%2])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[id]++
			if created {
				creates++
			}
		}()
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("submissions failed: %v", err)
	}
	if len(ids) != 1 || creates != 1 {
		t.Errorf("%d submissions with one key answered jobs %v and created %d; want one job, created once", submits, ids, creates)
	}
	page, err := stores[0].ListJobs(ctx, store.Filter{Service: service})
	if err != nil {
		t.Fatalf("ListJobs: %v", err)
	}
	if len(page.Jobs) != 1 {
		t.Errorf("the service lists %d jobs; want 1", len(page.Jobs))
	}
}

// TestConsistencyFromURL opens stores as a function does, from OMNI_STORE (cassandra.StoreEnv
// read by envconfig): quorum and serial levels, and a preferred data centre, work on one node,
// and a level one node cannot meet (TWO) fails every read as unavailable, which shows that the
// URL's level is the one used.
func TestConsistencyFromURL(t *testing.T) {
	cfg := cassandratest.Shared(t)
	base := cassandratest.StoreURL(cfg) + "&" // it has ?timeout=
	ctx := t.Context()
	open := func(t *testing.T, query string) *cassandra.Store {
		t.Helper()
		t.Setenv("OMNI_STORE", base+query)
		var env cassandra.StoreEnv
		if err := envconfig.Process("", &env); err != nil {
			t.Fatalf("read OMNI_STORE: %v", err)
		}
		s, err := env.Open(ctx)
		if err != nil {
			t.Fatalf("open OMNI_STORE=%s: %v", base+query, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	for name, query := range map[string]string{
		"quorum":       "consistency=quorum&serial_consistency=serial",
		"local quorum": "consistency=LOCAL_QUORUM&serial_consistency=local_serial",
		"all":          "consistency=all",
		"local dc":     "consistency=local_one&local_dc=datacenter1",
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t, query)
			j := newJob("svc-"+randHex(4), "iso", time.Now().UTC().Truncate(time.Millisecond))
			if err := s.CreateJob(ctx, j); err != nil {
				t.Fatalf("CreateJob: %v", err)
			}
			if _, _, err := s.UpdateJob(ctx, j.ID, apply(snapshots()[0])); err != nil {
				t.Fatalf("UpdateJob: %v", err)
			}
			if got, err := s.GetJob(ctx, j.ID); err != nil || got.Revision != 2 {
				t.Fatalf("GetJob: %+v, %v; want revision 2", got, err)
			}
		})
	}

	t.Run("two replicas on one node", func(t *testing.T) {
		s := open(t, "consistency=two")
		_, err := s.GetJob(ctx, "job-"+randHex(8))
		if !errors.Is(err, jobs.ErrUnavailable) {
			t.Errorf("GetJob at consistency TWO on a single node: %v; want ErrUnavailable", err)
		}
	})
}

// TestListPagesAcrossBucketsAndShards lists a service's jobs spread over days far apart with
// small pages: a page's walk stops after MaxBucketsPerPage day buckets with a page token (its
// page may be empty), and the token resumes it. The jobs are in several list partitions and active_jobs shards, and each
// is got by id.
func TestListPagesAcrossBucketsAndShards(t *testing.T) {
	cfg := cassandratest.Shared(t)
	s := openStore(t, cfg)
	ctx := t.Context()
	service := "svc-" + randHex(4)
	now := time.Now().UTC().Truncate(time.Millisecond)
	// Three jobs a day on five recent days, and three a long walk back (further than two pages
	// walk), so that the listing needs tokens, one of them on an empty page, to reach them.
	var days []time.Duration
	for d := range 5 {
		days = append(days, time.Duration(d)*24*time.Hour)
	}
	far := time.Duration(2*cassandra.MaxBucketsPerPage+10) * 24 * time.Hour
	days = append(days, far)
	var all []*jobs.Job
	for _, d := range days {
		for i := range 3 {
			j := newJob(service, []string{"iso", "rpm", "srpm"}[i], now.Add(-d-time.Duration(i)*time.Minute))
			if err := s.CreateJob(ctx, j); err != nil {
				t.Fatalf("CreateJob: %v", err)
			}
			all = append(all, j)
		}
	}
	slices.SortFunc(all, func(x, y *jobs.Job) int {
		if c := y.CreatedAt.Compare(x.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(y.ID, x.ID)
	})
	var want []string
	for _, j := range all {
		want = append(want, j.ID)
	}

	f := store.Filter{Service: service, Since: now.Add(-far - 24*time.Hour), Limit: 4}
	var got []string
	pages, empty := 0, 0
	for {
		p, err := s.ListJobs(ctx, f)
		if err != nil {
			t.Fatalf("ListJobs page %d: %v", pages+1, err)
		}
		pages++
		if len(p.Jobs) == 0 {
			empty++
		}
		for _, j := range p.Jobs {
			got = append(got, j.ID)
		}
		if p.Next == "" {
			break
		}
		if pages > 20 {
			t.Fatalf("more than 20 pages for %d jobs", len(all))
		}
		f.Cursor = p.Next
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listing in pages of 4 (-want +got):\n%s", diff)
	}
	if empty == 0 {
		t.Errorf("no page was empty, yet %d days without a job lie between the jobs (a page walks at most %d)",
			2*cassandra.MaxBucketsPerPage+6, cassandra.MaxBucketsPerPage)
	}

	// Under the store: the rows sit in one list partition per day and in several active shards.
	raw := cassandratest.Session(t, cfg, cfg.Keyspace)
	for _, d := range days {
		day := now.Add(-d).Truncate(24 * time.Hour)
		var n int
		if err := raw.Query(`SELECT COUNT(*) FROM jobs_by_service WHERE service = ? AND day = ?`, service, day).
			WithContext(ctx).Scan(&n); err != nil {
			t.Fatalf("count the list partition of %s: %v", day.Format(time.DateOnly), err)
		}
		if n != 3 {
			t.Errorf("list partition (%s, %s) holds %d rows; want the day's 3", service, day.Format(time.DateOnly), n)
		}
	}
	shards := map[int]bool{}
	for shard := range cassandra.ActiveShards {
		var n int
		if err := raw.Query(`SELECT COUNT(*) FROM active_jobs WHERE shard = ?`, shard).WithContext(ctx).Scan(&n); err != nil {
			t.Fatalf("count active shard %d: %v", shard, err)
		}
		if n > 0 {
			shards[shard] = true
		}
	}
	if len(shards) < 2 {
		t.Errorf("active jobs in %d shard(s); want them spread", len(shards))
	}
	for _, j := range all {
		if got, err := s.GetJob(ctx, j.ID); err != nil || got.ID != j.ID {
			t.Errorf("GetJob(%s): %v", j.ID, err)
		}
	}
}

// TestLogsAcrossChunkBuckets stores a step's log in more chunks than two partitions hold and
// reads it back in pages that straddle the partitions; a chunk missing at a partition's end
// stops the reader there until it arrives.
func TestLogsAcrossChunkBuckets(t *testing.T) {
	cfg := cassandratest.Shared(t)
	s := openStore(t, cfg)
	ctx := t.Context()
	jobID, step := "job-"+randHex(8), "build"
	total := int64(2*cassandra.ChunksPerBucket + 5)
	missing := int64(cassandra.ChunksPerBucket) // the last of the first partition
	chunk := func(seq int64) store.LogChunk {
		return store.LogChunk{JobID: jobID, Step: step, Source: store.LogSourceArchive, Seq: seq,
			Data: []byte(fmt.Sprintf("line %d\n", seq)), Lines: 1, FirstTime: time.Unix(seq, 0), LastTime: time.Unix(seq, 0)}
	}
	var wg sync.WaitGroup
	errs := make(chan error, total)
	sem := make(chan struct{}, 8)
	for seq := int64(1); seq <= total; seq++ {
		if seq == missing {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.PutLogChunk(ctx, chunk(seq)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("PutLogChunk: %v", err)
	}

	readAll := func() []int64 {
		var seqs []int64
		after := int64(0)
		for range 20 {
			page, err := s.LogChunks(ctx, jobID, step, store.LogSourceArchive, after, 50)
			if err != nil {
				t.Fatalf("LogChunks after %d: %v", after, err)
			}
			if len(page) == 0 {
				return seqs
			}
			for _, c := range page {
				seqs = append(seqs, c.Seq)
				if want := fmt.Sprintf("line %d\n", c.Seq); string(c.Data) != want {
					t.Errorf("chunk %d holds %q, want %q", c.Seq, c.Data, want)
				}
			}
			after = page[len(page)-1].Seq
		}
		t.Fatalf("more than 20 pages")
		return nil
	}
	if got, want := readAll(), seqRange(1, missing-1); !slices.Equal(got, want) {
		t.Errorf("with chunk %d missing, read %v; want 1..%d and a stop", missing, got, missing-1)
	}
	if err := s.PutLogChunk(ctx, chunk(missing)); err != nil {
		t.Fatalf("PutLogChunk(%d): %v", missing, err)
	}
	if got, want := readAll(), seqRange(1, total); !slices.Equal(got, want) {
		t.Errorf("read %v; want 1..%d", got, total)
	}

	raw := cassandratest.Session(t, cfg, cfg.Keyspace)
	var partitions []int
	for b := range 4 {
		var n int
		if err := raw.Query(`SELECT COUNT(*) FROM log_chunks WHERE job_id = ? AND step = ? AND source = ? AND bucket = ?`,
			jobID, step, store.LogSourceArchive, b).WithContext(ctx).Scan(&n); err != nil {
			t.Fatalf("count bucket %d: %v", b, err)
		}
		partitions = append(partitions, n)
	}
	if want := []int{cassandra.ChunksPerBucket, cassandra.ChunksPerBucket, 5, 0}; !slices.Equal(partitions, want) {
		t.Errorf("chunks per partition %v; want %v", partitions, want)
	}
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestRetentionExpires sets a two-second retention on a keyspace of its own, stores a job,
// updates it, and stores a log chunk and a step state; every column then carries a TTL of at
// most two seconds (no write stored a value for ever, and updates renewed it rather than
// dropped it), and within the deadline the job, its list rows and its log are gone.
func TestRetentionExpires(t *testing.T) {
	t.Parallel() // mostly waits: on schema changes, then on the clock
	cfg := cassandratest.Keyspace(t)
	ctx := t.Context()
	const ttl = 2 * time.Second
	if err := schema.SetRetention(ctx, cfg, schema.Retention{Jobs: ttl, Logs: ttl}); err != nil {
		t.Fatalf("SetRetention: %v", err)
	}
	s := openStore(t, cfg)
	now := time.Now().UTC().Truncate(time.Millisecond)
	j := newJob("svc-"+randHex(4), "iso", now)
	j.Labels, j.Callback, j.Reason, j.Message = map[string]string{"a": "b"}, "http://example.invalid/cb", "r", "m"
	j.StartedAt = &now
	if err := s.CreateJob(ctx, j); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if _, _, err := s.UpdateJob(ctx, j.ID, func(j *jobs.Job) (bool, error) {
		j.Status, j.FinishedAt = jobs.StatusSucceeded, &now
		return true, nil
	}); err != nil {
		t.Fatalf("UpdateJob: %v", err)
	}
	c := store.LogChunk{JobID: j.ID, Step: "build", Source: store.LogSourceArchive, Seq: 1, Data: []byte("x\n"), Lines: 1}
	if err := s.PutLogChunk(ctx, c); err != nil {
		t.Fatalf("PutLogChunk: %v", err)
	}
	for _, st := range []store.LogStep{{JobID: j.ID, Step: "build", LastSeq: 1, Bytes: 2, Lines: 1}, {JobID: j.ID, Step: "build", LastSeq: 1, Bytes: 2, Lines: 1, Complete: true}} {
		if err := s.PutLogStep(ctx, st); err != nil {
			t.Fatalf("PutLogStep: %v", err)
		}
	}

	raw := cassandratest.Session(t, cfg, cfg.Keyspace)
	rows := map[string]string{
		"jobs_by_id":      "id = '" + j.ID + "'",
		"jobs_by_service": fmt.Sprintf("service = '%s' AND day = '%s'", j.Service, now.Format("2006-01-02")),
		"jobs_by_task":    fmt.Sprintf("service = '%s' AND task = '%s' AND day = '%s'", j.Service, j.Task, now.Format("2006-01-02")),
		"log_chunks":      fmt.Sprintf("job_id = '%s' AND step = 'build' AND source = 'archive' AND bucket = 0", j.ID),
		"log_steps":       fmt.Sprintf("job_id = '%s'", j.ID),
	}
	for table, where := range rows {
		for col, secs := range columnTTLs(t, ctx, raw, cfg.Keyspace, table, where) {
			if secs == nil || *secs <= 0 || *secs > int(ttl.Seconds()) {
				t.Errorf("%s.%s: TTL %v; want 1..%d s (the table's)", table, col, ptrString(secs), int(ttl.Seconds()))
			}
		}
	}

	written := time.Now()
	deadline := written.Add(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var left []string
		if _, err := s.GetJob(ctx, j.ID); !errors.Is(err, jobs.ErrNotFound) {
			left = append(left, fmt.Sprintf("job (%v)", err))
		}
		if p, err := s.ListJobs(ctx, store.Filter{Service: j.Service}); err != nil || len(p.Jobs) > 0 {
			left = append(left, fmt.Sprintf("list (%d jobs, %v)", len(p.Jobs), err))
		}
		for table, where := range rows {
			var n int
			if err := raw.Query(`SELECT COUNT(*) FROM ` + table + ` WHERE ` + where).WithContext(ctx).Scan(&n); err != nil || n > 0 {
				left = append(left, fmt.Sprintf("%s (%d rows, %v)", table, n, err))
			}
		}
		if len(left) == 0 {
			t.Logf("all expired %s after the last write", time.Since(written).Round(100*time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("with a %s retention, 30 s later these remain: %s", ttl, strings.Join(left, ", "))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// columnTTLs returns TTL(column) of each regular column of the row of table matching where,
// nil for a value stored without a TTL; columns that hold no value are left out.
func columnTTLs(t *testing.T, ctx context.Context, raw *gocql.Session, keyspace, table, where string) map[string]*int {
	t.Helper()
	var cols []string
	iter := raw.Query(`SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`,
		keyspace, table).WithContext(ctx).Iter()
	var col string
	for iter.Scan(&col) {
		cols = append(cols, col)
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("read the columns of %s: %v", table, err)
	}
	var regular []string
	for _, c := range cols {
		var k string
		if err := raw.Query(`SELECT kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?`,
			keyspace, table, c).WithContext(ctx).Scan(&k); err != nil {
			t.Fatalf("read the kind of %s.%s: %v", table, c, err)
		}
		if k == "regular" {
			regular = append(regular, c)
		}
	}
	if len(regular) == 0 {
		t.Fatalf("%s has no regular columns", table)
	}
	var sel []string
	dest := make([]any, 0, 2*len(regular))
	writes := make([]*int64, len(regular))
	ttls := make([]*int, len(regular))
	for i, c := range regular {
		sel = append(sel, "WRITETIME("+c+")", "TTL("+c+")")
		dest = append(dest, &writes[i], &ttls[i])
	}
	if err := raw.Query(`SELECT ` + strings.Join(sel, ", ") + ` FROM ` + table + ` WHERE ` + where).WithContext(ctx).Scan(dest...); err != nil {
		t.Fatalf("read the TTLs of %s where %s: %v", table, where, err)
	}
	out := map[string]*int{}
	for i, c := range regular {
		if writes[i] != nil {
			out[c] = ttls[i]
		}
	}
	if len(out) == 0 {
		t.Fatalf("the row of %s where %s holds no value", table, where)
	}
	return out
}

func ptrString(p *int) string {
	if p == nil {
		return "none (kept for ever)"
	}
	return strconv.Itoa(*p)
}
