package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// StreamEvent is one Server-Sent Event of GET /v1/stream.
type StreamEvent struct {
	// Type is "ready" (first, Data holds the node and its applied index),
	// "reset" (last, when the node drops the stream: re-read what you show
	// and reconnect) or a change, "<resource>.<created|updated|deleted>".
	Type string
	// ID is the Raft index of the change (empty on reset).
	ID   string
	Data json.RawMessage
}

// StreamChange is the Data of a change event. Object is what a GET of the
// resource answers (for a deletion, the object as it was); decode it into
// Job, Occurrence, Delivery, Endpoint or Event according to Resource.
type StreamChange struct {
	Resource string          `json:"resource"`
	Op       string          `json:"op"`
	ID       string          `json:"id"`
	Index    uint64          `json:"index"`
	Object   json.RawMessage `json:"object"`
}

// Change decodes the Data of a change event.
func (e StreamEvent) Change() (*StreamChange, error) {
	if e.Type == "ready" || e.Type == "reset" {
		return nil, fmt.Errorf("chime: a %s event is not a change", e.Type)
	}
	var ch StreamChange
	if err := json.Unmarshal(e.Data, &ch); err != nil {
		return nil, fmt.Errorf("chime: stream event %s: %w", e.Type, err)
	}
	return &ch, nil
}

// StreamOptions narrow a stream.
type StreamOptions struct {
	// Resources are the resources to follow: jobs, occurrences, deliveries,
	// endpoints, events (none: all).
	Resources []string
}

// Stream is GET /v1/stream: it calls fn with every change to the project's
// objects, as the node applies them, until ctx ends (it returns ctx's
// error), fn returns an error (returned as is), or the node ends the stream
// (after a "reset" event; it returns nil). The stream lives as long as ctx:
// it is the one call the client's timeout does not bound, so give ctx a
// deadline or cancel it. A stream cannot resume: after it ends, re-read
// what you show and call Stream again.
func (c *Client) Stream(ctx context.Context, opts StreamOptions, fn func(StreamEvent) error) error {
	var q url.Values
	if len(opts.Resources) > 0 {
		q = url.Values{"resources": {strings.Join(opts.Resources, ",")}}
	}
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/stream", query: q, scoped: true, open: true})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	// A change carries a whole object (a job's payload can be 256 KiB).
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev StreamEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" { // the end of one event
			if ev.Type != "" || len(data) > 0 {
				if ev.Type == "" {
					ev.Type = "message" // SSE's default name
				}
				ev.Data = json.RawMessage(strings.Join(data, "\n"))
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev, data = StreamEvent{}, nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a keep-alive comment
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Type = value
		case "id":
			ev.ID = value
		case "data":
			data = append(data, value)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("chime: stream: %w", err)
	}
	return ctx.Err()
}
