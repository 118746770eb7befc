package scheduler

import (
	"errors"
	"fmt"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
)

// This file turns decisions into records: the occurrence of a slot or of a
// manual trigger, and one delivery per destination, already placed on a node.
// The poller and the API's trigger share it, so a triggered occurrence is
// built exactly like a scheduled one.

// CallbackDestination is the destination part of the id of a job's inline
// callback delivery (endpoint deliveries use the endpoint id).
const CallbackDestination = "callback"

// fanout builds deliveries for one tick (or one trigger). It caches each
// project's endpoints for the tick, since many jobs of a project fire at once.
type fanout struct {
	st        *fsm.State
	nodes     []string // where deliveries may run, sorted (cluster.DeliveryNodes)
	now       fsm.Millis
	endpoints map[string][]*fsm.Endpoint
}

func newFanout(st *fsm.State, nodes []string, now time.Time) *fanout {
	return &fanout{st: st, nodes: nodes, now: fsm.MillisOf(now), endpoints: map[string][]*fsm.Endpoint{}}
}

func (f *fanout) projectEndpoints(project string) []*fsm.Endpoint {
	eps, ok := f.endpoints[project]
	if !ok {
		eps, _ = f.st.Endpoints(project, "", 0)
		f.endpoints[project] = eps
	}
	return eps
}

// delivery is a new delivery to dest ("callback" or an endpoint id), pending
// and placed, or held when its endpoint is disabled.
func (f *fanout) delivery(project, source, dest string, timeoutMs int64, maxAttempts int, scheduledFor fsm.Millis, held bool) fsm.Delivery {
	d := fsm.Delivery{
		ID:      fsm.DerivedID("dlv", f.now, source, dest),
		Project: project, Status: fsm.DeliveryPending, MaxAttempts: max(maxAttempts, 1),
		NextAttemptAt: f.now, ScheduledFor: scheduledFor, CreatedAt: f.now, UpdatedAt: f.now,
	}
	if dest != CallbackDestination {
		d.EndpointID = dest
	}
	if held {
		d.Status = fsm.DeliveryHeld
		return d
	}
	d.AssignedNode = cluster.Place(d.ID, f.nodes)
	d.LeaseUntil = fsm.LeaseUntil(f.now, fsm.TimeoutOf(timeoutMs))
	return d
}

// jobDeliveries: the inline callback, if any, and every endpoint of the
// project subscribed to the job's event type.
func (f *fanout) jobDeliveries(job *fsm.Job, occ *fsm.Occurrence) []fsm.Delivery {
	var out []fsm.Delivery
	if job.CallbackURL != "" {
		out = append(out, f.delivery(job.Project, occ.ID, CallbackDestination, job.TimeoutMs, job.Retry.MaxAttempts, occ.ScheduledFor, false))
	}
	if job.EventType != "" {
		for _, ep := range f.projectEndpoints(job.Project) {
			if ep.Subscribed(job.EventType) {
				out = append(out, f.delivery(job.Project, occ.ID, ep.ID, ep.TimeoutMs, ep.Retry.MaxAttempts, occ.ScheduledFor, !ep.Enabled))
			}
		}
	}
	for i := range out {
		out[i].JobID, out[i].OccurrenceID = job.ID, occ.ID
	}
	return out
}

// eventDeliveries: every endpoint of the project subscribed to the event's
// type but the one it must skip (an endpoint.disabled event never goes to
// the endpoint it is about), or the one endpoint it is for (webhook.test: sent
// even to a disabled endpoint, since checking it is the point, and tried
// once: its caller waits for the answer).
func (f *fanout) eventDeliveries(ev *fsm.Event) []fsm.Delivery {
	var out []fsm.Delivery
	for _, ep := range f.projectEndpoints(ev.Project) {
		held, attempts := !ep.Enabled, ep.Retry.MaxAttempts
		switch {
		case ev.OnlyEndpoint != "":
			if ep.ID != ev.OnlyEndpoint {
				continue
			}
			held, attempts = false, 1
		case ep.ID == ev.SkipEndpoint || !ep.Subscribed(ev.Type):
			continue
		}
		d := f.delivery(ev.Project, ev.ID, ep.ID, ep.TimeoutMs, attempts, ev.ScheduledAt, held)
		d.EventID = ev.ID
		out = append(out, d)
	}
	return out
}

// olderPending lists the job's pending occurrences that a new occurrence
// makes missed (000). An occurrence whose deliveries are still running is
// in progress, not missed: it completes when they finish.
func (f *fanout) olderPending(job *fsm.Job) []string {
	var out []string
	after := ""
	for {
		page, next := f.st.OccurrencesByStatus(job.ID, fsm.OccurrencePending, after, 500)
		for _, o := range page {
			if !f.hasActiveDelivery(o.ID) {
				out = append(out, o.ID)
			}
		}
		if next == "" {
			return out
		}
		after = next
	}
}

func (f *fanout) hasActiveDelivery(occID string) bool {
	for _, d := range f.st.UnsettledDeliveriesByOccurrence(occID) {
		if d.Active() {
			return true
		}
	}
	return false
}

// occurrenceKey is the Chime-Idempotency-Key of an occurrence (002): the
// job's idempotencyKey for a one-shot, "<idempotencyKey>-<number>" for a
// recurring job, and without one the job id and the slot's identity key (or
// the occurrence id for a manual trigger), which no other occurrence shares.
func occurrenceKey(job *fsm.Job, o *fsm.Occurrence) string {
	switch {
	case job.IdempotencyKey != "" && job.ScheduleKind == KindOnce && !o.Manual:
		return job.IdempotencyKey
	case job.IdempotencyKey != "":
		return fmt.Sprintf("%s-%d", job.IdempotencyKey, o.Number)
	case o.IdentityKey != "":
		return job.ID + ":" + o.IdentityKey
	}
	return o.ID
}

// newOccurrence is the job's next occurrence, for a slot or (manual) now.
func (f *fanout) newOccurrence(job *fsm.Job, slot Slot, manual bool, missed int64, cooldown bool) *fsm.Occurrence {
	o := &fsm.Occurrence{
		JobID: job.ID, Project: job.Project, Number: job.LastNumber + 1, FiredAt: f.now,
		Status: fsm.OccurrencePending, MissedCount: missed, Manual: manual,
	}
	if manual {
		o.ID = fsm.NewID("occ", f.now.Time())
		o.ScheduledFor = f.now
	} else {
		o.ID = fsm.DerivedID("occ", fsm.MillisOf(slot.At), job.ID, slot.Key)
		o.IdentityKey, o.ScheduledFor = slot.Key, fsm.MillisOf(slot.At)
	}
	if cooldown {
		o.Status, o.CompletedAt = fsm.OccurrenceCooldown, f.now
	}
	o.IdempotencyKey = occurrenceKey(job, o)
	return o
}

// fired returns the job after o was created, with its deliveries.
func (f *fanout) fire(job *fsm.Job, o *fsm.Occurrence) fsm.JobFire {
	next := *job
	next.LastNumber, next.LastOccurrenceID, next.LastFiredAt = o.Number, o.ID, f.now
	if !o.Manual {
		next.OccurrenceCount++
	}
	jf := fsm.JobFire{Job: next, Occurrence: o, Missed: f.olderPending(job)}
	if o.Status == fsm.OccurrencePending {
		jf.Deliveries = f.jobDeliveries(job, o)
	}
	return jf
}

// ErrJobNotTriggerable: a cancelled job cannot be triggered.
var ErrJobNotTriggerable = errors.New("a cancelled job cannot be triggered")

// TriggerFire builds the manual trigger of job at now (000): a new occurrence
// whatever the schedule or status (paused, completed and archived jobs too),
// delivered like a scheduled one. It does not use up maxOccurrences and does
// not move the schedule. nodes is cluster.DeliveryNodes(). Apply it with
// fsm.CmdFire; a concurrent change of the job makes it a conflict to retry.
func TriggerFire(st *fsm.State, job *fsm.Job, nodes []string, now time.Time) (fsm.JobFire, error) {
	if job.Status == fsm.JobCancelled {
		return fsm.JobFire{}, ErrJobNotTriggerable
	}
	f := newFanout(st, nodes, now)
	return f.fire(job, f.newOccurrence(job, Slot{}, true, 0, false)), nil
}

// RequeueLease is the node and lease for a delivery re-queued by hand (retry,
// release): placed like a new one, due now.
func RequeueLease(st *fsm.State, d *fsm.Delivery, nodes []string, now time.Time) (node string, lease fsm.Millis) {
	return cluster.Place(d.ID, nodes), fsm.LeaseUntil(fsm.MillisOf(now), st.TargetTimeout(d))
}
