package fsm

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"testing"
)

// archiveFixture fires occurrence o1 with n deliveries (d00, d01, …; odd ones
// to endpoint ep1) and returns their fence.
func archiveFixture(t *testing.T, n int) (*harness, uint64) {
	h, j := pipelineFixture(t)
	var dels []Delivery
	for i := range n {
		ep := ""
		if i%2 == 1 {
			ep = "ep1"
		}
		dels = append(dels, dlv(fmt.Sprintf("d%02d", i), "o1", ep))
	}
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *j, Occurrence: occ("o1", 1, "k1"), Deliveries: dels}}))
	return h, h.idx
}

func succeed(t *testing.T, h *harness, fence uint64, at Millis, ids ...string) {
	t.Helper()
	var rs []DeliveryResult
	for _, id := range ids {
		rs = append(rs, DeliveryResult{DeliveryID: id, Fence: fence, Status: DeliverySucceeded,
			Attempt: Attempt{Node: "n2", StatusCode: 200, ResponseSummary: "ok " + id, StartedAt: at - 5}})
	}
	h.ok(resultsCmd(t, at, rs...))
}

func deliveryIDs(ds []*Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// A succeeded delivery leaves memdb for the archive, with its attempts, and
// every read still finds it where it did before.
func TestSucceededDeliveryIsArchivedAndStillRead(t *testing.T) {
	h, fence := archiveFixture(t, 6)
	h.ok(resultsCmd(t, 1100, DeliveryResult{DeliveryID: "d01", Fence: fence, Status: DeliveryRetryScheduled,
		NextAttemptAt: 1200, LeaseUntil: 9000, Attempt: Attempt{StatusCode: 503, ResponseSummary: "busy"}}))
	before := h.f.State()
	succeed(t, h, fence, 1300, "d01", "d02", "d04")
	st := h.f.State()

	if obj, _ := st.Txn().First(TableDeliveries, IndexID, "d01"); obj != nil {
		t.Fatal("a succeeded delivery is still in memdb")
	}
	d, err := st.Delivery("d01")
	if err != nil || d.Status != DeliverySucceeded || d.Attempts != 2 || d.CompletedAt != 1300 || d.EndpointID != "ep1" {
		t.Fatalf("archived d01 = %+v, %v", d, err)
	}
	atts := st.Attempts("d01")
	if len(atts) != 2 || atts[0].StatusCode != 503 || atts[1].StatusCode != 200 || atts[1].ResponseSummary != "ok d01" {
		t.Fatalf("archived attempts = %+v", atts)
	}
	if a, err := st.Attempt("d01", 2); err != nil || a.Number != 2 {
		t.Fatalf("Attempt(d01, 2) = %+v, %v", a, err)
	}
	// A view taken before the results still sees the old state.
	if d, _ := before.Delivery("d01"); d.Status != DeliveryRetryScheduled {
		t.Fatalf("an older view sees d01 %s", d.Status)
	}
	if got := before.Count(TableDeliveries); got != 6 {
		t.Fatalf("older view counts %d deliveries, want 6", got)
	}
	if got, want := st.Count(TableDeliveries), 6; got != want {
		t.Fatalf("Count(deliveries) = %d, want %d", got, want)
	}
	if got, want := st.Count(TableAttempts), 4; got != want {
		t.Fatalf("Count(attempts) = %d, want %d", got, want)
	}

	// Lists merge memdb and the archive in id order, page by page.
	all := []string{"d00", "d01", "d02", "d03", "d04", "d05"}
	if got := deliveryIDs(st.DeliveriesByOccurrence("o1")); !slices.Equal(got, all) {
		t.Fatalf("DeliveriesByOccurrence = %v", got)
	}
	if got := deliveryIDs(st.UnsettledDeliveriesByOccurrence("o1")); !slices.Equal(got, []string{"d00", "d03", "d05"}) {
		t.Fatalf("UnsettledDeliveriesByOccurrence = %v", got)
	}
	var paged []string
	for after := ""; ; {
		page, next := st.DeliveriesMatching(DeliveryFilter{Project: "p"}, after, 2)
		paged = append(paged, deliveryIDs(page)...)
		if next == "" {
			break
		}
		after = next
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("paged project listing = %v", paged)
	}
	if got, _ := st.DeliveriesByStatus("p", DeliverySucceeded, "", 0); !slices.Equal(deliveryIDs(got), []string{"d01", "d02", "d04"}) {
		t.Fatalf("succeeded = %v", deliveryIDs(got))
	}
	if got, _ := st.DeliveriesByStatus("p", DeliveryPending, "", 0); !slices.Equal(deliveryIDs(got), []string{"d00", "d03", "d05"}) {
		t.Fatalf("pending = %v", deliveryIDs(got))
	}
	if got, next := st.DeliveriesByEndpoint("ep1", "d01", 1); !slices.Equal(deliveryIDs(got), []string{"d03"}) || next != "d03" {
		t.Fatalf("by endpoint after d01 = %v, next %q", deliveryIDs(got), next)
	}
	if got, _ := st.DeliveriesByJob("j1", "", 0); len(got) != 6 {
		t.Fatalf("by job = %v", deliveryIDs(got))
	}
	if got, _ := st.DeliveriesMatching(DeliveryFilter{Project: "other"}, "", 0); len(got) != 0 {
		t.Fatalf("another project sees %v", deliveryIDs(got))
	}

	// The same delivery cannot be created again.
	cur, _ := st.Job("j1")
	res := h.apply(fireCmd(t, 2000, []JobFire{{Job: *cur, Occurrence: occ("o2", 2, "k2"), Deliveries: []Delivery{dlv("d01", "o2", "")}}}))
	checkErr(t, res.Results[0].Err, ErrConflict, "already exists")
}

// Retention removes archived deliveries at its index; older views keep
// them. Pages and chunks that hold only removed entries are released without
// copying anything, and views taken before go on reading their own tables.
func TestArchivePruneReleasesPages(t *testing.T) {
	n := 3*archPage + 500
	h, _ := archiveFixture(t, 0)
	var dels []Delivery
	for i := range n {
		// No occurrence: each result would otherwise read all of its
		// occurrence's unfinished deliveries.
		dels = append(dels, dlv(fmt.Sprintf("x%05d", i), "", ""))
	}
	cur, _ := h.f.State().Job("j1")
	h.ok(fireCmd(t, 1500, []JobFire{{Job: *cur, Deliveries: dels}}))
	fence := h.idx
	early := n - 400 // the last 400 finish after the cut-off
	for i := 0; i < early; i += 500 {
		var batch []string
		for k := i; k < min(early, i+500); k++ {
			batch = append(batch, fmt.Sprintf("x%05d", k))
		}
		succeed(t, h, fence, 2000, batch...)
	}
	var late []string
	for k := early; k < n; k++ {
		late = append(late, fmt.Sprintf("x%05d", k))
	}
	succeed(t, h, fence, 9000, late...)
	old := h.f.State()
	h.ok(must(t)(Encode(CmdPrune, Prune{Before: 5000, Limit: 10})))
	st := h.f.State()
	if st.arch.gen != old.arch.gen {
		t.Fatal("pruning from the front rebuilt the archive instead of releasing pages")
	}
	for p := 0; p < 3; p++ {
		if st.arch.pages[p] != nil {
			t.Fatalf("page %d, all removed, was not released", p)
		}
		if old.arch.pages[p] == nil {
			t.Fatalf("the view before pruning lost page %d", p)
		}
	}
	if st.arch.chunks[0] != nil {
		t.Fatal("chunk 0, all removed, was not released")
	}
	if got := st.Count(TableDeliveries); got != 400 {
		t.Fatalf("%d deliveries left after pruning, want 400", got)
	}
	if got := old.Count(TableDeliveries); got != n {
		t.Fatalf("the view before pruning counts %d, want %d", got, n)
	}
	if got, _ := old.DeliveriesByStatus("p", DeliverySucceeded, "", 0); len(got) != n {
		t.Fatalf("the view before pruning lists %d, want %d", len(got), n)
	}
	if _, err := st.Delivery("x00000"); err == nil {
		t.Fatal("x00000 survived pruning")
	}
	last := fmt.Sprintf("x%05d", n-1)
	if d, err := st.Delivery(last); err != nil || d.CompletedAt != 9000 {
		t.Fatalf("%s after pruning = %+v, %v", last, d, err)
	}
	if got := st.Attempts(last); len(got) != 1 || got[0].ResponseSummary != "ok "+last {
		t.Fatalf("attempts of %s after pruning = %+v", last, got)
	}
	page, next := st.DeliveriesMatching(DeliveryFilter{Project: "p", Status: DeliverySucceeded}, "", 3)
	if len(page) != 3 || page[0].ID != fmt.Sprintf("x%05d", early) || next != page[2].ID {
		t.Fatalf("first page after pruning = %v, next %q", deliveryIDs(page), next)
	}
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, st); err != nil {
		t.Fatal(err)
	}
	fresh := New(h.f.logger)
	if err := fresh.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	sameState(t, fresh.State(), st)
}

// When a live entry keeps removed ones from being released (an occurrence
// whose delivery is held, say), the archive is rebuilt once the removed
// entries outnumber the live ones, and views taken before keep theirs.
func TestArchiveCompactsPinnedPages(t *testing.T) {
	n := archiveCompactMin + archPage
	h, j := pipelineFixture(t)
	// o0 is marked missed by the next fire while its delivery still runs:
	// archived first, it stays while that delivery is unfinished and pins
	// every page behind it.
	h.ok(fireCmd(t, 900, []JobFire{{Job: *j, Occurrence: occ("o0", 1, "k0"), Deliveries: []Delivery{dlv("busy", "o0", "")}}}))
	var dels []Delivery
	for i := range n {
		dels = append(dels, dlv(fmt.Sprintf("x%05d", i), "", ""))
	}
	cur, _ := h.f.State().Job("j1")
	h.ok(fireCmd(t, 1000, []JobFire{{Job: *cur, Occurrence: occ("o1", 2, "k1"), Missed: []string{"o0"}, Deliveries: dels}}))
	fence := h.idx
	for i := 0; i < n; i += 1000 {
		var batch []string
		for k := i; k < min(n, i+1000); k++ {
			batch = append(batch, fmt.Sprintf("x%05d", k))
		}
		succeed(t, h, fence, 2000, batch...)
	}
	old := h.f.State()
	h.ok(must(t)(Encode(CmdPrune, Prune{Before: 5000, Limit: 10})))
	st := h.f.State()
	if _, err := st.Occurrence("o0"); err != nil {
		t.Fatalf("o0, pinned by its unfinished delivery, was pruned: %v", err)
	}
	if st.arch.gen == old.arch.gen {
		t.Fatal("removed entries outnumber live ones behind a pinned entry, yet the archive was not rebuilt")
	}
	if got := old.Count(TableDeliveries); got < n {
		t.Fatalf("the view before pruning counts %d deliveries", got)
	}
	if _, err := st.Delivery("x00000"); err == nil {
		t.Fatal("x00000 survived pruning")
	}
	if o, err := st.OccurrenceByIdentity("j1", "k0"); err != nil || o.ID != "o0" {
		t.Fatalf("o0 after rebuilding = %+v, %v", o, err)
	}
}

// With every id hashing alike, lookups and lists still return exactly the
// right rows: a hash only narrows the search, the record decides.
func TestArchiveHashCollisions(t *testing.T) {
	h, fence := archiveFixture(t, 6)
	h.f.store.Load().arch.hashOf = func(string) uint64 { return 42 }
	succeed(t, h, fence, 1300, "d00", "d01", "d02", "d03")
	st := h.f.State()
	for _, id := range []string{"d00", "d01", "d02", "d03"} {
		if d, err := st.Delivery(id); err != nil || d.ID != id {
			t.Fatalf("Delivery(%s) = %+v, %v", id, d, err)
		}
	}
	if _, err := st.Delivery("zz"); err == nil {
		t.Fatal("an unknown id was found")
	}
	if got, _ := st.DeliveriesByEndpoint("ep1", "", 0); !slices.Equal(deliveryIDs(got), []string{"d01", "d03", "d05"}) {
		t.Fatalf("by endpoint = %v", deliveryIDs(got))
	}
}

// A generic write naming an archived delivery or attempt (an endpoint's
// deletion does that) works as it would on memdb.
func TestWritesToArchivedDeliveries(t *testing.T) {
	h, fence := archiveFixture(t, 2)
	succeed(t, h, fence, 1300, "d00", "d01")

	res := h.apply(must(t)(PutCommand(TableDeliveries, &Delivery{ID: "d00", Project: "p", Status: DeliveryPending}, PutOptions{IfAbsent: true})))
	checkErr(t, res.Err, ErrConflict, "already exists")

	h.ok(must(t)(DeleteCommand(TableAttempts, AttemptID("d01", 1), 0)))
	st := h.f.State()
	if d, err := st.Delivery("d01"); err != nil || d.Status != DeliverySucceeded {
		t.Fatalf("d01 after deleting its attempt = %+v, %v", d, err)
	}
	if got := st.Attempts("d01"); len(got) != 0 {
		t.Fatalf("attempts left: %+v", got)
	}
	h.ok(must(t)(DeleteCommand(TableDeliveries, "d01", 0)))
	// Deleting a delivery leaves its attempts, as it always has in memdb
	// (the API deletes them first): d00's comes back out of the archive.
	h.ok(must(t)(DeleteCommand(TableDeliveries, "d00", 0)))
	st = h.f.State()
	if a, err := st.Attempt("d00", 1); err != nil || a.ResponseSummary != "ok d00" {
		t.Fatalf("d00's attempt after deleting d00 = %+v, %v", a, err)
	}
	h.ok(must(t)(DeleteCommand(TableAttempts, AttemptID("d00", 1), 0)))
	st = h.f.State()
	if st.Count(TableDeliveries) != 0 || st.Count(TableAttempts) != 0 {
		t.Fatalf("left: %d deliveries, %d attempts", st.Count(TableDeliveries), st.Count(TableAttempts))
	}
	res = h.apply(must(t)(DeleteCommand(TableDeliveries, "d00", 0)))
	checkErr(t, res.Err, ErrNotFound, "")
}

// A snapshot writes archived deliveries as ordinary delivery and attempt
// records (so an older node reads them) and a restore archives them again.
func TestArchiveSnapshotRoundTrip(t *testing.T) {
	h, fence := archiveFixture(t, 4)
	succeed(t, h, fence, 1300, "d01", "d02")
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, h.f.State()); err != nil {
		t.Fatal(err)
	}
	fresh := New(h.f.logger)
	if err := fresh.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	sameState(t, fresh.State(), h.f.State())
	st := fresh.State()
	if obj, _ := st.Txn().First(TableDeliveries, IndexID, "d01"); obj != nil {
		t.Fatal("a restored succeeded delivery went into memdb")
	}
	if got := st.Attempts("d02"); len(got) != 1 || got[0].ResponseSummary != "ok d02" {
		t.Fatalf("restored attempts of d02 = %+v", got)
	}
	// Applying on after the restore agrees with the original.
	succeed(t, h, fence, 1400, "d03")
	fh := &harness{t: t, f: fresh, idx: h.idx - 1}
	succeed(t, fh, fence, 1400, "d03")
	sameState(t, fresh.State(), h.f.State())
}

// The change feed reports a delivery moving to the archive as the update it
// is, not as a deletion.
func TestFeedReportsArchivedDeliveryAsUpdate(t *testing.T) {
	h, fence := archiveFixture(t, 1)
	sub, err := h.f.Subscribe(8)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	succeed(t, h, fence, 1300, "d00")
	b := <-sub.C
	var got *Change
	for i := range b.Changes {
		if b.Changes[i].Table == TableDeliveries {
			got = &b.Changes[i]
		}
	}
	if got == nil || got.Op != OpUpdated || got.ID != "d00" || got.Object.(*Delivery).Status != DeliverySucceeded {
		t.Fatalf("feed change = %+v", got)
	}
}

// A finished occurrence is archived and still found by id, number and
// identity key; its slot and number stay taken, and listings merge it with
// the pending ones in order. With every key hashing alike the answers are
// the same.
func TestFinishedOccurrencesAreArchived(t *testing.T) {
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprintf("collide=%v", collide), func(t *testing.T) {
			h, _ := pipelineFixture(t)
			if collide {
				h.f.store.Load().arch.hashOf = func(string) uint64 { return 7 }
			}
			fire := func(at Millis, n int64, missed ...string) {
				t.Helper()
				cur, _ := h.f.State().Job("j1")
				id := fmt.Sprintf("o%d", n)
				h.ok(fireCmd(t, at, []JobFire{{Job: *cur, Occurrence: occ(id, n, fmt.Sprintf("k%d", n)),
					Missed: missed, Deliveries: []Delivery{dlv("d"+id, id, "")}}}))
			}
			fire(1000, 1)
			succeed(t, h, h.idx, 1100, "do1") // o1 completes
			fire(2000, 2)
			fire(3000, 3, "o2") // o2 missed
			st := h.f.State()
			for _, id := range []string{"o1", "o2"} {
				if obj, _ := st.Txn().First(TableOccurrences, IndexID, id); obj != nil {
					t.Fatalf("finished %s is still in memdb", id)
				}
			}
			if o, err := st.Occurrence("o1"); err != nil || o.Status != OccurrenceCompleted {
				t.Fatalf("o1 = %+v, %v", o, err)
			}
			if o, err := st.OccurrenceByNumber("j1", 2); err != nil || o.ID != "o2" || o.Status != OccurrenceMissed {
				t.Fatalf("number 2 = %+v, %v", o, err)
			}
			if o, err := st.OccurrenceByIdentity("j1", "k1"); err != nil || o.ID != "o1" {
				t.Fatalf("identity k1 = %+v, %v", o, err)
			}
			if _, err := st.OccurrenceByNumber("j1", 9); err == nil {
				t.Fatal("number 9 found")
			}
			os, next := st.OccurrencesByJob("j1", 0, 2)
			if got := occIDs(os); !slices.Equal(got, []string{"o1", "o2"}) || next != 2 {
				t.Fatalf("page 1 = %v next %d", got, next)
			}
			os, next = st.OccurrencesByJob("j1", next, 2)
			if got := occIDs(os); !slices.Equal(got, []string{"o3"}) || next != 0 {
				t.Fatalf("page 2 = %v next %d", got, next)
			}
			os, _ = st.OccurrencesByStatus("j1", OccurrenceMissed, "", 0)
			if got := occIDs(os); !slices.Equal(got, []string{"o2"}) {
				t.Fatalf("missed = %v", got)
			}
			if got := st.Count(TableOccurrences); got != 3 {
				t.Fatalf("Count(occurrences) = %d", got)
			}

			// The slot and the number of an archived occurrence stay taken.
			cur, _ := st.Job("j1")
			res := h.apply(fireCmd(t, 4000, []JobFire{{Job: *cur, Occurrence: occ("o9", 9, "k1")}}))
			checkErr(t, res.Results[0].Err, ErrConflict, "slot")
			res = h.apply(fireCmd(t, 4000, []JobFire{{Job: *cur, Occurrence: occ("o9", 2, "k9")}}))
			checkErr(t, res.Results[0].Err, ErrConflict, "number")
			res = h.apply(put(t, TableOccurrences, occ("o8", 1, "k8")))
			checkErr(t, res.Err, ErrConflict, "number")
			// Completing a finished occurrence is refused as before.
			res = h.apply(must(t)(OccurrenceControlCommand(OccurrenceControl{At: 5000, Action: ActionComplete, IDs: []string{"o1"}, Project: "p"})))
			checkErr(t, res.Results[0].Err, ErrConflict, "already completed")

			// A generic Put of a finished occurrence lands in the archive too.
			o4 := occ("o4", 4, "k4")
			o4.Status, o4.CompletedAt = OccurrenceSkipped, 4500
			h.ok(put(t, TableOccurrences, o4))
			if obj, _ := h.f.State().Txn().First(TableOccurrences, IndexID, "o4"); obj != nil {
				t.Fatal("a finished occurrence put through Put stayed in memdb")
			}
			if o, err := h.f.State().Occurrence("o4"); err != nil || o.Status != OccurrenceSkipped {
				t.Fatalf("o4 = %+v, %v", o, err)
			}
		})
	}
}

func occIDs(os []*Occurrence) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.ID)
	}
	return out
}
