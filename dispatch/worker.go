package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/go-memdb"
)

// The per-node dispatcher: it watches the local FSM for deliveries assigned
// to this node that are due, runs them on a bounded pool, and reports every
// outcome (success, retry decision, dead letter) through Raft in batches.
// The in-flight state is local on purpose: writing "in flight" to Raft would
// double the log traffic, and the lease already covers a node that dies
// mid-call (the leader reassigns the delivery when the lease ends).

// Dispatcher defaults.
const (
	DefaultWorkers = 64
	// startMargin: an attempt starts only if its lease outlives the call's
	// timeout by this much, so the result can still be reported in time;
	// otherwise the node leaves it to the leader to renew or move.
	startMargin = 5 * time.Second
	// reportBatch and reportLinger bound how results are batched into one
	// Raft command: up to reportBatch results, waiting at most reportLinger
	// for more once one is ready.
	reportBatch  = 256
	reportLinger = 10 * time.Millisecond
	// reportRetry is the pause between tries of a result command the
	// cluster could not commit (no leader); results are retried until their
	// lease has passed, after which the delivery belongs to another node.
	reportRetry = 250 * time.Millisecond
	// notInContactRecheck: while this node cannot reach the leader it starts
	// nothing and looks again this often (contact changes have no watch).
	// An idle node in contact looks this often too: a partition changes
	// nothing in the local state, so without it a node with nothing due
	// slept through a whole partition, never reset its catch-up gate, and
	// after the heal (heartbeats back, log replication still backing off)
	// started deliveries the leader had meanwhile moved to another node.
	notInContactRecheck = 500 * time.Millisecond
	// syncTimeout bounds one read barrier of the catch-up gate (see run).
	syncTimeout = 5 * time.Second
	maxIdleWait = time.Minute
)

// NodeCluster is what a dispatcher needs from the replicated core.
type NodeCluster interface {
	NodeID() string
	FSM() *fsm.FSM
	Apply(ctx context.Context, cmd []byte) (*fsm.Result, error)
	// InContact: the node has heard from a leader recently. A node cut off
	// from the cluster starts no attempt: its deliveries are being moved.
	InContact() bool
	// ReadBarrier returns once the local state holds every write the leader
	// had committed when it was called.
	ReadBarrier(ctx context.Context) error
}

// DispatcherConfig configures a Dispatcher; zero values take the defaults.
type DispatcherConfig struct {
	Workers int
	// MaxPerTarget caps the concurrent calls of this node to one endpoint,
	// or to one project's inline callbacks on one scheme://host:port
	// (default DefaultMaxPerTarget, at most Workers).
	MaxPerTarget int
	// Reserve is how many worker slots a project above its fair share
	// leaves free for projects that have nothing running yet (default
	// Workers/8, at least 1; see fair.go).
	Reserve int
	Sender  *Sender
	Now     func() time.Time
	Rand    func() float64 // jitter; nil = math/rand/v2
	Logger  *slog.Logger
}

// Dispatcher runs the deliveries assigned to one node.
type Dispatcher struct {
	c      NodeCluster
	cfg    DispatcherConfig
	node   string
	logger *slog.Logger

	mu       sync.Mutex
	inflight map[string]slot   // delivery id → its slot, from start until its result is applied or dropped
	skipped  map[string]uint64 // delivery id → fence whose lease was too short to start
	freed    chan struct{}     // a worker slot or an in-flight entry was released
	fair     fairness          // slots held per project and per target (fair.go)
	policies map[string]projectPolicy
	// Deferrals of deliveries held by an open breaker (fair.go).
	deferring  map[string]uint64
	deferQueue []fsm.Assignment
	deferBusy  bool
	deferrals  sync.WaitGroup

	results chan fsm.DeliveryResult
	stop    context.CancelFunc
	calls   sync.WaitGroup // running HTTP calls (and pending sends to results)
	runDone chan struct{}
	repDone chan struct{}
	// giveUp ends when Stop's deadline passes: result commits stop retrying.
	giveUp       context.Context
	giveUpCancel context.CancelFunc
	callCtx      context.Context
	abort        context.CancelFunc // cancels running calls
}

// NewDispatcher returns a dispatcher for the cluster's local node; Start it.
func NewDispatcher(c NodeCluster, cfg DispatcherConfig) *Dispatcher {
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.MaxPerTarget <= 0 {
		cfg.MaxPerTarget = DefaultMaxPerTarget
	}
	cfg.MaxPerTarget = min(cfg.MaxPerTarget, cfg.Workers)
	if cfg.Reserve <= 0 {
		cfg.Reserve = max(1, cfg.Workers/8)
	}
	cfg.Reserve = min(cfg.Reserve, cfg.Workers-1)
	if cfg.Sender == nil {
		cfg.Sender = NewSender(SenderConfig{})
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Dispatcher{
		c: c, cfg: cfg, node: c.NodeID(), logger: cfg.Logger.With("component", "dispatcher"),
		inflight: map[string]slot{}, skipped: map[string]uint64{}, fair: newFairness(),
		policies: map[string]projectPolicy{}, deferring: map[string]uint64{},
		freed: make(chan struct{}, 1), results: make(chan fsm.DeliveryResult, cfg.Workers),
	}
}

// Start runs the dispatcher until Stop.
func (w *Dispatcher) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	w.callCtx, w.abort = context.WithCancel(context.Background())
	w.runDone, w.repDone = make(chan struct{}), make(chan struct{})
	w.giveUp, w.giveUpCancel = context.WithCancel(context.Background())
	go func() { defer close(w.runDone); w.run(ctx) }()
	go func() { defer close(w.repDone); w.report() }()
	w.logger.Info("dispatcher started", "node", w.node, "workers", w.cfg.Workers,
		"max_per_target", w.cfg.MaxPerTarget, "reserve", w.cfg.Reserve)
}

// Stop starts no new attempt, lets running calls finish until ctx ends
// (then cancels them), reports their results, and returns. Results the
// cluster can no longer take are dropped: the leases cover them.
func (w *Dispatcher) Stop(ctx context.Context) {
	if w.stop == nil {
		return
	}
	w.stop()
	w.stop = nil // a second Stop returns at once
	// Past the deadline, result commits stop retrying too (no quorum): the
	// leases cover what is not reported, and shutdown stays bounded.
	stopGiveUp := context.AfterFunc(ctx, w.giveUpCancel)
	defer stopGiveUp()
	defer w.giveUpCancel()
	<-w.runDone // no attempt starts after this
	done := make(chan struct{})
	go func() { w.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.abort()
		<-done
	}
	close(w.results)
	<-w.repDone
	w.deferrals.Wait() // bounded: its Apply ends with giveUp
	w.abort()
	w.cfg.Sender.Close()
}

// InFlight returns how many attempts are running or waiting to be reported.
func (w *Dispatcher) InFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

func (w *Dispatcher) signal() {
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// run starts due deliveries until ctx ends. It starts nothing from a state
// that may be stale: after the dispatcher starts, and whenever the node has
// lost contact with the leader, it first waits for a read barrier, so the
// local state holds every reassignment the leader committed meanwhile. A
// node restarted seconds after a crash would otherwise replay its own log,
// hear from the new leader, and send deliveries that had long been moved
// to another node while it was down (the fault suite caught exactly that:
// calls arriving with a lower fence after the new holder's).
func (w *Dispatcher) run(ctx context.Context) {
	synced := false
	for ctx.Err() == nil {
		st := w.c.FSM().State()
		now := w.cfg.Now()
		wait := maxIdleWait
		switch {
		case !w.c.InContact():
			synced = false
			wait = notInContactRecheck
		case !synced:
			synced = w.sync(ctx)
			if synced {
				continue // with the state the barrier waited for
			}
			wait = notInContactRecheck
		default:
			wait = min(notInContactRecheck, w.startDue(st, now))
		}
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		ws.Add(w.freed)
		if it, err := st.Txn().Get(fsm.TableDeliveries, fsm.IndexNodeDue, w.node); err == nil {
			ws.Add(it.WatchCh())
		}
		if wait <= 0 {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		_ = ws.WatchCtx(wctx)
		cancel()
	}
}

// sync runs one read barrier; true once the local state has caught up.
func (w *Dispatcher) sync(ctx context.Context) bool {
	bctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := w.c.ReadBarrier(bctx); err != nil {
		if ctx.Err() == nil {
			w.logger.Info("not starting deliveries until this node has caught up with the leader", "error", err)
		}
		return false
	}
	w.logger.Info("caught up with the leader; starting deliveries", "applied_index", w.c.FSM().AppliedIndex())
	return true
}

// start launches one attempt; false if the lease is too short to start it.
// Called with w.mu held.
func (w *Dispatcher) start(st *fsm.State, d *fsm.Delivery, target string, now time.Time) bool {
	attempt := d.Attempts + 1
	p, err := Prepare(st, d, attempt, now)
	if err == nil {
		p.Request.Policy = w.policyFor(st, d.Project)
	}
	res := fsm.DeliveryResult{DeliveryID: d.ID, Fence: d.Fence, Attempt: fsm.Attempt{Number: attempt, Node: w.node, StartedAt: fsm.MillisOf(now)}}
	if err != nil {
		// Nothing can be sent: dead-letter it now with the reason, so it
		// does not wait for a lease to pass again and again.
		w.logger.Error("delivery cannot be prepared; dead-lettering it", "delivery_id", d.ID, "job_id", d.JobID, "event_id", d.EventID, "endpoint_id", d.EndpointID, "error", err)
		res.Status, res.Attempt.Error = fsm.DeliveryDeadLetter, err.Error()
		w.hold(d, target)
		w.calls.Add(1)
		go func() { defer w.calls.Done(); w.results <- res }() // never send while holding w.mu
		return true
	}
	if p.Request.Timeout+startMargin > d.LeaseUntil.Time().Sub(now) {
		w.logger.Debug("lease too short to start; leaving it to the leader", "delivery_id", d.ID, "lease", d.LeaseUntil.Time())
		return false
	}
	w.hold(d, target)
	w.calls.Add(1)
	go func() {
		defer w.calls.Done()
		out := w.cfg.Sender.Send(w.callCtx, p.Request)
		if w.callCtx.Err() != nil {
			// Cut short by Stop: not the receiver's fault, so no attempt is
			// used up. The node is leaving; the leader moves the delivery.
			return
		}
		w.results <- w.judge(d, p, attempt, res, out)
	}()
	return true
}

// judge turns an outcome into the result to report: succeeded, a retry
// (when and until when this node holds it), or dead letter.
func (w *Dispatcher) judge(d *fsm.Delivery, p Prepared, attempt int, res fsm.DeliveryResult, out Outcome) fsm.DeliveryResult {
	now := w.cfg.Now()
	res.Attempt.LatencyMs = out.Latency.Milliseconds()
	res.Attempt.StatusCode = out.StatusCode
	res.Attempt.ResponseSummary = out.Summary
	res.Attempt.Error = out.Err
	res.Unreachable = out.Unreachable
	if res.Attempt.Error == "" && !out.Success {
		res.Attempt.Error = "receiver answered " + httpStatusText(out.StatusCode)
	}
	switch {
	case out.Success:
		res.Status = fsm.DeliverySucceeded
	case out.Gone && p.Endpoint:
		res.Status, res.Gone = fsm.DeliveryDeadLetter, true
		w.logDeadLetter(d, attempt, res.Attempt)
	default:
		delay, retry := NextDelay(p.Policy, attempt, out.RetryAfter, w.cfg.Rand)
		if !retry {
			res.Status = fsm.DeliveryDeadLetter
			w.logDeadLetter(d, attempt, res.Attempt)
			break
		}
		next := fsm.MillisOf(now.Add(delay))
		res.Status, res.NextAttemptAt = fsm.DeliveryRetryScheduled, next
		res.LeaseUntil = fsm.LeaseUntil(next, p.Request.Timeout)
	}
	return res
}

// logDeadLetter logs a delivery's last failed attempt at error level, as 002
// asks ("useful for alerting"); the dead letter itself is in Raft.
func (w *Dispatcher) logDeadLetter(d *fsm.Delivery, attempt int, a fsm.Attempt) {
	w.logger.Error("delivery dead-lettered", "delivery_id", d.ID, "job_id", d.JobID, "event_id", d.EventID,
		"endpoint_id", d.EndpointID, "attempts", attempt, "status_code", a.StatusCode, "error", a.Error)
}

// report batches results into DeliveryResults commands until results is
// closed and drained.
func (w *Dispatcher) report() {
	for {
		r, ok := <-w.results
		if !ok {
			return
		}
		batch := []fsm.DeliveryResult{r}
		linger := time.NewTimer(reportLinger)
	fill:
		for len(batch) < reportBatch {
			select {
			case r, ok := <-w.results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			case <-linger.C:
				break fill
			}
		}
		linger.Stop()
		w.commit(batch)
	}
}

// commit applies one batch, retrying while the cluster cannot commit and
// the leases are not over, then frees the deliveries' in-flight entries.
func (w *Dispatcher) commit(batch []fsm.DeliveryResult) {
	defer func() {
		w.mu.Lock()
		for _, r := range batch {
			w.release(r.DeliveryID, r.Fence)
		}
		w.mu.Unlock()
		w.signal()
	}()
	cmd, err := fsm.Encode(fsm.CmdDeliveryResults, &fsm.DeliveryResults{At: fsm.MillisOf(w.cfg.Now()), Results: batch})
	if err != nil {
		w.logger.Error("encode delivery results", "err", err)
		return
	}
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(w.giveUp, 10*time.Second)
		res, err := w.c.Apply(ctx, cmd)
		cancel()
		if err == nil {
			for i, r := range res.Results {
				if r.Err != nil {
					w.logger.Info("delivery result refused", "delivery_id", batch[i].DeliveryID, "err", r.Err)
				}
			}
			return
		}
		if !w.worthRetrying(batch) {
			w.logger.Warn("delivery results not committed before their leases ended; the leader will reassign them",
				"results", len(batch), "err", err)
			return
		}
		if try == 0 || errors.Is(err, context.DeadlineExceeded) {
			w.logger.Warn("delivery results not committed yet; retrying", "results", len(batch), "err", err)
		}
		select {
		case <-w.giveUp.Done():
			w.logger.Warn("shutting down: delivery results dropped; the leader will reassign them", "results", len(batch))
			return
		case <-time.After(reportRetry):
		}
	}
}

// worthRetrying: some delivery of the batch still has this node's lease.
func (w *Dispatcher) worthRetrying(batch []fsm.DeliveryResult) bool {
	st := w.c.FSM().State()
	now := fsm.MillisOf(w.cfg.Now())
	for _, r := range batch {
		if d, err := st.Delivery(r.DeliveryID); err == nil && d.Fence == r.Fence && d.LeaseUntil > now {
			return true
		}
	}
	return false
}

func httpStatusText(code int) string {
	if code == 0 {
		return "nothing"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}
