package dispatch

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
)

type fakeLeader struct {
	f     *fsm.FSM
	index uint64
	nodes []string
	alive map[string]bool
}

func (c *fakeLeader) NodeID() string          { return "n1" }
func (c *fakeLeader) FSM() *fsm.FSM           { return c.f }
func (c *fakeLeader) DeliveryNodes() []string { return c.nodes }
func (c *fakeLeader) Alive(id string) bool    { return c.alive[id] }
func (c *fakeLeader) StaleContact() time.Duration {
	return 2 * time.Second
}
func (c *fakeLeader) apply(t *testing.T, cmd []byte) {
	t.Helper()
	if _, err := c.Apply(t.Context(), cmd); err != nil {
		t.Fatal(err)
	}
}
func (c *fakeLeader) Apply(_ context.Context, cmd []byte) (*fsm.Result, error) {
	c.index++
	res := c.f.Apply(&raft.Log{Index: c.index, Term: 1, Type: raft.LogCommand, Data: cmd}).(*fsm.Result)
	return res, res.Err
}

func TestReassignerMovesStrandedDeliveries(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := fsm.MillisOf(now)
	c := &fakeLeader{f: fsm.New(slog.New(slog.NewTextHandler(io.Discard, nil))),
		nodes: []string{"n2", "n3"}, alive: map[string]bool{"n1": true, "n2": true, "n3": true}}
	pc, _ := fsm.ProjectCreateCommand(fsm.Project{Name: "p"})
	c.apply(t, pc)
	c.apply(t, putCmd(t, fsm.TableJobs, &fsm.Job{ID: "j", Project: "p", Status: fsm.JobActive, CallbackURL: "https://x.example", TimeoutMs: 5000}))
	c.apply(t, putCmd(t, fsm.TableOccurrences, &fsm.Occurrence{ID: "o", JobID: "j", Project: "p", Number: 1, Status: fsm.OccurrencePending}))
	dl := func(id, node string, next, lease fsm.Millis) fsm.Delivery {
		return fsm.Delivery{ID: id, Project: "p", JobID: "j", OccurrenceID: "o", Status: fsm.DeliveryPending, AssignedNode: node,
			NextAttemptAt: next, LeaseUntil: lease, MaxAttempts: 3}
	}
	job, _ := c.f.State().Job("j")
	fire, _ := fsm.Encode(fsm.CmdFire, &fsm.Fire{At: at, Jobs: []fsm.JobFire{{Job: *job, Deliveries: []fsm.Delivery{
		dl("on-dead", "n4", at, at+60_000),              // n4 is gone from gossip
		dl("expired", "n2", at-40_000, at-3_000),        // n2 alive but silent past its lease (+skew)
		dl("fresh", "n2", at, at+40_000),                // fine
		dl("leader-later", "n1", at+60_000, at+100_000), // waits on the leader for a retry
		dl("leader-now", "n1", at, at+40_000),           // may be running on the leader: stays
		dl("skew", "n3", at-40_000, at-1_000),           // lease passed by less than the skew margin
	}}}})
	c.apply(t, fire)

	clock := now
	r := NewReassigner(c, func() time.Time { return clock }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if moved := r.Pass(t.Context()); moved != 2 {
		t.Fatalf("moved %d deliveries, want 2 (expired, leader-later); on-dead waits until n4 has been down for the grace", moved)
	}
	st := c.f.State()
	for id, wantMoved := range map[string]bool{"on-dead": false, "expired": true, "leader-later": true, "fresh": false, "leader-now": false, "skew": false} {
		d, _ := st.Delivery(id)
		moved := d.Fence != 4 // the fire was index 4
		if moved != wantMoved {
			t.Errorf("%s: moved=%v, want %v (node %s, fence %d)", id, moved, wantMoved, d.AssignedNode, d.Fence)
			continue
		}
		if !moved {
			continue
		}
		if d.AssignedNode != "n2" && d.AssignedNode != "n3" {
			t.Errorf("%s went to %s, not a live follower", id, d.AssignedNode)
		}
		if d.Attempts != 0 {
			t.Errorf("%s: a reassignment used up an attempt", id)
		}
	}
	exp, _ := st.Delivery("expired")
	if exp.NextAttemptAt != at || exp.LeaseUntil != fsm.LeaseUntil(at, 5*time.Second) {
		t.Errorf("expired delivery: due %v lease %v; want due now with a fresh lease", exp.NextAttemptAt.Time(), exp.LeaseUntil.Time())
	}
	later, _ := st.Delivery("leader-later")
	if later.NextAttemptAt != at+60_000 {
		t.Error("moving a waiting retry changed its due time")
	}
	if again := r.Pass(t.Context()); again != 0 {
		t.Errorf("a second pass moved %d more", again)
	}

	// Once n4 has been down for longer than a cut-off node goes on without
	// contact (2 s) plus the skew margin, its work moves.
	clock = now.Add(4*time.Second - time.Millisecond)
	r.Pass(t.Context()) // may move "skew", whose lease has passed by now
	if d, _ := c.f.State().Delivery("on-dead"); d.AssignedNode != "n4" {
		t.Fatalf("on-dead moved to %s before the grace ended", d.AssignedNode)
	}
	clock = now.Add(4 * time.Second)
	r.Pass(t.Context())
	if d, _ := c.f.State().Delivery("on-dead"); d.AssignedNode != "n2" && d.AssignedNode != "n3" {
		t.Errorf("on-dead is on %s after the grace, want a live follower", d.AssignedNode)
	}
}
