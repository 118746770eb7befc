package fsm

import (
	"encoding/json"
	"testing"
)

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, typ string
		want         bool
	}{
		{"*", "invoice.paid", true},
		{"invoice.*", "invoice.paid", true},
		{"invoice.*", "invoice.line.added", true},
		{"invoice.*", "invoice", false},
		{"invoice.*", "invoices.paid", false},
		{"invoice.paid", "invoice.paid", true},
		{"invoice.paid", "invoice.paid.late", false},
	} {
		if got := Matches(c.pattern, c.typ); got != c.want {
			t.Errorf("Matches(%q, %q) = %v", c.pattern, c.typ, got)
		}
	}
}

// raised lists the lifecycle events stored so far, by type, with their data.
func raised(t *testing.T, h *harness) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	evs, _ := h.f.State().Events("p", "", 0)
	for _, e := range evs {
		if !LifecycleEventTypes[e.Type] {
			continue
		}
		var data map[string]any
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatalf("event %s data %s: %v", e.ID, e.Data, err)
		}
		data["_skip"] = e.SkipEndpoint
		out[e.Type] = append(out[e.Type], data)
	}
	return out
}

func putBy(t *testing.T, rec any, opts PutOptions) []byte {
	t.Helper()
	return must(t)(PutCommand(tableOf(t, rec), rec, opts))
}

func tableOf(t *testing.T, rec any) string {
	switch rec.(type) {
	case *Job:
		return TableJobs
	case *Endpoint:
		return TableEndpoints
	}
	t.Fatalf("no table for %T", rec)
	return ""
}

func TestJobLifecycleEvents(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})))
	job := &Job{ID: "j1", Project: "p", Name: "first", Status: JobActive, NextFireAt: 5000, UpdatedAt: 100, CallbackURL: "https://x.test"}

	// Nobody listens: nothing is stored.
	h.ok(putBy(t, job, PutOptions{Initiator: "tok1"}))
	if got := raised(t, h); len(got) != 0 {
		t.Fatalf("events without a subscriber: %v", got)
	}

	h.ok(put(t, TableEndpoints, &Endpoint{ID: "ep", Project: "p", URL: "https://e.test", Enabled: true, EventTypes: []string{"job.*"}}))
	h.ok(putBy(t, &Job{ID: "j2", Project: "p", Name: "second", Status: JobActive, UpdatedAt: 200}, PutOptions{IfAbsent: true, Initiator: "tok1"}))
	cur, _ := h.f.State().Job("j1")
	step := func(change func(j *Job), initiator string) {
		t.Helper()
		cur, _ := h.f.State().Job("j1")
		j := *cur
		change(&j)
		j.UpdatedAt += 10
		h.ok(putBy(t, &j, PutOptions{IfIndex: cur.ModifyIndex, Initiator: initiator}))
	}
	step(func(j *Job) { j.Name, j.NextFireAt = "renamed", 6000 }, "tok2")
	step(func(j *Job) {}, "tok2") // nothing visible changed
	step(func(j *Job) { j.Status = JobPaused }, "tok2")
	step(func(j *Job) { j.Status = JobActive }, "tok3")
	step(func(j *Job) { j.Status = JobCancelled }, "tok3")
	step(func(j *Job) { j.Name = "by the system" }, "") // no initiator: not an API write
	_ = cur

	got := raised(t, h)
	want := map[string]int{EventJobCreated: 1, EventJobUpdated: 1, EventJobPaused: 1, EventJobResumed: 1, EventJobDeleted: 1}
	for typ, n := range want {
		if len(got[typ]) != n {
			t.Errorf("%s raised %d times, want %d (all: %v)", typ, len(got[typ]), n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("raised %v, want only %v", got, want)
	}
	created := got[EventJobCreated][0]
	if created["jobId"] != "j2" || created["initiatorId"] != "tok1" || created["job"].(map[string]any)["name"] != "second" {
		t.Errorf("job.created data %v", created)
	}
	updated := got[EventJobUpdated][0]
	changes, _ := updated["changes"].(map[string]any)
	if len(changes) != 2 || changes["name"] != "renamed" || changes["nextFireAt"] != "1970-01-01T00:00:06Z" || updated["initiatorId"] != "tok2" {
		t.Errorf("job.updated data %v; want changes name and nextFireAt only", updated)
	}
	if d := got[EventJobDeleted][0]; d["job"].(map[string]any)["status"] != JobCancelled || d["initiatorId"] != "tok3" {
		t.Errorf("job.deleted data %v", d)
	}
}

func TestOccurrenceAndDeliveryLifecycleEvents(t *testing.T) {
	h, j := pipelineFixture(t)
	h.ok(put(t, TableEndpoints, &Endpoint{ID: "watch", Project: "p", URL: "https://w.test", Enabled: true,
		EventTypes: []string{"occurrence.*", "delivery.dead_lettered"}}))

	// A manual trigger with its initiator; the poller's next fire misses it.
	h.ok(must(t)(Encode(CmdFire, Fire{At: 1000, Initiator: "tok1", Jobs: []JobFire{{Job: *j, Occurrence: occ("o1", 1, "k1"),
		Deliveries: []Delivery{dlv("d1", "o1", "ep1")}}}})))
	cur, _ := h.f.State().Job("j1")
	h.ok(fireCmd(t, 2000, []JobFire{{Job: *cur, Occurrence: occ("o2", 2, "k2"), Missed: []string{"o1"},
		Deliveries: []Delivery{dlv("d2", "o2", "ep1"), dlv("d3", "o2", "watch")}}}))
	d2, _ := h.f.State().Delivery("d2")
	h.ok(resultsCmd(t, 3000, DeliveryResult{DeliveryID: "d2", Fence: d2.Fence, Status: DeliveryDeadLetter}))
	h.ok(resultsCmd(t, 3100, DeliveryResult{DeliveryID: "d3", Fence: d2.Fence, Status: DeliverySucceeded}))

	got := raised(t, h)
	if n := len(got[EventOccurrenceCreated]); n != 2 {
		t.Fatalf("occurrence.created raised %d times: %v", n, got)
	}
	if c := got[EventOccurrenceCreated][0]; c["occurrenceId"] != "o1" || c["initiatorId"] != "tok1" {
		t.Errorf("trigger's occurrence.created %v", c)
	}
	if c := got[EventOccurrenceCreated][1]; c["occurrenceId"] != "o2" || c["initiatorId"] != nil {
		t.Errorf("poller's occurrence.created %v", c)
	}
	if m := got[EventOccurrenceMissed]; len(m) != 1 || m[0]["occurrenceId"] != "o1" {
		t.Errorf("occurrence.missed %v", m)
	}
	dl := got[EventDeliveryDeadLettered]
	if len(dl) != 1 || dl[0]["deliveryId"] != "d2" || dl[0]["_skip"] != "ep1" || dl[0]["delivery"].(map[string]any)["status"] != DeliveryDeadLetter {
		t.Errorf("delivery.dead_lettered %v", dl)
	}
	if c := got[EventOccurrenceCompleted]; len(c) != 1 || c[0]["occurrenceId"] != "o2" || c[0]["initiatorId"] != nil {
		t.Errorf("occurrence.completed %v", c)
	}

	// A dead-lettered notice about a notice raises nothing more.
	var notice *Event
	for _, e := range h.f.State().EventsDue(1<<50, 0) {
		if e.Type == EventDeliveryDeadLettered {
			notice = e
		}
	}
	cur, _ = h.f.State().Job("j1")
	h.ok(fireCmd(t, 4000, nil, EventFire{EventID: notice.ID, IfIndex: notice.ModifyIndex,
		Deliveries: []Delivery{{ID: "dn", Project: "p", EventID: notice.ID, EndpointID: "watch", Status: DeliveryPending, AssignedNode: "n2", LeaseUntil: 99999, MaxAttempts: 1}}}))
	dn, _ := h.f.State().Delivery("dn")
	h.ok(resultsCmd(t, 5000, DeliveryResult{DeliveryID: "dn", Fence: dn.Fence, Status: DeliveryDeadLetter}))
	if n := len(raised(t, h)[EventDeliveryDeadLettered]); n != 1 {
		t.Errorf("a dead-lettered notice raised another notice (%d in all)", n)
	}

	// Skip by hand, with the caller's token.
	h.ok(fireCmd(t, 6000, []JobFire{{Job: *cur, Occurrence: occ("o3", 3, "k3")}}))
	h.ok(must(t)(OccurrenceControlCommand(OccurrenceControl{At: 7000, Action: ActionSkip, IDs: []string{"o3"}, Initiator: "tok9"})))
	if s := raised(t, h)[EventOccurrenceSkipped]; len(s) != 1 || s[0]["initiatorId"] != "tok9" {
		t.Errorf("occurrence.skipped %v", s)
	}
}

func TestEndpointDisabledByHandRaisesEvent(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})))
	ep := &Endpoint{ID: "ep", Project: "p", URL: "https://e.test", Enabled: true, EventTypes: []string{"*"}}
	h.ok(put(t, TableEndpoints, ep))
	off := *ep
	off.Enabled, off.DisabledReason, off.UpdatedAt = false, "disabled by hand", 500
	h.ok(putBy(t, &off, PutOptions{Initiator: "tok1"}))
	got := raised(t, h)[EventEndpointDisabled]
	if len(got) != 1 || got[0]["initiatorId"] != "tok1" || got[0]["_skip"] != "ep" || got[0]["reason"] != "disabled by hand" {
		t.Fatalf("endpoint.disabled %v", got)
	}
}

// One log entry may hold several writes (the leader coalesces concurrent
// ones into a Batch); two of them raising the same event for the same job in
// the same millisecond must leave two events, not one overwritten.
func TestSameEventTwiceInOneEntry(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})))
	h.ok(put(t, TableEndpoints, &Endpoint{ID: "ep", Project: "p", URL: "https://e.test", Enabled: true, EventTypes: []string{"job.*"}}))
	h.ok(putBy(t, &Job{ID: "j1", Project: "p", Name: "a", Status: JobActive, UpdatedAt: 100}, PutOptions{IfAbsent: true, Initiator: "tok"}))
	first := &Job{ID: "j1", Project: "p", Name: "b", Status: JobActive, UpdatedAt: 200}
	second := &Job{ID: "j1", Project: "p", Name: "c", Status: JobActive, UpdatedAt: 200}
	h.ok(must(t)(BatchCommand(putBy(t, first, PutOptions{Initiator: "tok"}), putBy(t, second, PutOptions{Initiator: "tok"}))))
	got := raised(t, h)[EventJobUpdated]
	if len(got) != 2 {
		t.Fatalf("job.updated raised %d times in one entry, want 2: %v", len(got), got)
	}
}
