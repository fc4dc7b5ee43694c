package logarchive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

var _ Cluster = (*fakeCluster)(nil)

// fakeCluster serves pods and container logs from memory.
type fakeCluster struct {
	mu      sync.Mutex
	pods    []corev1.Pod
	logs    map[string]string // "pod/container" → timestamped stream
	errs    map[string]error  // "pod/container" → StreamLogs error
	streams map[string]int    // "pod/container" → times streamed
	removed []string          // pods whose finalizer was removed
}

func (f *fakeCluster) Pods(_ context.Context, _, jobID string) ([]corev1.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []corev1.Pod
	for _, p := range f.pods {
		if p.Labels[names.LabelJobID] == jobID {
			out = append(out, *p.DeepCopy())
		}
	}
	return out, nil
}

func (f *fakeCluster) StreamLogs(_ context.Context, _, pod, container string, _ kube.LogOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := pod + "/" + container
	f.streams[k]++
	if err := f.errs[k]; err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(f.logs[k])), nil
}

func (f *fakeCluster) RemovePodFinalizer(_ context.Context, _, pod string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, pod)
	for i := range f.pods {
		if f.pods[i].Name == pod {
			f.pods[i].Finalizers = nil
		}
	}
	return nil
}

type fakeClusters map[string]Cluster

func (f fakeClusters) Cluster(name string) (Cluster, error) {
	if c, ok := f[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("cluster %q: %w", name, jobs.ErrNotFound)
}

var t0 = time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)

// stream returns a timestamped log of n lines of step and the text it stands for.
func stream(step string, n int) (served, text string) {
	var s, w strings.Builder
	for i := range n {
		line := fmt.Sprintf("%s line %d %s", step, i, strings.Repeat("~", i%200))
		fmt.Fprintf(&s, "%s %s\n", t0.Add(time.Duration(i)*time.Microsecond).Format(time.RFC3339Nano), line)
		w.WriteString(line + "\n")
	}
	return s.String(), w.String()
}

type fixture struct {
	h       *Handler
	st      *sqlite.Store
	cluster *fakeCluster
	job     *jobs.Job
	want    map[string]string // step → archived text
}

var steps = []string{"fetch", "build", "upload"}

func terminated(name string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}
}

// newFixture: an ended job of three steps (two init containers, one container) whose pod
// holds the finalizer; the logs are n lines per step.
func newFixture(t testing.TB, n int) *fixture {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	j := &jobs.Job{ID: "job-1", Service: "svc", Task: "buildrpm", Arch: "x86_64", Cluster: "x86", Namespace: "default",
		Status: jobs.StatusSucceeded}
	for _, s := range steps {
		j.Steps = append(j.Steps, jobs.Step{Name: s, Status: jobs.StepSucceeded, StartedAt: &t0})
	}
	if err := st.CreateJob(t.Context(), j); err != nil {
		t.Fatal(err)
	}
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "omni-job-1-abc", Namespace: "default", Labels: map[string]string{names.LabelJobID: j.ID},
			Finalizers: []string{names.PodFinalizer}},
		Status: corev1.PodStatus{
			Phase:                 corev1.PodSucceeded,
			InitContainerStatuses: []corev1.ContainerStatus{terminated("fetch"), terminated("build")},
			ContainerStatuses:     []corev1.ContainerStatus{terminated("upload")},
		},
	}
	f := &fixture{st: st, job: j, want: map[string]string{},
		cluster: &fakeCluster{pods: []corev1.Pod{pod}, logs: map[string]string{}, errs: map[string]error{}, streams: map[string]int{}}}
	for _, s := range steps {
		served, text := stream(s, n)
		f.cluster.logs[pod.Name+"/"+s] = served
		f.want[s] = text
	}
	f.h = &Handler{Logs: st, Jobs: st, Clusters: fakeClusters{"x86": f.cluster}}
	return f
}

// event stores f.job as the tests changed it (log-archive reads the job from the store; the
// event is a hint) and returns its job.changed.
func (f *fixture) event(t *testing.T) event.Event {
	t.Helper()
	f.store(t, f.job)
	e, err := events.NewJobEvent(events.TypeJobChanged, "status-sync", f.job, jobs.StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// store makes the stored job's status and steps those of j.
func (f *fixture) store(t *testing.T, j *jobs.Job) {
	t.Helper()
	if _, _, err := f.st.UpdateJob(t.Context(), j.ID, func(s *jobs.Job) (bool, error) {
		s.Status, s.Steps, s.Cluster, s.Namespace, s.Attempt, s.Attempts, s.FinishedAt = j.Status, j.Steps, j.Cluster, j.Namespace, j.Attempt, j.Attempts, j.FinishedAt
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// archived returns the archived text of step and checks the chunks are numbered 1, 2, ….
func (f *fixture) archived(t *testing.T, step string) string {
	t.Helper()
	var b bytes.Buffer
	for after := int64(0); ; {
		cs, err := f.st.LogChunks(t.Context(), f.job.ID, step, store.LogSourceArchive, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return b.String()
		}
		for _, c := range cs {
			if c.Seq != after+1 {
				t.Fatalf("step %s: chunk %d after %d", step, c.Seq, after)
			}
			after = c.Seq
			b.Write(c.Data)
		}
	}
}

func (f *fixture) logSteps(t *testing.T) map[string]store.LogStep {
	t.Helper()
	ss, err := f.st.LogSteps(t.Context(), f.job.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.LogStep{}
	for _, s := range ss {
		out[s.Step] = s
	}
	return out
}

func archivedData(t *testing.T, reply *event.Event) events.LogsArchivedData {
	t.Helper()
	if reply == nil {
		t.Fatal("no logs.archived reply")
	}
	if reply.Type() != events.TypeLogsArchived || reply.ID() != "job-1.logs.archived" || reply.Subject() != "job-1" {
		t.Errorf("reply %s %s %s", reply.Type(), reply.ID(), reply.Subject())
	}
	var d events.LogsArchivedData
	if err := json.Unmarshal(reply.Data(), &d); err != nil {
		t.Fatal(err)
	}
	if reply.Extensions()[events.ExtStatus] != string(d.Status) || reply.Extensions()[events.ExtService] != "svc" {
		t.Errorf("reply extensions %v", reply.Extensions())
	}
	return d
}

func receive(t *testing.T, h *Handler, e event.Event) (*event.Event, protocol.Result) {
	t.Helper()
	return h.Receive(t.Context(), e)
}

func TestArchive(t *testing.T) {
	f := newFixture(t, 10000) // several chunks per step
	reply, res := receive(t, f.h, f.event(t))
	if !protocol.IsACK(res) {
		t.Fatalf("Receive: %v", res)
	}
	d := archivedData(t, reply)
	if !d.Complete || len(d.Steps) != 3 {
		t.Errorf("logs.archived data: %+v", d)
	}
	for i, s := range steps {
		if got := f.archived(t, s); got != f.want[s] {
			t.Errorf("step %s: archived %d bytes, want the %d bytes served", s, len(got), len(f.want[s]))
		}
		ls := f.logSteps(t)[s]
		if !ls.Complete || ls.Incomplete || ls.Bytes != int64(len(f.want[s])) || ls.Lines != 10000 || ls.LastSeq < 2 {
			t.Errorf("step %s state: %+v", s, ls)
		}
		if d.Steps[i] != (events.LogsStep{Name: s, Bytes: ls.Bytes, Lines: ls.Lines, Complete: true}) {
			t.Errorf("logs.archived step %d: %+v", i, d.Steps[i])
		}
	}
	if d := cmp.Diff([]string{"omni-job-1-abc"}, f.cluster.removed); d != "" {
		t.Errorf("finalizers removed (-want +got):\n%s", d)
	}

	// A redelivery (or a later job.changed of the ended job) reads nothing again, replies the
	// same event, and stores nothing twice.
	f.cluster.pods[0].Finalizers = []string{names.PodFinalizer} // as if the first removal was lost
	again, res := receive(t, f.h, f.event(t))
	if !protocol.IsACK(res) {
		t.Fatalf("Receive again: %v", res)
	}
	if d2 := archivedData(t, again); !cmp.Equal(d, d2) {
		t.Errorf("second reply differs: %+v vs %+v", d2, d)
	}
	for k, n := range f.cluster.streams {
		if n != 1 {
			t.Errorf("%s streamed %d times, want once", k, n)
		}
	}
	if len(f.cluster.removed) != 2 {
		t.Errorf("finalizer removals: %v, want a second one", f.cluster.removed)
	}
	for _, s := range steps {
		if got := f.archived(t, s); got != f.want[s] {
			t.Errorf("step %s after a redelivery: %d bytes, want %d", s, len(got), len(f.want[s]))
		}
	}
}

// An archive killed after some chunks and delivered again ends with every line once.
func TestArchiveCrashHalfWay(t *testing.T) {
	for _, failAfter := range []int{1, 2, 5, 9} {
		t.Run(fmt.Sprint(failAfter), func(t *testing.T) {
			f := newFixture(t, 20000)
			stored := 0
			f.h.AfterChunk = func(context.Context, store.LogChunk) error {
				if stored++; stored == failAfter {
					return errors.New("killed")
				}
				return nil
			}
			if reply, res := receive(t, f.h, f.event(t)); protocol.IsACK(res) || reply != nil {
				t.Fatalf("first delivery: %v, reply %v; want a failure", res, reply)
			}
			if len(f.cluster.removed) != 0 {
				t.Fatal("the finalizer was removed although the archive failed")
			}
			reply, res := receive(t, f.h, f.event(t))
			if !protocol.IsACK(res) {
				t.Fatalf("redelivery: %v", res)
			}
			if d := archivedData(t, reply); !d.Complete {
				t.Errorf("after the redelivery: %+v", d)
			}
			for _, s := range steps {
				if got := f.archived(t, s); got != f.want[s] {
					t.Errorf("step %s: %d bytes, %d lines; want %d bytes, %d lines", s, len(got), strings.Count(got, "\n"),
						len(f.want[s]), strings.Count(f.want[s], "\n"))
				}
			}
		})
	}
}

func TestArchiveWhenPodsAreGone(t *testing.T) {
	f := newFixture(t, 10)
	f.cluster.pods = nil
	f.job.Status = jobs.StatusLost
	f.job.Steps[2] = jobs.Step{Name: "upload", Status: jobs.StepWaiting} // never ran
	// An earlier delivery stored the first chunk of fetch before it died.
	partial := store.LogChunk{JobID: f.job.ID, Step: "fetch", Source: store.LogSourceArchive, Seq: 1, Data: []byte("a\nb\n"), Lines: 2}
	if err := f.st.PutLogChunk(t.Context(), partial); err != nil {
		t.Fatal(err)
	}
	reply, res := receive(t, f.h, f.event(t))
	if !protocol.IsACK(res) {
		t.Fatalf("Receive: %v", res)
	}
	d := archivedData(t, reply)
	if d.Complete {
		t.Error("logs.archived says complete although the pods were gone")
	}
	got := f.logSteps(t)
	for _, s := range []string{"fetch", "build"} {
		if !got[s].Incomplete || got[s].Complete || !strings.Contains(got[s].Reason, "gone") {
			t.Errorf("step %s: %+v, want incomplete with a reason", s, got[s])
		}
	}
	if fe := got["fetch"]; fe.LastSeq != 1 || fe.Bytes != 4 || fe.Lines != 2 {
		t.Errorf("incomplete step fetch: %+v, want the counts of the chunk stored before", fe)
	}
	if u := got["upload"]; !u.Complete || u.Incomplete || u.Lines != 0 {
		t.Errorf("a step that never ran: %+v, want complete with no line", u)
	}
}

// A job that ended just now with no pod (a cancel right after its creation) may still get one
// from a creation the Job controller had in flight: its steps are not taken for never run, and
// the delivery is retried, until the grace has passed.
func TestArchiveNoPodYet(t *testing.T) {
	f := newFixture(t, 10)
	f.cluster.pods = nil
	ended := t0.Add(time.Hour)
	f.job.Status, f.job.FinishedAt = jobs.StatusCancelled, &ended
	for i := range f.job.Steps {
		f.job.Steps[i] = jobs.Step{Name: steps[i], Status: jobs.StepWaiting}
	}
	now := ended.Add(DefaultPodsGrace / 2)
	f.h.Now = func() time.Time { return now }
	if _, res := receive(t, f.h, f.event(t)); protocol.IsACK(res) || !errors.Is(res, errPodsMayAppear) {
		t.Fatalf("Receive within the grace: %v, want a retry (%v)", res, errPodsMayAppear)
	}
	if got := f.logSteps(t); len(got) != 0 {
		t.Errorf("steps recorded within the grace: %+v, want none", got)
	}
	now = ended.Add(DefaultPodsGrace)
	reply, res := receive(t, f.h, f.event(t))
	if !protocol.IsACK(res) {
		t.Fatalf("Receive after the grace: %v", res)
	}
	if d := archivedData(t, reply); !d.Complete {
		t.Errorf("after the grace: %+v, want complete (no step ran)", d)
	}
}

// The race behind an empty "complete" log: the first delivery stored a chunk of fetch and
// died; the pod was then force-deleted and the Job controller made a replacement whose
// containers have not started. The redelivery lists only that replacement. A step the job
// record saw start, or with chunks stored, must not be recorded as "never ran, complete and
// empty"; and no state may count fewer lines than the store holds.
func TestArchiveReplacementPodNotStarted(t *testing.T) {
	f := newFixture(t, 10)
	f.job.Status = jobs.StatusFailed
	f.job.Steps[1].Status = jobs.StepFailed
	f.job.Steps[2] = jobs.Step{Name: "upload", Status: jobs.StepWaiting} // never ran
	waiting := func(name string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}
	}
	f.cluster.pods[0] = corev1.Pod{
		// Deleted with its failed Job (a pod that is not deleted could still start a step:
		// TestArchiveWaitsForLivePod).
		ObjectMeta: metav1.ObjectMeta{Name: "omni-job-1-new", Namespace: "default", Labels: map[string]string{names.LabelJobID: f.job.ID},
			Finalizers: []string{names.PodFinalizer}, CreationTimestamp: metav1.NewTime(t0.Add(time.Minute)),
			DeletionTimestamp: &metav1.Time{Time: t0.Add(2 * time.Minute)}},
		Status: corev1.PodStatus{
			Phase:                 corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{waiting("fetch"), waiting("build")},
			ContainerStatuses:     []corev1.ContainerStatus{waiting("upload")},
		},
	}
	partial := []store.LogChunk{
		{JobID: f.job.ID, Step: "fetch", Source: store.LogSourceArchive, Seq: 1, Data: []byte("a\nb\n"), Lines: 2},
		{JobID: f.job.ID, Step: "fetch", Source: store.LogSourceArchive, Seq: 2, Data: []byte("c\n"), Lines: 1},
	}
	for _, c := range partial {
		if err := f.st.PutLogChunk(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	reply, res := receive(t, f.h, f.event(t))
	if !protocol.IsACK(res) {
		t.Fatalf("Receive: %v", res)
	}
	if d := archivedData(t, reply); d.Complete {
		t.Errorf("logs.archived says complete although steps that ran have no whole log: %+v", d)
	}
	got := f.logSteps(t)
	want := map[string]store.LogStep{
		"fetch":  {JobID: f.job.ID, Step: "fetch", LastSeq: 2, Bytes: 6, Lines: 3, Incomplete: true},
		"build":  {JobID: f.job.ID, Step: "build", Incomplete: true},
		"upload": {JobID: f.job.ID, Step: "upload", Complete: true},
	}
	for step, w := range want {
		g := got[step]
		if w.Incomplete && g.Reason == "" {
			t.Errorf("step %s: incomplete without a reason", step)
		}
		g.Reason = ""
		if d := cmp.Diff(w, g); d != "" {
			t.Errorf("step %s state (-want +got):\n%s", step, d)
		}
	}
	for k, n := range f.cluster.streams {
		t.Errorf("%s streamed %d times from a pod whose containers never started", k, n)
	}
}

// A job cancelled while its pod runs: the cancel is recorded before the garbage collector
// deletes the pod, which meanwhile may start the next step. A step that has not started in a pod
// that is not deleted is not taken for never run (its log would be archived empty): the delivery
// is retried until the pod is deleted.
func TestArchiveWaitsForLivePod(t *testing.T) {
	f := newFixture(t, 10)
	f.job.Status = jobs.StatusCancelled
	f.job.Steps[1] = jobs.Step{Name: "build", Status: jobs.StepWaiting} // not seen start yet
	f.job.Steps[2] = jobs.Step{Name: "upload", Status: jobs.StepWaiting}
	pod := &f.cluster.pods[0]
	pod.Status.Phase = corev1.PodPending
	pod.Status.InitContainerStatuses[1] = corev1.ContainerStatus{Name: "build", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}
	pod.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "upload", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}
	if _, res := receive(t, f.h, f.event(t)); protocol.IsACK(res) || !errors.Is(res, errStillRunning) {
		t.Fatalf("Receive while the pod may still start build: %v, want a retry (%v)", res, errStillRunning)
	}
	if got := f.logSteps(t); got["build"].Complete || got["upload"].Complete {
		t.Errorf("steps recorded while the pod lives: %+v", got)
	}
	if !slices.Contains(f.cluster.pods[0].Finalizers, names.PodFinalizer) {
		t.Error("the finalizer was removed while the pod may still run a step")
	}
	// The garbage collector deletes the pod. A scheduler or kubelet that has not seen the
	// deletion may still start a container (and report it later), for a while.
	deleted := t0.Add(time.Minute)
	pod.DeletionTimestamp = &metav1.Time{Time: deleted}
	now := deleted.Add(deletedPodGrace / 2)
	f.h.Now = func() time.Time { return now }
	if _, res := receive(t, f.h, f.event(t)); protocol.IsACK(res) || !errors.Is(res, errStillRunning) {
		t.Fatalf("Receive just after the pod's deletion: %v, want a retry (%v)", res, errStillRunning)
	}
	// Past that, no step starts any more (a pod on a lost node, or never scheduled, never ends).
	now = deleted.Add(deletedPodGrace)
	reply, res := receive(t, f.h, f.event(t))
	if !protocol.IsACK(res) {
		t.Fatalf("Receive once the pod is deleted: %v", res)
	}
	if d := archivedData(t, reply); !d.Complete {
		t.Errorf("after the pod's deletion: %+v, want complete (fetch archived, build and upload never ran)", d)
	}
	if got := f.archived(t, "fetch"); got != f.want["fetch"] {
		t.Errorf("fetch archived %q, want %q", got, f.want["fetch"])
	}
}

// A stream that gives fewer chunks than an earlier delivery stored does not shrink the state.
func TestArchiveNeverCountsLessThanStored(t *testing.T) {
	f := newFixture(t, 3)
	extra := store.LogChunk{JobID: f.job.ID, Step: "build", Source: store.LogSourceArchive, Seq: 2, Data: []byte("x\n"), Lines: 1}
	if err := f.st.PutLogChunk(t.Context(), extra); err != nil {
		t.Fatal(err)
	}
	if _, res := receive(t, f.h, f.event(t)); !protocol.IsACK(res) {
		t.Fatalf("Receive: %v", res)
	}
	b := f.logSteps(t)["build"]
	stored := f.archived(t, "build")
	if b.Bytes != int64(len(stored)) || b.Lines != int64(strings.Count(stored, "\n")) || b.LastSeq != 2 {
		t.Errorf("build state %+v; the store holds %d bytes, %d lines in 2 chunks", b, len(stored), strings.Count(stored, "\n"))
	}
	if !b.Incomplete || b.Complete {
		t.Errorf("build state %+v: want incomplete (the log no longer matches what was stored)", b)
	}
}

func TestArchiveStepOutcomes(t *testing.T) {
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "omni-job-1-abc")
	badRequest := apierrors.NewBadRequest(`container "build" in pod "omni-job-1-abc" is not available`)
	tests := map[string]struct {
		setup      func(f *fixture)
		wantErr    bool
		wantStates map[string]string // step → complete | incomplete | ""
	}{
		"pod deleted while archiving": {
			setup:      func(f *fixture) { f.cluster.errs["omni-job-1-abc/build"] = notFound },
			wantStates: map[string]string{"fetch": "complete", "build": "incomplete", "upload": "complete"},
		},
		"container log refused": {
			setup:      func(f *fixture) { f.cluster.errs["omni-job-1-abc/build"] = badRequest },
			wantStates: map[string]string{"fetch": "complete", "build": "incomplete", "upload": "complete"},
		},
		"cluster unavailable": {
			setup:      func(f *fixture) { f.cluster.errs["omni-job-1-abc/build"] = apierrors.NewServiceUnavailable("down") },
			wantErr:    true,
			wantStates: map[string]string{"fetch": "complete", "build": "", "upload": ""},
		},
		"container still running": {
			setup: func(f *fixture) {
				f.cluster.pods[0].Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
			},
			wantErr:    true,
			wantStates: map[string]string{"fetch": "complete", "build": "complete", "upload": ""},
		},
		"step never started": {
			setup: func(f *fixture) {
				f.cluster.pods[0].Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
				f.cluster.logs["omni-job-1-abc/upload"] = ""
				f.job.Steps[2] = jobs.Step{Name: "upload", Status: jobs.StepWaiting}
			},
			wantStates: map[string]string{"fetch": "complete", "build": "complete", "upload": "complete"},
		},
		"lines without timestamps are kept": {
			setup: func(f *fixture) {
				f.cluster.logs["omni-job-1-abc/build"] = "2026-11-27T19:00:00Z first\nno timestamp here\n"
				f.want["build"] = "first\nno timestamp here\n"
			},
			wantStates: map[string]string{"fetch": "complete", "build": "complete", "upload": "complete"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 5)
			tc.setup(f)
			reply, res := receive(t, f.h, f.event(t))
			if protocol.IsACK(res) == tc.wantErr {
				t.Fatalf("Receive: %v, want an error: %v", res, tc.wantErr)
			}
			if tc.wantErr && (reply != nil || len(f.cluster.removed) != 0) {
				t.Errorf("a failed archive replied %v / removed finalizers %v", reply, f.cluster.removed)
			}
			got := f.logSteps(t)
			for step, want := range tc.wantStates {
				s := got[step]
				state := ""
				switch {
				case s.Complete && !s.Incomplete:
					state = "complete"
				case s.Incomplete:
					state = "incomplete"
				}
				if state != want {
					t.Errorf("step %s: %+v, want %q", step, s, want)
				}
				if want == "incomplete" && s.Reason == "" {
					t.Errorf("step %s: incomplete without a reason", step)
				}
				if want == "complete" && f.archived(t, step) != f.want[step] && f.cluster.logs["omni-job-1-abc/"+step] != "" {
					t.Errorf("step %s: archived %q, want %q", step, f.archived(t, step), f.want[step])
				}
			}
		})
	}
}

func TestReceiveRejects(t *testing.T) {
	f := newFixture(t, 1)
	bad := func(typ string, data any) event.Event {
		e := cloudevents.NewEvent()
		e.SetID("x")
		e.SetSource("/test")
		e.SetType(typ)
		e.SetSubject("job-1")
		if err := e.SetData(cloudevents.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
		return e
	}
	running := f.job.Clone()
	running.Status = jobs.StatusRunning
	f.store(t, running)
	runningEvent, _ := events.NewJobEvent(events.TypeJobChanged, "status-sync", running, jobs.StatusPending)
	// An event that says the job ended while the store says it runs (forged, or stale).
	forged, _ := events.NewJobEvent(events.TypeJobChanged, "status-sync", f.job, jobs.StatusRunning)
	tests := map[string]struct {
		e        event.Event
		wantCode int // 0: ACK without reply
	}{
		"unknown type":            {bad("org.example.other", map[string]any{}), http.StatusBadRequest},
		"job.changed without job": {bad(events.TypeJobChanged, []int{1}), http.StatusBadRequest},
		"job without id":          {bad(events.TypeJobChanged, map[string]any{"status": "failed"}), http.StatusBadRequest},
		"job not ended":           {runningEvent, 0},
		"job not ended in store":  {forged, 0},
		"push without lines":      {bad(events.TypeLogsAppended, events.LogsAppendedData{Step: "build", Seq: 1}), http.StatusBadRequest},
		"push to unknown step":    {bad(events.TypeLogsAppended, events.LogsAppendedData{Step: "nope", Seq: 1, Lines: []events.AppendedLine{{Text: "x"}}}), http.StatusBadRequest},
		"push seq 0":              {bad(events.TypeLogsAppended, events.LogsAppendedData{Step: "build", Lines: []events.AppendedLine{{Text: "x"}}}), http.StatusBadRequest},
		"push not JSON":           {bad(events.TypeLogsAppended, "text"), http.StatusBadRequest},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reply, res := receive(t, f.h, tc.e)
			if reply != nil {
				t.Errorf("reply %v, want none", reply)
			}
			if tc.wantCode == 0 {
				if !protocol.IsACK(res) {
					t.Errorf("result %v, want ACK", res)
				}
				return
			}
			if code, _ := runtime.EventStatus(res); code != tc.wantCode {
				t.Errorf("result %v (status %d), want %d", res, code, tc.wantCode)
			}
		})
	}
	if len(f.cluster.streams) != 0 {
		t.Errorf("rejected events read logs: %v", f.cluster.streams)
	}
}

func TestAppend(t *testing.T) {
	f := newFixture(t, 1)
	setStatus(t, f, jobs.StatusRunning)
	push := func(seq int64, lines ...events.AppendedLine) protocol.Result {
		e, err := events.NewLogsAppendedEvent("/omni/worker/test", "job-1", events.LogsAppendedData{Step: "build", Seq: seq, Lines: lines})
		if err != nil {
			t.Fatal(err)
		}
		reply, res := receive(t, f.h, e)
		if reply != nil {
			t.Errorf("push replied %v", reply)
		}
		return res
	}
	l := func(sec int, text string) events.AppendedLine {
		return events.AppendedLine{Time: t0.Add(time.Duration(sec) * time.Second), Text: text}
	}
	for _, p := range []struct {
		seq   int64
		lines []events.AppendedLine
	}{
		{1, []events.AppendedLine{l(1, "one"), l(2, "two\nthree")}},
		{2, []events.AppendedLine{l(3, "four")}},
		{1, []events.AppendedLine{l(1, "one"), l(2, "two\nthree")}}, // a retry
	} {
		if res := push(p.seq, p.lines...); !protocol.IsACK(res) {
			t.Fatalf("push %d: %v", p.seq, res)
		}
	}
	cs, err := f.st.LogChunks(t.Context(), "job-1", "build", store.LogSourcePush, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, c := range cs {
		text.Write(c.Data)
	}
	if len(cs) != 2 || text.String() != "one\ntwo\nthree\nfour\n" || cs[0].Lines != 3 || !cs[0].FirstTime.Equal(t0.Add(time.Second)) || !cs[0].LastTime.Equal(t0.Add(2*time.Second)) {
		t.Errorf("pushed chunks: %+v", cs)
	}
	e, _ := events.NewLogsAppendedEvent("/omni/worker/test", "no-such-job", events.LogsAppendedData{Step: "build", Seq: 1, Lines: []events.AppendedLine{l(1, "x")}})
	if _, res := receive(t, f.h, e); !protocol.IsACK(res) {
		t.Errorf("push for an unknown job: %v, want ACK (never worth a retry)", res)
	}
}

// setStatus stores the fixture's job with status st.
func setStatus(t testing.TB, f *fixture, st jobs.Status) {
	t.Helper()
	if _, _, err := f.st.UpdateJob(t.Context(), f.job.ID, func(j *jobs.Job) (bool, error) {
		j.Status = st
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Pushed lines are taken only for running jobs, only for their steps, and bounded per push and
// per step: anyone who reaches the Broker can send logs.appended.
func TestAppendBounds(t *testing.T) {
	f := newFixture(t, 1)
	f.h.MaxPushBytes, f.h.MaxPushes = 100, 3
	push := func(step string, seq int64, text string) (int, error) {
		e, err := events.NewLogsAppendedEvent("/omni/worker/test", "job-1", events.LogsAppendedData{Step: step, Seq: seq,
			Lines: []events.AppendedLine{{Time: t0, Text: text}}})
		if err != nil {
			t.Fatal(err)
		}
		_, res := receive(t, f.h, e)
		code, _ := runtime.EventStatus(res)
		return code, res
	}
	for _, c := range []struct {
		name   string
		status jobs.Status
		step   string
		seq    int64
		text   string
		want   int
	}{
		{"ended job", jobs.StatusSucceeded, "build", 1, "x", http.StatusBadRequest},
		{"job not started", jobs.StatusPending, "build", 1, "x", http.StatusConflict},
		{"running job", jobs.StatusRunning, "build", 1, "x", http.StatusOK},
		{"another step of the job", jobs.StatusRunning, "upload", 1, "x", http.StatusOK},
		{"not a step of the job", jobs.StatusRunning, "evil", 1, "x", http.StatusBadRequest},
		{"last push of the step", jobs.StatusRunning, "build", 3, strings.Repeat("x", 99), http.StatusOK},
		{"push too large", jobs.StatusRunning, "build", 2, strings.Repeat("x", 100), http.StatusBadRequest},
		{"past the step's pushes", jobs.StatusRunning, "build", 4, "x", http.StatusBadRequest},
	} {
		setStatus(t, f, c.status)
		if code, res := push(c.step, c.seq, c.text); code != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, code, res, c.want)
		}
	}
	cs, err := f.st.LogChunks(t.Context(), "job-1", "build", store.LogSourcePush, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Errorf("stored %d pushes of build, want 2", len(cs))
	}
}
