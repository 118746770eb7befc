package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
)

// Issue 12 item 7: header values on jobs and endpoints are receiver
// credentials. Names are shown, values never (create, GET, list, stream,
// lifecycle events, remembered answers), PATCH replaces them, and the
// stored record keeps the real values for delivery.
func TestHeaderValuesAreNeverShown(t *testing.T) {
	srv, c := newNode(t)
	u := srv.URL
	const cred, key = "Bearer job-credential-4711", "endpoint-api-key-0815"
	secrets := []string{cred, key, "replaced-credential"}
	noSecret := func(what, raw string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(raw, s) {
				t.Fatalf("%s shows a header value: %s", what, raw)
			}
		}
	}
	r := want(t, as(t, u, testRootToken, "POST", "/v1/tokens", `{"name":"dash","scopes":["read"]}`), 201)
	reader := str(t, r.body, "token")

	ctx := t.Context()
	events, resp := openStream(t, ctx, u+"/v1/stream?resources=jobs,endpoints")
	defer resp.Body.Close()
	if ev := nextEvent(t, events); ev.event != "ready" {
		t.Fatalf("first stream event %q", ev.event)
	}

	r = postKeyedAs(t, u+"/v1/endpoints", testRootToken, "ep-h", `{"url":"https://example.com/hook","eventTypes":["*"],"headers":{"X-Api-Key":"`+key+`"}}`)
	want(t, r, 201)
	noSecret("endpoint create", r.raw)
	epID := str(t, r.body, "id")
	if h, _ := r.body["headers"].(map[string]any); h["X-Api-Key"] != fsm.MaskedHeaderValue {
		t.Fatalf("endpoint headers %v: want the name with a masked value", r.body["headers"])
	}
	r = postKeyedAs(t, u+"/v1/jobs", testRootToken, "job-h", `{"name":"h","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h","headers":{"Authorization":"`+cred+`"}}`)
	want(t, r, 201)
	noSecret("job create", r.raw)
	jobID := str(t, r.body, "id")
	if h, _ := r.body["headers"].(map[string]any); h["Authorization"] != fsm.MaskedHeaderValue {
		t.Fatalf("job headers %v: want the name with a masked value", r.body["headers"])
	}
	for _, p := range []string{"/v1/jobs/" + jobID, "/v1/jobs", "/v1/endpoints/" + epID, "/v1/endpoints"} {
		for _, tok := range []string{reader, testRootToken} {
			noSecret("GET "+p, want(t, as(t, u, tok, "GET", p, ""), 200).raw)
		}
	}
	for range 2 {
		ev := nextEvent(t, events)
		b, _ := json.Marshal(ev.data)
		noSecret("stream event "+ev.event, string(b))
	}
	// Lifecycle events (job.created, sent to subscribed endpoints) too.
	evs, _ := c.FSM().State().Events(DefaultProject, "", 0)
	if len(evs) == 0 {
		t.Fatal("no job.created event for a subscribed endpoint")
	}
	for _, ev := range evs {
		noSecret("lifecycle event "+ev.Type, string(ev.Data))
	}
	// Remembered answers hold none either.
	for _, id := range []string{"ep-h", "job-h"} {
		rec, err := c.FSM().State().Idempotency(DefaultProject + "/" + id)
		if err != nil {
			t.Fatal(err)
		}
		noSecret("remembered answer "+id, string(rec.Body))
	}

	// The records keep the real values: deliveries send them.
	job, _ := c.FSM().State().Job(jobID)
	ep, _ := c.FSM().State().Endpoint(epID)
	if job.Headers["Authorization"] != cred || ep.Headers["X-Api-Key"] != key {
		t.Fatalf("stored headers %v / %v", job.Headers, ep.Headers)
	}

	// PATCH without headers keeps them; with headers replaces the whole set;
	// a masked value sent back is refused, naming the header.
	want(t, do(t, srv, "PATCH", "/v1/jobs/"+jobID, `{"name":"renamed"}`), 200)
	if job, _ = c.FSM().State().Job(jobID); job.Headers["Authorization"] != cred {
		t.Fatalf("a PATCH without headers changed them: %v", job.Headers)
	}
	r = want(t, do(t, srv, "PATCH", "/v1/jobs/"+jobID, `{"headers":{"Authorization":"`+fsm.MaskedHeaderValue+`"}}`), 400)
	if _, field := errorOf(t, r); field != "headers.Authorization" {
		t.Fatalf("masked value sent back: field %q", field)
	}
	r = want(t, do(t, srv, "PATCH", "/v1/jobs/"+jobID, `{"headers":{"X-Other":"replaced-credential"}}`), 200)
	noSecret("job PATCH", r.raw)
	if job, _ = c.FSM().State().Job(jobID); len(job.Headers) != 1 || job.Headers["X-Other"] != "replaced-credential" {
		t.Fatalf("PATCH headers did not replace them: %v", job.Headers)
	}
	r = want(t, do(t, srv, "PATCH", "/v1/endpoints/"+epID, `{"headers":{}}`), 200)
	if ep, _ = c.FSM().State().Endpoint(epID); len(ep.Headers) != 0 {
		t.Fatalf("PATCH headers {} kept %v", ep.Headers)
	}
	want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://example.com/x","eventTypes":["*"],"headers":{"X-K":"`+fsm.MaskedHeaderValue+`"}}`), 400)
}

// Issue 12 item 10: header names and values are checked as net/http checks
// them before sending, and hop-by-hop and proxy headers are reserved: a
// target that could never be called is a 400 naming the header, not an
// endless run of failed attempts.
func TestHeaderNamesAndValuesValidatedAsNetHTTP(t *testing.T) {
	srv := newSingleNode(t)
	r := want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://example.com/hook","eventTypes":["*"]}`), 201)
	epID := str(t, r.body, "id")
	bad := map[string]string{
		`{"X-Ctl":"a\u0001b"}`:              "headers.X-Ctl",
		`{"X-Del":"a\u007fb"}`:              "headers.X-Del",
		`{"X-Nul":"a\u0000b"}`:              "headers.X-Nul",
		`{"X-Lf":"a\nb"}`:                   "headers.X-Lf",
		`{"Bad Name":"v"}`:                  "headers.Bad Name",
		`{"Proxy-Authorization":"Basic x"}`: "headers.Proxy-Authorization",
		`{"expect":"100-continue"}`:         "headers.expect",
		`{"Upgrade":"websocket"}`:           "headers.Upgrade",
		`{"TE":"trailers"}`:                 "headers.TE",
		`{"Connection":"close"}`:            "headers.Connection",
		`{"Keep-Alive":"timeout=5"}`:        "headers.Keep-Alive",
		`{"Transfer-Encoding":"chunked"}`:   "headers.Transfer-Encoding",
		`{"Trailer":"X-A"}`:                 "headers.Trailer",
		`{"Proxy-Connection":"keep-alive"}`: "headers.Proxy-Connection",
		`{"Host":"example.org"}`:            "headers.Host",
		`{"Content-Length":"1"}`:            "headers.Content-Length",
	}
	for h, field := range bad {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/v1/jobs", `{"recurrenceSeconds":3600,"callbackUrl":"https://example.com/h","headers":` + h + `}`},
			{"POST", "/v1/endpoints", `{"url":"https://example.com/hook","eventTypes":["*"],"headers":` + h + `}`},
			{"PATCH", "/v1/endpoints/" + epID, `{"headers":` + h + `}`},
		} {
			r := do(t, srv, req.method, req.path, req.body)
			if r.status != 400 {
				t.Errorf("%s %s with %s: %d %s", req.method, req.path, h, r.status, r.raw)
				continue
			}
			if _, f := errorOf(t, r); f != field {
				t.Errorf("%s %s with %s: field %q, want %q", req.method, req.path, h, f, field)
			}
		}
	}
	// What net/http sends is accepted: tabs, obs-text, any token name.
	want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://example.com/hook","eventTypes":["*"],"headers":{"X-Tab":"a\tb","X-Utf8":"café","X-Odd!#$%&'*+.^_|~":"v"}}`), 201)
	// The dispatcher drops what the API refuses, by the same rule.
	for _, name := range []string{"Proxy-Authorization", "Expect", "Upgrade", "TE", "Connection", "Keep-Alive", "Transfer-Encoding", "Trailer", "Proxy-Connection", "Host", "Content-Length"} {
		if !dispatch.ReservedHeader(name) {
			t.Errorf("dispatch.ReservedHeader(%q) is false", name)
		}
	}
}

// Lifecycle events stored before header values were masked hold them in
// their data (the job, and its changes); GET /v1/events/{id} masks them on
// the way out. A published event's data is the publisher's own: untouched.
func TestOldLifecycleEventHeadersMasked(t *testing.T) {
	srv, c := newNodeWith(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, ev := range []*fsm.Event{
		{ID: "evt_old", Project: DefaultProject, Type: fsm.EventJobUpdated, Status: "published", CreatedAt: 1700000000000,
			Data: []byte(`{"event":"job.updated","job":{"id":"j1","headers":{"Authorization":"Bearer s3cret"}},"changes":{"headers":{"Authorization":"Bearer s3cret"}}}`)},
		{ID: "evt_user", Project: DefaultProject, Type: "invoice.paid", Status: "published", CreatedAt: 1700000000000,
			Data: []byte(`{"headers":{"x":"mine"}}`)},
	} {
		cmd, err := fsm.PutCommand(fsm.TableEvents, ev, fsm.PutOptions{IfAbsent: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	r := want(t, do(t, srv, "GET", "/v1/events/evt_old", ""), 200)
	if strings.Contains(string(r.raw), "s3cret") || !strings.Contains(string(r.raw), fsm.MaskedHeaderValue) {
		t.Errorf("an old lifecycle event shows header values: %s", r.raw)
	}
	r = want(t, do(t, srv, "GET", "/v1/events/evt_user", ""), 200)
	if !strings.Contains(string(r.raw), `"mine"`) {
		t.Errorf("a published event's own data was changed: %s", r.raw)
	}
}
