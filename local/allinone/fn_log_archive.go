package allinone

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/kelseyhightower/envconfig"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/functions/log-archive/logarchive"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"github.com/omnibuildplatform/omni-orchestrator/shared/wiring"
)

func init() { registerEventFunction(logarchive.Name, newLogArchive) }

// Retention is how long the local mode keeps jobs and logs (docs/logs.md). In a cluster the
// same variables set the Cassandra table TTLs at `omni db migrate`.
type Retention struct {
	// Jobs: finished jobs are purged this long after their last change. Default 0: kept for ever.
	Jobs time.Duration `envconfig:"OMNI_JOB_RETENTION" default:"0"`
	// Logs: log chunks and log states are purged this long after they were stored. Default 720h.
	Logs time.Duration `envconfig:"OMNI_LOG_RETENTION" default:"720h"`
	// Every is how often the purge runs. Default 1h.
	Every time.Duration `envconfig:"OMNI_PURGE_INTERVAL" default:"1h"`
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

// newLogArchive builds log-archive with the fault hook, and starts the periodic purge of the
// SQLite store (Cassandra expires rows by itself).
func newLogArchive(ctx context.Context, env wiring.Env, d *wiring.Deps) (*runtime.Function, error) {
	h := &logarchive.Handler{Logs: d.Logs, Jobs: d.Store, Clusters: logarchive.KubeClusters{Clusters: d.Clusters},
		AfterChunk: func(ctx context.Context, c store.LogChunk) error {
			if f := logArchiveFault.Load(); f != nil {
				return (*f)(ctx, c)
			}
			return nil
		}}
	fn, err := logarchive.NewFunctionFor(ctx, h, d)
	if err != nil {
		return nil, err
	}
	var r Retention
	if err := envconfig.Process("", &r); err != nil {
		return nil, err
	}
	if s, ok := d.Store.(*sqlite.Store); ok {
		go purge(ctx, s, r)
	}
	return fn, nil
}

// purge runs Purge at r.Every until ctx ends.
func purge(ctx context.Context, s *sqlite.Store, r Retention) {
	if r.Every <= 0 || (r.Jobs <= 0 && r.Logs <= 0) {
		return
	}
	log := logging.FromContext(ctx)
	t := time.NewTicker(r.Every)
	defer t.Stop()
	for {
		var jobsBefore, logsBefore time.Time
		now := time.Now()
		if r.Jobs > 0 {
			jobsBefore = now.Add(-r.Jobs)
		}
		if r.Logs > 0 {
			logsBefore = now.Add(-r.Logs)
		}
		p, err := s.Purge(ctx, jobsBefore, logsBefore)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warnw("purge of old jobs and logs failed", "error", err)
		case p != (sqlite.Purged{}):
			log.Infow("purged old jobs and logs", "jobs", p.Jobs, "logChunks", p.LogChunks, "logSteps", p.LogSteps)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
