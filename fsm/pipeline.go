package fsm

import (
	"fmt"
	"math"
)

// The fire-and-deliver pipeline's commands. The leader's poller and the
// nodes' dispatchers decide (what fires, where a delivery runs, when it is
// retried); these commands check those decisions against the current state
// and store them. Every item of a command is applied all-or-nothing and gets
// its own result, so one stale item never blocks the rest of a tick.

// EndpointFailureLimit is how many consecutive dead-lettered deliveries
// disable an endpoint (001).
const EndpointFailureLimit = 10

// Fire is one poller tick or one manual trigger.
type Fire struct {
	At Millis `msgpack:"at,omitempty"`
	// Initiator is the token id of a manual trigger ("" for the poller), for
	// the occurrence.created event.
	Initiator string      `msgpack:"by,omitempty"`
	Jobs      []JobFire   `msgpack:"jobs,omitempty"`
	Events    []EventFire `msgpack:"events,omitempty"`
}

// JobFire is what one job does in a tick.
type JobFire struct {
	// Job is the job as it must be afterwards (next fire time, cursor,
	// counts, status). Its ModifyIndex must equal the stored job's: a job
	// changed since the poller read it is refused (ErrConflict) and simply
	// planned again from the new state on the next tick.
	Job Job `msgpack:"job"`
	// Occurrence is the occurrence created, if any (catch-up "none" may only
	// advance the job). An occurrence whose identity key already exists is
	// refused: a slot can never become two occurrences.
	Occurrence *Occurrence `msgpack:"occ,omitempty"`
	// Missed lists the job's older occurrences to mark missed; those that
	// are no longer pending are left alone.
	Missed []string `msgpack:"missed,omitempty"`
	// Deliveries are the new deliveries, already placed (AssignedNode,
	// LeaseUntil); Apply sets their Fence to the command's Raft index.
	Deliveries []Delivery `msgpack:"dels,omitempty"`
}

// EventFire publishes one due event with its deliveries.
type EventFire struct {
	EventID    string     `msgpack:"id"`
	IfIndex    uint64     `msgpack:"ifidx"`
	Deliveries []Delivery `msgpack:"dels,omitempty"`
}

// DeliveryResults reports finished attempts, in batches.
type DeliveryResults struct {
	At      Millis           `msgpack:"at,omitempty"`
	Results []DeliveryResult `msgpack:"results,omitempty"`
}

// DeliveryResult is the outcome of one attempt by the node holding the
// delivery's assignment.
type DeliveryResult struct {
	DeliveryID string `msgpack:"id"`
	// Fence is the assignment the attempt ran under; a result for any other
	// (older) assignment is refused, so a node that was too slow or cut off
	// cannot overwrite a newer attempt.
	Fence uint64 `msgpack:"fence"`
	// Attempt describes the HTTP call. Its Fence is set by Apply; Number, when
	// the node gives it, must be the next attempt (a re-sent report is then
	// refused instead of counted twice), and is set by Apply otherwise.
	Attempt Attempt `msgpack:"att"`
	// Status is succeeded, retry_scheduled or dead_letter.
	Status string `msgpack:"status"`
	// NextAttemptAt and LeaseUntil are set for retry_scheduled: the node
	// keeps the delivery and must report again by LeaseUntil.
	NextAttemptAt Millis `msgpack:"next,omitempty"`
	LeaseUntil    Millis `msgpack:"lease,omitempty"`
	// Gone: the receiver answered 410, so its endpoint is disabled.
	Gone bool `msgpack:"gone,omitempty"`
	// Unreachable: no HTTP answer (timeout, connection error); it feeds the
	// target's circuit breaker (breaker.go). Older nodes ignore it.
	Unreachable bool `msgpack:"unreach,omitempty"`
}

// Assign moves deliveries to other nodes (their node died or their lease
// passed). It does not consume an attempt.
type Assign struct {
	At          Millis       `msgpack:"at,omitempty"`
	Assignments []Assignment `msgpack:"asg,omitempty"`
}

// Assignment gives one delivery a new node, fence and lease, if its fence is
// still IfFence.
type Assignment struct {
	DeliveryID    string `msgpack:"id"`
	IfFence       uint64 `msgpack:"iffence"`
	Node          string `msgpack:"node"`
	LeaseUntil    Millis `msgpack:"lease"`
	NextAttemptAt Millis `msgpack:"next,omitempty"` // 0 keeps the current due time
}

// Prune removes history older than the retention period: terminal
// deliveries (with their attempts), terminal occurrences that no active
// delivery still refers to, and settled events that no delivery in the live
// state still needs, completed at or before Before, at most Limit of each per
// command.
type Prune struct {
	Before Millis `msgpack:"before"`
	Limit  int    `msgpack:"limit"`
	// IdempotencyBefore also removes up to Limit remembered Idempotency-Key
	// answers that expired at or before it (0: none).
	IdempotencyBefore Millis `msgpack:"idem,omitempty"`
}

// state is a view of the transaction being applied, archive included, with
// this command's own writes.
func (a *applier) state() *State {
	return &State{txn: a.txn, arch: a.arch.view(), archAt: math.MaxUint64}
}

// eachItem applies one item at a time and gives each its own result, so one
// stale or bad item never blocks the rest of a command.
func eachItem[T any](a *applier, items []T, apply func(*T) *Error) []*Result {
	out := make([]*Result, len(items))
	for i := range items {
		out[i] = &Result{Index: a.index, Err: errOf(apply(&items[i]))}
	}
	return out
}

// fire applies a Fire; one result per job, then one per event.
func (a *applier) fire(f *Fire) []*Result {
	jobs := eachItem(a, f.Jobs, func(jf *JobFire) *Error { return a.jobFire(f.At, jf, f.Initiator) })
	return append(jobs, eachItem(a, f.Events, func(ef *EventFire) *Error { return a.eventFire(f.At, ef) })...)
}

func (a *applier) jobFire(at Millis, jf *JobFire, initiator string) *Error {
	job := jf.Job
	cur, _ := a.first(TableJobs, IndexID, job.ID).(*Job)
	switch {
	case cur == nil:
		return notFound("job", "job %q not found", job.ID)
	case job.ModifyIndex == 0 || cur.ModifyIndex != job.ModifyIndex:
		return conflict("job", "job %q was modified at index %d, not %d", job.ID, cur.ModifyIndex, job.ModifyIndex)
	case job.Project != cur.Project:
		return invalid("job", "job %q cannot move to another project", job.ID)
	}
	if o := jf.Occurrence; o != nil {
		if o.JobID != job.ID || o.Project != job.Project || o.ID == "" {
			return invalid("occurrence", "occurrence must have an id and belong to job %q", job.ID)
		}
		// memdb and the archive (finished occurrences) directly: this runs
		// for every fire, and the State lookups would build an error for
		// each miss.
		v := a.arch.view()
		if a.first(TableOccurrences, IndexID, o.ID) != nil || v.find(archOccurrence, o.ID, math.MaxUint64) >= 0 {
			return conflict("occurrence", "occurrence %q already exists", o.ID)
		}
		if o.IdentityKey != "" && (a.first(TableOccurrences, IndexIdentity, o.JobID, o.IdentityKey) != nil ||
			v.occurrenceBy(o.JobID, 0, o.IdentityKey, math.MaxUint64) != nil) {
			return conflict("occurrence", "job %q already has an occurrence for slot %q", job.ID, o.IdentityKey)
		}
		if a.first(TableOccurrences, IndexJobNumber, o.JobID, o.Number) != nil ||
			v.occurrenceBy(o.JobID, o.Number, "", math.MaxUint64) != nil {
			return conflict("occurrence", "job %q already has occurrence number %d", job.ID, o.Number)
		}
	}
	if e := a.checkNewDeliveries(job.Project, jf.Deliveries); e != nil {
		return e
	}
	deliveries, skipWhy := jf.Deliveries, ""
	if n := int64(len(deliveries)); n > 0 && jf.Occurrence != nil {
		if jf.Occurrence.Manual { // a trigger is a publish: refused over quota
			if e := a.quota(job.Project, QuotaPublish, at, n); e != nil {
				return e
			}
		} else if e := a.fireQuota(job.Project, n); e != nil {
			// A scheduled fire over quota is not refused (the schedule
			// moves on as planned) but skipped, visibly, with its reason.
			deliveries, skipWhy = nil, e.Message
		}
	}

	job.setIndexes(cur.CreateIndex, a.index)
	a.mustInsert(TableJobs, &job)
	if jf.Occurrence != nil {
		o := *jf.Occurrence
		if skipWhy != "" {
			o.Status, o.CompletedAt, o.SkipReason = OccurrenceSkipped, at, "quota_exceeded: "+skipWhy
		}
		o.setIndexes(a.index, a.index)
		a.storeOccurrence(nil, &o) // a cooldown occurrence is finished from the start
		a.occurrenceEvent(EventOccurrenceCreated, &o, initiator)
	}
	for _, id := range jf.Missed {
		o, _ := a.first(TableOccurrences, IndexID, id).(*Occurrence)
		if o == nil || o.JobID != job.ID || o.Status != OccurrencePending {
			continue
		}
		m := *o
		m.Status, m.CompletedAt = OccurrenceMissed, at
		m.setIndexes(o.CreateIndex, a.index)
		a.storeOccurrence(o, &m)
		a.occurrenceEvent(EventOccurrenceMissed, &m, "")
	}
	a.insertDeliveries(deliveries)
	return nil
}

func (a *applier) eventFire(at Millis, ef *EventFire) *Error {
	cur, _ := a.first(TableEvents, IndexID, ef.EventID).(*Event)
	switch {
	case cur == nil:
		return notFound("event", "event %q not found", ef.EventID)
	case cur.ModifyIndex != ef.IfIndex:
		return conflict("event", "event %q was modified at index %d, not %d", ef.EventID, cur.ModifyIndex, ef.IfIndex)
	case cur.Status != EventScheduled:
		return conflict("event", "event %q is already %s", ef.EventID, cur.Status)
	}
	if e := a.checkNewDeliveries(cur.Project, ef.Deliveries); e != nil {
		return e
	}
	ev := *cur
	ev.Status, ev.PublishedAt = EventPublished, at
	deliveries := ef.Deliveries
	if n := int64(len(deliveries)); n > 0 {
		// One event fans out to every subscriber: checked as a scheduled
		// fire is. Over the limit it is not refused (the poller would plan
		// it again on every tick) but skipped, visibly, with no delivery.
		if e := a.fireQuota(cur.Project, n); e != nil {
			ev.Status, ev.PublishedAt, ev.SkipReason = EventSkipped, 0, "quota_exceeded: "+e.Message
			deliveries = nil
		}
	}
	ev.setIndexes(cur.CreateIndex, a.index)
	a.mustInsert(TableEvents, &ev)
	a.insertDeliveries(deliveries)
	return nil
}

func (a *applier) checkNewDeliveries(project string, ds []Delivery) *Error {
	seen := map[string]bool{}
	for i := range ds {
		d := &ds[i]
		switch {
		case d.ID == "" || seen[d.ID]:
			return invalid("deliveries", "delivery ids must be present and distinct")
		case d.Project != project:
			return invalid("deliveries", "delivery %q belongs to project %q, not %q", d.ID, d.Project, project)
		case d.Status != DeliveryPending && d.Status != DeliveryHeld:
			return invalid("deliveries", "a new delivery is pending or held, not %q", d.Status)
		case d.Status == DeliveryPending && d.AssignedNode == "":
			return invalid("deliveries", "pending delivery %q has no node", d.ID)
		}
		if a.first(TableDeliveries, IndexID, d.ID) != nil || a.archivedAt(archDelivery, d.ID) >= 0 {
			return conflict("deliveries", "delivery %q already exists", d.ID)
		}
		// Held because the planner saw its endpoint disabled; if the endpoint
		// was enabled since, the plan is stale: storing it would leave the
		// delivery held after the enable's release already ran. Refuse it so
		// the poller plans again from the current state.
		if d.Status == DeliveryHeld {
			if ep, _ := a.first(TableEndpoints, IndexID, d.EndpointID).(*Endpoint); ep != nil && ep.Enabled {
				return conflict("deliveries", "endpoint %q was enabled after delivery %q was planned as held", ep.ID, d.ID)
			}
		}
		seen[d.ID] = true
	}
	return nil
}

func (a *applier) insertDeliveries(ds []Delivery) {
	for i := range ds {
		d := ds[i]
		d.Fence = a.index
		d.setIndexes(a.index, a.index)
		a.mustInsert(TableDeliveries, &d)
	}
}

// deliveryResults applies a batch of attempt outcomes.
func (a *applier) deliveryResults(b *DeliveryResults) []*Result {
	return eachItem(a, b.Results, func(r *DeliveryResult) *Error { return a.deliveryResult(b.At, r) })
}

func (a *applier) deliveryResult(at Millis, r *DeliveryResult) *Error {
	cur, _ := a.first(TableDeliveries, IndexID, r.DeliveryID).(*Delivery)
	switch {
	case cur == nil:
		return notFound("delivery", "delivery %q not found", r.DeliveryID)
	case cur.Fence != r.Fence:
		return conflict("fence", "delivery %q is assigned under fence %d; result for fence %d refused", cur.ID, cur.Fence, r.Fence)
	case !cur.Active():
		return conflict("status", "delivery %q is %s", cur.ID, cur.Status)
	case r.Attempt.Number != 0 && r.Attempt.Number != cur.Attempts+1:
		// The same report applied twice (a node re-sends a batch whose first
		// commit it could not confirm): one attempt must not count twice.
		return conflict("attempt", "delivery %q has %d attempts; a result for attempt %d is stale", cur.ID, cur.Attempts, r.Attempt.Number)
	}
	switch r.Status {
	case DeliverySucceeded, DeliveryDeadLetter:
	case DeliveryRetryScheduled:
		if r.NextAttemptAt == 0 || r.LeaseUntil <= r.NextAttemptAt {
			return invalid("status", "a retry needs a due time and a lease ending after it")
		}
	default:
		return invalid("status", "a result is succeeded, retry_scheduled or dead_letter, not %q", r.Status)
	}

	d := *cur
	d.Attempts++
	att := r.Attempt
	att.DeliveryID, att.Number, att.Fence = d.ID, d.Attempts, d.Fence
	att.setIndexes(a.index, a.index)

	d.Status, d.LastStatusCode, d.LastError, d.UpdatedAt = r.Status, att.StatusCode, att.Error, at
	if r.Status == DeliveryRetryScheduled {
		d.NextAttemptAt, d.LeaseUntil = r.NextAttemptAt, r.LeaseUntil
	} else {
		d.CompletedAt, d.LeaseUntil = at, 0
	}
	d.setIndexes(cur.CreateIndex, a.index)
	if belongsInArchive(&d) {
		a.archiveDelivery(cur, &d, &att)
	} else {
		a.mustInsert(TableAttempts, &att)
		a.mustInsert(TableDeliveries, &d)
	}
	// A test call (POST /v1/endpoints/{id}/test) answers its caller and
	// counts neither for nor against the endpoint.
	if typ := a.eventType(&d); typ != EventWebhookTest {
		if d.Status == DeliveryDeadLetter && typ != EventDeliveryDeadLettered {
			a.deadLettered(&d)
		}
		if d.EndpointID != "" {
			a.endpointHealth(at, &d, r.Gone)
		}
		a.breakerResult(at, &d, r)
	}
	if d.Terminal() && d.OccurrenceID != "" {
		a.completeOccurrenceIfDone(at, d.OccurrenceID)
	}
	return nil
}

// endpointHealth keeps the consecutive-failure counter (001): a success
// resets it, a dead letter adds one, and reaching the limit or a 410 disables
// the endpoint and emits endpoint.disabled.
func (a *applier) endpointHealth(at Millis, d *Delivery, gone bool) {
	cur, _ := a.first(TableEndpoints, IndexID, d.EndpointID).(*Endpoint)
	if cur == nil {
		return // deleted meanwhile
	}
	ep := *cur
	reason := ""
	switch {
	case d.Status == DeliverySucceeded:
		if ep.ConsecutiveFailures == 0 {
			return
		}
		ep.ConsecutiveFailures = 0
	case d.Status == DeliveryDeadLetter:
		ep.ConsecutiveFailures++
		if ep.ConsecutiveFailures >= EndpointFailureLimit {
			reason = fmt.Sprintf("%d consecutive deliveries failed", ep.ConsecutiveFailures)
		}
	}
	if gone {
		reason = "the receiver answered 410 Gone"
	}
	if d.Status == DeliveryRetryScheduled && !gone {
		return
	}
	if reason != "" && ep.Enabled {
		ep.Enabled, ep.DisabledReason = false, reason
		a.endpointDisabled(at, &ep, "")
	}
	ep.UpdatedAt = at
	ep.setIndexes(cur.CreateIndex, a.index)
	a.mustInsert(TableEndpoints, &ep)
}

// completeOccurrenceIfDone completes a pending occurrence once all of its
// deliveries are finished (succeeded, dead-lettered or cancelled; the series
// goes on after a failure, as in 002), unless its job completes occurrences
// by hand. The job's LastCompletedAt feeds the cooldown rule (000) and is
// kept for jobs that have a cooldown.
func (a *applier) completeOccurrenceIfDone(at Millis, occID string) {
	o, _ := a.first(TableOccurrences, IndexID, occID).(*Occurrence)
	if o == nil || o.Status != OccurrencePending {
		return
	}
	job, _ := a.first(TableJobs, IndexID, o.JobID).(*Job)
	if job != nil && job.ManualCompletion {
		return
	}
	if a.allDeliveriesTerminal(occID) {
		a.finishOccurrence(o, OccurrenceCompleted, at, job, "")
	}
}

// finishOccurrence stores o with a terminal status. A completion also sets
// the job's LastCompletedAt, which only feeds the cooldown rule: a job
// without a cooldown is not rewritten (a job write updates all of its
// indexes, and completions are the hot path).
func (a *applier) finishOccurrence(cur *Occurrence, status string, at Millis, job *Job, initiator string) {
	o := *cur
	o.Status, o.CompletedAt = status, at
	o.setIndexes(cur.CreateIndex, a.index)
	a.storeOccurrence(cur, &o)
	typ := EventOccurrenceCompleted
	if status == OccurrenceSkipped {
		typ = EventOccurrenceSkipped
	}
	a.occurrenceEvent(typ, &o, initiator)
	if status == OccurrenceCompleted && job != nil && job.CooldownMs > 0 && job.LastCompletedAt < at {
		j := *job
		j.LastCompletedAt = at
		j.setIndexes(job.CreateIndex, a.index)
		a.mustInsert(TableJobs, &j)
	}
}

// assign applies reassignments; the new fence is the command's Raft index.
func (a *applier) assign(b *Assign) []*Result {
	return eachItem(a, b.Assignments, func(as *Assignment) *Error { return a.assignOne(b.At, as) })
}

func (a *applier) assignOne(at Millis, as *Assignment) *Error {
	cur, _ := a.first(TableDeliveries, IndexID, as.DeliveryID).(*Delivery)
	switch {
	case cur == nil:
		return notFound("delivery", "delivery %q not found", as.DeliveryID)
	case cur.Fence != as.IfFence:
		return conflict("fence", "delivery %q is under fence %d, not %d", cur.ID, cur.Fence, as.IfFence)
	case !cur.Active():
		return conflict("status", "delivery %q is %s", cur.ID, cur.Status)
	case as.Node == "":
		return invalid("node", "an assignment needs a node")
	}
	d := *cur
	d.AssignedNode, d.Fence, d.LeaseUntil, d.UpdatedAt = as.Node, a.index, as.LeaseUntil, at
	if as.NextAttemptAt != 0 {
		d.NextAttemptAt = as.NextAttemptAt
	}
	d.setIndexes(cur.CreateIndex, a.index)
	a.mustInsert(TableDeliveries, &d)
	return nil
}

// prune removes old terminal history. Occurrences go only once no active
// delivery refers to them.
func (a *applier) prune(p *Prune) *Result {
	res := &Result{Index: a.index}
	if p.Limit <= 0 {
		res.Err = invalid("limit", "limit must be positive")
		return res
	}
	st := a.state()
	a.pruneArchive(p.Before)
	a.pruneBreakers(p.Before, p.Limit)
	for _, d := range st.TerminalDeliveries(p.Before, p.Limit) {
		for _, att := range st.Attempts(d.ID) {
			a.mustDelete(TableAttempts, att)
		}
		a.mustDelete(TableDeliveries, d)
	}
	// Events go too (every change of a job with a subscriber raised one,
	// kept for good before), once settled before the cut-off and no longer
	// needed by a delivery in the live state: a pending, retrying or held
	// one sends the event's data, and a dead letter may be replayed. Those
	// are passed over, within a bounded look so that a few held deliveries
	// cannot stop the rest from going.
	removed := 0
	for _, e := range st.SettledEvents(p.Before, 4*p.Limit) {
		if removed == p.Limit {
			break
		}
		if st.iter(TableDeliveries, IndexEvent, e.ID).Next() != nil {
			continue
		}
		a.mustDelete(TableEvents, e)
		removed++
	}
	if p.IdempotencyBefore != 0 {
		var expired []*IdempotencyRecord
		it := st.iter(TableIdempotency, IndexExpires)
		for obj := it.Next(); obj != nil && len(expired) < p.Limit; obj = it.Next() {
			r := obj.(*IdempotencyRecord)
			if r.ExpiresAt > p.IdempotencyBefore {
				break
			}
			expired = append(expired, r)
		}
		for _, r := range expired {
			a.mustDelete(TableIdempotency, r)
		}
	}
	return res
}

// allDeliveriesTerminal reports whether every delivery of the occurrence is
// finished.
func (a *applier) allDeliveriesTerminal(occID string) bool {
	for _, d := range a.state().UnsettledDeliveriesByOccurrence(occID) {
		if !d.Terminal() {
			return false
		}
	}
	return true
}
