package scheduler

import "time"

// This file turns civil (wall-clock) times into instants and back, from the zone's own
// transitions. It never asks time.Date to pick an instant for a wall time: time.Date's
// choice in a gap or an overlap is unspecified ("correct in one of the two zones involved
// in the transition, but it does not guarantee which") and differs between zones in
// practice. The rules implemented here are:
//
//   - a wall time that exists once is that instant;
//   - a wall time that exists twice (fall back) is the earlier instant;
//   - a wall time that does not exist (spring forward) is read with the UTC offset in force
//     just before the jump, so it lands after the jump by as much as it was into the gap
//     (New York 02:30 on the spring-forward day is 03:30 EDT).

// zoneWindow bounds how far from an instant the zone's periods are examined. It must exceed
// twice the largest UTC offset any zone has had (about 16 h) and the largest gap (24 h,
// Pacific/Apia 2011 and Pacific/Kwajalein 1993); see the proofs in next.go.
const zoneWindow = 4 * secondsPerDay

// period is one stretch of constant UTC offset: the instants [start, end), offset in
// seconds east of UTC. A missing start or end means the period is unbounded that way.
type period struct {
	start, end       int64
	hasStart, hasEnd bool
	offset           int64
}

func periodAt(loc *time.Location, unix int64) period {
	t := time.Unix(unix, 0).In(loc)
	_, off := t.Zone()
	s, e := t.ZoneBounds()
	p := period{offset: int64(off)}
	if !s.IsZero() {
		p.start, p.hasStart = s.Unix(), true
	}
	if !e.IsZero() {
		p.end, p.hasEnd = e.Unix(), true
	}
	// Past a zone's last explicit transition (2037 for most zones) Go computes bounds from
	// the zone's POSIX rule, and only approximately: away from a transition it reports the
	// calendar year as the bounds, and for the last day of a leap year it reports an end
	// that is not after t (Go 1.26: "ystart + 365*secondsPerDay"). The offset itself is
	// right. Repair such a period so that it contains t and ends at the next year start,
	// where the rule-based bounds resume; offsets do not change at that boundary.
	if p.hasEnd && p.end <= unix {
		p.end = time.Date(time.Unix(unix, 0).UTC().Year()+1, time.January, 1, 0, 0, 0, 0, time.UTC).Unix()
	}
	if p.hasStart && p.start > unix {
		p.start = unix
	}
	return p
}

func (p period) contains(unix int64) bool {
	return (!p.hasStart || unix >= p.start) && (!p.hasEnd || unix < p.end)
}

// resolve maps a civil time to the instant at which it fires in loc, by the rules above.
func resolve(loc *time.Location, c civil) time.Time {
	f := c.t.Unix() // the wall time's digits read as if they were UTC
	ns := int64(c.t.Nanosecond())
	var (
		best     int64
		found    bool
		gap      int64
		inGap    bool
		prev     period
		havePrev bool
	)
	p := periodAt(loc, f-zoneWindow)
	for {
		// The instant u whose wall clock in period p reads f.
		if u := f - p.offset; p.contains(u) && (!found || u < best) {
			best, found = u, true
		}
		// A forward jump at p.start skips the wall times [start+prev.offset, start+p.offset).
		if havePrev && !inGap && p.offset > prev.offset &&
			f >= p.start+prev.offset && f < p.start+p.offset {
			gap, inGap = f-prev.offset, true
		}
		if !p.hasEnd || p.end > f+zoneWindow {
			break
		}
		prev, havePrev = p, true
		p = periodAt(loc, p.end)
	}
	switch {
	case found:
		return time.Unix(best, ns).UTC()
	case inGap:
		return time.Unix(gap, ns).UTC()
	default:
		// Unreachable for real zones: every wall time either exists or is in a gap.
		_, off := time.Unix(f, 0).In(loc).Zone()
		return time.Unix(f-int64(off), ns).UTC()
	}
}

// wallClock is the civil time an instant shows in loc.
func wallClock(loc *time.Location, u time.Time) civil {
	_, off := u.In(loc).Zone()
	return civil{time.Unix(u.Unix()+int64(off), int64(u.Nanosecond())).UTC()}
}

// offsetRange returns the smallest and largest UTC offsets (seconds) of the periods of loc
// that overlap [u-zoneWindow, u+zoneWindow].
func offsetRange(loc *time.Location, u time.Time) (lo, hi int64) {
	x := u.Unix()
	p := periodAt(loc, x-zoneWindow)
	lo, hi = p.offset, p.offset
	for p.hasEnd && p.end <= x+zoneWindow {
		p = periodAt(loc, p.end)
		lo, hi = min(lo, p.offset), max(hi, p.offset)
	}
	return lo, hi
}
