package cluster

import (
	"fmt"
	"sort"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
)

// Raft roles as shown by the status API.
const (
	RaftLeader   = "leader"
	RaftVoter    = "voter"
	RaftNonvoter = "nonvoter"
	RaftNone     = "none"
)

// NodeStatus is one node as this node sees it.
type NodeStatus struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"httpAddr"`
	RaftAddr string `json:"raftAddr"`
	Gossip   string `json:"gossip"`
	Raft     string `json:"raft"`
	Version  string `json:"version"`
}

// LeaderInfo identifies the current leader; empty when there is none.
type LeaderInfo struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"httpAddr"`
}

// RaftStatus holds this node's Raft indexes.
type RaftStatus struct {
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"lastIndex"`
	CommitIndex  uint64 `json:"commitIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
}

// Status is the cluster as this node sees it.
type Status struct {
	NodeID string       `json:"nodeId"`
	Leader *LeaderInfo  `json:"leader"`
	Nodes  []NodeStatus `json:"nodes"`
	Raft   RaftStatus   `json:"raft"`
}

// Status reports membership, roles and indexes.
func (c *Cluster) Status() Status {
	st := Status{NodeID: c.cfg.NodeID}
	leaderAddr, leaderID := c.raft.LeaderWithID()
	byID := map[string]*NodeStatus{}
	for _, m := range c.members.snapshot() {
		byID[m.ID] = &NodeStatus{ID: m.ID, HTTPAddr: m.HTTPAddr, RaftAddr: m.RaftAddr, Gossip: m.State, Raft: RaftNone, Version: m.Version}
	}
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			n, ok := byID[string(s.ID)]
			if !ok {
				n = &NodeStatus{ID: string(s.ID), RaftAddr: string(s.Address), Gossip: GossipUnknown}
				byID[n.ID] = n
			}
			switch {
			case s.ID == leaderID:
				n.Raft = RaftLeader
			case s.Suffrage == raft.Voter:
				n.Raft = RaftVoter
			default:
				n.Raft = RaftNonvoter
			}
		}
	}
	for _, n := range byID {
		st.Nodes = append(st.Nodes, *n)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].ID < st.Nodes[j].ID })
	if leaderAddr != "" {
		li := &LeaderInfo{ID: string(leaderID)}
		if n := byID[string(leaderID)]; n != nil {
			li.HTTPAddr = n.HTTPAddr
		}
		st.Leader = li
	}
	st.Raft = RaftStatus{
		State:        c.raft.State().String(),
		Term:         c.currentTerm(),
		LastIndex:    c.raft.LastIndex(),
		CommitIndex:  c.raft.CommitIndex(),
		AppliedIndex: c.raft.AppliedIndex(),
	}
	return st
}

func (c *Cluster) currentTerm() uint64 {
	var term uint64
	_, _ = fmt.Sscan(c.raft.Stats()["term"], &term)
	return term
}

// Readiness tells whether this node can serve fresh reads: it knows a leader,
// has heard from it recently, and has applied the log up to the commit index
// the leader last told it about. The reason says what is missing.
func (c *Cluster) Readiness() (bool, string) {
	select {
	case <-c.shutdownCh:
		return false, "node is shutting down"
	default:
	}
	state := c.raft.State()
	if state == raft.Shutdown {
		return false, "raft is shut down"
	}
	addr, id := c.raft.LeaderWithID()
	if addr == "" {
		return false, "no leader known (election in progress or quorum lost)"
	}
	if state != raft.Leader {
		if last := c.raft.LastContact(); !last.IsZero() {
			if since := time.Since(last); since > c.StaleContact() {
				return false, fmt.Sprintf("no contact with leader %s for %s", id, since.Round(time.Millisecond))
			}
		}
	}
	// Raft's own applied index: it counts the barrier and no-op entries that
	// never reach the FSM, so it can equal the commit index.
	commit, applied := c.raft.CommitIndex(), c.raft.AppliedIndex()
	if commit == 0 {
		// Every cluster commits its bootstrap configuration at index 1; a
		// node that has not heard of any commit has not caught up at all.
		return false, "waiting for the leader's commit index"
	}
	if applied < commit {
		return false, fmt.Sprintf("catching up: applied index %d of commit index %d", applied, commit)
	}
	// A new cluster is usable once its leader has written the initial state
	// (the default project): before that a caught-up follower would answer
	// "project not found" to the first client.
	if _, err := c.fsm.State().Project(fsm.DefaultProject); err != nil {
		return false, "waiting for the initial state (the default project)"
	}
	return true, ""
}

// staleContact is how long a follower may go without hearing from the leader
// before it stops calling itself ready: a few heartbeat periods.
// StaleContact is how long a follower may go without hearing from the
// leader and still count as in contact. The leader sends heartbeats ten times
// per heartbeat timeout, so two timeouts of silence is a real loss; the
// reassigner waits longer than this before moving a lost node's work.
func (c *Cluster) StaleContact() time.Duration {
	hb := c.cfg.HeartbeatTimeout
	if hb == 0 {
		hb = raft.DefaultConfig().HeartbeatTimeout
	}
	return 2 * hb
}

// InContact reports whether this node is the leader or has heard from the
// leader within a few heartbeats. A node that is cut off keeps its local
// state, but must not start deliveries from it: the leader may already have
// handed them to someone else.
func (c *Cluster) InContact() bool {
	switch c.raft.State() {
	case raft.Leader:
		return true
	case raft.Follower:
		last := c.raft.LastContact()
		return !last.IsZero() && time.Since(last) <= c.StaleContact()
	}
	return false
}
