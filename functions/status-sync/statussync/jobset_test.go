package statussync

// A job set as status-sync sees it: for each job, the snapshots of its Kubernetes Job and Pod in
// the order the ApiServerSource sends them, built as the Job controller and the local platform's
// kwok stages (local/platform/kwok/pod-stages.yaml) write them — init containers one by one, a
// failing container ends the pod Failed, a deleted pod first has its running containers exit 137
// and is removed once its finalizers are gone, Job conditions in two steps (SuccessCriteriaMet or
// FailureTarget, then Complete or Failed), the Job controller's finalizer removed from ended pods.

import (
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

const jobTrackingFinalizer = "batch.kubernetes.io/job-tracking"

// scenario is one job of the set: its steps and how it ends.
type scenario struct {
	task       string
	init, main []string
	// failStep exits with exit and reason; the job fails.
	failStep string
	exit     int32
	reason   string
	// holdStep runs until the job is cancelled (the cancel is requested while it runs).
	holdStep string
}

var (
	rpmInit, rpmMain = []string{"fetch-srpm", "build-rpm"}, []string{"upload"}
	isoInit, isoMain = []string{"download-iso", "verify-iso", "edit-iso"}, []string{"upload"}
)

// jobSet is 20 jobs of two job types: successes, failures at chosen steps with chosen exit codes
// and reasons, and two cancels of held steps (one init step, one main).
var jobSet = func() []scenario {
	rpm := func(fail string, code int32, reason, hold string) scenario {
		return scenario{task: "buildrpm", init: rpmInit, main: rpmMain, failStep: fail, exit: code, reason: reason, holdStep: hold}
	}
	iso := func(fail string, code int32, reason, hold string) scenario {
		return scenario{task: "buildimagefromiso", init: isoInit, main: isoMain, failStep: fail, exit: code, reason: reason, holdStep: hold}
	}
	return []scenario{
		rpm("", 0, "", ""), rpm("", 0, "", ""), rpm("", 0, "", ""), rpm("", 0, "", ""),
		iso("", 0, "", ""), iso("", 0, "", ""), iso("", 0, "", ""), iso("", 0, "", ""),
		rpm("fetch-srpm", 1, "Error", ""), rpm("build-rpm", 3, "BuildFailed", ""), rpm("upload", 7, "Error", ""),
		rpm("build-rpm", 137, "OOMKilled", ""), rpm("build-rpm", 2, "Error", ""),
		iso("download-iso", 6, "Error", ""), iso("verify-iso", 1, "ChecksumMismatch", ""), iso("edit-iso", 137, "OOMKilled", ""),
		iso("upload", 22, "Error", ""), iso("edit-iso", 4, "Error", ""),
		rpm("", 0, "", "build-rpm"), iso("", 0, "", "upload"),
	}
}()

// recEvent is one event about a job: a snapshot of its Job or Pod (deleted: it came with a
// delete), or, with neither, cancel's final write.
type recEvent struct {
	job     *batchv1.Job
	pod     *corev1.Pod
	deleted bool
}

func (e recEvent) String() string {
	d := ""
	if e.deleted {
		d = " deleted"
	}
	switch {
	case e.job != nil:
		return fmt.Sprintf("Job rv %s%s", e.job.ResourceVersion, d)
	case e.pod != nil:
		return fmt.Sprintf("Pod rv %s %s%s", e.pod.ResourceVersion, e.pod.Status.Phase, d)
	}
	return "cancel's write"
}

// apply applies e to j at now, as status-sync (or, for cancel's write, submit's Delete) does.
func (e recEvent) apply(j *jobs.Job, now time.Time) {
	switch {
	case e.job != nil:
		ApplyJob(j, e.job, e.deleted, now)
	case e.pod != nil:
		ApplyPod(j, e.pod, e.deleted, now)
	case j.CancelRequested:
		j.EndCancelled(now)
	}
}

// recorded is one job of the set as recorded: the job as submit stored it (with the cancel
// request for a cancelled job), the events in the order they happened, and the cluster's
// objects at the end, while the cancelled pods are still held by log-archive's finalizer (held)
// and once every deleted object is gone (gone).
type recorded struct {
	sc     scenario
	start  *jobs.Job
	events []recEvent
	held   kube.Snapshot
	gone   kube.Snapshot
}

// sim writes the objects of one job as the Job controller and kwok do.
type sim struct {
	now    time.Time
	rv     *int
	kj     *batchv1.Job
	pod    *corev1.Pod
	events []recEvent
}

// tick moves the clock on by d and returns the time as an object shows it: metav1.Time is
// written in whole seconds.
func (s *sim) tick(d time.Duration) metav1.Time {
	s.now = s.now.Add(d)
	return metav1.NewTime(s.now.Truncate(time.Second))
}

func (s *sim) emitJob(deleted bool) {
	*s.rv++
	s.kj.ResourceVersion = fmt.Sprint(*s.rv)
	s.events = append(s.events, recEvent{job: s.kj.DeepCopy(), deleted: deleted})
}

func (s *sim) emitPod(deleted bool) {
	*s.rv++
	s.pod.ResourceVersion = fmt.Sprint(*s.rv)
	s.events = append(s.events, recEvent{pod: s.pod.DeepCopy(), deleted: deleted})
}

// record runs scenario sc for job n, taking resource versions from rv.
func record(n int, sc scenario, rv *int) recorded {
	id := fmt.Sprintf("job-%02d", n)
	created := t0.Add(time.Duration(n) * time.Minute)
	labels := map[string]string{names.LabelJobID: id}
	s := &sim{now: created, rv: rv}
	start := &jobs.Job{ID: id, Service: "team-a", Task: sc.task, Cluster: "x86_64", Status: jobs.StatusPending,
		CreatedAt: created, CancelRequested: sc.holdStep != ""}
	for _, name := range append(append([]string{}, sc.init...), sc.main...) {
		start.Steps = append(start.Steps, jobs.Step{Name: name, Status: jobs.StepWaiting})
	}

	s.kj = &batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: "omni-" + id, Namespace: "default", Labels: labels, CreationTimestamp: s.tick(0)}}
	s.emitJob(false)
	s.pod = &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "omni-" + id + "-x7k2p", Namespace: "default", Labels: labels,
			CreationTimestamp: s.tick(10 * time.Millisecond),
			Finalizers:        []string{jobTrackingFinalizer, names.PodFinalizer}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort}}
	s.emitPod(false)
	s.pod.Spec.NodeName = "kwok-node-0"
	s.pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: s.tick(5 * time.Millisecond)}}
	s.emitPod(false)
	zero := int32(0)
	s.kj.Status = batchv1.JobStatus{Active: 1, Ready: &zero, Terminating: &zero, StartTime: ptr(s.tick(5 * time.Millisecond)),
		UncountedTerminatedPods: &batchv1.UncountedTerminatedPods{}}
	s.emitJob(false)

	// kwok's pod-create stage: every container waiting, the pod started.
	waiting := func(name, reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, Image: "omni/" + name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	}
	s.pod.Status.StartTime = ptr(s.tick(20 * time.Millisecond))
	s.pod.Status.HostIP, s.pod.Status.PodIP = "10.0.0.1", fmt.Sprintf("10.0.1.%d", n+1)
	for _, c := range sc.init {
		s.pod.Status.InitContainerStatuses = append(s.pod.Status.InitContainerStatuses, waiting(c, "PodInitializing"))
	}
	for _, c := range sc.main {
		s.pod.Status.ContainerStatuses = append(s.pod.Status.ContainerStatuses, waiting(c, "PodInitializing"))
	}
	s.emitPod(false)

	// Each step runs for a while, init containers one by one; main ones together.
	dur := func(name string) time.Duration { return time.Duration(len(name)*(n+3)) * 700 * time.Millisecond }
	run := func(cs *corev1.ContainerStatus) metav1.Time {
		at := s.tick(30 * time.Millisecond)
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}
		started := true
		cs.Started = &started
		return at
	}
	end := func(cs *corev1.ContainerStatus, code int32, reason string, started metav1.Time, d time.Duration) {
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
			StartedAt: started, FinishedAt: s.tick(d), ContainerID: "kwok://" + cs.Name}}
		started2 := false
		cs.Started, cs.Ready = &started2, false
	}
	var outcome string // "", "failed", or "held"
	for i := range s.pod.Status.InitContainerStatuses {
		cs := &s.pod.Status.InitContainerStatuses[i]
		at := run(cs)
		s.emitPod(false)
		switch cs.Name {
		case sc.holdStep:
			outcome = "held"
		case sc.failStep:
			end(cs, sc.exit, sc.reason, at, dur(cs.Name))
			outcome = "failed"
		default:
			end(cs, 0, "Completed", at, dur(cs.Name))
		}
		if outcome == "held" {
			break
		}
		s.emitPod(false)
		if outcome == "failed" {
			break
		}
	}
	if outcome == "" {
		s.pod.Status.Phase = corev1.PodRunning
		s.pod.Status.Conditions = append(s.pod.Status.Conditions, corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: s.tick(0)})
		starts := map[string]metav1.Time{}
		for i := range s.pod.Status.ContainerStatuses {
			cs := &s.pod.Status.ContainerStatuses[i]
			starts[cs.Name] = run(cs)
			cs.Ready = true
		}
		s.emitPod(false)
		one := int32(1)
		s.kj.Status.Ready = &one
		s.tick(15 * time.Millisecond)
		s.emitJob(false)
		for i := range s.pod.Status.ContainerStatuses {
			cs := &s.pod.Status.ContainerStatuses[i]
			switch cs.Name {
			case sc.holdStep:
				outcome = "held"
			case sc.failStep:
				end(cs, sc.exit, sc.reason, starts[cs.Name], dur(cs.Name))
				outcome = "failed"
			default:
				end(cs, 0, "Completed", starts[cs.Name], dur(cs.Name))
			}
		}
	}

	switch outcome {
	case "held":
		// DELETE /v1/jobs/{id}: the cancel is recorded (start has it), the Job deleted with
		// propagation Background, cancel's final write; the pod is told to stop, its running
		// container exits 137, the Job controller lets it go, log-archive lets it go.
		s.tick(2 * time.Second)
		s.emitJob(true)
		s.events = append(s.events, recEvent{})
		s.pod.DeletionTimestamp = ptr(s.tick(20 * time.Millisecond))
		grace := int64(30)
		s.pod.DeletionGracePeriodSeconds = &grace
		s.emitPod(false)
		for _, list := range [][]corev1.ContainerStatus{s.pod.Status.InitContainerStatuses, s.pod.Status.ContainerStatuses} {
			for i := range list {
				if r := list[i].State.Running; r != nil {
					end(&list[i], 137, "Error", r.StartedAt, 10*time.Millisecond)
				}
			}
		}
		s.pod.Status.Phase = corev1.PodFailed
		s.emitPod(false)
		s.pod.Finalizers = []string{names.PodFinalizer}
		s.emitPod(false)
		held := s.pod.DeepCopy()
		s.pod.Finalizers = nil
		s.emitPod(false)
		s.emitPod(true)
		return recorded{sc: sc, start: start, events: s.events,
			held: kube.Snapshot{Pods: []corev1.Pod{*held}}, gone: kube.Snapshot{}}
	case "failed":
		s.pod.Status.Phase = corev1.PodFailed
	default:
		s.pod.Status.Phase = corev1.PodSucceeded
	}
	s.pod.Status.Conditions = append(s.pod.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "PodCompleted", LastTransitionTime: s.tick(0)})
	s.emitPod(false)

	// The Job controller: counts the pod, then the end conditions, then lets the pod go. It
	// reacts a little later, often in the next second.
	s.tick(time.Duration(300+37*n) * time.Millisecond)
	cond := func(t batchv1.JobConditionType, reason, msg string) batchv1.JobCondition {
		return batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: msg,
			LastProbeTime: metav1.NewTime(s.now.Truncate(time.Second)), LastTransitionTime: metav1.NewTime(s.now.Truncate(time.Second))}
	}
	s.kj.Status.Active, s.kj.Status.Ready = 0, &zero
	if outcome == "failed" {
		s.kj.Status.Failed = 1
		s.kj.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobFailureTarget, "BackoffLimitExceeded", "Job has reached the specified backoff limit")}
	} else {
		s.kj.Status.Succeeded = 1
		s.kj.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobSuccessCriteriaMet, "CompletionsReached", "Reached expected number of succeeded pods")}
	}
	s.emitJob(false)
	s.tick(25 * time.Millisecond)
	if outcome == "failed" {
		s.kj.Status.Conditions = append(s.kj.Status.Conditions, cond(batchv1.JobFailed, "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
	} else {
		s.kj.Status.Conditions = append(s.kj.Status.Conditions, cond(batchv1.JobComplete, "CompletionsReached", "Reached expected number of succeeded pods"))
		s.kj.Status.CompletionTime = ptr(metav1.NewTime(s.now.Truncate(time.Second)))
	}
	s.emitJob(false)
	s.pod.Finalizers = []string{names.PodFinalizer}
	s.emitPod(false)
	return recorded{sc: sc, start: start, events: s.events,
		held: kube.Snapshot{Job: s.kj.DeepCopy(), Pods: []corev1.Pod{*s.pod.DeepCopy()}},
		gone: kube.Snapshot{Job: s.kj.DeepCopy(), Pods: []corev1.Pod{*s.pod.DeepCopy()}}}
}

// recordSet records the whole job set, with resource versions counted across it as one API
// server does.
func recordSet() []recorded {
	rv := 41000
	out := make([]recorded, len(jobSet))
	for i, sc := range jobSet {
		out[i] = record(i, sc, &rv)
	}
	return out
}

func ptr[T any](v T) *T { return &v }
