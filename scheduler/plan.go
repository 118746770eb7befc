package scheduler

import "time"

// This file is the poller's pure decision: given a compiled schedule, the job's state and
// the current time, what occurrence (if any) to create and when the job is next due.

// maxCountedMissed caps how many missed slots Plan counts one by one for civil schedules
// (intervals are counted arithmetically); beyond it MissedCount saturates. 100,000 slots
// is more than two months of an every-minute cron, and bounds the work of one Plan call.
const maxCountedMissed = 100_000

// Policy is the job-level part of a spec: how missed slots, cooldown and the run limit are
// handled. Schedule.Policy returns the spec's values.
type Policy struct {
	// CatchUp is CatchUpOne ("" means the same) or CatchUpNone.
	CatchUp string
	// MisfireGrace: a slot late by less than this always fires. Zero or negative means the
	// default, 60 s.
	MisfireGrace time.Duration
	// Cooldown: an occurrence created less than this after LastCompletedAt is a cooldown
	// occurrence (created, but no webhook). Zero disables it.
	Cooldown time.Duration
	// MaxOccurrences ends the job after this many scheduled occurrences; 0 = no limit.
	MaxOccurrences int64
}

// JobState is what the poller knows about a job between ticks.
type JobState struct {
	// NextFireAt is the nominal time of the slot the job is waiting for. The API sets it
	// from Schedule.First at creation (see InitialState); after each decision it is
	// Decision.NextFireAt. Zero means no slot is left.
	NextFireAt time.Time
	// OccurrenceCount is the number of occurrences the schedule has created so far
	// (catch-up and cooldown occurrences included). Manual triggers must not be counted:
	// they do not use up maxOccurrences.
	OccurrenceCount int64
	// LastCompletedAt is when an occurrence of the job was last marked completed (zero if
	// never); it drives the cooldown.
	LastCompletedAt time.Time
	Policy
}

// InitialState is the state of a new job: waiting for the first slot, with the spec's
// policy. It is false when the schedule has no slot (Compile does not allow that).
func (s *Schedule) InitialState() (JobState, bool) {
	first, ok := s.First()
	return JobState{NextFireAt: first.At, Policy: s.policy}, ok
}

// Decision is the outcome of Plan for one job.
type Decision struct {
	// Fire: create an occurrence for Slot now.
	Fire bool
	// Slot is the occurrence's nominal slot: its scheduled time and identity key. For a
	// catch-up it is the earliest missed slot.
	Slot Slot
	// MissedCount is the number of slots that were late by at least the misfire grace when
	// this decision was taken: with CatchUpOne the occurrence at Slot stands for all of them
	// (so MissedCount > 0 marks a catch-up occurrence); with CatchUpNone none of them fired.
	// It saturates at 100,000 for civil schedules.
	MissedCount int64
	// Cooldown: the occurrence is created with status cooldown and sends no webhook.
	Cooldown bool
	// NextFireAt is the job's next slot after this decision; the new JobState.NextFireAt.
	// It may be at or before now (further slots within the grace are due): call Plan again.
	// Zero when Completed.
	NextFireAt time.Time
	// Completed: the job has no slot left (maxOccurrences reached, endAtUtc passed, the
	// one-shot fired) and becomes completed, after creating the occurrence if Fire is set.
	Completed bool
}

// Plan decides what a due job does at now. The rules:
//
//   - Not due (now < NextFireAt): nothing; NextFireAt unchanged.
//   - The due slot is late by less than the misfire grace (a failover, a slow tick): it
//     fires, whatever the catch-up policy.
//   - Older slots (late by the grace or more) are missed. With CatchUpOne the earliest of
//     them fires, carrying MissedCount, and the job resumes at the first slot after
//     now - grace. With CatchUpNone they are skipped: the first slot after now - grace
//     fires in this decision if it is due, otherwise the job just moves on to it.
//   - Every fired occurrence counts toward MaxOccurrences; the one that reaches it
//     completes the job. A job whose schedule has no further slot completes too.
//   - Cooldown is decided at creation: now - LastCompletedAt < Cooldown.
//
// Plan decides one occurrence per call; PlanDue loops until the job is no longer due.
// It is a pure function of its arguments.
func Plan(sch *Schedule, st JobState, now time.Time) Decision {
	if st.NextFireAt.IsZero() || (st.MaxOccurrences > 0 && st.OccurrenceCount >= st.MaxOccurrences) {
		return Decision{Completed: true}
	}
	if now.Before(st.NextFireAt) {
		return Decision{NextFireAt: st.NextFireAt}
	}
	// Re-derive the slot (and its key) from the schedule: NextFireAt is only its time.
	due, ok := sch.Next(st.NextFireAt.Add(-time.Nanosecond))
	if !ok {
		return Decision{Completed: true}
	}
	if now.Before(due.At) { // NextFireAt was not a slot (the spec changed): wait for the real one
		return Decision{NextFireAt: due.At}
	}
	grace := st.MisfireGrace
	if grace <= 0 {
		grace = DefaultMisfireGraceSeconds * time.Second
	}
	cutoff := now.Add(-grace) // slots at or before cutoff are missed

	var d Decision
	var after time.Time // the next slot is the first one strictly after this
	switch {
	case due.At.After(cutoff):
		d.Fire, d.Slot, after = true, due, due.At
	case st.CatchUp == CatchUpNone:
		d.MissedCount = sch.countSlots(due, cutoff)
		if recent, ok := sch.Next(cutoff); ok && !recent.At.After(now) {
			d.Fire, d.Slot, after = true, recent, recent.At
		} else {
			after = cutoff
		}
	default: // CatchUpOne
		d.MissedCount = sch.countSlots(due, cutoff)
		d.Fire, d.Slot, after = true, due, cutoff
	}
	if d.Fire {
		d.Cooldown = st.Cooldown > 0 && !st.LastCompletedAt.IsZero() &&
			now.Sub(st.LastCompletedAt) < st.Cooldown
		if st.MaxOccurrences > 0 && st.OccurrenceCount+1 >= st.MaxOccurrences {
			d.Completed = true
			return d
		}
	}
	if next, ok := sch.Next(after); ok {
		d.NextFireAt = next.At
	} else {
		d.Completed = true
	}
	return d
}

// Apply returns the state after the poller has carried out d.
func (st JobState) Apply(d Decision) JobState {
	st.NextFireAt = d.NextFireAt
	if d.Fire {
		st.OccurrenceCount++
	}
	return st
}

// PlanDue calls Plan until the job is no longer due at now, is completed, or limit
// decisions have been made, and returns the decisions in order with the resulting state.
// Each decision either fires or moves NextFireAt; none is returned for a job that is not
// due.
func PlanDue(sch *Schedule, st JobState, now time.Time, limit int) ([]Decision, JobState) {
	var out []Decision
	for len(out) < limit {
		d := Plan(sch, st, now)
		if !d.Fire && !d.Completed && d.NextFireAt.Equal(st.NextFireAt) {
			break
		}
		out = append(out, d)
		st = st.Apply(d)
		if d.Completed || d.NextFireAt.After(now) {
			break
		}
	}
	return out, st
}

// countSlots counts the slots from first (included) through the instant last (included).
func (s *Schedule) countSlots(first Slot, last time.Time) int64 {
	if first.At.After(last) {
		return 0
	}
	if s.kind == KindInterval {
		n := s.firstK(last) - first.Seq // slots first.Seq .. firstK(last)-1
		if s.hasEnd {
			n = min(n, s.firstK(s.end)-first.Seq)
		}
		return n
	}
	n := int64(1)
	for at := first.At; n < maxCountedMissed; n++ {
		next, ok := s.Next(at)
		if !ok || next.At.After(last) {
			break
		}
		at = next.At
	}
	return n
}
