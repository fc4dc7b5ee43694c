// Package fleet runs omni-orchestrator as a cluster runs it, on one machine: every function as
// its own processes — the real binaries of functions/, configured through their environment as
// their Knative Services configure them — with N replicas each, sharing nothing but the store
// and the build clusters (docs/reliability.md, "Replicas and kills").
//
// Around them it runs what Knative and the Gateway would:
//
//   - the Broker stand-in (local/router), reading config/'s Triggers and PingSources, delivering
//     each event to one replica of the subscriber, the replicas in turn;
//   - the public URL, sending each request to a replica of the function the HTTPRoute of
//     config/900-api-route.yaml names, in turn;
//   - the local platform (local/platform): one cluster per arch, each watched by the real
//     ApiServerSource adapter, which posts to the Broker stand-in.
//
// Tests kill replicas (Kill: SIGKILL, as a node failure or an OOM kill does) and start them again
// (Restart); a replica that ends by itself is a crash, reported by Crashes. The store is given
// (OMNI_STORE): a local Cassandra, so that the replicas share it as in production.
package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.uber.org/zap"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/config"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/local/router"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// Functions are the Knative Services of config/, each built from functions/<name>.
var Functions = []string{"submit", "status-sync", "query", "log-archive", "notify", "legacy"}

// Options configure Start.
type Options struct {
	// Dir holds the fleet's files: the users, the clusters' configuration, the replicas' logs
	// (logs/<function>-<n>.log) and the platform's work folder. Required.
	Dir string
	// Addr is the listen address of the public URL. Default 127.0.0.1:0 (a free port).
	Addr string
	// Store is every replica's OMNI_STORE (e.g. cassandra://127.0.0.1:9042/omni). Required.
	Store string
	// Replicas is the number of replicas of each function. Default 2.
	Replicas int
	// ReplicasOf overrides Replicas for some functions, by name.
	ReplicasOf map[string]int
	// Platform configures the clusters; its Sink and (unless set) WorkDir are the fleet's.
	Platform platform.Options
	// Weights are the instance weights of the clusters, by cluster name (default 1).
	Weights map[string]int
	// Env is added to every replica's environment, after the fleet's own (it wins).
	Env []string
	// BackoffScale scales the Broker's retry delays (tests: 0.05); default 1.
	BackoffScale float64
	// PingInterval makes every PingSource fire at this interval; default: their schedules.
	PingInterval time.Duration
	// ReadyTimeout bounds a replica's start; default 2 minutes.
	ReadyTimeout time.Duration
	// Logger logs the Broker stand-in; default: none.
	Logger *zap.SugaredLogger
	// Progress receives a line per step of the start; default: none.
	Progress io.Writer
}

// Fleet is a running fleet. Create it with Start; Close stops it.
type Fleet struct {
	// URL is the public base URL (the HTTPRoute's host).
	URL string
	// Sink is the Broker stand-in's ingress, the adapters' and the replicas' K_SINK.
	Sink string
	// User and Password are an admin of every service.
	User, Password string
	// Router is the Broker stand-in.
	Router *router.Router
	// Platform runs the clusters.
	Platform *platform.Platform

	opts     Options
	services map[string]*service
	servers  []*http.Server

	mu          sync.Mutex
	deadLetters []event.Event
	closed      bool
}

// Start builds the function binaries if needed (go install, into the user's cache), starts the
// clusters, the Broker stand-in, the public URL and every replica, and returns once every
// replica is ready. On error it stops what it started.
func Start(ctx context.Context, opts Options) (_ *Fleet, err error) {
	if opts.Dir == "" || opts.Store == "" {
		return nil, errors.New("fleet: Options.Dir and Options.Store are required")
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 2
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop().Sugar()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	f := &Fleet{opts: opts, services: map[string]*service{}}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()

	fmt.Fprintln(opts.Progress, "fleet: building the function binaries…")
	bins, err := Build(ctx)
	if err != nil {
		return nil, err
	}

	// The listeners first: the adapters and the replicas need their URLs.
	brokerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fleet: listen for the Broker ingress: %w", err)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	publicLn, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		brokerLn.Close()
		return nil, fmt.Errorf("fleet: listen for the public URL: %w", err)
	}
	token := randomString(24)
	f.Sink = "http://" + brokerLn.Addr().String() + "/" + token + "/omni/default"
	f.URL = "http://" + publicLn.Addr().String()

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	for _, name := range Functions {
		s := &service{name: name, transport: transport}
		n := opts.Replicas
		if v, ok := opts.ReplicasOf[name]; ok && v > 0 {
			n = v
		}
		for i := range n {
			s.replicas = append(s.replicas, &replica{svc: s, index: i, bin: filepath.Join(bins, name), log: logPath(dir, name, i)})
		}
		f.services[name] = s
	}

	// The Broker stand-in, delivering to the services (and the dead-letter sink, kept here).
	handlers := map[string]http.Handler{"omni-dead-letter": http.HandlerFunc(f.serveDeadLetter)}
	for name, s := range f.services {
		handlers[name] = s
	}
	if f.Router, err = router.Local(config.FS, handlers, opts.Logger, opts.BackoffScale, opts.PingInterval); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	route, err := LoadRoute(config.FS)
	if err != nil {
		return nil, err
	}
	f.serve(brokerLn, http.StripPrefix("/"+token, f.Router))
	f.serve(publicLn, f.public(route))

	po := opts.Platform
	po.Sink = f.Sink
	if po.WorkDir == "" {
		po.WorkDir = filepath.Join(dir, "platform")
	}
	if po.Log == nil {
		po.Log = opts.Progress
	}
	fmt.Fprintln(opts.Progress, "fleet: starting the local clusters…")
	if f.Platform, err = platform.Start(ctx, po); err != nil {
		return nil, fmt.Errorf("fleet: start the clusters: %w", err)
	}
	env, err := f.environment()
	if err != nil {
		return nil, err
	}

	fmt.Fprintln(opts.Progress, "fleet: starting the replicas…")
	var (
		wg   sync.WaitGroup
		errs = make(chan error, 64)
	)
	for _, s := range f.services {
		for _, r := range s.replicas {
			r.env = env
			wg.Go(func() {
				if err := r.start(ctx, opts.ReadyTimeout); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	go func() { _ = f.Router.RunPing(context.WithoutCancel(ctx)) }()
	return f, nil
}

// environment writes the replicas' files (users, clusters, queue policy) and returns their
// environment: what the Services of config/ set, with the fleet's paths and URLs.
func (f *Fleet) environment() ([]string, error) {
	dir := f.opts.Dir
	f.User, f.Password = "admin", randomString(18)
	line, err := auth.HashPassword(f.User, f.Password)
	if err != nil {
		return nil, err
	}
	clustersDir := filepath.Join(dir, "clusters")
	if err := os.MkdirAll(clustersDir, 0o700); err != nil {
		return nil, err
	}
	byArch := map[string]*kube.ArchConfig{}
	for _, c := range f.Platform.Clusters() {
		ac := byArch[c.Arch]
		if ac == nil {
			ac = &kube.ArchConfig{Arch: c.Arch}
			byArch[c.Arch] = ac
		}
		ac.Instances = append(ac.Instances, kube.Instance{Name: c.Name, Kubeconfig: c.Kubeconfig, Namespace: "default", Weight: f.opts.Weights[c.Name]})
	}
	writes := map[string]string{
		filepath.Join(dir, "htpasswd"):   line + "\n",
		filepath.Join(dir, "users.yaml"): "users:\n  " + f.User + ": {role: admin, services: [\"*\"]}\n",
	}
	for arch, ac := range byArch {
		b, err := yaml.Marshal(ac)
		if err != nil {
			return nil, err
		}
		writes[filepath.Join(clustersDir, arch+".yaml")] = string(b)
	}
	for path, content := range writes {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("fleet: write %s: %w", path, err)
		}
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"TMPDIR=" + os.TempDir(),
		"OMNI_LOG_LEVEL=info",
		"OMNI_DRAIN_TIMEOUT=5s",
		"OMNI_STORE=" + f.opts.Store,
		"OMNI_CLUSTERS_DIR=" + clustersDir,
		"OMNI_HTPASSWD=" + filepath.Join(dir, "htpasswd"),
		"OMNI_USERS=" + filepath.Join(dir, "users.yaml"),
		"K_SINK=" + f.Sink,
		"OMNI_SINK_TOKEN_FILE=" + filepath.Join(dir, "no-oidc-token"),
		// One key for every query replica: a page token or log cursor one replica gave, another
		// opens.
		"OMNI_PAGE_TOKEN_KEY=" + base64.StdEncoding.EncodeToString(randomBytes(32)),
		"OMNI_QUEUE_POLICY=" + filepath.Join(dir, "queue.yaml"),
		"OMNI_NOTIFY_SUBSCRIPTIONS=" + filepath.Join(dir, "subscriptions.yaml"),
		"OMNI_NOTIFY_CALLBACK_SECRETS=" + filepath.Join(dir, "callback-secrets"),
		"OMNI_REPO_ALLOWLIST=" + filepath.Join(dir, "repo-allowlist.yaml"),
		// Webhook receivers of tests listen on loopback: deny only a documentation range.
		"OMNI_CALLBACK_DENY=192.0.2.0/24",
		"OMNI_LEGACY_SUBMIT_URL=" + f.URL,
		"OMNI_LEGACY_QUERY_URL=" + f.URL,
	}
	return append(env, f.opts.Env...), nil
}

// public serves the public URL: each request to a replica of the function the route names.
func (f *Fleet) public(route *Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := f.services[route.Service(r.Method, r.URL.Path)]
		if s == nil {
			http.NotFound(w, r)
			return
		}
		s.ServeHTTP(w, r)
	})
}

func (f *Fleet) serve(ln net.Listener, h http.Handler) {
	srv := runtime.NewServer(context.Background(), h, runtime.DefaultTimeouts)
	f.servers = append(f.servers, srv)
	go func() { _ = srv.Serve(ln) }()
}

func (f *Fleet) serveDeadLetter(w http.ResponseWriter, r *http.Request) {
	e, err := eventFromRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.deadLetters = append(f.deadLetters, *e)
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// DeadLetters returns the events the Broker stand-in gave up on.
func (f *Fleet) DeadLetters() []event.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event.Event(nil), f.deadLetters...)
}

// LogLines returns the last max lines of the replicas' logs that contain s (e.g. a job id),
// each prefixed with its replica, for a failure message.
func (f *Fleet) LogLines(s string, max int) string {
	var out []string
	for _, name := range Functions {
		for _, r := range f.services[name].replicas {
			b, err := os.ReadFile(r.log)
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, s) {
					out = append(out, "    "+r.name()+": "+l)
				}
			}
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return strings.Join(out, "\n")
}

// Replicas returns how many replicas fn has.
func (f *Fleet) Replicas(fn string) int {
	if s := f.services[fn]; s != nil {
		return len(s.replicas)
	}
	return 0
}

// Service returns the address of fn's Service: a handler that sends each request to the next
// replica of fn that is up, as the Broker stand-in and the public URL do. Benchmarks use it to
// reach one function without the Broker. It returns nil for an unknown function.
func (f *Fleet) Service(fn string) http.Handler {
	if s := f.services[fn]; s != nil {
		return s
	}
	return nil
}

// Pids returns the process ids of fn's replicas that run, e.g. to read their CPU time.
func (f *Fleet) Pids(fn string) []int {
	var pids []int
	if s := f.services[fn]; s != nil {
		for _, r := range s.replicas {
			r.mu.Lock()
			if r.up && r.cmd != nil && r.cmd.Process != nil {
				pids = append(pids, r.cmd.Process.Pid)
			}
			r.mu.Unlock()
		}
	}
	return pids
}

func (f *Fleet) replica(fn string, i int) (*replica, error) {
	s := f.services[fn]
	if s == nil || i < 0 || i >= len(s.replicas) {
		return nil, fmt.Errorf("fleet: no replica %d of %q", i, fn)
	}
	return s.replicas[i], nil
}

// Kill ends replica i of fn at once (SIGKILL): its requests in flight fail, and it gets no more
// until Restart.
func (f *Fleet) Kill(fn string, i int) error {
	r, err := f.replica(fn, i)
	if err != nil {
		return err
	}
	r.kill()
	return nil
}

// Restart starts replica i of fn again (after Kill) and returns once it is ready.
func (f *Fleet) Restart(ctx context.Context, fn string, i int) error {
	r, err := f.replica(fn, i)
	if err != nil {
		return err
	}
	r.kill() // in case it still runs
	return r.start(ctx, f.opts.ReadyTimeout)
}

// Crashes returns an error for each replica that ended by itself (not by Kill or Close).
func (f *Fleet) Crashes() error {
	var errs []error
	for _, s := range f.services {
		for _, r := range s.replicas {
			r.mu.Lock()
			if r.crashErr != nil {
				errs = append(errs, fmt.Errorf("%w (log: %s)", r.crashErr, r.log))
			}
			r.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// Close stops the replicas (SIGTERM, then SIGKILL after 5 s), the servers, the Broker stand-in
// and the clusters. It is idempotent.
func (f *Fleet) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range f.services {
		for _, r := range s.replicas {
			wg.Go(func() { r.stop(5 * time.Second) })
		}
	}
	wg.Wait()
	for _, srv := range f.servers {
		_ = srv.Close()
	}
	if f.Router != nil {
		_ = f.Router.Close()
	}
	if f.Platform != nil {
		f.Platform.Stop()
	}
}

// Build installs the function binaries into the user's cache (go install: up-to-date binaries
// are not rebuilt) and returns their folder. It runs the go command of PATH in this module.
func Build(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil {
		return "", fmt.Errorf("fleet: find the module: go env GOMOD: %w", err)
	}
	if mod == "" || mod == os.DevNull {
		return "", errors.New("fleet: the function binaries are built from this checkout: run from inside it (e.g. make run REPLICAS=2)")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("fleet: %w", err)
	}
	// One folder per checkout, so that two checkouts' tests do not overwrite each other's.
	h := sha256.Sum256([]byte(filepath.Dir(mod)))
	sum := hex.EncodeToString(h[:8])
	bin := filepath.Join(cache, "omni-orchestrator", "functions", sum)
	cmd := exec.CommandContext(ctx, "go", "install", "./functions/...")
	cmd.Dir = filepath.Dir(mod)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("fleet: go install ./functions/...: %w\n%s", err, out)
	}
	for _, name := range Functions {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return "", fmt.Errorf("fleet: binary of %s: %w", name, err)
		}
	}
	return bin, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomString(n int) string { return base64.RawURLEncoding.EncodeToString(randomBytes(n)) }

func eventFromRequest(r *http.Request) (*event.Event, error) {
	return binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
}
