package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/internal/files"
)

// service is one function (one Knative Service) and its replicas. It serves HTTP as the Service's
// address does: each request goes to the next replica that is up, in turn.
type service struct {
	name     string
	replicas []*replica
	next     atomic.Uint64
	// transport is shared by the replicas' proxies (keep-alive connections per replica).
	transport http.RoundTripper
}

// replica is one process of a function: the real binary, on its own port.
type replica struct {
	svc   *service
	index int
	bin   string
	env   []string
	log   string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
	addr     string
	proxy    *httputil.ReverseProxy
	up       bool
	killed   bool // ended by Kill or Close, not by itself
	starts   int
	crashErr error // set when the process ended by itself
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := len(s.replicas)
	start := int(s.next.Add(1))
	for i := range n {
		rep := s.replicas[(start+i)%n]
		if p := rep.current(); p != nil {
			p.ServeHTTP(w, r)
			return
		}
	}
	http.Error(w, "fleet: no replica of "+s.name+" is up", http.StatusServiceUnavailable)
}

// current returns the replica's proxy while it is up.
func (r *replica) current() *httputil.ReverseProxy {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.up {
		return nil
	}
	return r.proxy
}

func (r *replica) name() string { return fmt.Sprintf("%s-%d", r.svc.name, r.index) }

// startAttempts is how many ports start tries: a port picked free may be taken by another process
// before the replica binds it.
const startAttempts = 3

// start runs the replica's process and returns once it is ready (GET /readyz answers 200).
func (r *replica) start(ctx context.Context, readyTimeout time.Duration) error {
	var err error
	for range startAttempts {
		if err = r.startOnce(ctx, readyTimeout); err == nil || !errors.Is(err, errExitedEarly) {
			return err
		}
	}
	return err
}

var errExitedEarly = errors.New("exited before it was ready")

func (r *replica) startOnce(ctx context.Context, readyTimeout time.Duration) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", r.name(), err)
	}
	defer logf.Close()
	r.mu.Lock()
	r.starts++
	fmt.Fprintf(logf, "--- fleet: start %d of %s on port %d at %s\n", r.starts, r.name(), port, time.Now().Format(time.RFC3339Nano))
	r.mu.Unlock()

	cmd := exec.Command(r.bin)
	cmd.Env = append(append([]string{}, r.env...), "PORT="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group (a signal to the test's terminal does not reach it), and killed when
	// the process that started it dies, so that no replica outlives a crashed test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start: %w", r.name(), err)
	}
	done := make(chan struct{})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	target := &url.URL{Scheme: "http", Host: addr}
	r.mu.Lock()
	r.cmd, r.done, r.addr, r.killed, r.crashErr = cmd, done, addr, false, nil
	r.proxy = &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		Transport:     r.svc.transport,
		FlushInterval: -1, // log follow streams
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "fleet: "+r.name()+": "+err.Error(), http.StatusBadGateway)
		},
	}
	r.mu.Unlock()
	go func() {
		werr := cmd.Wait()
		r.mu.Lock()
		r.up = false
		if !r.killed {
			r.crashErr = fmt.Errorf("%s ended by itself: %v", r.name(), werr)
		}
		r.mu.Unlock()
		close(done)
	}()

	err = waitReady(ctx, addr, done, readyTimeout)
	if err == nil {
		// Another process may hold the port this one failed to bind: ready only if it still runs
		// a moment after answering.
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-done:
			err = errExitedEarly
		case <-t.C:
		}
		t.Stop()
	}
	if err != nil {
		r.kill()
		b, _ := os.ReadFile(r.log)
		return fmt.Errorf("%s: %w; its log %s ends:\n%s", r.name(), err, r.log, files.Tail(b, 15))
	}
	r.mu.Lock()
	r.up = true
	r.mu.Unlock()
	return nil
}

// waitReady polls GET /readyz until it answers 200, the process ends, or the deadline.
func waitReady(ctx context.Context, addr string, done <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if resp, err := client.Do(req); err != nil {
			last = err.Error()
		} else {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		}
		select {
		case <-done:
			return errExitedEarly
		case <-ctx.Done():
			return fmt.Errorf("not ready (GET /readyz) within %s: last answer: %s", timeout, last)
		case <-tick.C:
		}
	}
}

// kill ends the process at once (SIGKILL), as a node failure or an OOM kill would, and waits for
// it to be gone.
func (r *replica) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.up, r.killed = false, true
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// stop ends the process as Kubernetes does: SIGTERM, then SIGKILL after grace.
func (r *replica) stop(grace time.Duration) {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.up, r.killed = false, true
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
	}
}

// handedOut are the ports freePort has returned in this process: never twice, or two replicas
// started at once could be given the same port, and the readiness check of the one that failed
// to bind it would be answered by the other.
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

// freePort returns a loopback port that was free a moment ago and that it never returned before.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick a port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port, nil
		}
	}
	return 0, errors.New("pick a port: no new free port in 100 tries")
}

// logPath is where a replica's output goes.
func logPath(dir, fn string, i int) string {
	return filepath.Join(dir, "logs", fmt.Sprintf("%s-%d.log", fn, i))
}
