package jobs

import "time"

// Queue is a job's passage through the build queue (docs/queue.md).
type Queue struct {
	// Class is the priority class the job was submitted with (urgent, normal, background, …).
	Class string `json:"class"`
	// Slots is how many slots of an engine instance the job takes while it runs.
	Slots int `json:"slots"`
	// ConcurrencyKey is the job type's concurrency key rendered for this job ("" for none).
	ConcurrencyKey string `json:"concurrencyKey,omitempty"`
	// Position is the job's place in dispatch order (1 = next) while it is queued, as of the
	// last dispatch pass; 0 once dispatched.
	Position int `json:"position,omitempty"`
	// Reason says why the job waits, as of the last dispatch pass.
	Reason string `json:"reason,omitempty"`
	// DispatchedAt is when the job was placed on an engine instance (queued → pending).
	DispatchedAt *time.Time `json:"dispatchedAt,omitempty"`
	// MaxAttempts is how many attempts the job may have in all (the job type's policy at
	// submit): a job lost to the infrastructure goes back to the queue until it has had them.
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// Claim names the slot claims the job holds ("<job id>/<claim>" is their holder). Set when
	// the job is dispatched; a slot held under another claim is an orphan the dispatcher frees.
	Claim string `json:"claim,omitempty"`
}

// Wait is how long the job waited in the queue: from CreatedAt to its dispatch (0 if it was
// not dispatched).
func (j *Job) Wait() time.Duration {
	if j.Queue == nil || j.Queue.DispatchedAt == nil {
		return 0
	}
	return j.Queue.DispatchedAt.Sub(j.CreatedAt)
}

// Ran is what a job was dispatched with: the revision of its job type and the images of its
// containers, so that a rerun "as it was" is possible and a change is visible.
type Ran struct {
	// TaskDigest is the job type's digest (GET /v1/tasks shows the current one).
	TaskDigest string `json:"taskDigest"`
	// Images are the container images of the job's pod, init containers first, each once.
	Images []string `json:"images,omitempty"`
}
