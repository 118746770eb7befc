package client

import (
	"context"
	"net/http"
	"net/url"
)

// CreateEndpoint is POST /v1/endpoints; the answer carries the signing
// secret, this once.
func (c *Client) CreateEndpoint(ctx context.Context, req EndpointRequest) (*EndpointWithSecret, error) {
	var out EndpointWithSecret
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/endpoints", scoped: true, body: req}, &out)
	return ptrOrNil(&out, err)
}

// ListEndpoints is GET /v1/endpoints.
func (c *Client) ListEndpoints(ctx context.Context, opts ListOptions) (*Page[Endpoint], error) {
	var out Page[Endpoint]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/endpoints", query: opts.query(), scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// GetEndpoint is GET /v1/endpoints/{id}.
func (c *Client) GetEndpoint(ctx context.Context, endpointID string) (*Endpoint, error) {
	var out Endpoint
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/endpoints/" + id(endpointID), scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// UpdateEndpoint is PATCH /v1/endpoints/{id}.
func (c *Client) UpdateEndpoint(ctx context.Context, endpointID string, patch EndpointPatch) (*Endpoint, error) {
	var out Endpoint
	err := c.do(ctx, request{method: http.MethodPatch, path: "/v1/endpoints/" + id(endpointID), scoped: true, body: patch}, &out)
	return ptrOrNil(&out, err)
}

// DeleteEndpoint is DELETE /v1/endpoints/{id}: the endpoint and its
// delivery history go.
func (c *Client) DeleteEndpoint(ctx context.Context, endpointID string) (*DeletedEndpoint, error) {
	var out DeletedEndpoint
	err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/endpoints/" + id(endpointID), scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// EnableEndpoint is POST /v1/endpoints/{id}/enable; releaseHeld also
// re-queues the deliveries held while it was disabled.
func (c *Client) EnableEndpoint(ctx context.Context, endpointID string, releaseHeld bool) (*EnabledEndpoint, error) {
	var q url.Values
	if releaseHeld {
		q = url.Values{"releaseHeld": {"true"}}
	}
	var out EnabledEndpoint
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/endpoints/" + id(endpointID) + "/enable", query: q, scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// DisableEndpoint is POST /v1/endpoints/{id}/disable: new deliveries to it
// are held until it is enabled again.
func (c *Client) DisableEndpoint(ctx context.Context, endpointID string) (*Endpoint, error) {
	var out Endpoint
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/endpoints/" + id(endpointID) + "/disable", scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// RotateSecret is POST /v1/endpoints/{id}/rotate-secret: a new secret, shown
// in this answer only; for graceSeconds (0 to 7 days) the old one keeps
// signing too, so receivers can switch over.
func (c *Client) RotateSecret(ctx context.Context, endpointID string, graceSeconds int64) (*RotatedSecret, error) {
	body := struct {
		GraceSeconds int64 `json:"graceSeconds"`
	}{graceSeconds}
	var out RotatedSecret
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/endpoints/" + id(endpointID) + "/rotate-secret", scoped: true, body: body}, &out)
	return ptrOrNil(&out, err)
}

// ListEndpointDeliveries is GET /v1/endpoints/{id}/deliveries, the
// endpoint's delivery history (Status is the only filter it takes; the
// other fields of opts are ignored).
func (c *Client) ListEndpointDeliveries(ctx context.Context, endpointID string, opts DeliveryListOptions) (*Page[Delivery], error) {
	q := opts.ListOptions.query()
	setString(q, "status", opts.Status)
	var out Page[Delivery]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/endpoints/" + id(endpointID) + "/deliveries", query: q, scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// TestEndpoint is POST /v1/endpoints/{id}/test: a webhook.test event sent
// to this endpoint only (even a disabled one), tried once. The answer is the
// delivery with its attempt; if no attempt was recorded in time (the
// endpoint's timeout plus a grace the API chooses) it is the delivery as it
// stands, and GetDelivery shows the outcome later.
func (c *Client) TestEndpoint(ctx context.Context, endpointID string) (*DeliveryDetail, error) {
	var out DeliveryDetail
	// The node holds the call open for the attempt, up to the endpoint's
	// timeout (as long as 60 s) plus its grace: longer than an ordinary call
	// may take, so it runs under the stream bound.
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/endpoints/" + id(endpointID) + "/test", scoped: true, stream: true}, &out)
	return ptrOrNil(&out, err)
}
