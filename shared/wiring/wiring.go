// Package wiring builds, from the environment, the dependencies the functions share: the store,
// the build clusters, the job type catalogue, the authenticator and the Broker sender. Every
// function's main and the local all-in-one use it, so a setting means the same everywhere.
package wiring

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"github.com/kelseyhightower/envconfig"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

// Env is the configuration shared by the functions. Each field names its variable and default;
// the Knative Services in config/ set the same variables.
type Env struct {
	// Store is "sqlite:<path>" or "cassandra://host[:port][,host…]/<keyspace>[?consistency=quorum]".
	// Default sqlite:omni.db (the functions in a cluster always set a Cassandra URL).
	Store string `envconfig:"OMNI_STORE" default:"sqlite:omni.db"`
	// CassandraUsername and CassandraPassword authenticate to Cassandra (default none).
	CassandraUsername string `envconfig:"OMNI_CASSANDRA_USERNAME"`
	CassandraPassword string `envconfig:"OMNI_CASSANDRA_PASSWORD"`
	// ClustersDir holds the per-arch cluster configs x86_64.yaml and aarch64.yaml. Default /etc/omni/clusters.
	ClustersDir string `envconfig:"OMNI_CLUSTERS_DIR" default:"/etc/omni/clusters"`
	// TemplatesDir holds the job types; empty (the default) uses the built-in set.
	TemplatesDir string `envconfig:"OMNI_TEMPLATES_DIR"`
	// Htpasswd is the bcrypt htpasswd file. Default /etc/omni/auth/htpasswd.
	Htpasswd string `envconfig:"OMNI_HTPASSWD" default:"/etc/omni/auth/htpasswd"`
	// Users maps users to a role and services. Default /etc/omni/auth/users.yaml.
	Users string `envconfig:"OMNI_USERS" default:"/etc/omni/auth/users.yaml"`
	// Sink is the Broker ingress URL events are sent to (K_SINK, set by a SinkBinding); empty drops them.
	Sink string `envconfig:"K_SINK"`
	// PageTokenKey signs page tokens (base64, ≥ 32 bytes); every replica must share it.
	// Empty makes a random key: tokens then only work on the replica that made them.
	PageTokenKey string `envconfig:"OMNI_PAGE_TOKEN_KEY"`
	// MaxBodyBytes limits request bodies. Default 1048576.
	MaxBodyBytes int64 `envconfig:"OMNI_MAX_BODY_BYTES" default:"1048576"`
	// JobTTLSecondsAfterFinished is set on every Kubernetes Job. Default 3600.
	JobTTLSecondsAfterFinished int32 `envconfig:"OMNI_JOB_TTL_SECONDS_AFTER_FINISHED" default:"3600"`
	// ResyncGrace is how old a job must be before resync may call its objects gone. Default 1m.
	ResyncGrace time.Duration `envconfig:"OMNI_RESYNC_GRACE" default:"1m"`
	// DataDir is the local all-in-one's data folder, set by local/allinone and never read from
	// the environment; empty in the cluster. Functions put local-mode defaults there.
	DataDir string `ignored:"true"`
}

// OpenStore opens the store named by e.Store.
func (e Env) OpenStore(ctx context.Context) (store.Store, error) {
	kind, rest, _ := strings.Cut(e.Store, ":")
	switch kind {
	case "sqlite":
		return sqlite.Open(ctx, strings.TrimPrefix(rest, "//"))
	case "cassandra":
		cfg, err := e.CassandraConfig()
		if err != nil {
			return nil, err
		}
		return cassandra.Open(ctx, cfg)
	}
	return nil, fmt.Errorf("OMNI_STORE %q: want sqlite:<path> or cassandra://hosts/keyspace", e.Store)
}

// CassandraConfig parses a cassandra:// OMNI_STORE (see cassandra.ParseURL for its options).
func (e Env) CassandraConfig() (cassandra.Config, error) {
	cfg, err := cassandra.ParseURL(e.Store)
	if err != nil {
		return cfg, fmt.Errorf("OMNI_STORE: %w", err)
	}
	cfg.Username, cfg.Password = e.CassandraUsername, e.CassandraPassword
	return cfg, nil
}

// Clusters loads the build clusters.
func (e Env) Clusters() (*kube.Clusters, error) {
	return kube.LoadDir(e.ClustersDir)
}

// Catalogue loads the job types and keeps them reloaded on file change and SIGHUP.
func (e Env) Catalogue(ctx context.Context) (*manifest.Source, error) {
	if e.TemplatesDir == "" {
		return manifest.NewSource(templates.FS, "")
	}
	src, err := manifest.NewSource(nil, e.TemplatesDir)
	if err != nil {
		return nil, err
	}
	go src.WatchDir(ctx)
	go src.ReloadOnSIGHUP(ctx)
	return src, nil
}

// Auth loads the authenticator.
func (e Env) Auth() (*auth.Authenticator, error) {
	return auth.Load(e.Htpasswd, e.Users)
}

// Emitter is where functions send their events.
type Emitter interface {
	Emit(ctx context.Context, e event.Event) error
}

// Emitter returns the Broker sender, or one that drops events when K_SINK is unset.
func (e Env) Emitter(ctx context.Context) (Emitter, error) {
	if e.Sink == "" {
		logging.FromContext(ctx).Warn("K_SINK is not set: events are dropped")
		return events.Discard{}, nil
	}
	return events.NewSender(e.Sink)
}

// TokenKey returns the page token key.
func (e Env) TokenKey(ctx context.Context) ([]byte, error) {
	if e.PageTokenKey == "" {
		logging.FromContext(ctx).Warn("OMNI_PAGE_TOKEN_KEY is not set: page tokens are valid on this replica only")
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		return k, nil
	}
	k, err := base64.StdEncoding.DecodeString(e.PageTokenKey)
	if err != nil || len(k) < 32 {
		return nil, fmt.Errorf("OMNI_PAGE_TOKEN_KEY: want base64 of at least 32 bytes")
	}
	return k, nil
}

// Deps are the dependencies built once per process and shared by the functions it runs.
type Deps struct {
	Store store.Store
	// Logs is the same store's log side (both stores implement store.LogStore).
	Logs      store.LogStore
	Clusters  *kube.Clusters
	Catalogue *manifest.Source
	Auth      *auth.Authenticator
	Emitter   Emitter
	TokenKey  []byte
}

// Build opens every dependency named by e. Close the store when done.
func (e Env) Build(ctx context.Context) (*Deps, error) {
	var d Deps
	var err error
	if d.Catalogue, err = e.Catalogue(ctx); err != nil {
		return nil, fmt.Errorf("load job types: %w", err)
	}
	if d.Auth, err = e.Auth(); err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	go func() { _ = d.Auth.Watch(ctx) }() // mounted Secrets change in place
	if d.Emitter, err = e.Emitter(ctx); err != nil {
		return nil, err
	}
	if d.TokenKey, err = e.TokenKey(ctx); err != nil {
		return nil, err
	}
	if d.Clusters, err = e.Clusters(); err != nil {
		return nil, fmt.Errorf("load clusters: %w", err)
	}
	if d.Store, err = e.OpenStore(ctx); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	var ok bool
	if d.Logs, ok = d.Store.(store.LogStore); !ok {
		_ = d.Store.Close()
		return nil, fmt.Errorf("open store: %T keeps no logs", d.Store)
	}
	return &d, nil
}

// Constructor builds one function from the environment and the shared dependencies.
type Constructor func(ctx context.Context, env Env, d *Deps) (*runtime.Function, error)

// Main is the whole main of a function binary: read Env, build the dependencies, build the
// function with c and serve it (runtime.Main), closing the store on exit.
func Main(name string, c Constructor) {
	runtime.Main(name, func(ctx context.Context) (*runtime.Function, error) {
		var env Env
		if err := envconfig.Process("", &env); err != nil {
			return nil, fmt.Errorf("read environment: %w", err)
		}
		d, err := env.Build(ctx)
		if err != nil {
			return nil, err
		}
		fn, err := c(ctx, env, d)
		if err != nil {
			_ = d.Store.Close()
			return nil, err
		}
		fn.Close = d.Store.Close
		return fn, nil
	})
}
