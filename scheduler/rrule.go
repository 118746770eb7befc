package scheduler

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/teambition/rrule-go"
)

// This file is the rrule kind: a raw RFC 5545 RRULE, parsed and checked here, expanded by
// rrule-go (pinned in go.mod) behind civilRule. rrule-go only ever sees floating civil
// times labelled UTC, never a zone with DST; the results are resolved like every other
// civil time.
//
// DTSTART is not part of the user's rule: it is the local midnight of the start date (the
// date of startAt, or of the creation time, in the schedule's zone). Parts the rule leaves
// out default from it as RFC 5545 says, so FREQ=DAILY;BYHOUR=9 fires at 09:00:00 and
// FREQ=MONTHLY fires at midnight on the start date's day of the month. INTERVAL counts
// periods (days, weeks, months, years) from the one that contains the start date.
//
// Speed: rrule-go expands from DTSTART, so a rule started ten years ago would rescan ten
// years on every next-fire. iterate re-anchors DTSTART to the start of the latest period
// that is in phase with INTERVAL and not after the requested time; the defaults that came
// from the original DTSTART are written into the rule explicitly first, so moving DTSTART
// changes nothing else.
//
// Bounded time: rrule-go's iterator stops only at a result past UNTIL or at year 9999, so a
// rule with no match (February 30) would scan to year 9999. iterate therefore shifts the
// dates it hands over by a multiple of 400 years (the Gregorian cycle: 146097 days, an
// exact number of weeks, so weekdays, leap years and week numbers are unchanged) so that
// year 9999 falls between horizonYears and horizonYears+400 years after the requested time.

var rruleFreqs = map[string]rrule.Frequency{
	"DAILY": rrule.DAILY, "WEEKLY": rrule.WEEKLY, "MONTHLY": rrule.MONTHLY, "YEARLY": rrule.YEARLY,
}

var rruleDays = []string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"} // index = time.Weekday

// rruleOrder is the order of parts in the canonical encoding.
var rruleOrder = []string{"FREQ", "INTERVAL", "WKST", "BYSETPOS", "BYMONTH", "BYWEEKNO",
	"BYYEARDAY", "BYMONTHDAY", "BYDAY", "BYHOUR", "BYMINUTE", "BYSECOND"}

type nthDay struct {
	n  int // 0 = every such weekday in the period
	wd time.Weekday
}

type rruleParts struct {
	freqName                               string
	freq                                   rrule.Frequency
	interval                               int
	wkst                                   time.Weekday
	bysetpos, bymonth, byweekno, byyearday []int
	bymonthday, byhour, byminute, bysecond []int
	byday                                  []nthDay
}

func parseRRule(s string) (*rruleParts, error) {
	s = strings.TrimSpace(s)
	if len(s) >= 6 && strings.EqualFold(s[:6], "RRULE:") {
		s = s[6:]
	}
	if s == "" {
		return nil, fmt.Errorf("is empty")
	}
	p := &rruleParts{interval: 1, wkst: time.Monday}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.ToUpper(strings.TrimSpace(k)), strings.ToUpper(strings.TrimSpace(v))
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q is not a NAME=VALUE part", kv)
		}
		if seen[k] {
			return nil, fmt.Errorf("%s is given twice", k)
		}
		seen[k] = true
		var err error
		switch k {
		case "FREQ":
			f, ok := rruleFreqs[v]
			if !ok {
				switch v {
				case "SECONDLY", "MINUTELY", "HOURLY":
					return nil, fmt.Errorf("FREQ=%s is not accepted: only DAILY, WEEKLY, MONTHLY and YEARLY (use cron or recurrenceSeconds for finer schedules)", v)
				}
				return nil, fmt.Errorf("FREQ=%s is not a frequency: use DAILY, WEEKLY, MONTHLY or YEARLY", v)
			}
			p.freqName, p.freq = v, f
		case "INTERVAL":
			p.interval, err = strconv.Atoi(v)
			if err != nil || p.interval < 1 {
				return nil, fmt.Errorf("INTERVAL=%s must be a whole number of at least 1", v)
			}
		case "WKST":
			i := slices.Index(rruleDays, v)
			if i < 0 {
				return nil, fmt.Errorf("WKST=%s is not a day (MO, TU, WE, TH, FR, SA, SU)", v)
			}
			p.wkst = time.Weekday(i)
		case "BYSETPOS":
			p.bysetpos, err = rruleInts(k, v, 1, 366, true)
		case "BYMONTH":
			p.bymonth, err = rruleInts(k, v, 1, 12, false)
		case "BYWEEKNO":
			p.byweekno, err = rruleInts(k, v, 1, 53, true)
		case "BYYEARDAY":
			p.byyearday, err = rruleInts(k, v, 1, 366, true)
		case "BYMONTHDAY":
			p.bymonthday, err = rruleInts(k, v, 1, 31, true)
		case "BYHOUR":
			p.byhour, err = rruleInts(k, v, 0, 23, false)
		case "BYMINUTE":
			p.byminute, err = rruleInts(k, v, 0, 59, false)
		case "BYSECOND":
			p.bysecond, err = rruleInts(k, v, 0, 59, false)
		case "BYDAY":
			p.byday, err = rruleByDay(v)
		case "COUNT":
			return nil, fmt.Errorf("COUNT is not accepted: use maxOccurrences")
		case "UNTIL":
			return nil, fmt.Errorf("UNTIL is not accepted: use endAtUtc")
		case "DTSTART":
			return nil, fmt.Errorf("DTSTART is not accepted: use startAt")
		default:
			return nil, fmt.Errorf("unknown part %s", k)
		}
		if err != nil {
			return nil, err
		}
	}
	if p.freqName == "" {
		return nil, fmt.Errorf("FREQ is required (DAILY, WEEKLY, MONTHLY or YEARLY)")
	}
	return p, p.check()
}

// check applies the RFC 5545 table of which BYxxx parts each frequency allows, and the
// limits that keep expansion bounded.
func (p *rruleParts) check() error {
	f := p.freq
	switch {
	case len(p.byweekno) > 0 && f != rrule.YEARLY:
		return fmt.Errorf("BYWEEKNO is only allowed with FREQ=YEARLY")
	case len(p.byyearday) > 0 && f != rrule.YEARLY:
		return fmt.Errorf("BYYEARDAY is only allowed with FREQ=YEARLY")
	case len(p.bymonthday) > 0 && f == rrule.WEEKLY:
		return fmt.Errorf("BYMONTHDAY is not allowed with FREQ=WEEKLY")
	case len(p.bysetpos) > 0 && !(len(p.bymonth) > 0 || len(p.byweekno) > 0 || len(p.byyearday) > 0 ||
		len(p.bymonthday) > 0 || len(p.byday) > 0 || len(p.byhour) > 0 || len(p.byminute) > 0 || len(p.bysecond) > 0):
		return fmt.Errorf("BYSETPOS needs another BYxxx part")
	}
	for _, d := range p.byday {
		if d.n == 0 {
			continue
		}
		if f != rrule.MONTHLY && f != rrule.YEARLY {
			return fmt.Errorf("BYDAY with a number (%d%s) is only allowed with FREQ=MONTHLY or FREQ=YEARLY", d.n, rruleDays[d.wd])
		}
		if f == rrule.YEARLY && len(p.byweekno) > 0 {
			return fmt.Errorf("BYDAY with a number is not allowed with BYWEEKNO")
		}
		if f == rrule.MONTHLY && (d.n > 5 || d.n < -5) {
			return fmt.Errorf("BYDAY=%d%s: a month has at most 5 of each weekday", d.n, rruleDays[d.wd])
		}
	}
	maxInterval := 1000
	if f == rrule.YEARLY {
		maxInterval = 100
	}
	if p.interval > maxInterval {
		return fmt.Errorf("INTERVAL=%d is too large for FREQ=%s (at most %d)", p.interval, p.freqName, maxInterval)
	}
	if n := max(len(p.byhour), 1) * max(len(p.byminute), 1) * max(len(p.bysecond), 1); n > maxTimesPerDay {
		return fmt.Errorf("BYHOUR × BYMINUTE × BYSECOND gives %d times a day (at most %d)", n, maxTimesPerDay)
	}
	return nil
}

func rruleInts(k, v string, lo, hi int, signed bool) ([]int, error) {
	var out []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimPrefix(s, "+"))
		ok := err == nil && ((n >= lo && n <= hi) || (signed && n <= -lo && n >= -hi && n != 0))
		if !ok {
			if signed {
				return nil, fmt.Errorf("%s=%s: %q must be between %d and %d or between %d and %d", k, v, s, lo, hi, -hi, -lo)
			}
			return nil, fmt.Errorf("%s=%s: %q must be between %d and %d", k, v, s, lo, hi)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func rruleByDay(v string) ([]nthDay, error) {
	var out []nthDay
	for _, s := range strings.Split(v, ",") {
		if len(s) < 2 {
			return nil, fmt.Errorf("BYDAY=%s: %q is not a day such as MO, 2TU or -1FR", v, s)
		}
		wd := slices.Index(rruleDays, s[len(s)-2:])
		if wd < 0 {
			return nil, fmt.Errorf("BYDAY=%s: %q is not a day such as MO, 2TU or -1FR", v, s)
		}
		n := 0
		if num := s[:len(s)-2]; num != "" {
			var err error
			n, err = strconv.Atoi(strings.TrimPrefix(num, "+"))
			if err != nil || n == 0 || n > 53 || n < -53 {
				return nil, fmt.Errorf("BYDAY=%s: %q must be a number between 1 and 53 or -53 and -1 before the day", v, s)
			}
		}
		out = append(out, nthDay{n: n, wd: time.Weekday(wd)})
	}
	slices.SortFunc(out, func(a, b nthDay) int {
		if a.wd != b.wd {
			return int(weekdayFromMonday(a.wd)) - int(weekdayFromMonday(b.wd))
		}
		return a.n - b.n
	})
	return slices.Compact(out), nil
}

// weekdayFromMonday numbers days MO=0 .. SU=6, the order used in canonical encodings.
func weekdayFromMonday(w time.Weekday) int { return int(floorMod(int64(w)+6, 7)) }

// canonical re-encodes the rule with its parts in a fixed order, lists sorted and
// duplicates and defaults (INTERVAL=1, WKST=MO) dropped.
func (p *rruleParts) canonical() string {
	var out []string
	ints := func(k string, v []int) {
		if len(v) == 0 {
			return
		}
		s := make([]string, len(v))
		for i, n := range v {
			s[i] = strconv.Itoa(n)
		}
		out = append(out, k+"="+strings.Join(s, ","))
	}
	for _, k := range rruleOrder {
		switch k {
		case "FREQ":
			out = append(out, "FREQ="+p.freqName)
		case "INTERVAL":
			if p.interval != 1 {
				out = append(out, "INTERVAL="+strconv.Itoa(p.interval))
			}
		case "WKST":
			if p.wkst != time.Monday {
				out = append(out, "WKST="+rruleDays[p.wkst])
			}
		case "BYSETPOS":
			ints(k, p.bysetpos)
		case "BYMONTH":
			ints(k, p.bymonth)
		case "BYWEEKNO":
			ints(k, p.byweekno)
		case "BYYEARDAY":
			ints(k, p.byyearday)
		case "BYMONTHDAY":
			ints(k, p.bymonthday)
		case "BYDAY":
			if len(p.byday) > 0 {
				s := make([]string, len(p.byday))
				for i, d := range p.byday {
					s[i] = rruleDays[d.wd]
					if d.n != 0 {
						s[i] = strconv.Itoa(d.n) + s[i]
					}
				}
				out = append(out, "BYDAY="+strings.Join(s, ","))
			}
		case "BYHOUR":
			ints(k, p.byhour)
		case "BYMINUTE":
			ints(k, p.byminute)
		case "BYSECOND":
			ints(k, p.bysecond)
		}
	}
	return strings.Join(out, ";")
}

// rruleRule is a parsed rule bound to its start date, ready to expand.
type rruleRule struct {
	opt   rrule.ROption // every default made explicit; Dtstart is set per iteration
	freq  rrule.Frequency
	n     int64
	first int64 // day number of the start of the period that contains the start date
	wkst  time.Weekday
}

var rruleWeekdays = []rrule.Weekday{rrule.SU, rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA}

// bind fixes the rule to the start date (a day number), making the defaults that RFC 5545
// takes from DTSTART explicit.
func (p *rruleParts) bind(startDay int64) *rruleRule {
	y, m, d := dateOf(startDay)
	opt := rrule.ROption{
		Freq:       p.freq,
		Interval:   p.interval,
		Wkst:       rruleWeekdays[p.wkst],
		Bysetpos:   p.bysetpos,
		Bymonth:    p.bymonth,
		Bymonthday: p.bymonthday,
		Byyearday:  p.byyearday,
		Byweekno:   p.byweekno,
		Byhour:     p.byhour,
		Byminute:   p.byminute,
		Bysecond:   p.bysecond,
	}
	for _, bd := range p.byday {
		w := rruleWeekdays[bd.wd]
		opt.Byweekday = append(opt.Byweekday, w.Nth(bd.n))
	}
	if len(p.byweekno) == 0 && len(p.byyearday) == 0 && len(p.bymonthday) == 0 && len(p.byday) == 0 {
		switch p.freq {
		case rrule.YEARLY:
			if len(p.bymonth) == 0 {
				opt.Bymonth = []int{int(m)}
			}
			opt.Bymonthday = []int{d}
		case rrule.MONTHLY:
			opt.Bymonthday = []int{d}
		case rrule.WEEKLY:
			opt.Byweekday = []rrule.Weekday{rruleWeekdays[weekdayOf(startDay)]}
		}
	}
	// DTSTART is midnight, so the time parts default to zero.
	if len(p.byhour) == 0 {
		opt.Byhour = []int{0}
	}
	if len(p.byminute) == 0 {
		opt.Byminute = []int{0}
	}
	if len(p.bysecond) == 0 {
		opt.Bysecond = []int{0}
	}
	r := &rruleRule{opt: opt, freq: p.freq, n: int64(p.interval), wkst: p.wkst}
	switch p.freq {
	case rrule.DAILY:
		r.first = startDay
	case rrule.WEEKLY:
		r.first = r.weekStart(startDay)
	case rrule.MONTHLY:
		r.first = dayNumber(y, m, 1)
	case rrule.YEARLY:
		r.first = dayNumber(y, time.January, 1)
	}
	return r
}

func (r *rruleRule) weekStart(day int64) int64 {
	return day - floorMod(int64(weekdayOf(day)-r.wkst), 7)
}

// anchorFor returns the first day of the latest period in phase with INTERVAL that starts
// on or before day (and not before the rule's first period).
func (r *rruleRule) anchorFor(day int64) int64 {
	if day <= r.first {
		return r.first
	}
	switch r.freq {
	case rrule.DAILY:
		return r.first + floorDiv(day-r.first, r.n)*r.n
	case rrule.WEEKLY:
		weeks := (r.weekStart(day) - r.first) / 7
		return r.first + floorDiv(weeks, r.n)*r.n*7
	case rrule.MONTHLY:
		fy, fm, _ := dateOf(r.first)
		y, m, _ := dateOf(day)
		k := floorDiv(monthIndex(y, m)-monthIndex(fy, fm), r.n) * r.n
		ay, am := monthOf(monthIndex(fy, fm) + k)
		return dayNumber(ay, am, 1)
	default: // YEARLY
		fy, _, _ := dateOf(r.first)
		y, _, _ := dateOf(day)
		k := floorDiv(int64(y-fy), r.n) * r.n
		return dayNumber(fy+int(k), time.January, 1)
	}
}

// gregorianCycle is 400 years in seconds: 146097 days.
const gregorianCycle = 146097 * secondsPerDay

func (r *rruleRule) iterate(from, until civil) civilIter {
	fy := from.t.Year()
	cycles := floorDiv(int64(rrule.MAXYEAR-horizonYears-fy), 400)
	shift := cycles * gregorianCycle
	opt := r.opt
	opt.Dtstart = time.Unix(r.anchorFor(from.day())*secondsPerDay+shift, 0).UTC()
	opt.Until = time.Unix(until.t.Unix()+shift, 0).UTC()
	rr, err := rrule.NewRRule(opt)
	if err != nil { // the parts were range-checked when parsed
		return &rruleIter{done: true}
	}
	return &rruleIter{gen: rr.Iterator(), shift: shift, from: from, until: until}
}

type rruleIter struct {
	gen         rrule.Next
	shift       int64
	from, until civil
	done        bool
}

func (it *rruleIter) next() (civil, bool) {
	for !it.done {
		t, ok := it.gen()
		if !ok {
			break
		}
		c := civil{time.Unix(t.Unix()-it.shift, 0).UTC()}
		if c.before(it.from) {
			continue
		}
		if c.after(it.until) {
			break
		}
		return c, true
	}
	it.done = true
	return civil{}, false
}
