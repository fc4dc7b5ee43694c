package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/internal/files"
)

// process is a child process in its own process group whose output goes to a log file.
type process struct {
	cmd     *exec.Cmd
	logPath string
	// logStart is the size of the log file when this run started (the file is appended to).
	logStart int64
	done     chan struct{}
	err      error // set before done is closed
}

// startProcess starts bin with args and env (added to a scrubbed copy of the environment) in
// dir, appending its stdout and stderr to logPath.
func startProcess(name, dir, logPath string, env []string, bin string, args ...string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	fmt.Fprintf(f, "\n==== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = dir
	// A group of its own, so that stop can signal it and whatever it forked, and that a Ctrl-C
	// of `go test` leaves it to our watchdog; killed if we die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{cmd: cmd, logPath: logPath, logStart: st.Size(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// baseEnv is the environment of the children without the variables that would point kwokctl or
// a Kubernetes client at something other than what we choose.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "KWOK_") || k == "KUBECONFIG" || strings.HasPrefix(k, "K_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace. It is idempotent.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// output returns what this run of the process wrote so far.
func (p *process) output() []byte {
	b, err := files.ReadFrom(p.logPath, p.logStart)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

// runProcess runs bin to completion (or until ctx ends), appending its output to logPath; the
// error carries the tail of that output.
func runProcess(ctx context.Context, name, dir, logPath string, env []string, bin string, args ...string) error {
	p, err := startProcess(name, dir, logPath, env, bin, args...)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop(5 * time.Second)
		return fmt.Errorf("%s: %w\n%s", name, ctx.Err(), files.Tail(p.output(), tailLines))
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w\n%s", name, p.err, files.Tail(p.output(), tailLines))
	}
	return nil
}

const tailLines = 30

// fileTail returns the last n lines of the file at path, for error messages.
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "    | (no " + path + ")\n"
		}
		return "    | " + err.Error() + "\n"
	}
	return path + ":\n" + files.Tail(b, n)
}

// readPidFiles returns the pids written in the files matching pattern (kwokctl writes one
// <component>.pid per component it starts, with setsid, so each pid is also its process group).
func readPidFiles(pattern string) []int {
	files, _ := filepath.Glob(pattern)
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether the process pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// killInDir kills the process group of each pid whose process still runs in dir (kwokctl starts
// components there, and may have removed it since); the check keeps a recycled pid safe.
func killInDir(pids []int, dir string) {
	for _, pid := range pids {
		if !runsIn(pid, dir) {
			continue
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// watchdogScript runs as a child of the platform's process: when that process ends, for any
// reason (a Ctrl-C of go test, a test timeout), its stdin reaches EOF and it kills the process
// groups of the components kwokctl started (pid files in <kwok>/clusters/*/pids, run in the
// cluster dir) and of the adapters (<cluster dir>/adapter.pid), if they still run where we
// started them.
const watchdogScript = `
cat >/dev/null
for f in "$0"/kwok/clusters/*/pids/*.pid "$0"/*/adapter.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f") || continue
  case "$f" in */adapter.pid) dir=${f%/*} ;; *) dir=${f%/pids/*} ;; esac
  case "$(readlink "/proc/$pid/cwd")" in
    "$dir"|"$dir (deleted)") kill -KILL -- "-$pid" 2>/dev/null ;;
  esac
done
`

// watchdog is the running watchdog of a platform.
type watchdog struct {
	cmd *exec.Cmd
	w   *os.File
}

// startWatchdog starts the watchdog of workDir.
func startWatchdog(workDir string) (*watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("bash", "-c", watchdogScript, workDir)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	r.Close()
	go func() { _ = cmd.Wait() }()
	// For the next run of this work dir (stopEarlierWatchdog).
	if err := os.WriteFile(filepath.Join(workDir, "watchdog.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		_ = cmd.Process.Kill()
		w.Close()
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, w: w}, nil
}

// stop ends the watchdog without letting it kill anything (Stop has done that properly).
func (wd *watchdog) stop() {
	if wd == nil {
		return
	}
	_ = wd.cmd.Process.Kill()
	wd.w.Close()
}
