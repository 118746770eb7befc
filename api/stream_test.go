package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event string
	data      map[string]any
}

// openStream opens GET path and returns a channel of its events, closed when
// the stream ends.
func openStream(t *testing.T, ctx context.Context, url string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan sseEvent, 64)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.data)
			}
		}
	}()
	return out, resp
}

func nextEvent(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no stream event within 5 s")
	}
	return sseEvent{}
}

func TestStreamShowsTheProjectsChanges(t *testing.T) {
	srv, _ := newNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	want(t, do(t, srv, "POST", "/v1/projects", `{"name":"other"}`), 201)

	events, resp := openStream(t, ctx, srv.URL+"/v1/stream")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	if ev := nextEvent(t, events); ev.event != "ready" || ev.data["project"] != DefaultProject {
		t.Fatalf("first event %+v", ev)
	}
	only, _ := openStream(t, ctx, srv.URL+"/v1/stream?resources=endpoints")
	nextEvent(t, only) // ready

	// Another project's job is not shown; ours is, as GET shows it.
	want(t, do(t, srv, "POST", "/v1/jobs?project=other", `{"recurrenceSeconds":3600,"callbackUrl":"https://example.com/x"}`), 201)
	id := str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"name":"watched","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`), 201).body, "id")
	ev := nextEvent(t, events)
	obj, _ := ev.data["object"].(map[string]any)
	if ev.event != "job.created" || ev.data["id"] != id || obj["name"] != "watched" || obj["status"] != "active" || ev.id == "" {
		t.Fatalf("job.created event %+v", ev)
	}
	want(t, do(t, srv, "POST", "/v1/jobs/"+id+"/pause", ""), 200)
	if ev := nextEvent(t, events); ev.event != "job.updated" || ev.data["object"].(map[string]any)["status"] != "paused" {
		t.Fatalf("job.updated event %+v", ev)
	}
	ep := str(t, want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://example.com/e","eventTypes":["*"]}`), 201).body, "id")
	if ev := nextEvent(t, events); ev.event != "endpoint.created" || ev.data["id"] != ep {
		t.Fatalf("endpoint.created event %+v", ev)
	}
	if _, leaked := ev.data["object"].(map[string]any)["secret"]; leaked {
		t.Fatal("the stream shows an endpoint's secret")
	}
	// The filtered stream saw only the endpoint.
	if ev := nextEvent(t, only); ev.event != "endpoint.created" {
		t.Fatalf("filtered stream %+v", ev)
	}

	if code, field := errorOf(t, do(t, srv, "GET", "/v1/stream?resources=tokens", "")); code != "invalid_request" || field != "resources" {
		t.Fatalf("bad resources: %s %s", code, field)
	}
}
