// Package logarchive is the core of the log-archive function. When a job has ended it streams
// the log of every step container from the job's cluster, stores it in chunks, records each
// step's archive state, removes the pod finalizer that held the pods for it, and replies
// logs.archived. It also stores the lines workers push while they run (logs.appended).
//
// Exactly once: a step is always re-read from its first line and cut into chunks by
// shared/logs.Chunker, which numbers the same stream the same way every time; PutLogChunk
// keeps the first write of each number. So a redelivered event, or an archive that died half
// way, ends with every line stored once (docs/logs.md).
package logarchive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Name is the function's name: its Knative Service, and the source of the events it emits.
const Name = "log-archive"

// Store is what log-archive needs of the log store.
type Store interface {
	PutLogChunk(ctx context.Context, c store.LogChunk) error
	LogChunks(ctx context.Context, jobID, step, source string, after int64, limit int) ([]store.LogChunk, error)
	PutLogStep(ctx context.Context, s store.LogStep) error
	LogSteps(ctx context.Context, jobID string) ([]store.LogStep, error)
}

// Jobs reads job records (to check pushed lines against their job) and records that a job's
// logs are archived (jobs.Job.LogsArchived).
type Jobs interface {
	GetJob(ctx context.Context, id string) (*jobs.Job, error)
	UpdateJob(ctx context.Context, id string, fn func(*jobs.Job) (bool, error)) (*jobs.Job, bool, error)
}

// Cluster is what log-archive needs of one build cluster (*kube.Cluster is one).
type Cluster interface {
	// Pods lists the pods of a job in its namespace.
	Pods(ctx context.Context, namespace, jobID string) ([]corev1.Pod, error)
	// StreamLogs opens the log of one container, each line prefixed with its timestamp
	// (log-archive reads it whole: zero options).
	StreamLogs(ctx context.Context, namespace, pod, container string, o kube.LogOptions) (io.ReadCloser, error)
	// RemovePodFinalizer removes names.PodFinalizer from the pod if it is there; a pod that is
	// gone is fine.
	RemovePodFinalizer(ctx context.Context, namespace, pod string) error
}

// Clusters finds a build cluster by its engine instance name.
type Clusters interface {
	Cluster(name string) (Cluster, error)
}

// Handler is the log-archive function.
type Handler struct {
	Logs     Store
	Jobs     Jobs
	Clusters Clusters
	// AfterChunk, if set, is called after each archived chunk is stored; an error aborts the
	// archive there, as a crash would (tests use it).
	AfterChunk func(ctx context.Context, c store.LogChunk) error
	// MaxPushBytes bounds the text of one push. Default DefaultMaxPushBytes.
	MaxPushBytes int
	// MaxPushes bounds the pushes (seq) of one step, so a step's pushed text is at most
	// MaxPushes × MaxPushBytes. Default DefaultMaxPushes.
	MaxPushes int64
	// PodsGrace is how long after a job's end log-archive waits for pods to appear before it
	// takes a job with none for one whose steps never ran. Default DefaultPodsGrace.
	PodsGrace time.Duration
	// Now returns the time; default time.Now.
	Now func() time.Time
}

// DefaultPodsGrace: a Job deleted right after its creation (a cancel) can still get a pod for a
// few seconds, from a creation the Job controller had in flight; that pod runs until the garbage
// collector deletes it, and its steps write logs.
const DefaultPodsGrace = time.Minute

// errPodsMayAppear: an ended job has no pod yet, and one may still appear (DefaultPodsGrace).
// Retried: the Broker's backoff outlasts the grace.
var errPodsMayAppear = errors.New("no pod yet, and one may still appear")

// The bounds of pushed lines: 1 MiB per push, 64 pushes per step, so at most 64 MiB of pushed
// text per step (what a worker pushes is kept while the step runs; the archive is the whole log).
const (
	DefaultMaxPushBytes = 1 << 20
	DefaultMaxPushes    = 64
)

// errStillRunning: a step container of an ended job still runs (a cancelled pod that is being
// stopped), or its pod may still start it (live: a cancel is recorded before the garbage
// collector deletes the pods of the Job it deleted, and a kubelet may still start a container it
// was starting when the deletion came). Retried: the Broker's backoff gives it time to end, and
// its end changes the job's steps, which emits job.changed and delivers the job here again.
var errStillRunning = errors.New("still running")

// Receive handles one event: job.changed of an ended job (archive its logs) or logs.appended
// (store pushed lines). It answers 400 for events it can never use and an error (retry) when
// the store or the cluster fails.
func (h *Handler) Receive(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
	log := logging.FromContext(ctx).With(zap.String("event", e.ID()), zap.String("type", e.Type()))
	switch e.Type() {
	case events.TypeJobChanged, events.TypeLogsRequested:
		var d events.JobData
		if err := json.Unmarshal(e.Data(), &d); err != nil || d.Job == nil || d.ID == "" {
			return nil, jobs.Invalid("data", "%s: data is not a job: %v", Name, err)
		}
		// The event is a hint: the job is read from the store, so that an event claiming a
		// running job ended (forged, or stale) cannot have its pods released early.
		j, err := h.Jobs.GetJob(ctx, d.ID)
		switch {
		case errors.Is(err, jobs.ErrNotFound):
			log.Debugw("ignoring an event about an unknown job", "job", d.ID)
			return nil, protocol.ResultACK
		case err != nil:
			return nil, fmt.Errorf("%s: read job %s: %w", Name, d.ID, err)
		}
		if !j.Status.Terminal() {
			if len(j.Attempts) == 0 {
				log.Debugw("ignoring a job that has not ended", "job", j.ID, "status", j.Status)
				return nil, protocol.ResultACK
			}
			// A job sent back to the queue: the logs of the attempts the infrastructure lost.
			if err := h.archiveEarlier(ctx, j); err != nil {
				return nil, fmt.Errorf("%s: archive the earlier attempts of job %s: %w", Name, j.ID, err)
			}
			return nil, protocol.ResultACK
		}
		d.Job = j.Redacted()
		res, err := h.Archive(ctx, j)
		if err != nil {
			return nil, fmt.Errorf("%s: archive job %s: %w", Name, d.ID, err)
		}
		if !res.Settled() {
			return nil, protocol.ResultACK
		}
		if err := h.markArchived(ctx, d.ID); err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		reply, err := events.NewLogsArchivedEvent(Name, d.Job, res.Data(d.Job))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		return &reply, protocol.ResultACK
	case events.TypeLogsAppended:
		var d events.LogsAppendedData
		if err := json.Unmarshal(e.Data(), &d); err != nil {
			return nil, jobs.Invalid("data", "%s: data is not a logs.appended payload: %v", Name, err)
		}
		if err := h.Append(ctx, e.Subject(), d); err != nil {
			if errors.Is(err, jobs.ErrNotFound) {
				log.Debugw("ignoring lines pushed for an unknown job", "job", e.Subject())
				return nil, protocol.ResultACK
			}
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		return nil, protocol.ResultACK
	}
	return nil, jobs.Invalid("type", "%s: unexpected event type %q", Name, e.Type())
}

// markArchived records that the logs of ended job id are archived, which takes it off the
// resync's list (jobs.Job.NeedsResync). A job gone from the store needs nothing.
func (h *Handler) markArchived(ctx context.Context, id string) error {
	_, _, err := h.Jobs.UpdateJob(ctx, id, func(j *jobs.Job) (bool, error) {
		if j.LogsArchived || !j.Status.Terminal() {
			return false, nil
		}
		j.LogsArchived = true
		return true, nil
	})
	if err != nil && !errors.Is(err, jobs.ErrNotFound) {
		return fmt.Errorf("record the logs of job %s archived: %w", id, err)
	}
	return nil
}

// Result is the archive state of a job's steps after Archive, in the job's step order.
type Result struct {
	Steps []store.LogStep
}

// Settled reports whether the log of every step is archived, whole or as far as it could be.
func (r Result) Settled() bool {
	for _, s := range r.Steps {
		if !s.Complete && !s.Incomplete {
			return false
		}
	}
	return true
}

// Data is the logs.archived data of r for job j (its steps named by their names, whatever the
// attempt).
func (r Result) Data(j *jobs.Job) events.LogsArchivedData {
	d := events.LogsArchivedData{JobID: j.ID, Status: j.Status, Complete: true, Steps: []events.LogsStep{}}
	for _, s := range r.Steps {
		whole := s.Complete && !s.Incomplete
		d.Complete = d.Complete && whole
		name, _ := jobs.SplitLogStepKey(s.Step)
		d.Steps = append(d.Steps, events.LogsStep{Name: name, Bytes: s.Bytes, Lines: s.Lines,
			Complete: whole, Incomplete: !whole, Reason: s.Reason})
	}
	return d
}

// stepNames are the job's steps; a job without recorded steps has those of its pods.
func stepNames(j *jobs.Job, pods []corev1.Pod) []string {
	var names []string
	for _, s := range j.Steps {
		names = append(names, s.Name)
	}
	if len(names) > 0 {
		return names
	}
	for _, p := range pods {
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			if !slices.Contains(names, c.Name) {
				names = append(names, c.Name)
			}
		}
	}
	return names
}

// Archive stores the log of every step of the ended job j that is not archived yet, then
// removes the pod finalizer from its pods; it does the same first for j's earlier attempts
// (archiveEarlier), in case their own delivery was lost. A step already archived (by an earlier
// delivery) is not read again. A step whose pod or log is gone is recorded Incomplete with the
// reason; a step that never started is Complete with no line. The result is the current
// attempt's.
func (h *Handler) Archive(ctx context.Context, j *jobs.Job) (Result, error) {
	if err := h.archiveEarlier(ctx, j); err != nil {
		return Result{}, err
	}
	return h.archiveAttempt(ctx, j, j.CurrentAttempt())
}

// archiveEarlier archives the logs of j's earlier attempts (those the infrastructure lost,
// docs/queue.md), each step under jobs.LogStepKey(step, attempt).
func (h *Handler) archiveEarlier(ctx context.Context, j *jobs.Job) error {
	for _, a := range j.Attempts {
		v, _ := j.AttemptView(a.Number)
		if _, err := h.archiveAttempt(ctx, v, a.Number); err != nil {
			return fmt.Errorf("attempt %d: %w", a.Number, err)
		}
	}
	return nil
}

// archiveAttempt archives attempt n of j, which j shows (jobs.Job.AttemptView).
func (h *Handler) archiveAttempt(ctx context.Context, j *jobs.Job, n int) (Result, error) {
	stored, err := h.Logs.LogSteps(ctx, j.ID)
	if err != nil {
		return Result{}, err
	}
	state := map[string]store.LogStep{}
	for _, s := range stored {
		state[s.Step] = s
	}
	var cl Cluster
	var pods []corev1.Pod
	if j.Cluster != "" {
		if cl, err = h.Clusters.Cluster(j.Cluster); err != nil {
			return Result{}, err
		}
		if pods, err = cl.Pods(ctx, j.Namespace, names.AttemptKey(j.ID, n)); err != nil {
			return Result{}, err
		}
	}
	var res Result
	for _, step := range stepNames(j, pods) {
		key := jobs.LogStepKey(step, n)
		st, ok := state[key]
		if !ok || (!st.Complete && !st.Incomplete) {
			if st, err = h.archiveStep(ctx, cl, j, pods, step, key); err != nil {
				return Result{}, fmt.Errorf("step %s: %w", step, err)
			}
		}
		res.Steps = append(res.Steps, st)
	}
	for _, p := range pods {
		if slices.Contains(p.Finalizers, names.PodFinalizer) {
			if err := cl.RemovePodFinalizer(ctx, p.Namespace, p.Name); err != nil {
				return Result{}, fmt.Errorf("remove the finalizer of pod %s: %w", p.Name, err)
			}
		}
	}
	return res, nil
}

// archiveStep archives the log of step (a container) among pods under key (its LogStepKey).
func (h *Handler) archiveStep(ctx context.Context, cl Cluster, j *jobs.Job, pods []corev1.Pod, step, key string) (store.LogStep, error) {
	st := store.LogStep{JobID: j.ID, Step: key}
	pod, cs := kube.StepContainer(pods, step)
	if pod == nil {
		// No listed pod holds a started container of the step. That alone does not mean the
		// step never ran: its pod may have been deleted and replaced by one whose containers
		// have not started (the Job controller does that for a force-deleted pod). Only a
		// step the job record never saw start, with nothing stored of it, never ran.
		held, err := h.storedSince(ctx, st)
		if err != nil {
			return st, err
		}
		if held.LastSeq == 0 && !started(j, step) && (len(pods) > 0 || neverRan(j, step)) {
			if len(pods) == 0 && j.Cluster != "" && h.justEnded(j) {
				return st, fmt.Errorf("step %s: %w", step, errPodsMayAppear)
			}
			if p := live(pods, h.now()); p != nil {
				// The job has ended (a cancel is recorded before the garbage collector deletes
				// its pods) but this pod may still start the step.
				return st, fmt.Errorf("step %s has not started in pod %s, which is %s and may still start it: %w", step, p.Name, p.Status.Phase, errStillRunning)
			}
			// The step never started: there is no log, and there will be none.
			logging.FromContext(ctx).Debugw("step never started: archived empty", "job", j.ID, "step", key, "pods", podStates(pods))
			st.Complete = true
			return st, h.putStep(ctx, st, "complete")
		}
		return h.incomplete(ctx, held, fmt.Sprintf("the job's pods that ran step %s were gone before its log was archived", step))
	}
	if cs.State.Running != nil {
		return st, fmt.Errorf("container %s of pod %s: %w", step, pod.Name, errStillRunning)
	}
	rc, err := cl.StreamLogs(ctx, pod.Namespace, pod.Name, step, kube.LogOptions{})
	if err != nil {
		if reason, gone := logGone(err); gone {
			return h.incomplete(ctx, st, fmt.Sprintf("the log of pod %s is not available: %s", pod.Name, reason))
		}
		return st, err
	}
	cctx, cancel := context.WithCancel(ctx)
	chunks := chunkStream(cctx, rc, j.ID, key, pod.Name)
	defer func() {
		cancel()
		rc.Close() // ends a read in flight
		for range chunks {
		}
	}()
	// One chunk is stored while the next is cut: the store's writes and the parsing overlap.
	// Chunks are stored one by one, in order, by this goroutine alone.
	for c := range chunks {
		if c.err != nil {
			return st, c.err
		}
		if err := h.Logs.PutLogChunk(ctx, c.LogChunk); err != nil {
			return st, err
		}
		st.LastSeq = c.Seq
		st.Bytes += int64(len(c.Data))
		st.Lines += int64(c.Lines)
		if h.AfterChunk != nil {
			if err := h.AfterChunk(ctx, c.LogChunk); err != nil {
				return st, err
			}
		}
	}
	// An earlier delivery may have stored more of this step than the stream gave now (the
	// log was read from another pod, or shrank): the state counts what the store holds, and a
	// log that no longer matches what was stored is not whole.
	more, err := h.storedSince(ctx, st)
	if err != nil {
		return st, err
	}
	if more.LastSeq > st.LastSeq {
		return h.incomplete(ctx, more, fmt.Sprintf("the log of pod %s ends before what an earlier archive of step %s stored", pod.Name, step))
	}
	logging.FromContext(ctx).Debugw("step archived", "job", j.ID, "step", key, "pod", pod.Name, "bytes", st.Bytes, "lines", st.Lines, "pods", podStates(pods))
	st.Complete = true
	archivedBytes.Add(float64(st.Bytes))
	archivedLines.Add(float64(st.Lines))
	return st, h.putStep(ctx, st, "complete")
}

// storedSince returns st with the archived chunks stored after st.LastSeq added to its counts.
func (h *Handler) storedSince(ctx context.Context, st store.LogStep) (store.LogStep, error) {
	for {
		cs, err := h.Logs.LogChunks(ctx, st.JobID, st.Step, store.LogSourceArchive, st.LastSeq, 100)
		if err != nil {
			return st, fmt.Errorf("read the stored chunks of step %s: %w", st.Step, err)
		}
		if len(cs) == 0 {
			return st, nil
		}
		for _, c := range cs {
			st.LastSeq = c.Seq
			st.Bytes += int64(len(c.Data))
			st.Lines += int64(c.Lines)
		}
	}
}

// cut is a chunk of a step's log, or the error that ended the reading.
type cut struct {
	store.LogChunk
	err error
}

// chunkStream reads the timestamped log rc of step and cuts it into chunks (shared/logs'
// numbering and Chunker), in a goroutine of its own. The channel closes after the last chunk
// or an error; a caller that stops early cancels ctx, closes rc and drains the channel.
func chunkStream(ctx context.Context, rc io.Reader, jobID, step, pod string) <-chan cut {
	out := make(chan cut, 1)
	go func() {
		defer close(out)
		send := func(c cut) bool {
			select {
			case out <- c:
				return true
			case <-ctx.Done():
				return false
			}
		}
		ch := &logs.Chunker{JobID: jobID, Step: step, Source: store.LogSourceArchive}
		r := logs.NewNumberer(rc)
		for {
			l, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				send(cut{err: fmt.Errorf("read the log of pod %s: %w", pod, err)})
				return
			}
			if c, ok := ch.Add(logs.Line{Time: l.Time, Text: l.Text}); ok && !send(cut{LogChunk: c}) {
				return
			}
		}
		if c, ok := ch.Flush(); ok {
			send(cut{LogChunk: c})
		}
	}()
	return out
}

// incomplete records that the log of st's step can no longer be read, with what an earlier,
// interrupted delivery stored of it (that is all there will be).
func (h *Handler) incomplete(ctx context.Context, st store.LogStep, reason string) (store.LogStep, error) {
	st, err := h.storedSince(ctx, st)
	if err != nil {
		return st, err
	}
	st.Complete, st.Incomplete, st.Reason = false, true, reason
	return st, h.putStep(ctx, st, "incomplete")
}

func (h *Handler) putStep(ctx context.Context, st store.LogStep, outcome string) error {
	if err := h.Logs.PutLogStep(ctx, st); err != nil {
		return err
	}
	archivedSteps.WithLabelValues(outcome).Inc()
	return nil
}

// podStates describes pods for a debug line: name, phase, deleted or not, container states.
func podStates(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		d := fmt.Sprintf("%s %s deleted=%v", p.Name, p.Status.Phase, p.DeletionTimestamp != nil)
		for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
			for _, cs := range list {
				state := "waiting"
				switch {
				case cs.State.Running != nil:
					state = "running"
				case cs.State.Terminated != nil:
					state = fmt.Sprintf("exit %d", cs.State.Terminated.ExitCode)
				}
				d += " " + cs.Name + ":" + state
			}
		}
		out = append(out, d)
	}
	return out
}

// deletedPodGrace is how long past its deletionTimestamp a deleted pod that has not ended is
// still taken to be able to start a container. Deletion does not stop a start already under way:
// a scheduler that has not seen the deletion yet still binds the pod, a kubelet starts a container
// it was starting and reports it afterwards (on a loaded machine the local platform did so 35 s
// after the deletion). A pod that never ends (on a lost node, or never scheduled) must not hold
// the archive for ever.
const deletedPodGrace = 90 * time.Second

// live returns a pod that may still start containers: it has not ended, and it is not deleted or
// was deleted less than deletedPodGrace ago.
func live(pods []corev1.Pod, now time.Time) *corev1.Pod {
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.DeletionTimestamp == nil || now.Before(p.DeletionTimestamp.Add(deletedPodGrace)) {
			return p
		}
	}
	return nil
}

// justEnded reports whether j ended less than PodsGrace ago.
func (h *Handler) justEnded(j *jobs.Job) bool {
	if j.FinishedAt == nil {
		return false
	}
	grace := h.PodsGrace
	if grace <= 0 {
		grace = DefaultPodsGrace
	}
	return h.now().Sub(*j.FinishedAt) < grace
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// started reports whether the job's record says step started: it has a start time or a
// status past waiting.
func started(j *jobs.Job, step string) bool {
	for _, s := range j.Steps {
		if s.Name == step {
			return s.StartedAt != nil || (s.Status != "" && s.Status != jobs.StepWaiting)
		}
	}
	return false
}

// neverRan reports whether the job's record says step never started.
func neverRan(j *jobs.Job, step string) bool {
	for _, s := range j.Steps {
		if s.Name == step {
			return s.Status == jobs.StepWaiting && s.StartedAt == nil
		}
	}
	return false
}

// logGone reports whether err means the container's log will never be served: the pod is gone,
// or the API server refused the request for this container (no such container, log file gone).
func logGone(err error) (string, bool) {
	var se apierrors.APIStatus
	if apierrors.IsNotFound(err) || apierrors.IsBadRequest(err) {
		msg := err.Error()
		if errors.As(err, &se) {
			msg = se.Status().Message
		}
		return msg, true
	}
	return "", false
}

// Append stores the lines a worker pushed for a step of job jobID as one chunk of the push
// source, numbered by the worker, under the step's key for the job's current attempt. A push sent again is a no-op. An unknown job is
// jobs.ErrNotFound; a bad payload, a job that is not running, a step the job does not have, or
// a push past the step's bounds (MaxPushBytes, MaxPushes) is a *jobs.InvalidError; a job that
// has not started yet is jobs.ErrConflict (retried: status-sync may not have seen it start).
func (h *Handler) Append(ctx context.Context, jobID string, d events.LogsAppendedData) error {
	maxBytes, maxPushes := h.MaxPushBytes, h.MaxPushes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxPushBytes
	}
	if maxPushes <= 0 {
		maxPushes = DefaultMaxPushes
	}
	size := 0
	for _, l := range d.Lines {
		size += len(l.Text) + 1
	}
	switch {
	case jobID == "":
		return jobs.Invalid("subject", "the job id is required")
	case d.Step == "":
		return jobs.Invalid("step", "required")
	case d.Seq < 1:
		return jobs.Invalid("seq", "%d: pushes are numbered from 1", d.Seq)
	case len(d.Lines) == 0:
		return jobs.Invalid("lines", "no line")
	case d.Seq > maxPushes:
		return jobs.Invalid("seq", "%d: a step takes at most %d pushes", d.Seq, maxPushes)
	case size > maxBytes:
		return jobs.Invalid("lines", "%d bytes: a push holds at most %d", size, maxBytes)
	}
	j, err := h.Jobs.GetJob(ctx, jobID)
	if err != nil {
		return err
	}
	switch {
	case j.Status == jobs.StatusPending:
		return fmt.Errorf("push to job %s: it has not started yet: %w", jobID, jobs.ErrConflict)
	case j.Status != jobs.StatusRunning:
		return jobs.Invalid("subject", "job %s is %s: only running jobs take pushed lines", jobID, j.Status)
	case !slices.ContainsFunc(j.Steps, func(s jobs.Step) bool { return s.Name == d.Step }):
		return jobs.Invalid("step", "job %s has no step %q", jobID, d.Step)
	}
	// Under the step's key for the attempt running now: pushes of a later attempt are a stream of
	// their own, numbered from 1 again, as its archive is (jobs.LogStepKey).
	c := store.LogChunk{JobID: jobID, Step: jobs.LogStepKey(d.Step, j.CurrentAttempt()), Source: store.LogSourcePush, Seq: d.Seq}
	var data strings.Builder
	for _, l := range d.Lines {
		for _, text := range strings.Split(l.Text, "\n") {
			data.WriteString(text)
			data.WriteByte('\n')
			c.Lines++
		}
		if c.FirstTime.IsZero() {
			c.FirstTime = l.Time.UTC()
		}
		c.LastTime = l.Time.UTC()
	}
	c.Data = []byte(data.String())
	if err := h.Logs.PutLogChunk(ctx, c); err != nil {
		return fmt.Errorf("store pushed lines %s/%s/%d: %w", jobID, d.Step, d.Seq, err)
	}
	pushedLines.Add(float64(c.Lines))
	return nil
}
