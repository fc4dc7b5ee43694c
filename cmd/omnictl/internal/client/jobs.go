package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Raw keeps the JSON an object was decoded from, so that -o json|yaml shows exactly what the
// API answered (fields this client does not know included).
type Raw struct{ raw json.RawMessage }

// JSON returns the JSON the object was decoded from.
func (r Raw) JSON() json.RawMessage { return r.raw }

// Job is a job as the API returns it (the fields the CLI uses; Raw holds all of them).
type Job struct {
	Raw        `json:"-"`
	ID         string            `json:"id"`
	Service    string            `json:"service"`
	Task       string            `json:"task"`
	Domain     string            `json:"domain"`
	Arch       string            `json:"arch"`
	Cluster    string            `json:"cluster"`
	Status     string            `json:"status"`
	Reason     string            `json:"reason"`
	Message    string            `json:"message"`
	Parameters json.RawMessage   `json:"parameters"`
	Labels     map[string]string `json:"labels"`
	Steps      []Step            `json:"steps"`
	Queue      *QueueRecord      `json:"queue"`
	RerunOf    string            `json:"rerunOf"`
	Reruns     []string          `json:"reruns"`
	// Attempt is the attempt under way (0 or 1: the first); Attempts the earlier ones, lost to
	// the infrastructure and retried (docs/queue.md).
	Attempt    int        `json:"attempt"`
	Attempts   []Attempt  `json:"attempts"`
	CreatedAt  *time.Time `json:"createdAt"`
	StartedAt  *time.Time `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	Revision   int64      `json:"revision"`
}

// UnmarshalJSON decodes the job and keeps its JSON.
func (j *Job) UnmarshalJSON(b []byte) error {
	type plain Job
	if err := json.Unmarshal(b, (*plain)(j)); err != nil {
		return err
	}
	j.Raw = Raw{append(json.RawMessage(nil), b...)}
	return nil
}

// Terminal reports whether the job has ended.
func (j *Job) Terminal() bool {
	switch j.Status {
	case "succeeded", "failed", "cancelled", "lost":
		return true
	}
	return false
}

// FailedStep returns the first step that failed, or nil.
func (j *Job) FailedStep() *Step {
	for i := range j.Steps {
		if j.Steps[i].Status == "failed" {
			return &j.Steps[i]
		}
	}
	return nil
}

// Step is one step of a job (a container of its pod).
type Step struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	ExitCode   *int       `json:"exitCode"`
	Reason     string     `json:"reason"`
	Message    string     `json:"message"`
	StartedAt  *time.Time `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt"`
}

// Attempt is an earlier attempt of a job, lost to the infrastructure.
type Attempt struct {
	Number  int    `json:"number"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// QueueRecord is a job's place in the build queue (docs/queue.md).
type QueueRecord struct {
	Class    string `json:"class"`
	Slots    int    `json:"slots"`
	Position int    `json:"position"`
	Reason   string `json:"reason"`
}

// SubmitRequest is the body of POST /v1/jobs.
type SubmitRequest struct {
	Service    string            `json:"service"`
	Task       string            `json:"task"`
	Arch       string            `json:"arch"`
	Domain     string            `json:"domain,omitempty"`
	Parameters map[string]any    `json:"parameters,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Callback   string            `json:"callback,omitempty"`
	Class      string            `json:"class,omitempty"`
}

// Submit creates a job. With an idempotency key, a repeat answers the first job.
func (c *Client) Submit(ctx context.Context, req SubmitRequest, idempotencyKey string) (*Job, error) {
	var j Job
	if _, err := c.do(ctx, http.MethodPost, "/v1/jobs", nil, req, &j, "Idempotency-Key", idempotencyKey); err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	return &j, nil
}

// Job returns the job id.
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	var j Job
	if _, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, nil, &j); err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return &j, nil
}

// Cancel cancels a running or queued job (or deletes a finished job's cluster objects) and
// returns the job.
func (c *Client) Cancel(ctx context.Context, id string) (*Job, error) {
	var j Job
	if _, err := c.do(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id), nil, nil, &j); err != nil {
		return nil, fmt.Errorf("cancel job %s: %w", id, err)
	}
	return &j, nil
}

// Rerun queues a new job with the request of job id and returns the new job.
func (c *Client) Rerun(ctx context.Context, id, idempotencyKey string) (*Job, error) {
	var j Job
	if _, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+":rerun", nil, nil, &j, "Idempotency-Key", idempotencyKey); err != nil {
		return nil, fmt.Errorf("rerun job %s: %w", id, err)
	}
	return &j, nil
}

// ListFilter selects the jobs of List; empty fields do not filter.
type ListFilter struct {
	Service, Task, Domain, Status string
	// Since and Until bound createdAt: Since ≤ createdAt < Until.
	Since, Until time.Time
	// Limit is the page size (API default when 0).
	Limit int
}

// JobPage is one page of GET /v1/jobs.
type JobPage struct {
	Jobs          []*Job `json:"jobs"`
	NextPageToken string `json:"nextPageToken"`
}

// List returns one page of jobs, newest first; pass the page's NextPageToken back for the next.
func (c *Client) List(ctx context.Context, f ListFilter, pageToken string) (*JobPage, error) {
	q := url.Values{}
	for k, v := range map[string]string{"service": f.Service, "task": f.Task, "domain": f.Domain, "status": f.Status, "page_token": pageToken} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	var p JobPage
	if _, err := c.do(ctx, http.MethodGet, "/v1/jobs", q, nil, &p); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return &p, nil
}

// Task is a job type of GET /v1/tasks.
type Task struct {
	Raw         `json:"-"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Arches      []string        `json:"arches"`
	Steps       []string        `json:"steps"`
	Schema      json.RawMessage `json:"schema"`
}

// UnmarshalJSON decodes the task and keeps its JSON.
func (t *Task) UnmarshalJSON(b []byte) error {
	type plain Task
	if err := json.Unmarshal(b, (*plain)(t)); err != nil {
		return err
	}
	t.Raw = Raw{append(json.RawMessage(nil), b...)}
	return nil
}

// Tasks returns the job types.
func (c *Client) Tasks(ctx context.Context) ([]*Task, error) {
	var out struct {
		Tasks []*Task `json:"tasks"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/v1/tasks", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("list job types: %w", err)
	}
	return out.Tasks, nil
}

// QueueView is GET /v1/queue.
type QueueView struct {
	Raw       `json:"-"`
	Waiting   []QueuedJob `json:"waiting"`
	Hidden    int         `json:"hidden"`
	Instances []Instance  `json:"instances"`
}

// UnmarshalJSON decodes the view and keeps its JSON.
func (v *QueueView) UnmarshalJSON(b []byte) error {
	type plain QueueView
	if err := json.Unmarshal(b, (*plain)(v)); err != nil {
		return err
	}
	v.Raw = Raw{append(json.RawMessage(nil), b...)}
	return nil
}

// QueuedJob is a waiting job of the queue view.
type QueuedJob struct {
	ID        string     `json:"id"`
	Service   string     `json:"service"`
	Task      string     `json:"task"`
	Arch      string     `json:"arch"`
	Class     string     `json:"class"`
	Slots     int        `json:"slots"`
	Position  int        `json:"position"`
	Reason    string     `json:"reason"`
	CreatedAt *time.Time `json:"createdAt"`
}

// Instance is an engine instance of the queue view, with its slots.
type Instance struct {
	Name      string `json:"name"`
	Arch      string `json:"arch"`
	Capacity  int    `json:"capacity"`
	InUse     int    `json:"inUse"`
	Free      int    `json:"free"`
	Unlimited bool   `json:"unlimited"`
}

// Queue returns the build queue, filtered by arch, service and class when not empty.
func (c *Client) Queue(ctx context.Context, arch, service, class string) (*QueueView, error) {
	q := url.Values{}
	for k, v := range map[string]string{"arch": arch, "service": service, "class": class} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var v QueueView
	if _, err := c.do(ctx, http.MethodGet, "/v1/queue", q, nil, &v); err != nil {
		return nil, fmt.Errorf("read the queue: %w", err)
	}
	return &v, nil
}
