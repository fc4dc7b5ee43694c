package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// ReasonCancelled is the reason of a job stopped by DELETE /v1/jobs/{id} (jobs.ReasonCancelled).
const ReasonCancelled = jobs.ReasonCancelled

// Deleter removes a job's objects from the cluster it runs on.
type Deleter interface {
	DeleteJobObjects(ctx context.Context, cluster, namespace, jobID string) error
}

func (h *Handler) serveDelete(w http.ResponseWriter, r *http.Request) {
	j, err := h.Delete(r.Context(), auth.FromContext(r.Context()), r.PathValue("id"))
	if err != nil {
		httpapi.Error(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, j.Redacted())
}

// Delete stops job id if it is still going (it ends cancelled) and removes its objects from its
// cluster; the job's records stay. The Kubernetes Job is deleted with propagation Background:
// its pods are terminated at once (a suspended Job would keep them until the Job controller got
// to it) and kept by their log-archive finalizer until their logs are archived. Calling it again
// is harmless: the objects are already gone and a terminal job stays as it is.
//
// Both writes are the store's conditional updates, so a concurrent status-sync write cannot undo
// them: the cancel request is stored only if the job has not ended (else the job ended before
// the cancel, and keeps its end), and once it is stored every end — this final write, or
// status-sync seeing the pod killed or the objects gone, whichever comes first — is a cancel
// (jobs.Job.End).
func (h *Handler) Delete(ctx context.Context, p *auth.Principal, id string) (*jobs.Job, error) {
	j, err := h.Store.GetJob(ctx, id)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return nil, jobs.NotFound(id) // the text of another service's job
	case err != nil:
		return nil, err
	case !p.Can(auth.RoleViewer, j.Service):
		return nil, jobs.NotFound(id)
	}
	if !p.Can(auth.RoleSubmitter, j.Service) {
		return nil, fmt.Errorf("cancel job %s: %w", id, jobs.ErrForbidden)
	}
	if j.Status == jobs.StatusQueued {
		// Nothing exists on a cluster yet: cancelled at once, unless a dispatcher placed it first.
		stored, done, err := h.cancelQueued(ctx, p, id)
		if err != nil || done {
			return stored, err
		}
		j = stored
	}
	if !j.Status.Terminal() && !j.CancelRequested {
		// Recorded first, so that status-sync and the resync take the Job's disappearance and
		// the pod's kill for a cancel, not a loss or a failure, whatever happens next.
		if j, _, err = h.Store.UpdateJob(ctx, id, func(j *jobs.Job) (bool, error) {
			if j.Status.Terminal() || j.CancelRequested {
				return false, nil
			}
			j.CancelRequested = true
			return true, nil
		}); err != nil {
			return nil, fmt.Errorf("record cancel: %w", err)
		}
	}
	if err := h.Deleter.DeleteJobObjects(ctx, j.Cluster, j.Namespace, id); err != nil {
		return nil, err
	}
	var previous jobs.Status
	stored, changed, err := h.Store.UpdateJob(ctx, id, func(j *jobs.Job) (bool, error) {
		previous = j.Status
		return j.CancelRequested && j.EndCancelled(h.now()), nil
	})
	if err != nil {
		return nil, fmt.Errorf("record cancel: %w", err)
	}
	if changed {
		h.emit(ctx, events.TypeJobChanged, stored, previous)
	}
	return stored, nil
}

// DeleteJobObjects deletes job jobID's objects from cluster.
func (k KubePlacer) DeleteJobObjects(ctx context.Context, cluster, namespace, jobID string) error {
	c, err := k.Clusters.Get(cluster)
	if err != nil {
		return err
	}
	if err := c.DeleteJobObjects(ctx, namespace, jobID); err != nil {
		return fmt.Errorf("%w: %w", jobs.ErrUnavailable, err)
	}
	return nil
}
