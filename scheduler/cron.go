package scheduler

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// This file is the cron kind: five fields (minute hour day-of-month month day-of-week) with
// lists, ranges, steps and names, evaluated as civil times in the schedule's zone. The
// day-of-month / day-of-week combination follows Vixie cron (and POSIX): when both fields
// are restricted a day matches if either does; when either starts with "*", both must.

type cronRule struct {
	minute  uint64 // bits 0..59
	hour    uint32 // bits 0..23
	dom     uint32 // bits 1..31
	month   uint16 // bits 1..12
	dow     uint8  // bits 0..6, 0 = Sunday
	domStar bool
	dowStar bool
}

var cronMacros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

var (
	monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
	dowNames   = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
)

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}

var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: monthNames},
	{name: "day of week", min: 0, max: 7, names: dowNames},
}

// canonicalCron normalises spacing and case so that equal expressions encode equally.
func canonicalCron(expr string) string {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "@") {
		return strings.ToLower(expr)
	}
	return strings.ToUpper(strings.Join(strings.Fields(expr), " "))
}

func parseCron(expr string) (*cronRule, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "@") {
		m, ok := cronMacros[strings.ToLower(expr)]
		if !ok {
			return nil, fmt.Errorf("unknown macro %q (accepted: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)", expr)
		}
		expr = m
	}
	parts := strings.Fields(expr)
	if len(parts) != 5 {
		return nil, fmt.Errorf("must have five fields (minute hour day-of-month month day-of-week), got %d", len(parts))
	}
	var masks [5]uint64
	for i, p := range parts {
		m, err := parseCronField(p, cronFields[i])
		if err != nil {
			return nil, fmt.Errorf("field %d (%s): %w", i+1, cronFields[i].name, err)
		}
		masks[i] = m
	}
	dow := masks[4]
	if dow&(1<<7) != 0 { // 7 is Sunday too
		dow |= 1
	}
	return &cronRule{
		minute:  masks[0],
		hour:    uint32(masks[1]),
		dom:     uint32(masks[2]),
		month:   uint16(masks[3]),
		dow:     uint8(dow & 0x7f),
		domStar: strings.HasPrefix(parts[2], "*"),
		dowStar: strings.HasPrefix(parts[4], "*"),
	}, nil
}

func parseCronField(s string, f cronField) (uint64, error) {
	var mask uint64
	for _, item := range strings.Split(s, ",") {
		if item == "" {
			return 0, fmt.Errorf("empty list item in %q", s)
		}
		rng, stepStr, hasStep := strings.Cut(item, "/")
		lo, hi := f.min, f.max
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = cronValue(a, f); err != nil {
				return 0, err
			}
			if hi, err = cronValue(b, f); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("range %q runs backwards", rng)
			}
		default:
			v, err := cronValue(rng, f)
			if err != nil {
				return 0, err
			}
			lo = v
			if !hasStep {
				hi = v
			} // "a/s" means a through the maximum, every s
		}
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 || n > f.max {
				return 0, fmt.Errorf("step %q must be a whole number between 1 and %d", stepStr, f.max)
			}
			step = n
		}
		for v := lo; v <= hi; v += step {
			mask |= 1 << v
		}
	}
	return mask, nil
}

func cronValue(s string, f cronField) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < f.min || n > f.max {
			return 0, fmt.Errorf("%d is out of range %d-%d", n, f.min, f.max)
		}
		return n, nil
	}
	for i, name := range f.names {
		if strings.EqualFold(s, name) {
			return f.min + i, nil
		}
	}
	if strings.ContainsAny(s, "LW#?") {
		return 0, fmt.Errorf("%q: L, W, # and ? are not supported (use recurrence with monthDay -1 or nthWeekday, or an rrule)", s)
	}
	return 0, fmt.Errorf("%q is not a number or a name", s)
}

func (r *cronRule) dayMatches(day int64) bool {
	_, m, d := dateOf(day)
	if r.month&(1<<m) == 0 {
		return false
	}
	domOK := r.dom&(1<<d) != 0
	dowOK := r.dow&(1<<weekdayOf(day)) != 0
	if r.domStar || r.dowStar {
		return domOK && dowOK
	}
	return domOK || dowOK
}

// firstTime returns the first matching time of day at or after sec.
func (r *cronRule) firstTime(sec int) (int, bool) {
	h, m := sec/3600, (sec%3600+59)/60 // round up to a whole minute
	if m == 60 {
		h, m = h+1, 0
	}
	for ; h < 24; h, m = h+1, 0 {
		if r.hour&(1<<h) == 0 {
			continue
		}
		if rest := r.minute >> m; rest != 0 {
			return h*3600 + (m+bits.TrailingZeros64(rest))*60, true
		}
	}
	return 0, false
}

func (r *cronRule) iterate(from, until civil) civilIter {
	return &cronIter{r: r, day: from.day(), sec: from.secOfDay(), until: until}
}

type cronIter struct {
	r     *cronRule
	day   int64
	sec   int
	until civil
}

func (it *cronIter) next() (civil, bool) {
	untilDay := it.until.day()
	for it.day <= untilDay {
		y, m, _ := dateOf(it.day)
		if it.r.month&(1<<m) == 0 { // skip the whole month
			it.day, it.sec = dayNumber(y, m+1, 1), 0
			continue
		}
		if it.r.dayMatches(it.day) {
			if s, ok := it.r.firstTime(it.sec); ok {
				c := civilAt(it.day, s)
				if c.after(it.until) {
					break
				}
				it.sec = s + 1
				return c, true
			}
		}
		it.day, it.sec = it.day+1, 0
	}
	it.day = untilDay + 1
	return civil{}, false
}
