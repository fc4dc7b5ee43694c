package allinone

import (
	"context"

	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
)

// catchUp runs, once the local host serves, what its PingSources would run at their first
// tick: the resync and the dispatch pass (repairing interrupted creations). When the previous
// run of the data folder died, it is what repairs it at once, not a minute later: the resync
// reads back every job the clusters moved on while nobody watched (the resumed clusters kept
// running them: local/platform Options.Persistent), and asks log-archive for the logs of every
// ended job not archived yet without waiting OMNI_ARCHIVE_GRACE
// (statussync.Handler.ResyncAfterRestart), since the Broker stand-in's queue, which held any
// archive still due, died with that run; the dispatch pass places the jobs still queued. On a
// first start it finds nothing to do.
func (m *Main) catchUp(ctx context.Context) {
	log := logging.FromContext(ctx)
	rep, err := m.StatusSync.ResyncAfterRestart(ctx)
	if err != nil {
		log.Warnw("resync at start failed (the periodic resync will retry)", "error", err)
	} else if rep.Checked > 0 {
		log.Infow("resync at start", "checked", rep.Checked, "changed", rep.Changed, "failed", rep.Failed, "logsRequested", rep.LogsRequested)
	}
	if _, err := m.Submit.Dispatch(ctx, submit.DispatchOptions{Repair: true, NoWait: true}); err != nil && ctx.Err() == nil {
		log.Warnw("dispatch pass at start failed (the periodic pass will retry)", "error", err)
	}
}
