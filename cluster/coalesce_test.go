package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/vmihailenco/msgpack/v5"
)

// gatedCoalescer's flush records each batch and blocks until the test
// releases it, so batches form exactly as they would behind a slow commit.
type gatedCoalescer struct {
	q       *coalescer
	batches chan []*applyReq
	release chan struct{}
}

func newGatedCoalescer(inFlight, maxItems, maxBytes int, waitTaken bool) *gatedCoalescer {
	g := &gatedCoalescer{batches: make(chan []*applyReq, 100), release: make(chan struct{})}
	g.q = &coalescer{maxInFlight: inFlight, maxItems: maxItems, maxBytes: maxBytes, waitTaken: waitTaken,
		flush: func(batch []*applyReq) {
			g.batches <- batch
			<-g.release
			for _, r := range batch {
				r.answer(&fsm.Result{Index: 7}, nil)
			}
		}}
	return g
}

func (g *gatedCoalescer) nextBatch(t *testing.T) []*applyReq {
	t.Helper()
	select {
	case b := <-g.batches:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no batch flushed")
		return nil
	}
}

func TestCoalescerBatchesWhatQueuesWhileBusy(t *testing.T) {
	g := newGatedCoalescer(1, 100, 1<<20, true)
	ctx := context.Background()
	first := g.q.enqueue(ctx, []byte("a"))
	if b := g.nextBatch(t); len(b) != 1 {
		t.Fatalf("a lone write under no load: batch of %d, want it flushed alone at once", len(b))
	}
	var rest []*applyReq
	for i := range 10 {
		rest = append(rest, g.q.enqueue(ctx, fmt.Appendf(nil, "b%d", i))...)
	}
	g.release <- struct{}{}
	b := g.nextBatch(t)
	if len(b) != 10 {
		t.Fatalf("the writes queued behind a busy flush went in a batch of %d, want all 10", len(b))
	}
	for i, r := range b {
		if string(r.cmd) != fmt.Sprintf("b%d", i) {
			t.Fatalf("batch out of order at %d: %q", i, r.cmd)
		}
	}
	g.release <- struct{}{}
	for _, r := range append(first, rest...) {
		if res, err := g.q.wait(r); err != nil || res.Index != 7 {
			t.Fatalf("wait: %v %v", res, err)
		}
	}
}

func TestCoalescerBoundsABatch(t *testing.T) {
	g := newGatedCoalescer(1, 3, 10, true)
	ctx := context.Background()
	g.q.enqueue(ctx, []byte("x"))
	g.nextBatch(t)
	// Seven of 2 bytes: at most 3 per batch by count; then a 12-byte one goes
	// alone (over maxBytes, but a single command always goes).
	for range 7 {
		g.q.enqueue(ctx, []byte("yy"))
	}
	g.q.enqueue(ctx, []byte("zzzzzzzzzzzz"))
	var sizes []int
	for range 4 {
		g.release <- struct{}{}
		sizes = append(sizes, len(g.nextBatch(t)))
	}
	g.release <- struct{}{}
	if fmt.Sprint(sizes) != "[3 3 1 1]" {
		t.Fatalf("batch sizes %v, want [3 3 1 1]", sizes)
	}
}

func TestCoalescerCallerLeavingWhileQueuedIsNeverWritten(t *testing.T) {
	for _, waitTaken := range []bool{true, false} {
		t.Run(fmt.Sprint("waitTaken=", waitTaken), func(t *testing.T) {
			g := newGatedCoalescer(1, 100, 1<<20, waitTaken)
			g.q.enqueue(context.Background(), []byte("busy"))
			g.nextBatch(t)
			ctx, cancel := context.WithCancel(context.Background())
			r := g.q.enqueue(ctx, []byte("leaves"))[0]
			other := g.q.enqueue(context.Background(), []byte("stays"))[0]
			cancel()
			if _, err := g.q.wait(r); !errors.Is(err, ErrTimeout) {
				t.Fatalf("cancelled while queued: %v, want ErrTimeout", err)
			}
			g.release <- struct{}{}
			b := g.nextBatch(t)
			g.release <- struct{}{}
			if len(b) != 1 || string(b[0].cmd) != "stays" {
				t.Fatalf("next batch %d commands (first %q): the abandoned write must not be sent", len(b), b[0].cmd)
			}
			if _, err := g.q.wait(other); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCoalescerCallerLeavingAfterTaken(t *testing.T) {
	// On the leader the caller hears how its write ended even after its
	// deadline; a forwarding caller leaves at its deadline (outcome unknown).
	for _, waitTaken := range []bool{true, false} {
		t.Run(fmt.Sprint("waitTaken=", waitTaken), func(t *testing.T) {
			g := newGatedCoalescer(1, 100, 1<<20, waitTaken)
			ctx, cancel := context.WithCancel(context.Background())
			r := g.q.enqueue(ctx, []byte("taken"))[0]
			g.nextBatch(t)
			cancel()
			got := make(chan error, 1)
			go func() { _, err := g.q.wait(r); got <- err }()
			if !waitTaken {
				if err := <-got; !errors.Is(err, ErrTimeout) {
					t.Fatalf("forwarding caller past its deadline: %v, want ErrTimeout", err)
				}
				g.release <- struct{}{}
				return
			}
			select {
			case err := <-got:
				t.Fatalf("leader caller left before its taken write ended: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			g.release <- struct{}{}
			if err := <-got; err != nil {
				t.Fatalf("leader caller: %v, want the write's own outcome", err)
			}
		})
	}
}

func projectCmd(t *testing.T, name string) []byte {
	t.Helper()
	cmd, err := fsm.ProjectCreateCommand(fsm.Project{Name: name, CreatedAt: 1})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

func newReqs(cmds ...[]byte) []*applyReq {
	var out []*applyReq
	for _, cmd := range cmds {
		out = append(out, &applyReq{ctx: context.Background(), cmd: cmd, done: make(chan applyOutcome, 1)})
	}
	return out
}

// TestCoalescedBatchAnswersEachCommand flushes one batch by hand, on the
// leader and through a follower: small commands share one Raft entry, a
// batch goes alone, and each caller gets its own result and error.
func TestCoalescedBatchAnswersEachCommand(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	f := tc.follower()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := createProject(ctx, leader.c, "taken"); err != nil {
		t.Fatal(err)
	}
	for _, via := range []struct {
		name  string
		flush func([]*applyReq)
	}{{"leader", leader.c.commitLocal}, {"follower", f.c.forwardBatch}} {
		t.Run(via.name, func(t *testing.T) {
			p := via.name + "-"
			nested, err := fsm.BatchCommand(projectCmd(t, p+"nested"))
			if err != nil {
				t.Fatal(err)
			}
			reqs := newReqs(projectCmd(t, p+"a"), projectCmd(t, "taken"), nested, projectCmd(t, p+"b"), projectCmd(t, p+"c"))
			via.flush(reqs)
			var out []applyOutcome
			for _, r := range reqs {
				out = append(out, <-r.done)
			}
			for i, o := range out {
				if o.err != nil {
					t.Fatalf("command %d: cluster error %v", i, o.err)
				}
			}
			if !errors.Is(out[1].res.Err, fsm.ErrConflict) {
				t.Fatalf("the duplicate: %v, want its own ErrConflict", out[1].res.Err)
			}
			for _, i := range []int{0, 3, 4} {
				if out[i].res.Err != nil {
					t.Fatalf("command %d failed with its neighbour's error: %v", i, out[i].res.Err)
				}
				if out[i].res.Index != out[0].res.Index {
					t.Fatalf("small commands at indexes %d and %d: want one coalesced entry", out[0].res.Index, out[i].res.Index)
				}
			}
			if b := out[2].res; b.Err != nil || len(b.Results) != 1 || b.Results[0].Err != nil || b.Index == out[0].res.Index {
				t.Fatalf("a batch command must go as its own entry with its own results: %+v", b)
			}
			eventually(t, 2*time.Second, "the writes applied on every node", func() bool {
				for _, n := range tc.running() {
					if !hasProject(n.c, p+"a") || !hasProject(n.c, p+"c") {
						return false
					}
				}
				return true
			})
		})
	}
}

// TestConcurrentAppliesThroughEveryNode: many callers at once on every node;
// each sees its own outcome, reads its own write on the node it used, and
// the cluster writes fewer Raft entries than commands.
func TestConcurrentAppliesThroughEveryNode(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := createProject(ctx, leader.c, "dup"); err != nil {
		t.Fatal(err)
	}
	before := leader.c.raft.LastIndex()
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		node := tc.nodes[i%3].c
		wg.Go(func() {
			name := fmt.Sprintf("p%d", i)
			if i%10 == 0 {
				name = "dup"
			}
			_, err := node.Apply(ctx, projectCmd(t, name))
			switch {
			case name == "dup" && !errors.Is(err, fsm.ErrConflict):
				errs <- fmt.Errorf("duplicate %d: %v, want ErrConflict", i, err)
			case name != "dup" && err != nil:
				errs <- fmt.Errorf("create %s: %v", name, err)
			case name != "dup" && !hasProject(node, name):
				errs <- fmt.Errorf("%s acknowledged but not readable on the node that took it", name)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if entries := leader.c.raft.LastIndex() - before; entries >= n {
		t.Errorf("%d commands took %d Raft entries: concurrent writes were not coalesced", n, entries)
	} else {
		t.Logf("%d commands in %d Raft entries", n, entries)
	}
}

// TestBatchForwardToAnOlderLeader: a leader without pathApplyBatch (an older
// version mid-upgrade) answers 404; the follower sends the same writes one by
// one instead and remembers not to try again for a while.
func TestBatchForwardToAnOlderLeader(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	f := tc.follower()
	f.c.batchPath = "/internal/v1/apply-batch-of-a-later-version"
	reqs := newReqs(projectCmd(t, "old-a"), projectCmd(t, "old-b"), projectCmd(t, "old-c"))
	f.c.forwardBatch(reqs)
	for i, r := range reqs {
		if o := <-r.done; o.err != nil || o.res.Err != nil {
			t.Fatalf("write %d: %v %v", i, o.err, o.res)
		}
	}
	if f.c.batchRPC.supported(leader.c.RaftAddr()) {
		t.Fatal("the follower did not remember that the leader takes no batches")
	}
	eventually(t, 2*time.Second, "writes on the leader", func() bool { return hasProject(leader.c, "old-c") })
}

func TestBatchRPCOnAFollowerIsNoLeader(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.waitLeader(5 * time.Second)
	var fs []*testNode
	for _, n := range tc.running() {
		if !n.c.IsLeader() {
			fs = append(fs, n)
		}
	}
	body, _ := msgpack.Marshal(&batchRequest{Commands: [][]byte{projectCmd(t, "nope")}})
	req, _ := http.NewRequest(http.MethodPost, "http://"+fs[1].c.RaftAddr()+pathApplyBatch, bytes.NewReader(body))
	resp, err := fs[0].c.fwdClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var we wireError
	if err := msgpack.NewDecoder(resp.Body).Decode(&we); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	if !errors.Is(fromWireError(&we), ErrNoLeader) {
		t.Fatalf("a follower asked to apply a batch: %+v, want no_leader (nothing written, retry)", we)
	}
}

// TestCoalescedWritesAcrossLeadershipChanges writes continuously through
// every node while leadership moves twice: each write either succeeds (and
// is then on every node) or fails with one of the cluster's transient
// errors, never with another caller's result.
func TestCoalescedWritesAcrossLeadershipChanges(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stop atomic.Bool
	var acked sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 12 {
		node := tc.nodes[w%3].c
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				name := fmt.Sprintf("w%d-%d", w, i)
				res, err := node.Apply(ctx, projectCmd(t, name))
				switch {
				case err == nil:
					if !hasProject(node, name) {
						errs <- fmt.Errorf("%s acknowledged at %d but not readable where it was written", name, res.Index)
					}
					acked.Store(name, true)
				case errors.Is(err, ErrNoLeader), errors.Is(err, ErrLeadershipLost), errors.Is(err, ErrLeaderUnreachable), errors.Is(err, ErrTimeout):
				default:
					errs <- fmt.Errorf("%s: unexpected %v", name, err)
					return
				}
			}
		})
	}
	for range 2 {
		time.Sleep(300 * time.Millisecond)
		l := tc.waitLeader(5 * time.Second)
		var to *testNode
		for _, n := range tc.running() {
			if n != l {
				to = n
				break
			}
		}
		if err := l.c.TransferLeadership(ctx, to.id); err != nil {
			t.Logf("transfer: %v", err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	acked.Range(func(k, _ any) bool {
		n++
		for _, node := range tc.running() {
			name := k.(string)
			eventually(t, 5*time.Second, name+" on "+node.id, func() bool { return hasProject(node.c, name) })
		}
		return true
	})
	if n == 0 {
		t.Fatal("no write succeeded")
	}
	t.Logf("%d writes acknowledged across two leadership changes", n)
}
