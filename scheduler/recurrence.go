package scheduler

import (
	"sort"
	"time"
)

// This file holds the calendar (scheduleTimes) and recurrence (daily / weekly / monthly)
// kinds: a rule that picks dates, crossed with a sorted list of times of day. Each rule
// finds its next date arithmetically from the phase anchor, so the cost of a next-fire does
// not depend on how long ago the schedule started.

// civilRule produces a schedule's civil date-times in increasing order. Implementations
// are immutable; iterate returns a fresh iterator, so a rule is safe for concurrent use.
type civilRule interface {
	// iterate returns an iterator over the rule's civil times t with from <= t <= until.
	// from is a whole second.
	iterate(from, until civil) civilIter
}

type civilIter interface {
	next() (civil, bool)
}

// dateRule picks the dates of a calendar or recurrence schedule.
type dateRule interface {
	// nextDay returns the first matching day number d with from <= d <= limit.
	nextDay(from, limit int64) (int64, bool)
}

// dayTimes crosses a dateRule with the times of day (seconds since midnight, sorted,
// distinct).
type dayTimes struct {
	dates dateRule
	times []int
}

func (r dayTimes) iterate(from, until civil) civilIter {
	return &dayTimesIter{r: r, day: from.day(), minSec: from.secOfDay(), until: until}
}

type dayTimesIter struct {
	r      dayTimes
	day    int64
	minSec int
	until  civil
	done   bool
}

func (it *dayTimesIter) next() (civil, bool) {
	untilDay := it.until.day()
	for !it.done {
		d, ok := it.r.dates.nextDay(it.day, untilDay)
		if !ok {
			it.done = true
			break
		}
		if d != it.day {
			it.day, it.minSec = d, 0
		}
		if i := sort.SearchInts(it.r.times, it.minSec); i < len(it.r.times) {
			c := civilAt(d, it.r.times[i])
			if c.after(it.until) {
				it.done = true
				break
			}
			it.minSec = it.r.times[i] + 1
			return c, true
		}
		it.day, it.minSec = d+1, 0
	}
	return civil{}, false
}

// weekdayMask has bit w set for each allowed time.Weekday w; 0 means every day.
type weekdayMask uint8

func (m weekdayMask) has(w time.Weekday) bool { return m == 0 || m&(1<<w) != 0 }

// everyDay is the calendar kind: every day, or the days of the week in mask.
type everyDay struct{ mask weekdayMask }

func (r everyDay) nextDay(from, limit int64) (int64, bool) {
	for d := from; d <= limit && d < from+7; d++ {
		if r.mask.has(weekdayOf(d)) {
			return d, true
		}
	}
	return 0, false
}

// everyNDays is "daily, every n days": the days anchor + k·n, k >= 0.
type everyNDays struct {
	anchor int64
	n      int64
}

func (r everyNDays) nextDay(from, limit int64) (int64, bool) {
	if from < r.anchor {
		from = r.anchor
	}
	if rem := floorMod(from-r.anchor, r.n); rem != 0 {
		from += r.n - rem
	}
	return from, from <= limit
}

// everyNWeeks is "weekly, every n weeks on these weekdays". Weeks run Monday to Sunday
// (the RFC 5545 default WKST=MO); the week that contains the anchor date is week 0 and the
// schedule fires in weeks 0, n, 2n, ...
type everyNWeeks struct {
	anchorWeek int64
	n          int64
	mask       weekdayMask // never 0: weekly requires weekdays
}

func (r everyNWeeks) nextDay(from, limit int64) (int64, bool) {
	if first := r.anchorWeek*7 - 3; from < first { // Monday of week 0
		from = first
	}
	for from <= limit {
		w := mondayWeek(from)
		if rem := floorMod(w-r.anchorWeek, r.n); rem != 0 {
			from = (w+r.n-rem)*7 - 3
			continue
		}
		for end := w*7 - 3 + 7; from < end && from <= limit; from++ {
			if r.mask.has(weekdayOf(from)) {
				return from, true
			}
		}
	}
	return 0, false
}

// everyNMonths is "monthly, every n months" on a day of the month (1..31, or -1 for the
// last day) or on the nth weekday (nth 1..5, or -1 for the last). The month that contains
// the anchor date is month 0. A month without the day (the 31st in April, a fifth Monday)
// is skipped, as RFC 5545 does.
type everyNMonths struct {
	anchorMonth int64
	n           int64
	monthDay    int // 0 when nth is used
	nth         int
	weekday     time.Weekday
}

// dayIn returns the day number of the rule's day in month idx, if that month has it.
func (r everyNMonths) dayIn(idx int64) (int64, bool) {
	y, m := monthOf(idx)
	last := daysIn(y, m)
	var dom int
	switch {
	case r.monthDay > 0:
		if r.monthDay > last {
			return 0, false
		}
		dom = r.monthDay
	case r.monthDay == -1:
		dom = last
	case r.nth > 0:
		first := weekdayOf(dayNumber(y, m, 1))
		dom = 1 + int(floorMod(int64(r.weekday-first), 7)) + (r.nth-1)*7
		if dom > last {
			return 0, false
		}
	default: // nth == -1
		lastWd := weekdayOf(dayNumber(y, m, last))
		dom = last - int(floorMod(int64(lastWd-r.weekday), 7))
	}
	return dayNumber(y, m, dom), true
}

func (r everyNMonths) nextDay(from, limit int64) (int64, bool) {
	y, m, _ := dateOf(from)
	idx := monthIndex(y, m)
	if idx < r.anchorMonth {
		idx = r.anchorMonth
	}
	if rem := floorMod(idx-r.anchorMonth, r.n); rem != 0 {
		idx += r.n - rem
	}
	for ; ; idx += r.n {
		fy, fm := monthOf(idx)
		if dayNumber(fy, fm, 1) > limit {
			return 0, false
		}
		if d, ok := r.dayIn(idx); ok && d >= from {
			return d, d <= limit
		}
	}
}
