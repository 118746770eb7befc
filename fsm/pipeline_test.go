package fsm

import (
	"encoding/json"
	"fmt"
	"testing"
)

// pipelineFixture: project p with endpoint ep1 and job j1 (inline callback).
func pipelineFixture(t *testing.T) (*harness, *Job) {
	h := newHarness(t)
	h.ok(
		must(t)(ProjectCreateCommand(Project{Name: "p"})),
		put(t, TableEndpoints, &Endpoint{ID: "ep1", Project: "p", URL: "https://example.test/hook", Enabled: true}),
		put(t, TableJobs, &Job{ID: "j1", Project: "p", Status: JobActive, NextFireAt: 1000, CallbackURL: "https://example.test/cb", CooldownMs: 60000}),
	)
	j, err := h.f.State().Job("j1")
	if err != nil {
		t.Fatal(err)
	}
	return h, j
}

func fireCmd(t *testing.T, at Millis, jobs []JobFire, events ...EventFire) []byte {
	return must(t)(Encode(CmdFire, Fire{At: at, Jobs: jobs, Events: events}))
}

func occ(id string, n int64, key string) *Occurrence {
	return &Occurrence{ID: id, JobID: "j1", Project: "p", Number: n, IdentityKey: key, ScheduledFor: Millis(n * 1000), Status: OccurrencePending}
}

func dlv(id, occID, ep string) Delivery {
	return Delivery{ID: id, Project: "p", JobID: "j1", OccurrenceID: occID, EndpointID: ep, Status: DeliveryPending, AssignedNode: "n2", LeaseUntil: 99999, MaxAttempts: 3}
}

func TestFireCreatesOccurrenceAndDeliveriesOnce(t *testing.T) {
	h, j := pipelineFixture(t)
	next := *j
	next.NextFireAt, next.OccurrenceCount = 2000, 1
	res := h.apply(fireCmd(t, 1005, []JobFire{{Job: next, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{dlv("d1", "o1", ""), dlv("d2", "o1", "ep1")}}}))
	if res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
	st := h.f.State()
	got, _ := st.Job("j1")
	if got.NextFireAt != 2000 || got.OccurrenceCount != 1 || got.ModifyIndex != h.idx || got.CreateIndex != j.CreateIndex {
		t.Fatalf("job after fire: %+v", got)
	}
	d, _ := st.Delivery("d1")
	if d.Fence != h.idx || d.AssignedNode != "n2" {
		t.Fatalf("delivery fence %d (want the command's index %d), node %q", d.Fence, h.idx, d.AssignedNode)
	}
	if due := st.DeliveriesDue("n2", 100000, 0); len(due) != 2 {
		t.Fatalf("n2 has %d due deliveries, want 2", len(due))
	}

	// Planned from a stale job: refused whole, nothing half-written.
	res = h.apply(fireCmd(t, 2005, []JobFire{{Job: next, Occurrence: occ("o2", 2, "k2"), Deliveries: []Delivery{dlv("d3", "o2", "")}}}))
	checkErr(t, res.Results[0].Err, ErrConflict, "modified")
	if _, err := h.f.State().Occurrence("o2"); err == nil {
		t.Fatal("a refused fire left its occurrence behind")
	}

	// The same slot again (fresh job index): refused.
	cur, _ := h.f.State().Job("j1")
	res = h.apply(fireCmd(t, 2005, []JobFire{{Job: *cur, Occurrence: occ("o9", 9, "k1")}}))
	checkErr(t, res.Results[0].Err, ErrConflict, "slot")

	// Next slot marks the older pending occurrence missed; a bad item next to
	// it does not stop it.
	cur, _ = h.f.State().Job("j1")
	good := JobFire{Job: *cur, Occurrence: occ("o2", 2, "k2"), Missed: []string{"o1", "nope"}}
	bad := JobFire{Job: Job{ID: "ghost", Project: "p", ModifyIndex: 1}}
	res = h.apply(fireCmd(t, 3000, []JobFire{bad, good}))
	checkErr(t, res.Results[0].Err, ErrNotFound, "")
	if res.Results[1].Err != nil {
		t.Fatal(res.Results[1].Err)
	}
	o1, _ := h.f.State().Occurrence("o1")
	if o1.Status != OccurrenceMissed || o1.CompletedAt != 3000 {
		t.Fatalf("o1 = %+v, want missed at 3000", o1)
	}
}

func TestFirePublishesEvent(t *testing.T) {
	h, _ := pipelineFixture(t)
	h.ok(put(t, TableEvents, &Event{ID: "e1", Project: "p", Type: "invoice.paid", ScheduledAt: 500, Status: EventScheduled}))
	ev, _ := h.f.State().Event("e1")
	d := dlv("d1", "", "ep1")
	d.JobID, d.EventID = "", "e1"
	res := h.apply(fireCmd(t, 600, nil, EventFire{EventID: "e1", IfIndex: ev.ModifyIndex, Deliveries: []Delivery{d}}))
	if res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
	ev, _ = h.f.State().Event("e1")
	if ev.Status != EventPublished || ev.PublishedAt != 600 {
		t.Fatalf("event %+v", ev)
	}
	res = h.apply(fireCmd(t, 700, nil, EventFire{EventID: "e1", IfIndex: ev.ModifyIndex}))
	checkErr(t, res.Results[0].Err, ErrConflict, "already published")
}

func resultsCmd(t *testing.T, at Millis, rs ...DeliveryResult) []byte {
	return must(t)(Encode(CmdDeliveryResults, DeliveryResults{At: at, Results: rs}))
}

func TestDeliveryResultsAreFencedAndCompleteTheOccurrence(t *testing.T) {
	h, j := pipelineFixture(t)
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *j, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{dlv("d1", "o1", ""), dlv("d2", "o1", "ep1")}}}))
	d1, _ := h.f.State().Delivery("d1")
	fence := d1.Fence

	res := h.apply(resultsCmd(t, 1100, DeliveryResult{DeliveryID: "d1", Fence: fence + 1, Status: DeliverySucceeded}))
	checkErr(t, res.Results[0].Err, ErrConflict, "fence")

	res = h.apply(resultsCmd(t, 1100,
		DeliveryResult{DeliveryID: "d1", Fence: fence, Status: DeliveryRetryScheduled, NextAttemptAt: 2000, LeaseUntil: 5000,
			Attempt: Attempt{Node: "n2", StatusCode: 500, ResponseSummary: "boom", StartedAt: 1050, LatencyMs: 12}},
		DeliveryResult{DeliveryID: "d2", Fence: fence, Status: DeliverySucceeded, Attempt: Attempt{Node: "n2", StatusCode: 200}},
	))
	for _, r := range res.Results {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	st := h.f.State()
	d1, _ = st.Delivery("d1")
	if d1.Status != DeliveryRetryScheduled || d1.Attempts != 1 || d1.NextAttemptAt != 2000 || d1.LastStatusCode != 500 {
		t.Fatalf("d1 = %+v", d1)
	}
	if a, err := st.Attempt("d1", 1); err != nil || a.StatusCode != 500 || a.Fence != fence || a.ResponseSummary != "boom" {
		t.Fatalf("attempt 1 = %+v, %v", a, err)
	}
	if o, _ := st.Occurrence("o1"); o.Status != OccurrencePending {
		t.Fatalf("occurrence completed while d1 is still retrying: %+v", o)
	}
	h.ok(resultsCmd(t, 2100, DeliveryResult{DeliveryID: "d1", Fence: fence, Status: DeliveryDeadLetter, Attempt: Attempt{StatusCode: 500}}))
	st = h.f.State()
	if o, _ := st.Occurrence("o1"); o.Status != OccurrenceCompleted || o.CompletedAt != 2100 {
		t.Fatalf("occurrence after all deliveries finished: %+v", o)
	}
	if jj, _ := st.Job("j1"); jj.LastCompletedAt != 2100 {
		t.Fatalf("job LastCompletedAt = %d", jj.LastCompletedAt)
	}
	res = h.apply(resultsCmd(t, 2200, DeliveryResult{DeliveryID: "d1", Fence: fence, Status: DeliverySucceeded}))
	checkErr(t, res.Results[0].Err, ErrConflict, "dead_letter")
}

func TestManualCompletionKeepsOccurrencePending(t *testing.T) {
	h, j := pipelineFixture(t)
	jj := *j
	jj.ManualCompletion = true
	h.ok(put(t, TableJobs, &jj))
	cur, _ := h.f.State().Job("j1")
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *cur, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{dlv("d1", "o1", "")}}}))
	d, _ := h.f.State().Delivery("d1")
	h.ok(resultsCmd(t, 1100, DeliveryResult{DeliveryID: "d1", Fence: d.Fence, Status: DeliverySucceeded}))
	if o, _ := h.f.State().Occurrence("o1"); o.Status != OccurrencePending {
		t.Fatalf("manual-completion occurrence = %s, want pending", o.Status)
	}
}

func TestEndpointDisabledAfterConsecutiveFailuresAndOn410(t *testing.T) {
	h, j := pipelineFixture(t)
	var dels []Delivery
	for i := range EndpointFailureLimit + 1 {
		dels = append(dels, dlv(fmt.Sprintf("d%02d", i), "o1", "ep1"))
	}
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *j, Occurrence: occ("o1", 1, "k1"), Deliveries: dels}}))
	fence := h.idx
	fail := func(id string) {
		h.ok(resultsCmd(t, 2000, DeliveryResult{DeliveryID: id, Fence: fence, Status: DeliveryDeadLetter}))
	}
	for i := range EndpointFailureLimit - 1 {
		fail(fmt.Sprintf("d%02d", i))
	}
	// One success resets the counter.
	h.ok(resultsCmd(t, 2000, DeliveryResult{DeliveryID: "d09", Fence: fence, Status: DeliverySucceeded}))
	if ep, _ := h.f.State().Endpoint("ep1"); ep.ConsecutiveFailures != 0 || !ep.Enabled {
		t.Fatalf("after a success: %+v", ep)
	}
	// A fresh endpoint fails ten times in a row; another one listens.
	h.ok(put(t, TableEndpoints, &Endpoint{ID: "ep2", Project: "p", URL: "https://x.test", Enabled: true}))
	h.ok(put(t, TableEndpoints, &Endpoint{ID: "watch", Project: "p", URL: "https://w.test", Enabled: true, EventTypes: []string{"endpoint.*"}}))
	var d2 []Delivery
	for i := range EndpointFailureLimit {
		d2 = append(d2, dlv(fmt.Sprintf("f%02d", i), "", "ep2"))
	}
	cur, _ := h.f.State().Job("j1")
	h.ok(fireCmd(t, 3000, []JobFire{{Job: *cur, Deliveries: d2}}))
	fence = h.idx
	for i := range EndpointFailureLimit {
		fail(fmt.Sprintf("f%02d", i))
	}
	ep, _ := h.f.State().Endpoint("ep2")
	if ep.Enabled || ep.ConsecutiveFailures != EndpointFailureLimit || ep.DisabledReason == "" {
		t.Fatalf("after %d failures: %+v", EndpointFailureLimit, ep)
	}
	evs, _ := h.f.State().EventsDue(1<<40, 0), 0
	var disabled *Event
	for _, e := range evs {
		if e.Type == EventEndpointDisabled {
			disabled = e
		}
	}
	if disabled == nil {
		t.Fatal("no endpoint.disabled event scheduled")
	}
	var data map[string]any
	if err := json.Unmarshal(disabled.Data, &data); err != nil || data["endpoint"].(map[string]any)["id"] != "ep2" ||
		data["initiatorId"] != nil || data["consecutiveFailures"] != float64(EndpointFailureLimit) {
		t.Fatalf("event data %s (%v)", disabled.Data, err)
	}
	if disabled.SkipEndpoint != "ep2" {
		t.Fatalf("endpoint.disabled about ep2 does not skip it: %+v", disabled)
	}

	// 410 disables at once.
	h.ok(put(t, TableEndpoints, &Endpoint{ID: "ep3", Project: "p", URL: "https://y.test", Enabled: true}))
	cur, _ = h.f.State().Job("j1")
	h.ok(fireCmd(t, 4000, []JobFire{{Job: *cur, Deliveries: []Delivery{dlv("g1", "", "ep3")}}}))
	h.ok(resultsCmd(t, 4100, DeliveryResult{DeliveryID: "g1", Fence: h.idx, Status: DeliveryDeadLetter, Gone: true, Attempt: Attempt{StatusCode: 410}}))
	if ep, _ := h.f.State().Endpoint("ep3"); ep.Enabled || ep.DisabledReason != "the receiver answered 410 Gone" {
		t.Fatalf("after 410: %+v", ep)
	}
}

func TestAssignMovesFenceAndRefusesOldResults(t *testing.T) {
	h, j := pipelineFixture(t)
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *j, Deliveries: []Delivery{dlv("d1", "", "")}}}))
	old := h.idx
	as := func(ifFence uint64) []byte {
		return must(t)(Encode(CmdAssign, Assign{At: 1500, Assignments: []Assignment{{DeliveryID: "d1", IfFence: ifFence, Node: "n3", LeaseUntil: 9000}}}))
	}
	h.ok(as(old))
	d, _ := h.f.State().Delivery("d1")
	if d.AssignedNode != "n3" || d.Fence != h.idx || d.Attempts != 0 {
		t.Fatalf("after reassignment: %+v", d)
	}
	res := h.apply(as(old))
	checkErr(t, res.Results[0].Err, ErrConflict, "fence")
	res = h.apply(resultsCmd(t, 1600, DeliveryResult{DeliveryID: "d1", Fence: old, Status: DeliverySucceeded}))
	checkErr(t, res.Results[0].Err, ErrConflict, "fence")
	if due := h.f.State().DeliveriesDue("n2", 1<<40, 0); len(due) != 0 {
		t.Fatalf("old node still has %d due deliveries", len(due))
	}
}

func TestPruneRemovesOnlyOldTerminalHistory(t *testing.T) {
	h, j := pipelineFixture(t)
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *j, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{dlv("d1", "o1", ""), dlv("d2", "o1", "")}}}))
	fence := h.idx
	h.ok(resultsCmd(t, 1100, DeliveryResult{DeliveryID: "d1", Fence: fence, Status: DeliverySucceeded}))
	res := h.apply(must(t)(Encode(CmdPrune, Prune{Before: 5000, Limit: 100})))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	st := h.f.State()
	if _, err := st.Delivery("d1"); err == nil {
		t.Fatal("old succeeded delivery kept")
	}
	if len(st.Attempts("d1")) != 0 {
		t.Fatal("attempts of a pruned delivery kept")
	}
	if _, err := st.Delivery("d2"); err != nil {
		t.Fatal("active delivery pruned")
	}
	if _, err := st.Occurrence("o1"); err != nil {
		t.Fatal("occurrence with an active delivery pruned")
	}
	h.ok(resultsCmd(t, 9000, DeliveryResult{DeliveryID: "d2", Fence: fence, Status: DeliveryDeadLetter}))
	h.ok(must(t)(Encode(CmdPrune, Prune{Before: 5000, Limit: 100})))
	if _, err := h.f.State().Delivery("d2"); err != nil {
		t.Fatal("delivery finished after the cut-off pruned")
	}
	h.ok(must(t)(Encode(CmdPrune, Prune{Before: 10000, Limit: 100})))
	st = h.f.State()
	if _, err := st.Occurrence("o1"); err == nil {
		t.Fatal("old completed occurrence kept")
	}
	if st.Count(TableDeliveries) != 0 {
		t.Fatal("deliveries left")
	}
}

// A job without a cooldown is not rewritten when an occurrence completes:
// LastCompletedAt only feeds the cooldown, and a job write is costly.
func TestCompletionLeavesJobWithoutCooldownAlone(t *testing.T) {
	h, j := pipelineFixture(t)
	j.CooldownMs = 0
	h.ok(put(t, TableJobs, j))
	j, _ = h.f.State().Job("j1")
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *j, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{dlv("d1", "o1", "")}}}))
	after, _ := h.f.State().Job("j1")
	d1, _ := h.f.State().Delivery("d1")
	h.ok(resultsCmd(t, 1100, DeliveryResult{DeliveryID: "d1", Fence: d1.Fence, Status: DeliverySucceeded}))
	st := h.f.State()
	if o, _ := st.Occurrence("o1"); o.Status != OccurrenceCompleted {
		t.Fatalf("occurrence %s", o.Status)
	}
	if jj, _ := st.Job("j1"); jj.ModifyIndex != after.ModifyIndex || jj.LastCompletedAt != 0 {
		t.Fatalf("job rewritten on completion: modify %d → %d, lastCompleted %d", after.ModifyIndex, jj.ModifyIndex, jj.LastCompletedAt)
	}
}

// A fire planned while an endpoint was disabled, applied after it was
// enabled again, is refused rather than leaving a held delivery behind.
func TestStaleHeldDeliveryRefused(t *testing.T) {
	h, j := pipelineFixture(t) // ep1 is enabled
	held := dlv("d1", "o1", "ep1")
	held.Status, held.AssignedNode, held.LeaseUntil = DeliveryHeld, "", 0
	res := h.apply(fireCmd(t, 1000, []JobFire{{Job: *j, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{held}}}))
	checkErr(t, res.Results[0].Err, ErrConflict, "enabled after")
	if _, err := h.f.State().Occurrence("o1"); err == nil {
		t.Fatal("the refused fire left its occurrence")
	}
}

// A node that re-sends a report it could not confirm must not count one
// attempt twice: a result names its attempt, and a stale one is refused.
func TestRepeatedResultCountsOnce(t *testing.T) {
	h, j := pipelineFixture(t)
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *j, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{dlv("d1", "o1", "")}}}))
	d1, _ := h.f.State().Delivery("d1")
	retry := DeliveryResult{DeliveryID: "d1", Fence: d1.Fence, Status: DeliveryRetryScheduled, NextAttemptAt: 2000, LeaseUntil: 5000,
		Attempt: Attempt{Number: 1, StatusCode: 500}}
	h.ok(resultsCmd(t, 1100, retry))
	res := h.apply(resultsCmd(t, 1100, retry))
	checkErr(t, res.Results[0].Err, ErrConflict, "stale")
	if d, _ := h.f.State().Delivery("d1"); d.Attempts != 1 || len(h.f.State().Attempts("d1")) != 1 {
		t.Fatalf("a repeated report counted twice: %d attempts", d.Attempts)
	}
}

// Prune passes over old occurrences whose deliveries still run instead of
// counting them, so they cannot stop pruning.
func TestPruneSkipsBusyOccurrencesWithoutStalling(t *testing.T) {
	h, _ := pipelineFixture(t)
	busy := occ("o1", 1, "k1")
	busy.Status, busy.CompletedAt = OccurrenceCompleted, 100 // completed by hand
	idle := occ("o2", 2, "k2")
	idle.Status, idle.CompletedAt = OccurrenceCompleted, 200
	d := dlv("d1", "o1", "")
	d.NextAttemptAt = 50
	h.ok(put(t, TableOccurrences, busy), put(t, TableOccurrences, idle), put(t, TableDeliveries, &d))
	h.ok(must(t)(Encode(CmdPrune, &Prune{Before: 1000, Limit: 1})))
	st := h.f.State()
	if _, err := st.Occurrence("o1"); err != nil {
		t.Fatal("an occurrence with a running delivery was pruned")
	}
	if _, err := st.Occurrence("o2"); err == nil {
		t.Fatal("the busy occurrence used up the limit: o2 was not pruned")
	}
}

func TestPruneRemovesExpiredIdempotencyRecords(t *testing.T) {
	h := newHarness(t)
	for i, exp := range []Millis{100, 200, 300} {
		h.ok(put(t, TableIdempotency, &IdempotencyRecord{ID: fmt.Sprintf("default/k%d", i), ExpiresAt: exp}))
	}
	h.ok(must(t)(Encode(CmdPrune, Prune{Limit: 10})))
	if n := h.f.State().Count(TableIdempotency); n != 3 {
		t.Fatalf("a prune without IdempotencyBefore removed keys: %d left", n)
	}
	h.ok(must(t)(Encode(CmdPrune, Prune{Limit: 10, IdempotencyBefore: 200})))
	if _, err := h.f.State().Idempotency("default/k2"); err != nil || h.f.State().Count(TableIdempotency) != 1 {
		t.Fatalf("after pruning up to 200: %d left (%v)", h.f.State().Count(TableIdempotency), err)
	}
}

// Settled events were kept for good (one for every change of a job with a
// subscriber): retention removes them once no delivery in the live state
// needs them, and a held one does not stop the rest.
func TestPruneRemovesSettledEvents(t *testing.T) {
	h, _ := pipelineFixture(t)
	ev := func(id string, status string, at Millis) *Event {
		return &Event{ID: id, Project: "p", Type: "invoice.paid", Status: status, CreatedAt: at, PublishedAt: at}
	}
	held := dlv("d-held", "", "")
	held.JobID, held.EventID, held.EndpointID, held.Status = "", "evt-busy", "ep1", DeliveryHeld
	h.ok(put(t, TableEvents, ev("evt-busy", EventPublished, 100)), put(t, TableEvents, ev("evt-old", EventPublished, 200)),
		put(t, TableEvents, ev("evt-skipped", EventSkipped, 300)), put(t, TableEvents, ev("evt-new", EventPublished, 9000)),
		put(t, TableEvents, &Event{ID: "evt-later", Project: "p", Type: "x.y", Status: EventScheduled, CreatedAt: 100, ScheduledAt: 99999}),
		put(t, TableDeliveries, &held))
	h.ok(must(t)(Encode(CmdPrune, Prune{Before: 5000, Limit: 2})))
	st := h.f.State()
	for id, kept := range map[string]bool{"evt-busy": true, "evt-old": false, "evt-skipped": false, "evt-new": true, "evt-later": true} {
		if _, err := st.Event(id); (err == nil) != kept {
			t.Errorf("event %s: kept %v, want %v", id, err == nil, kept)
		}
	}
}
