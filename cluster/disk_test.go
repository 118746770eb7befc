package cluster

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Issue 12, item 12: a full disk answered the first failing write with 500
// and then flapped through elections. With too little free space every node
// refuses writes before Raft sees them (ErrDiskFull, a 503 in the API),
// reports it in its readiness, and backs off (a leader gives leadership
// away; the Raft timeouts are raised); once space is back it all returns.
func TestDiskFullRefusesWritesAndBacksOff(t *testing.T) {
	var free atomic.Uint64
	free.Store(10 << 30)
	tc := newTestCluster(t, 3, func(n *testNode) {
		n.free = func() (uint64, error) { return free.Load(), nil }
	})
	leader := tc.waitLeader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := createProject(ctx, leader.c, "before"); err != nil {
		t.Fatal(err)
	}
	base := leader.c.raft.ReloadableConfig().HeartbeatTimeout

	free.Store(1 << 20)
	eventually(t, 5*time.Second, "every node to see its disk full", func() bool {
		for _, n := range tc.nodes {
			if ok, why := n.c.Readiness(); ok || !strings.Contains(why, "disk full") {
				return false
			}
		}
		return true
	})
	for _, n := range tc.nodes {
		applied := n.c.fsm.AppliedIndex()
		start := time.Now()
		err := createProject(ctx, n.c, "refused-"+n.id)
		if !errors.Is(err, ErrDiskFull) || time.Since(start) > time.Second {
			t.Fatalf("write through %s: %v after %s, want ErrDiskFull at once", n.id, err, time.Since(start))
		}
		if n.c.fsm.AppliedIndex() != applied || hasProject(n.c, "refused-"+n.id) {
			t.Fatalf("a refused write reached %s's state", n.id)
		}
		if hb := n.c.raft.ReloadableConfig().HeartbeatTimeout; hb != base*diskBackoff {
			t.Fatalf("%s's heartbeat timeout %s, want %s while its disk is full", n.id, hb, base*diskBackoff)
		}
	}

	free.Store(10 << 30)
	eventually(t, 10*time.Second, "writes taken again", func() bool {
		l := tc.agreedLeader()
		return l != nil && createProject(ctx, l.c, "after") == nil
	})
	for _, n := range tc.nodes {
		// (Not ready all the same: this harness writes no initial state.)
		eventually(t, 5*time.Second, n.id+" no longer full, with its timeouts back", func() bool {
			_, why := n.c.Readiness()
			return !strings.Contains(why, "disk") && n.c.raft.ReloadableConfig().HeartbeatTimeout == base
		})
	}
}

// A store that fails for want of space all the same is ErrDiskFull (a 503),
// never an internal error.
func TestNoSpaceIsDiskFull(t *testing.T) {
	for _, err := range []error{
		&os.PathError{Op: "write", Path: "raft.db", Err: syscall.ENOSPC},
		errors.New("commit: write raft.db: " + syscall.ENOSPC.Error()),
	} {
		if got := raftErr(err); !errors.Is(got, ErrDiskFull) {
			t.Fatalf("raftErr(%v) = %v", err, got)
		}
		if got := fromWireError(toWireError(raftErr(err))); !errors.Is(got, ErrDiskFull) {
			t.Fatalf("over the wire: %v", got)
		}
	}
}
