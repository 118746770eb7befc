package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFiveNodes(t *testing.T) {
	c := startCluster(t, 5)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	formed := waitReady(ctx, t, 40*time.Second, c.procs...)
	leader, _ := waitLeader(ctx, t, 10*time.Second, c.procs, "")
	waitVoters(ctx, t, 10*time.Second, c.byID(leader), "n1", "n2", "n3", "n4", "n5")
	t.Logf("5 nodes ready in %s; leader %s with 4 voters", formed.Round(time.Millisecond), leader)

	via := c.others(leader)[0]
	code, err := via.createProject(ctx, "five-nodes")
	if err != nil || code != http.StatusCreated {
		t.Fatalf("create through follower %s: %d %v", via.id, code, err)
	}
	acked := time.Now()
	var mu sync.Mutex
	seen := map[string]time.Duration{}
	var wg sync.WaitGroup
	for _, p := range c.procs {
		wg.Go(func() {
			rctx, cancel := context.WithDeadline(ctx, acked.Add(time.Second))
			defer cancel()
			for rctx.Err() == nil {
				if ok, _ := p.hasProject(rctx, "five-nodes"); ok {
					mu.Lock()
					seen[p.id] = time.Since(acked)
					mu.Unlock()
					return
				}
				sleepCtx(rctx, 10*time.Millisecond)
			}
		})
	}
	wg.Wait()
	for _, p := range c.procs {
		if d, ok := seen[p.id]; ok {
			t.Logf("%s: readable %s after the ack", p.id, d.Round(time.Millisecond))
		} else {
			t.Errorf("%s: project written through %s not readable within 1s", p.id, via.id)
		}
	}
}

func TestWrongClusterKeyRefused(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	waitReady(ctx, t, 30*time.Second, c.procs...)
	leader, _ := waitLeader(ctx, t, 10*time.Second, c.procs, "")

	intruder := newProc(t, procOpts{id: "intruder", clusterKey: newClusterKey(t), bootstrapExpect: 3})
	var joins []string
	for _, p := range c.procs {
		joins = append(joins, p.gossip)
	}
	intruder.setJoin(joins)
	intruder.start()
	waitFor(ctx, t, 10*time.Second, "the intruder's API", func(ctx context.Context) (bool, string) {
		if ok, err := intruder.exited(); ok {
			t.Fatalf("intruder exited: %v", err)
		}
		return intruder.health(ctx)
	})

	// For a few seconds, nobody lists anybody from the other side.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range c.procs {
			st, err := p.status(ctx)
			if err != nil {
				t.Fatalf("%s status: %v", p.id, err)
			}
			if n, ok := st.node(intruder.id); ok {
				t.Fatalf("%s lists the node with the wrong key: gossip=%s raft=%s", p.id, n.Gossip, n.Raft)
			}
		}
		st, err := intruder.status(ctx)
		if err != nil {
			t.Fatalf("intruder status: %v", err)
		}
		for _, n := range st.Nodes {
			if n.ID != intruder.id {
				t.Fatalf("the node with the wrong key lists %s: gossip=%s raft=%s", n.ID, n.Gossip, n.Raft)
			}
		}
		if st.Leader != nil {
			t.Fatalf("the node with the wrong key knows a leader: %s", st.Leader.ID)
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
	if ok, err := intruder.exited(); ok {
		t.Fatalf("intruder exited: %v", err)
	}

	// The cluster keeps working: same voters, writes through every node.
	waitVoters(ctx, t, 5*time.Second, c.byID(leader), "n1", "n2", "n3")
	waitReady(ctx, t, 5*time.Second, c.procs...)
	var names []string
	for _, p := range c.procs {
		name := "key-" + p.id
		mustCreate(ctx, t, name, p)
		names = append(names, name)
	}
	for _, p := range c.procs {
		waitHasAll(ctx, t, 5*time.Second, p, names)
	}
	refusals := 0
	for _, p := range c.procs {
		refusals += strings.Count(tail(p.logPath, 1<<20), "no installed keys could decrypt")
	}
	t.Logf("the node with the wrong key stayed outside for 4s; the cluster logged %d undecryptable gossip messages", refusals)
}
