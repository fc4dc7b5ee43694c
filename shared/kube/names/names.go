// Package names holds the names this project shares with the clusters: the labels and
// annotations put on every object of a job, and the pod finalizer. The renderer
// (shared/manifest) writes them, the cluster adapter (shared/kube) selects and edits by them,
// and the local platform reads them; all take them from here. It imports nothing, so that
// anything may use it without pulling in a Kubernetes client.
package names

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
