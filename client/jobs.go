package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// listQuery is the query of a list call.
func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	return q
}

func setTime(q url.Values, name string, t time.Time) {
	if !t.IsZero() {
		q.Set(name, t.UTC().Format(time.RFC3339Nano))
	}
}

func setString(q url.Values, name, v string) {
	if v != "" {
		q.Set(name, v)
	}
}

// CreateJob is POST /v1/jobs.
func (c *Client) CreateJob(ctx context.Context, req JobRequest) (*Job, error) {
	var out Job
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/jobs", scoped: true, body: req}, &out)
	return ptrOrNil(&out, err)
}

// ListJobs is GET /v1/jobs: one page, by id (ids sort by creation time).
func (c *Client) ListJobs(ctx context.Context, opts JobListOptions) (*Page[Job], error) {
	q := opts.ListOptions.query()
	setString(q, "status", opts.Status)
	setTime(q, "from", opts.From)
	setTime(q, "to", opts.To)
	var out Page[Job]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs", query: q, scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// GetJob is GET /v1/jobs/{id}.
func (c *Client) GetJob(ctx context.Context, jobID string) (*Job, error) {
	return c.jobCall(ctx, http.MethodGet, jobID, "", nil)
}

// UpdateJob is PATCH /v1/jobs/{id}.
func (c *Client) UpdateJob(ctx context.Context, jobID string, patch JobPatch) (*Job, error) {
	return c.jobCall(ctx, http.MethodPatch, jobID, "", patch)
}

// CancelJob is DELETE /v1/jobs/{id}: the job never fires again (a one-shot
// only while it has not fired). It is kept, with status cancelled.
func (c *Client) CancelJob(ctx context.Context, jobID string) (*Job, error) {
	return c.jobCall(ctx, http.MethodDelete, jobID, "", nil)
}

// PauseJob is POST /v1/jobs/{id}/pause.
func (c *Client) PauseJob(ctx context.Context, jobID string) (*Job, error) {
	return c.jobCall(ctx, http.MethodPost, jobID, "/pause", nil)
}

// ResumeJob is POST /v1/jobs/{id}/resume: the job fires again from its next
// slot after now.
func (c *Client) ResumeJob(ctx context.Context, jobID string) (*Job, error) {
	return c.jobCall(ctx, http.MethodPost, jobID, "/resume", nil)
}

// ArchiveJob is POST /v1/jobs/{id}/archive.
func (c *Client) ArchiveJob(ctx context.Context, jobID string) (*Job, error) {
	return c.jobCall(ctx, http.MethodPost, jobID, "/archive", nil)
}

func (c *Client) jobCall(ctx context.Context, method, jobID, action string, body any) (*Job, error) {
	var out Job
	r := request{method: method, path: "/v1/jobs/" + id(jobID) + action, scoped: true}
	if body != nil {
		r.body = body
	}
	err := c.do(ctx, r, &out)
	return ptrOrNil(&out, err)
}

// TriggerJob is POST /v1/jobs/{id}/trigger: an occurrence now, whatever the
// schedule, delivered like a scheduled one.
func (c *Client) TriggerJob(ctx context.Context, jobID string) (*OccurrenceDetail, error) {
	var out OccurrenceDetail
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/jobs/" + id(jobID) + "/trigger", scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// PreviewSchedule is POST /v1/schedules/preview: the next fires of a
// schedule, computed by the node with the poller's maths and its default
// time zone.
func (c *Client) PreviewSchedule(ctx context.Context, req PreviewRequest) ([]time.Time, error) {
	var out struct {
		Fires []time.Time `json:"fires"`
	}
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/schedules/preview", body: req}, &out); err != nil {
		return nil, err
	}
	return out.Fires, nil
}

// ListOccurrences is GET /v1/jobs/{id}/occurrences: by number, or by id
// with a Status filter.
func (c *Client) ListOccurrences(ctx context.Context, jobID string, opts OccurrenceListOptions) (*Page[Occurrence], error) {
	q := opts.ListOptions.query()
	setString(q, "status", opts.Status)
	var out Page[Occurrence]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs/" + id(jobID) + "/occurrences", query: q, scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// GetOccurrence is GET /v1/occurrences/{id}, with its deliveries.
func (c *Client) GetOccurrence(ctx context.Context, occurrenceID string) (*OccurrenceDetail, error) {
	return c.occurrenceCall(ctx, http.MethodGet, occurrenceID, "")
}

// CompleteOccurrence is POST /v1/occurrences/{id}/complete (a pending
// occurrence of a job with manual completion, or any pending one).
func (c *Client) CompleteOccurrence(ctx context.Context, occurrenceID string) (*OccurrenceDetail, error) {
	return c.occurrenceCall(ctx, http.MethodPost, occurrenceID, "/complete")
}

// SkipOccurrence is POST /v1/occurrences/{id}/skip.
func (c *Client) SkipOccurrence(ctx context.Context, occurrenceID string) (*OccurrenceDetail, error) {
	return c.occurrenceCall(ctx, http.MethodPost, occurrenceID, "/skip")
}

func (c *Client) occurrenceCall(ctx context.Context, method, occurrenceID, action string) (*OccurrenceDetail, error) {
	var out OccurrenceDetail
	err := c.do(ctx, request{method: method, path: "/v1/occurrences/" + id(occurrenceID) + action, scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// ptrOrNil returns out, or nil when err is set, so that no caller reads a
// half-decoded value.
func ptrOrNil[T any](out *T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	return out, nil
}
