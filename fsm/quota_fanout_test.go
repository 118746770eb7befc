package fsm

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// fanOutFixture: project p with three endpoints subscribed to everything and
// the given cluster-wide limits.
func fanOutFixture(t *testing.T, l Limits) *harness {
	t.Helper()
	h := newHarness(t)
	l.ID = ClusterLimitsID
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})), put(t, TableLimits, &l))
	for _, id := range []string{"ep1", "ep2", "ep3"} {
		h.ok(put(t, TableEndpoints, &Endpoint{ID: id, Project: "p", URL: "https://example.test/" + id, Enabled: true, EventTypes: []string{"*"}}))
	}
	return h
}

func evDeliveries(evID string, eps ...string) []Delivery {
	var out []Delivery
	for _, ep := range eps {
		out = append(out, Delivery{ID: evID + "-" + ep, Project: "p", EventID: evID, EndpointID: ep, Status: DeliveryPending, AssignedNode: "n2", LeaseUntil: 99999, MaxAttempts: 3})
	}
	return out
}

// An event's fan-out is one delivery per subscriber: it is checked against
// maxUndelivered for all of them. Over the limit the event is stored as
// skipped with its reason and makes no delivery (it used to insert them
// all, whatever the limit).
func TestQuotaEventFanOutChecksUndelivered(t *testing.T) {
	h := fanOutFixture(t, Limits{MaxUndelivered: 4})
	h.ok(put(t, TableEvents, &Event{ID: "ev1", Project: "p", Type: "x.y", ScheduledAt: 1000, Status: EventScheduled, CreatedAt: 1000}))
	ev, _ := h.f.State().Event("ev1")
	res := h.apply(fireCmd(t, 1005, nil, EventFire{EventID: "ev1", IfIndex: ev.ModifyIndex, Deliveries: evDeliveries("ev1", "ep1", "ep2", "ep3")}))
	if res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
	if u := h.f.State().Usage("p"); u.Undelivered != 3 || u.Scheduled != 0 {
		t.Fatalf("usage %+v, want 3 undelivered, 0 scheduled", u)
	}

	// The next one would make 6 of 4: skipped, visibly, and the poller is
	// answered with success so that it does not plan it again.
	h.ok(put(t, TableEvents, &Event{ID: "ev2", Project: "p", Type: "x.y", ScheduledAt: 1000, Status: EventScheduled, CreatedAt: 1100}))
	ev, _ = h.f.State().Event("ev2")
	res = h.apply(fireCmd(t, 1105, nil, EventFire{EventID: "ev2", IfIndex: ev.ModifyIndex, Deliveries: evDeliveries("ev2", "ep1", "ep2", "ep3")}))
	if res.Results[0].Err != nil {
		t.Fatalf("an event fan-out over quota must apply (skipped), got %v", res.Results[0].Err)
	}
	st := h.f.State()
	ev, _ = st.Event("ev2")
	if ev.Status != EventSkipped || !strings.HasPrefix(ev.SkipReason, "quota_exceeded: ") || ev.PublishedAt != 0 {
		t.Fatalf("ev2 = %+v; want skipped with a reason", ev)
	}
	if ds, _ := st.DeliveriesByEvent("ev2", "", 0); len(ds) != 0 {
		t.Fatalf("skipped event has %d deliveries", len(ds))
	}
	if due := st.EventsDue(1<<40, 10); len(due) != 0 {
		t.Fatalf("a skipped event is still due: %v", due)
	}
	if u := st.Usage("p"); u.Undelivered != 3 {
		t.Fatalf("undelivered %d, want 3", u.Undelivered)
	}
}

// Lifecycle events (job.updated on every PATCH, job.paused, …) are fanned out
// by the same EventFire, so they are bounded the same way: a write token
// looping on PATCH cannot make deliveries past maxUndelivered.
func TestQuotaLifecycleFanOutBounded(t *testing.T) {
	h := fanOutFixture(t, Limits{MaxUndelivered: 5})
	job := &Job{ID: "j1", Project: "p", Status: JobActive, Name: "a", CreatedAt: 1000, UpdatedAt: 1000}
	h.ok(putBy(t, job, PutOptions{IfAbsent: true, Initiator: "tok"}))
	for i, name := range []string{"b", "c", "d"} {
		cur, _ := h.f.State().Job("j1")
		j := *cur
		j.Name, j.UpdatedAt = name, Millis(2000+i)
		h.ok(putBy(t, &j, PutOptions{IfIndex: cur.ModifyIndex, Initiator: "tok"}))
	}
	due := h.f.State().EventsDue(1<<40, 100)
	if len(due) != 4 {
		t.Fatalf("%d lifecycle events due, want 4", len(due))
	}
	for _, ev := range due {
		h.ok(fireCmd(t, 3000, nil, EventFire{EventID: ev.ID, IfIndex: ev.ModifyIndex, Deliveries: evDeliveries(ev.ID, "ep1", "ep2", "ep3")}))
	}
	st := h.f.State()
	if u := st.Usage("p"); u.Undelivered > 5 {
		t.Fatalf("undelivered %d past the limit 5", u.Undelivered)
	}
	skipped := 0
	for _, ev := range due {
		if e, _ := st.Event(ev.ID); e.Status == EventSkipped {
			skipped++
		}
	}
	if skipped != 3 {
		t.Fatalf("%d lifecycle events skipped, want 3", skipped)
	}
}

// Events waiting for a future scheduledAt cost memory now and fan out later:
// they are counted (derived, rebuilt on restore) and bounded by
// maxScheduledEvents. A lifecycle event past the bound is stored skipped; the
// change that raised it still applies.
func TestQuotaScheduledEventsBounded(t *testing.T) {
	h := fanOutFixture(t, Limits{MaxScheduledEvents: 2})
	ev := func(id string) []byte {
		return put(t, TableEvents, &Event{ID: id, Project: "p", Type: "x.y", ScheduledAt: 1 << 40, Status: EventScheduled, CreatedAt: 1000})
	}
	h.ok(ev("ev1"), ev("ev2"))
	if u := h.f.State().Usage("p"); u.Scheduled != 2 {
		t.Fatalf("scheduled %d, want 2", u.Scheduled)
	}
	quotaErrOf(t, h.apply(ev("ev3")).Err, "maxScheduledEvents")
	quotaErrOf(t, h.f.State().CheckQuota("p", QuotaPublishEvent, 1000), "maxScheduledEvents")
	if err := h.f.State().CheckQuota("p", QuotaPublish, 1000); err != nil {
		t.Fatalf("a trigger stores no event: %v", err)
	}

	// A lifecycle event raised now is stored skipped; the job is created.
	h.ok(putBy(t, &Job{ID: "j1", Project: "p", Status: JobActive, CreatedAt: 1000, UpdatedAt: 1000}, PutOptions{IfAbsent: true, Initiator: "tok"}))
	evs, _ := h.f.State().Events("p", "", 0)
	var created *Event
	for _, e := range evs {
		if e.Type == EventJobCreated {
			created = e
		}
	}
	if created == nil || created.Status != EventSkipped || !strings.HasPrefix(created.SkipReason, "quota_exceeded: ") {
		t.Fatalf("job.created = %+v, want skipped", created)
	}

	// Fanning one out frees room; a restore counts the same.
	e1, _ := h.f.State().Event("ev1")
	h.ok(fireCmd(t, 2000, nil, EventFire{EventID: "ev1", IfIndex: e1.ModifyIndex, Deliveries: evDeliveries("ev1", "ep1")}))
	h.ok(ev("ev3"))
	dst := New(slog.New(slog.DiscardHandler))
	if err := restore(dst, snapshotOf(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if got, want := dst.State().Usage("p"), h.f.State().Usage("p"); got != want || got.Scheduled != 2 {
		t.Fatalf("restored usage %+v, want %+v (2 scheduled)", got, want)
	}
}

// Nothing is enforced while the cluster-wide row is missing, project rows
// included: a replica of an older version ignores the quota tables, so
// enforcing on newer ones only would make the replicas differ. The leader
// writes the cluster row once every server enforces (api.BootstrapHook).
func TestQuotaNotEnforcedWithoutClusterRow(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})), put(t, TableLimits, &Limits{ID: "p", MaxJobs: 1}))
	job := func(id string) []byte {
		return put(t, TableJobs, &Job{ID: id, Project: "p", Status: JobActive, CreatedAt: 1000})
	}
	h.ok(job("j1"), job("j2"))
	if err := h.f.State().CheckQuota("p", QuotaCreateJob, 1000); err != nil {
		t.Fatalf("pre-check without the cluster row: %v", err)
	}
	if l := h.f.State().EffectiveLimits("p"); l.MaxJobs != 0 {
		t.Fatalf("effective limits without the cluster row: %+v", l)
	}
	h.ok(put(t, TableLimits, &Limits{ID: ClusterLimitsID}))
	if err := h.apply(job("j3")).Err; !errors.Is(err, ErrQuota) {
		t.Fatalf("with the cluster row: %v, want a quota error", err)
	}
}

// "Fill, cancel, fill, retry": a cancelled delivery does not count, so
// retrying it must fit under maxUndelivered like a new publish (it used to
// re-queue with no check). A dead letter, which still counts, retries freely.
func TestQuotaRetryOfCancelledDelivery(t *testing.T) {
	h, j := pipelineFixture(t)
	h.ok(put(t, TableLimits, &Limits{ID: ClusterLimitsID, MaxUndelivered: 2}))
	next := *j
	next.NextFireAt, next.OccurrenceCount = 2000, 1
	h.ok(fireCmd(t, 1000, []JobFire{{Job: next, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{dlv("d1", "o1", ""), dlv("d2", "o1", "")}}}))
	h.ok(controlCmd(t, 1100, DeliveryAction{DeliveryID: "d1", Action: ActionCancel}))
	if u := h.f.State().Usage("p"); u.Undelivered != 1 {
		t.Fatalf("undelivered after a cancel = %d, want 1", u.Undelivered)
	}
	// Fill again.
	cur, _ := h.f.State().Job("j1")
	next = *cur
	next.NextFireAt, next.OccurrenceCount = 3000, 2
	h.ok(fireCmd(t, 2000, []JobFire{{Job: next, Occurrence: occ("o2", 2, "k2"), Deliveries: []Delivery{dlv("d3", "o2", "")}}}))

	quotaErrOf(t, h.f.State().CheckQuota("p", QuotaPublish, 2100), "maxUndelivered")
	res := h.apply(controlCmd(t, 2100, DeliveryAction{DeliveryID: "d1", Action: ActionRetry, Node: "n1", LeaseUntil: 9000}))
	quotaErrOf(t, res.Results[0].Err, "maxUndelivered")
	if d1, _ := h.f.State().Delivery("d1"); d1.Status != DeliveryCancelled {
		t.Fatalf("refused retry changed d1: %+v", d1)
	}
	if u := h.f.State().Usage("p"); u.Undelivered != 2 {
		t.Fatalf("undelivered = %d, want 2", u.Undelivered)
	}

	// A dead letter is counted already: its retry is free.
	d2, _ := h.f.State().Delivery("d2")
	h.ok(resultsCmd(t, 2200, DeliveryResult{DeliveryID: "d2", Fence: d2.Fence, Status: DeliveryDeadLetter, Attempt: Attempt{StatusCode: 500}}))
	if res := h.apply(controlCmd(t, 2300, DeliveryAction{DeliveryID: "d2", Action: ActionRetry, Node: "n1", LeaseUntil: 9000})); res.Results[0].Err != nil {
		t.Fatalf("retry of a dead letter at the limit: %v", res.Results[0].Err)
	}

	// With room again, the cancelled one can be retried.
	h.ok(controlCmd(t, 2400, DeliveryAction{DeliveryID: "d3", Action: ActionCancel}))
	if res := h.apply(controlCmd(t, 2500, DeliveryAction{DeliveryID: "d1", Action: ActionRetry, Node: "n1", LeaseUntil: 9000})); res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
	if u := h.f.State().Usage("p"); u.Undelivered != 2 {
		t.Fatalf("undelivered = %d, want 2", u.Undelivered)
	}
}

// Idempotency-Key claims are Raft writes kept for a day whatever the request
// turns out to be: new claims share a bucket of createsPerSecond +
// publishesPerSecond (bursts likewise); settling a claim is free.
func TestQuotaIdempotencyClaims(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})),
		put(t, TableLimits, &Limits{ID: ClusterLimitsID, CreatesPerSecond: 1, CreateBurst: 1, PublishesPerSecond: 1}))
	claim := func(key string, at Millis) *IdempotencyRecord {
		return &IdempotencyRecord{ID: "p/" + key, Fingerprint: "fp", Caller: "tok", ClaimUntil: at + 45_000, CreatedAt: at, ExpiresAt: at + 86_400_000}
	}
	h.ok(put(t, TableIdempotency, claim("k1", 10_000)), put(t, TableIdempotency, claim("k2", 10_000)))
	e := quotaErrOf(t, h.apply(put(t, TableIdempotency, claim("k3", 10_000))).Err, "Idempotency-Key")
	if e.RetryAfterMs != 500 {
		t.Fatalf("Retry-After %d ms, want 500 (2 per second)", e.RetryAfterMs)
	}
	quotaErrOf(t, h.f.State().CheckQuota("p", QuotaClaim, 10_000), "Idempotency-Key")
	// The answer of a claim is free.
	cur, _ := h.f.State().Idempotency("p/k1")
	done := *cur
	done.Status, done.Body = 400, []byte(`{}`)
	h.ok(must(t)(PutCommand(TableIdempotency, &done, PutOptions{IfIndex: cur.ModifyIndex})))
	h.ok(put(t, TableIdempotency, claim("k3", 10_500)))
	// Another project's claims are its own.
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "q"})))
	other := claim("k1", 10_500)
	other.ID = "q/k1"
	h.ok(put(t, TableIdempotency, other))
}
