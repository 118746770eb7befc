package fsm

// Operator actions on deliveries and occurrences (retry, cancel, release a
// held delivery, complete or skip an occurrence). They are commands of their
// own rather than Puts because each one moves a record through its state
// machine with side effects that must happen in the same transaction: a new
// fence for a re-queued delivery, the occurrence completing once its last
// delivery is cancelled, the job's LastCompletedAt for the cooldown rule.

// Delivery control actions.
const (
	// ActionRetry re-queues a dead-lettered or cancelled delivery (001's
	// retry, 004's replay) for MoreAttempts further attempts.
	ActionRetry = "retry"
	// ActionCancel cancels a delivery that has not succeeded (004).
	ActionCancel = "cancel"
	// ActionRelease turns a held delivery (its endpoint was disabled) into a
	// pending one, when the endpoint is enabled with releaseHeld.
	ActionRelease = "release"
)

// Occurrence control actions (000).
const (
	ActionComplete = "complete"
	ActionSkip     = "skip"
)

// DeliveryControl applies operator actions to deliveries, one result each.
type DeliveryControl struct {
	At      Millis           `msgpack:"at,omitempty"`
	Actions []DeliveryAction `msgpack:"acts,omitempty"`
}

// DeliveryAction is one action. Retry and release also place the delivery:
// Node and LeaseUntil are its new assignment (the fence is the command's
// index), and it is due at the command's At.
type DeliveryAction struct {
	DeliveryID   string `msgpack:"id"`
	Action       string `msgpack:"act"`
	Node         string `msgpack:"node,omitempty"`
	LeaseUntil   Millis `msgpack:"lease,omitempty"`
	MoreAttempts int    `msgpack:"more,omitempty"`
}

// OccurrenceControl completes or skips pending occurrences, one result each.
// Skipping cancels the occurrence's deliveries that have not finished.
type OccurrenceControl struct {
	At      Millis   `msgpack:"at,omitempty"`
	Action  string   `msgpack:"act"`
	IDs     []string `msgpack:"ids"`
	Project string   `msgpack:"proj"` // the caller's project: another project's occurrence is not found
	// Initiator is the token id of the caller, for the lifecycle events.
	Initiator string `msgpack:"by,omitempty"`
}

// DeliveryControlCommand encodes c.
func DeliveryControlCommand(c DeliveryControl) ([]byte, error) {
	return Encode(CmdDeliveryControl, &c)
}

// OccurrenceControlCommand encodes c.
func OccurrenceControlCommand(c OccurrenceControl) ([]byte, error) {
	return Encode(CmdOccurrenceControl, &c)
}

func (a *applier) deliveryControl(c *DeliveryControl) []*Result {
	return eachItem(a, c.Actions, func(act *DeliveryAction) *Error { return a.deliveryAction(c.At, act) })
}

func (a *applier) deliveryAction(at Millis, act *DeliveryAction) *Error {
	// A succeeded delivery is read from the archive: every action refuses it
	// below, with the answer it gives any other status it does not apply to.
	cur, _ := a.state().Delivery(act.DeliveryID)
	if cur == nil {
		return notFound("delivery", "delivery %q not found", act.DeliveryID)
	}
	d := *cur
	switch act.Action {
	case ActionRetry, ActionRelease:
		switch {
		case act.Action == ActionRetry && cur.Status != DeliveryDeadLetter && cur.Status != DeliveryCancelled:
			return conflict("status", "delivery %q is %s; only a dead-lettered or cancelled delivery can be retried", cur.ID, cur.Status)
		case act.Action == ActionRelease && cur.Status != DeliveryHeld:
			return conflict("status", "delivery %q is %s, not held", cur.ID, cur.Status)
		case act.Node == "" || act.LeaseUntil <= at:
			return invalid("node", "a re-queued delivery needs a node and a lease ending after now")
		}
		if cur.Status == DeliveryCancelled {
			// A cancelled delivery is not counted as undelivered; retrying
			// it counts it again, like a new publish: without this check,
			// "fill, cancel, fill, retry" would pass any maxUndelivered.
			if e := a.quota(cur.Project, QuotaPublish, at, 1); e != nil {
				return e
			}
		}
		if act.Action == ActionRetry {
			more := max(act.MoreAttempts, 1)
			d.MaxAttempts = d.Attempts + more
		}
		d.Status, d.NextAttemptAt, d.CompletedAt = DeliveryPending, at, 0
		d.AssignedNode, d.Fence, d.LeaseUntil = act.Node, a.index, act.LeaseUntil
	case ActionCancel:
		if cur.Terminal() {
			return conflict("status", "delivery %q is already %s", cur.ID, cur.Status)
		}
		a.cancelDelivery(cur, at)
		if cur.OccurrenceID != "" {
			a.completeOccurrenceIfDone(at, cur.OccurrenceID)
		}
		return nil
	default:
		return invalid("action", "unknown delivery action %q", act.Action)
	}
	d.UpdatedAt = at
	d.setIndexes(cur.CreateIndex, a.index)
	a.mustInsert(TableDeliveries, &d)
	return nil
}

func (a *applier) occurrenceControl(c *OccurrenceControl) []*Result {
	return eachItem(a, c.IDs, func(id *string) *Error { return a.occurrenceAction(c, *id) })
}

func (a *applier) occurrenceAction(c *OccurrenceControl, id string) *Error {
	// A finished occurrence is read from the archive; the status check below
	// refuses it.
	cur, _ := a.state().Occurrence(id)
	switch {
	case cur == nil || (c.Project != "" && cur.Project != c.Project):
		return notFound("occurrence", "occurrence %q not found", id)
	case c.Action != ActionComplete && c.Action != ActionSkip:
		return invalid("action", "unknown occurrence action %q", c.Action)
	case cur.Status != OccurrencePending:
		return conflict("status", "occurrence %q is already %s", id, cur.Status)
	}
	if c.Action == ActionSkip {
		a.finishOccurrence(cur, OccurrenceSkipped, c.At, nil, c.Initiator)
		for _, d := range a.state().UnsettledDeliveriesByOccurrence(id) {
			if !d.Terminal() {
				a.cancelDelivery(d, c.At)
			}
		}
		return nil
	}
	job, _ := a.first(TableJobs, IndexID, cur.JobID).(*Job)
	a.finishOccurrence(cur, OccurrenceCompleted, c.At, job, c.Initiator)
	return nil
}

// cancelDelivery stores d cancelled at at.
func (a *applier) cancelDelivery(cur *Delivery, at Millis) {
	d := *cur
	d.Status, d.CompletedAt, d.LeaseUntil, d.UpdatedAt = DeliveryCancelled, at, 0, at
	d.setIndexes(cur.CreateIndex, a.index)
	a.mustInsert(TableDeliveries, &d)
}
