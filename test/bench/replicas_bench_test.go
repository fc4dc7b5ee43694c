package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
	"github.com/omnibuildplatform/omni-orchestrator/local/fleet"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/local/router"
	storecassandra "github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/ids"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// replicaCounts are the numbers of submit and status-sync replicas measured; the first is the
// baseline.
var replicaCounts = []int{1, 2, 4}

const (
	// replicaClients is how many clients submit at once, and how many events are in flight
	// to status-sync at once.
	replicaClients = 32
	// replicaWarmUp jobs go through each path of each fleet before anything is measured (with
	// only a few, the first fleet's first chunk ran at a third of the speed of its later ones:
	// the store's JVM was still compiling its hot paths).
	replicaWarmUp = 32
	// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat and /proc/stat times
	// (100 on every Linux architecture Go runs on).
	clockTicks = 100
)

// replicaSizes returns how many jobs the submit phase posts ($OMNI_BENCH_REPLICAS_JOBS, default
// 300) and how many pod events the status-sync phase posts ($OMNI_BENCH_REPLICAS_EVENTS, default
// 2000, rounded up to whole pod lives), per fleet.
func replicaSizes(b *testing.B) (jobsN, eventsN int) {
	return envCount(b, "OMNI_BENCH_REPLICAS_JOBS", 300), envCount(b, "OMNI_BENCH_REPLICAS_EVENTS", 2000)
}

// envCount reads a positive count from the environment variable name, def when it is unset.
func envCount(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a count ≥ 1", name, s)
	}
	return n
}

// replicaFleet is the fleet of one replica count and what it measured.
type replicaFleet struct {
	n      int
	f      *fleet.Fleet
	cfg    storecassandra.Config
	groups []cpuGroup
	// cql reads the node's counters (system_views).
	cql  *gocql.Session
	post func(ctx context.Context, req map[string]any) (jobs.Status, error)

	submit, sync phase
	// submitChunks are the submit phase's chunks in turn; the queue grows by one chunk each.
	submitChunks []phase
	// notQueued counts the measured jobs submit did not queue, by status (must stay empty).
	notQueued map[jobs.Status]int
	// syncIDs are the jobs of the status-sync phase; rv is the last resourceVersion sent.
	syncIDs []string
	rv      int
	// changed is how many status-sync events changed their job (replied job.changed).
	changed int
	mu      sync.Mutex
}

// phase is what one phase measured: its requests and the CPU used meanwhile, summed over its
// chunks.
type phase struct {
	s   sample
	cpu cpuUse
	ops storeOps
}

func (p *phase) add(o phase) {
	p.s.add(o.s)
	p.cpu.add(o.cpu)
	p.ops = p.ops.plus(o.ops)
}

// BenchmarkReplicas measures the throughput of submit and status-sync with 1, 2 and 4 replicas
// of both (every other function one replica), each function its own processes (local/fleet),
// all on the benchmark binary's Cassandra node: one fleet and one fresh keyspace per replica
// count, the three fleets running at once and taking turns (a chunk each, in the order 1, 2, 4,
// then 4, 2, 1, …), so that the load of a shared machine weighs on all three alike; the
// 1-replica fleet is the baseline. It also reads the CPU time each part used during each chunk
// (/proc), so the table says what bounds the throughput.
//
//   - submit: POST /v1/jobs through the public URL by 32 clients. The queue policy gives the
//     service a quota of one slot on x86_64, taken by a first job held at its first step, so
//     every measured job is stored queued (201) and nothing is created on a cluster: what is
//     measured is submit (auth, validation, the store, a dispatch pass, job.created), not the
//     cluster's API server.
//   - status-sync: ApiServerSource pod events (each job's pod pending, each container running in
//     turn, succeeded; as BenchmarkStatusSync) posted to the status-sync Service's address (its
//     replicas in turn, as the Broker delivers) by 32 clients, for jobs recorded pending in the
//     store beforehand; its replies (job.changed) come back to the benchmark, so that only
//     status-sync and the store are measured.
//
// The PingSources are slowed to once an hour, so no resync or dispatch-resync runs during a
// chunk; before each chunk every fleet's Broker stand-in has delivered what the last chunk
// caused (job.created, the dispatch Trigger's passes).
func BenchmarkReplicas(b *testing.B) {
	jobsN, eventsN := replicaSizes(b)
	jobsN, eventsN = b.N*jobsN, b.N*eventsN
	ps, err := newPodStream()
	if err != nil {
		b.Fatal(err)
	}
	stages := len(ps.stages)
	syncJobs := (eventsN + stages - 1) / stages
	eventsN = syncJobs * stages
	hosts := cassandratest.Hosts(b)
	cassPid := 0
	if _, port, err := net.SplitHostPort(hosts[0]); err == nil {
		cassPid = listenerPid(port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	var fleets []*replicaFleet
	for _, n := range replicaCounts {
		fleets = append(fleets, startReplicaFleet(ctx, b, n, cassPid))
	}
	load, _ := os.ReadFile("/proc/loadavg")
	routers := make([]*router.Router, len(fleets))
	for i, rf := range fleets {
		routers[i] = rf.f.Router
	}
	// turns runs chunk k of a phase on every fleet, each chunk once every fleet is quiet.
	turns := func(chunk func(rf *replicaFleet, k int)) {
		for k := range replicaRounds {
			for i := range fleets {
				if k%2 == 1 {
					i = len(fleets) - 1 - i
				}
				waitQuiet(b, routers, 2*time.Minute)
				chunk(fleets[i], k)
			}
		}
	}

	for _, rf := range fleets {
		rf.warmSubmit(ctx, b)
	}
	turns(func(rf *replicaFleet, k int) {
		rf.submitChunk(ctx, b, jobsN*(k+1)/replicaRounds-jobsN*k/replicaRounds)
	})
	for _, rf := range fleets {
		if len(rf.notQueued) > 0 {
			b.Fatalf("%d replicas: submit answered jobs that are not queued (%v): the benchmark would measure the cluster, not submit", rf.n, rf.notQueued)
		}
	}

	for _, rf := range fleets {
		rf.prepareSync(ctx, b, syncJobs, ps)
	}
	turns(func(rf *replicaFleet, k int) {
		rf.syncChunk(ctx, b, eventsN*k/replicaRounds, eventsN*(k+1)/replicaRounds, eventsN, ps)
	})

	for _, rf := range fleets {
		if err := rf.f.Crashes(); err != nil {
			b.Fatalf("%d replicas: replicas crashed during the run: %v", rf.n, err)
		}
		rf.submit.s.mustBePossible(b, fmt.Sprintf("submit, %d replicas", rf.n))
		rf.sync.s.mustBePossible(b, fmt.Sprintf("status-sync, %d replicas", rf.n))
		b.ReportMetric(rf.submit.s.perSecond(), fmt.Sprintf("submit-jobs/s-%d", rf.n))
		b.ReportMetric(rf.sync.s.perSecond(), fmt.Sprintf("sync-events/s-%d", rf.n))
		if rf != fleets[0] {
			b.ReportMetric(rf.submit.s.perSecond()/fleets[0].submit.s.perSecond(), fmt.Sprintf("submit-x1-%d", rf.n))
			b.ReportMetric(rf.sync.s.perSecond()/fleets[0].sync.s.perSecond(), fmt.Sprintf("sync-x1-%d", rf.n))
		}
	}
	printReplicaTables(fleets, cassPid != 0, strings.TrimSpace(string(load)))
}

// replicaRounds is how many chunks each phase is cut into per fleet.
const replicaRounds = 4

// startReplicaFleet starts a fleet with n replicas of submit and status-sync on a fresh keyspace;
// the fleet stops and the keyspace is dropped when b ends.
func startReplicaFleet(ctx context.Context, b *testing.B, n, cassPid int) *replicaFleet {
	cfg := cassandratest.Keyspace(b)
	dir := b.TempDir()
	// One slot for the service on x86_64: the held first job takes it, every later job queues.
	policy := "services:\n  bench: {quota: {x86_64: 1}}\n"
	if err := os.WriteFile(filepath.Join(dir, "queue.yaml"), []byte(policy), 0o600); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	f, err := fleet.Start(ctx, fleet.Options{
		Dir:          dir,
		Store:        cassandratest.StoreURL(cfg),
		Replicas:     1,
		ReplicasOf:   map[string]int{"submit": n, "status-sync": n},
		PingInterval: time.Hour,
		Progress:     os.Stderr,
		Env:          []string{"OMNI_LOG_LEVEL=warn"},
	})
	if err != nil {
		b.Fatalf("start the fleet of %d replicas: %v", n, err)
	}
	b.Cleanup(f.Close)
	fmt.Fprintf(os.Stderr, "bench: fleet of %d submit and %d status-sync replicas ready in %s\n", n, n, time.Since(began).Round(time.Millisecond))
	rf := &replicaFleet{n: n, f: f, cfg: cfg, groups: cpuGroups(f, cassPid), cql: cassandratest.Session(b, cfg, ""), notQueued: map[jobs.Status]int{}}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: replicaClients}}
	rf.post = func(ctx context.Context, req map[string]any) (jobs.Status, error) {
		j, err := submitJob(ctx, hc, f.URL, f.User, f.Password, req)
		return j.Status, err
	}
	return rf
}

// warmSubmit submits the holder — the one job with room, held at its first step for the rest
// of the run — and a few queued jobs per replica.
func (rf *replicaFleet) warmSubmit(ctx context.Context, b *testing.B) {
	holder := map[string]any{"labels": map[string]string{platform.AnnotationHoldStep: "fetch-srpm"}}
	for k, v := range rpmJob {
		holder[k] = v
	}
	if st, err := rf.post(ctx, holder); err != nil {
		b.Fatal(err)
	} else if st != jobs.StatusPending {
		b.Fatalf("%d replicas: the first job is %s, want pending (placed, holding the service's one slot)", rf.n, st)
	}
	measure(b, replicaClients, replicaWarmUp, func(int) error {
		_, err := rf.post(ctx, rpmJob)
		return err
	})
}

// submitChunk posts n jobs by replicaClients clients.
func (rf *replicaFleet) submitChunk(ctx context.Context, b *testing.B, n int) {
	c := rf.begin(b)
	s := measure(b, replicaClients, n, func(int) error {
		st, err := rf.post(ctx, rpmJob)
		if err == nil && st != jobs.StatusQueued {
			rf.mu.Lock()
			rf.notQueued[st]++
			rf.mu.Unlock()
		}
		return err
	})
	p := c.end(b, s)
	rf.submit.add(p)
	rf.submitChunks = append(rf.submitChunks, p)
}

// chunk is a chunk being measured: the counters at its start.
type chunk struct {
	rf  *replicaFleet
	cpu cpuSnap
	ops storeOps
}

// begin reads the counters at the start of a chunk.
func (rf *replicaFleet) begin(b *testing.B) chunk {
	return chunk{rf: rf, ops: readStoreOps(b, rf.cql, rf.cfg.Keyspace), cpu: takeCPU(rf.groups)}
}

// end reads the counters again: the chunk's phase of sample s.
func (c chunk) end(b *testing.B, s sample) phase {
	u := takeCPU(c.rf.groups).since(c.cpu)
	return phase{s: s, cpu: u, ops: readStoreOps(b, c.rf.cql, c.rf.cfg.Keyspace).minus(c.ops)}
}

// prepareSync records n jobs pending in the store (and replicaWarmUp more for the warm-up) and
// sends the warm-up jobs' pods' whole lives to status-sync.
func (rf *replicaFleet) prepareSync(ctx context.Context, b *testing.B, n int, ps *podStream) {
	st, err := storecassandra.Open(ctx, rf.cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	warm := replicaWarmUp
	all := make([]string, warm+n)
	for i := range all {
		all[i] = ids.New(now)
	}
	rf.syncIDs = all[warm:]
	measure(b, 16, len(all), func(i int) error { return st.CreateJob(ctx, pendingRPMJob(all[i], now)) })
	for stage := range ps.stages {
		measure(b, replicaClients, warm, func(i int) error { return rf.sendEvent(ctx, ps, all[i], stage, rf.rv+1+i) })
		rf.rv += warm
	}
	rf.changed = 0
}

// syncChunk sends events [from, to) of total: round robin over the jobs, each job's pod's
// stages in order (syncOrder).
func (rf *replicaFleet) syncChunk(ctx context.Context, b *testing.B, from, to, total int, ps *podStream) {
	c := rf.begin(b)
	s := measure(b, replicaClients, to-from, func(i int) error {
		j, stage := syncOrder(from+i, total, len(ps.stages))
		return rf.sendEvent(ctx, ps, rf.syncIDs[j], stage, rf.rv+1+from+i)
	})
	rf.sync.add(c.end(b, s))
}

// storeOps are counters of the Cassandra node (its virtual tables, system_views): the CQL
// statements it executed (all clients), and the local reads, range scans and writes of one
// keyspace's tables.
type storeOps struct {
	statements, reads, scans, writes int64
}

func (o storeOps) plus(p storeOps) storeOps {
	return storeOps{o.statements + p.statements, o.reads + p.reads, o.scans + p.scans, o.writes + p.writes}
}

func (o storeOps) minus(p storeOps) storeOps {
	return storeOps{o.statements - p.statements, o.reads - p.reads, o.scans - p.scans, o.writes - p.writes}
}

// perOp formats the counts per operation of a phase of n operations.
func (o storeOps) perOp(n int) string {
	f := func(v int64, prec int) string {
		return strconv.FormatFloat(float64(v)/float64(max(n, 1)), 'f', prec, 64)
	}
	// A range scan is one per dispatch pass (ListSlots): a fraction per job.
	return f(o.statements, 1) + " / " + f(o.reads, 1) + " / " + f(o.scans, 2) + " / " + f(o.writes, 1)
}

// readStoreOps reads the node's counters for keyspace.
func readStoreOps(b *testing.B, s *gocql.Session, keyspace string) storeOps {
	b.Helper()
	var o storeOps
	var name string
	var v float64
	it := s.Query(`SELECT name, value FROM system_views.cql_metrics`).Iter()
	for it.Scan(&name, &v) {
		if name == "prepared_statements_executed" || name == "regular_statements_executed" {
			o.statements += int64(v)
		}
	}
	if err := it.Close(); err != nil {
		b.Fatalf("read the node's CQL counters: %v", err)
	}
	for table, into := range map[string]*int64{"local_read_latency": &o.reads, "local_scan_latency": &o.scans, "local_write_latency": &o.writes} {
		var n int64
		it := s.Query(`SELECT count FROM system_views.`+table+` WHERE keyspace_name = ?`, keyspace).Iter()
		for it.Scan(&n) {
			*into += n
		}
		if err := it.Close(); err != nil {
			b.Fatalf("read the node's %s: %v", table, err)
		}
	}
	return o
}

// sendEvent posts stage of job id's pod, at resourceVersion rv, to the status-sync Service.
func (rf *replicaFleet) sendEvent(ctx context.Context, ps *podStream, id string, stage, rv int) error {
	svc := rf.f.Service("status-sync")
	if svc == nil {
		return errors.New("the fleet has no status-sync Service")
	}
	e, err := ps.event(id, stage, rv)
	if err != nil {
		return err
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), req); err != nil {
		return fmt.Errorf("encode event %d: %w", rv, err)
	}
	rec := httptest.NewRecorder()
	svc.ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		return fmt.Errorf("status-sync answered event %d with %d: %s", rv, rec.Code, bytes.TrimSpace(rec.Body.Bytes()))
	}
	if rec.Header().Get("Ce-Id") != "" {
		rf.mu.Lock()
		rf.changed++
		rf.mu.Unlock()
	}
	return nil
}

// waitQuiet waits until no Broker stand-in's counters have moved for a second: the events the
// last chunk caused are delivered before the next chunk is measured.
func waitQuiet(b *testing.B, routers []*router.Router, within time.Duration) {
	b.Helper()
	stats := func() []router.Stats {
		out := make([]router.Stats, len(routers))
		for i, r := range routers {
			out[i] = r.Stats()
		}
		return out
	}
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last, still := stats(), 0
	for still < 4 {
		select {
		case <-deadline.C:
			b.Fatalf("the Broker stand-ins did not go quiet within %s (counters %+v)", within, stats())
		case <-tick.C:
		}
		if now := stats(); slices.Equal(now, last) {
			still++
		} else {
			last, still = now, 0
		}
	}
}

// cpuGroup is a set of processes whose CPU time is read together.
type cpuGroup struct {
	name string
	pids []int
}

// The groups of cpuGroups, in order.
const (
	groupCassandra = iota
	groupSubmit
	groupSync
	groupOtherFunctions
	groupClusters
	groupBench
	groupCount
)

// cpuGroups lists the fleet's processes by part: the Cassandra node (when found), the submit and
// status-sync replicas, the other functions, the clusters' components and adapters (from their
// pid files), and this process (the clients, the Broker stand-in, the public URL's proxy).
func cpuGroups(f *fleet.Fleet, cassPid int) []cpuGroup {
	g := make([]cpuGroup, groupCount)
	g[groupCassandra] = cpuGroup{name: "Cassandra"}
	if cassPid != 0 {
		g[groupCassandra].pids = []int{cassPid}
	}
	g[groupSubmit] = cpuGroup{name: "submit", pids: f.Pids("submit")}
	g[groupSync] = cpuGroup{name: "status-sync", pids: f.Pids("status-sync")}
	g[groupOtherFunctions] = cpuGroup{name: "other functions"}
	for _, fn := range fleet.Functions {
		if fn != "submit" && fn != "status-sync" {
			g[groupOtherFunctions].pids = append(g[groupOtherFunctions].pids, f.Pids(fn)...)
		}
	}
	g[groupClusters] = cpuGroup{name: "clusters, adapters"}
	for _, c := range f.Platform.Clusters() {
		files, _ := filepath.Glob(filepath.Join(c.KwokDir, "pids", "*.pid"))
		files = append(files, filepath.Join(c.Dir, "adapter.pid"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					g[groupClusters].pids = append(g[groupClusters].pids, pid)
				}
			}
		}
	}
	g[groupBench] = cpuGroup{name: "benchmark process", pids: []int{os.Getpid()}}
	return g
}

// cpuSnap is the CPU time of each group and of the whole machine at one moment, in clock ticks.
type cpuSnap struct {
	at     time.Time
	groups []cpuGroup
	ticks  []uint64
	busy   uint64
}

func takeCPU(groups []cpuGroup) cpuSnap {
	s := cpuSnap{at: time.Now(), groups: groups, ticks: make([]uint64, len(groups)), busy: machineBusyTicks()}
	for i, g := range groups {
		for _, pid := range g.pids {
			s.ticks[i] += processTicks(pid)
		}
	}
	return s
}

// cpuUse is the CPU time used between two snapshots (or summed over several such spans), in
// CPU seconds.
type cpuUse struct {
	wall   time.Duration
	groups []float64
	// machine is every CPU's busy time; rest is what no group accounts for (other work on the
	// machine).
	machine, rest float64
}

func (s cpuSnap) since(before cpuSnap) cpuUse {
	secs := func(t uint64) float64 { return float64(t) / clockTicks }
	u := cpuUse{wall: s.at.Sub(before.at), groups: make([]float64, len(s.ticks))}
	u.machine, u.rest = secs(s.busy-before.busy), secs(s.busy-before.busy)
	for i := range s.ticks {
		u.groups[i] = secs(s.ticks[i] - min(before.ticks[i], s.ticks[i]))
		u.rest -= u.groups[i]
	}
	u.rest = max(u.rest, 0)
	return u
}

// add sums o into u.
func (u *cpuUse) add(o cpuUse) {
	u.wall += o.wall
	u.machine += o.machine
	u.rest += o.rest
	if u.groups == nil {
		u.groups = make([]float64, len(o.groups))
	}
	for i, g := range o.groups {
		u.groups[i] += g
	}
}

// cores is CPU seconds per second of wall time.
func (u cpuUse) cores(secs float64) float64 {
	if u.wall <= 0 {
		return 0
	}
	return secs / u.wall.Seconds()
}

// processTicks returns the user and system CPU time pid has used (utime + stime of
// /proc/<pid>/stat, every thread), 0 if it cannot be read.
func processTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count the fields after its closing ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return utime + stime
}

// machineBusyTicks returns the time all CPUs spent on anything but idle and iowait
// (/proc/stat's first line).
func machineBusyTicks() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	var busy uint64
	for i, field := range strings.Fields(string(line))[1:] {
		v, _ := strconv.ParseUint(field, 10, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is counted in user already
			busy += v
		}
	}
	return busy
}

// listenerPid returns the process that listens on the loopback TCP port (the local Cassandra
// node), found through the socket's inode in /proc; 0 when none of ours does.
func listenerPid(port string) int {
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	want := fmt.Sprintf(":%04X", p)
	var inode string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			// sl local_address rem_address st … inode; st 0A is LISTEN.
			if len(f) > 9 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
				inode = f[9]
			}
		}
		fh.Close()
	}
	if inode == "" {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, fds := range procs {
		entries, err := os.ReadDir(fds)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && target == "socket:["+inode+"]" {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(fds)))
				return pid
			}
		}
	}
	return 0
}

// printReplicaTables prints the throughput per replica count against the first, the CPU each
// part used during each phase, and what bounds each phase.
func printReplicaTables(fleets []*replicaFleet, cassandraSeen bool, load string) {
	base := fleets[0]
	var rows [][]string
	for _, rf := range fleets {
		vs := func(a, b sample) string {
			if rf == base {
				return "(baseline)"
			}
			return ratio(a.perSecond(), b.perSecond())
		}
		rows = append(rows, []string{fmt.Sprint(rf.n),
			fmt.Sprint(len(rf.submit.s.lat)), fmt.Sprintf("%.1f", rf.submit.s.perSecond()), vs(rf.submit.s, base.submit.s),
			fmt.Sprintf("%.0f", ms(rf.submit.s.quantile(.5))), fmt.Sprintf("%.0f", ms(rf.submit.s.quantile(.99))),
			fmt.Sprintf("%d (%d changed)", len(rf.sync.s.lat), rf.changed), fmt.Sprintf("%.0f", rf.sync.s.perSecond()), vs(rf.sync.s, base.sync.s),
			fmt.Sprintf("%.1f", ms(rf.sync.s.quantile(.5))), fmt.Sprintf("%.1f", ms(rf.sync.s.quantile(.99)))})
	}
	table(fmt.Sprintf("Replicas: submit (POST /v1/jobs, queued, %d clients) and status-sync (pod events, %d in flight); each function its own processes; three fleets at once on one Cassandra node, taking turns in %d chunks; %d CPUs, load average at the start %s",
		replicaClients, replicaClients, replicaRounds, runtime.NumCPU(), load),
		[]string{"replicas", "jobs", "submit jobs/s", "vs 1 replica", "p50 ms", "p99 ms", "events", "status-sync events/s", "vs 1 replica", "p50 ms", "p99 ms"}, rows)

	header := []string{"phase", "replicas", fmt.Sprintf("machine busy (of %d)", runtime.NumCPU())}
	for _, g := range base.groups {
		header = append(header, g.name)
	}
	header = append(header, "rest of machine", "CPU ms per op: Cassandra / functions / machine", "store per op: statements / reads / scans / writes")
	rows = nil
	for _, ph := range []string{"submit", "status-sync"} {
		for _, rf := range fleets {
			p := rf.phase(ph)
			u := p.cpu
			row := []string{ph, fmt.Sprint(rf.n), fmt.Sprintf("%.2f", u.cores(u.machine))}
			for i, c := range u.groups {
				if i == groupCassandra && !cassandraSeen {
					row = append(row, "?")
					continue
				}
				row = append(row, fmt.Sprintf("%.2f", u.cores(c)))
			}
			perOp := func(secs float64) string { return fmt.Sprintf("%.1f", secs*1000/float64(len(p.s.lat))) }
			fns := u.groups[groupSubmit] + u.groups[groupSync] + u.groups[groupOtherFunctions]
			row = append(row, fmt.Sprintf("%.2f", u.cores(u.rest)),
				perOp(u.groups[groupCassandra])+" / "+perOp(fns)+" / "+perOp(u.machine), p.ops.perOp(len(p.s.lat)))
			rows = append(rows, row)
		}
	}
	table("Replicas: CPU used during each phase, in cores (CPU seconds per second, from /proc); rest of machine = the other fleets idling and any other work", header, rows)
	for _, ph := range []string{"submit", "status-sync"} {
		fmt.Println("  " + replicaBound(fleets, ph, cassandraSeen))
	}
	fmt.Println()

	// Each dispatch pass reads every unfinished job: a submit's cost grows with the queue.
	header = []string{"replicas"}
	rows = nil
	for _, rf := range fleets {
		row := []string{fmt.Sprint(rf.n)}
		queued := replicaWarmUp
		for k, c := range rf.submitChunks {
			if rf == base {
				header = append(header, fmt.Sprintf("chunk %d: jobs/s, CPU ms per job Cassandra / submit, statements per job", k+1))
			}
			row = append(row, fmt.Sprintf("%.1f, %.1f / %.1f, %.1f (queue %d→%d)", c.s.perSecond(),
				c.cpu.groups[groupCassandra]*1000/float64(len(c.s.lat)), c.cpu.groups[groupSubmit]*1000/float64(len(c.s.lat)),
				float64(c.ops.statements)/float64(len(c.s.lat)), queued, queued+len(c.s.lat)))
			queued += len(c.s.lat)
		}
		rows = append(rows, row)
	}
	table("Replicas: the submit phase chunk by chunk, as the queue grows (every dispatch pass reads every unfinished job)", header, rows)
}

// phase returns the measured phase named ph.
func (rf *replicaFleet) phase(ph string) phase {
	if ph == "status-sync" {
		return rf.sync
	}
	return rf.submit
}

// replicaBound says, from the CPU figures, what bounds a phase across the replica counts.
func replicaBound(fleets []*replicaFleet, ph string, cassandraSeen bool) string {
	cpus := float64(runtime.NumCPU())
	fn := groupSubmit
	if ph == "status-sync" {
		fn = groupSync
	}
	var parts []string
	saturated := true
	for _, rf := range fleets {
		u := rf.phase(ph).cpu
		if u.cores(u.machine) < 0.85*cpus {
			saturated = false
		}
		share := func(c float64) string { return fmt.Sprintf("%.0f%%", 100*c/max(u.machine, 1e-9)) }
		cass := "?"
		if cassandraSeen {
			cass = share(u.groups[groupCassandra])
		}
		parts = append(parts, fmt.Sprintf("%d: busy %.2f of %.0f, Cassandra %s, %s %s", rf.n, u.cores(u.machine), cpus, cass, ph, share(u.groups[fn])))
	}
	verdict := "not CPU-bound at every count (the machine had idle time): bound by latency (the store's round trips per request) and the clients' concurrency"
	if saturated {
		verdict = "CPU-bound: the machine's CPUs were busy at every replica count, so more replicas add processes, not CPU"
	}
	return fmt.Sprintf("bound, %s: %s [%s]", ph, verdict, strings.Join(parts, "; "))
}
