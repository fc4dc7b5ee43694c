// Package names holds the names this project shares with the clusters: the labels and
// annotations put on every object of a job, and the pod finalizer. The renderer
// (shared/manifest) writes them, the cluster adapter (shared/kube) selects and edits by them,
// and the local platform reads them; all take them from here. It imports only the standard
// library, so that anything may use it without pulling in a Kubernetes client.
package names

import (
	"strconv"
	"strings"
)

// Labels, annotations and the finalizer on the objects of a job (on the Job's pod template too).
const (
	// LabelJobID carries the job id; selectors for a job's objects use it.
	LabelJobID = "omni.openeuler.org/job-id"
	// LabelService, LabelTask, LabelDomain and LabelArch carry a label-safe form of the job's
	// fields (shared/manifest.LabelValue).
	LabelService = "omni.openeuler.org/service"
	LabelTask    = "omni.openeuler.org/task"
	LabelDomain  = "omni.openeuler.org/domain"
	LabelArch    = "omni.openeuler.org/arch"
	// LabelManagedBy is the well-known managed-by label; its value is ManagedBy.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of LabelManagedBy, and the field manager of our writes.
	ManagedBy = "omni-orchestrator"
	// AnnotationService and AnnotationDomain carry the job's service and domain verbatim (a
	// label value may be a hash of them).
	AnnotationService = "omni.openeuler.org/service"
	AnnotationDomain  = "omni.openeuler.org/domain"
	// PodFinalizer is set on the job's pods; log-archive removes it once the pod's logs are
	// stored, so that nothing deletes a pod before that.
	PodFinalizer = "omni.openeuler.org/log-archive"
)

// JobSelector is the label selector of the objects of job id.
func JobSelector(id string) string { return LabelJobID + "=" + id }

// LabelAttempt carries the attempt number of a job's objects from the second attempt on (a job
// lost to the infrastructure runs again as a new attempt, docs/queue.md). The objects of the
// first attempt have no such label, as before attempts existed.
const LabelAttempt = "omni.openeuler.org/attempt"

// AttemptKey names the objects of one attempt of a job: the job id for the first attempt,
// "<id>@<n>" from the second on. Lists and snapshots of a job's objects take it (see Selector);
// '@' cannot occur in a job id, a DNS label.
func AttemptKey(id string, attempt int) string {
	if attempt <= 1 {
		return id
	}
	return id + "@" + itoa(attempt)
}

// SplitAttemptKey splits an AttemptKey into the job id and the attempt number (1 for a bare id).
func SplitAttemptKey(key string) (id string, attempt int) {
	i := strings.LastIndexByte(key, '@')
	if i < 0 {
		return key, 1
	}
	n, err := strconv.Atoi(key[i+1:])
	if err != nil || n < 2 {
		return key, 1
	}
	return key[:i], n
}

// Selector is the label selector of the objects named by key (an AttemptKey): those of the
// first attempt carry no attempt label.
func Selector(key string) string {
	id, n := SplitAttemptKey(key)
	if n <= 1 {
		return JobSelector(id) + ",!" + LabelAttempt
	}
	return JobSelector(id) + "," + LabelAttempt + "=" + itoa(n)
}

// AttemptOf returns the attempt number that an object's labels carry: 1 without the label, 0
// (no attempt) for a value that is not a number above 1.
func AttemptOf(labels map[string]string) int {
	v, ok := labels[LabelAttempt]
	if !ok {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		return 0
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }
