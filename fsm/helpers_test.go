package fsm

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// harness applies commands to a fresh FSM at consecutive Raft indexes.
type harness struct {
	t   testing.TB
	f   *FSM
	idx uint64
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, f: New(slog.New(slog.DiscardHandler))}
}

func (h *harness) apply(cmd []byte) *Result {
	h.t.Helper()
	h.idx++
	res, ok := h.f.Apply(&raft.Log{Index: h.idx, Term: 3, Type: raft.LogCommand, Data: cmd}).(*Result)
	if !ok || res == nil {
		h.t.Fatalf("Apply at %d returned %#v, want *Result", h.idx, res)
	}
	return res
}

// ok applies each command and fails the test on any error result.
func (h *harness) ok(cmds ...[]byte) {
	h.t.Helper()
	for _, c := range cmds {
		if res := h.apply(c); res.Err != nil {
			h.t.Fatalf("apply %s at %d: %v", mustType(c), h.idx, res.Err)
		}
	}
}

func mustType(c []byte) CommandType {
	t, _ := TypeOf(c)
	return t
}

func must(t testing.TB) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func put(t testing.TB, table string, rec any) []byte {
	t.Helper()
	return must(t)(PutCommand(table, rec, PutOptions{}))
}

// checkErr compares an apply error with the wanted kind (nil: success) and,
// if wantMsg is set, a fragment of its message.
func checkErr(t testing.TB, got, want error, wantMsg string) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Fatalf("unexpected error: %v", got)
	case want != nil && !errors.Is(got, want):
		t.Fatalf("error = %v, want kind %v", got, want)
	case wantMsg != "" && (got == nil || !strings.Contains(got.Error(), wantMsg)):
		t.Fatalf("error = %v, want message containing %q", got, wantMsg)
	}
	if got != nil {
		var e *Error
		if !errors.As(got, &e) || e.Code == "" {
			t.Fatalf("error %v is not an *Error with a code", got)
		}
	}
}

// dump returns every replicated row, table by table, in id order, archived
// deliveries and their attempts included where they belong.
func dump(s *State) map[string][]any {
	out := map[string][]any{}
	for _, name := range Tables() {
		it, err := s.Txn().Get(name, IndexID)
		if err != nil {
			panic(err)
		}
		for obj := it.Next(); obj != nil; obj = it.Next() {
			out[name] = append(out[name], obj)
		}
	}
	out[TableDeliveries] = nil
	for _, d := range must2(s.deliveries(archQuery{}, "", 0)) {
		out[TableDeliveries] = append(out[TableDeliveries], d)
	}
	at := s.archIndex()
	for i := s.arch.front; i < s.arch.n; i++ {
		if s.arch.entry(i).visibleAt(at) && s.arch.entry(i).kind == archDelivery {
			for _, a := range s.arch.attempts(i) {
				out[TableAttempts] = append(out[TableAttempts], a)
			}
		}
	}
	slices.SortFunc(out[TableAttempts], func(x, y any) int {
		a, b := x.(*Attempt), y.(*Attempt)
		return cmp.Or(strings.Compare(a.DeliveryID, b.DeliveryID), cmp.Compare(a.Number, b.Number))
	})
	return out
}

func must2[T any](v T, _ string) T { return v }

func sameState(t testing.TB, got, want *State) {
	t.Helper()
	g, w := dump(got), dump(want)
	for _, name := range Tables() {
		if !reflect.DeepEqual(g[name], w[name]) {
			t.Fatalf("table %s differs:\n got %s\nwant %s", name, show(g[name]), show(w[name]))
		}
	}
}

func show(rows []any) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "\n  %+v", r)
	}
	return b.String()
}

// allFieldsSet fails when a field of v (recursively through structs) has its
// zero value, so that round-trip tests cover every field, including ones
// added later.
func allFieldsSet(t testing.TB, what string, v any) {
	t.Helper()
	rv := reflect.Indirect(reflect.ValueOf(v))
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		name := what + "." + rv.Type().Field(i).Name
		if f.Kind() == reflect.Struct {
			allFieldsSet(t, name, f.Interface())
			continue
		}
		if f.IsZero() {
			t.Errorf("%s is not set", name)
		}
	}
}

// ---------------------------------------------------------------------------
// Fixtures with every field set.

func retry() RetryPolicy {
	return RetryPolicy{MaxAttempts: 5, Backoff: BackoffExponential, InitialDelayMs: 60000, MaxDelayMs: 3600000, Jitter: 0.25}
}

func fullProject(name string) *Project {
	return &Project{Name: name, Description: "project " + name, SigningSecret: "whsec_" + name, CreatedAt: 1700000000000, UpdatedAt: 1700000000001,
		AllowedTargetCIDRs: []string{"10.20.0.0/16"}, TargetCIDRsSet: true}
}

func fullToken(id, project string) *Token {
	return &Token{ID: id, Name: "token " + id, Hash: "hash-" + id, Prefix: "chm_" + id, Scopes: []string{"read", "write"},
		Project: project, ExpiresAt: 1800000000000, CreatedAt: 1700000000000, CreatedBy: "admin"}
}

func fullEndpoint(id, project string) *Endpoint {
	return &Endpoint{ID: id, Project: project, URL: "https://example.com/" + id, Description: "endpoint " + id, Method: "POST",
		Headers: map[string]string{"X-B": "2", "X-A": "1"}, TimeoutMs: 10000, Secret: "whsec_new", PreviousSecret: "whsec_old",
		PreviousSecretUntil: 1700000900000, Retry: retry(), EventTypes: []string{"order.created", "order.paid"}, Enabled: true,
		DisabledReason: "was disabled once", ConsecutiveFailures: 2, CreatedAt: 1700000000000, UpdatedAt: 1700000000002}
}

func fullJob(id, project string, next Millis) *Job {
	return &Job{ID: id, Project: project, Name: "job " + id, Description: "desc", Status: JobActive, ScheduleKind: "cron",
		Schedule: []byte(`{"cron":"*/5 * * * *","tz":"Europe/Paris"}`), CallbackURL: "https://example.com/cb", Method: "POST",
		Headers: map[string]string{"Authorization": "Bearer x"}, Payload: []byte(`{"a":1}`), EventType: "job.fired",
		SigningSecret: "whsec_job", IdempotencyKey: "idem-" + id, CorrelationID: "corr-" + id, Retry: retry(),
		TimeoutMs: 10000, CooldownMs: 30000, MisfireGraceMs: 60000, CatchUp: "one", ManualCompletion: true, ScheduleSetAt: 5, NextFireAt: next, Cursor: []byte{1, 2, 3},
		OccurrenceCount: 7, LastNumber: 9, LastOccurrenceID: "occ-last", LastFiredAt: 1700000000100, LastCompletedAt: 1700000000200,
		SeriesID: "series-" + id, CreatedBy: "tok-1", CreatedAt: 1700000000000, UpdatedAt: 1700000000300}
}

func fullOccurrence(id, job, project string, n int64, status string, done Millis) *Occurrence {
	return &Occurrence{ID: id, JobID: job, Project: project, Number: n, IdentityKey: fmt.Sprintf("%s@%d", job, n),
		ScheduledFor: 1700000000000 + Millis(n), FiredAt: 1700000000500 + Millis(n), Status: status, MissedCount: 2,
		Manual: true, IdempotencyKey: "idem-" + id, CompletedAt: done, SkipReason: "quota_exceeded: test"}
}

// fullLimits sets every limit, high enough that fill's writes all pass.
func fullLimits(id string) *Limits {
	return &Limits{ID: id, MaxJobs: 100, MaxEndpoints: 100, MaxUndelivered: 100, CreatesPerSecond: 1000, CreateBurst: 1000,
		PublishesPerSecond: 1000, PublishBurst: 1000, MinIntervalSeconds: 1, MaxScheduledEvents: 100, UpdatedAt: 1700000000000}
}

func fullEvent(id, project, status string, at Millis) *Event {
	return &Event{ID: id, Project: project, Type: "order.created", Data: []byte(`{"order":42}`), ScheduledAt: at,
		PublishedAt: 1700000000400, Status: status, IdempotencyKey: "idem-" + id, InitiatorID: "tok-1", SkipEndpoint: "ep-0", OnlyEndpoint: "ep-1",
		SkipReason: "quota_exceeded: test", CreatedAt: 1700000000000}
}

func fullDelivery(id, project, node, status string, next, lease, done Millis) *Delivery {
	return &Delivery{ID: id, Project: project, OccurrenceID: "occ-1", JobID: "job-1", EventID: "evt-1", EndpointID: "ep-1",
		Status: status, Attempts: 2, MaxAttempts: 5, NextAttemptAt: next, AssignedNode: node, Fence: 9, LeaseUntil: lease,
		ScheduledFor: 1700000000000, LastStatusCode: 503, LastError: "service unavailable", CreatedAt: 1700000000000,
		UpdatedAt: 1700000000600, CompletedAt: done}
}

func fullAttempt(delivery string, n int) *Attempt {
	return &Attempt{DeliveryID: delivery, Number: n, Node: "n2", Fence: 9, StartedAt: 1700000000700, LatencyMs: 120,
		StatusCode: 503, ResponseSummary: "busy", Error: "status 503"}
}

// fill gives every table several rows with every field set.
func fill(t testing.TB, h *harness) {
	t.Helper()
	h.ok(must(t)(BootstrapCommand(1700000000000)))
	h.ok(put(t, TableProjects, fullProject(DefaultProject)))
	for _, p := range []string{"p1", "p2"} {
		h.ok(must(t)(ProjectCreateCommand(*fullProject(p))))
	}
	h.ok(put(t, TableLimits, fullLimits(ClusterLimitsID)), put(t, TableLimits, fullLimits("p1")))
	h.ok(
		put(t, TableTokens, fullToken("tok-1", "p1")),
		put(t, TableTokens, fullToken("tok-2", "p2")),
		put(t, TableTokens, fullToken("tok-3", "p1")),
		put(t, TableEndpoints, fullEndpoint("ep-1", "p1")),
		put(t, TableEndpoints, fullEndpoint("ep-2", "p1")),
		put(t, TableEndpoints, fullEndpoint("ep-3", "p2")),
		put(t, TableJobs, fullJob("job-1", "p1", 1700000060000)),
		put(t, TableJobs, fullJob("job-2", "p1", -5000)),
		put(t, TableJobs, fullJob("job-3", "p2", 42)),
		put(t, TableOccurrences, fullOccurrence("occ-1", "job-1", "p1", 1, OccurrenceCompleted, 1700000000800)),
		put(t, TableOccurrences, fullOccurrence("occ-2", "job-1", "p1", 2, OccurrenceMissed, 1700000000900)),
		put(t, TableOccurrences, fullOccurrence("occ-3", "job-2", "p1", 1, OccurrenceSkipped, 1700000001000)),
		put(t, TableEvents, fullEvent("evt-1", "p1", EventScheduled, 1700000002000)),
		put(t, TableEvents, fullEvent("evt-2", "p1", EventPublished, 1700000001000)),
		put(t, TableEvents, fullEvent("evt-3", "p2", EventScheduled, -1)),
		put(t, TableDeliveries, fullDelivery("del-1", "p1", "n1", DeliveryInFlight, 1700000003000, 1700000004000, 1700000005000)),
		put(t, TableDeliveries, fullDelivery("del-2", "p1", "n2", DeliverySucceeded, 1700000003000, 1700000004000, 1700000005000)),
		put(t, TableDeliveries, fullDelivery("del-3", "p2", "n1", DeliveryRetryScheduled, 1700000002000, 1700000004000, 1700000005000)),
		put(t, TableAttempts, fullAttempt("del-1", 1)),
		put(t, TableAttempts, fullAttempt("del-1", 2)),
		put(t, TableAttempts, fullAttempt("del-2", 1)),
		// The claims first (they take from the projects' claim buckets),
		// then their answers.
		put(t, TableIdempotency, &IdempotencyRecord{ID: "p1/key-1", Fingerprint: "fp", Caller: "tok-1", ClaimUntil: 1700000000100, CreatedAt: 1700000000000, ExpiresAt: 1700086400000}),
		put(t, TableIdempotency, &IdempotencyRecord{ID: "p2/key-2", Fingerprint: "fp2", Caller: "tok-2", ClaimUntil: 1700000000200, CreatedAt: 1700000000001, ExpiresAt: 1700086400001}),
		put(t, TableIdempotency, &IdempotencyRecord{ID: "p1/key-1", Fingerprint: "fp", Status: 201, Applied: true, Body: []byte(`{"id":"job-1"}`),
			Caller: "tok-1", Withheld: []string{"secret"}, ClaimUntil: 1700000000100, CreatedAt: 1700000000000, ExpiresAt: 1700086400000}),
		put(t, TableIdempotency, &IdempotencyRecord{ID: "p2/key-2", Fingerprint: "fp2", Status: 200, Applied: true, Body: []byte(`{}`),
			Caller: "tok-2", Withheld: []string{"token"}, ClaimUntil: 1700000000200, CreatedAt: 1700000000001, ExpiresAt: 1700086400001}),
		put(t, TableBreakers, &Breaker{Key: BreakerKeyEndpoint("ep-1"), Project: "p1", EndpointID: "ep-1", Target: "-", Failures: 5,
			Opens: 1, OpenedAt: 1700000000000, Until: 1700000030000, LastError: "timeout after 10s", UpdatedAt: 1700000000000}),
		put(t, TableBreakers, &Breaker{Key: BreakerKeyCallback("p2", "http://x.test/a"), Project: "p2", EndpointID: "-", Target: "http://x.test:80",
			Failures: 2, Opens: 2, OpenedAt: 1700000000000, Until: 1700000060000, LastError: "connection refused", UpdatedAt: 1700000000000}),
	)
}
