package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
)

// helloSource is the baseline server: net/http answering /readyz, nothing else.
const helloSource = `package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		os.Exit(1)
	}
}
`

// functionBinaries returns the function commands, functions/<name>/main.go, by name.
func functionBinaries() ([]string, error) {
	mains, err := filepath.Glob(filepath.Join("..", "..", "functions", "*", "main.go"))
	if err != nil {
		return nil, err
	}
	if len(mains) == 0 {
		return nil, errors.New("no functions/*/main.go")
	}
	var names []string
	for _, m := range mains {
		names = append(names, filepath.Base(filepath.Dir(m)))
	}
	return names, nil
}

// startSample is one binary's starts: time to ready, VmRSS when ready, SIGTERM to exit.
type startSample struct {
	ready, stop sample
	rss         []float64 // MiB
}

func (s *startSample) add(ready time.Duration, rss float64, stop time.Duration) {
	s.ready.lat = append(s.ready.lat, ready)
	s.stop.lat = append(s.stop.lat, stop)
	s.rss = append(s.rss, rss)
}

func BenchmarkColdStart(b *testing.B) {
	m := allInOne(b) // for the local clusters' configs the functions load
	names, err := functionBinaries()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	binDir := filepath.Join(dir, "bin")
	if err := buildBinaries(binDir, names); err != nil {
		b.Fatal(err)
	}
	env, err := functionEnv(dir, m.ClustersDir, m.Sink, cassandratest.StoreURL(cassandratest.Shared(b)))
	if err != nil {
		b.Fatal(err)
	}
	hello := filepath.Join(binDir, "hello")

	type pair struct{ fn, hello startSample }
	res := map[string]pair{}
	for _, name := range names {
		b.Run(name, func(b *testing.B) {
			// The function and the hello server take turns (in alternating order), so that
			// whatever else loads the machine weighs on both alike.
			var p pair
			for i := range b.N {
				for k := range 2 {
					bin, s := filepath.Join(binDir, name), &p.fn
					if (i+k)%2 == 1 {
						bin, s = hello, &p.hello
					}
					ready, rss, stop, err := coldStart(bin, env)
					if err != nil {
						b.Fatal(err)
					}
					s.add(ready, rss, stop)
				}
			}
			b.StopTimer()
			for what, s := range map[string]sample{name + " ready": p.fn.ready, name + " stop": p.fn.stop, "hello ready": p.hello.ready, "hello stop": p.hello.stop} {
				s.mustBePossible(b, what)
			}
			res[name] = p
			b.ReportMetric(ms(p.fn.ready.quantile(.5)), "ready-p50-ms")
			b.ReportMetric(ms(p.hello.ready.quantile(.5)), "hello-ready-p50-ms")
			b.ReportMetric(float64(p.fn.ready.quantile(.5))/float64(p.hello.ready.quantile(.5)), "ready/hello")
			b.ReportMetric(median(p.fn.rss), "rss-MiB")
			b.ReportMetric(median(p.hello.rss), "hello-rss-MiB")
			b.ReportMetric(median(p.fn.rss)/median(p.hello.rss), "rss/hello")
			b.ReportMetric(ms(p.fn.stop.quantile(.5)), "stop-p50-ms")
		})
	}

	var rows [][]string
	for _, name := range names {
		p, ok := res[name]
		if !ok {
			continue
		}
		rows = append(rows, []string{name, fmt.Sprint(len(p.fn.ready.lat)),
			fmt.Sprintf("%.1f", ms(p.fn.ready.quantile(.5))), fmt.Sprintf("%.1f", ms(p.fn.ready.quantile(.9))),
			fmt.Sprintf("%.1f", ms(p.hello.ready.quantile(.5))),
			ratio(ms(p.fn.ready.quantile(.5)), ms(p.hello.ready.quantile(.5))),
			fmt.Sprintf("%.1f", median(p.fn.rss)), fmt.Sprintf("%.1f", median(p.hello.rss)),
			ratio(median(p.fn.rss), median(p.hello.rss)),
			fmt.Sprintf("%.1f", ms(p.fn.stop.quantile(.5))), fmt.Sprintf("%.1f", ms(p.hello.stop.quantile(.5)))})
	}
	table("Cold start: exec → first 200 on /readyz, VmRSS then, SIGTERM → exit; each function taking turns with a net/http hello server (baseline)",
		[]string{"binary", "starts", "ready p50 ms", "p90 ms", "hello p50 ms", "ratio", "RSS MiB", "hello RSS MiB", "ratio", "stop p50 ms", "hello stop ms"}, rows)
}

// buildBinaries builds the function commands and the hello server into dir.
func buildBinaries(dir string, names []string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	var pkgs []string
	for _, n := range names {
		pkgs = append(pkgs, "github.com/omnibuildplatform/omni-orchestrator/functions/"+n)
	}
	if err := runCmd(exec.Command(goCmd, append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)); err != nil {
		return err
	}
	src := filepath.Join(filepath.Dir(dir), "hello")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	for name, content := range map[string]string{"go.mod": "module hello\n\ngo 1.26\n", "main.go": helloSource} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	build := exec.Command(goCmd, "build", "-o", filepath.Join(dir, "hello"), ".")
	build.Dir = src
	return runCmd(build)
}

// runCmd runs cmd, returning its output with the error if it fails.
func runCmd(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// functionEnv writes what the functions read at start — credentials, notify subscriptions — and
// returns their environment (without PORT), with store (a migrated keyspace) as OMNI_STORE.
func functionEnv(dir, clustersDir, sink, store string) ([]string, error) {
	line, err := auth.HashPassword("admin", "bench-password")
	if err != nil {
		return nil, err
	}
	htpasswd, users := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(htpasswd, []byte(line+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(users, []byte("users:\n  admin: {role: admin, services: [\"*\"]}\n"), 0o600); err != nil {
		return nil, err
	}
	subscriptions := filepath.Join(dir, "subscriptions.yaml")
	if err := os.WriteFile(subscriptions, []byte("subscriptions: []\n"), 0o600); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return append(os.Environ(),
		"OMNI_STORE="+store,
		"OMNI_CLUSTERS_DIR="+clustersDir,
		"OMNI_TEMPLATES_DIR=",
		"OMNI_HTPASSWD="+htpasswd,
		"OMNI_USERS="+users,
		"K_SINK="+sink,
		"OMNI_PAGE_TOKEN_KEY="+base64.StdEncoding.EncodeToString(key),
		"OMNI_NOTIFY_SUBSCRIPTIONS="+subscriptions,
	), nil
}

// coldStart runs bin once: the time from exec to the first 200 on /readyz, VmRSS in MiB at
// that moment, and the time from SIGTERM to exit.
func coldStart(bin string, env []string) (ready time.Duration, rssMiB float64, stop time.Duration, err error) {
	port, err := freePort()
	if err != nil {
		return 0, 0, 0, err
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/readyz"
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var out bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(slices.Clip(env), "PORT="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &out, &out
	exited := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	began := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	go func() { exited <- cmd.Wait() }()
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		resp, rerr := client.Get(url)
		if rerr == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case werr := <-exited:
			waited = true
			return 0, 0, 0, fmt.Errorf("%s exited before ready: %v\n%s", filepath.Base(bin), werr, out.String())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			waited = true
			return 0, 0, 0, fmt.Errorf("%s not ready within 30s (last: %v)\n%s", filepath.Base(bin), rerr, out.String())
		case <-tick.C:
		}
	}
	ready = time.Since(began)

	if rssMiB, err = vmRSS(cmd.Process.Pid); err != nil {
		return 0, 0, 0, err
	}
	began = time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, 0, 0, err
	}
	select {
	case werr := <-exited:
		waited = true
		stop = time.Since(began)
		var ee *exec.ExitError
		if werr != nil && !(errors.As(werr, &ee) && ee.Sys().(syscall.WaitStatus).Signaled()) {
			return 0, 0, 0, fmt.Errorf("%s after SIGTERM: %v\n%s", filepath.Base(bin), werr, out.String())
		}
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		waited = true
		return 0, 0, 0, fmt.Errorf("%s did not exit within 30s of SIGTERM\n%s", filepath.Base(bin), out.String())
	}
	return ready, rssMiB, stop, nil
}

// vmRSS reads the resident set size of process pid, in MiB.
func vmRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", v, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// median returns the middle value (nearest rank, as sample.quantile).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)+1)/2-1]
}
