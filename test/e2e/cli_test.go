package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// The client-only CLI (cmd/omnictl) as its users run it: the binary, built once, against the
// local platform. Its tests write the cluster's container log file, so they run one after the
// other (no t.Parallel), like the other log tests.

// cliSteps are the steps of the buildrpm job type, in order.
var cliSteps = []string{"fetch-srpm", "build-rpm", "upload"}

func TestCLI(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "omnictl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build omnictl: %v\n%s", err, out)
	}
	cli := cliRunner{bin: bin, url: omni.URL, user: alice}

	t.Run("SubmitWaitFollow", func(t *testing.T) { testCLISubmitFollow(t, cli) })
	t.Run("SubmitFollowFailing", func(t *testing.T) { testCLISubmitFollowFailing(t, cli) })
	t.Run("LogsFollowDroppedConnection", func(t *testing.T) { testCLILogsDropped(t, cli) })
	t.Run("JSONEqualsAPI", func(t *testing.T) { testCLIJSON(t, cli) })
	t.Run("BadParameter", func(t *testing.T) { testCLIBadParameter(t, cli) })
	t.Run("CancelWait", func(t *testing.T) { testCLICancelWait(t, cli) })
	t.Run("Login", func(t *testing.T) { testCLILogin(t, cli) })
}

// submit --wait --follow prints every line of every step once, in step order as the steps
// run (lines the container writes while the CLI follows included), and exits 0.
func testCLISubmitFollow(t *testing.T, cli cliRunner) {
	const cluster = "x86_64"
	lf := lqUseLogFile(t, cluster)
	tag := fmt.Sprintf("cli-%d", time.Now().UnixNano())
	lf.add(t, 5, tag)
	run := cli.start(t, "", "submit", "buildrpm", "--service", "team-a", "--arch", cluster, "--domain", "e2e",
		"--param", "srpmUrl=https://repo.example.org/src/zlib-1.3.1-1.src.rpm",
		"--label", platform.AnnotationHoldStep+"=build-rpm", "--wait", "--follow")
	// The held step prints the file's lines; lines appended meanwhile follow live.
	run.waitStdout(t, "the first lines of build-rpm", func(out string) bool {
		return strings.Count(out, "[build-rpm] ") >= 5
	})
	lf.add(t, 5, tag)
	run.waitStdout(t, "the appended lines of build-rpm", func(out string) bool {
		return strings.Count(out, "[build-rpm] ") >= 10
	})
	id := cliJobID(t, run.stderr())
	lqSetHold(t, cluster, id, "")
	if code := run.wait(t); code != 0 {
		t.Fatalf("submit --follow: exit %d, want 0; stderr:\n%s", code, run.stderr())
	}
	// kwok serves one file for every container, so each step's log is the whole file: the
	// first step's archive also holds the lines appended after it ended.
	out := run.stdout()
	for _, step := range cliSteps {
		cliCheckStep(t, out, step, lf.texts)
	}
	if !strings.HasPrefix(out, "[fetch-srpm] ") || strings.Index(out, "[build-rpm] ") > strings.Index(out, "[upload] ") {
		t.Errorf("steps out of order:\n%s", out)
	}
	if !strings.Contains(run.stderr(), "job "+id+" succeeded") {
		t.Errorf("stderr does not say the job succeeded:\n%s", run.stderr())
	}
}

// A failing job: exit 1, the failed step named, the lines of the steps that ran printed once.
func testCLISubmitFollowFailing(t *testing.T, cli cliRunner) {
	const cluster = "aarch64"
	lf := lqUseLogFile(t, cluster)
	lf.add(t, 7, fmt.Sprintf("cli-fail-%d", time.Now().UnixNano()))
	run := cli.start(t, "", "submit", "buildrpm", "--service", "team-a", "--arch", cluster,
		"--param", "srpmUrl=https://repo.example.org/src/zlib-1.3.1-1.src.rpm",
		"--label", platform.AnnotationFailStep+"=build-rpm", "--label", platform.AnnotationExitCode+"=3",
		"--follow")
	if code := run.wait(t); code != 1 {
		t.Fatalf("submit --follow of a failing job: exit %d, want 1; stderr:\n%s", code, run.stderr())
	}
	out := run.stdout()
	cliCheckStep(t, out, "fetch-srpm", lf.texts)
	cliCheckStep(t, out, "build-rpm", lf.texts)
	cliCheckStep(t, out, "upload", nil)
	if last := cliLastLine(run.stderr()); !strings.Contains(last, "failed in step build-rpm") || !strings.Contains(last, "exit code 3") {
		t.Errorf("last line of stderr %q: want the failed step and its exit code named", last)
	}
}

// logs -f through a proxy that cuts every connection twice mid-stream: the CLI resumes with
// its cursor and prints each line exactly once.
func testCLILogsDropped(t *testing.T, cli cliRunner) {
	const cluster, step = "x86_64", "build-rpm"
	lf := lqUseLogFile(t, cluster)
	tag := fmt.Sprintf("cli-drop-%d", time.Now().UnixNano())
	lf.add(t, 5, tag)
	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: step}))
	p := startCutProxy(t, omni.URL)
	viaProxy := cli
	viaProxy.url = p.url
	run := viaProxy.start(t, "", "logs", j.ID, "--step", step, "-f")
	for i := range 2 {
		run.waitStdout(t, fmt.Sprintf("%d lines", len(lf.texts)), func(out string) bool {
			return strings.Count(out, "\n") >= len(lf.texts)
		})
		conns := p.cut()
		if conns == 0 {
			t.Fatalf("cut %d: no connection open through the proxy while following", i+1)
		}
		lf.add(t, 5, tag)
	}
	run.waitStdout(t, fmt.Sprintf("%d lines after the cuts", len(lf.texts)), func(out string) bool {
		return strings.Count(out, "\n") >= len(lf.texts)
	})
	lqSetHold(t, cluster, j.ID, "")
	if code := run.wait(t); code != 0 {
		t.Fatalf("logs -f: exit %d; stderr:\n%s", code, run.stderr())
	}
	got := strings.Split(strings.TrimSuffix(run.stdout(), "\n"), "\n")
	if d := cmp.Diff(lf.texts, got); d != "" {
		t.Errorf("logs -f across two dropped connections (-want +got):\n%s", d)
	}
	if n := strings.Count(run.stderr(), "resuming"); n < 2 {
		t.Errorf("stderr tells of %d resumptions, want 2:\n%s", n, run.stderr())
	}
}

// -o json prints the API's job; -o yaml the same document; list -o json holds it.
func testCLIJSON(t *testing.T, cli cliRunner) {
	j := alice.submit(t, rpmJob("team-a", "aarch64", map[string]string{"team": "cli"}))
	alice.wait(t, j.ID, "settled", settled)

	getOut := cliSameAsAPI(t, cli, j.ID, func(out string) (map[string]any, error) {
		var got map[string]any
		return got, json.Unmarshal([]byte(out), &got)
	}, "get", j.ID, "-o", "json")
	var typed jobs.Job
	if err := json.Unmarshal([]byte(getOut), &typed); err != nil || typed.ID != j.ID {
		t.Errorf("get -o json as a job: %v (id %q)", err, typed.ID)
	}

	cliSameAsAPI(t, cli, j.ID, func(out string) (map[string]any, error) {
		var y any
		if err := yaml.Unmarshal([]byte(out), &y); err != nil {
			return nil, err
		}
		b, err := json.Marshal(y)
		if err != nil {
			return nil, err
		}
		var got map[string]any
		return got, json.Unmarshal(b, &got)
	}, "get", j.ID, "-o", "yaml")

	cliSameAsAPI(t, cli, j.ID, func(out string) (map[string]any, error) {
		var list struct{ Jobs []map[string]any }
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return nil, err
		}
		for _, lj := range list.Jobs {
			if lj["id"] == j.ID {
				return lj, nil
			}
		}
		return nil, fmt.Errorf("job %s is not listed", j.ID)
	}, "list", "--service", "team-a", "--task", "buildrpm", "--since", "10m", "-o", "json")

	// The queue and the job types as JSON and YAML.
	out, errOut, code := cli.run(t, "", "queue", "-o", "json")
	var q struct{ Instances []struct{ Name, Arch string } }
	if err := json.Unmarshal([]byte(out), &q); code != 0 || err != nil || len(q.Instances) != 2 {
		t.Errorf("queue -o json: exit %d, %v: %s %s", code, err, out, errOut)
	}
	out, errOut, code = cli.run(t, "", "tasks", "-o", "yaml")
	var tasks struct{ Tasks []struct{ Name string } }
	if err := yaml.Unmarshal([]byte(out), &tasks); code != 0 || err != nil || len(tasks.Tasks) < 4 {
		t.Errorf("tasks -o yaml: exit %d, %v: %s %s", code, err, out, errOut)
	}

	// Piped without -o: one tab-separated row per job, no header.
	out, _, code = cli.run(t, "", "list", "--service", "team-a", "--since", "10m")
	if code != 0 || !strings.Contains(out, j.ID+"\tteam-a\tbuildrpm\taarch64\tsucceeded\t") || strings.Contains(out, "SERVICE") {
		t.Errorf("list piped: exit %d:\n%s", code, out)
	}
}

// A parameter the job type's schema refuses: one line naming the field, exit 3.
func testCLIBadParameter(t *testing.T, cli cliRunner) {
	for name, tc := range map[string]struct {
		args  []string
		field string
	}{
		"bad value":     {[]string{"--param", "srpmUrl=ftp://example.org/x.src.rpm"}, "parameters.srpmUrl"},
		"unknown":       {[]string{"--param", "srpmUrl=https://example.org/x.src.rpm", "--param", "colour=blue"}, "colour"},
		"missing":       {nil, "srpmUrl"},
		"wrong type":    {[]string{"--param", "srpmUrl=https://example.org/x.src.rpm", "--param", "repos=not a url"}, "parameters.repos"},
		"arch":          {[]string{"--arch", "sparc", "--param", "srpmUrl=https://example.org/x.src.rpm"}, "arch"},
		"unknown class": {[]string{"--priority", "whenever", "--param", "srpmUrl=https://example.org/x.src.rpm"}, "class"},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"submit", "buildrpm", "--service", "team-a", "--arch", "x86_64"}, tc.args...)
			out, errOut, code := cli.run(t, "", args...)
			if code != 3 {
				t.Fatalf("exit %d, want 3; stdout %q stderr %q", code, out, errOut)
			}
			if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.Contains(lines[0], tc.field) || !strings.Contains(lines[0], "400") {
				t.Errorf("stderr %q: want one line with 400 naming %s", errOut, tc.field)
			}
			if out != "" {
				t.Errorf("stdout %q: want nothing", out)
			}
		})
	}
}

// cancel, then wait: exit 2 for a cancelled job.
func testCLICancelWait(t *testing.T, cli cliRunner) {
	j := alice.submit(t, rpmJob("team-a", "aarch64", map[string]string{platform.AnnotationHoldStep: "build-rpm"}))
	if out, errOut, code := cli.run(t, "", "cancel", j.ID); code != 0 || !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: exit %d: %s %s", code, out, errOut)
	}
	if _, errOut, code := cli.run(t, "", "wait", j.ID); code != 2 || !strings.Contains(errOut, "cancelled") {
		t.Errorf("wait for a cancelled job: exit %d, want 2; stderr %q", code, errOut)
	}
	if _, errOut, code := cli.run(t, "", "get", "01m8f9d6ecg576fhj04x11ggjg"); code != 3 || !strings.Contains(errOut, "404") {
		t.Errorf("get an unknown job: exit %d, want 3; stderr %q", code, errOut)
	}
}

// login checks the credentials and keeps them in a file only its owner reads, which later
// commands use without any environment.
func testCLILogin(t *testing.T, cli cliRunner) {
	cfg := filepath.Join(t.TempDir(), "omnictl", "config.yaml")
	bare := cliRunner{bin: cli.bin, config: cfg}
	if _, errOut, code := bare.run(t, "wrong\n", "login", omni.URL, "--user", "alice", "--password-stdin"); code != 3 || !strings.Contains(errOut, "401") {
		t.Errorf("login with a wrong password: exit %d, want 3; stderr %q", code, errOut)
	}
	if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed login wrote the config file (%v)", err)
	}
	if _, errOut, code := bare.run(t, alice.password+"\n", "login", omni.URL, "--user", "alice", "--password-stdin", "--service", "team-a"); code != 0 {
		t.Fatalf("login: exit %d: %s", code, errOut)
	}
	fi, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", fi.Mode().Perm())
	}
	out, errOut, code := bare.run(t, "", "tasks")
	if code != 0 || !strings.Contains(out, "buildrpm\t") || !strings.Contains(out, "srpmUrl*:string") {
		t.Errorf("tasks after login: exit %d: %s %s", code, out, errOut)
	}
}

// cliSameAsAPI runs the CLI with args and fails unless decode of its output equals the API's
// job id. An ended job may still change (log-archive, the queue's bookkeeping), so the CLI's
// answer is compared with the API's read just before it, when a read just after it shows the
// same revision; otherwise it tries again. It returns the CLI's output.
func cliSameAsAPI(t *testing.T, cli cliRunner, id string, decode func(string) (map[string]any, error), args ...string) string {
	t.Helper()
	apiJob := func() map[string]any {
		r := alice.do(t, http.MethodGet, "/v1/jobs/"+id, nil)
		var j map[string]any
		if r.code != http.StatusOK || json.Unmarshal(r.body, &j) != nil {
			t.Fatalf("get %s: %d %s", id, r.code, r.body)
		}
		return j
	}
	deadline := time.Now().Add(time.Minute)
	for {
		before := apiJob()
		out, errOut, code := cli.run(t, "", args...)
		if code != 0 {
			t.Fatalf("omnictl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		got, err := decode(out)
		if err != nil {
			t.Fatalf("omnictl %s: %v:\n%s", strings.Join(args, " "), err, out)
		}
		if after := apiJob(); after["revision"] == before["revision"] {
			if d := cmp.Diff(before, got); d != "" {
				t.Errorf("omnictl %s and the API's job differ (-api +cli):\n%s", strings.Join(args, " "), d)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still changed after a minute; cannot compare omnictl %s with the API", id, strings.Join(args, " "))
		}
	}
}

// cliRunner runs the CLI binary as one user, with nothing of the environment but what it sets.
type cliRunner struct {
	bin, url string
	user     client
	// config is the config file (default: one in a new temporary folder, never written).
	config string
}

func (c cliRunner) cmd(t *testing.T, ctx context.Context, stdin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cfg := c.config
	if cfg == "" {
		cfg = filepath.Join(t.TempDir(), "config.yaml")
	}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "OMNICTL_CONFIG=" + cfg}
	if c.url != "" {
		cmd.Env = append(cmd.Env, "OMNI_URL="+c.url, "OMNI_USER="+c.user.user, "OMNI_PASSWORD="+c.user.password)
	}
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs the CLI to its end (within a minute) and returns stdout, stderr and the exit status.
func (c cliRunner) run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	r := c.start(t, stdin, args...)
	code := r.wait(t)
	return r.stdout(), r.stderr(), code
}

// cliRun is a running CLI whose output the test watches as it comes.
type cliRun struct {
	args     []string
	cmd      *exec.Cmd
	cancel   context.CancelFunc
	out, err lockedBuffer
	done     chan struct{}
	code     int
}

func (c cliRunner) start(t *testing.T, stdin string, args ...string) *cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	r := &cliRun{args: args, cancel: cancel, done: make(chan struct{})}
	r.cmd = c.cmd(t, ctx, stdin, args...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.err
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start omnictl: %v", err)
	}
	go func() {
		defer close(r.done)
		err := r.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			r.code = ee.ExitCode()
		default:
			r.code = -1
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// wait waits for the CLI's end (3 minutes at most) and returns its exit status.
func (r *cliRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(3 * time.Minute):
		r.cancel()
		<-r.done
		t.Fatalf("omnictl %s did not end within 3 minutes; stdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.stdout(), r.stderr())
		return -1
	}
}

// waitStdout polls the CLI's stdout until ok holds, failing the test after a minute or when
// the CLI ends first.
func (r *cliRun) waitStdout(t *testing.T, what string, ok func(string) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !ok(r.stdout()) {
		select {
		case <-r.done:
			if ok(r.stdout()) {
				return
			}
			t.Fatalf("omnictl %s ended (exit %d) before %s; stdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, what, r.stdout(), r.stderr())
		case <-deadline:
			t.Fatalf("omnictl %s: no %s within a minute; stdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), what, r.stdout(), r.stderr())
		case <-tick.C:
		}
	}
}

func (r *cliRun) stdout() string { return r.out.String() }
func (r *cliRun) stderr() string { return r.err.String() }

// lockedBuffer is a buffer written by the process while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cliJobID reads the job id from the "job <id>: <status>" line a submit --wait prints first.
func cliJobID(t *testing.T, stderr string) string {
	t.Helper()
	line, _, _ := strings.Cut(stderr, "\n")
	id, _, ok := strings.Cut(strings.TrimPrefix(line, "job "), ":")
	if !strings.HasPrefix(line, "job ") || !ok || len(id) != 26 {
		t.Fatalf("no job id in the first line of stderr %q", stderr)
	}
	return id
}

// cliCheckStep fails unless the [step] lines of out are want, each once and in order.
func cliCheckStep(t *testing.T, out, step string, want []string) {
	t.Helper()
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if text, ok := strings.CutPrefix(line, "["+step+"] "); ok {
			got = append(got, text)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("lines of step %s (-want +got):\n%s", step, d)
	}
}

// cliLastLine returns the last non-empty line of s.
func cliLastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// cutProxy forwards TCP connections to a target and can cut every open one at once: a
// connection dropped mid-stream, as a load balancer or a flaky network drops it.
type cutProxy struct {
	url string
	ln  net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "https://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{url: "http://" + ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", host)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns[in], p.conns[out] = struct{}{}, struct{}{}
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
				p.mu.Lock()
				delete(p.conns, dst)
				delete(p.conns, src)
				p.mu.Unlock()
			}
			wg.Go(func() { pipe(out, in) })
			wg.Go(func() { pipe(in, out) })
		}
	})
	return p
}

// cut closes every open connection and returns how many pairs were open.
func (p *cutProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	return n
}
