package client

import (
	"context"
	"net/http"
)

// PublishEvent is POST /v1/events: the event is stored and fanned out to
// the subscribed endpoints when due (at once without ScheduledAt). A
// repeated IdempotencyKey answers the event that key first created.
func (c *Client) PublishEvent(ctx context.Context, req EventRequest) (*Event, error) {
	var out Event
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/events", scoped: true, body: req}, &out)
	return ptrOrNil(&out, err)
}

// GetEvent is GET /v1/events/{id}, with its deliveries.
func (c *Client) GetEvent(ctx context.Context, eventID string) (*EventDetail, error) {
	var out EventDetail
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/events/" + id(eventID), scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// ListDeliveries is GET /v1/deliveries with the filters of opts. (The
// deliveries of one event are in GetEvent; the API has no event filter.)
func (c *Client) ListDeliveries(ctx context.Context, opts DeliveryListOptions) (*Page[Delivery], error) {
	q := opts.ListOptions.query()
	setString(q, "status", opts.Status)
	setString(q, "endpointId", opts.EndpointID)
	setString(q, "jobId", opts.JobID)
	setTime(q, "from", opts.From)
	setTime(q, "to", opts.To)
	var out Page[Delivery]
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/deliveries", query: q, scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// GetDelivery is GET /v1/deliveries/{id}, with its attempts.
func (c *Client) GetDelivery(ctx context.Context, deliveryID string) (*DeliveryDetail, error) {
	return c.deliveryCall(ctx, http.MethodGet, deliveryID, "")
}

// RetryDelivery is POST /v1/deliveries/{id}/retry: a dead-lettered or
// cancelled delivery is queued again with a fresh round of attempts.
func (c *Client) RetryDelivery(ctx context.Context, deliveryID string) (*DeliveryDetail, error) {
	return c.deliveryCall(ctx, http.MethodPost, deliveryID, "/retry")
}

// CancelDelivery is POST /v1/deliveries/{id}/cancel (an unfinished one).
func (c *Client) CancelDelivery(ctx context.Context, deliveryID string) (*DeliveryDetail, error) {
	return c.deliveryCall(ctx, http.MethodPost, deliveryID, "/cancel")
}

func (c *Client) deliveryCall(ctx context.Context, method, deliveryID, action string) (*DeliveryDetail, error) {
	var out DeliveryDetail
	err := c.do(ctx, request{method: method, path: "/v1/deliveries/" + id(deliveryID) + action, scoped: true}, &out)
	return ptrOrNil(&out, err)
}

// ReplayDeliveries is POST /v1/deliveries/replay: the dead letters req
// selects are queued again, oldest first.
func (c *Client) ReplayDeliveries(ctx context.Context, req ReplayRequest) (*ReplayResult, error) {
	var out ReplayResult
	err := c.do(ctx, request{method: http.MethodPost, path: "/v1/deliveries/replay", scoped: true, body: req}, &out)
	return ptrOrNil(&out, err)
}
