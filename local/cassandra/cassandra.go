// Package cassandra runs a real single-node Apache Cassandra on loopback, for the tests, the
// benchmarks and the local all-in-one mode (DESIGN §7). The node is the pinned release (Version)
// fetched by hack/cassandra.sh into the tools cache, run as `java … CassandraDaemon` with the
// JVM flags Cassandra 5.0 needs on Java 17, a small heap, free ports (never the defaults, so
// that several runs coexist), JMX off, its data in a folder of its own, and start-up settings
// meant for a throwaway single node (no waiting for gossip, no fsync of the system tables).
//
// Start returns when the node answers CQL; Stop kills it and removes its data. Its log is kept
// in the work folder for a failing test to print (Node.LogTail). The sub-package cassandratest
// shares one node between the tests of a test binary.
package cassandra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/local/internal/files"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// Dir is the work folder: configuration, log, data and commit log. Stop removes the data and
	// keeps cassandra.log. Default: a new temporary folder, removed whole by Stop.
	Dir string
	// Progress receives the fetch's progress and one line when the node is up. Default: none.
	Progress io.Writer
	// Heap is the JVM's maximum heap, as in -Xmx. Default "768m" (plenty for tests, small
	// beside 24 GiB; the initial heap is 256m).
	Heap string
	// StartTimeout bounds the start, from launching the JVM to the first CQL answer. Default 3
	// minutes (it takes about 20 s on an idle two-core machine).
	StartTimeout time.Duration
}

// Node is a running Cassandra node. Create it with Start.
type Node struct {
	dir, logPath string
	ownDir       bool
	nativePort   int
	storagePort  int
	cmd          *exec.Cmd
	done         chan struct{} // closed when the JVM has exited
	stopOnce     sync.Once
	stopErr      error
}

// Host is where the node answers CQL: "127.0.0.1:<port>", a contact point for gocql.
func (n *Node) Host() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.nativePort)) }

// NativePort is the node's CQL port.
func (n *Node) NativePort() int { return n.nativePort }

// StoragePort is the node's internode port.
func (n *Node) StoragePort() int { return n.storagePort }

// LogPath is the node's log file (its stdout, stderr and logback output). It outlives Stop when
// Options.Dir was given.
func (n *Node) LogPath() string { return n.logPath }

// LogTail returns the last lines lines of the node's log, indented, for a failure message.
func (n *Node) LogTail(lines int) string {
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		return "    | (" + err.Error() + ")\n"
	}
	return n.logPath + ":\n" + files.Tail(b, lines)
}

// LogProblems returns the last lines warnings and errors of the node's log (its INFO lines are
// mostly flushes and compactions), indented, with the log's path: what a failed test prints.
func (n *Node) LogProblems(lines int) string {
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		return "    | (" + err.Error() + ")\n"
	}
	var keep [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("WARN")) || bytes.HasPrefix(l, []byte("ERROR")) || bytes.Contains(l, []byte("Exception")) {
			keep = append(keep, l)
		}
	}
	return n.logPath + " (warnings and errors):\n" + files.Tail(bytes.Join(keep, []byte("\n")), lines)
}

// Exited reports whether the JVM has ended (it should not before Stop).
func (n *Node) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// startAttempts is how many times Start tries with new ports when one it picked was taken in
// the meantime by another process.
const startAttempts = 3

// Start fetches Cassandra if needed (hack/cassandra.sh), starts a node and returns once it answers
// CQL. ctx bounds the fetch and the start; the node outlives ctx until Stop.
func Start(ctx context.Context, opts Options) (*Node, error) {
	java, err := Java(ctx)
	if err != nil {
		return nil, err
	}
	lib, err := Jars(ctx, opts.Progress)
	if err != nil {
		return nil, err
	}
	if opts.Heap == "" {
		opts.Heap = "768m"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	n := &Node{dir: opts.Dir}
	if n.dir == "" {
		if n.dir, err = os.MkdirTemp("", "omni-cassandra-"); err != nil {
			return nil, fmt.Errorf("start cassandra: %w", err)
		}
		n.ownDir = true
	} else if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, fmt.Errorf("start cassandra: %w", err)
	}
	if n.dir, err = filepath.Abs(n.dir); err != nil {
		return nil, fmt.Errorf("start cassandra: %w", err)
	}
	n.logPath = filepath.Join(n.dir, "cassandra.log")
	began := time.Now()
	for attempt := 1; ; attempt++ {
		err = n.start(ctx, java, lib, opts)
		if err == nil {
			break
		}
		n.kill()
		n.removeData()
		if attempt == startAttempts || !errors.Is(err, errPortTaken) {
			if n.ownDir {
				// The caller cannot read a log in a folder it does not know: quote it.
				err = fmt.Errorf("%w\n%s", err, n.LogTail(40))
				os.RemoveAll(n.dir)
			}
			return nil, err
		}
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "cassandra: %s up at %s in %s (log %s)\n", Version, n.Host(),
			time.Since(began).Round(100*time.Millisecond), n.logPath)
	}
	return n, nil
}

var errPortTaken = errors.New("a port was taken")

// start makes one attempt with fresh ports.
func (n *Node) start(ctx context.Context, java, lib string, opts Options) error {
	ports, err := freePorts(3)
	if err != nil {
		return fmt.Errorf("start cassandra: %w", err)
	}
	n.nativePort, n.storagePort = ports[0], ports[1]
	for _, d := range dataDirs {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return fmt.Errorf("start cassandra: %w", err)
		}
	}
	yaml := filepath.Join(n.dir, "cassandra.yaml")
	if err := os.WriteFile(yaml, []byte(configYAML(n.dir, n.nativePort, n.storagePort, ports[2])), 0o644); err != nil {
		return fmt.Errorf("start cassandra: %w", err)
	}
	logback := filepath.Join(n.dir, "logback.xml")
	if err := os.WriteFile(logback, []byte(logbackXML), 0o644); err != nil {
		return fmt.Errorf("start cassandra: %w", err)
	}
	args, err := jvmArgs(n.dir, lib, opts.Heap, yaml, logback)
	if err != nil {
		return fmt.Errorf("start cassandra: %w", err)
	}
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start cassandra: open log: %w", err)
	}
	st, _ := f.Stat()
	logStart := st.Size()
	fmt.Fprintf(f, "\n==== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), java, strings.Join(args, " "))
	cmd := exec.Command(java, args...)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own, so that Stop reaches whatever it forks; killed if we die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start cassandra: %w", err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(n.done)
	}()

	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := ping(ctx, n.Host()); err == nil {
			return nil
		}
		select {
		case <-n.done:
			log, _ := files.ReadFrom(n.logPath, logStart)
			if strings.Contains(string(log), "Address already in use") || strings.Contains(string(log), "Failed to bind") {
				return fmt.Errorf("start cassandra: %w (ports %v)", errPortTaken, ports)
			}
			return fmt.Errorf("start cassandra: the JVM exited (%v) before answering CQL on %s", cmd.ProcessState, n.Host())
		case <-ctx.Done():
			return fmt.Errorf("start cassandra: wait for CQL on %s: %w", n.Host(), ctx.Err())
		case <-tick.C:
		}
	}
}

// ping connects to host and reads the release version; it fails fast while the port is closed.
func ping(ctx context.Context, host string) error {
	c := gocql.NewCluster(host)
	c.Timeout, c.ConnectTimeout = 5*time.Second, 5*time.Second
	c.NumConns = 1
	c.Logger = nopLogger{}
	s, err := c.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	var v string
	return s.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Scan(&v)
}

type nopLogger struct{}

func (nopLogger) Print(...any)          {}
func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// Stop kills the node and removes its data (and its work folder if Start made it). It is
// idempotent.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		n.kill()
		if n.ownDir {
			n.stopErr = os.RemoveAll(n.dir)
		} else {
			n.stopErr = n.removeData()
		}
		if n.stopErr != nil {
			n.stopErr = fmt.Errorf("stop cassandra: %w", n.stopErr)
		}
	})
	return n.stopErr
}

// kill ends the JVM's process group at once (its data is thrown away, so there is nothing to
// flush) and waits for it, at most a minute.
func (n *Node) kill() {
	if n.cmd == nil || n.Exited() {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case <-n.done:
	case <-t.C:
	}
}

// dataDirs are the folders of the node's state under its work folder.
var dataDirs = []string{"data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs", "triggers"}

func (n *Node) removeData() error {
	var errs []error
	for _, d := range dataDirs {
		errs = append(errs, os.RemoveAll(filepath.Join(n.dir, d)))
	}
	return errors.Join(errs...)
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Pause freezes the node's JVM (SIGSTOP): it stops answering while its connections stay open,
// as a store that hangs does. Resume lets it go on. Tests use them to make the store unreachable
// for a while.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP) }

// Resume continues a node frozen by Pause (SIGCONT).
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT) }

func (n *Node) signal(sig syscall.Signal) error {
	if n.cmd == nil || n.Exited() {
		return errors.New("cassandra: the node is not running")
	}
	if err := syscall.Kill(-n.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("cassandra: signal %v: %w", sig, err)
	}
	return nil
}
