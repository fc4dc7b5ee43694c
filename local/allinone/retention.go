package allinone

import (
	"context"
	"time"

	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// purge removes, every `every`, the SQLite store's jobs and logs older than r says (docs/logs.md),
// until ctx ends. In a cluster the same settings are Cassandra table TTLs (`omni db migrate`).
func purge(ctx context.Context, s *sqlite.Store, r store.RetentionEnv, every time.Duration) {
	if every <= 0 || (r.JobRetention <= 0 && r.LogRetention <= 0) {
		return
	}
	log := logging.FromContext(ctx)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var jobsBefore, logsBefore time.Time
		now := time.Now()
		if r.JobRetention > 0 {
			jobsBefore = now.Add(-r.JobRetention)
		}
		if r.LogRetention > 0 {
			logsBefore = now.Add(-r.LogRetention)
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
