package allinone

import (
	"context"
	"time"

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
// archive still due, died with that run; the dispatch pass places the jobs still queued, and
// creates the objects the dead run did not (again once they are due for it). With no job in
// flight (a first start) it stops after the resync, which found nothing.
func (m *Main) catchUp(ctx context.Context) {
	log := logging.FromContext(ctx)
	rep, err := m.StatusSync.ResyncAfterRestart(ctx)
	switch {
	case err != nil:
		log.Warnw("resync at start failed (the periodic resync will retry)", "error", err)
	case rep.Checked == 0:
		return // no job in flight: nothing to catch up with
	default:
		log.Infow("resync at start", "checked", rep.Checked, "changed", rep.Changed, "failed", rep.Failed, "logsRequested", rep.LogsRequested)
	}
	m.repairPass(ctx)
	// A job the dead run had placed but whose objects it had not created yet is repaired once
	// it was placed RepairDelay ago: repair it then, not at the next periodic pass (a minute,
	// by which the resync may have given it up for lost and queued it again).
	t := time.NewTimer(m.Submit.Dispatcher.RepairDelay())
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
		m.repairPass(ctx)
	}
}

// repairPass runs a dispatch pass with repairs.
func (m *Main) repairPass(ctx context.Context) {
	if _, err := m.Submit.Dispatch(ctx, submit.DispatchOptions{Repair: true, NoWait: true}); err != nil && ctx.Err() == nil {
		logging.FromContext(ctx).Warnw("dispatch pass at start failed (the periodic pass will retry)", "error", err)
	}
}
