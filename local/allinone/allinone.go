// Package allinone runs every function of omni-orchestrator in one process on one port, as
// `make run` does and as the end-to-end tests do: SQLite in a data folder, the in-process router
// that delivers by the Trigger manifests of config/, periodic resync through the PingSource
// manifest, and either the two local simulated clusters (x86_64, aarch64) with one real
// ApiServerSource adapter each, or the clusters a given cluster config folder names.
package allinone

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/kelseyhightower/envconfig"
	"go.uber.org/zap"
	"knative.dev/pkg/logging"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/config"
	"github.com/omnibuildplatform/omni-orchestrator/functions/status-sync/statussync"
	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	localcassandra "github.com/omnibuildplatform/omni-orchestrator/local/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/local/router"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra/schema"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
)

// Options configure an all-in-one run.
type Options struct {
	// DataDir holds the SQLite database, the generated credentials and cluster configs. Default .data.
	DataDir string
	// Addr is the listen address. Default 127.0.0.1:8088 (never 8080: the adapter probes it).
	Addr string
	// ClustersDir, when set, names per-arch cluster configs of real clusters: no local cluster
	// is started (and no tools are built). Default: $OMNI_CLUSTERS_DIR if set, else local clusters.
	ClustersDir string
	// Cassandra runs the store on a local Cassandra node started for this run (data under
	// DataDir/cassandra, gone when the run ends) instead of SQLite: the production store on one
	// machine. It needs Java 17 and Maven (hack/cassandra.sh fetches the pinned Cassandra once).
	Cassandra bool
	// ResyncInterval makes the resync PingSource fire at this interval instead of its schedule.
	ResyncInterval time.Duration
	// BackoffScale multiplies the Broker's retry delays (tests shrink them). Default 1.
	BackoffScale float64
	// Platform tunes the local clusters.
	Platform platform.Options
	// Weights are the weights of the local clusters' engine instances, by cluster name, in the
	// cluster configs written for them (default 1). Capacities come from the queue policy.
	Weights map[string]int
	// Logger receives the functions' logs. Default: a production logger at info.
	Logger *zap.SugaredLogger
	// Progress receives human progress lines. Default: discarded.
	Progress io.Writer
	// Tap, when set, sees every event the router delivered to a function, after the function
	// answered (tests record and replay them).
	Tap func(function string, e event.Event)
}

// Main is a running all-in-one.
type Main struct {
	// URL is the base URL of the API, e.g. http://127.0.0.1:8088.
	URL string
	// Sink is the URL of the Broker stand-in's ingress, the K_SINK of the local host's own
	// senders (the functions' emitter, the ApiServerSource adapters): on its own loopback
	// listener, never the public port, with a random token in the path that identifies them.
	// Anything else that posts events to it is refused (403).
	Sink string
	// User and Password are the admin credentials of the local mode.
	User, Password string
	// Deps are the pieces every function was given.
	Deps *Deps
	// ClustersDir is the folder of the per-arch cluster configs in use.
	ClustersDir string
	Router      *router.Router
	// Platform is the local clusters (nil when ClustersDir named real ones).
	Platform *platform.Platform
	// Cassandra is the local Cassandra node of Options.Cassandra (else nil).
	Cassandra *localcassandra.Node
	// StatusSync is the status-sync handler (tests call Resync on it).
	StatusSync *statussync.Handler
	// Submit is the submit handler (tests run dispatch passes on it, or build a second
	// dispatcher beside it).
	Submit *submit.Handler
	// Policy is the queue policy (<data dir>/queue.yaml unless OMNI_QUEUE_POLICY names one).
	Policy *queue.Source

	cancel     context.CancelFunc
	server     *http.Server
	brokerLn   net.Listener
	broker     *http.Server
	done       chan struct{}
	closeOnce  sync.Once
	closeErr   error
	deadMu     sync.Mutex
	deadLetter []event.Event
}

// Start starts everything. On error, whatever was started is stopped.
func Start(ctx context.Context, opts Options) (_ *Main, err error) {
	if opts.DataDir == "" {
		opts.DataDir = ".data"
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:8088"
	}
	if opts.Logger == nil {
		if opts.Logger, err = runtime.NewLogger("info"); err != nil {
			return nil, err
		}
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(logging.WithLogger(context.WithoutCancel(ctx), opts.Logger))
	m := &Main{cancel: cancel, done: make(chan struct{})}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("listen: %w", err)
	}
	defer func() {
		if err != nil {
			if m.server == nil {
				ln.Close()
			}
			_ = m.Close()
		}
	}()
	m.URL = "http://" + ln.Addr().String()
	// The Broker stand-in's ingress: its own loopback listener, its senders identified by a
	// token in the path (the ApiServerSource adapter posts to K_SINK as it is: no headers).
	if m.brokerLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("listen for the Broker ingress: %w", err)
	}
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	m.Sink = "http://" + m.brokerLn.Addr().String() + "/" + token + "/broker/omni/default"
	sink := m.Sink

	s, err := localSettings(dataDir, sink)
	if err != nil {
		return nil, err
	}
	if m.User, m.Password, err = localCredentials(dataDir, &s.UsersEnv); err != nil {
		return nil, err
	}
	if opts.ClustersDir != "" {
		s.ClustersDir = opts.ClustersDir
	} else if _, set := os.LookupEnv("OMNI_CLUSTERS_DIR"); !set {
		po := opts.Platform
		po.Sink = sink
		if po.WorkDir == "" {
			// The clusters live in the data folder as the store does: the next run resumes
			// them, so that a restart (or a crash) loses no job (docs/reliability.md).
			po.WorkDir = filepath.Join(dataDir, "platform")
			po.Persistent = true
		}
		if po.Log == nil {
			po.Log = opts.Progress
		}
		fmt.Fprintln(opts.Progress, "starting the local clusters (kwok + real Kubernetes control plane + Knative ApiServerSource adapter)…")
		if m.Platform, err = platform.Start(ctx, po); err != nil {
			return nil, fmt.Errorf("start local clusters: %w", err)
		}
		s.ClustersDir = filepath.Join(dataDir, "clusters")
		if err := writeClusterConfigs(s.ClustersDir, m.Platform, opts.Weights); err != nil {
			return nil, err
		}
	}

	m.ClustersDir = s.ClustersDir
	if opts.Cassandra {
		if s.Store, err = m.startCassandra(ctx, dataDir, opts.Progress); err != nil {
			return nil, err
		}
	}
	if m.Deps, err = buildDeps(runCtx, s); err != nil {
		return nil, err
	}
	fns, err := m.functions(runCtx, s, m.Deps, dataDir, []string{ln.Addr().String(), m.brokerLn.Addr().String()})
	if err != nil {
		return nil, err
	}
	var public []*runtime.Function
	handlers := map[string]http.Handler{"omni-dead-letter": http.HandlerFunc(m.serveDeadLetter)}
	for _, f := range fns {
		if f.public {
			public = append(public, f.fn)
		}
		handlers[f.name] = tap(f.name, f.fn.Handler(runCtx), opts.Tap)
	}

	if m.Router, err = router.Local(config.FS, handlers, opts.Logger, opts.BackoffScale, opts.ResyncInterval); err != nil {
		return nil, err
	}
	go func() { _ = m.Router.RunPing(runCtx) }()

	m.broker = runtime.NewServer(runCtx, ingress(token, m.Router), runtime.DefaultTimeouts)
	go func() {
		if err := m.broker.Serve(m.brokerLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Errorw("Broker ingress stopped", "error", err)
		}
	}()
	m.server = runtime.NewServer(runCtx, runtime.Mux(runCtx, public...), runtime.DefaultTimeouts)
	m.server.BaseContext = func(net.Listener) context.Context { return runCtx } // Close ends streams
	go func() {
		defer close(m.done)
		if err := m.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Errorw("server stopped", "error", err)
		}
	}()
	go m.catchUp(runCtx)
	return m, nil
}

// ingress serves router under /<token>/broker/ (the Knative Broker ingress's paths follow):
// requests without the token are refused with 403, as Knative refuses senders that its
// EventPolicies do not allow.
func ingress(token string, router http.Handler) http.Handler {
	prefix := "/" + token + "/broker"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/")
		got, _, _ := strings.Cut(rest, "/")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 || !strings.HasPrefix(r.URL.Path, prefix+"/") {
			httpapi.Error(w, r, fmt.Errorf("event sender not allowed: %w", jobs.ErrForbidden))
			return
		}
		http.StripPrefix(prefix, router).ServeHTTP(w, r)
	})
}

// Close stops the server, drains the router, stops the local clusters, closes the store and
// stops the local Cassandra.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.server != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, m.server.Shutdown(sctx))
			cancel()
		}
		if m.broker != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, m.broker.Shutdown(sctx))
			cancel()
		} else if m.brokerLn != nil {
			m.brokerLn.Close()
		}
		if m.Router != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = m.Router.Drain(dctx) // what is not done by then is dropped by Close
			cancel()
			errs = append(errs, m.Router.Close())
		}
		m.cancel()
		if m.Platform != nil {
			m.Platform.Stop()
		}
		if m.Deps != nil && m.Deps.Store != nil {
			errs = append(errs, m.Deps.Store.Close())
			m.Deps.Store = nil
		}
		if m.Cassandra != nil {
			errs = append(errs, m.Cassandra.Stop())
		}
		if m.server != nil {
			<-m.done
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// DeadLetters returns the events the Broker gave up on so far.
func (m *Main) DeadLetters() []event.Event {
	m.deadMu.Lock()
	defer m.deadMu.Unlock()
	return append([]event.Event(nil), m.deadLetter...)
}

func (m *Main) serveDeadLetter(w http.ResponseWriter, r *http.Request) {
	runtime.CloudEvents(m.receiveDeadLetter).ServeHTTP(w, r)
}

// receiveDeadLetter keeps an event the Broker gave up on, as event_display logs it in the cluster.
func (m *Main) receiveDeadLetter(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
	logging.FromContext(ctx).Warnw("dead letter", "id", e.ID(), "type", e.Type(), "subject", e.Subject(),
		"error", e.Extensions()["knativeerrorcode"], "dest", e.Extensions()["knativeerrordest"])
	m.deadMu.Lock()
	m.deadLetter = append(m.deadLetter, e)
	m.deadMu.Unlock()
	return nil, nil
}

// startCassandra starts the local Cassandra node, creates and migrates the keyspace omni, and
// returns its OMNI_STORE URL.
func (m *Main) startCassandra(ctx context.Context, dataDir string, progress io.Writer) (string, error) {
	fmt.Fprintln(progress, "starting a local Cassandra node (first time: fetching the pinned Cassandra with Maven)…")
	node, err := localcassandra.Start(ctx, localcassandra.Options{Dir: filepath.Join(dataDir, "cassandra"), Progress: progress})
	if err != nil {
		return "", fmt.Errorf("start local Cassandra: %w", err)
	}
	m.Cassandra = node
	cfg := cassandra.Config{Hosts: []string{node.Host()}, Keyspace: "omni", Consistency: "LOCAL_QUORUM",
		SerialConsistency: "LOCAL_SERIAL", Timeout: 10 * time.Second}
	if err := schema.InitKeyspace(ctx, cfg, "1"); err != nil {
		return "", fmt.Errorf("local Cassandra: %w", err)
	}
	if err := schema.Migrate(ctx, cfg); err != nil {
		return "", fmt.Errorf("local Cassandra: %w", err)
	}
	return "cassandra://" + node.Host() + "/omni?timeout=10s", nil
}

// localSettings reads the functions' settings from the environment, filling what is unset with
// the local mode's values.
func localSettings(dataDir, sink string) (*settings, error) {
	var s settings
	if err := envconfig.Process("", &s); err != nil {
		return nil, fmt.Errorf("read environment: %w", err)
	}
	key, err := persistentKey(filepath.Join(dataDir, "page-token.key"))
	if err != nil {
		return nil, err
	}
	for name, set := range map[string]func(){
		"OMNI_STORE":          func() { s.Store = "sqlite:" + filepath.Join(dataDir, "omni.db") },
		"OMNI_HTPASSWD":       func() { s.Htpasswd = filepath.Join(dataDir, "htpasswd") },
		"OMNI_USERS":          func() { s.Users = filepath.Join(dataDir, "users.yaml") },
		"K_SINK":              func() { s.Sink = sink },
		"OMNI_PAGE_TOKEN_KEY": func() { s.PageTokenKey = key },
	} {
		if _, ok := os.LookupEnv(name); !ok {
			set()
		}
	}
	return &s, nil
}

// buildDeps builds the pieces every function shares, once.
func buildDeps(ctx context.Context, s *settings) (_ *Deps, err error) {
	var d Deps
	if d.Catalogue, err = s.TemplatesEnv.Catalogue(ctx); err != nil {
		return nil, err
	}
	if d.Users, err = s.UsersEnv.Load(ctx); err != nil {
		return nil, err
	}
	if d.Emitter, err = s.SinkEnv.Emitter(ctx); err != nil {
		return nil, err
	}
	if d.Clusters, err = s.ClustersEnv.Load(); err != nil {
		return nil, err
	}
	kind, path, _ := strings.Cut(s.Store, ":")
	switch kind {
	case "sqlite":
		db, err := sqlite.Open(ctx, strings.TrimPrefix(path, "//"))
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		go purge(ctx, db, s.RetentionEnv, s.PurgeInterval)
		d.Store = db
	case "cassandra":
		if d.Store, err = (cassandra.StoreEnv{Store: s.Store, Username: s.CassandraUsername, Password: s.CassandraPassword}).Open(ctx); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("OMNI_STORE %q: want sqlite:<path> or cassandra://hosts/keyspace", s.Store)
	}
	return &d, nil
}

func persistentKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	s := base64.StdEncoding.EncodeToString(k)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write page token key: %w", err)
	}
	return s, nil
}

// writeClusterConfigs writes config/clusters-style files for the local clusters, with the
// given instance weights.
func writeClusterConfigs(dir string, p *platform.Platform, weights map[string]int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	byArch := map[string]*kube.ArchConfig{}
	for _, c := range p.Clusters() {
		ac := byArch[c.Arch]
		if ac == nil {
			ac = &kube.ArchConfig{Arch: c.Arch}
			byArch[c.Arch] = ac
		}
		ac.Instances = append(ac.Instances, kube.Instance{Name: c.Name, Kubeconfig: c.Kubeconfig, Namespace: "default", Weight: weights[c.Name]})
	}
	for arch, ac := range byArch {
		b, err := yaml.Marshal(ac)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, arch+".yaml"), b, 0o600); err != nil {
			return fmt.Errorf("write cluster config: %w", err)
		}
	}
	return nil
}

// tap calls fn with each event h was given, once h has answered.
func tap(name string, h http.Handler, fn func(string, event.Event)) http.Handler {
	if fn == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(body))
		if e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r2)); err == nil {
			fn(name, *e)
		}
	})
}
