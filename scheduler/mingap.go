package scheduler

import "time"

// Finding the smallest gap between two fires of a civil schedule (calendar,
// recurrence, rrule, cron), for a project's minIntervalSeconds.
//
// Looking at the next few fires is not enough: a times list holds up to
// 1,440 times a day, so a dense cluster placed late in the day, on one
// weekday, across a month's end or at a DST change would pass. A civil
// schedule is a set of days × a set of times of day, in a zone; two fires
// come closest (1) within one day, (2) across midnight between two firing
// days, (3) across a month's (or year's) end, (4) at a DST change, which
// shortens a civil gap by the shift. So every fire is examined, strictly in
// order, in these windows: 32 days from the first fire (every time of day on
// every weekday and day of month of one cycle of daily, weekly and monthly
// patterns, with the midnight crossings between them), one day either side
// of each of the next 13 month starts, and one day either side of each zone
// transition in the next 366 days. A schedule fires at most 1,440 times a day
// (the spec limits), so this is at most about 130,000 fires, and it stops at
// the first gap below the bound: it is sound for the patterns the spec can
// express, except a 29 February more than a year ahead.

// gapWindowFires bounds the fires MinGap examines (a safety net: the windows
// above stay below it).
const gapWindowFires = 200_000

// Gap is two consecutive fires closer than the bound MinGap was given.
type Gap struct{ From, To time.Time }

// Len is the time between the two fires.
func (g Gap) Len() time.Duration { return g.To.Sub(g.From) }

// MinGap returns two consecutive fires less than below apart, if the
// schedule has any in the windows described above, from from on.
func (s *Schedule) MinGap(from time.Time, below time.Duration) (Gap, bool) {
	first, ok := s.Next(from)
	if !ok {
		return Gap{}, false
	}
	const day = 24 * time.Hour
	type window struct{ start, end time.Time }
	wins := []window{{first.At.Add(-time.Nanosecond), first.At.Add(32 * day)}}
	local := first.At.In(s.loc)
	month := time.Date(local.Year(), local.Month(), 1, 0, 0, 0, 0, s.loc)
	for i := 1; i <= 13; i++ {
		ms := month.AddDate(0, i, 0)
		wins = append(wins, window{ms.Add(-day), ms.Add(day)})
	}
	for _, tr := range zoneTransitions(s.loc, first.At, first.At.Add(366*day)) {
		wins = append(wins, window{tr.Add(-day), tr.Add(day)})
	}
	budget := gapWindowFires
	for _, w := range wins {
		prev, ok := s.Next(w.start)
		for ok && !prev.At.After(w.end) && budget > 0 {
			budget--
			next, more := s.Next(prev.At)
			if !more {
				break
			}
			if next.At.Sub(prev.At) < below {
				return Gap{prev.At, next.At}, true
			}
			prev = next
		}
	}
	return Gap{}, false
}

// zoneTransitions lists the instants in [from, to) at which loc's UTC offset
// changes, to the second.
func zoneTransitions(loc *time.Location, from, to time.Time) []time.Time {
	var out []time.Time
	const step = 6 * 3600 // seconds; no zone changes its offset twice in 6 h
	offset := func(sec int64) int { _, o := time.Unix(sec, 0).In(loc).Zone(); return o }
	off := offset(from.Unix())
	for t := from.Unix(); t < to.Unix(); t += step {
		if o := offset(t + step); o != off {
			lo, hi := t, t+step // offset(lo) == off, offset(hi) != off
			for hi-lo > 1 {
				if mid := lo + (hi-lo)/2; offset(mid) == off {
					lo = mid
				} else {
					hi = mid
				}
			}
			out = append(out, time.Unix(hi, 0).UTC())
			off = o
		}
	}
	return out
}
