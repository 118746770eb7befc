package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// writeThroughEach creates one project through every running node (retrying
// while the cluster elects a leader) and waits until every node holds all
// of them.
func (tc *testCluster) writeThroughEach(tag string) {
	t := tc.t
	t.Helper()
	var names []string
	for _, n := range tc.running() {
		name := fmt.Sprintf("%s-%s", tag, n.id)
		deadline := time.Now().Add(15 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := createProject(ctx, n.c, name)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: write through %s: %v", tag, n.id, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		names = append(names, name)
	}
	for _, n := range tc.running() {
		eventually(t, 10*time.Second, tag+": replication to "+n.id, func() bool {
			for _, name := range names {
				if !hasProject(n.c, name) {
					return false
				}
			}
			return true
		})
	}
}

// roll restarts every node, followers first and the leader last (killed, so
// an election follows), with set applied to it; writes through every node
// must work after each restart.
func (tc *testCluster) roll(tag string, set func(n *testNode)) {
	t := tc.t
	t.Helper()
	leader := tc.waitLeader(10 * time.Second)
	var order []*testNode
	for _, n := range tc.nodes {
		if n != leader {
			order = append(order, n)
		}
	}
	for _, n := range append(order, leader) {
		n.c.Kill()
		n.c = nil
		set(n)
		n.start(t)
		tc.waitLeader(15 * time.Second)
		tc.writeThroughEach(fmt.Sprintf("%s-%s", tag, n.id))
	}
}

// TestRollingUpgradeToTLS is the documented two-step upgrade from a cluster
// of the version before TLS: every node rolled to --tls-mode upgrade (mixed
// with old nodes meanwhile), then each rolled to on. Writes through every
// node and elections (each leader is killed in turn) keep working at every
// step; at the end an old node is refused.
func TestRollingUpgradeToTLS(t *testing.T) {
	tc := newTestClusterWith(t, 3, func(n *testNode) { n.legacy = true })
	tc.writeThroughEach("old")

	tc.roll("upgrade", func(n *testNode) { n.legacy, n.tlsMode = false, string(TLSUpgrade) })
	tc.roll("on", func(n *testNode) { n.tlsMode = string(TLSOn) })

	// Every node now speaks TLS only: a client of the old version with the
	// right key is refused by each.
	old := clientTransport(t, transportConfig{ClusterKey: tc.nodes[0].key, ClusterName: "test", NodeID: "old", Legacy: true})
	for _, n := range tc.running() {
		if _, err := ping(t, old, n.c.RaftAddr()); !errors.Is(err, ErrAuth) {
			t.Fatalf("old client to %s: got %v, want ErrAuth", n.id, err)
		}
	}
}
