package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// CreateToken is POST /v1/tokens (admin); the secret is in the answer, once.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (*NewToken, error) {
	var out NewToken
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/tokens", body: req}, &out)
	return ptrOrNil(&out, err)
}

// ListTokens is GET /v1/tokens (admin), without secrets.
func (c *Client) ListTokens(ctx context.Context, opts ListOptions) (*Page[Token], error) {
	var out Page[Token]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/tokens", query: opts.query()}, &out)
	return ptrOrNil(&out, err)
}

// RevokeToken is DELETE /v1/tokens/{id} (admin). The token stays listed,
// revoked.
func (c *Client) RevokeToken(ctx context.Context, tokenID string) (*Token, error) {
	var out Token
	err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/tokens/" + id(tokenID)}, &out)
	return ptrOrNil(&out, err)
}

// CreateProject is POST /v1/projects (an admin token bound to no project).
func (c *Client) CreateProject(ctx context.Context, req ProjectRequest) (*Project, error) {
	var out Project
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/projects", body: req}, &out)
	return ptrOrNil(&out, err)
}

// ListProjects is GET /v1/projects.
func (c *Client) ListProjects(ctx context.Context, opts ListOptions) (*Page[Project], error) {
	var out Page[Project]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/projects", query: opts.query()}, &out)
	return ptrOrNil(&out, err)
}

// GetProject is GET /v1/projects/{name}.
func (c *Client) GetProject(ctx context.Context, name string) (*Project, error) {
	var out Project
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/projects/" + id(name)}, &out)
	return ptrOrNil(&out, err)
}

// SetProjectTargetCIDRs is PUT /v1/projects/{name}/allowed-target-cidrs
// (an admin token bound to no project): the internal ranges the project's
// deliveries may reach, within the nodes' --allowed-target-cidrs. nil
// returns to the nodes' ranges; an empty, non-nil slice allows none.
func (c *Client) SetProjectTargetCIDRs(ctx context.Context, name string, cidrs []string) (*Project, error) {
	var out Project
	err := c.do(ctx, request{method: http.MethodPut, path: "/v1/projects/" + id(name) + "/allowed-target-cidrs",
		body: map[string]any{"allowedTargetCidrs": cidrs}}, &out)
	return ptrOrNil(&out, err)
}

// DeleteProject is DELETE /v1/projects/{name}; the API refuses while the
// project still holds anything.
func (c *Client) DeleteProject(ctx context.Context, name string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/v1/projects/" + id(name)}, nil)
}

// Health is GET /v1/health: the node is up (no token needed).
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var out Health
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/health"}, &out)
	return ptrOrNil(&out, err)
}

// Ready is GET /v1/ready: the node has a leader and has caught up; an
// *Error with Code "not_ready" otherwise.
func (c *Client) Ready(ctx context.Context) (*Health, error) {
	var out Health
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/ready"}, &out)
	return ptrOrNil(&out, err)
}

// OpenAPI is GET /v1/openapi.json, the API's description.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/openapi.json"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// ClusterStatus is GET /v1/cluster/status: members, roles, leader and Raft
// indexes as the node called sees them (no token needed).
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	var out ClusterStatus
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/cluster/status"}, &out)
	return ptrOrNil(&out, err)
}

// TransferLeadership is POST /v1/cluster/transfer-leadership: leadership
// moves to the voter to ("" lets Raft pick the most up-to-date one).
func (c *Client) TransferLeadership(ctx context.Context, to string) (*ClusterStatus, error) {
	var body any
	if to != "" {
		body = struct {
			To string `json:"to"`
		}{to}
	}
	var out ClusterStatus
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/cluster/transfer-leadership", body: body}, &out)
	return ptrOrNil(&out, err)
}

// RemovePeer is DELETE /v1/cluster/peers/{id}: a dead server leaves the
// Raft configuration (a live one is refused: stop it first).
func (c *Client) RemovePeer(ctx context.Context, nodeID string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/v1/cluster/peers/" + id(nodeID)}, nil)
}

// SaveSnapshot is GET /v1/cluster/snapshot: a consistent snapshot of the
// whole state, signed by the cluster (docs/operations.md), streamed into w. It returns the bytes written. A download cut
// short cannot be restored (the stream ends with a marker), so a partial
// file is harmless, but the caller should still discard it on error.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/cluster/snapshot", stream: true})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("chime: snapshot download: %w", err)
	}
	return n, nil
}

// RestoreOptions are the choices of a restore.
type RestoreOptions struct {
	// Foreign accepts a backup this cluster did not sign: one saved by
	// another cluster (another cluster key) or by a release before backups
	// were signed. Its integrity cannot be checked.
	Foreign bool
}

// RestoreSnapshot is POST /v1/cluster/restore: the cluster's whole state is
// replaced by the backup read from r. The upload is verified and validated
// before the cluster sees it; an invalid one changes nothing (an *Error with
// Code "invalid_snapshot", e.g. a changed byte). One this cluster did not
// sign is refused with Code "unverified_snapshot" unless opts says Foreign.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader, opts ...RestoreOptions) (*RestoreResult, error) {
	var out RestoreResult
	var q url.Values
	for _, o := range opts {
		if o.Foreign {
			q = url.Values{"foreign": {"true"}}
		}
	}
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/cluster/restore", query: q, rawBody: r,
		contentType: "application/octet-stream", stream: true}, &out)
	return ptrOrNil(&out, err)
}
