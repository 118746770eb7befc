package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
)

func TestWriteThroughFollowerReadsEverywhere(t *testing.T) {
	tc := newTestCluster(t, 3)
	f := tc.follower()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := createProject(ctx, f.c, "alpha"); err != nil {
		t.Fatalf("create through follower: %v", err)
	}
	// Read-your-writes: the node that took the write has applied it already.
	if !hasProject(f.c, "alpha") {
		t.Fatal("follower that took the write cannot read it back")
	}
	for _, n := range tc.running() {
		eventually(t, time.Second, "replication to "+n.id, func() bool { return hasProject(n.c, "alpha") })
	}
	// A domain error travels back through forwarding as the same sentinel.
	if err := createProject(ctx, f.c, "alpha"); !errors.Is(err, fsm.ErrConflict) {
		t.Fatalf("duplicate create through follower: got %v, want ErrConflict", err)
	}
}

func TestReadBarrierOnFollower(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := createProject(ctx, leader.c, "beta"); err != nil {
		t.Fatal(err)
	}
	f := tc.follower()
	if err := f.c.ReadBarrier(ctx); err != nil {
		t.Fatalf("read barrier: %v", err)
	}
	if !hasProject(f.c, "beta") {
		t.Fatal("after ReadBarrier the follower must see every write acknowledged before it")
	}
}

func TestStatusAndReadiness(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	// Not ready until the initial state (the default project) exists.
	eventually(t, 3*time.Second, "leader waiting for the initial state", func() bool {
		ok, why := leader.c.Readiness()
		return !ok && strings.Contains(why, "initial state")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd, err := fsm.BootstrapCommand(fsm.MillisOf(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.c.Apply(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	for _, n := range tc.running() {
		eventually(t, 3*time.Second, n.id+" ready", func() bool { ok, _ := n.c.Readiness(); return ok })
		var st Status
		eventually(t, 3*time.Second, n.id+" sees 3 alive voters", func() bool {
			st = n.c.Status()
			if len(st.Nodes) != 3 {
				return false
			}
			for _, ns := range st.Nodes {
				if ns.Gossip != GossipAlive || ns.Raft == RaftNone {
					return false
				}
			}
			return true
		})
		if st.Leader == nil || st.Leader.ID != leader.id {
			t.Fatalf("%s: leader %+v, want %s", n.id, st.Leader, leader.id)
		}
		if st.NodeID != n.id || st.Raft.AppliedIndex == 0 || st.Raft.CommitIndex < st.Raft.AppliedIndex {
			t.Fatalf("%s: bad raft status %+v", n.id, st.Raft)
		}
	}
}

// TestLeaderKillKeepsAcknowledgedWrites kills the leader while writers run
// through every node, restarts it, and checks that every write that was
// acknowledged exists on every node.
func TestLeaderKillKeepsAcknowledgedWrites(t *testing.T) {
	tc := newTestCluster(t, 3)
	old := tc.waitLeader(5 * time.Second)

	var mu sync.Mutex
	acked := map[string]bool{}
	var seq atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var nodesMu sync.Mutex
	pick := func() *Cluster {
		nodesMu.Lock()
		defer nodesMu.Unlock()
		r := tc.running()
		return r[rand.IntN(len(r))].c
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, seq.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				err := createProject(ctx, pick(), name)
				cancel()
				if err == nil {
					mu.Lock()
					acked[name] = true
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	nodesMu.Lock()
	old.c.Kill()
	old.c = nil
	nodesMu.Unlock()
	killedAt := time.Now()

	newLeader := tc.waitLeader(5 * time.Second)
	if newLeader.id == old.id {
		t.Fatal("killed node is still leader")
	}
	t.Logf("new leader %s after %s", newLeader.id, time.Since(killedAt).Round(time.Millisecond))
	// Writes go on through the survivors.
	before := countAcked(&mu, acked)
	eventually(t, 5*time.Second, "writes after failover", func() bool { return countAcked(&mu, acked) > before+20 })

	nodesMu.Lock()
	old.start(t)
	nodesMu.Unlock()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged; the test did not exercise much", len(acked))
	}
	for _, n := range tc.running() {
		eventually(t, 10*time.Second, n.id+" converges", func() bool {
			for name := range acked {
				if !hasProject(n.c, name) {
					return false
				}
			}
			return true
		})
	}
	t.Logf("%d acknowledged writes present on all 3 nodes", len(acked))
}

func countAcked(mu *sync.Mutex, m map[string]bool) int {
	mu.Lock()
	defer mu.Unlock()
	return len(m)
}

func TestGracefulShutdownTransfersLeadershipAndLeaves(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := leader.c.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	leader.c = nil
	next := tc.waitLeader(5 * time.Second)
	t.Logf("leadership moved to %s in %s", next.id, time.Since(start).Round(time.Millisecond))
	// The node left gossip, so the new leader removes it from the voters.
	eventually(t, 5*time.Second, "left node removed from raft", func() bool {
		for _, ns := range next.c.Status().Nodes {
			if ns.ID == leader.id {
				return ns.Gossip == GossipLeft && ns.Raft == RaftNone
			}
		}
		return false
	})
	if err := createProject(ctx, next.c, "after-leave"); err != nil {
		t.Fatalf("write after graceful leave: %v", err)
	}
	// It comes back with its data and is made a voter again.
	leader.start(t)
	eventually(t, 10*time.Second, "rejoined as voter with the new write", func() bool {
		if !hasProject(leader.c, "after-leave") {
			return false
		}
		for _, ns := range next.c.Status().Nodes {
			if ns.ID == leader.id {
				return ns.Raft == RaftVoter && ns.Gossip == GossipAlive
			}
		}
		return false
	})
}

func TestTransferLeadershipAndRemovePeer(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	f := tc.follower()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Through the other follower, to a chosen node; when the call returns,
	// the node it went through knows a leader again.
	var other *testNode
	for _, n := range tc.running() {
		if n != leader && n != f {
			other = n
		}
	}
	if err := other.c.TransferLeadership(ctx, f.id); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if _, id := other.c.raft.LeaderWithID(); id == "" {
		t.Error("TransferLeadership returned before the node knew a leader")
	}
	eventually(t, 5*time.Second, f.id+" leads", func() bool { return f.c.IsLeader() })
	if err := f.c.TransferLeadership(ctx, "nope"); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("transfer to unknown node: %v", err)
	}
	// A live peer cannot be removed; a dead one can.
	if err := f.c.RemovePeer(ctx, leader.id); !errors.Is(err, fsm.ErrConflict) {
		t.Fatalf("removing a live peer: got %v, want ErrConflict", err)
	}
	leader.c.Kill()
	leader.c = nil
	eventually(t, 5*time.Second, "peer seen dead", func() bool {
		m, ok := f.c.members.member(leader.id)
		return ok && m.State == GossipDead
	})
	if err := f.c.RemovePeer(ctx, leader.id); err != nil {
		t.Fatalf("remove dead peer: %v", err)
	}
	if _, ok := f.c.server(leader.id); ok {
		t.Fatal("removed peer still in raft configuration")
	}
	if err := f.c.RemovePeer(ctx, leader.id); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("removing twice: got %v, want ErrNotFound", err)
	}
}

func TestFiveNodeClusterForms(t *testing.T) {
	if testing.Short() {
		t.Skip("5 nodes")
	}
	tc := newTestCluster(t, 5)
	leader := tc.waitLeader(10 * time.Second)
	eventually(t, 10*time.Second, "5 voters", func() bool {
		voters := 0
		for _, ns := range leader.c.Status().Nodes {
			if ns.Raft == RaftVoter || ns.Raft == RaftLeader {
				voters++
			}
		}
		return voters == 5
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := createProject(ctx, tc.follower().c, "five"); err != nil {
		t.Fatal(err)
	}
	for _, n := range tc.running() {
		eventually(t, time.Second, "replicated to "+n.id, func() bool { return hasProject(n.c, "five") })
	}
}

func TestFullClusterRestartKeepsState(t *testing.T) {
	tc := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		if err := createProject(ctx, tc.follower().c, fmt.Sprintf("p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range tc.nodes {
		n.c.Kill()
		n.c = nil
	}
	for _, n := range tc.nodes {
		n.start(t)
	}
	tc.waitLeader(10 * time.Second)
	for _, n := range tc.nodes {
		eventually(t, 5*time.Second, n.id+" has all projects", func() bool {
			for i := range 20 {
				if !hasProject(n.c, fmt.Sprintf("p%d", i)) {
					return false
				}
			}
			return true
		})
	}
}

// TestPeersJSONRecoversLostQuorum: two of three nodes are lost for good; the
// survivor cannot elect itself until peers.json names it alone.
func TestPeersJSONRecoversLostQuorum(t *testing.T) {
	tc := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := createProject(ctx, tc.follower().c, "survives"); err != nil {
		t.Fatal(err)
	}
	survivor := tc.nodes[0]
	eventually(t, 2*time.Second, "replicated to survivor", func() bool { return hasProject(survivor.c, "survives") })
	for _, n := range tc.nodes {
		n.c.Kill()
		n.c = nil
	}
	survivor.join = nil
	peers := fmt.Sprintf(`[{"id":%q,"address":%q,"non_voter":false}]`, survivor.id, survivor.raftAddr)
	if err := os.WriteFile(filepath.Join(survivor.dir, "raft", "peers.json"), []byte(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	survivor.start(t)
	eventually(t, 10*time.Second, "survivor leads alone", func() bool { return survivor.c.IsLeader() })
	if !hasProject(survivor.c, "survives") {
		t.Fatal("state lost in recovery")
	}
	if err := createProject(ctx, survivor.c, "after-recovery"); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	if _, err := os.Stat(filepath.Join(survivor.dir, "raft", "peers.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("peers.json must be deleted after recovery")
	}
}
