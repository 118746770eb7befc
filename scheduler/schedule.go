package scheduler

import (
	"fmt"
	"strconv"
	"time"
)

// Slot is one nominal firing time of a schedule.
type Slot struct {
	// At is the instant, in UTC.
	At time.Time
	// Key identifies the slot within its job, so that the same slot can never become two
	// occurrences: the civil nominal time and zone for civil schedules
	// ("2024-03-10T02:30:00[America/New_York]"), k for intervals ("17"), "once" for
	// one-shots. Prefix it with the job id for a global identity.
	Key string
	// Seq is k for intervals (At = anchor + k·recurrenceSeconds), 0 otherwise.
	Seq int64
}

// Schedule is a compiled spec. It is immutable and safe for concurrent use, so callers
// may cache it (for instance by job id and canonical spec bytes).
type Schedule struct {
	kind string
	spec Spec // normalised, defaults filled
	loc  *time.Location

	// lowerExcl: every slot is strictly after it. The later of startAt-1ns and the creation
	// time; for intervals, whose first slot may be the creation time, of startAt and the
	// creation time, minus 1ns; for a one-shot, its time minus 1ns.
	lowerExcl time.Time
	// start is startAt, or the creation time: its local date anchors "every N".
	start  time.Time
	end    time.Time // inclusive; zero when unbounded
	hasEnd bool

	onceAt time.Time // once

	anchor time.Time // interval: slot k is anchor + k·every
	every  int64     // seconds
	kMin   int64     // first k allowed by the lower bound

	rule civilRule // civil kinds

	policy Policy
}

// Compile validates s (as Validate does) and compiles it. created is the job's creation
// time: it is "now" for delaySeconds, the default lower bound of the slots, and the date
// that anchors the phase of "every N days / weeks / months" when startAt is not given. To
// get the same schedule on every node, compile the stored canonical spec with the stored
// creation time.
func Compile(s Spec, cfg Config, created time.Time) (*Schedule, error) {
	n, err := s.WithDefaults(cfg).normalized()
	if err != nil {
		return nil, err
	}
	created = created.UTC()
	sch := &Schedule{kind: n.Kind(), spec: n, loc: time.UTC}
	sch.policy = Policy{
		CatchUp:      n.CatchUp,
		MisfireGrace: time.Duration(*n.MisfireGraceSeconds) * time.Second,
	}
	if n.CooldownSeconds != nil {
		sch.policy.Cooldown = time.Duration(*n.CooldownSeconds) * time.Second
	}
	if n.MaxOccurrences != nil {
		sch.policy.MaxOccurrences = *n.MaxOccurrences
	}
	if n.Timezone != "" {
		if sch.loc, err = loadZone(n.Timezone); err != nil {
			return nil, fieldErr("timezone", "%v", err)
		}
	}
	// Slots are at or after startAt and strictly after the creation time: a past startAt
	// only sets the phase, it does not make slots before the job existed (they would all
	// be "missed" at once).
	var start time.Time
	sch.lowerExcl, sch.start = created, created
	if n.StartAt != "" {
		start, _ = parseInstant("startAt", n.StartAt)
		sch.start = start
		if s := start.Add(-time.Nanosecond); s.After(created) {
			sch.lowerExcl = s
		}
	}
	if n.EndAtUTC != "" {
		sch.end, _ = parseInstant("endAtUtc", n.EndAtUTC)
		sch.hasEnd = true
	}
	// Instants derived from the creation time are rounded up to a whole second, so that
	// slots read cleanly and never fall before the creation time.
	fromCreated := func(secs int64) time.Time {
		return ceilSecond(created).Add(time.Duration(secs) * time.Second)
	}

	switch sch.kind {
	case KindOnce:
		if n.FireAtUTC != "" {
			sch.onceAt, _ = parseInstant("fireAtUtc", n.FireAtUTC)
		} else {
			sch.onceAt = fromCreated(*n.DelaySeconds)
		}
		if sch.onceAt.Before(created) { // a time already past fires at once
			sch.onceAt = ceilSecond(created)
		}
		sch.lowerExcl = sch.onceAt.Add(-time.Nanosecond)
		return sch, nil
	case KindInterval:
		sch.every = *n.RecurrenceSeconds
		if sch.every < cfg.minInterval() {
			return nil, fieldErr("recurrenceSeconds", "must be at least %d", cfg.minInterval())
		}
		switch {
		case n.FireAtUTC != "":
			sch.anchor, _ = parseInstant("fireAtUtc", n.FireAtUTC)
		case n.DelaySeconds != nil:
			sch.anchor = fromCreated(*n.DelaySeconds)
		case !start.IsZero():
			sch.anchor = start // the series starts at startAt
		default:
			sch.anchor = fromCreated(sch.every)
		}
		// The first slot is at or after startAt and at or after the creation time (so that
		// delaySeconds 0 fires at once); a past fireAtUtc or startAt only sets the phase.
		lower := created
		if start.After(lower) {
			lower = start
		}
		sch.lowerExcl = lower.Add(-time.Nanosecond)
		sch.kMin = max(0, sch.firstK(sch.lowerExcl))
	case KindCalendar:
		var mask weekdayMask
		for _, d := range n.ScheduleDaysOfWeek {
			mask |= 1 << d
		}
		sch.rule = dayTimes{dates: everyDay{mask: mask}, times: clockSeconds(n.ScheduleTimes)}
	case KindRecurrence:
		sch.rule = sch.recurrenceRule(n.Recurrence)
	case KindRRule:
		p, err := parseRRule(n.RRule)
		if err != nil {
			return nil, fieldErr("rrule", "%v", err)
		}
		sch.rule = p.bind(sch.startDay())
	case KindCron:
		r, err := parseCron(n.Cron)
		if err != nil {
			return nil, fieldErr("cron", "%v", err)
		}
		sch.rule = r
	}

	// A schedule must have a slot; find it now, in bounded time, rather than never fire.
	if _, ok := sch.First(); !ok {
		if sch.hasEnd {
			unbounded := *sch
			unbounded.hasEnd = false
			if first, ok := unbounded.First(); ok {
				return nil, fieldErr("endAtUtc", "is before the first slot (%s)", formatInstant(first.At))
			}
		}
		field := map[string]string{KindCalendar: "scheduleTimes", KindRecurrence: "recurrence",
			KindRRule: "rrule", KindCron: "cron", KindInterval: "recurrenceSeconds"}[sch.kind]
		return nil, fieldErr(field, "has no slot within %d years of %s", horizonYears, formatInstant(sch.lowerExcl))
	}
	return sch, nil
}

// Validate reports whether the spec compiles with this configuration for a job created
// at now, as a *FieldError naming the first bad field.
func (s Spec) Validate(cfg Config, now time.Time) error {
	if err := s.checkLengths(); err != nil {
		return err
	}
	_, err := Compile(s, cfg, now)
	return err
}

// startDay is the day number of the local date that anchors the phase of "every N": the
// date of startAt, else of the creation time, in the schedule's zone.
func (s *Schedule) startDay() int64 {
	return wallClock(s.loc, s.start).day()
}

func (s *Schedule) recurrenceRule(r *Recurrence) civilRule {
	start := s.startDay()
	n := int64(*r.Interval)
	times := clockSeconds(r.Times)
	switch r.Frequency {
	case "daily":
		return dayTimes{dates: everyNDays{anchor: start, n: n}, times: times}
	case "weekly":
		var mask weekdayMask
		for _, w := range r.Weekdays {
			mask |= 1 << weekdayCodes[w]
		}
		return dayTimes{dates: everyNWeeks{anchorWeek: mondayWeek(start), n: n, mask: mask}, times: times}
	default: // monthly
		y, m, _ := dateOf(start)
		rule := everyNMonths{anchorMonth: monthIndex(y, m), n: n}
		if r.MonthDay != nil {
			rule.monthDay = *r.MonthDay
		} else {
			rule.nth, rule.weekday = r.NthWeekday.Nth, weekdayCodes[r.NthWeekday.Weekday]
		}
		return dayTimes{dates: rule, times: times}
	}
}

func ceilSecond(t time.Time) time.Time {
	if t.Nanosecond() == 0 {
		return t
	}
	return t.Truncate(time.Second).Add(time.Second)
}

// Kind is "once", "interval", "calendar", "recurrence", "rrule" or "cron".
func (s *Schedule) Kind() string { return s.kind }

// Spec returns the normalised spec with defaults filled in; its Canonical encoding is what
// should be stored.
func (s *Schedule) Spec() Spec { return s.spec.clone() }

// Location is the zone civil times are evaluated in (UTC for once and interval).
func (s *Schedule) Location() *time.Location { return s.loc }

// End is endAtUtc (inclusive), if set.
func (s *Schedule) End() (time.Time, bool) { return s.end, s.hasEnd }

// Policy returns the job-level settings of the spec: catch-up, misfire grace, cooldown and
// run limit.
func (s *Schedule) Policy() Policy { return s.policy }

// First returns the schedule's first slot.
func (s *Schedule) First() (Slot, bool) { return s.Next(time.Time{}) }

// Next returns the first slot strictly after after that is also at or after startAt,
// strictly after the creation time (at or after it for intervals), and at or before
// endAtUtc. It returns false when there is none (for civil
// schedules: none within horizonYears after after). It does not count occurrences:
// maxOccurrences is applied by Plan.
func (s *Schedule) Next(after time.Time) (Slot, bool) {
	if after.Before(s.lowerExcl) {
		after = s.lowerExcl
	}
	var (
		slot Slot
		ok   bool
	)
	switch s.kind {
	case KindOnce:
		slot, ok = Slot{At: s.onceAt, Key: "once"}, s.onceAt.After(after)
	case KindInterval:
		k := max(s.firstK(after), s.kMin)
		slot, ok = Slot{At: s.intervalAt(k), Key: strconv.FormatInt(k, 10), Seq: k}, true
	default:
		slot, ok = s.nextCivil(after)
	}
	if !ok || (s.hasEnd && slot.At.After(s.end)) {
		return Slot{}, false
	}
	return slot, true
}

// firstK is the smallest k with anchor + k·every strictly after t. It is computed from
// whole seconds, without time.Duration, so it cannot overflow for far-apart times.
func (s *Schedule) firstK(t time.Time) int64 {
	ds := t.Unix() - s.anchor.Unix()
	dn := int64(t.Nanosecond() - s.anchor.Nanosecond())
	if dn < 0 {
		ds--
	}
	// t - anchor = ds + f seconds with 0 <= f < 1; every is whole seconds, so
	// floor((ds+f)/every) == floorDiv(ds, every).
	return floorDiv(ds, s.every) + 1
}

func (s *Schedule) intervalAt(k int64) time.Time {
	return time.Unix(s.anchor.Unix()+k*s.every, int64(s.anchor.Nanosecond())).UTC()
}

func (s *Schedule) civilKey(c civil) string {
	return c.String() + "[" + s.spec.Timezone + "]"
}

// String describes the schedule for logs.
func (s *Schedule) String() string {
	return fmt.Sprintf("%s schedule (%s)", s.kind, s.loc)
}
