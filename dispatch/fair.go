package dispatch

import (
	"context"
	"slices"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/go-memdb"
)

// Fair delivery on one node. A call holds its worker slot until the
// receiver answers or the call times out, and that cannot be preempted; so
// one tenant whose receivers hang could hold every slot of a node and make
// every other tenant wait for its timeouts (a review measured 20.5 s). Four
// rules keep that from happening:
//
//   - Per-project queues, served round-robin: each pass over the due work
//     starts at most one delivery per project in turn, from each project's
//     own due-ordered queue (the node_project_due index), so a backlog of
//     one project never hides another project's due deliveries behind it.
//   - Fair share with a reserve: a project may take a free slot while it
//     holds fewer than its share, (Workers − Reserve) / active projects, or
//     while more than Reserve slots are free. A project alone can so use all
//     but Reserve slots; a project that arrives always finds Reserve slots
//     free, and as the others' calls end it gets up to its share, since they
//     may no longer start beyond theirs while free slots are scarce.
//   - A cap per target (MaxPerTarget): at most that many concurrent calls
//     to one endpoint, or to one project's inline callbacks on one host.
//   - The target's circuit breaker (fsm/breaker.go, replicated): nothing is
//     started to an open target; once its cooldown has passed (half-open)
//     this node sends one call at a time, the probe, until the result of a
//     probe closes or reopens it. A delivery held back by an open breaker
//     is deferred (see flushDeferrals): it stays on this node with its
//     attempt count, its next try moved to the breaker's end under a new
//     fence and lease; one the leader moves meanwhile (its lease passed)
//     gets the breaker's end as its next try too (reassign.go). Test calls
//     (POST /v1/endpoints/{id}/test) pass the breaker.

// Fairness defaults.
const (
	DefaultMaxPerTarget = 16
	// scanBudget bounds how many held-back deliveries (target at its cap,
	// breaker open, lease too short) one project's queue is read past in
	// one pass, per worker slot; the rest wait for the next pass.
	scanBudget = 4
)

// slot is one in-flight delivery: its fence and what it counts against.
type slot struct {
	fence   uint64
	project string
	target  string
}

// fairness counts the slots held per project and per target.
type fairness struct {
	byProject map[string]int
	byTarget  map[string]int
	last      string // the project served last; the next pass starts after it
}

func newFairness() fairness {
	return fairness{byProject: map[string]int{}, byTarget: map[string]int{}}
}

// hold records d's slot. Called with w.mu held.
func (w *Dispatcher) hold(d *fsm.Delivery, target string) {
	w.inflight[d.ID] = slot{fence: d.Fence, project: d.Project, target: target}
	w.fair.byProject[d.Project]++
	if target != "" {
		w.fair.byTarget[target]++
	}
}

// release frees the slot of delivery id under fence, if it still holds one.
// Called with w.mu held.
func (w *Dispatcher) release(id string, fence uint64) {
	s, ok := w.inflight[id]
	if !ok || s.fence != fence {
		return
	}
	delete(w.inflight, id)
	if w.fair.byProject[s.project]--; w.fair.byProject[s.project] <= 0 {
		delete(w.fair.byProject, s.project)
	}
	if s.target != "" {
		if w.fair.byTarget[s.target]--; w.fair.byTarget[s.target] <= 0 {
			delete(w.fair.byTarget, s.target)
		}
	}
}

// queue is one project's due deliveries on this node, read lazily.
type queue struct {
	project string
	it      memdb.ResultIterator
	next    *fsm.Delivery // the next delivery to start, nil when none
	target  string        // next's target key
	done    bool          // nothing more can start from this queue in this pass
	scanned int
}

// startDue starts what is due, fairly, and returns how long until something
// held back may become startable (the next due time, a breaker's end), or
// the idle wait. A finishing call signals freed, which covers slots and caps.
func (w *Dispatcher) startDue(st *fsm.State, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	wait := maxIdleWait
	if len(w.inflight) >= w.cfg.Workers {
		return wait
	}
	nowMs := fsm.MillisOf(now)
	breakers := map[string]*fsm.Breaker{}
	budget := scanBudget * w.cfg.Workers

	// advance finds q's next startable delivery.
	advance := func(q *queue) {
		q.next = nil
		for !q.done {
			obj := q.it.Next()
			if obj == nil || q.scanned >= budget {
				q.done = true
				return
			}
			d := obj.(*fsm.Delivery)
			if _, busy := w.inflight[d.ID]; busy {
				continue
			}
			q.scanned++
			if f, ok := w.skipped[d.ID]; ok && f == d.Fence {
				continue
			}
			if _, deferring := w.deferring[d.ID]; deferring {
				continue // its deferral would take the fence from under a call
			}
			if d.NextAttemptAt > nowMs {
				wait = min(wait, d.NextAttemptAt.Time().Sub(now))
				q.done = true // the queue is in due order
				return
			}
			target := st.TargetKey(d)
			if target != "" {
				if w.fair.byTarget[target] >= w.cfg.MaxPerTarget {
					continue
				}
				b, seen := breakers[target]
				if !seen {
					b = st.Breaker(target)
					breakers[target] = b
				}
				switch state := b.StateAt(nowMs); {
				case state == fsm.BreakerClosed || isTestCall(st, d):
					// POST /v1/endpoints/{id}/test goes through: it is
					// asked for, tried once and counts for nothing.
				case state == fsm.BreakerOpen:
					wait = min(wait, b.Until.Time().Sub(now))
					w.deferLocked(st, d, b.Until)
					continue
				case w.fair.byTarget[target] > 0:
					continue // half-open: the probe (or a call from before) is running
				}
			}
			q.next, q.target = d, target
			return
		}
	}

	projects := st.DueProjects(w.node)
	// Start after the project served last, so that no project is always
	// first when slots are scarce.
	if i, _ := slices.BinarySearch(projects, w.fair.last+"\x00"); i > 0 && i < len(projects) {
		projects = append(projects[i:], projects[:i]...)
	}
	queues := make([]*queue, 0, len(projects))
	for _, p := range projects {
		q := &queue{project: p, it: st.ProjectDue(w.node, p)}
		advance(q)
		queues = append(queues, q)
	}
	// Active projects: those with something to start or something running.
	active := len(w.fair.byProject)
	for _, q := range queues {
		if q.next != nil && w.fair.byProject[q.project] == 0 {
			active++
		}
	}
	share := max(1, (w.cfg.Workers-w.cfg.Reserve)/max(1, active))

	for started := true; started; {
		started = false
		for _, q := range queues {
			free := w.cfg.Workers - len(w.inflight)
			if free <= 0 {
				break
			}
			if q.next == nil {
				continue
			}
			if w.fair.byProject[q.project] >= share && free <= w.cfg.Reserve {
				continue // over its share while slots are scarce
			}
			d := q.next
			delete(w.skipped, d.ID)
			if w.start(st, d, q.target, now) {
				w.fair.last, started = q.project, true
			} else {
				w.skipped[d.ID] = d.Fence
			}
			advance(q)
		}
	}
	if len(w.skipped) > 10*w.cfg.Workers+1000 {
		clear(w.skipped) // entries of deliveries moved away; rebuilt as needed
	}
	w.flushDeferrals()
	return max(wait, time.Millisecond)
}

// isTestCall: d delivers a webhook.test event.
func isTestCall(st *fsm.State, d *fsm.Delivery) bool {
	if d.EventID == "" {
		return false
	}
	ev, err := st.Event(d.EventID)
	return err == nil && ev.Type == fsm.EventWebhookTest
}

// Deferral. A delivery held back by an open breaker is still due, and
// would be read past on every pass (hiding the project's other due work
// behind it once there are many) and see its lease pass. So the node moves
// its next try to the breaker's end, keeping it: a CmdAssign to itself,
// conditioned on its fence (a move by the leader meanwhile wins), with the
// lease a delivery due then gets. It uses up no attempt and changes nothing
// else; the new fence is the assigning command's index, as for any move.

// maxDeferBatch bounds one deferral command.
const maxDeferBatch = 500

// deferLocked queues d's deferral to until. Called with w.mu held.
func (w *Dispatcher) deferLocked(st *fsm.State, d *fsm.Delivery, until fsm.Millis) {
	if _, queued := w.deferring[d.ID]; queued || len(w.deferQueue) >= maxDeferBatch {
		return
	}
	w.deferring[d.ID] = d.Fence
	w.deferQueue = append(w.deferQueue, fsm.Assignment{DeliveryID: d.ID, IfFence: d.Fence, Node: w.node,
		NextAttemptAt: until, LeaseUntil: fsm.LeaseUntil(until, st.TargetTimeout(d))})
}

// flushDeferrals commits the queued deferrals in the background, one
// command at a time. Called with w.mu held.
func (w *Dispatcher) flushDeferrals() {
	if w.deferBusy || len(w.deferQueue) == 0 {
		return
	}
	batch := w.deferQueue
	w.deferQueue, w.deferBusy = nil, true
	w.deferrals.Add(1)
	go func() {
		defer w.deferrals.Done()
		cmd, err := fsm.Encode(fsm.CmdAssign, &fsm.Assign{At: fsm.MillisOf(w.cfg.Now()), Assignments: batch})
		if err == nil {
			ctx, cancel := context.WithTimeout(w.giveUp, 10*time.Second)
			_, err = w.c.Apply(ctx, cmd)
			cancel()
		}
		if err != nil && w.giveUp.Err() == nil {
			w.logger.Warn("deliveries held by an open breaker not deferred; trying again", "deliveries", len(batch), "err", err)
		} else if err == nil {
			w.logger.Debug("deliveries deferred until their breaker half-opens", "deliveries", len(batch))
		}
		w.mu.Lock()
		for _, a := range batch {
			delete(w.deferring, a.DeliveryID)
		}
		w.deferBusy = false
		w.mu.Unlock()
		w.signal()
	}()
}
