package query

import (
	"context"
	"fmt"
	"net/url"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// The lines a worker pushed (logs.appended, stored by log-archive) are a stream of their own,
// selected by ?source=push on the page, follow and download of a step's log (docs/logs.md,
// "Pushed lines"). They are never merged with the log the cluster served: a worker's pushes are
// its own record (it may push some lines, all of them, or others), stamped by the worker, and
// nothing ties a pushed line to a line of the container's log; so a merge could only guess, and
// a wrong guess shows a line twice or loses one. Apart, each stream is numbered from 1 by
// shared/logs' rule, each line of it is served once, and a cursor names its stream.

// streamPushed is the value of ?source= (and of a cursor's stream) for the pushed lines.
const streamPushed = store.LogSourcePush

// streamOf returns the stream a request asks for: "" (the cluster's log, the default) or
// streamPushed.
func streamOf(q url.Values) (string, error) {
	switch s := q.Get("source"); s {
	case "", "cluster":
		return "", nil
	case streamPushed:
		return streamPushed, nil
	default:
		return "", jobs.Invalid("source", "want cluster (the log the cluster served, live or archived) or push (the lines the worker pushed), got %q", s)
	}
}

// errPushNotEnded answers a download of pushed lines while the job may still take pushes.
var errPushNotEnded = fmt.Errorf("the pushed lines are downloadable once the job has ended (read them meanwhile with ?source=push, as pages or with follow=true): %w", jobs.ErrConflict)

// pushGapReason says where a push is missing in the pushed lines of an ended job.
func pushGapReason(p logs.Pos) string {
	return fmt.Sprintf("a push of the worker was not stored (lines after line %d are missing)", p.N)
}

// pushedEnd is what the pushed lines read so far say, once the job has ended: whole (the read
// reached the last push) or with a push missing.
func pushedEnd(src *logs.ArchiveLines) store.LogStep {
	if src.Gap() {
		return store.LogStep{Incomplete: true, Reason: pushGapReason(src.Pos())}
	}
	return store.LogStep{Complete: true}
}

// PushedPage returns up to limit of the lines the worker pushed for the step, after pos.
// The page is complete (or incomplete, a push missing) when the job had ended before the lines
// were read and the page reaches their end: an ended job takes no more pushes.
func (h *LogHandler) PushedPage(ctx context.Context, j *jobs.Job, step string, pos logs.Pos, limit int) (LogPage, error) {
	page := LogPage{Step: step, Lines: []LogLine{}, Source: streamPushed}
	size := 0
	src := logs.Pushed(ctx, h.Store, j.ID, step, pos)
	end, atEnd, err := fill(src, func(l LogLine) bool {
		page.Lines = append(page.Lines, l)
		size += len(l.Text)
		return len(page.Lines) < limit && size < maxPageBytes
	})
	if err != nil {
		return page, err
	}
	page.Cursor = h.Tokens.sealCursor(j.ID, step, streamPushed, end)
	if j.Status.Terminal() && atEnd {
		st := pushedEnd(src)
		page.Complete, page.Incomplete, page.Reason = st.Complete, st.Incomplete, st.Reason
	}
	return page, nil
}
