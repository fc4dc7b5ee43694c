package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"go.uber.org/zap"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/functions/status-sync/statussync"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/ids"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/sqlite"
	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

// rvToken stands for the resourceVersion in the encoded pods; each event replaces it.
var rvToken = []byte(`"@RV@"`)

// podStream is the life of one buildrpm pod as ApiServerSource sends it: pending, then each
// container running in turn (the earlier ones terminated with exit code 0), then succeeded.
// Each stage is encoded once for a template job id, which every event replaces by its own.
type podStream struct {
	id     []byte
	stages [][]byte
}

// event returns the update of stage of the pod of job id, at resourceVersion rv.
func (p *podStream) event(id string, stage, rv int) (event.Event, error) {
	e := event.New()
	e.SetID(strconv.Itoa(rv))
	e.SetSource("https://x86_64.example/api/v1/namespaces/default/pods")
	e.SetType(events.TypeResourceUpdate)
	e.SetExtension(events.ExtCluster, "x86_64")
	data := bytes.ReplaceAll(p.stages[stage], p.id, []byte(id))
	data = bytes.Replace(data, rvToken, []byte(`"`+strconv.Itoa(rv)+`"`), 1)
	return e, e.SetData(event.ApplicationJSON, data)
}

// syncOrder maps event i of n to a job (round robin over every job, so the whole store is the
// working set) and a stage: each job gets its stages in order, so every event changes its job.
func syncOrder(i, n, stages int) (job, stage int) {
	jobsN := (n + stages - 1) / stages
	return i % jobsN, i / jobsN
}

func BenchmarkStatusSync(b *testing.B) {
	ps, err := newPodStream()
	if err != nil {
		b.Fatal(err)
	}
	ctx := logging.WithLogger(context.Background(), zap.NewNop().Sugar())
	stages := len(ps.stages)
	var res results

	b.Run("store.UpdateJob", func(b *testing.B) {
		st, ids := freshStore(b, (b.N+stages-1)/stages)
		b.ResetTimer()
		s := measure(b, 1, b.N, func(i int) error {
			j, _ := syncOrder(i, b.N, stages)
			rv := strconv.Itoa(i + 1)
			_, _, err := st.UpdateJob(ctx, ids[j], func(job *jobs.Job) (bool, error) {
				if job.Observed == nil {
					job.Observed = map[string]string{}
				}
				job.Observed["Pod/bench"] = rv
				return true, nil
			})
			return err
		})
		b.StopTimer()
		res.put("store", s)
		b.ReportMetric(s.perSecond(), "events/s")
	})
	// The same changes as Receive makes, from pods decoded beforehand: what the store costs for
	// a real change (status, steps, times, the active-jobs index), without the event's decode.
	b.Run("store.UpdateJob/derived", func(b *testing.B) {
		st, ids := freshStore(b, (b.N+stages-1)/stages)
		pods := make([]corev1.Pod, stages)
		for k := range pods {
			var obj struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
				Status   corev1.PodStatus  `json:"status"`
			}
			if err := json.Unmarshal(bytes.Replace(ps.stages[k], rvToken, []byte(`"1"`), 1), &obj); err != nil {
				b.Fatal(err)
			}
			pods[k] = corev1.Pod{ObjectMeta: obj.Metadata, Status: obj.Status}
		}
		b.ResetTimer()
		s := measure(b, 1, b.N, func(i int) error {
			j, stage := syncOrder(i, b.N, stages)
			pod := pods[stage]
			pod.ResourceVersion = strconv.Itoa(i + 1)
			_, _, err := st.UpdateJob(ctx, ids[j], func(job *jobs.Job) (bool, error) {
				return statussync.ApplyPod(job, &pod, false, time.Now().UTC()).Stored(), nil
			})
			return err
		})
		b.StopTimer()
		res.put("derived", s)
		b.ReportMetric(s.perSecond(), "events/s")
	})
	b.Run("Handler.Receive", func(b *testing.B) {
		st, ids := freshStore(b, (b.N+stages-1)/stages)
		h := &statussync.Handler{Store: st}
		changed := 0
		b.ResetTimer()
		s := measure(b, 1, b.N, func(i int) error {
			j, stage := syncOrder(i, b.N, stages)
			e, err := ps.event(ids[j], stage, i+1)
			if err != nil {
				return err
			}
			reply, result := h.Receive(ctx, e)
			if !protocol.IsACK(result) {
				return fmt.Errorf("event %d: %v", i, result)
			}
			if reply != nil {
				changed++
			}
			return nil
		})
		b.StopTimer()
		if changed != b.N {
			b.Logf("%d of %d events changed their job", changed, b.N)
		}
		res.put("receive", s)
		b.ReportMetric(s.perSecond(), "events/s")
		if base, ok := res.get("store"); ok {
			b.ReportMetric(s.perSecond()/base.perSecond(), "events/s/baseline")
		}
	})

	base, hasBase := res.get("store")
	s, ok := res.get("receive")
	row := func(name string, s sample, vs string) []string {
		return []string{name, fmt.Sprint(len(s.lat)), fmt.Sprintf("%.0f", s.perSecond()),
			fmt.Sprintf("%.3f", ms(s.quantile(.5))), fmt.Sprintf("%.3f", ms(s.quantile(.99))), vs}
	}
	var rows [][]string
	if hasBase {
		rows = append(rows, row("store.UpdateJob, trivial change (baseline)", base, ""))
	}
	if d, ok := res.get("derived"); ok {
		vs := "-"
		if hasBase {
			vs = "events/s " + ratio(d.perSecond(), base.perSecond()) + ", p50 " + ratio(ms(d.quantile(.5)), ms(base.quantile(.5)))
		}
		rows = append(rows, row("store.UpdateJob, the handler's change (pods decoded beforehand)", d, vs))
	}
	if ok {
		vs := "-"
		if hasBase {
			vs = "events/s " + ratio(s.perSecond(), base.perSecond()) + ", p50 " + ratio(ms(s.quantile(.5)), ms(base.quantile(.5)))
		}
		rows = append(rows, row("statussync Handler.Receive, pod update", s, vs))
	}
	table(fmt.Sprintf("status-sync: pod update events, %d per job, round robin over the jobs, fresh SQLite store", stages),
		[]string{"path", "events", "events/s", "p50 ms", "p99 ms", "vs baseline"}, rows)
}

// freshStore opens a new SQLite store in a temporary folder and records n pending buildrpm jobs
// in it, as submit does.
func freshStore(b *testing.B, n int) (*sqlite.Store, []string) {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "omni.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	out := make([]string, n)
	for i := range out {
		out[i] = ids.New(now)
		if err := st.CreateJob(ctx, pendingRPMJob(out[i], now)); err != nil {
			b.Fatal(err)
		}
	}
	return st, out
}

// pendingRPMJob is a buildrpm job of rpmJob as submit records it once placed on the x86_64
// cluster: pending, every step waiting.
func pendingRPMJob(id string, now time.Time) *jobs.Job {
	job := &jobs.Job{
		ID: id, Service: "bench", Task: "buildrpm", Domain: "bench", Arch: "x86_64",
		Cluster: "x86_64", Namespace: "default", Status: jobs.StatusPending,
		Parameters: rpmJob["parameters"].(map[string]any), CreatedAt: now, UpdatedAt: now,
	}
	for _, s := range []string{"fetch-srpm", "build-rpm", "upload"} {
		job.Steps = append(job.Steps, jobs.Step{Name: s, Status: jobs.StepWaiting})
	}
	return job
}

// newPodStream renders a buildrpm job and encodes its pod at every stage.
func newPodStream() (*podStream, error) {
	src, err := manifest.NewSource(templates.FS, "")
	if err != nil {
		return nil, err
	}
	id := ids.New(time.Now())
	objs, err := src.Current().Render("buildrpm", manifest.Input{
		JobID: id, Namespace: "default", Service: "bench", Task: "buildrpm", Domain: "bench",
		Arch: "x86_64", Parameters: rpmJob["parameters"].(map[string]any),
	})
	if err != nil {
		return nil, err
	}
	var kj batchv1.Job
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(objs[len(objs)-1].Object, &kj); err != nil {
		return nil, err
	}
	start := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	pod := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: kj.Name + "-x7k2p", Namespace: "default", ResourceVersion: "@RV@",
			Labels: kj.Spec.Template.Labels, Annotations: kj.Spec.Template.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: kj.Name, UID: "6f0e6c1e-7f3a-4a4e-9d0c-2b8f7b7d1a10"}},
		},
		Spec: kj.Spec.Template.Spec,
	}
	pod.Spec.NodeName = "x86-64-node-0"
	if pod.Labels[names.LabelJobID] != id {
		return nil, fmt.Errorf("the rendered pod template has no %s label", names.LabelJobID)
	}
	nInit := len(pod.Spec.InitContainers)
	containers := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	ps := &podStream{id: []byte(id)}
	// Stage 0: pending; stage k: container k-1 running; last stage: all done, pod succeeded.
	for stage := 0; stage <= len(containers)+1; stage++ {
		p := pod.DeepCopy()
		p.Status = corev1.PodStatus{Phase: corev1.PodPending, StartTime: &start}
		running := stage - 1
		var statuses []corev1.ContainerStatus
		for k, c := range containers {
			cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
			switch {
			case k < running:
				cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: start, FinishedAt: start}
			case k == running:
				cs.State.Running = &corev1.ContainerStateRunning{StartedAt: start}
			default:
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
			}
			statuses = append(statuses, cs)
		}
		p.Status.InitContainerStatuses, p.Status.ContainerStatuses = statuses[:nInit], statuses[nInit:]
		switch {
		case running >= len(containers):
			p.Status.Phase = corev1.PodSucceeded
		case running >= nInit:
			p.Status.Phase = corev1.PodRunning
		}
		raw, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		if !bytes.Contains(raw, rvToken) {
			return nil, fmt.Errorf("encoded pod has no %s", rvToken)
		}
		ps.stages = append(ps.stages, raw)
	}
	return ps, nil
}
