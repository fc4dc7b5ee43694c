package allinone

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/functions/legacy/legacy"
	"github.com/omnibuildplatform/omni-orchestrator/functions/log-archive/logarchive"
	"github.com/omnibuildplatform/omni-orchestrator/functions/notify/notify"
	"github.com/omnibuildplatform/omni-orchestrator/functions/query/query"
	"github.com/omnibuildplatform/omni-orchestrator/functions/status-sync/statussync"
	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/callback"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Store is the local mode's store: jobs and logs (SQLite, or the local Cassandra).
type Store interface {
	store.Store
	store.LogStore
	store.SlotStore
}

// Deps are the pieces the local host builds once and hands to every function: what each
// function's own binary builds for itself in a cluster.
type Deps struct {
	Store     Store
	Clusters  *kube.Clusters
	Catalogue *manifest.Source
	Users     *auth.Authenticator
	Emitter   events.Emitter
}

// The functions' own settings, named so that one struct can embed them all.
type (
	SubmitSettings     = submit.Settings
	StatusSyncSettings = statussync.Settings
	QuerySettings      = query.Settings
	NotifySettings     = notify.Settings
	LegacySettings     = legacy.Settings
)

// settings are every setting the functions the local host runs read (the same variables as
// their binaries; docs/configuration.md), plus the local host's own.
type settings struct {
	auth.UsersEnv
	events.SinkEnv
	manifest.TemplatesEnv
	kube.ClustersEnv
	store.RetentionEnv
	queue.PolicyEnv
	callback.GuardEnv
	SubmitSettings
	StatusSyncSettings
	QuerySettings
	NotifySettings
	LegacySettings
	legacy.ReleasesEnv
	// Store is sqlite:<path> or a cassandra:// URL. Default: SQLite in the data folder.
	Store string `envconfig:"OMNI_STORE"`
	// CassandraUsername and CassandraPassword authenticate to a cassandra:// store (default none).
	CassandraUsername string `envconfig:"OMNI_CASSANDRA_USERNAME"`
	CassandraPassword string `envconfig:"OMNI_CASSANDRA_PASSWORD"`
	// PurgeInterval is how often the SQLite store's old jobs and logs are purged. Default 1h.
	PurgeInterval time.Duration `envconfig:"OMNI_PURGE_INTERVAL" default:"1h"`
}

// function is one function the local host runs.
type function struct {
	// name is its Knative Service name: the subscriber ref of its Trigger in config/.
	name string
	// public: its routes are also served on the public port (the HTTPRoute of config/).
	public bool
	fn     *runtime.Function
}

// logArchiveFault, when set, is called after each chunk the all-in-one's log-archive stores.
var logArchiveFault atomic.Pointer[func(ctx context.Context, c store.LogChunk) error]

// SetLogArchiveFault installs f, called after each chunk log-archive stores in this process; an
// error aborts that delivery there, as if the function had crashed (the Broker then retries).
// The end-to-end tests kill an archive half-way with it. nil removes it.
func SetLogArchiveFault(f func(ctx context.Context, c store.LogChunk) error) {
	if f == nil {
		logArchiveFault.Store(nil)
		return
	}
	logArchiveFault.Store(&f)
}

// functions builds the functions the local host runs, each from the shared pieces d and its own
// settings, with the local mode's values for what the environment leaves unset.
func (m *Main) functions(ctx context.Context, s *settings, d *Deps, dataDir string, self []string) ([]function, error) {
	ready := runtime.Check{Name: "store", Func: d.Store.Ping}

	// The callback guard of submit and notify: loopback allowed unless OMNI_CALLBACK_DENY says
	// otherwise (the receivers of a local run, and the tests' httptest servers, are on this
	// machine), but never this process's own listeners (notify would call itself).
	guard, err := s.GuardEnv.Guard()
	if err != nil {
		return nil, err
	}
	if _, set := os.LookupEnv("OMNI_CALLBACK_DENY"); !set {
		guard = guard.WithoutLoopback()
	}
	if guard, err = guard.DenySelf(self...); err != nil {
		return nil, err
	}

	// The queue policy: OMNI_QUEUE_POLICY, else <data dir>/queue.yaml (the default policy while
	// it does not exist), reloaded when it changes.
	qs := s.PolicyEnv
	if qs.PolicyFile == "" {
		qs.PolicyFile = filepath.Join(dataDir, "queue.yaml")
	}
	policy, err := qs.Open()
	if err != nil {
		return nil, fmt.Errorf("queue policy: %w", err)
	}
	go policy.Watch(ctx)
	m.Policy = policy
	m.Submit = submit.New(s.SubmitSettings, submit.Deps{
		Store:     d.Store,
		Catalogue: func() submit.Catalogue { return d.Catalogue.Current() },
		Clusters:  submit.KubePlacer{Clusters: d.Clusters},
		Emitter:   d.Emitter,
		Guard:     guard,
		Authn:     d.Users.Middleware,
		Queue:     submit.QueueDeps{Store: d.Store, Instances: submit.KubeInstances{Clusters: d.Clusters}, Policy: policy.Current},
	})
	submitFn := m.Submit.Function(ready)

	q, err := query.New(ctx, s.QuerySettings, query.Deps{
		Store:     d.Store,
		Logs:      d.Store,
		Catalogue: func() query.Catalogue { return d.Catalogue.Current() },
		Live:      query.KubeLogs{Clusters: d.Clusters},
		Authn:     d.Users.Middleware,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query.Name, err)
	}

	m.StatusSync = statussync.New(s.StatusSyncSettings, statussync.Deps{Store: d.Store, Observer: statussync.KubeObserver{Clusters: d.Clusters}, Emitter: d.Emitter})

	archive := logarchive.New(logarchive.Deps{Logs: d.Store, Jobs: d.Store, Clusters: logarchive.KubeClusters{Clusters: d.Clusters}})
	archive.AfterChunk = func(ctx context.Context, c store.LogChunk) error {
		if f := logArchiveFault.Load(); f != nil {
			return (*f)(ctx, c)
		}
		return nil
	}

	// notify: the subscriptions file <data dir>/subscriptions.yaml.
	ns := s.NotifySettings
	if _, set := os.LookupEnv("OMNI_NOTIFY_SUBSCRIPTIONS"); !set {
		ns.Subscriptions = filepath.Join(dataDir, "subscriptions.yaml")
	}
	n, err := notify.New(ctx, ns, notify.Deps{Jobs: d.Store, Guard: guard})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", notify.Name, err)
	}

	// legacy: the predecessor's API, calling this process's own public /v1 API unless
	// OMNI_LEGACY_SUBMIT_URL / OMNI_LEGACY_QUERY_URL say otherwise.
	ls := s.LegacySettings
	for name, set := range map[string]*string{"OMNI_LEGACY_SUBMIT_URL": &ls.SubmitURL, "OMNI_LEGACY_QUERY_URL": &ls.QueryURL} {
		if _, ok := os.LookupEnv(name); !ok {
			*set = m.URL
		}
	}
	releases, err := s.ReleasesEnv.Open()
	if err != nil {
		return nil, err
	}
	go func() { _ = releases.Watch(ctx) }()
	lh, err := legacy.New(ls, legacy.Deps{Releases: releases.Current})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", legacy.Name, err)
	}

	return []function{
		{name: submit.Name, public: true, fn: submitFn},
		{name: legacy.Name, public: true, fn: lh.Function()},
		{name: query.Name, public: true, fn: q.Function(ready)},
		{name: statussync.Name, fn: m.StatusSync.Function(ready)},
		{name: logarchive.Name, fn: archive.Function(ready)},
		{name: notify.Name, fn: n.Function()},
	}, nil
}
