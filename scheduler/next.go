package scheduler

import "time"

// nextCivil finds the first slot of a civil schedule strictly after t.
//
// Civil times do not resolve to instants in order: a wall time in a spring-forward gap is
// read with the offset from before the jump, so New York 02:30 becomes 07:30Z while 03:15
// on the same day is 07:15Z. The search therefore scans a window of civil times and keeps
// the earliest instant, rather than taking the first civil time past t:
//
//   - Lower bound. Let R(c) be the instant of civil time c, and o(c) = c - R(c) the offset
//     used: the offset of a period that contains R(c), or of the period just before a
//     transition at most one gap (<= 24 h) before R(c). If R(c) > t is within zoneWindow of
//     t, o(c) is an offset seen within zoneWindow of t, so c >= t + lo where lo is the
//     smallest such offset. If R(c) > t + zoneWindow, then c > t + zoneWindow - 16 h, which
//     is more than t + lo. So no slot after t has c < t + lo.
//   - Upper bound. Once a candidate instant b is known, any c > b + hi (hi the largest
//     offset within zoneWindow of b) has R(c) > b by the same argument, so the scan stops.
//   - Ties. When several civil times resolve to the same instant (Apia skipped 2011-12-30,
//     so its 09:00 resolves to the same instant as 2011-12-31 09:00) the slot is the
//     earliest civil time. All of them lie between the two bounds, so the key of an
//     instant never depends on where the search started.
//
// The work is a few zone lookups and at most a handful of candidates, whatever the age of
// the schedule, because every rule jumps straight to its first civil time at or after the
// lower bound.
func (s *Schedule) nextCivil(t time.Time) (Slot, bool) {
	lo, _ := offsetRange(s.loc, t)
	from := civil{time.Unix(t.Unix()+lo, int64(t.Nanosecond())).UTC()}.ceilSecond()
	until := from.addSeconds(horizonYears * 366 * secondsPerDay)
	if s.hasEnd {
		// A slot at or before end has c <= end + its offset, and offsets stay below a day.
		if e := (civil{s.end.UTC()}).addSeconds(2 * secondsPerDay); e.before(until) {
			until = e
		}
		if !t.Before(s.end) {
			return Slot{}, false
		}
	}
	if until.before(from) {
		return Slot{}, false
	}
	it := s.rule.iterate(from, until)
	var (
		best      time.Time
		bestCivil civil
		found     bool
		stop      civil
	)
	for {
		c, ok := it.next()
		if !ok || (found && c.after(stop)) {
			break
		}
		u := resolve(s.loc, c)
		if !u.After(t) || (found && !u.Before(best)) {
			continue
		}
		best, bestCivil, found = u, c, true
		_, hi := offsetRange(s.loc, u)
		stop = civil{time.Unix(u.Unix()+hi, 0).UTC()}
	}
	if !found {
		return Slot{}, false
	}
	return Slot{At: best, Key: s.civilKey(bestCivil)}, true
}
