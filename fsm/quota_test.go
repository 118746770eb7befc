package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
)

func quotaErrOf(t *testing.T, err error, field string) *Error {
	t.Helper()
	var e *Error
	if !errors.Is(err, ErrQuota) || !errors.As(err, &e) || e.Code != CodeQuota || e.Field != field {
		t.Fatalf("error = %#v, want a %s quota error on %s", err, CodeQuota, field)
	}
	return e
}

// Counts are checked in Apply against counters kept in the transaction: the
// third create of a batch of three (as the coalescer sends concurrent creates
// from several nodes) is refused, whatever the nodes saw when they built them.
func TestQuotaJobCountInApply(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})),
		put(t, TableLimits, &Limits{ID: ClusterLimitsID, MaxJobs: 2, MaxEndpoints: 1}))
	job := func(id string) *Job { return &Job{ID: id, Project: "p", Status: JobActive, CreatedAt: 1000} }
	res := h.apply(must(t)(BatchCommand(put(t, TableJobs, job("j1")), put(t, TableJobs, job("j2")), put(t, TableJobs, job("j3")))))
	if res.Results[0].Err != nil || res.Results[1].Err != nil {
		t.Fatalf("first two creates: %v, %v", res.Results[0].Err, res.Results[1].Err)
	}
	if e := quotaErrOf(t, res.Results[2].Err, "maxJobs"); e.RetryAfterMs != 0 {
		t.Fatalf("a count limit has no Retry-After, got %d ms", e.RetryAfterMs)
	}
	if _, err := h.f.State().Job("j3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused job stored: %v", err)
	}
	if u := h.f.State().Usage("p"); u.Jobs != 2 {
		t.Fatalf("usage jobs = %d, want 2", u.Jobs)
	}

	// A cancelled job no longer counts; updates of a live one are free.
	j1, _ := h.f.State().Job("j1")
	c := *j1
	c.Status = JobCancelled
	h.ok(must(t)(PutCommand(TableJobs, &c, PutOptions{IfIndex: j1.ModifyIndex})))
	j2, _ := h.f.State().Job("j2")
	u := *j2
	u.Name = "renamed"
	h.ok(must(t)(PutCommand(TableJobs, &u, PutOptions{IfIndex: j2.ModifyIndex})))
	h.ok(put(t, TableJobs, job("j3")))
	// Making the cancelled one live again is a create.
	j1, _ = h.f.State().Job("j1")
	r := *j1
	r.Status = JobActive
	quotaErrOf(t, h.apply(must(t)(PutCommand(TableJobs, &r, PutOptions{IfIndex: j1.ModifyIndex}))).Err, "maxJobs")

	// A project override wins over the cluster row; -1 is unlimited.
	h.ok(put(t, TableLimits, &Limits{ID: "p", MaxJobs: Unlimited}))
	h.ok(put(t, TableJobs, job("j4")), put(t, TableJobs, job("j5")))

	h.ok(put(t, TableEndpoints, &Endpoint{ID: "e1", Project: "p", CreatedAt: 1000}))
	quotaErrOf(t, h.apply(put(t, TableEndpoints, &Endpoint{ID: "e2", Project: "p", CreatedAt: 1000})).Err, "maxEndpoints")
	h.ok(must(t)(DeleteCommand(TableEndpoints, "e1", 0)))
	h.ok(put(t, TableEndpoints, &Endpoint{ID: "e2", Project: "p", CreatedAt: 1000}))
}

// Rates are token buckets fed with the time the API node wrote in the
// record, so every replica refuses the same create.
func TestQuotaCreateRateIsDeterministic(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})),
		put(t, TableLimits, &Limits{ID: ClusterLimitsID, CreatesPerSecond: 2, CreateBurst: 2}))
	job := func(id string, at Millis) []byte {
		return put(t, TableJobs, &Job{ID: id, Project: "p", Status: JobActive, CreatedAt: at})
	}
	h.ok(job("j1", 10_000), job("j2", 10_000))
	e := quotaErrOf(t, h.apply(job("j3", 10_000)).Err, "createsPerSecond")
	if e.RetryAfterMs != 500 {
		t.Fatalf("Retry-After = %d ms, want 500", e.RetryAfterMs)
	}
	h.ok(job("j3", 10_500))
	// An earlier time (another node's clock behind) earns nothing back.
	quotaErrOf(t, h.apply(job("j4", 9_000)).Err, "createsPerSecond")
	h.ok(job("j4", 11_000))

	// A replica restored from a snapshot continues with the same bucket.
	dst := New(slog.New(slog.DiscardHandler))
	if err := restore(dst, snapshotOf(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if got, want := dst.State().Usage("p"), h.f.State().Usage("p"); got != want {
		t.Fatalf("restored usage %+v, want %+v", got, want)
	}
	h2 := &harness{t: t, f: dst, idx: h.idx}
	for _, hh := range []*harness{h, h2} {
		quotaErrOf(t, hh.apply(job("j5", 11_000)).Err, "createsPerSecond")
	}
}

// A scheduled fire over the undelivered limit is skipped, visibly, and the
// schedule moves on; a manual trigger or a publish is refused with 429.
func TestQuotaUndeliveredSkipsScheduledFire(t *testing.T) {
	h, j := pipelineFixture(t)
	h.ok(put(t, TableLimits, &Limits{ID: ClusterLimitsID}), put(t, TableLimits, &Limits{ID: "p", MaxUndelivered: 2}))
	next := *j
	next.NextFireAt, next.OccurrenceCount = 2000, 1
	res := h.apply(fireCmd(t, 1005, []JobFire{{Job: next, Occurrence: occ("o1", 1, "k1"),
		Deliveries: []Delivery{dlv("d1", "o1", ""), dlv("d2", "o1", "ep1")}}}))
	if res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
	if u := h.f.State().Usage("p"); u.Undelivered != 2 {
		t.Fatalf("undelivered = %d, want 2", u.Undelivered)
	}
	cur, _ := h.f.State().Job("j1")
	next = *cur
	next.NextFireAt, next.OccurrenceCount = 3000, 2
	res = h.apply(fireCmd(t, 2005, []JobFire{{Job: next, Occurrence: occ("o2", 2, "k2"), Deliveries: []Delivery{dlv("d3", "o2", "")}}}))
	if res.Results[0].Err != nil {
		t.Fatalf("a scheduled fire over quota must apply (skipped), got %v", res.Results[0].Err)
	}
	st := h.f.State()
	o2, err := st.Occurrence("o2")
	if err != nil || o2.Status != OccurrenceSkipped || o2.SkipReason == "" || o2.CompletedAt != 2005 {
		t.Fatalf("o2 = %+v, %v; want skipped with a reason", o2, err)
	}
	if _, err := st.Delivery("d3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("d3 stored despite the quota: %v", err)
	}
	if jj, _ := st.Job("j1"); jj.NextFireAt != 3000 {
		t.Fatalf("the schedule did not move on: next %d", jj.NextFireAt)
	}

	// A manual trigger is refused, with a Retry-After.
	cur, _ = st.Job("j1")
	trig := *cur
	o3 := occ("o3", 3, "")
	o3.Manual = true
	res = h.apply(fireCmd(t, 2100, []JobFire{{Job: trig, Occurrence: o3, Deliveries: []Delivery{dlv("d4", "o3", "")}}}))
	if e := quotaErrOf(t, res.Results[0].Err, "maxUndelivered"); e.RetryAfterMs == 0 {
		t.Fatal("an undelivered limit says when to retry")
	}
	// So is a publish.
	quotaErrOf(t, h.apply(put(t, TableEvents, &Event{ID: "ev1", Project: "p", Type: "x", Status: EventScheduled, CreatedAt: 2100})).Err, "maxUndelivered")

	// A dead letter still counts; a success or a cancel frees room.
	d1, _ := st.Delivery("d1")
	res = h.apply(must(t)(Encode(CmdDeliveryResults, DeliveryResults{At: 2200, Results: []DeliveryResult{
		{DeliveryID: "d1", Fence: d1.Fence, Status: DeliverySucceeded, Attempt: Attempt{StartedAt: 2100, StatusCode: 200}},
	}})))
	if res.Results[0].Err != nil {
		t.Fatal(res.Results[0].Err)
	}
	if u := h.f.State().Usage("p"); u.Undelivered != 1 {
		t.Fatalf("undelivered after a success = %d, want 1", u.Undelivered)
	}
	h.ok(put(t, TableEvents, &Event{ID: "ev1", Project: "p", Type: "x", Status: EventScheduled, CreatedAt: 2300}))

	// The counters are derived: a restore rebuilds the same.
	dst := New(slog.New(slog.DiscardHandler))
	if err := restore(dst, snapshotOf(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if got, want := dst.State().Usage("p"), h.f.State().Usage("p"); got != want {
		t.Fatalf("restored usage %+v, want %+v", got, want)
	}
}

// The API's pre-check runs the same rule on a State.
func TestCheckQuotaOnState(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})),
		put(t, TableLimits, &Limits{ID: ClusterLimitsID, MaxJobs: 1}),
		put(t, TableJobs, &Job{ID: "j1", Project: "p", Status: JobActive}))
	st := h.f.State()
	quotaErrOf(t, st.CheckQuota("p", QuotaCreateJob, 0), "maxJobs")
	if err := st.CheckQuota("p", QuotaCreateEndpoint, 0); err != nil {
		t.Fatal(err)
	}
	if l := st.EffectiveLimits("p"); l.MaxJobs != 1 || l.ID != "p" {
		t.Fatalf("effective %+v", l)
	}
	// Deleting the project drops its rows.
	h.ok(must(t)(DeleteCommand(TableJobs, "j1", 0)), put(t, TableLimits, &Limits{ID: "p", MaxJobs: 5}),
		must(t)(ProjectDeleteCommand("p")))
	if _, err := h.f.State().Limits("p"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("limits of a deleted project: %v", err)
	}
	if n := h.f.State().Count(TableUsage); n != 0 {
		t.Fatal(fmt.Sprint("usage rows left: ", n))
	}
}
