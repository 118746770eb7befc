package dispatch

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
)

// The leader's reassignment loop. A delivery moves to another node when its
// node has not been alive in gossip (dead, or left) for longer than a node
// keeps acting without contact (so a node that is merely cut off has
// stopped starting calls before its work moves), when its lease has
// passed (the node is alive but did not report: stuck, paused, cut off), and,
// while the leader has followers, when it waits on the leader for a later
// retry (the leader keeps its time for Raft). The move is a CmdAssign with a
// new fence, so whatever the old node still reports is refused; it does not
// use up an attempt.

// Reassigner settings.
const (
	reassignEvery = time.Second
	// leaseSkew is added to a lease before it counts as expired, to absorb
	// clock differences between the leader and the node holding it.
	leaseSkew = 2 * time.Second
	// leaderHandOff: a delivery on the leader is moved to a follower only if
	// it is not due within this time (so it is surely not running).
	leaderHandOff  = 5 * time.Second
	maxReassignRun = 1000
)

// LeaderCluster is what the reassigner needs from the replicated core.
type LeaderCluster interface {
	NodeID() string
	FSM() *fsm.FSM
	Apply(ctx context.Context, cmd []byte) (*fsm.Result, error)
	DeliveryNodes() []string
	Alive(id string) bool
	// StaleContact is how long a follower that hears nothing from the
	// leader goes on starting deliveries (see NodeCluster.InContact).
	StaleContact() time.Duration
}

// Reassigner is a cluster.LeaderHook.
type Reassigner struct {
	c      LeaderCluster
	now    func() time.Time
	logger *slog.Logger

	down map[string]time.Time // node → when a pass first saw it not alive (Pass runs in one goroutine)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewReassigner returns a stopped reassigner (now nil = time.Now).
func NewReassigner(c LeaderCluster, now func() time.Time, logger *slog.Logger) *Reassigner {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Reassigner{c: c, now: now, logger: logger.With("component", "reassigner"), down: map[string]time.Time{}}
}

// EstablishLeadership starts the loop.
func (r *Reassigner) EstablishLeadership(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.run(ctx, r.done)
	return nil
}

// RevokeLeadership stops the loop and waits for it.
func (r *Reassigner) RevokeLeadership() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (r *Reassigner) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(reassignEvery)
	defer t.Stop()
	for {
		r.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass plans and applies one round of reassignments; it returns how many
// deliveries were moved.
func (r *Reassigner) Pass(ctx context.Context) int {
	st := r.c.FSM().State()
	as := r.plan(st, r.now())
	if len(as) == 0 {
		return 0
	}
	cmd, err := fsm.Encode(fsm.CmdAssign, &fsm.Assign{At: fsm.MillisOf(r.now()), Assignments: as})
	if err != nil {
		r.logger.Error("encode assign", "err", err)
		return 0
	}
	res, err := r.c.Apply(ctx, cmd)
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Warn("reassignment not committed; trying again", "deliveries", len(as), "err", err)
		}
		return 0
	}
	moved := 0
	for _, x := range res.Results {
		if x.Err == nil {
			moved++
		}
	}
	r.logger.Info("deliveries reassigned", "moved", moved, "planned", len(as))
	return moved
}

func (r *Reassigner) plan(st *fsm.State, now time.Time) []fsm.Assignment {
	nodes := r.c.DeliveryNodes()
	leader := r.c.NodeID()
	leaderDelivers := len(nodes) == 1 && nodes[0] == leader
	seen := map[string]bool{}
	var out []fsm.Assignment
	add := func(d *fsm.Delivery, why string) {
		if seen[d.ID] || len(out) >= maxReassignRun {
			return
		}
		seen[d.ID] = true
		due := max(d.NextAttemptAt, fsm.MillisOf(now))
		// A delivery held back by its target's open breaker is next tried
		// when the breaker half-opens, on whichever node gets it.
		if b := st.Breaker(st.TargetKey(d)); b.StateAt(fsm.MillisOf(now)) == fsm.BreakerOpen {
			due = max(due, b.Until)
		}
		// Never back to the node that let it lapse when another can take it:
		// hashing alone would pick that node again, lease after lease.
		candidates := nodes
		if len(nodes) > 1 && slices.Contains(nodes, d.AssignedNode) {
			candidates = slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == d.AssignedNode })
		}
		a := fsm.Assignment{
			DeliveryID: d.ID, IfFence: d.Fence, Node: cluster.Place(d.ID, candidates),
			LeaseUntil: fsm.LeaseUntil(due, st.TargetTimeout(d)),
		}
		if d.NextAttemptAt < due {
			a.NextAttemptAt = due
		}
		r.logger.Debug("reassigning", "delivery_id", d.ID, "from", d.AssignedNode, "to", a.Node, "why", why)
		out = append(out, a)
	}
	// A node is given up on only once it has been down for longer than it
	// would itself go on without contact, plus the clock skew margin: a
	// node that is cut off, not dead, has stopped starting calls by then.
	grace := r.c.StaleContact() + leaseSkew
	for node := range r.down {
		if r.c.Alive(node) {
			delete(r.down, node)
		}
	}
	for _, node := range st.AssignedNodes() {
		switch {
		case !r.c.Alive(node):
			since, ok := r.down[node]
			if !ok {
				r.down[node] = now
				continue
			}
			if now.Sub(since) < grace {
				continue
			}
			for _, d := range st.DeliveriesByNode(node) {
				add(d, "node not alive")
			}
		case node == leader && !leaderDelivers:
			for _, d := range st.DeliveriesByNode(node) {
				if d.NextAttemptAt.Time().After(now.Add(leaderHandOff)) {
					add(d, "leader has followers")
				}
			}
		}
	}
	for _, d := range st.ExpiredLeases(fsm.MillisOf(now.Add(-leaseSkew)), maxReassignRun) {
		add(d, "lease expired")
	}
	return out
}
