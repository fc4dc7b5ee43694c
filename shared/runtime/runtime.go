// Package runtime owns what every function binary shares: configuration from the environment,
// the zap logger carried in the context, the HTTP server with /healthz, /readyz and /metrics,
// request metrics, CloudEvent receiving, and a clean drain on SIGTERM.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/signals"

	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/version"
)

// Env is the base of every function's settings: each function binary declares its own settings
// struct that embeds Env (and the settings of the shared pieces it uses), as knative.dev/eventing's
// adapters embed their EnvConfig. Main reads the whole struct from the environment.
type Env struct {
	// Port is the HTTP port; Knative sets PORT. Default 8080.
	Port int `envconfig:"PORT" default:"8080"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `envconfig:"OMNI_LOG_LEVEL" default:"info"`
	// DrainTimeout bounds how long in-flight requests may run after SIGTERM. Default 30s.
	DrainTimeout time.Duration `envconfig:"OMNI_DRAIN_TIMEOUT" default:"30s"`
	// Timeouts of the HTTP server (slow clients hold no connection for long).
	Timeouts
}

// Timeouts are the HTTP server's timeouts. Streaming handlers (log follows and downloads)
// lift the write deadline of their own response with NoWriteDeadline.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers. Default 10s.
	ReadHeader time.Duration `envconfig:"OMNI_READ_HEADER_TIMEOUT" default:"10s"`
	// Read bounds reading a whole request, body included. Default 1m.
	Read time.Duration `envconfig:"OMNI_READ_TIMEOUT" default:"1m"`
	// Write bounds a response, from the end of its request's headers (the longest a handler
	// may run: status-sync's and log-archive's are the slowest). Default 10m.
	Write time.Duration `envconfig:"OMNI_WRITE_TIMEOUT" default:"10m"`
	// Idle bounds how long a keep-alive connection waits for its next request. Default 2m.
	Idle time.Duration `envconfig:"OMNI_IDLE_TIMEOUT" default:"2m"`
}

// DefaultTimeouts are the defaults of Timeouts (for servers not configured from the
// environment, such as the local host's).
var DefaultTimeouts = Timeouts{ReadHeader: 10 * time.Second, Read: time.Minute, Write: 10 * time.Minute, Idle: 2 * time.Minute}

// NewServer returns an HTTP server of h with timeouts t, whose requests' contexts derive from
// ctx (without its cancellation: the drain decides when they end).
func NewServer(ctx context.Context, h http.Handler, t Timeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
}

// NoWriteDeadline wraps a streaming handler: its responses have no write deadline (a log
// follow lasts as long as its step). It has no effect on writers that cannot set deadlines.
func NoWriteDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		next.ServeHTTP(w, r)
	})
}

// base returns e; through embedding, every settings struct of a function has it.
func (e *Env) base() *Env { return e }

// Settings is a pointer to a function's settings struct, which embeds Env.
type Settings[S any] interface {
	*S
	base() *Env
}

// Check is a named readiness check.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Function is one built function: its routes, readiness checks and what to close on exit.
type Function struct {
	Name string
	// Routes registers the function's routes (already wrapped in auth where needed) on mux.
	Routes func(mux *http.ServeMux)
	Checks []Check
	Close  func() error
}

// Handler returns fn's routes alone, without health or metrics routes but with the context's
// logger and request metrics (what the local router delivers events to).
func (fn *Function) Handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	fn.Routes(mux)
	return instrument(logging.FromContext(ctx), mux)
}

// Main runs one function binary: it reads the function's settings S (a struct embedding Env) from
// the environment, builds the logger, calls build and serves what it returns until SIGTERM. It
// exits non-zero when reading the settings, build or the server fails:
//
//	func main() { runtime.Main(statussync.Name, build) }
//	func build(ctx context.Context, s *settings) (*runtime.Function, error) { … }
func Main[S any, P Settings[S]](name string, build func(ctx context.Context, s P) (*Function, error)) {
	if err := run(name, build); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run[S any, P Settings[S]](name string, build func(ctx context.Context, s P) (*Function, error)) error {
	s := P(new(S))
	if err := envconfig.Process("", s); err != nil {
		return fmt.Errorf("read environment: %w", err)
	}
	env := s.base()
	logger, err := NewLogger(env.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	logger.Infow("starting", "function", name, "version", version.Version, "commit", version.Commit)
	ctx := logging.WithLogger(signals.NewContext(), logger.Named(name))
	fn, err := build(ctx, s)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if fn.Close != nil {
		defer func() { _ = fn.Close() }()
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(env.Port))
	if err != nil {
		return err
	}
	return Serve(ctx, ln, env.DrainTimeout, env.Timeouts, fn)
}

// NewLogger builds the JSON production logger at level.
func NewLogger(level string) (*zap.SugaredLogger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("OMNI_LOG_LEVEL: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	l, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return l.Sugar(), nil
}

// Serve serves fn on ln with timeouts t until ctx is done, then stops accepting, lets in-flight
// requests finish for up to drain, and returns.
func Serve(ctx context.Context, ln net.Listener, drain time.Duration, t Timeouts, fns ...*Function) error {
	srv := NewServer(ctx, Mux(ctx, fns...), t)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logging.FromContext(ctx).Infow("serving", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Mux serves the functions' handlers plus /healthz, /readyz (every check of every function)
// and /metrics, with the context's logger in every request context and request metrics.
func Mux(ctx context.Context, fns ...*Function) http.Handler {
	logger := logging.FromContext(ctx)
	mux := http.NewServeMux()
	var checks []Check
	for _, fn := range fns {
		checks = append(checks, fn.Checks...)
		if fn.Routes != nil {
			fn.Routes(mux)
		}
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		cctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		for _, c := range checks {
			if err := c.Func(cctx); err != nil {
				http.Error(w, c.Name+": "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.Handler())
	return instrument(logger, limitQuery(mux))
}

// MaxQueryParams is the most query parameters a request may have. Go's URL parser drops all
// of them past 10,000 (GODEBUG urlmaxqueryparams), which would serve the request with
// defaults; it is refused instead.
const MaxQueryParams = 10_000

// limitQuery answers 400 to requests with more than MaxQueryParams query parameters.
func limitQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := strings.Count(r.URL.RawQuery, "&") + strings.Count(r.URL.RawQuery, ";") + 1; n > MaxQueryParams {
			httpapi.Error(w, r, jobs.Invalid("query", "%d query parameters; at most %d", n, MaxQueryParams))
			return
		}
		next.ServeHTTP(w, r)
	})
}

var (
	metricsOnce sync.Once
	reqTotal    *prometheus.CounterVec
	reqSeconds  *prometheus.HistogramVec
)

func instrument(logger *zap.SugaredLogger, next http.Handler) http.Handler {
	metricsOnce.Do(func() {
		reqTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omni_http_requests_total", Help: "HTTP requests by method, route and status code.",
		}, []string{"method", "route", "code"})
		reqSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omni_http_request_seconds", Help: "HTTP request latency by method and route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method", "route"})
		prometheus.MustRegister(reqTotal, reqSeconds)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r = r.WithContext(logging.WithLogger(r.Context(), logger))
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		reqTotal.WithLabelValues(r.Method, route, strconv.Itoa(sw.code)).Inc()
		reqSeconds.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush lets streaming handlers flush through the metrics wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
