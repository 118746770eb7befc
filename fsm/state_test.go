package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"testing"
)

func TestKeyOrdering(t *testing.T) {
	ints := []int64{math.MinInt64, -1 << 40, -5000, -1, 0, 1, 42, 1700000000000, math.MaxInt64}
	for i := 1; i < len(ints); i++ {
		a, b := appendInt(nil, ints[i-1]), appendInt(nil, ints[i])
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("key(%d) >= key(%d)", ints[i-1], ints[i])
		}
	}
	strs := []string{"", "\x00", "\x00\x00", "\x00a", "a", "a\x00", "a\x00\x00", "a\x00b", "a\x01", "ab", "b", "\xff"}
	if !sort.StringsAreSorted(strs) {
		t.Fatal("fixture not sorted")
	}
	for i := 1; i < len(strs); i++ {
		a, b := appendString(nil, strs[i-1]), appendString(nil, strs[i])
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("key(%q) >= key(%q)", strs[i-1], strs[i])
		}
	}
	// A full key is never a prefix of another: compound keys cannot collide.
	for _, a := range strs {
		for _, b := range strs {
			ka, kb := appendString(nil, a), appendString(nil, b)
			if a != b && bytes.HasPrefix(kb, ka) {
				t.Errorf("key(%q) is a prefix of key(%q)", a, b)
			}
		}
	}
	x := appendString(appendString(nil, "a\x00"), "b")
	y := appendString(appendString(nil, "a"), "\x00b")
	if bytes.Equal(x, y) {
		t.Error(`("a\x00","b") and ("a","\x00b") collide`)
	}
}

func ids[T any](rows []*T) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = keyOf(r)
	}
	return out
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestJobsDueOrdering(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})))
	for _, j := range []struct {
		id     string
		next   Millis
		status string
	}{
		{"a", 3000, JobActive},
		{"b", -5000, JobActive},
		{"c", 0, JobActive},    // no next fire: excluded
		{"d", -1, JobActive},   // negative sorts before zero
		{"e", 3000, JobActive}, // tie with a: by id
		{"f", 10, JobPaused},   // not active: excluded
		{"g", 7000, JobActive},
		{"h", 1, JobCompleted},
	} {
		job := fullJob(j.id, "p", j.next)
		job.Status = j.status
		h.ok(put(t, TableJobs, job))
	}
	s := h.f.State()
	eq(t, "JobsDue(3000)", ids(s.JobsDue(3000, 0)), []string{"b", "d", "a", "e"})
	eq(t, "JobsDue(3000, 2)", ids(s.JobsDue(3000, 2)), []string{"b", "d"})
	eq(t, "JobsDue(-2)", ids(s.JobsDue(-2, 0)), []string{"b"})
	eq(t, "JobsDue(max)", ids(s.JobsDue(math.MaxInt64, 0)), []string{"b", "d", "a", "e", "g"})
	if at, ok := s.NextFireAt(); !ok || at != -5000 {
		t.Errorf("NextFireAt = %d, %v", at, ok)
	}

	// Updates move rows in and out of the conditional index.
	b, _ := s.Job("b")
	paused := *b
	paused.Status = JobPaused
	h.ok(put(t, TableJobs, &paused))
	c := fullJob("c", "p", 5)
	h.ok(put(t, TableJobs, c))
	s = h.f.State()
	eq(t, "JobsDue after update", ids(s.JobsDue(3000, 0)), []string{"d", "c", "a", "e"})
	if at, _ := s.NextFireAt(); at != -1 {
		t.Errorf("NextFireAt = %d", at)
	}
	if _, ok := newHarness(t).f.State().NextFireAt(); ok {
		t.Error("NextFireAt on empty state")
	}
}

func TestQueries(t *testing.T) {
	h := newHarness(t)
	fill(t, h)
	// Extra rows that conditional indexes must leave out, or include.
	tok := fullToken("tok-any", "")
	pendingOcc := fullOccurrence("occ-4", "job-1", "p1", 3, OccurrencePending, 1700000000000) // not terminal
	noIdentity := fullOccurrence("occ-5", "job-2", "p1", 2, OccurrenceCompleted, 0)           // terminal, never completed
	noIdentity.IdentityKey = ""
	held := fullDelivery("del-4", "p1", "n1", DeliveryHeld, 1, 1, 0)
	held.EndpointID, held.JobID, held.OccurrenceID, held.EventID = "", "", "", ""
	pending := fullDelivery("del-5", "p1", "n1", DeliveryPending, 1700000001000, 0, 0)
	pending.EventID = "evt-2"
	h.ok(put(t, TableTokens, tok), put(t, TableOccurrences, pendingOcc), put(t, TableOccurrences, noIdentity),
		put(t, TableDeliveries, held), put(t, TableDeliveries, pending))
	s := h.f.State()

	// projects / tokens
	ps, next := s.Projects("", 2)
	eq(t, "Projects page 1", ids(ps), []string{"default", "p1"})
	eq(t, "Projects cursor", next, "p1")
	ps, next = s.Projects(next, 2)
	eq(t, "Projects page 2", ids(ps), []string{"p2"})
	eq(t, "Projects cursor 2", next, "")
	ts, _ := s.Tokens("p1", "", 0)
	eq(t, "Tokens(p1)", ids(ts), []string{"tok-1", "tok-3"})
	ts, _ = s.Tokens("", "", 0)
	eq(t, "Tokens(all)", ids(ts), []string{"tok-1", "tok-2", "tok-3", "tok-any"})
	ts, next = s.Tokens("p1", "tok-1", 1)
	eq(t, "Tokens(p1, after tok-1)", ids(ts), []string{"tok-3"})
	eq(t, "Tokens cursor", next, "")
	if tk, err := s.TokenByHash("hash-tok-2"); err != nil || tk.ID != "tok-2" {
		t.Errorf("TokenByHash = %v, %v", tk, err)
	}
	for _, hash := range []string{"", "nope"} {
		if _, err := s.TokenByHash(hash); !errors.Is(err, ErrNotFound) {
			t.Errorf("TokenByHash(%q) err = %v", hash, err)
		}
	}
	if _, err := s.Token("tok-9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Token err = %v", err)
	}

	// endpoints
	es, next := s.Endpoints("p1", "", 1)
	eq(t, "Endpoints(p1) page 1", ids(es), []string{"ep-1"})
	es, next = s.Endpoints("p1", next, 1)
	eq(t, "Endpoints(p1) page 2", ids(es), []string{"ep-2"})
	eq(t, "Endpoints cursor", next, "")
	es, _ = s.Endpoints("", "ep-1", 0)
	eq(t, "Endpoints(all)", ids(es), []string{"ep-2", "ep-3"})
	if e, err := s.Endpoint("ep-3"); err != nil || e.Project != "p2" {
		t.Errorf("Endpoint = %v, %v", e, err)
	}

	// jobs
	js, _ := s.Jobs("p1", "", 0)
	eq(t, "Jobs(p1)", ids(js), []string{"job-1", "job-2"})
	js, _ = s.Jobs("p", "", 0) // a prefix of "p1" must match nothing
	eq(t, "Jobs(p)", len(js), 0)
	js, _ = s.JobsByStatus("p1", JobActive, "job-1", 0)
	eq(t, "JobsByStatus(p1, active, after job-1)", ids(js), []string{"job-2"})
	js, _ = s.JobsByStatus("p1", JobPaused, "", 0)
	eq(t, "JobsByStatus(p1, paused)", len(js), 0)
	if j, err := s.JobByIdempotencyKey("p2", "idem-job-3"); err != nil || j.ID != "job-3" {
		t.Errorf("JobByIdempotencyKey = %v, %v", j, err)
	}
	if _, err := s.JobByIdempotencyKey("p1", "idem-job-3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("JobByIdempotencyKey in the wrong project: %v", err)
	}

	// occurrences
	if o, err := s.OccurrenceByNumber("job-1", 2); err != nil || o.ID != "occ-2" {
		t.Errorf("OccurrenceByNumber = %v, %v", o, err)
	}
	if o, err := s.OccurrenceByIdentity("job-2", "job-2@1"); err != nil || o.ID != "occ-3" {
		t.Errorf("OccurrenceByIdentity = %v, %v", o, err)
	}
	if _, err := s.OccurrenceByIdentity("job-2", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty identity matched: %v", err)
	}
	os, n := s.OccurrencesByJob("job-1", 0, 2)
	eq(t, "OccurrencesByJob page 1", ids(os), []string{"occ-1", "occ-2"})
	eq(t, "OccurrencesByJob next", n, int64(2))
	os, n = s.OccurrencesByJob("job-1", n, 2)
	eq(t, "OccurrencesByJob page 2", ids(os), []string{"occ-4"})
	eq(t, "OccurrencesByJob next 2", n, int64(0))
	os, _ = s.OccurrencesByStatus("job-1", OccurrencePending, "", 0)
	eq(t, "OccurrencesByStatus(pending)", ids(os), []string{"occ-4"})
	os, _ = s.OccurrencesByStatus("job-1", OccurrenceCompleted, "", 0) // finished: from the archive
	eq(t, "OccurrencesByStatus(completed)", ids(os), []string{"occ-1"})

	// events
	evs, _ := s.Events("p1", "", 0)
	eq(t, "Events(p1)", ids(evs), []string{"evt-1", "evt-2"})
	eq(t, "EventsDue", ids(s.EventsDue(1700000002000, 0)), []string{"evt-3", "evt-1"}) // evt-2 is published
	eq(t, "EventsDue(0)", ids(s.EventsDue(0, 0)), []string{"evt-3"})
	if e, err := s.EventByIdempotencyKey("p1", "idem-evt-2"); err != nil || e.ID != "evt-2" {
		t.Errorf("EventByIdempotencyKey = %v, %v", e, err)
	}
	if e, err := s.Event("evt-3"); err != nil || e.ScheduledAt != -1 {
		t.Errorf("Event = %v, %v", e, err)
	}

	// deliveries
	ds, _ := s.DeliveriesByStatus("p1", DeliveryInFlight, "", 0)
	eq(t, "DeliveriesByStatus(p1, in_flight)", ids(ds), []string{"del-1"})
	eq(t, "DeliveriesDue(n1)", ids(s.DeliveriesDue("n1", 1700000002500, 0)), []string{"del-5", "del-3"}) // del-4 is held
	eq(t, "DeliveriesDue(n1) all", ids(s.DeliveriesDue("n1", math.MaxInt64, 0)), []string{"del-5", "del-3", "del-1"})
	eq(t, "DeliveriesDue(n2)", len(s.DeliveriesDue("n2", math.MaxInt64, 0)), 0)                       // del-2 succeeded
	eq(t, "DeliveriesByNode(n1)", ids(s.DeliveriesByNode("n1")), []string{"del-5", "del-3", "del-1"}) // earliest due first
	// every active delivery holds a lease, not only in-flight ones: a node
	// that died before starting a pending delivery must lose it too
	eq(t, "ExpiredLeases", ids(s.ExpiredLeases(1700000004000, 0)), []string{"del-1", "del-3"})
	eq(t, "AssignedNodes", s.AssignedNodes(), []string{"n1"})
	eq(t, "ExpiredLeases(before)", len(s.ExpiredLeases(1700000003999, 0)), 0)
	ds, _ = s.DeliveriesByEndpoint("ep-1", "", 0)
	eq(t, "DeliveriesByEndpoint", ids(ds), []string{"del-1", "del-2", "del-3", "del-5"})
	ds, next = s.DeliveriesByJob("job-1", "del-1", 2)
	eq(t, "DeliveriesByJob", ids(ds), []string{"del-2", "del-3"})
	eq(t, "DeliveriesByJob cursor", next, "del-3")
	eq(t, "DeliveriesByOccurrence", ids(s.DeliveriesByOccurrence("occ-1")), []string{"del-1", "del-2", "del-3", "del-5"})
	ds, _ = s.DeliveriesByEvent("evt-2", "", 0)
	eq(t, "DeliveriesByEvent(evt-2)", ids(ds), []string{"del-5"})
	ds, _ = s.DeliveriesByEndpoint("", "", 0)
	eq(t, "DeliveriesByEndpoint(\"\")", len(ds), 0) // del-4 has no endpoint and is not indexed
	// del-2 succeeded, so it is archived: retention prunes it there.
	eq(t, "TerminalDeliveries", len(s.TerminalDeliveries(math.MaxInt64, 0)), 0)

	// attempts
	eq(t, "Attempts(del-1)", len(s.Attempts("del-1")), 2)
	if as := s.Attempts("del-1"); as[0].Number != 1 || as[1].Number != 2 {
		t.Errorf("Attempts order = %+v", as)
	}
	if _, err := s.Attempt("del-2", 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Attempt err = %v", err)
	}

	// counts
	for table, want := range map[string]int{TableProjects: 3, TableTokens: 4, TableEndpoints: 3, TableJobs: 3,
		TableOccurrences: 5, TableEvents: 3, TableDeliveries: 5, TableAttempts: 3, "nope": 0} {
		eq(t, "Count("+table+")", s.Count(table), want)
	}
}

// TestEveryIndexQueried guards against an index nobody reads: each one named
// in the schema must appear in a State query exercised by TestQueries.
func TestEveryIndexHasAQuery(t *testing.T) {
	queried := map[string][]string{
		TableProjects:    {IndexID},
		TableTokens:      {IndexID, IndexHash, IndexProject},
		TableEndpoints:   {IndexID, IndexProject},
		TableJobs:        {IndexID, IndexProjectStatus, IndexNextFire, IndexIdempotency},
		TableOccurrences: {IndexID, IndexJobNumber, IndexIdentity, IndexJobStatus},
		TableEvents:      {IndexID, IndexProject, IndexDue, IndexIdempotency, IndexTerminal}, // Prune reads terminal
		TableDeliveries: {IndexID, IndexProjectStatus, IndexNodeDue, IndexNodeProjectDue, IndexEndpoint, IndexJob,
			IndexOccurrence, IndexEvent, IndexTerminal},
		TableBreakers:    {IndexID},
		TableAttempts:    {IndexID},
		TableIdempotency: {IndexID, IndexExpires}, // Prune reads expires
		TableLimits:      {IndexID},
		TableUsage:       {IndexID},
	}
	for _, td := range tableDefs {
		var have []string
		for name := range td.schema.Indexes {
			have = append(have, name)
		}
		sort.Strings(have)
		want := append([]string(nil), queried[td.name]...)
		sort.Strings(want)
		eq(t, td.name+" indexes", have, want)
	}
}

func TestDeliveriesMatching(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})), must(t)(ProjectCreateCommand(Project{Name: "p1"})),
		must(t)(ProjectCreateCommand(Project{Name: "q"})))
	// Ids interleave across statuses, so a project-wide list must merge the
	// per-status runs; "p1" shares a prefix with "p", and "job-10"/"ep-10"
	// with "job-1"/"ep-1", so every seek must stop at the end of its prefix.
	rows := []struct {
		id, project, status, job, endpoint string
		created                            Millis
	}{
		{"d01", "p", DeliveryDeadLetter, "job-1", "", 1000},
		{"d02", "p", DeliverySucceeded, "job-1", "ep-1", 2000},
		{"d03", "p", DeliveryDeadLetter, "job-2", "ep-1", 3000},
		{"d04", "p1", DeliveryDeadLetter, "job-10", "ep-10", 3500},
		{"d05", "p", DeliveryHeld, "", "ep-2", 4000},
		{"d06", "p", DeliveryPending, "job-1", "ep-2", 5000},
		{"d07", "q", DeliveryDeadLetter, "job-3", "ep-3", 5500},
		{"d08", "p", DeliveryDeadLetter, "job-1", "ep-1", 6000},
		{"d09", "p", DeliveryCancelled, "job-10", "", 7000},
	}
	for _, r := range rows {
		d := fullDelivery(r.id, r.project, "n1", r.status, 1, 2, 0)
		d.JobID, d.EndpointID, d.CreatedAt, d.EventID = r.job, r.endpoint, r.created, ""
		if r.job == "" {
			d.OccurrenceID, d.EventID = "", "evt-1"
		}
		h.ok(put(t, TableDeliveries, d))
	}
	s := h.f.State()
	cases := []struct {
		name  string
		f     DeliveryFilter
		after string
		limit int
		want  []string
		next  string
	}{
		{"project", DeliveryFilter{Project: "p"}, "", 0, []string{"d01", "d02", "d03", "d05", "d06", "d08", "d09"}, ""},
		{"project page 1", DeliveryFilter{Project: "p"}, "", 3, []string{"d01", "d02", "d03"}, "d03"},
		{"project page 2", DeliveryFilter{Project: "p"}, "d03", 3, []string{"d05", "d06", "d08"}, "d08"},
		{"project page 3", DeliveryFilter{Project: "p"}, "d08", 3, []string{"d09"}, ""},
		{"exact last page has no cursor", DeliveryFilter{Project: "p"}, "d06", 2, []string{"d08", "d09"}, ""},
		{"unknown project", DeliveryFilter{Project: "zz"}, "", 0, nil, ""},
		{"every project", DeliveryFilter{}, "d06", 0, []string{"d07", "d08", "d09"}, ""},
		{"status", DeliveryFilter{Project: "p", Status: DeliveryDeadLetter}, "", 0, []string{"d01", "d03", "d08"}, ""},
		{"status after", DeliveryFilter{Project: "p", Status: DeliveryDeadLetter}, "d01", 1, []string{"d03"}, "d03"},
		{"status in a prefix project", DeliveryFilter{Project: "p1", Status: DeliveryDeadLetter}, "", 0, []string{"d04"}, ""},
		{"job", DeliveryFilter{Project: "p", JobID: "job-1"}, "", 0, []string{"d01", "d02", "d06", "d08"}, ""},
		{"job after stops at its prefix", DeliveryFilter{Project: "p", JobID: "job-1"}, "d06", 0, []string{"d08"}, ""},
		{"job of another project", DeliveryFilter{Project: "p", JobID: "job-3"}, "", 0, nil, ""},
		{"job and status", DeliveryFilter{Project: "p", JobID: "job-1", Status: DeliveryDeadLetter}, "", 0, []string{"d01", "d08"}, ""},
		{"endpoint", DeliveryFilter{Project: "p", EndpointID: "ep-1"}, "d02", 0, []string{"d03", "d08"}, ""},
		{"endpoint and status", DeliveryFilter{Project: "p", EndpointID: "ep-2", Status: DeliveryHeld}, "", 0, []string{"d05"}, ""},
		{"created range", DeliveryFilter{Project: "p", CreatedFrom: 2000, CreatedTo: 6000}, "", 0, []string{"d02", "d03", "d05", "d06"}, ""},
		{"created from", DeliveryFilter{Project: "p", Status: DeliveryDeadLetter, CreatedFrom: 3000}, "", 0, []string{"d03", "d08"}, ""},
		{"created to", DeliveryFilter{Project: "p", CreatedTo: 2000}, "", 0, []string{"d01"}, ""},
	}
	for _, tt := range cases {
		got, next := s.DeliveriesMatching(tt.f, tt.after, tt.limit)
		if got == nil {
			got = []*Delivery{}
		}
		want := tt.want
		if want == nil {
			want = []string{}
		}
		eq(t, tt.name, ids(got), want)
		eq(t, tt.name+" cursor", next, tt.next)
	}
	// memdb's statuses: succeeded deliveries are archived.
	eq(t, "deliveryStatuses(p)", s.deliveryStatuses("p"),
		[]string{DeliveryCancelled, DeliveryDeadLetter, DeliveryHeld, DeliveryPending})
}

// Jobs merges the per-status runs: all of a project's jobs, in id order,
// paged with cursors, none of another project's.
func TestJobsListMergesStatuses(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})), must(t)(ProjectCreateCommand(Project{Name: "p2"})))
	statuses := []string{JobActive, JobCompleted, JobPaused, JobCancelled, JobArchived, JobActive, JobCompleted}
	var want []string
	for i, st := range statuses {
		id := fmt.Sprintf("job-%02d", i)
		want = append(want, id)
		h.ok(put(t, TableJobs, &Job{ID: id, Project: "p", Status: st}))
	}
	h.ok(put(t, TableJobs, &Job{ID: "job-99", Project: "p2", Status: JobActive}))
	s := h.f.State()
	var got []string
	after := ""
	for range 10 {
		page, next := s.Jobs("p", after, 3)
		for _, j := range page {
			got = append(got, j.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged jobs %v, want %v", got, want)
	}
	if all, next := s.Jobs("p", "", 0); len(all) != len(want) || next != "" {
		t.Fatalf("unpaged: %d jobs, next %q", len(all), next)
	}
	if exact, next := s.Jobs("p", "", len(want)); len(exact) != len(want) || next != "" {
		t.Fatalf("a page of exactly all jobs: %d, next %q (want no cursor)", len(exact), next)
	}
	res := h.apply(must(t)(ProjectDeleteCommand("p2")))
	checkErr(t, res.Err, ErrConflict, "still has jobs")
}
