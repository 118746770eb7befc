package dispatch

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/client/webhook"
	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
)

// stateWith applies the commands to a fresh FSM and returns its state.
func stateWith(t *testing.T, cmds ...[]byte) *fsm.State {
	t.Helper()
	f := fsm.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i, c := range cmds {
		res, ok := f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: c}).(*fsm.Result)
		if !ok || res.Err != nil {
			t.Fatalf("command %d: %v", i, res)
		}
	}
	return f.State()
}

func putCmd(t *testing.T, table string, rec any) []byte {
	t.Helper()
	c, err := fsm.PutCommand(table, rec, fsm.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPrepareEndpointEnvelopeAndHeaders(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC)
	cur, _ := NewSecret()
	prev, _ := NewSecret()
	pc, _ := fsm.ProjectCreateCommand(fsm.Project{Name: "p"})
	st := stateWith(t, pc,
		putCmd(t, fsm.TableEndpoints, &fsm.Endpoint{ID: "ep1", Project: "p", URL: "https://r.example/hook", Method: "PUT",
			Headers: map[string]string{"x-team": "a", "chime-attempt": "99", "Webhook-Id": "forged"}, TimeoutMs: 7000,
			Secret: cur, PreviousSecret: prev, PreviousSecretUntil: fsm.MillisOf(now.Add(time.Minute)),
			Retry: fsm.RetryPolicy{MaxAttempts: 3, Backoff: fsm.BackoffLinear, InitialDelayMs: 10000}, Enabled: true}),
		putCmd(t, fsm.TableJobs, &fsm.Job{ID: "j1", Project: "p", Name: "nightly", Status: fsm.JobActive, EventType: "report.ready",
			Payload: []byte(`{"k":1}`), CorrelationID: "c-9"}),
		putCmd(t, fsm.TableOccurrences, &fsm.Occurrence{ID: "o1", JobID: "j1", Project: "p", Number: 4, IdentityKey: "k",
			ScheduledFor: fsm.MillisOf(now.Add(-5 * time.Second)), MissedCount: 2, Status: fsm.OccurrencePending, IdempotencyKey: "j1:k"}),
	)
	d := &fsm.Delivery{ID: "dlv_1", Project: "p", JobID: "j1", OccurrenceID: "o1", EndpointID: "ep1", MaxAttempts: 5,
		ScheduledFor: fsm.MillisOf(now.Add(-5 * time.Second)), CreatedAt: fsm.MillisOf(now.Add(-4 * time.Second)),
		AssignedNode: "n2", Fence: 1234}
	p, err := Prepare(st, d, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Request
	if r.Method != "PUT" || r.URL != "https://r.example/hook" || r.Timeout != 7*time.Second || !p.Endpoint || p.Policy.MaxAttempts != 5 {
		t.Fatalf("request %+v policy %+v", r, p.Policy)
	}
	var env map[string]any
	if err := json.Unmarshal(r.Body, &env); err != nil {
		t.Fatal(err)
	}
	want := `{"event":"report.ready","timestamp":"2026-03-01T12:00:01Z","data":{"k":1},"job":{"id":"j1","name":"nightly"},"occurrence":{"id":"o1","number":4,"scheduledFor":"2026-03-01T12:00:00Z","missedCount":2}}`
	if string(r.Body) != want {
		t.Errorf("envelope\n got %s\nwant %s", r.Body, want)
	}
	h := http.Header{}
	for k, v := range r.Headers {
		h.Set(k, v)
	}
	for k, v := range map[string]string{"X-Team": "a", "Chime-Attempt": "2", "Webhook-Id": "dlv_1", "Chime-Delivery-Id": "dlv_1",
		"Chime-Idempotency-Key": "j1:k", "Chime-Correlation-Id": "c-9", "Chime-Scheduled-For": "2026-03-01T12:00:00Z",
		"Chime-Fence": "1234", "Chime-Node": "n2"} {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if n := strings.Count(h.Get("Webhook-Signature"), "v1,"); n != 2 {
		t.Errorf("during the rotation grace both secrets sign; got %d signatures", n)
	}
	for _, s := range []string{cur, prev} {
		v := webhook.Verifier{Secrets: []string{s}, Now: func() time.Time { return now }}
		if err := v.Verify(h, r.Body); err != nil {
			t.Errorf("verify with one of the secrets: %v", err)
		}
	}
	if err := (webhook.Verifier{Secrets: []string{cur}}).VerifyLegacy(h, r.Body); err != nil {
		t.Errorf("001 signature with the current secret: %v", err)
	}

	// After the grace period only the current secret signs.
	p, _ = Prepare(st, d, 3, now.Add(2*time.Minute))
	if strings.Count(p.Request.Headers[HeaderWebhookSignature], "v1,") != 1 {
		t.Error("the previous secret still signs after its grace period")
	}
	// The body is the same on every attempt.
	if string(p.Request.Body) != want {
		t.Error("the body changed between attempts")
	}
}

func TestPrepareCallbackAndEvent(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	projSecret, _ := NewSecret()
	epSecret, _ := NewSecret()
	st := stateWith(t,
		putCmd(t, fsm.TableProjects, &fsm.Project{Name: "p", SigningSecret: projSecret}),
		putCmd(t, fsm.TableJobs, &fsm.Job{ID: "get", Project: "p", Status: fsm.JobActive, CallbackURL: "https://r.example/x", Method: "GET", Payload: []byte(`{"a":1}`)}),
		putCmd(t, fsm.TableJobs, &fsm.Job{ID: "post", Project: "p", Status: fsm.JobActive, CallbackURL: "https://r.example/y", Payload: []byte(`{"a":1}`)}),
		putCmd(t, fsm.TableOccurrences, &fsm.Occurrence{ID: "o1", JobID: "get", Project: "p", Number: 1, Status: fsm.OccurrencePending}),
		putCmd(t, fsm.TableOccurrences, &fsm.Occurrence{ID: "o2", JobID: "post", Project: "p", Number: 1, Status: fsm.OccurrencePending}),
		putCmd(t, fsm.TableEndpoints, &fsm.Endpoint{ID: "ep", Project: "p", URL: "https://r.example/e", Secret: epSecret, Enabled: true}),
		putCmd(t, fsm.TableEvents, &fsm.Event{ID: "evt1", Project: "p", Type: "invoice.paid", Status: fsm.EventPublished, IdempotencyKey: "inv-1"}),
		putCmd(t, fsm.TableEvents, &fsm.Event{ID: "evt2", Project: "p", Type: fsm.EventJobPaused, Status: fsm.EventPublished,
			Data: []byte(`{"initiatorId":"tok1","job":{"id":"post","status":"paused"},"jobId":"post"}`)}),
	)
	p, err := Prepare(st, &fsm.Delivery{ID: "d1", Project: "p", JobID: "get", OccurrenceID: "o1", MaxAttempts: 1}, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	if p.Request.Method != "GET" || p.Request.Body != nil || p.Endpoint {
		t.Errorf("GET callback: %+v", p.Request)
	}
	h := http.Header{}
	for k, v := range p.Request.Headers {
		h.Set(k, v)
	}
	if err := (webhook.Verifier{Secrets: []string{projSecret}, Now: func() time.Time { return now }}).Verify(h, nil); err != nil {
		t.Errorf("a callback without its own secret is signed with the project's: %v", err)
	}

	p, _ = Prepare(st, &fsm.Delivery{ID: "d2", Project: "p", JobID: "post", OccurrenceID: "o2", MaxAttempts: 1}, 1, now)
	if p.Request.Method != "POST" || string(p.Request.Body) != `{"a":1}` {
		t.Errorf("POST callback: %s %s", p.Request.Method, p.Request.Body)
	}

	p, err = Prepare(st, &fsm.Delivery{ID: "d3", Project: "p", EventID: "evt1", EndpointID: "ep", MaxAttempts: 1, CreatedAt: fsm.MillisOf(now)}, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Request.Body) != `{"event":"invoice.paid","timestamp":"2026-03-01T12:00:00Z","data":null,"eventId":"evt1"}` {
		t.Errorf("event envelope %s", p.Request.Body)
	}
	if p.Request.Headers[HeaderIdempotencyKey] != "inv-1" {
		t.Errorf("event idempotency key %q", p.Request.Headers[HeaderIdempotencyKey])
	}

	// Chime's own events put their object beside "event", as in 001.
	p, err = Prepare(st, &fsm.Delivery{ID: "d5", Project: "p", EventID: "evt2", EndpointID: "ep", MaxAttempts: 1, CreatedAt: fsm.MillisOf(now)}, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"event":"job.paused","eventId":"evt2","initiatorId":"tok1","job":{"id":"post","status":"paused"},"jobId":"post","timestamp":"2026-03-01T12:00:00Z"}`; string(p.Request.Body) != want {
		t.Errorf("lifecycle envelope\n got %s\nwant %s", p.Request.Body, want)
	}

	_, err = Prepare(st, &fsm.Delivery{ID: "d4", Project: "p", EventID: "evt1", EndpointID: "deleted"}, 1, now)
	if err == nil || !strings.Contains(err.Error(), "no longer exists") {
		t.Errorf("deleted endpoint: %v", err)
	}
}
