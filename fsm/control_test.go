package fsm

import "testing"

func controlCmd(t *testing.T, at Millis, acts ...DeliveryAction) []byte {
	return must(t)(DeliveryControlCommand(DeliveryControl{At: at, Actions: acts}))
}

func TestDeliveryControlRetryCancelRelease(t *testing.T) {
	h, j := pipelineFixture(t)
	next := *j
	held := dlv("d3", "o1", "ep1")
	held.Status, held.AssignedNode, held.LeaseUntil = DeliveryHeld, "", 0
	ep, _ := h.f.State().Endpoint("ep1")
	off := *ep
	off.Enabled = false
	h.ok(put(t, TableEndpoints, &off)) // held deliveries are planned for a disabled endpoint
	h.ok(fireCmd(t, 1000, []JobFire{{Job: next, Occurrence: occ("o1", 1, "k1"),
		Deliveries: []Delivery{dlv("d1", "o1", ""), dlv("d2", "o1", ""), held}}}))
	d1, _ := h.f.State().Delivery("d1")
	h.ok(resultsCmd(t, 1100, DeliveryResult{DeliveryID: "d1", Fence: d1.Fence, Status: DeliveryDeadLetter, Attempt: Attempt{StatusCode: 500}}))

	// Retry of an active delivery is refused; of a dead letter it re-queues
	// under a new fence with more attempts.
	res := h.apply(controlCmd(t, 1200, DeliveryAction{DeliveryID: "d2", Action: ActionRetry, Node: "n1", LeaseUntil: 5000}))
	checkErr(t, res.Results[0].Err, ErrConflict, "only a dead-lettered")
	res = h.apply(controlCmd(t, 1200, DeliveryAction{DeliveryID: "d1", Action: ActionRetry, Node: "n1", LeaseUntil: 5000, MoreAttempts: 2}))
	if res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
	d1, _ = h.f.State().Delivery("d1")
	if d1.Status != DeliveryPending || d1.Fence != h.idx || d1.AssignedNode != "n1" || d1.MaxAttempts != 3 || d1.NextAttemptAt != 1200 || d1.CompletedAt != 0 {
		t.Fatalf("retried delivery: %+v", d1)
	}
	if got := h.f.State().AssignedNodes(); len(got) != 2 || got[0] != "n1" || got[1] != "n2" {
		t.Fatalf("AssignedNodes = %v, want [n1 n2]", got)
	}

	// Release needs a held delivery.
	res = h.apply(controlCmd(t, 1300, DeliveryAction{DeliveryID: "d1", Action: ActionRelease, Node: "n1", LeaseUntil: 5000}))
	checkErr(t, res.Results[0].Err, ErrConflict, "not held")
	res = h.apply(controlCmd(t, 1300, DeliveryAction{DeliveryID: "d3", Action: ActionRelease, Node: "n2", LeaseUntil: 1300}))
	checkErr(t, res.Results[0].Err, ErrInvalid, "lease")
	h.ok(controlCmd(t, 1300, DeliveryAction{DeliveryID: "d3", Action: ActionRelease, Node: "n2", LeaseUntil: 6000}))
	if d3, _ := h.f.State().Delivery("d3"); d3.Status != DeliveryPending || d3.AssignedNode != "n2" {
		t.Fatalf("released delivery: %+v", d3)
	}

	// Cancelling every delivery completes the occurrence; a second cancel is a conflict.
	h.ok(controlCmd(t, 1400,
		DeliveryAction{DeliveryID: "d1", Action: ActionCancel},
		DeliveryAction{DeliveryID: "d2", Action: ActionCancel},
		DeliveryAction{DeliveryID: "d3", Action: ActionCancel}))
	if o, _ := h.f.State().Occurrence("o1"); o.Status != OccurrenceCompleted {
		t.Fatalf("occurrence after cancelling all deliveries: %s", o.Status)
	}
	res = h.apply(controlCmd(t, 1500, DeliveryAction{DeliveryID: "d1", Action: ActionCancel}))
	checkErr(t, res.Results[0].Err, ErrConflict, "already cancelled")
	if n := h.f.State().AssignedNodes(); len(n) != 0 {
		t.Fatalf("AssignedNodes after cancelling all = %v", n)
	}
	if exp := h.f.State().ExpiredLeases(1<<40, 0); len(exp) != 0 {
		t.Fatalf("cancelled deliveries still hold leases: %d", len(exp))
	}
}

func TestOccurrenceControl(t *testing.T) {
	h, j := pipelineFixture(t)
	next := *j
	h.ok(fireCmd(t, 1000, []JobFire{{Job: next, Occurrence: occ("o1", 1, "k1"), Deliveries: []Delivery{dlv("d1", "o1", "")}}}))
	cur, _ := h.f.State().Job("j1")
	h.ok(fireCmd(t, 2000, []JobFire{{Job: *cur, Occurrence: occ("o2", 2, "k2")}}))

	skip := must(t)(OccurrenceControlCommand(OccurrenceControl{At: 2100, Action: ActionSkip, IDs: []string{"o1"}, Project: "p"}))
	h.ok(skip)
	st := h.f.State()
	if o, _ := st.Occurrence("o1"); o.Status != OccurrenceSkipped {
		t.Fatalf("o1 = %s", o.Status)
	}
	if d, _ := st.Delivery("d1"); d.Status != DeliveryCancelled {
		t.Fatalf("skipping left delivery %s", d.Status)
	}
	if jb, _ := st.Job("j1"); jb.LastCompletedAt != 0 {
		t.Fatal("a skip set the job's LastCompletedAt")
	}

	res := h.apply(must(t)(OccurrenceControlCommand(OccurrenceControl{At: 2200, Action: ActionComplete, IDs: []string{"o1", "o2"}, Project: "p"})))
	checkErr(t, res.Results[0].Err, ErrConflict, "already skipped")
	if res.Results[1].Err != nil {
		t.Fatal(res.Results[1].Err)
	}
	if jb, _ := h.f.State().Job("j1"); jb.LastCompletedAt != 2200 {
		t.Fatalf("complete did not set LastCompletedAt: %d", jb.LastCompletedAt)
	}
	res = h.apply(must(t)(OccurrenceControlCommand(OccurrenceControl{At: 2300, Action: ActionComplete, IDs: []string{"o2"}, Project: "other"})))
	checkErr(t, res.Results[0].Err, ErrNotFound, "")
}
