package fsm

import (
	"fmt"
	"testing"
)

// breakerFixture: pipelineFixture plus an occurrence and n deliveries to
// endpoint ep1 ("e1"…) and n to j1's inline callback ("c1"…), on node n2.
func breakerFixture(t *testing.T, n int) *harness {
	h, j := pipelineFixture(t)
	var ds []Delivery
	for i := 1; i <= n; i++ {
		e, c := dlv(fmt.Sprintf("e%d", i), "o1", "ep1"), dlv(fmt.Sprintf("c%d", i), "o1", "")
		e.MaxAttempts, c.MaxAttempts = 9, 9
		ds = append(ds, e, c)
	}
	next := *j
	next.NextFireAt = 2000
	res := h.apply(fireCmd(t, 1000, []JobFire{{Job: next, Occurrence: occ("o1", 1, "k1"), Deliveries: ds}}))
	if res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
	return h
}

// report applies one result of delivery id (current fence, next attempt),
// started at started, reported at at; unreachable or answered with 500.
func report(t *testing.T, h *harness, id string, started, at Millis, unreachable bool) {
	t.Helper()
	d, err := h.f.State().Delivery(id)
	if err != nil {
		t.Fatal(err)
	}
	r := DeliveryResult{DeliveryID: id, Fence: d.Fence, Status: DeliveryRetryScheduled, NextAttemptAt: at + 1000, LeaseUntil: at + 60000,
		Attempt: Attempt{Number: d.Attempts + 1, StartedAt: started, Error: "timeout after 10s"}, Unreachable: unreachable}
	if !unreachable {
		r.Attempt.StatusCode, r.Attempt.Error = 500, ""
	}
	res := h.apply(must(t)(Encode(CmdDeliveryResults, &DeliveryResults{At: at, Results: []DeliveryResult{r}})))
	if res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
}

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	h := breakerFixture(t, 8)
	key := BreakerKeyEndpoint("ep1")
	state := func(now Millis) string { return h.f.State().Breaker(key).StateAt(now) }

	// Four unreachable attempts count; the fifth opens it for 30 s at the
	// reporting command's time.
	for i := 1; i <= 4; i++ {
		report(t, h, fmt.Sprintf("e%d", i), 10000, 10000+Millis(i), true)
	}
	if got := state(10010); got != BreakerClosed {
		t.Fatalf("after 4 unreachable attempts: %s, want closed", got)
	}
	report(t, h, "e5", 10000, 20000, true)
	b := h.f.State().Breaker(key)
	if b.StateAt(20001) != BreakerOpen || b.OpenedAt != 20000 || b.Until != 20000+Millis(BreakerCooldown.Milliseconds()) || b.Failures != 5 {
		t.Fatalf("after 5: %+v, want open from 20000 for %s", b, BreakerCooldown)
	}
	if state(b.Until) != BreakerHalfOpen {
		t.Fatalf("at until: %s, want half_open", state(b.Until))
	}
	// A call started before it opened that times out later only counts.
	until := b.Until
	report(t, h, "e6", 19000, 25000, true)
	if b := h.f.State().Breaker(key); b.Until != until || b.Opens != 1 {
		t.Fatalf("a late result of an old call moved the breaker: %+v", b)
	}
	// The failed probe (started at or after until) reopens it, twice as long.
	report(t, h, "e7", until, until+500, true)
	b = h.f.State().Breaker(key)
	if b.Opens != 2 || b.OpenedAt != until+500 || b.Until != until+500+Millis(2*BreakerCooldown.Milliseconds()) {
		t.Fatalf("after a failed probe: %+v, want reopened for %s", b, 2*BreakerCooldown)
	}
	// Any HTTP answer closes it (the record goes).
	report(t, h, "e8", b.Until, b.Until+10, false)
	if b := h.f.State().Breaker(key); b != nil {
		t.Fatalf("after an answer: %+v, want no breaker", b)
	}
	// Inline callbacks have their own breaker, per project and host.
	for i := 1; i <= BreakerThreshold; i++ {
		report(t, h, fmt.Sprintf("c%d", i), 30000, 30000+Millis(i), true)
	}
	cb := h.f.State().Breaker(BreakerKeyCallback("p", "https://EXAMPLE.test:443/other"))
	if cb.StateAt(30010) != BreakerOpen || cb.Target != "https://example.test:443" || cb.Project != "p" {
		t.Fatalf("callback breaker: %+v", cb)
	}
}

func TestBreakerIgnoresRefusedResultsAndGoesWithItsEndpoint(t *testing.T) {
	h := breakerFixture(t, 6)
	key := BreakerKeyEndpoint("ep1")
	for i := 1; i <= 5; i++ {
		report(t, h, fmt.Sprintf("e%d", i), 1000, 2000, true)
	}
	// A result under an old fence is refused and counts for nothing.
	d, _ := h.f.State().Delivery("e6")
	before := *h.f.State().Breaker(key)
	res := h.apply(must(t)(Encode(CmdDeliveryResults, &DeliveryResults{At: 3000, Results: []DeliveryResult{{
		DeliveryID: "e6", Fence: d.Fence - 1, Status: DeliverySucceeded, Attempt: Attempt{StatusCode: 200}}}})))
	checkErr(t, res.Results[0].Err, ErrConflict, "fence")
	if b := h.f.State().Breaker(key); b == nil || b.ModifyIndex != before.ModifyIndex {
		t.Fatalf("a refused result changed the breaker: %+v", b)
	}
	h.ok(must(t)(Encode(CmdDelete, &Delete{Table: TableEndpoints, ID: "ep1"})))
	if b := h.f.State().Breaker(key); b != nil {
		t.Fatalf("endpoint deleted, breaker kept: %+v", b)
	}
}
