package submit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// QueueStore is what the dispatcher needs of the store beyond Store: the unfinished jobs (the
// resync's list, which holds every job that has not ended) and the slot claims.
type QueueStore interface {
	ListUnsettled(ctx context.Context, cursor string, limit int) ([]*jobs.Job, string, error)
	BatchGet(ctx context.Context, ids []string) ([]*jobs.Job, error)
	store.SlotStore
}

// Instance is an engine instance as the dispatcher sees it.
type Instance interface {
	Target
	// Capacity is the configured capacity in slots (0 = unlimited), Weight the share of jobs.
	Capacity() int
	Weight() int
	// HasJob reports whether the job's Kubernetes Job exists there, in namespace.
	// key is names.AttemptKey(job id, attempt).
	HasJob(ctx context.Context, namespace, key string) (bool, error)
}

// Instances lists the engine instances of an arch.
type Instances interface {
	Instances(arch string) []Instance
	Instance(name string) (Instance, error)
}

// Scopes of slot claims (docs/queue.md).
func instanceScope(name string) string       { return "instance/" + name }
func quotaScope(service, arch string) string { return "quota/" + service + "/" + arch }
func keyScope(key string) string             { return "key/" + key }
func holderOf(jobID, claim string) string    { return jobID + "/" + claim }
func splitHolder(h string) (id, claim string) {
	i := strings.LastIndex(h, "/")
	return h[:max(i, 0)], h[i+1:]
}

// Dispatcher places queued jobs (docs/queue.md). Its fields are set by New.
type Dispatcher struct {
	Store     QueueStore
	Instances Instances
	Policy    func() *queue.Policy
	// OrphanAge is how old a slot claim of no dispatched job must be before a pass frees it
	// (a dispatcher that died between claiming and recording). Default 30s.
	OrphanAge time.Duration
	// RepairAfter is how long after its dispatch a pending job without its Kubernetes Job is
	// created again by the resync (a dispatcher that died between recording and creating).
	// Default 20s; it must stay below status-sync's resync grace.
	RepairAfter time.Duration

	gate passGate // one pass at a time in a process, shared by the callers (Dispatch)
}

// Report sums up one dispatch pass.
type Report struct {
	Waiting    int `json:"waiting"`
	Dispatched int `json:"dispatched"`
	Released   int `json:"released"`
	Repaired   int `json:"repaired"`
}

// DispatchOptions tune a pass.
type DispatchOptions struct {
	// Repair re-creates the objects of dispatched jobs whose creation was interrupted.
	Repair bool
	// Quiet is a job whose queued → pending change is not emitted (submit emits job.created).
	Quiet string
	// NoWait returns at once, with an empty report, when a pass is running in this process: a
	// pass that starts after it ends is then run in the background and covers this call (the
	// Broker's Trigger: its delivery need not hold a worker of the Broker for two passes).
	NoWait bool
}

// Dispatch makes sure a dispatch pass runs that starts after this call, and returns its
// report. Passes are coalesced in a process: while one runs, the callers that come meanwhile
// wait for the next one, which one of them runs for all of them (with Repair if any asked for
// it). A burst of submits and triggers therefore costs one pass per pass time, not one pass
// each, and every caller still sees a pass that read the store after its call: a job stored
// before the call is considered, so a submit's answer shows its job pending when it had room
// (o.NoWait: a call during a pass returns at once instead, see DispatchOptions). The pass may
// end before the clusters have created what it placed (see pipeline). A pass is run until it
// ends without losing a race for a slot (at most 5 times).
func (h *Handler) Dispatch(ctx context.Context, o DispatchOptions) (Report, error) {
	d := h.Dispatcher
	if d == nil || d.Store == nil {
		return Report{}, errors.New("dispatch: no dispatcher configured")
	}
	if o.Quiet != "" {
		defer d.Hush(o.Quiet, nil)()
	}
	return d.gate.do(ctx, o.Repair, o.NoWait, func(ctx context.Context, repair bool) (Report, error) {
		var total Report
		for range 5 {
			rep, retry, err := h.pass(ctx, DispatchOptions{Repair: repair})
			total.Dispatched += rep.Dispatched
			total.Released += rep.Released
			total.Repaired += rep.Repaired
			total.Waiting = rep.Waiting
			if err != nil || !retry {
				return total, err
			}
		}
		return total, nil
	})
}

// Hush keeps the queued → pending change of job id from being emitted by this process's
// passes until the returned func is called: submit registers its job before storing it and
// announces it with job.created itself. announce, if not nil, is called by the pass that places
// the job, with the job as its dispatch stored it, before its objects are created: so that
// job.created goes out before anything status-sync may see of them (whose job.changed would
// otherwise come first).
func (d *Dispatcher) Hush(id string, announce func(*jobs.Job)) (unhush func()) {
	g := &d.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hushed == nil {
		g.hushed, g.announce = map[string]int{}, map[string]func(*jobs.Job){}
	}
	g.hushed[id]++
	if announce != nil {
		g.announce[id] = announce
	}
	return sync.OnceFunc(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.hushed[id]--; g.hushed[id] <= 0 {
			delete(g.hushed, id)
			delete(g.announce, id)
		}
	})
}

// announced calls, once, the announce func that Hush registered for j.
func (d *Dispatcher) announced(j *jobs.Job) {
	g := &d.gate
	g.mu.Lock()
	fn := g.announce[j.ID]
	delete(g.announce, j.ID)
	g.mu.Unlock()
	if fn != nil {
		fn(j)
	}
}

// forJob returns the options of a pass for placing job id (Quiet when it is hushed).
func (d *Dispatcher) forJob(o DispatchOptions, id string) DispatchOptions {
	g := &d.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hushed[id] > 0 {
		o.Quiet = id
	}
	return o
}

// passGate coalesces the dispatch passes of a process (see Dispatch).
type passGate struct {
	mu        sync.Mutex
	requested uint64        // calls so far
	finished  uint64        // calls covered by the last finished pass (it started after them)
	running   bool          // a pass is running
	done      chan struct{} // closed when the running pass ends
	repair    bool          // a call not yet covered asked for repairs
	noWait    uint64        // the last call that returned at once while a pass ran
	last      Report        // of the last finished pass
	lastErr   error
	hushed    map[string]int             // job id → Hush calls not yet undone
	announce  map[string]func(*jobs.Job) // job id → its submit's announcement (Hush)
	creates   chan struct{}              // a token per creation running (see pipeline)
	creating  map[string]chan struct{}   // job id → closed when its creation ended
}

// do returns the outcome of a run of pass that started after this call: the caller runs it
// itself when no pass is running, else it waits for the running one to end and then either
// finds its call covered by a pass another caller ran meanwhile, or runs the next one itself
// (covering every call so far). With noWait and a pass running, it returns at once, and the
// end of the running pass starts the next one in the background. A pass runs without the
// caller's cancellation: others may wait for it; a caller whose context ends stops waiting.
func (g *passGate) do(ctx context.Context, repair, noWait bool, pass func(context.Context, bool) (Report, error)) (Report, error) {
	g.mu.Lock()
	g.requested++
	mine := g.requested
	g.repair = g.repair || repair
	if noWait && g.running {
		g.noWait = mine
		g.mu.Unlock()
		return Report{}, nil
	}
	for {
		if g.finished >= mine {
			rep, err := g.last, g.lastErr
			g.mu.Unlock()
			return rep, err
		}
		if !g.running {
			g.running, g.done = true, make(chan struct{})
			covers, rp := g.requested, g.repair
			g.repair = false
			g.mu.Unlock()
			rep, err := pass(context.WithoutCancel(ctx), rp)
			g.mu.Lock()
			g.running, g.finished, g.last, g.lastErr = false, covers, rep, err
			close(g.done)
			if g.noWait > covers {
				// A call that did not wait came during this pass: a pass that starts after
				// this one covers it, whoever else waits.
				g.noWait = 0
				go func() {
					if _, err := g.do(context.WithoutCancel(ctx), false, false, pass); err != nil {
						logging.FromContext(ctx).Warnw("dispatch pass for a trigger failed; the next trigger or the resync runs another", "error", err)
					}
				}()
			}
			continue
		}
		done := g.done
		g.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return Report{}, fmt.Errorf("dispatch: wait for a pass: %w", ctx.Err())
		}
		g.mu.Lock()
	}
}

// state is what one pass knows of the queue.
type state struct {
	active []*jobs.Job
	byID   map[string]*jobs.Job
	held   map[string]map[int]bool // scope → held indices
	// freedAt is, per instance scope, when the jobs whose slots this pass freed ended (oldest
	// first): the start of the dispatch lag of the jobs placed there next.
	freedAt map[string][]time.Time
	running map[string]int // service → slots its dispatched jobs hold
}

// readState lists the unsettled jobs and the held slots: what a dispatch pass and a read of the
// queue both start from. op names the caller in errors.
func (h *Handler) readState(ctx context.Context, op string) (*state, []store.Slot, error) {
	d := h.Dispatcher
	st := &state{byID: map[string]*jobs.Job{}, held: map[string]map[int]bool{}, running: map[string]int{}, freedAt: map[string][]time.Time{}}
	cursor := ""
	for {
		page, next, err := d.Store.ListUnsettled(ctx, cursor, 1000)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: list unfinished jobs: %w", op, err)
		}
		for _, j := range page {
			st.byID[j.ID] = j
			if !j.Status.Terminal() { // the list also holds ended jobs whose steps are unsettled
				st.active = append(st.active, j)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	slots, err := d.Store.ListSlots(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: list slots: %w", op, err)
	}
	return st, slots, nil
}

// hold records sl as held.
func (st *state) hold(sl store.Slot) {
	if st.held[sl.Scope] == nil {
		st.held[sl.Scope] = map[int]bool{}
	}
	st.held[sl.Scope][sl.Index] = true
}

// countRunning counts, per service, the slots its dispatched jobs hold.
func (st *state) countRunning(pol *queue.Policy) {
	for _, j := range st.active {
		if j.Status != jobs.StatusQueued && j.Queue != nil && j.Queue.Claim != "" {
			st.running[j.Service] += pol.JobSlots(j)
		}
	}
}

// load reads the queue's state for a dispatch pass, releasing the slots of ended jobs and of
// claims older than the orphan age that no job recorded; it returns how many it released.
func (h *Handler) load(ctx context.Context) (*state, int, error) {
	d := h.Dispatcher
	st, slots, err := h.readState(ctx, "dispatch")
	if err != nil {
		return nil, 0, err
	}
	var unknown []string
	for _, sl := range slots {
		if id, _ := splitHolder(sl.Holder); st.byID[id] == nil {
			unknown = append(unknown, id)
		}
	}
	known := map[string]*jobs.Job{}
	if len(unknown) > 0 {
		js, err := d.Store.BatchGet(ctx, unknown)
		if err != nil {
			return nil, 0, fmt.Errorf("dispatch: read slot holders: %w", err)
		}
		for _, j := range js {
			known[j.ID] = j
		}
	}
	released := 0
	now := h.now()
	for _, sl := range slots {
		id, claim := splitHolder(sl.Holder)
		j := st.byID[id]
		if j == nil {
			j = known[id]
		}
		dispatched := j != nil && !j.Status.Terminal() && j.Status != jobs.StatusQueued && j.Queue != nil && j.Queue.Claim == claim
		// A claim of an attempt the job has left behind (it went back to the queue) is as
		// good as the claim of an ended job.
		ended := j == nil || j.Status.Terminal() || (claimAttempt(claim) > 0 && claimAttempt(claim) < j.CurrentAttempt())
		if !dispatched && (ended || now.Sub(sl.ClaimedAt) > d.orphanAge()) {
			if ok, err := d.Store.ReleaseSlot(ctx, sl.Scope, sl.Index, sl.Holder); err != nil {
				return nil, 0, fmt.Errorf("dispatch: release slot: %w", err)
			} else if ok {
				released++
				if j != nil && j.FinishedAt != nil && strings.HasPrefix(sl.Scope, "instance/") {
					st.freedAt[sl.Scope] = append(st.freedAt[sl.Scope], *j.FinishedAt)
				}
			}
			continue
		}
		st.hold(sl)
	}
	st.countRunning(d.Policy())
	return st, released, nil
}

// pass is one dispatch pass. retry reports a lost race for a slot: the caller runs another.
func (h *Handler) pass(ctx context.Context, o DispatchOptions) (rep Report, retry bool, err error) {
	d := h.Dispatcher
	st, released, err := h.load(ctx)
	if err != nil {
		return rep, false, err
	}
	rep.Released = released
	pol := d.Policy()
	now := h.now()
	var waiting []*jobs.Job
	for _, j := range st.active {
		if j.Status == jobs.StatusQueued && !j.CancelRequested {
			waiting = append(waiting, j)
		}
	}
	order := pol.Order(waiting, st.running, now)
	lengths := map[[2]string]int{}
	for _, j := range order {
		cls := pol.DefaultClass
		if j.Queue != nil && j.Queue.Class != "" {
			cls = j.Queue.Class
		}
		lengths[[2]string{j.Arch, cls}]++
	}
	setQueueLength(lengths)
	blocked := map[string]string{} // arch → why its head job could not be placed
	reasons := map[string]string{}
	var left []*jobs.Job
	pl := d.newPipeline(ctx)
	for _, j := range order {
		if why, ok := blocked[j.Arch]; ok {
			reasons[j.ID], left = why, append(left, j)
			continue
		}
		why, placed, lost, err := pl.place(j.ID, func(ctx context.Context) (string, bool, bool, error) {
			return h.place(ctx, st, pol, j, d.forJob(o, j.ID))
		})
		if err != nil {
			return rep, false, err
		}
		if lost {
			retry = true
			break
		}
		if placed {
			rep.Dispatched++
			continue
		}
		if why == "" {
			continue // placed by another dispatcher meanwhile, or cancelled: not waiting
		}
		if strings.HasPrefix(why, j.Arch+":") {
			blocked[j.Arch] = why
		}
		reasons[j.ID], left = why, append(left, j)
	}
	rep.Waiting = len(left)
	if retry {
		return rep, true, nil
	}
	for i, j := range left {
		if err := h.markWaiting(ctx, j, i+1, reasons[j.ID]); err != nil {
			return rep, false, err
		}
	}
	if o.Repair {
		rep.Repaired = h.repair(ctx, st)
	}
	return rep, false, nil
}

// maxCreates is how many creations of dispatched jobs' objects a process runs at once.
const maxCreates = 32

// pipeline lets the placements of a pass go on while the clusters create what was placed:
// each placement runs in turn up to the creation of its objects (checks, slot claims, the
// recorded dispatch: everything that needs the pass's state and its order); while the cluster
// creates them, the pass goes on with the next job, and the pass may end before they are
// created (a submit waits for its own job's: CreationDone). At most maxCreates creations run
// at once in a process. A placement whose creation returned finishes (recording a refusal as
// CreateFailed, the dispatch lag, which reads the pass's state) in turn again: the pass's state
// is touched by one party at a time, mu being held by the placement running in turn or by one
// finishing after its creation. A placement reaches its creation through an Instance whose
// Create calls overlapCreate (the build clusters', KubeInstances); with other instances it
// runs in turn from start to end.
type pipeline struct {
	ctx context.Context
	g   *passGate
	mu  sync.Mutex
}

func (d *Dispatcher) newPipeline(ctx context.Context) *pipeline {
	g := &d.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.creates == nil {
		g.creates = make(chan struct{}, maxCreates)
		g.creating = map[string]chan struct{}{}
	}
	return &pipeline{ctx: ctx, g: g}
}

// createHook is how a placement's Create tells the pipeline it reached the cluster.
type createHook struct {
	p       *pipeline
	reached chan struct{}
}

type createHookKey struct{}

// place runs fn, the placement of job id, until it returned or reached the creation of its
// objects: then the job is placed (a placement that reached its creation always ends placed;
// a refusal is recorded by the placement itself, as CreateFailed).
func (p *pipeline) place(id string, fn func(context.Context) (string, bool, bool, error)) (string, bool, bool, error) {
	type result struct {
		why          string
		placed, lost bool
		err          error
		exited       bool // the placement's goroutine ended without returning
	}
	p.g.creates <- struct{}{} // before mu: placements finishing after their creation need mu to free one
	p.mu.Lock()               // released by the placement: when it reaches its creation, or at its end
	hk := &createHook{p: p, reached: make(chan struct{})}
	done := make(chan struct{})
	p.g.mu.Lock()
	p.g.creating[id] = done
	p.g.mu.Unlock()
	res := make(chan result, 1)
	go func() {
		returned := false
		defer func() {
			if !returned { // runtime.Goexit (a process dying, in tests) or a panic
				res <- result{exited: true}
			}
		}()
		why, placed, lost, err := fn(context.WithValue(p.ctx, createHookKey{}, hk))
		returned = true
		p.mu.Unlock()
		p.g.mu.Lock()
		if p.g.creating[id] == done {
			delete(p.g.creating, id)
		}
		p.g.mu.Unlock()
		close(done)
		<-p.g.creates
		res <- result{why: why, placed: placed, lost: lost, err: err}
	}()
	select {
	case r := <-res:
		if r.exited {
			// The placement stopped as if its process had died: so does the pass, and the
			// goroutine that runs it, as it would have without the pipeline.
			runtime.Goexit()
		}
		return r.why, r.placed, r.lost, r.err
	case <-hk.reached:
		return "", true, false, nil
	}
}

// CreationDone waits until a creation of job id's objects that a pass of this process started
// has ended (at once when there is none).
func (d *Dispatcher) CreationDone(ctx context.Context, id string) error {
	g := &d.gate
	g.mu.Lock()
	done := g.creating[id]
	g.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dispatch: wait for the creation of %s: %w", id, ctx.Err())
	}
}

// overlapCreate runs create, an instance's creation of a job's objects. Within a pass's
// pipeline, it lets the pass go on with the next job meanwhile and takes its turn again
// afterwards; elsewhere (repairs, tests' instances) it just runs create.
func overlapCreate(ctx context.Context, create func() error) error {
	hk, _ := ctx.Value(createHookKey{}).(*createHook)
	if hk == nil {
		return create()
	}
	select {
	case <-hk.reached: // a second creation in one placement: it already let go of its turn
		return create()
	default:
	}
	close(hk.reached)
	hk.p.mu.Unlock()
	err := create()
	hk.p.mu.Lock()
	return err
}

// place tries to dispatch j: it answers why j waits, or placed; lost when another dispatcher
// took a slot first.
func (h *Handler) place(ctx context.Context, st *state, pol *queue.Policy, j *jobs.Job, o DispatchOptions) (why string, placed, lost bool, err error) {
	d := h.Dispatcher
	slots := pol.JobSlots(j)
	if q := pol.Quota(j.Service, j.Arch); q > 0 {
		if n := len(st.held[quotaScope(j.Service, j.Arch)]); n+slots > q {
			return fmt.Sprintf("service quota %d of %d running on %s", n, q, j.Arch), false, false, nil
		}
	}
	key := ""
	if j.Queue != nil {
		key = j.Queue.ConcurrencyKey
	}
	if key != "" {
		if n, limit := len(st.held[keyScope(key)]), pol.KeyLimit(key); n+1 > limit {
			return fmt.Sprintf("concurrency key %s busy", key), false, false, nil
		}
	}
	var cands []Instance
	used, total, weights := 0, 0, 0
	for _, in := range d.Instances.Instances(j.Arch) {
		capacity := pol.Capacity(in.ClusterName(), in.Capacity())
		n := len(st.held[instanceScope(in.ClusterName())])
		used, total = used+n, total+capacity
		if capacity == 0 || capacity-n >= slots {
			cands = append(cands, in)
			weights += max(in.Weight(), 1)
		}
	}
	if len(cands) == 0 {
		return fmt.Sprintf("%s: %d of %d slots in use", j.Arch, used, total), false, false, nil
	}
	pick := mrand.IntN(weights)
	target := cands[len(cands)-1]
	for _, in := range cands {
		if pick < max(in.Weight(), 1) {
			target = in
			break
		}
		pick -= max(in.Weight(), 1)
	}

	claim := newClaim(j.CurrentAttempt())
	holder := holderOf(j.ID, claim)
	var taken []store.Slot
	release := func() {
		for _, s := range taken {
			if _, err := d.Store.ReleaseSlot(context.WithoutCancel(ctx), s.Scope, s.Index, holder); err != nil {
				logging.FromContext(ctx).Warnw("could not release a slot claim; the next pass frees it", "scope", s.Scope, "error", err)
			}
		}
	}
	take := func(scope string, limit, n int) (bool, error) {
		for i := 0; n > 0 && i < limit; i++ {
			if st.held[scope][i] {
				continue
			}
			ok, err := d.Store.ClaimSlot(ctx, scope, i, holder)
			if err != nil {
				return false, err
			}
			if !ok {
				return false, nil // another dispatcher took it: start again from fresh state
			}
			taken = append(taken, store.Slot{Scope: scope, Index: i})
			n--
		}
		return n == 0, nil
	}
	claims := []struct {
		scope    string
		limit, n int
	}{}
	if c := pol.Capacity(target.ClusterName(), target.Capacity()); c > 0 {
		claims = append(claims, struct {
			scope    string
			limit, n int
		}{instanceScope(target.ClusterName()), c, slots})
	}
	if q := pol.Quota(j.Service, j.Arch); q > 0 {
		claims = append(claims, struct {
			scope    string
			limit, n int
		}{quotaScope(j.Service, j.Arch), q, slots})
	}
	if key != "" {
		claims = append(claims, struct {
			scope    string
			limit, n int
		}{keyScope(key), pol.KeyLimit(key), 1})
	}
	for _, c := range claims {
		ok, err := take(c.scope, c.limit, c.n)
		if err != nil || !ok {
			release()
			return "", false, err == nil, err
		}
	}

	// Rendered with the catalogue of now, recorded with the dispatch: what the job runs with.
	cat := h.Catalogue()
	objs, rerr := h.renderFor(cat, j, target)
	var ran *jobs.Ran
	if rerr == nil {
		ran = &jobs.Ran{TaskDigest: cat.Digest(j.Task), Images: imagesOf(objs)}
	}
	at := h.now()
	stored, changed, err := h.Store.UpdateJob(ctx, j.ID, func(j *jobs.Job) (bool, error) {
		if j.Status != jobs.StatusQueued || j.CancelRequested {
			return false, nil
		}
		j.Ran = ran
		if j.Queue == nil {
			j.Queue = &jobs.Queue{}
		}
		j.Status, j.Cluster, j.Namespace = jobs.StatusPending, target.ClusterName(), target.JobNamespace()
		j.Queue.Claim, j.Queue.DispatchedAt, j.Queue.Position, j.Queue.Reason = claim, &at, 0, ""
		j.Queue.Slots = slots
		return true, nil
	})
	if err != nil || !changed {
		release()
		return "", false, false, err // placed by another dispatcher, or cancelled: not ours
	}
	// Confirm the claims now that the dispatch is recorded: a pass of another dispatcher that
	// took this one for dead (its claims older than OrphanAge before it recorded) may have freed
	// them, and another job may hold a slot since. Then the dispatch is undone, before anything
	// was created, and the pass starts again.
	for _, s := range taken {
		ok, err := d.Store.ClaimSlot(ctx, s.Scope, s.Index, holder)
		if err == nil && ok {
			continue
		}
		if _, _, uerr := h.Store.UpdateJob(context.WithoutCancel(ctx), j.ID, func(j *jobs.Job) (bool, error) {
			if j.Status != jobs.StatusPending || j.Queue == nil || j.Queue.Claim != claim {
				return false, nil
			}
			j.Status, j.Cluster, j.Namespace = jobs.StatusQueued, "", ""
			j.Queue.Claim, j.Queue.DispatchedAt = "", nil
			return true, nil
		}); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo the dispatch of %s: %w", j.ID, uerr))
		}
		release()
		return "", false, err == nil, err
	}
	for _, s := range taken {
		if st.held[s.Scope] == nil {
			st.held[s.Scope] = map[int]bool{}
		}
		st.held[s.Scope][s.Index] = true
	}
	st.running[j.Service] += slots
	observeWait(stored)
	if o.Quiet != j.ID {
		h.emit(ctx, events.TypeJobChanged, stored, jobs.StatusQueued)
	} else {
		d.announced(stored)
	}
	if h.create(ctx, stored, target, objs, rerr, o.Quiet == j.ID) {
		scope := instanceScope(target.ClusterName())
		if fr := st.freedAt[scope]; len(fr) > 0 {
			sort.Slice(fr, func(a, b int) bool { return fr[a].Before(fr[b]) })
			observeLag(j.Arch, h.now().Sub(fr[0]))
			st.freedAt[scope] = fr[1:]
		}
	}
	return "", true, false, nil
}

// create creates a dispatched job's rendered objects (rerr: they could not be rendered). A
// refusal ends the job failed (CreateFailed), which frees its slots at the next pass; a job
// cancelled meanwhile has its objects deleted again.
func (h *Handler) create(ctx context.Context, j *jobs.Job, target Target, objs []*unstructured.Unstructured, rerr error, quiet bool) (created bool) {
	log := logging.FromContext(ctx)
	cerr := rerr
	if cerr == nil {
		cerr = target.Create(ctx, j.ID, objs)
	}
	if cerr != nil {
		retry := rerr == nil && transient(cerr)
		attempt := j.CurrentAttempt()
		var previous jobs.Status
		failed, changed, err := h.Store.UpdateJob(context.WithoutCancel(ctx), j.ID, func(j *jobs.Job) (bool, error) {
			if j.Status.Terminal() || j.Status == jobs.StatusQueued || j.CurrentAttempt() != attempt {
				return false, nil
			}
			previous = j.Status
			at := h.now()
			j.Status, j.Reason, j.Message = jobs.StatusFailed, ReasonCreateFailed, cerr.Error()
			j.FinishedAt, j.UpdatedAt = &at, at
			if retry {
				j.Retry(jobs.ReasonCreateFailed, cerr.Error())
			}
			return true, nil
		})
		if err != nil {
			log.Errorw("could not record a failed creation; the resync repairs it", "job", j.ID, "error", err)
			return false
		}
		if changed && !quiet { // submit's job.created shows the job as this left it
			h.emit(ctx, events.TypeJobChanged, failed, previous)
		}
		return false
	}
	cur, err := h.Store.GetJob(ctx, j.ID)
	if err == nil && (cur.CancelRequested || cur.Status == jobs.StatusCancelled) {
		if err := h.Deleter.DeleteJobObjects(ctx, j.Cluster, j.Namespace, j.ID); err != nil {
			log.Warnw("could not delete the objects of a job cancelled while they were created", "job", j.ID, "error", err)
		}
		return false
	}
	return true
}

// transient reports whether a refusal to create a job's objects may pass on its own, so that
// the job is worth another attempt: the cluster was unreachable, timed out, overloaded or
// failed inside. A refusal on the merits (invalid, forbidden by policy or quota, conflicting)
// is final.
func transient(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return true // no answer from the cluster: unreachable, reset, timed out
	}
	switch code := st.Status().Code; {
	case code == http.StatusTooManyRequests, code >= 500:
		return true
	}
	return false
}

// renderFor renders j's objects for target with cat.
func (h *Handler) renderFor(cat Catalogue, j *jobs.Job, target Target) ([]*unstructured.Unstructured, error) {
	objs, err := cat.Render(j.Task, manifest.Input{
		JobID: j.ID, Namespace: target.JobNamespace(), Service: j.Service, Task: j.Task,
		Domain: j.Domain, Arch: j.Arch, Parameters: j.Parameters,
		TTLSecondsAfterFinished: h.TTLSecondsAfterFinished, Labels: j.Labels, Attempt: j.CurrentAttempt(),
	})
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", j.Task, err)
	}
	return objs, nil
}

// imagesOf lists the images of the Kubernetes Jobs' containers among objs, init containers
// first, each once.
func imagesOf(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		if o.GetKind() != "Job" {
			continue
		}
		for _, field := range []string{"initContainers", "containers"} {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", field)
			for _, c := range cs {
				m, _ := c.(map[string]any)
				if img, _ := m["image"].(string); img != "" && !slices.Contains(out, img) {
					out = append(out, img)
				}
			}
		}
	}
	return out
}

// exactPositions is how many of the first waiting jobs have their position recorded exactly;
// further back a position is rewritten only when it moved by more than a tenth, so that a pass
// over a long queue does not rewrite every job (GET /v1/queue is always exact).
const exactPositions = 100

// stalePosition reports whether a recorded position old should be rewritten as pos.
func stalePosition(old, pos int) bool {
	if old == pos {
		return false
	}
	if pos <= exactPositions || old == 0 {
		return true
	}
	d := old - pos
	if d < 0 {
		d = -d
	}
	return d*10 > old
}

// markWaiting records j's position and reason if they changed (see exactPositions).
func (h *Handler) markWaiting(ctx context.Context, j *jobs.Job, pos int, why string) error {
	if j.Queue != nil && !stalePosition(j.Queue.Position, pos) && j.Queue.Reason == why {
		return nil
	}
	_, _, err := h.Store.UpdateJob(ctx, j.ID, func(j *jobs.Job) (bool, error) {
		if j.Status != jobs.StatusQueued {
			return false, nil
		}
		if j.Queue == nil {
			j.Queue = &jobs.Queue{}
		}
		if !stalePosition(j.Queue.Position, pos) && j.Queue.Reason == why {
			return false, nil
		}
		j.Queue.Position, j.Queue.Reason = pos, why
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("dispatch: record position of %s: %w", j.ID, err)
	}
	return nil
}

// repair creates again the objects of jobs dispatched more than RepairAfter ago that have not
// started and whose Kubernetes Job does not exist: their dispatcher died between recording the
// dispatch and creating the objects. Creating is idempotent, so a slow dispatcher still at
// work does no harm.
func (h *Handler) repair(ctx context.Context, st *state) int {
	d := h.Dispatcher
	log := logging.FromContext(ctx)
	n := 0
	for _, j := range st.active {
		if j.Status != jobs.StatusPending || j.CancelRequested || j.Queue == nil || j.Queue.DispatchedAt == nil ||
			h.now().Sub(*j.Queue.DispatchedAt) < d.RepairDelay() {
			continue
		}
		in, err := d.Instances.Instance(j.Cluster)
		if err != nil {
			continue
		}
		ok, err := in.HasJob(ctx, j.Namespace, names.AttemptKey(j.ID, j.CurrentAttempt()))
		if err != nil || ok {
			continue
		}
		log.Infow("creating the objects of a dispatched job again", "job", j.ID, "cluster", j.Cluster)
		objs, rerr := h.renderFor(h.Catalogue(), j, in)
		h.create(ctx, j, in, objs, rerr, false)
		n++
	}
	return n
}

func (d *Dispatcher) orphanAge() time.Duration {
	if d.OrphanAge > 0 {
		return d.OrphanAge
	}
	return 30 * time.Second
}

// RepairDelay is RepairAfter, or its default: how long after its dispatch a repair pass
// creates again the objects of a job.
func (d *Dispatcher) RepairDelay() time.Duration {
	if d.RepairAfter > 0 {
		return d.RepairAfter
	}
	return 20 * time.Second
}

// newClaim names a new claim of attempt n: "a<n>-" and 16 random hex digits.
func newClaim(attempt int) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "a" + strconv.Itoa(attempt) + "-" + hex.EncodeToString(b)
}

// claimAttempt is the attempt a claim was made for (0 for a claim named before attempts
// existed).
func claimAttempt(claim string) int {
	rest, ok := strings.CutPrefix(claim, "a")
	if !ok {
		return 0
	}
	num, _, ok := strings.Cut(rest, "-")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0
	}
	return n
}

// receiveDispatch runs a pass for a Broker event (terminal job.changed, queued job.created);
// receiveResync runs one with repair for the PingSource.
func (h *Handler) receiveDispatch(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
	rep, err := h.Dispatch(ctx, DispatchOptions{NoWait: true})
	if err != nil {
		return nil, err
	}
	logging.FromContext(ctx).Debugw("dispatch pass", "event", e.ID(), "dispatched", rep.Dispatched, "waiting", rep.Waiting, "released", rep.Released)
	return nil, protocol.ResultACK
}

func (h *Handler) receiveResync(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
	rep, err := h.Dispatch(ctx, DispatchOptions{Repair: true})
	if err != nil {
		return nil, err
	}
	logging.FromContext(ctx).Infow("dispatch resync", "dispatched", rep.Dispatched, "waiting", rep.Waiting, "released", rep.Released, "repaired", rep.Repaired)
	return nil, protocol.ResultACK
}

// KubeInstances are the configured build clusters as dispatch targets.
type KubeInstances struct{ Clusters *kube.Clusters }

// Instances returns the instances of arch.
func (k KubeInstances) Instances(arch string) []Instance {
	var out []Instance
	for _, c := range k.Clusters.Instances(arch) {
		out = append(out, kubeInstance{c})
	}
	return out
}

// Instance returns the instance called name.
func (k KubeInstances) Instance(name string) (Instance, error) {
	c, err := k.Clusters.Get(name)
	if err != nil {
		return nil, err
	}
	return kubeInstance{c}, nil
}

type kubeInstance struct{ *kube.Cluster }

// Create creates a job's objects on the cluster, letting a dispatch pass go on meanwhile
// (see pipeline).
func (k kubeInstance) Create(ctx context.Context, jobID string, objs []*unstructured.Unstructured) error {
	return overlapCreate(ctx, func() error { return k.Cluster.Create(ctx, jobID, objs) })
}

func (k kubeInstance) Capacity() int { return k.Cluster.Capacity }
func (k kubeInstance) Weight() int   { return k.Cluster.Weight }
