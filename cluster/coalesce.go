package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chime-sched/chime/fsm"
)

// Writes are coalesced at two points. On a small machine the cost of a write
// is dominated by per-message work (system calls on loopback sockets, Raft
// log entries, AppendEntries RPCs, fsyncs, goroutine wake-ups), not by
// applying it, so fewer and larger messages buy throughput:
//
//   - a follower sends the writes of its concurrent callers to the leader in
//     one internal RPC (pathApplyBatch) rather than one each;
//   - the leader submits the writes of its concurrent callers (its own API,
//     its own poller and dispatcher, and every follower's batches) to Raft as
//     one fsm.Batch entry, which every node applies with one result per
//     command, so one failing command fails only its own caller.
//
// Both points use a coalescer: at most maxInFlight flushes run at once; a
// write that arrives while they are all busy waits for the next flush and
// joins whatever else queued meanwhile. A lone write under light load is
// flushed at once and alone, so nothing ever waits for a timer; under heavy
// load batches grow by themselves to what one flush takes to commit.

// Request states: a queued request is either taken by a flush (it may then
// be written) or abandoned by its caller (it never will be), never both.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// applyReq is one caller's write waiting in a coalescer.
type applyReq struct {
	ctx   context.Context
	cmd   []byte
	state atomic.Int32
	done  chan applyOutcome // buffered: a flush never blocks on a caller that left
}

type applyOutcome struct {
	res *fsm.Result
	err error // a cluster error; domain errors are in res.Err
}

func (r *applyReq) answer(res *fsm.Result, err error) { r.done <- applyOutcome{res: res, err: err} }

// coalescer queues writes and hands them to flush in batches.
type coalescer struct {
	// maxInFlight bounds concurrent flushes: the queue only fills (and
	// batches only form) while they are all busy.
	maxInFlight int
	// maxItems and maxBytes bound one batch; a single larger command still
	// goes, alone.
	maxItems, maxBytes int
	// flush writes batch and answers every request in it exactly once.
	flush func(batch []*applyReq)
	// waitTaken: once a request is taken, its caller waits for the answer
	// even past its context (the leader's rule: once Raft has a command the
	// caller must hear how it ended; Raft answers within its own timeout or
	// at shutdown). A forwarding caller gives up at its deadline instead, as
	// a forwarded write always has.
	waitTaken bool

	mu       sync.Mutex
	queue    []*applyReq
	inFlight int
}

// enqueue queues one request per command and starts a flush if a slot is
// free. Commands enqueued together are taken together when they fit.
func (q *coalescer) enqueue(ctx context.Context, cmds ...[]byte) []*applyReq {
	reqs := make([]*applyReq, len(cmds))
	for i, cmd := range cmds {
		reqs[i] = &applyReq{ctx: ctx, cmd: cmd, done: make(chan applyOutcome, 1)}
	}
	q.mu.Lock()
	q.queue = append(q.queue, reqs...)
	start := q.inFlight < q.maxInFlight
	if start {
		q.inFlight++
	}
	q.mu.Unlock()
	if start {
		go q.drain()
	}
	return reqs
}

// drain flushes batches until the queue is empty, then frees its slot.
func (q *coalescer) drain() {
	for {
		q.mu.Lock()
		batch := q.takeLocked()
		if len(batch) == 0 {
			q.inFlight--
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		q.flush(batch)
	}
}

// takeLocked removes the next batch from the queue, dropping requests whose
// callers have given up.
func (q *coalescer) takeLocked() []*applyReq {
	var batch []*applyReq
	size, n := 0, 0
	for ; n < len(q.queue); n++ {
		r := q.queue[n]
		if len(batch) > 0 && (len(batch) >= q.maxItems || size+len(r.cmd) > q.maxBytes) {
			break
		}
		if !r.state.CompareAndSwap(reqQueued, reqTaken) {
			continue // abandoned while it waited; its caller has its answer
		}
		batch = append(batch, r)
		size += len(r.cmd)
	}
	rest := copy(q.queue, q.queue[n:])
	clear(q.queue[rest:]) // let the taken requests go
	q.queue = q.queue[:rest]
	return batch
}

// wait returns r's outcome. If r's context ends while r is still queued, r
// is abandoned and never written: ErrTimeout. If it ends after r was taken,
// see waitTaken.
func (q *coalescer) wait(r *applyReq) (*fsm.Result, error) {
	select {
	case o := <-r.done:
		return o.res, o.err
	case <-r.ctx.Done():
	}
	if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
		return nil, fmt.Errorf("%w: %v (while queued; the write was not sent)", ErrTimeout, r.ctx.Err())
	}
	if q.waitTaken {
		o := <-r.done
		return o.res, o.err
	}
	return nil, fmt.Errorf("%w: %v", ErrTimeout, r.ctx.Err())
}

// do writes one command through the coalescer.
func (q *coalescer) do(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	return q.wait(q.enqueue(ctx, cmd)[0])
}

// Batch bounds, for both coalescers. 256 commands or 1 MiB keep one Raft
// entry and one forwarded RPC well below anything that would stall
// replication; a command over maxMergedCommand (a big poller tick, say)
// goes into Raft as its own entry rather than inflating a batch.
const (
	maxCoalescedItems = 256
	maxCoalescedBytes = 1 << 20
	maxMergedCommand  = 64 << 10
)

// Flushes in flight. The leader's queue is the funnel of every write in the
// cluster: with one flush at a time, each commit takes everything that
// queued while the previous one committed, so the cluster writes fewer and
// larger entries (fewer fsyncs and AppendEntries on every node). Measured on
// the 2-core benchmark machine: one flush 5,500-6,200 creates/s, two
// 5,300-5,600/s, four 5,100-5,700/s, and CPU per create lowest with one. A
// follower's flush is an RPC that waits for the leader's commit; two let one
// batch travel while the previous one commits.
const (
	leaderFlushes   = 1
	followerFlushes = 2
)

// remainingOf is the longest time any request of batch may still take: a
// shared operation must not end before the last of its callers gives up.
func remainingOf(batch []*applyReq, def time.Duration) time.Duration {
	var d time.Duration
	for _, r := range batch {
		d = max(d, remaining(r.ctx, def))
	}
	return d
}
