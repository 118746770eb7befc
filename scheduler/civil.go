package scheduler

import (
	"strconv"
	"time"
)

// civil is a local date and wall-clock time with no zone attached ("floating" in RFC 5545
// terms). It is stored as a time.Time in UTC whose fields read as the wall clock; it is
// never an instant. The distinct type keeps instants and wall times from being mixed up:
// the only way from one to the other is resolve (civil → instant) or wallClock (instant →
// civil) in resolve.go.
type civil struct{ t time.Time }

const secondsPerDay = 86400

func mkCivil(y int, m time.Month, d, hh, mm, ss int) civil {
	return civil{time.Date(y, m, d, hh, mm, ss, 0, time.UTC)}
}

// civilAt returns the civil time at secOfDay seconds into the day numbered day (days since
// 1970-01-01).
func civilAt(day int64, secOfDay int) civil {
	return civil{time.Unix(day*secondsPerDay+int64(secOfDay), 0).UTC()}
}

// day is the number of days since 1970-01-01 of c's date.
func (c civil) day() int64 { return floorDiv(c.t.Unix(), secondsPerDay) }

// secOfDay is the number of whole seconds since midnight.
func (c civil) secOfDay() int { return int(floorMod(c.t.Unix(), secondsPerDay)) }

func (c civil) before(o civil) bool { return c.t.Before(o.t) }
func (c civil) after(o civil) bool  { return c.t.After(o.t) }
func (c civil) equal(o civil) bool  { return c.t.Equal(o.t) }

// addSeconds moves the wall clock; it is arithmetic on labels, not on the timeline.
func (c civil) addSeconds(s int64) civil {
	return civil{time.Unix(c.t.Unix()+s, int64(c.t.Nanosecond())).UTC()}
}

// ceilSecond rounds c up to a whole second; every slot of a civil schedule is on one.
func (c civil) ceilSecond() civil {
	if c.t.Nanosecond() == 0 {
		return c
	}
	return civil{time.Unix(c.t.Unix()+1, 0).UTC()}
}

// String is the ISO 8601 local date-time without offset, e.g. 2024-03-10T02:30:00.
func (c civil) String() string { return c.t.Format("2006-01-02T15:04:05") }

// dayNumber is the day number of a proleptic Gregorian date; out-of-range days and months
// normalise as in time.Date.
func dayNumber(y int, m time.Month, d int) int64 {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / secondsPerDay
}

// dateOf returns the calendar date of a day number.
func dateOf(day int64) (int, time.Month, int) {
	return time.Unix(day*secondsPerDay, 0).UTC().Date()
}

// weekdayOf returns the weekday of a day number (1970-01-01 was a Thursday).
func weekdayOf(day int64) time.Weekday { return time.Weekday(floorMod(day+4, 7)) }

// mondayWeek numbers weeks that start on Monday: mondayWeek(d) == mondayWeek(e) when d and
// e are in the same Monday-to-Sunday week.
func mondayWeek(day int64) int64 { return floorDiv(day+3, 7) }

// monthIndex numbers months continuously: year*12 + month-1.
func monthIndex(y int, m time.Month) int64 { return int64(y)*12 + int64(m) - 1 }

func monthOf(idx int64) (int, time.Month) {
	return int(floorDiv(idx, 12)), time.Month(floorMod(idx, 12) + 1)
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// formatClock renders seconds since midnight as HH:mm, or HH:mm:ss when seconds are set.
func formatClock(sec int) string {
	h, m, s := sec/3600, sec/60%60, sec%60
	out := pad2(h) + ":" + pad2(m)
	if s != 0 {
		out += ":" + pad2(s)
	}
	return out
}

func pad2(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}
