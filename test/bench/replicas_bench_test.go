package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

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
	// replicaWarmUp requests per replica go through each path before anything is measured.
	replicaWarmUp = 4
	// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat and /proc/stat times
	// (100 on every Linux architecture Go runs on).
	clockTicks = 100
)

// replicaJobs is how many jobs the submit phase posts ($OMNI_BENCH_REPLICAS_JOBS, default 300),
// and replicaEvents how many pod events the status-sync phase posts
// ($OMNI_BENCH_REPLICAS_EVENTS, default 2000, rounded up to whole pod lives).
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

// replicaRun is what one fleet measured.
type replicaRun struct {
	submit, sync phase
	// changed is how many status-sync events changed their job (replied job.changed).
	changed int
}

// phase is one measured phase: its requests and the CPU used meanwhile.
type phase struct {
	s   sample
	cpu cpuUse
}

// BenchmarkReplicas measures the throughput of submit and status-sync with 1, 2 and 4 replicas
// of both (every other function one replica), each function its own processes (local/fleet)
// on the benchmark binary's Cassandra node, one fleet and one fresh keyspace per replica count,
// the 1-replica fleet being the baseline. It also reads the CPU time each part used during each
// phase (/proc), so the table says what bounds the throughput.
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
// phase; between phases the Broker stand-in delivers what the last phase caused.
func BenchmarkReplicas(b *testing.B) {
	jobsN, eventsN := replicaSizes(b)
	ps, err := newPodStream()
	if err != nil {
		b.Fatal(err)
	}
	hosts := cassandratest.Hosts(b)
	cassPid := 0
	if _, port, err := net.SplitHostPort(hosts[0]); err == nil {
		cassPid = listenerPid(port)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	res := map[int]replicaRun{}
	for _, n := range replicaCounts {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			r := runReplicaFleet(b, n, b.N*jobsN, b.N*eventsN, ps, cassPid)
			res[n] = r
			b.ReportMetric(r.submit.s.perSecond(), "submit-jobs/s")
			b.ReportMetric(r.sync.s.perSecond(), "sync-events/s")
			if base, ok := res[replicaCounts[0]]; ok && n != replicaCounts[0] {
				b.ReportMetric(r.submit.s.perSecond()/base.submit.s.perSecond(), "submit-jobs/s/1-replica")
				b.ReportMetric(r.sync.s.perSecond()/base.sync.s.perSecond(), "sync-events/s/1-replica")
			}
		})
	}
	printReplicaTables(res, cassPid != 0, strings.TrimSpace(string(load)))
}

// runReplicaFleet starts a fleet with n replicas of submit and status-sync on a fresh keyspace
// and measures both phases.
func runReplicaFleet(b *testing.B, n, jobsN, eventsN int, ps *podStream, cassPid int) replicaRun {
	cfg := cassandratest.Keyspace(b)
	dir := b.TempDir()
	// One slot for the service on x86_64: the held first job takes it, every later job queues.
	policy := "services:\n  bench: {quota: {x86_64: 1}}\n"
	if err := os.WriteFile(filepath.Join(dir, "queue.yaml"), []byte(policy), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
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
		b.Fatalf("start the fleet: %v", err)
	}
	b.Cleanup(f.Close)
	fmt.Fprintf(os.Stderr, "bench: fleet of %d submit and %d status-sync replicas ready in %s\n", n, n, time.Since(began).Round(time.Millisecond))
	groups := cpuGroups(f, cassPid)
	var run replicaRun
	run.submit = submitPhase(ctx, b, f, jobsN, n, groups)
	waitQuiet(b, f.Router, 2*time.Minute)
	run.sync, run.changed = syncPhase(ctx, b, f, cfg, eventsN, n, ps, groups)
	if err := f.Crashes(); err != nil {
		b.Fatalf("replicas crashed during the run: %v", err)
	}
	return run
}

// submitPhase posts jobsN jobs through the public URL and checks that each was queued.
func submitPhase(ctx context.Context, b *testing.B, f *fleet.Fleet, jobsN, n int, groups []cpuGroup) phase {
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: replicaClients}}
	post := func(req map[string]any) (jobs.Status, error) {
		body, err := json.Marshal(req)
		if err != nil {
			return "", err
		}
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+"/v1/jobs", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		r.Header.Set("Content-Type", "application/json")
		r.SetBasicAuth(f.User, f.Password)
		resp, err := hc.Do(r)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		msg, err := io.ReadAll(resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusCreated {
			return "", fmt.Errorf("POST /v1/jobs: %d %s", resp.StatusCode, msg)
		}
		var j struct {
			Status jobs.Status `json:"status"`
		}
		if err := json.Unmarshal(msg, &j); err != nil {
			return "", fmt.Errorf("POST /v1/jobs: %w", err)
		}
		return j.Status, nil
	}
	// The holder: the one job with room, held at its first step for the rest of the run.
	holder := map[string]any{"labels": map[string]string{platform.AnnotationHoldStep: "fetch-srpm"}}
	for k, v := range rpmJob {
		holder[k] = v
	}
	if st, err := post(holder); err != nil {
		b.Fatal(err)
	} else if st != jobs.StatusPending {
		b.Fatalf("the first job is %s, want pending (placed, holding the service's one slot)", st)
	}
	var mu sync.Mutex
	notQueued := map[jobs.Status]int{}
	op := func(int) error {
		st, err := post(rpmJob)
		if err == nil && st != jobs.StatusQueued {
			mu.Lock()
			notQueued[st]++
			mu.Unlock()
		}
		return err
	}
	measure(b, min(replicaClients, replicaWarmUp*n), replicaWarmUp*n, op)
	waitQuiet(b, f.Router, 2*time.Minute)
	before := takeCPU(groups)
	s := measure(b, replicaClients, jobsN, op)
	use := takeCPU(groups).since(before)
	if len(notQueued) > 0 {
		b.Fatalf("submit answered jobs that are not queued (%v): the benchmark would measure the cluster, not submit", notQueued)
	}
	return phase{s, use}
}

// syncPhase records jobs pending in the store and posts the life of each one's pod to the
// status-sync Service, eventsN events in all; it returns how many changed their job.
func syncPhase(ctx context.Context, b *testing.B, f *fleet.Fleet, cfg storecassandra.Config, eventsN, n int, ps *podStream, groups []cpuGroup) (phase, int) {
	stages := len(ps.stages)
	syncJobs := (eventsN + stages - 1) / stages
	warm := replicaWarmUp * n
	st, err := storecassandra.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	all := make([]string, warm+syncJobs)
	for i := range all {
		all[i] = ids.New(now)
	}
	measure(b, 16, len(all), func(i int) error { return st.CreateJob(ctx, pendingRPMJob(all[i], now)) })
	svc := f.Service("status-sync")
	if svc == nil {
		b.Fatal("the fleet has no status-sync Service")
	}
	var mu sync.Mutex
	changed := 0
	send := func(id string, stage, rv int) error {
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
			mu.Lock()
			changed++
			mu.Unlock()
		}
		return nil
	}
	// Warm-up: the whole life of the first jobs' pods, in order.
	warmIDs, measured := all[:warm], all[warm:]
	rv := 0
	for stage := range stages {
		for _, id := range warmIDs {
			rv++
			if err := send(id, stage, rv); err != nil {
				b.Fatal(err)
			}
		}
	}
	changed = 0
	total := syncJobs * stages
	before := takeCPU(groups)
	s := measure(b, replicaClients, total, func(i int) error {
		j, stage := syncOrder(i, total, stages)
		return send(measured[j], stage, rv+1+i)
	})
	use := takeCPU(groups).since(before)
	s.mustBePossible(b, "status-sync")
	return phase{s, use}, changed
}

// waitQuiet waits until the Broker stand-in's counters have not moved for a second: the
// events the last phase caused (job.created, the dispatch Trigger's passes) are delivered
// before the next phase is measured.
func waitQuiet(b *testing.B, r *router.Router, within time.Duration) {
	b.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last, still := r.Stats(), 0
	for still < 4 {
		select {
		case <-deadline.C:
			b.Fatalf("the Broker stand-in did not go quiet within %s (counters %+v)", within, r.Stats())
		case <-tick.C:
		}
		if now := r.Stats(); now == last {
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

// cpuUse is the CPU used between two snapshots, in cores (CPU seconds per second).
type cpuUse struct {
	wall   time.Duration
	groups []float64
	// machine is every CPU's busy time; rest is what no group accounts for (other work on the
	// machine).
	machine, rest float64
}

func (s cpuSnap) since(before cpuSnap) cpuUse {
	u := cpuUse{wall: s.at.Sub(before.at), groups: make([]float64, len(s.ticks))}
	cores := func(t uint64) float64 { return float64(t) / clockTicks / u.wall.Seconds() }
	u.machine, u.rest = cores(s.busy-before.busy), cores(s.busy-before.busy)
	for i := range s.ticks {
		u.groups[i] = cores(s.ticks[i] - min(before.ticks[i], s.ticks[i]))
		u.rest -= u.groups[i]
	}
	u.rest = max(u.rest, 0)
	return u
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
func printReplicaTables(res map[int]replicaRun, cassandraSeen bool, load string) {
	base, ok := res[replicaCounts[0]]
	if !ok {
		return
	}
	var rows [][]string
	for _, n := range replicaCounts {
		r, ok := res[n]
		if !ok {
			continue
		}
		vs := func(a, b sample) string {
			if n == replicaCounts[0] {
				return "(baseline)"
			}
			return ratio(a.perSecond(), b.perSecond())
		}
		rows = append(rows, []string{fmt.Sprint(n),
			fmt.Sprint(len(r.submit.s.lat)), fmt.Sprintf("%.1f", r.submit.s.perSecond()), vs(r.submit.s, base.submit.s),
			fmt.Sprintf("%.0f", ms(r.submit.s.quantile(.5))), fmt.Sprintf("%.0f", ms(r.submit.s.quantile(.99))),
			fmt.Sprintf("%d (%d changed)", len(r.sync.s.lat), r.changed), fmt.Sprintf("%.0f", r.sync.s.perSecond()), vs(r.sync.s, base.sync.s),
			fmt.Sprintf("%.1f", ms(r.sync.s.quantile(.5))), fmt.Sprintf("%.1f", ms(r.sync.s.quantile(.99)))})
	}
	table(fmt.Sprintf("Replicas: submit (POST /v1/jobs, queued, %d clients) and status-sync (pod events, %d in flight), each function its own processes on one Cassandra node; %d CPUs, load average at the start %s",
		replicaClients, replicaClients, runtime.NumCPU(), load),
		[]string{"replicas", "jobs", "submit jobs/s", "vs 1 replica", "p50 ms", "p99 ms", "events", "status-sync events/s", "vs 1 replica", "p50 ms", "p99 ms"}, rows)

	names := []string{"Cassandra", "submit", "status-sync", "other functions", "clusters, adapters", "benchmark process"}
	header := append([]string{"phase", "replicas", fmt.Sprintf("machine busy (of %d)", runtime.NumCPU())}, names...)
	header = append(header, "rest of machine", "CPU ms per op: Cassandra / functions / all")
	rows = nil
	for _, ph := range []string{"submit", "status-sync"} {
		for _, n := range replicaCounts {
			r, ok := res[n]
			if !ok {
				continue
			}
			p := r.submit
			if ph == "status-sync" {
				p = r.sync
			}
			row := []string{ph, fmt.Sprint(n), fmt.Sprintf("%.2f", p.cpu.machine)}
			for i, c := range p.cpu.groups {
				if i == groupCassandra && !cassandraSeen {
					row = append(row, "?")
					continue
				}
				row = append(row, fmt.Sprintf("%.2f", c))
			}
			perOp := func(cores float64) string {
				return fmt.Sprintf("%.1f", cores*p.cpu.wall.Seconds()*1000/float64(len(p.s.lat)))
			}
			fns := p.cpu.groups[groupSubmit] + p.cpu.groups[groupSync] + p.cpu.groups[groupOtherFunctions]
			row = append(row, fmt.Sprintf("%.2f", p.cpu.rest),
				perOp(p.cpu.groups[groupCassandra])+" / "+perOp(fns)+" / "+perOp(p.cpu.machine))
			rows = append(rows, row)
		}
	}
	table("Replicas: CPU used during each phase, in cores (CPU seconds per second, from /proc)", header, rows)
	for _, ph := range []string{"submit", "status-sync"} {
		fmt.Println("  " + replicaBound(res, ph, cassandraSeen))
	}
	fmt.Println()
}

// replicaBound says, from the CPU figures, what bounds a phase across the replica counts.
func replicaBound(res map[int]replicaRun, ph string, cassandraSeen bool) string {
	cpus := float64(runtime.NumCPU())
	var parts []string
	saturated := true
	for _, n := range replicaCounts {
		r, ok := res[n]
		if !ok {
			continue
		}
		p := r.submit
		fn := groupSubmit
		if ph == "status-sync" {
			p, fn = r.sync, groupSync
		}
		if p.cpu.machine < 0.85*cpus {
			saturated = false
		}
		share := func(c float64) string { return fmt.Sprintf("%.0f%%", 100*c/max(p.cpu.machine, 1e-9)) }
		cass := "?"
		if cassandraSeen {
			cass = share(p.cpu.groups[groupCassandra])
		}
		parts = append(parts, fmt.Sprintf("%d: busy %.2f of %.0f, Cassandra %s, %s %s", n, p.cpu.machine, cpus, cass, ph, share(p.cpu.groups[fn])))
	}
	verdict := "not CPU-bound at every count (the machine had idle time): latency-bound (round trips to the store per request, the clients' concurrency)"
	if saturated {
		verdict = "CPU-bound: the machine's CPUs were busy at every replica count, so more replicas add processes, not CPU"
	}
	return fmt.Sprintf("bound, %s: %s [%s]", ph, verdict, strings.Join(parts, "; "))
}
