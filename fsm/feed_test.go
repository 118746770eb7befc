package fsm

import (
	"testing"
	"time"
)

func TestFeedReportsChangesAndDropsLaggards(t *testing.T) {
	h := newHarness(t)
	h.ok(must(t)(ProjectCreateCommand(Project{Name: "p"})))
	sub, err := h.f.Subscribe(2)
	if err != nil {
		t.Fatal(err)
	}
	slow, _ := h.f.Subscribe(1)

	h.ok(put(t, TableJobs, &Job{ID: "j1", Project: "p", Status: JobActive}))
	h.ok(put(t, TableJobs, &Job{ID: "j1", Project: "p", Status: JobPaused}))
	next := func(s *Subscription) ChangeBatch {
		t.Helper()
		select {
		case b, ok := <-s.C:
			if !ok {
				t.Fatalf("subscription closed: %s", s.Reset())
			}
			return b
		case <-time.After(time.Second):
			t.Fatal("no batch")
		}
		return ChangeBatch{}
	}
	b := next(sub)
	if len(b.Changes) != 1 || b.Changes[0].Op != OpCreated || b.Changes[0].ID != "j1" || b.Changes[0].Project != "p" || b.Index != h.idx-1 {
		t.Fatalf("first batch %+v", b)
	}
	if b = next(sub); b.Changes[0].Op != OpUpdated || b.Changes[0].Object.(*Job).Status != JobPaused {
		t.Fatalf("second batch %+v", b)
	}
	// Tokens are not reported.
	h.ok(put(t, TableTokens, &Token{ID: "t1", Hash: "h"}))
	h.ok(must(t)(Encode(CmdDelete, Delete{Table: TableJobs, ID: "j1"})))
	if b = next(sub); len(b.Changes) != 1 || b.Changes[0].Op != OpDeleted || b.Changes[0].ID != "j1" {
		t.Fatalf("delete batch %+v", b)
	}

	// The slow subscriber's buffer of 1 overflowed on the second write.
	<-slow.C
	if _, ok := <-slow.C; ok || slow.Reset() == "" {
		t.Fatalf("a full subscriber was not dropped (reset %q)", slow.Reset())
	}

	// Restore drops everyone with a reason; Close is idempotent.
	if err := restore(h.f, snapshotOf(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sub.C; ok || sub.Reset() == "" {
		t.Fatal("restore did not reset the subscriber")
	}
	sub.Close()
	sub.Close()
	if h.f.feed.active() {
		t.Fatal("feed still active without subscribers")
	}
}
