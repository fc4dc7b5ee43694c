package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// A follow stream is Server-Sent Events (text/event-stream):
//
//	retry: 2000                        once, at the start
//	event: state                       where the stream reads from now (see followState)
//	data: {"state":"waiting"}
//
//	id: <cursor>                       one event per batch of lines; id is the cursor after them,
//	event: lines                       so an EventSource that reconnects sends it back as
//	data: {"lines":[{"n":1,"time":"…","text":"…"},…]}   Last-Event-ID and misses nothing
//
//	: heartbeat                        a comment when the stream was silent for Heartbeat
//
//	id: <cursor>
//	event: end                         last event: the job has ended and the step is archived
//	data: {"cursor":"…","complete":true,"incomplete":false}
//
//	event: error                       the stream failed (it then closes; reconnect to resume)
//	data: {"title":"…","detail":"…"}
const (
	// followBatchLines and followBatchBytes bound one `lines` event.
	followBatchLines = 1000
	followBatchBytes = 256 << 10
	// retryMillis is the reconnection delay the stream asks of EventSource clients.
	retryMillis = 2000
)

// followState is the data of a `state` event.
type followState struct {
	// State is "waiting" (the step's container has not started yet, or its log is not archived
	// yet after it ended), "live" (lines come from the cluster as the container writes them)
	// or "archive" (lines come from the archive); "push" for the lines the worker pushed
	// (?source=push), the only state of such a stream.
	State string `json:"state"`
}

// followEnd is the data of the `end` event.
type followEnd struct {
	Cursor     string `json:"cursor"`
	Complete   bool   `json:"complete"`
	Incomplete bool   `json:"incomplete"`
	Reason     string `json:"reason,omitempty"`
}

// follower runs one follow stream.
type follower struct {
	h    *LogHandler
	job  *jobs.Job
	step string
	// stream is "" (the cluster's log) or streamPushed; cursors name it.
	stream string
	pos    logs.Pos
	w      io.Writer
	rc     *http.ResponseController
	state  string
	// lastWrite is when something was last sent (for heartbeats).
	lastWrite time.Time
	// batch collects lines before they are sent as one event.
	batch      []LogLine
	batchBytes int
}

func (h *LogHandler) follow(w http.ResponseWriter, r *http.Request, lr logRequest) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if h.Stop != nil {
		go func() {
			select {
			case <-h.Stop:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	f := &follower{h: h, job: lr.job, step: lr.step, stream: lr.stream, pos: lr.pos, w: w, rc: http.NewResponseController(w)}
	// An EventSource reconnects whenever a stream ends; once everything was sent, 204 tells it
	// to stop (the spec's way to end an EventSource).
	if lr.resumed && lr.stream == streamPushed {
		if lr.job.Status.Terminal() {
			_, err := logs.Pushed(ctx, h.Store, lr.job.ID, lr.step, lr.pos).Next()
			if errors.Is(err, io.EOF) {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			if err != nil {
				httpapi.Error(w, r, err)
				return
			}
		}
	} else if lr.resumed {
		st, err := h.logStep(ctx, lr.job.ID, lr.step)
		if err != nil {
			httpapi.Error(w, r, err)
			return
		}
		if final(st) {
			more := false
			if !atArchiveEnd(st, lr.pos) {
				_, err = h.archiveLines(ctx, lr.job.ID, lr.step, lr.pos).Next()
				if more = err == nil; errors.Is(err, io.EOF) {
					err = nil
				}
			}
			if err != nil {
				httpapi.Error(w, r, err)
				return
			}
			if !more {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", retryMillis)
	if err := f.flush(); err != nil {
		return
	}
	run := f.run
	if lr.stream == streamPushed {
		run = f.runPushed
	}
	err := run(ctx)
	switch {
	case err == nil:
	case ctx.Err() != nil && r.Context().Err() == nil:
		// Stopping: end the stream; the client reconnects with its last cursor.
	case r.Context().Err() != nil:
		// The client went away.
	default:
		logging.FromContext(ctx).Errorw("follow log", "job", lr.job.ID, "step", lr.step, "error", err)
		detail := "internal error; see the server log"
		if code := httpapi.Status(err); code < 500 || code == http.StatusServiceUnavailable {
			detail = err.Error()
		}
		_ = f.event("", "error", httpapi.Problem{Title: "follow failed", Status: httpapi.Status(err), Detail: detail})
	}
}

// run sends the step's log from f.pos: live from the cluster while its container runs, then
// from the archive, and returns once the job has ended and the step is archived.
func (f *follower) run(ctx context.Context) error {
	h := f.h
	liveDone := false // the container's log was read to its end, or can no longer be read live
	backoff := h.pollMin()
	for {
		st, err := h.logStep(ctx, f.job.ID, f.step)
		if err != nil {
			return err
		}
		if final(st) {
			return f.finish(ctx, st)
		}
		j, err := h.Jobs.GetJob(ctx, f.job.ID)
		if err != nil {
			return fmt.Errorf("read job %s: %w", f.job.ID, err)
		}
		j = viewOf(j, f.step) // the attempt followed, even once the job has gone on to another
		f.job = j
		if !liveDone && h.Live != nil {
			state, err := h.Live.StepState(ctx, j, f.step)
			switch {
			case err != nil:
				// The cluster may be unreachable for a while; the archive takes over at the end.
				logging.FromContext(ctx).Debugw("step state", "job", j.ID, "step", f.step, "error", err)
			case state.started():
				before := f.pos.N
				done, err := f.live(ctx, state)
				if err != nil {
					return err
				}
				if f.pos.N != before {
					backoff = h.pollMin()
				}
				if done {
					liveDone = true
					continue
				}
				// The stream broke off (or did not open): wait a little, then try again.
			case j.Status.Terminal():
				// The job ended and the container never ran or its pod is gone: only the archive
				// has (or will have) the rest.
				liveDone = true
			}
		}
		if j.Status.Terminal() && f.neverRan(ctx, j) {
			return f.end(store.LogStep{Complete: true})
		}
		if err := f.setState("waiting"); err != nil {
			return err
		}
		if err := f.sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, h.pollMax())
	}
}

// runPushed sends the lines the worker pushed for the step from f.pos, as they are stored, and
// returns once the job has ended and they are read to their end (or to a push that is missing).
// The job is read before the lines: an ended job takes no more pushes, so a read that starts
// after the job has ended sees every push there will be.
func (f *follower) runPushed(ctx context.Context) error {
	h := f.h
	if err := f.setState(streamPushed); err != nil {
		return err
	}
	backoff := h.pollMin()
	for {
		j, err := h.Jobs.GetJob(ctx, f.job.ID)
		if err != nil {
			return fmt.Errorf("read job %s: %w", f.job.ID, err)
		}
		j = viewOf(j, f.step) // the attempt followed: its pushes end when it has ended
		f.job = j
		before := f.pos.N
		src := logs.Pushed(ctx, h.Store, j.ID, f.step, f.pos)
		if err := f.sendAll(src); err != nil {
			return err
		}
		if j.Status.Terminal() {
			return f.end(pushedEnd(src))
		}
		if f.pos.N != before {
			backoff = h.pollMin()
		}
		if err := f.sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, h.pollMax())
	}
}

// neverRan reports whether the step of the ended job j never started, so that it has no log,
// and the log-archive has done its work for the job (every step that did start is archived).
// A step without a log may have no archive state of its own.
func (f *follower) neverRan(ctx context.Context, j *jobs.Job) bool {
	if f.pos.N > 0 {
		return false
	}
	archived := map[string]bool{}
	all, err := f.h.Store.LogSteps(ctx, j.ID)
	if err != nil {
		return false
	}
	for _, s := range all {
		archived[s.Step] = final(s)
	}
	step, n := jobs.SplitLogStepKey(f.step)
	for _, s := range j.Steps {
		if s.Name == step {
			if s.Status != jobs.StepWaiting || s.StartedAt != nil {
				return false
			}
		} else if (s.Status != jobs.StepWaiting || s.StartedAt != nil) && !archived[jobs.LogStepKey(s.Name, n)] {
			return false
		}
	}
	return true
}

// finish sends what the final archive holds after f.pos, then the end event.
func (f *follower) finish(ctx context.Context, st store.LogStep) error {
	if !atArchiveEnd(st, f.pos) {
		if err := f.setState("archive"); err != nil {
			return err
		}
		if err := f.sendAll(f.h.archiveLines(ctx, f.job.ID, f.step, f.pos)); err != nil {
			return err
		}
	}
	return f.end(st)
}

func (f *follower) end(st store.LogStep) error {
	c := f.h.Tokens.sealCursor(f.job.ID, f.step, f.stream, f.pos)
	return f.event(c, "end", followEnd{Cursor: c, Complete: st.Complete, Incomplete: !st.Complete && st.Incomplete, Reason: st.Reason})
}

// streamItem is a line of a live stream and the position after it.
type streamItem struct {
	line LogLine
	pos  logs.Pos
}

// live sends the step's log from the cluster, following it while the container runs. It returns
// true when the log was read to its end after the container ended (or the pod went away),
// false when the stream broke off and may be opened again.
func (f *follower) live(ctx context.Context, state StepState) (bool, error) {
	h := f.h
	follow := state.Phase == ContainerRunning
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := f.setState("live"); err != nil {
		return false, err
	}
	items := make(chan streamItem, 256)
	var readErr error
	from := f.pos
	go func() {
		defer close(items)
		// Opened here rather than before the loop below: a kubelet (and kwok) answers a follow
		// request only once the container has written something, so the open lasts as long as
		// the container is silent; meanwhile the loop still sees the container end and sends
		// heartbeats.
		src, err := h.clusterLines(sctx, f.job, state.Pod, f.step, from, follow)
		if err != nil {
			readErr = fmt.Errorf("open the log of %s/%s: %w", state.Pod, f.step, err)
			return
		}
		defer src.Close()
		for {
			l, err := src.Next()
			if err != nil {
				readErr = err
				return
			}
			select {
			case items <- streamItem{line: logLine(l), pos: src.Pos()}:
			case <-sctx.Done():
				readErr = sctx.Err()
				return
			}
		}
	}()
	var check <-chan time.Time
	if follow {
		t := time.NewTicker(h.livePoll())
		defer t.Stop()
		check = t.C
	}
	beat := time.NewTicker(h.heartbeat())
	defer beat.Stop()
	ended := ContainerRunning // what the last check saw
	for {
		select {
		case it, ok := <-items:
			if !ok {
				if err := f.sendBatch(); err != nil {
					return false, err
				}
				if ctx.Err() != nil {
					return false, ctx.Err()
				}
				switch {
				case ended == NoPod:
					return true, nil
				case ended == ContainerTerminated:
					// Stopped by us, maybe before the runtime gave the last lines: read the
					// ended container's log once more, from where the stream stopped.
					return f.live(ctx, StepState{Pod: state.Pod, Phase: ContainerTerminated})
				case errors.Is(readErr, io.EOF) && !follow:
					return true, nil
				case errors.Is(readErr, io.EOF):
					// A follow stream ends by itself when the container has ended (a real
					// kubelet), or when a connection on the way broke: ask which.
					s, err := h.Live.StepState(ctx, f.job, f.step)
					return err == nil && (s.Phase == ContainerTerminated || s.Phase == NoPod), nil
				default:
					logging.FromContext(ctx).Debugw("live log broke off", "job", f.job.ID, "step", f.step, "error", readErr)
					return false, nil
				}
			}
			if err := f.add(it.line, it.pos); err != nil {
				return false, err
			}
			if len(items) == 0 {
				if err := f.sendBatch(); err != nil {
					return false, err
				}
			}
		case <-check:
			s, err := h.Live.StepState(ctx, f.job, f.step)
			if err == nil && (s.Phase == ContainerTerminated || s.Phase == NoPod) {
				ended, check = s.Phase, nil
				cancel() // the reader closes items once it has stopped
			}
		case <-beat.C:
			if err := f.heartbeatIfQuiet(); err != nil {
				return false, err
			}
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// sendAll sends the lines src holds now, to its end.
func (f *follower) sendAll(src logs.Lines) error {
	for {
		l, err := src.Next()
		if errors.Is(err, io.EOF) {
			return f.sendBatch()
		}
		if err != nil {
			return err
		}
		if err := f.add(logLine(l), src.Pos()); err != nil {
			return err
		}
	}
}

// add queues a line (p is the position after it) and sends the batch when it is full.
func (f *follower) add(l LogLine, p logs.Pos) error {
	f.batch = append(f.batch, l)
	f.batchBytes += len(l.Text)
	f.pos = p
	if len(f.batch) >= followBatchLines || f.batchBytes >= followBatchBytes {
		return f.sendBatch()
	}
	return nil
}

func (f *follower) sendBatch() error {
	if len(f.batch) == 0 {
		return nil
	}
	err := f.event(f.h.Tokens.sealCursor(f.job.ID, f.step, f.stream, f.pos), "lines", struct {
		Lines []LogLine `json:"lines"`
	}{f.batch})
	f.batch, f.batchBytes = f.batch[:0], 0
	return err
}

// setState sends a state event when the state changes.
func (f *follower) setState(s string) error {
	if f.state == s {
		return nil
	}
	f.state = s
	return f.event("", "state", followState{State: s})
}

// event writes one SSE event and flushes it.
func (f *follower) event(id, name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if id != "" {
		fmt.Fprintf(f.w, "id: %s\n", id)
	}
	fmt.Fprintf(f.w, "event: %s\ndata: %s\n\n", name, b) // JSON has no raw newlines
	return f.flush()
}

func (f *follower) flush() error {
	f.lastWrite = time.Now()
	if err := f.rc.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

func (f *follower) heartbeatIfQuiet() error {
	if time.Since(f.lastWrite) < f.h.heartbeat() {
		return nil
	}
	if _, err := io.WriteString(f.w, ": heartbeat\n\n"); err != nil {
		return err
	}
	return f.flush()
}

// sleep waits for d (sending heartbeats while it waits), or until ctx ends.
func (f *follower) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	beat := time.NewTicker(f.h.heartbeat())
	defer beat.Stop()
	for {
		if err := f.heartbeatIfQuiet(); err != nil {
			return err
		}
		select {
		case <-t.C:
			return nil
		case <-beat.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (h *LogHandler) pollMin() time.Duration { return orDefault(h.PollMin, 200*time.Millisecond) }
func (h *LogHandler) pollMax() time.Duration { return orDefault(h.PollMax, 2*time.Second) }
func (h *LogHandler) livePoll() time.Duration {
	return orDefault(h.LivePoll, time.Second)
}
func (h *LogHandler) heartbeat() time.Duration { return orDefault(h.Heartbeat, 15*time.Second) }

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
