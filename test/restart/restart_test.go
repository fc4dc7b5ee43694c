// Package restart tests that the local mode survives its own crash (issue 13, item 5): the
// command `omni run` (what `make run` starts) is killed with SIGKILL in the middle of 100 jobs
// and started again on the same data folder. It runs the real binary in processes of its own,
// so it shares nothing with the end-to-end suite's all-in-one.
package restart

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
)

const (
	service = "restart"
	nJobs   = 100
	// logLines is the length of every step's log (the clusters' container log): long enough
	// that archiving lags a little behind the ends, so that the kill finds ended jobs not
	// archived yet.
	logLines = 2000
)

// kind is a kind of job of the test: its labels steer the simulated pods.
type kind struct {
	name   string
	labels map[string]string
	want   jobs.Status
}

var kinds = []kind{
	{"fast", map[string]string{"omni.test/step-duration": "300ms"}, jobs.StatusSucceeded},
	{"slow", map[string]string{"omni.test/step-duration": "4s"}, jobs.StatusSucceeded},
	{"fast", map[string]string{"omni.test/step-duration": "300ms"}, jobs.StatusSucceeded},
	{"slow", map[string]string{"omni.test/step-duration": "4s"}, jobs.StatusSucceeded},
	{"failing", map[string]string{"omni.test/step-duration": "1s", "omni.test/fail-step": "build-rpm"}, jobs.StatusFailed},
}

// kill -9 of `omni run` in the middle of 100 jobs (some queued, some running, some ended and
// not archived yet), then `omni run` again on the same data folder: every job ends as its
// cluster says (none lost), every step's log is archived whole, and nothing is left on disk or
// running from the first run that the second does not use.
func TestKilledLocalModeResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds and runs `omni run` twice, with its local clusters (run without -short)")
	}
	began := time.Now()
	bin := buildOmni(t)
	data := t.TempDir()
	logs := t.TempDir()
	// 15 slots per cluster: most of the 100 wait in the queue at first.
	if err := os.WriteFile(filepath.Join(data, "queue.yaml"), []byte("instances: {x86_64: {capacity: 15}, aarch64: {capacity: 15}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killStrays(t, data) })

	// First run.
	run1 := startOmni(t, bin, data, filepath.Join(logs, "run1.log"))
	api := newClient(t, run1.url, data)
	t.Logf("first run serves %s after %s", run1.url, time.Since(began).Round(time.Millisecond))
	expected := writeContainerLogs(t, data)
	ids, want := submitAll(t, api)

	// Kill it once some jobs have ended (at least two of them not archived yet), while others
	// run and others wait in the queue.
	seen := waitForKillPoint(t, api, ids)
	firstPids := platformPids(data)
	run1.kill(t)
	killedAt := time.Now()
	atCrash := storeCounts(t, data, ids)
	t.Logf("killed the first run (-9, %d platform processes) with the jobs %s; in its store: %s", len(firstPids), seen, atCrash)
	if atCrash.Queued == 0 || atCrash.Active == 0 || atCrash.EndedUnarchived == 0 {
		t.Fatalf("the store of the killed run holds %s: the test needs jobs in each state", atCrash)
	}

	// What an older run left (before clusters kept their names): a kwokctl folder with a
	// random suffix, which the second run must remove.
	stale := filepath.Join(data, "platform", "kwok", "clusters", "omni-5e1f00-x86-64")
	if err := os.MkdirAll(filepath.Join(stale, "etcd", "member", "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "etcd", "member", "wal", "0.wal"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	before := clusterFolders(t, data)

	// Second run, on the same data folder.
	run2 := startOmni(t, bin, data, filepath.Join(logs, "run2.log"))
	api = newClient(t, run2.url, data)
	restarted := time.Now()
	t.Logf("second run serves %s %s after the kill", run2.url, restarted.Sub(killedAt).Round(time.Millisecond))

	final := waitAll(t, api, ids, "every job terminal with its logs archived after the restart", 3*time.Minute, func(j *jobs.Job) bool {
		return j.Status.Terminal() && j.LogsArchived
	})
	t.Logf("all %d jobs ended and archived %s after the second start", len(ids), time.Since(restarted).Round(time.Millisecond))
	var last time.Duration
	var retried []string
	ended := 0
	for _, id := range ids {
		j := final[id]
		if j.FinishedAt != nil && j.FinishedAt.After(restarted) {
			ended++
			last = max(last, j.FinishedAt.Sub(restarted))
		}
		if j.CurrentAttempt() > 1 {
			retried = append(retried, fmt.Sprintf("%s (%s, attempt %d)", id, j.Labels["kind"], j.CurrentAttempt()))
		}
	}
	t.Logf("%d jobs ended after the restart, the last %s after it; jobs run again: %v", ended, last.Round(100*time.Millisecond), retried)

	// Each job ended as its kind and its cluster say.
	states := map[jobs.Status]int{}
	clients := clusterClients(t, data)
	// The Job controller records a Job's end a moment after its pod's, which status-sync may
	// have applied first (a restarted controller manager takes longer): one deadline for all.
	clusterDeadline := time.Now().Add(time.Minute)
	for _, id := range ids {
		j := final[id]
		states[j.Status]++
		if j.Status != want[id] {
			t.Errorf("job %s (%s): %s (%s: %s), want %s", id, j.Labels["kind"], j.Status, j.Reason, j.Message, want[id])
			continue
		}
		if got := settledClusterStatus(t, clients[j.Cluster], j, clusterDeadline); got != j.Status {
			t.Errorf("job %s: %s, but its Kubernetes Job on %s says %s", id, j.Status, j.Cluster, got)
		}
	}

	// Every step that ran has its whole log in the archive; a step that never ran, none.
	archived := 0
	for _, id := range ids {
		for _, s := range final[id].Steps {
			body, status := api.download(t, id, s.Name)
			wantBody := expected
			if s.Status != jobs.StepSucceeded && s.Status != jobs.StepFailed {
				wantBody = ""
			}
			if status != "complete" || body != wantBody {
				t.Errorf("job %s step %s (%s): archived log %s with %d bytes, want complete with %d bytes", id, s.Name, s.Status, status, len(body), len(wantBody))
				continue
			}
			archived++
		}
	}

	// Nothing of the first run is left that the second does not use: the clusters are the same
	// folders (resumed), the stale folder is gone, no process of the first run runs.
	after := clusterFolders(t, data)
	if diff := cmp.Diff([]string{"omni-aarch64", "omni-x86-64"}, after); diff != "" {
		t.Errorf("cluster folders after the second start (-want +got):\n%s", diff)
	}
	for _, dir := range after {
		if err := clusterInUse(data, dir); err != nil {
			t.Errorf("cluster folder %s: %v", dir, err)
		}
	}
	var survivors []int
	current := platformPids(data)
	for _, pid := range firstPids {
		if running(pid) && !slices.Contains(current, pid) && strings.HasPrefix(cwd(pid), data+"/") {
			survivors = append(survivors, pid)
		}
	}
	if len(survivors) > 0 {
		t.Errorf("processes of the first run still running: %v", survivors)
	}
	removed := len(before) - len(after)

	t.Logf("jobs: %d (%s); at the kill: %s; final states: %v; step logs archived whole: %d; cluster folders before the second start %v, after %v (%d removed); total %s",
		len(ids), kindCounts(final), atCrash, states, archived, before, after, removed, time.Since(began).Round(time.Millisecond))
	run2.stop(t)
}

// buildOmni builds cmd/omni into a temporary folder.
func buildOmni(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "omni")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/omnibuildplatform/omni-orchestrator/cmd/omni").CombinedOutput()
	if err != nil {
		t.Fatalf("build cmd/omni: %v\n%s", err, out)
	}
	return bin
}

// omni is a running `omni run`.
type omni struct {
	cmd  *exec.Cmd
	url  string
	log  string
	done chan struct{}
}

var apiLine = regexp.MustCompile(`API:\s+(http://\S+)`)

// startOmni starts `omni run` on data, its output in logPath, and waits until it prints its
// URL (it serves from then on). It is stopped when the test ends.
func startOmni(t *testing.T, bin, data, logPath string) *omni {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-data", data, "-addr", "127.0.0.1:0", "-log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = f
	// Its own process group, so that a Ctrl-C of go test reaches it only through the cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	o := &omni{cmd: cmd, log: logPath, done: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(f, sc.Text())
			if m := apiLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(f, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(o.done)
	}()
	t.Cleanup(func() { o.stop(t) })
	select {
	case o.url = <-urls:
	case <-o.done:
		t.Fatalf("omni run exited before serving:\n%s", tail(logPath, 40))
	case <-time.After(4 * time.Minute):
		t.Fatalf("omni run: no API URL printed within 4 minutes:\n%s", tail(logPath, 40))
	}
	return o
}

// kill kills the process with SIGKILL, as a crash would (its children are left to its
// watchdog and its pdeath signal, as they would be).
func (o *omni) kill(t *testing.T) {
	t.Helper()
	_ = o.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-o.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("omni run (pid %d) still runs 30 s after SIGKILL", o.cmd.Process.Pid)
	}
}

// stop stops the process as Ctrl-C does, then kills it if it takes longer than a minute.
func (o *omni) stop(t *testing.T) {
	select {
	case <-o.done:
		return
	default:
	}
	_ = o.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-o.done:
	case <-time.After(time.Minute):
		t.Errorf("omni run (pid %d) still runs a minute after SIGINT: killed", o.cmd.Process.Pid)
		_ = syscall.Kill(-o.cmd.Process.Pid, syscall.SIGKILL)
		<-o.done
	}
}

// killStrays kills whatever still runs in a folder of data (the clusters' components, the
// adapters), whatever happened to the test, and fails the test if it finds any: stopping the
// second run (as Ctrl-C does) must have ended them all.
func killStrays(t *testing.T, data string) {
	entries, _ := os.ReadDir("/proc")
	var killed []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		// A zombie holds nothing (a component whose parent, kwokctl, is gone waits for init).
		if dir := cwd(pid); (dir == data || strings.HasPrefix(dir, data+"/")) && running(pid) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = append(killed, fmt.Sprintf("%d in %s: %s", pid, dir, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	if len(killed) > 0 {
		t.Errorf("killed %d stray processes:\n%s", len(killed), strings.Join(killed, "\n"))
	}
}

// cwd is the working folder of process pid ("" if unknown).
func cwd(pid int) string {
	d, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return strings.TrimSuffix(d, " (deleted)")
}

// running reports whether process pid runs (a zombie does not).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// platformPids are the pids in the local clusters' pid files.
func platformPids(data string) []int {
	var pids []int
	for _, pattern := range []string{"platform/kwok/clusters/*/pids/*.pid", "platform/*/adapter.pid"} {
		files, _ := filepath.Glob(filepath.Join(data, pattern))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// clusterFolders lists the kwokctl cluster folders of data, sorted.
func clusterFolders(t *testing.T, data string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(data, "platform", "kwok", "clusters"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// clusterInUse says why the kwokctl cluster folder dir is not in use by the running clusters:
// a cluster config of data must name its kubeconfig, and its API server must run.
func clusterInUse(data, dir string) error {
	kubeconfig := filepath.Join(data, "platform", "kwok", "clusters", dir, "kubeconfig.yaml")
	configs, _ := filepath.Glob(filepath.Join(data, "clusters", "*.yaml"))
	named := false
	for _, c := range configs {
		b, _ := os.ReadFile(c)
		named = named || bytes.Contains(b, []byte(kubeconfig))
	}
	if !named {
		return fmt.Errorf("no cluster config names %s", kubeconfig)
	}
	b, err := os.ReadFile(filepath.Join(data, "platform", "kwok", "clusters", dir, "pids", "kube-apiserver.pid"))
	if err != nil {
		return fmt.Errorf("no API server: %w", err)
	}
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); !running(pid) {
		return fmt.Errorf("its API server (pid %d) does not run", pid)
	}
	return nil
}

// writeContainerLogs makes every step's log (the container log the clusters serve) logLines
// lines long, and returns the text each step's archive must hold.
func writeContainerLogs(t *testing.T, data string) string {
	t.Helper()
	var cri, text strings.Builder
	ts := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range logLines {
		line := fmt.Sprintf("line %d of the build log, padded to look like a compiler's output: gcc -O2 -g -Wall", i+1)
		fmt.Fprintf(&cri, "%s stdout F %s\n", ts.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), line)
		text.WriteString(line + "\n")
	}
	files, err := filepath.Glob(filepath.Join(data, "platform", "*", "container.log"))
	if err != nil || len(files) != 2 {
		t.Fatalf("container logs of the local clusters: %v (%v)", files, err)
	}
	for _, f := range files {
		if err := os.WriteFile(f, []byte(cri.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return text.String()
}

// client calls the API as the local admin.
type client struct {
	base, user, password string
}

func newClient(t *testing.T, base, data string) client {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	user, password, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
	return client{base: base, user: user, password: password}
}

func (c client) do(ctx context.Context, method, path string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.SetBasicAuth(c.user, c.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	h := resp.Header.Clone()
	for k, v := range resp.Trailer { // known once the body is read
		h[k] = v
	}
	return resp.StatusCode, h, b, err
}

// submitAll submits the 100 jobs, 8 at a time, kinds in turn and arches alternating; it
// returns their ids in order and the status each must end in.
func submitAll(t *testing.T, c client) ([]string, map[string]jobs.Status) {
	t.Helper()
	ids := make([]string, nJobs)
	want := map[string]jobs.Status{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, nJobs)
	sem := make(chan struct{}, 8)
	for i := range nJobs {
		k := kinds[i%len(kinds)]
		arch := []string{"x86_64", "aarch64"}[i%2]
		labels := map[string]string{"kind": k.name}
		for key, v := range k.labels {
			labels[key] = v
		}
		req := map[string]any{
			"service": service, "task": "buildrpm", "arch": arch, "domain": "restart",
			"parameters": map[string]any{"srpmUrl": "https://repo.example.org/src/zlib-1.3.1-1.src.rpm"},
			"labels":     labels,
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			code, _, body, err := c.do(ctx, http.MethodPost, "/v1/jobs", req)
			if err != nil || code != http.StatusCreated {
				errs <- fmt.Errorf("submit job %d: %d %s %v", i, code, body, err)
				return
			}
			var j jobs.Job
			if err := json.Unmarshal(body, &j); err != nil {
				errs <- fmt.Errorf("submit job %d: %w", i, err)
				return
			}
			mu.Lock()
			ids[i], want[j.ID] = j.ID, k.want
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids, want
}

// batchGet reads the jobs by id.
func (c client) batchGet(ctx context.Context, ids []string) (map[string]*jobs.Job, error) {
	code, _, body, err := c.do(ctx, http.MethodPost, "/v1/jobs:batchGet", map[string]any{"ids": ids})
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("batchGet: %d %s", code, body)
	}
	var r struct {
		Jobs    []*jobs.Job `json:"jobs"`
		Missing []string    `json:"missing"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("batchGet: %w", err)
	}
	if len(r.Missing) > 0 {
		return nil, fmt.Errorf("batchGet: jobs missing: %v", r.Missing)
	}
	out := map[string]*jobs.Job{}
	for _, j := range r.Jobs {
		out[j.ID] = j
	}
	return out, nil
}

// counts are the jobs by where they are.
type counts struct {
	Queued, Active, Ended, EndedUnarchived int
}

func (n counts) String() string {
	return fmt.Sprintf("%d queued, %d pending or running, %d ended (%d of them not archived)", n.Queued, n.Active, n.Ended, n.EndedUnarchived)
}

func count(js map[string]*jobs.Job) counts {
	var n counts
	for _, j := range js {
		switch {
		case j.Status == jobs.StatusQueued:
			n.Queued++
		case j.Status.Terminal():
			n.Ended++
			if !j.LogsArchived {
				n.EndedUnarchived++
			}
		default:
			n.Active++
		}
	}
	return n
}

// waitForKillPoint waits until at least 15 jobs have ended, at least 10 run and at least 10
// wait in the queue, and at least 2 of the ended ones are not archived yet. It returns what it
// saw.
func waitForKillPoint(t *testing.T, c client, ids []string) counts {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var n counts
	for tick := time.NewTicker(50 * time.Millisecond); ; <-tick.C {
		js, err := c.batchGet(t.Context(), ids)
		if err != nil {
			t.Fatal(err)
		}
		n = count(js)
		if n.Ended >= 15 && n.Active >= 10 && n.Queued >= 10 && n.EndedUnarchived >= 2 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("kill point (15 ended, 10 running, 10 queued, 2 ended not archived) not reached within 2 minutes; last: %s", n)
		}
	}
}

// storeCounts reads the jobs from the dead run's SQLite store: the truth at the crash.
func storeCounts(t *testing.T, data string, ids []string) counts {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(data, "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	js := map[string]*jobs.Job{}
	for _, id := range ids {
		if js[id], err = st.GetJob(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	return count(js)
}

// waitAll polls the jobs until done holds for all, failing the test at the deadline.
func waitAll(t *testing.T, c client, ids []string, what string, timeout time.Duration, done func(*jobs.Job) bool) map[string]*jobs.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for tick := time.NewTicker(200 * time.Millisecond); ; <-tick.C {
		js, err := c.batchGet(t.Context(), ids)
		if err != nil {
			t.Fatal(err)
		}
		var notYet []string
		for _, id := range ids {
			if !done(js[id]) {
				notYet = append(notYet, fmt.Sprintf("%s (%s, logs archived %v)", id, js[id].Status, js[id].LogsArchived))
			}
		}
		if len(notYet) == 0 {
			return js
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s: %d jobs not yet, e.g. %s", what, timeout, len(notYet), strings.Join(notYet[:min(5, len(notYet))], ", "))
		}
	}
}

// download returns a step's archived log and its Omni-Log-Status.
func (c client) download(t *testing.T, id, step string) (string, string) {
	t.Helper()
	code, h, body, err := c.do(t.Context(), http.MethodGet, "/v1/jobs/"+id+"/logs/"+step+":download", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK {
		return "", fmt.Sprintf("HTTP %d", code)
	}
	return string(body), h.Get("Omni-Log-Status")
}

// clusterClients are clients of the local clusters by name, from the cluster configs.
func clusterClients(t *testing.T, data string) map[string]kubernetes.Interface {
	t.Helper()
	out := map[string]kubernetes.Interface{}
	for _, name := range []string{"x86_64", "aarch64"} {
		kubeconfig := filepath.Join(data, "platform", "kwok", "clusters", "omni-"+strings.ReplaceAll(name, "_", "-"), "kubeconfig.yaml")
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if out[name], err = kubernetes.NewForConfig(rc); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// clusterStatus is the end the Kubernetes Job of j's current attempt reports.
func clusterStatus(t *testing.T, cs kubernetes.Interface, j *jobs.Job) jobs.Status {
	t.Helper()
	list, err := cs.BatchV1().Jobs("default").List(t.Context(), metav1.ListOptions{LabelSelector: names.Selector(names.AttemptKey(j.ID, j.CurrentAttempt()))})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		return jobs.Status(fmt.Sprintf("%d Kubernetes Jobs", len(list.Items)))
	}
	for _, c := range list.Items[0].Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return jobs.StatusSucceeded
		case batchv1.JobFailed:
			return jobs.StatusFailed
		}
	}
	return "not ended"
}

// settledClusterStatus is clusterStatus once the Kubernetes Job shows its end, or at deadline.
func settledClusterStatus(t *testing.T, cs kubernetes.Interface, j *jobs.Job, deadline time.Time) jobs.Status {
	t.Helper()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		got := clusterStatus(t, cs, j)
		if got != "not ended" || time.Now().After(deadline) {
			return got
		}
		<-tick.C
	}
}

func kindCounts(js map[string]*jobs.Job) string {
	n := map[string]int{}
	for _, j := range js {
		n[j.Labels["kind"]]++
	}
	return fmt.Sprintf("%d fast, %d slow, %d failing", n["fast"], n["slow"], n["failing"])
}

// tail is the end of the file at path, for failures.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
