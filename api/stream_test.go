package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
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

// Issue 12 item 6: one token, or one project, cannot take every stream of a
// node: beyond their limits a stream is refused with 429 and Retry-After,
// other projects and the cluster's operators still get theirs, and a
// closed stream frees its place.
func TestStreamLimitsPerTokenAndProject(t *testing.T) {
	srv, _ := newNodeWith(t, func(cfg *Config) { cfg.StreamsPerToken, cfg.StreamsPerProject = 2, 3 })
	u := srv.URL
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	want(t, do(t, srv, "POST", "/v1/projects", `{"name":"other"}`), 201)
	mk := func(body string) string {
		return str(t, want(t, do(t, srv, "POST", "/v1/tokens", body), 201).body, "token")
	}
	readerA, readerB := mk(`{"name":"a","scopes":["read"]}`), mk(`{"name":"b","scopes":["read"]}`)
	otherTok := mk(`{"name":"o","scopes":["read"],"project":"other"}`)

	open := func(tok, query string) (*http.Response, context.CancelFunc) {
		t.Helper()
		sctx, scancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(sctx, "GET", u+"/v1/stream"+query, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { scancel(); resp.Body.Close() })
		return resp, scancel
	}
	refused := func(resp *http.Response, what string) {
		t.Helper()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "too_many_streams") {
			t.Fatalf("%s: %d Retry-After=%q %s; want 429 too_many_streams with Retry-After", what, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
	ok := func(resp *http.Response, what string) {
		t.Helper()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: %d %s", what, resp.StatusCode, b)
		}
	}

	_, closeA1 := open(readerA, "")
	r, _ := open(readerA, "?resources=jobs")
	ok(r, "token A, second stream")
	r, _ = open(readerA, "")
	refused(r, "token A, third stream")
	r, _ = open(readerB, "")
	ok(r, "token B, first stream (project at 3)")
	r, _ = open(readerB, "")
	refused(r, "token B, fourth stream of the project")
	r, _ = open(otherTok, "")
	ok(r, "another project's stream")
	r, _ = open(testRootToken, "")
	ok(r, "the root token's stream, its project full")

	// Closing a stream frees its place (once the node has seen it go).
	closeA1()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, _ = open(readerA, "")
		if r.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			refused(r, "after a close")
			t.Fatal("a closed stream's place was never freed")
		}
		r.Body.Close()
		time.Sleep(50 * time.Millisecond)
	}
}

// The node's last StreamsReserved places are for operators (admin tokens
// bound to no project): tenants together cannot lock them out.
func TestStreamPlacesReservedForOperators(t *testing.T) {
	s := New(Config{Cluster: nil, Version: "test"})
	gc, _ := gin.CreateTestContext(httptest.NewRecorder())
	s.streams.total = fsm.MaxSubscribers - StreamsReserved
	tenant := &fsm.Token{ID: "tok_t", Scopes: []string{ScopeAdmin}, Project: "p"}
	if _, err := s.acquireStream(gc, tenant, "p"); err == nil {
		t.Fatal("a tenant's stream took a reserved place")
	}
	root := &fsm.Token{ID: "tok_root", Scopes: []string{ScopeAdmin}}
	release, err := s.acquireStream(gc, root, DefaultProject)
	if err != nil {
		t.Fatalf("an operator's stream: %v", err)
	}
	release()
	if s.streams.total != fsm.MaxSubscribers-StreamsReserved || len(s.streams.byToken) != 0 {
		t.Fatalf("release left %d streams, %v", s.streams.total, s.streams.byToken)
	}
}
