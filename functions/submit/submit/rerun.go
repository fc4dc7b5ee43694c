package submit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// serveRerun serves POST /v1/jobs/{id}:rerun (the only action on a job so far).
func (h *Handler) serveRerun(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(r.PathValue("action"), ":rerun")
	if !ok || id == "" {
		httpapi.Error(w, r, fmt.Errorf("POST %s: %w", r.URL.Path, jobs.ErrNotFound))
		return
	}
	j, replayed, err := h.Rerun(r.Context(), auth.FromContext(r.Context()), id, r.Header.Get("Idempotency-Key"))
	if err != nil {
		httpapi.Error(w, r, err)
		return
	}
	writeCreated(w, j, replayed)
}

// Rerun queues a new job with the request of job id (service, task, domain, arch, parameters
// as stored, labels, callback, class), linked both ways: the new job's rerunOf names id, and
// id's reruns lists the new job. The parameters are checked again against the current job
// type. A rerun with an Idempotency-Key behaves as a submission with it.
func (h *Handler) Rerun(ctx context.Context, p *auth.Principal, id, key string) (*jobs.Job, bool, error) {
	orig, err := h.Store.GetJob(ctx, id)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return nil, false, jobs.NotFound(id) // the text of another service's job
	case err != nil:
		return nil, false, err
	case !p.Can(auth.RoleViewer, orig.Service):
		return nil, false, jobs.NotFound(id)
	}
	req := Request{Service: orig.Service, Task: orig.Task, Domain: orig.Domain, Arch: orig.Arch,
		Parameters: orig.Parameters, Labels: orig.Labels, Callback: orig.Callback}
	if orig.Queue != nil {
		req.Class = orig.Queue.Class
	}
	j, replayed, err := h.submit(ctx, p, req, key, orig.ID)
	if err != nil {
		return nil, false, err
	}
	if _, _, err := h.Store.UpdateJob(ctx, orig.ID, func(o *jobs.Job) (bool, error) {
		if slices.Contains(o.Reruns, j.ID) {
			return false, nil
		}
		o.Reruns = append(o.Reruns, j.ID)
		return true, nil
	}); err != nil {
		return nil, false, fmt.Errorf("link job %s to its rerun %s: %w", orig.ID, j.ID, err)
	}
	return j, replayed, nil
}
