package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chime-sched/chime/chimetest/loopback"
	"github.com/chime-sched/chime/fsm"
)

// testNode is one in-process node with its own ports and data dir, so it can
// be killed and restarted exactly like a process.
type testNode struct {
	id                   string
	dir                  string
	raftAddr, gossipAddr string
	key                  string
	expect               int
	join                 []string
	c                    *Cluster
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("CHIME_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (n *testNode) start(t *testing.T) {
	t.Helper()
	c, err := New(Config{
		NodeID: n.id, DataDir: n.dir,
		RaftAddr: n.raftAddr, GossipAddr: n.gossipAddr, HTTPAddr: "127.0.0.1:0",
		Join: n.join, BootstrapExpect: n.expect, ClusterName: "test", ClusterKey: n.key, Version: "test",
		Logger: testLogger(t).With("node_id", n.id), FSM: fsm.New(testLogger(t)),
		ApplyTimeout: 5 * time.Second, ReconcileInterval: 300 * time.Millisecond,
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		GossipInterval: 50 * time.Millisecond, SuspicionMult: 2,
	})
	if err != nil {
		t.Fatalf("start %s: %v", n.id, err)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("start %s: %v", n.id, err)
	}
	n.c = c
}

type testCluster struct {
	t     *testing.T
	nodes []*testNode
}

// newTestCluster starts size nodes that bootstrap together, and stops every
// one of them when the test ends.
func newTestCluster(t *testing.T, size int) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	for i := range size {
		tc.nodes = append(tc.nodes, &testNode{
			id:         fmt.Sprintf("n%d", i+1),
			dir:        t.TempDir(),
			raftAddr:   fmt.Sprintf("127.0.0.1:%d", loopback.FreePort(t)),
			gossipAddr: fmt.Sprintf("127.0.0.1:%d", loopback.FreePort(t)),
			key:        "test-key",
			expect:     size,
		})
	}
	// Like a real deployment, every node lists the others to join, so any
	// of them can restart and find the cluster again.
	for _, n := range tc.nodes {
		for _, o := range tc.nodes {
			if o != n {
				n.join = append(n.join, o.gossipAddr)
			}
		}
		n.start(t)
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range tc.nodes {
			if n.c != nil {
				wg.Add(1)
				go func(c *Cluster) { defer wg.Done(); c.Kill() }(n.c)
			}
		}
		wg.Wait()
	})
	tc.waitLeader(10 * time.Second)
	return tc
}

func (tc *testCluster) running() []*testNode {
	var out []*testNode
	for _, n := range tc.nodes {
		if n.c != nil {
			out = append(out, n)
		}
	}
	return out
}

// waitLeader waits until every running node agrees on one leader and returns it.
func (tc *testCluster) waitLeader(timeout time.Duration) *testNode {
	tc.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := tc.agreedLeader(); l != nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatalf("no agreed leader within %s", timeout)
	return nil
}

func (tc *testCluster) agreedLeader() *testNode {
	var leader *testNode
	for _, n := range tc.running() {
		if n.c.IsLeader() {
			leader = n
		}
	}
	if leader == nil {
		return nil
	}
	for _, n := range tc.running() {
		if _, id := n.c.raft.LeaderWithID(); string(id) != leader.id {
			return nil
		}
	}
	return leader
}

func (tc *testCluster) byID(id string) *testNode {
	for _, n := range tc.nodes {
		if n.id == id {
			return n
		}
	}
	return &testNode{}
}

func (tc *testCluster) follower() *testNode {
	for _, n := range tc.running() {
		if !n.c.IsLeader() {
			return n
		}
	}
	tc.t.Fatal("no follower")
	return nil
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

func createProject(ctx context.Context, c *Cluster, name string) error {
	cmd, err := fsm.ProjectCreateCommand(fsm.Project{Name: name, CreatedAt: 1})
	if err != nil {
		return err
	}
	_, err = c.Apply(ctx, cmd)
	return err
}

func hasProject(c *Cluster, name string) bool {
	_, err := c.FSM().State().Project(name)
	return err == nil
}
