package client

import (
	"context"
	"net/http"
)

// Limits are per-project limits (docs/operations.md, "Limits"). In an answer
// 0 means no limit. A write over a limit fails with an *Error of Status 429
// and Code "quota_exceeded", Field naming the limit and, for rates and
// maxUndelivered, RetryAfter.
type Limits struct {
	MaxJobs            int64 `json:"maxJobs"`
	MaxEndpoints       int64 `json:"maxEndpoints"`
	MaxUndelivered     int64 `json:"maxUndelivered"`
	CreatesPerSecond   int64 `json:"createsPerSecond"`
	CreateBurst        int64 `json:"createBurst"`
	PublishesPerSecond int64 `json:"publishesPerSecond"`
	PublishBurst       int64 `json:"publishBurst"`
	MinIntervalSeconds int64 `json:"minIntervalSeconds"`
	MaxScheduledEvents int64 `json:"maxScheduledEvents"`
}

// LimitsPatch changes limits: a field left nil is kept, a value is set (0:
// no limit), and a name in Unset is cleared (a project then inherits the
// cluster's value; the cluster's becomes no limit).
type LimitsPatch struct {
	MaxJobs            *int64
	MaxEndpoints       *int64
	MaxUndelivered     *int64
	CreatesPerSecond   *int64
	CreateBurst        *int64
	PublishesPerSecond *int64
	PublishBurst       *int64
	MinIntervalSeconds *int64
	MaxScheduledEvents *int64
	// Unset lists JSON names (e.g. "maxJobs") to clear.
	Unset []string
}

func (p LimitsPatch) body() map[string]any {
	out := map[string]any{}
	for name, v := range map[string]*int64{
		"maxJobs": p.MaxJobs, "maxEndpoints": p.MaxEndpoints, "maxUndelivered": p.MaxUndelivered,
		"createsPerSecond": p.CreatesPerSecond, "createBurst": p.CreateBurst,
		"publishesPerSecond": p.PublishesPerSecond, "publishBurst": p.PublishBurst,
		"minIntervalSeconds": p.MinIntervalSeconds, "maxScheduledEvents": p.MaxScheduledEvents,
	} {
		if v != nil {
			out[name] = *v
		}
	}
	for _, name := range p.Unset {
		out[name] = nil
	}
	return out
}

// ClusterLimits is the answer of GET and PATCH /v1/limits.
type ClusterLimits struct {
	Limits   Limits `json:"limits"`
	Defaults Limits `json:"defaults"` // what a new cluster starts with
}

// ProjectLimits is the answer of GET and PATCH /v1/projects/{name}/limits.
type ProjectLimits struct {
	Project   string           `json:"project"`
	Limits    Limits           `json:"limits"`    // in force
	Overrides map[string]int64 `json:"overrides"` // the project's own (0: no limit)
	Usage     struct {
		Jobs        int64 `json:"jobs"`
		Endpoints   int64 `json:"endpoints"`
		Undelivered int64 `json:"undelivered"`
		// ScheduledEvents are the events waiting to be fanned out.
		ScheduledEvents int64 `json:"scheduledEvents"`
	} `json:"usage"`
}

// GetClusterLimits is GET /v1/limits.
func (c *Client) GetClusterLimits(ctx context.Context) (*ClusterLimits, error) {
	var out ClusterLimits
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/limits"}, &out)
	return ptrOrNil(&out, err)
}

// SetClusterLimits is PATCH /v1/limits (an admin token bound to no project).
func (c *Client) SetClusterLimits(ctx context.Context, p LimitsPatch) (*ClusterLimits, error) {
	var out ClusterLimits
	err := c.do(ctx, request{method: http.MethodPatch, path: "/v1/limits", body: p.body()}, &out)
	return ptrOrNil(&out, err)
}

// GetProjectLimits is GET /v1/projects/{name}/limits.
func (c *Client) GetProjectLimits(ctx context.Context, project string) (*ProjectLimits, error) {
	var out ProjectLimits
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/projects/" + id(project) + "/limits"}, &out)
	return ptrOrNil(&out, err)
}

// SetProjectLimits is PATCH /v1/projects/{name}/limits (an admin token bound
// to no project).
func (c *Client) SetProjectLimits(ctx context.Context, project string, p LimitsPatch) (*ProjectLimits, error) {
	var out ProjectLimits
	err := c.do(ctx, request{method: http.MethodPatch, path: "/v1/projects/" + id(project) + "/limits", body: p.body()}, &out)
	return ptrOrNil(&out, err)
}

// ResetProjectLimits is DELETE /v1/projects/{name}/limits: the project
// inherits every cluster-wide limit again.
func (c *Client) ResetProjectLimits(ctx context.Context, project string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/v1/projects/" + id(project) + "/limits"}, nil)
}
