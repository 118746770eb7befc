package scheduler

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teambition/rrule-go"
)

// TestPropertyMinuteByMinute compares Next with a brute-force reference on random
// schedules and zones, in windows placed around DST transitions, for schedules created up
// to ten years before the window (so re-anchoring is exercised).
//
// The reference shares no code with the package: it decides for every civil minute of the
// window whether the schedule matches (a direct predicate per kind; rrule-go expanding
// from the original DTSTART for rrules), and resolves each matching wall time by scanning
// the UTC timeline minute by minute: the earliest minute whose wall clock shows it, or, if
// none does, the wall time read with the offset in force just before the jump that skipped
// it. The fires must be strictly increasing and equal to the reference's distinct
// instants, and each slot's key must be the earliest wall time resolving to its instant.
//
// CHIME_PROPERTY_SEED=<n> runs another seed; CHIME_PROPERTY_CASES=<n> more cases.
func TestPropertyMinuteByMinute(t *testing.T) {
	seed := uint64(20240310)
	if s := os.Getenv("CHIME_PROPERTY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	cases := 160
	if testing.Short() {
		cases = 40
	}
	if s := os.Getenv("CHIME_PROPERTY_CASES"); s != "" {
		cases, _ = strconv.Atoi(s)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t.Logf("seed %d, %d cases", seed, cases)
	propStats = struct{ slots, gaps, overlaps, merged int }{}
	defer func() {
		t.Logf("compared %d slots: %d wall times in a gap, %d in an overlap, %d merged with another wall time",
			propStats.slots, propStats.gaps, propStats.overlaps, propStats.merged)
	}()
	for i := 0; i < cases; i++ {
		c := genPropCase(t, rng)
		if !t.Run(fmt.Sprintf("%03d-%s", i, c.kind), func(t *testing.T) { c.check(t) }) {
			t.Fatalf("case %d failed (seed %d): spec %s created %s window %s..%s", i, seed, c.spec,
				c.created.Format(time.RFC3339), c.from.Format(time.RFC3339), c.to.Format(time.RFC3339))
		}
	}
}

var propZones = []string{
	"America/New_York", "Europe/Berlin", "Australia/Sydney", "Australia/Lord_Howe", "America/Sao_Paulo",
	"Pacific/Apia", "America/Santiago", "Asia/Tehran", "Europe/Dublin", "Africa/Casablanca", "America/Havana",
	"Pacific/Chatham", "Asia/Kathmandu", "UTC", "America/St_Johns", "Antarctica/Troll", "Asia/Gaza",
	"America/Nuuk", "Europe/London", "America/Asuncion",
}

type propCase struct {
	kind     string
	spec     string
	loc      *time.Location
	created  time.Time
	startAt  time.Time // zero if not given
	from, to time.Time
	// matches reports whether the civil minute (a UTC-labelled wall time) is a slot.
	matches func(w time.Time) bool
	// rruleSet, for rrules, lists the matching wall times instead.
	rruleSet map[int64]bool
}

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

func subset[T any](rng *rand.Rand, xs []T) []T {
	for {
		var out []T
		for _, x := range xs {
			if rng.IntN(3) == 0 {
				out = append(out, x)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
}

func genTimes(rng *rand.Rand) []int {
	n := 1 + rng.IntN(3)
	var out []int
	for i := 0; i < n; i++ {
		h := pick(rng, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 9, 12, 23)
		m := pick(rng, 0, 0, 15, 30, 30, 45, 59, 7)
		out = append(out, h*60+m)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func clockStrings(mins []int) string {
	s := make([]string, len(mins))
	for i, m := range mins {
		s[i] = fmt.Sprintf("%q", fmt.Sprintf("%02d:%02d", m/60, m%60))
	}
	return "[" + strings.Join(s, ",") + "]"
}

// transitionsIn finds the instants (to the day) where the zone's offset changes in a year,
// by sampling: independent of the package's own zone code.
func transitionsIn(loc *time.Location, year int) []time.Time {
	var out []time.Time
	t := time.Date(year, 1, 1, 12, 0, 0, 0, time.UTC)
	_, prev := t.In(loc).Zone()
	for d := 1; d <= 366; d++ {
		u := t.AddDate(0, 0, d)
		if _, off := u.In(loc).Zone(); off != prev {
			out = append(out, u)
			prev = off
		}
	}
	return out
}

func mondayOf(d time.Time) time.Time { return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7)) }

func daysBetween(a, b time.Time) int { return int(b.Sub(a).Hours()/24 + 0.5) } // both UTC midnights

func genPropCase(t *testing.T, rng *rand.Rand) *propCase {
	zone := pick(rng, propZones...)
	loc := mustLoc(t, zone)
	year := 2005 + rng.IntN(41)
	if zone == "Pacific/Apia" && rng.IntN(2) == 0 {
		year = 2011
	}
	center := time.Date(year, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC)
	if tr := transitionsIn(loc, year); len(tr) > 0 {
		center = pick(rng, tr...)
	}
	c := &propCase{loc: loc}
	kind := pick(rng, KindCalendar, KindRecurrence, KindRecurrence, KindCron, KindCron, KindRRule, KindRRule)
	days := 30
	fields := ""

	// The start of the phase: startAt, or the creation time.
	c.from = center.Add(-time.Duration(rng.IntN(20*24)) * time.Hour)
	if rng.IntN(10) < 7 {
		c.created = c.from.Add(-time.Duration(rng.Int64N(10 * 365 * 24 * int64(time.Hour))))
	} else {
		c.created = c.from.Add(-time.Duration(rng.IntN(72*60)) * time.Minute)
	}
	c.created = c.created.Truncate(time.Minute).Add(time.Duration(rng.IntN(60)) * time.Second)
	anchor := c.created
	if rng.IntN(5) == 0 {
		c.startAt = c.created.Add(time.Duration(rng.IntN(60*24*60)-20*24*60) * time.Minute) // may be in the past
		anchor = c.startAt
		fields += fmt.Sprintf(`,"startAt":%q`, c.startAt.Format(time.RFC3339))
	}
	ay, am, ad := anchor.In(loc).Date()
	anchorDay := time.Date(ay, am, ad, 0, 0, 0, 0, time.UTC)
	dateOf := func(w time.Time) time.Time { return w.Truncate(24 * time.Hour) }

	switch kind {
	case KindCalendar:
		times := genTimes(rng)
		var daysJSON string
		mask := map[time.Weekday]bool{}
		if rng.IntN(2) == 0 {
			ds := subset(rng, []int{0, 1, 2, 3, 4, 5, 6})
			for _, d := range ds {
				mask[time.Weekday(d)] = true
			}
			daysJSON = fmt.Sprintf(`,"scheduleDaysOfWeek":%s`, strings.ReplaceAll(fmt.Sprint(ds), " ", ","))
		}
		c.spec = fmt.Sprintf(`{"scheduleTimes":%s%s`, clockStrings(times), daysJSON)
		c.matches = func(w time.Time) bool {
			return (len(mask) == 0 || mask[w.Weekday()]) && slices.Contains(times, w.Hour()*60+w.Minute())
		}
	case KindRecurrence:
		times := genTimes(rng)
		switch freq := pick(rng, "daily", "weekly", "monthly"); freq {
		case "daily":
			n := pick(rng, 1, 2, 3, 7, 10)
			c.spec = fmt.Sprintf(`{"recurrence":{"frequency":"daily","interval":%d,"times":%s}`, n, clockStrings(times))
			c.matches = func(w time.Time) bool {
				d := daysBetween(anchorDay, dateOf(w))
				return d >= 0 && d%n == 0 && slices.Contains(times, w.Hour()*60+w.Minute())
			}
		case "weekly":
			n := pick(rng, 1, 2, 3)
			wds := subset(rng, []string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"})
			c.spec = fmt.Sprintf(`{"recurrence":{"frequency":"weekly","interval":%d,"weekdays":["%s"],"times":%s}`,
				n, strings.Join(wds, `","`), clockStrings(times))
			c.matches = func(w time.Time) bool {
				weeks := daysBetween(mondayOf(anchorDay), mondayOf(dateOf(w))) / 7
				code := []string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"}[w.Weekday()]
				return weeks >= 0 && weeks%n == 0 && slices.Contains(wds, code) && slices.Contains(times, w.Hour()*60+w.Minute())
			}
		case "monthly":
			days = 400
			n := pick(rng, 1, 2, 3)
			var dayOK func(w time.Time) bool
			if rng.IntN(2) == 0 {
				md := pick(rng, 1, 15, 28, 29, 30, 31, -1)
				c.spec = fmt.Sprintf(`{"recurrence":{"frequency":"monthly","interval":%d,"monthDay":%d,"times":%s}`, n, md, clockStrings(times))
				dayOK = func(w time.Time) bool {
					if md == -1 {
						return w.AddDate(0, 0, 1).Day() == 1
					}
					return w.Day() == md
				}
			} else {
				nth := pick(rng, 1, 2, 3, 4, 5, -1)
				wd := time.Weekday(rng.IntN(7))
				code := []string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"}[wd]
				c.spec = fmt.Sprintf(`{"recurrence":{"frequency":"monthly","interval":%d,"nthWeekday":{"weekday":%q,"nth":%d},"times":%s}`,
					n, code, nth, clockStrings(times))
				dayOK = func(w time.Time) bool {
					if w.Weekday() != wd {
						return false
					}
					if nth == -1 {
						return w.AddDate(0, 0, 7).Month() != w.Month()
					}
					return (w.Day()-1)/7 == nth-1
				}
			}
			c.matches = func(w time.Time) bool {
				months := (w.Year()*12 + int(w.Month())) - (anchorDay.Year()*12 + int(anchorDay.Month()))
				return months >= 0 && months%n == 0 && dayOK(w) && slices.Contains(times, w.Hour()*60+w.Minute())
			}
		}
	case KindCron:
		type field struct {
			expr string
			set  []int
		}
		rangeSet := func(lo, hi, step int) []int {
			var s []int
			for v := lo; v <= hi; v += step {
				s = append(s, v)
			}
			return s
		}
		minute := pick(rng, field{"0", []int{0}}, field{"30", []int{30}}, field{"*/20", rangeSet(0, 59, 20)},
			field{"0,30", []int{0, 30}}, field{"5-10", rangeSet(5, 10, 1)}, field{"*", rangeSet(0, 59, 1)}, field{"15/15", rangeSet(15, 59, 15)})
		hour := pick(rng, field{"*", rangeSet(0, 23, 1)}, field{"0-3", rangeSet(0, 3, 1)}, field{"2", []int{2}},
			field{"1,2,3", []int{1, 2, 3}}, field{"*/6", rangeSet(0, 23, 6)}, field{"0", []int{0}}, field{"23", []int{23}})
		if minute.expr == "*" && hour.expr == "*" {
			hour = field{"2", []int{2}}
		}
		dom := pick(rng, field{"*", rangeSet(1, 31, 1)}, field{"*", rangeSet(1, 31, 1)}, field{"1", []int{1}},
			field{"15,31", []int{15, 31}}, field{"1-7", rangeSet(1, 7, 1)}, field{"*/10", rangeSet(1, 31, 10)})
		month := pick(rng, field{"*", rangeSet(1, 12, 1)}, field{"*", rangeSet(1, 12, 1)}, field{"MAR,OCT,NOV", []int{3, 10, 11}},
			field{"3-11", rangeSet(3, 11, 1)})
		dow := pick(rng, field{"*", rangeSet(0, 6, 1)}, field{"*", rangeSet(0, 6, 1)}, field{"0", []int{0}},
			field{"MON-FRI", rangeSet(1, 5, 1)}, field{"6,7", []int{6, 0}}, field{"SUN", []int{0}})
		if month.expr != "*" || dom.expr == "1" {
			days = 400
		}
		c.spec = fmt.Sprintf(`{"cron":"%s %s %s %s %s"`, minute.expr, hour.expr, dom.expr, month.expr, dow.expr)
		domStar, dowStar := strings.HasPrefix(dom.expr, "*"), strings.HasPrefix(dow.expr, "*")
		c.matches = func(w time.Time) bool {
			if !slices.Contains(minute.set, w.Minute()) || !slices.Contains(hour.set, w.Hour()) || !slices.Contains(month.set, int(w.Month())) {
				return false
			}
			domOK, dowOK := slices.Contains(dom.set, w.Day()), slices.Contains(dow.set, int(w.Weekday()))
			if domStar || dowStar {
				return domOK && dowOK
			}
			return domOK || dowOK
		}
	case KindRRule:
		freq := pick(rng, "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
		parts := []string{"FREQ=" + freq}
		if n := pick(rng, 1, 1, 2, 3); n > 1 {
			parts = append(parts, fmt.Sprintf("INTERVAL=%d", n))
		}
		switch freq {
		case "WEEKLY":
			if rng.IntN(3) > 0 {
				parts = append(parts, "BYDAY="+strings.Join(subset(rng, []string{"MO", "TU", "WE", "TH", "FR", "SA", "SU"}), ","))
			}
		case "MONTHLY":
			days = 400
			if rng.IntN(2) == 0 {
				parts = append(parts, "BYMONTHDAY="+strings.Join(subset(rng, []string{"1", "15", "29", "31", "-1"}), ","))
			} else {
				parts = append(parts, "BYDAY="+pick(rng, "-1FR", "2SU", "1SU,-1SU", "MO", "5SA"))
				if rng.IntN(3) == 0 {
					parts[len(parts)-1] = "BYDAY=MO,TU,WE,TH,FR"
					parts = append(parts, "BYSETPOS="+pick(rng, "1", "-1", "1,-1"))
				}
			}
		case "YEARLY":
			days = 800
			parts = append(parts, "BYMONTH="+strings.Join(subset(rng, []string{"3", "4", "10", "11"}), ","))
			parts = append(parts, pick(rng, "BYDAY=-1SU", "BYDAY=1SU", "BYMONTHDAY=1,31", "BYDAY=2SU"))
		}
		if rng.IntN(4) > 0 {
			parts = append(parts, "BYHOUR="+strings.Join(subset(rng, []string{"0", "1", "2", "3", "9"}), ","))
		}
		if rng.IntN(2) > 0 {
			parts = append(parts, "BYMINUTE="+strings.Join(subset(rng, []string{"0", "30", "59"}), ","))
		}
		rule := strings.Join(parts, ";")
		c.spec = fmt.Sprintf(`{"rrule":%q`, rule)
		opt, err := rrule.StrToROption(rule)
		if err != nil {
			t.Fatalf("reference rrule %s: %v", rule, err)
		}
		opt.Dtstart = anchorDay // the local midnight of the start date, floating
		r, err := rrule.NewRRule(*opt)
		if err != nil {
			t.Fatalf("reference rrule %s: %v", rule, err)
		}
		c.rruleSet = map[int64]bool{}
		lo, hi := c.from.Add(-72*time.Hour), c.from.Add(time.Duration(days+3)*24*time.Hour)
		for _, w := range r.Between(lo, hi, true) {
			c.rruleSet[w.Unix()] = true
		}
		c.matches = func(w time.Time) bool { return c.rruleSet[w.Unix()] }
	}
	c.kind = kind
	c.to = c.from.Add(time.Duration(days) * 24 * time.Hour)
	c.spec += fmt.Sprintf(`,"timezone":%q%s}`, zone, fields)
	return c
}

var propStats struct{ slots, gaps, overlaps, merged int }

// refResolver resolves wall times by scanning the UTC timeline minute by minute.
type refResolver struct {
	loc      *time.Location
	earliest map[int64]int64 // wall → earliest UTC instant showing it
	gaps     [][3]int64      // skipped walls (lo, hi) exclusive, and the offset before the jump
}

func (r *refResolver) scan(from, to int64, want map[int64]bool) {
	prevW, prevOff := int64(0), int64(0)
	for u := from; u <= to; u += 60 {
		_, o := time.Unix(u, 0).In(r.loc).Zone()
		off := int64(o)
		w := u + off
		if want[w] {
			if _, ok := r.earliest[w]; !ok {
				r.earliest[w] = u
			}
		}
		if u > from && w-prevW > 60 {
			r.gaps = append(r.gaps, [3]int64{prevW, w, prevOff})
		}
		prevW, prevOff = w, off
	}
}

func (r *refResolver) resolve(w int64) (int64, bool) {
	if u, ok := r.earliest[w]; ok {
		return u, true
	}
	for _, g := range r.gaps {
		if w > g[0] && w < g[1] {
			return w - g[2], true
		}
	}
	return 0, false
}

func (c *propCase) check(t *testing.T) {
	sch := mustCompile(t, c.spec, c.created.Format(time.RFC3339Nano))

	// Every civil minute from two days before to two days after the window, tested.
	var cands []int64
	want := map[int64]bool{}
	w0 := c.from.Add(-48 * time.Hour).Truncate(time.Minute)
	w1 := c.to.Add(48 * time.Hour)
	for w := w0; !w.After(w1); {
		if c.rruleSet != nil && !c.matchesDay(w) {
			w = w.Truncate(24 * time.Hour).Add(24 * time.Hour)
			continue
		}
		if c.matches(w) {
			cands = append(cands, w.Unix())
			want[w.Unix()] = true
		}
		w = w.Add(time.Minute)
	}

	ref := &refResolver{loc: c.loc, earliest: map[int64]int64{}}
	if len(cands)*2160 < int(w1.Sub(w0).Minutes()) {
		for _, w := range cands { // sparse: scan around each wall time
			ref.scan(w-18*3600, w+18*3600, map[int64]bool{w: true})
		}
	} else {
		ref.scan(w0.Unix()-26*3600, w1.Unix()+26*3600, want)
	}

	lowerOK := func(u int64) bool {
		return u > c.created.Unix() && (c.startAt.IsZero() || u >= c.startAt.Unix())
	}
	type refSlot struct{ at, wall int64 }
	byInstant := map[int64]int64{}
	for _, w := range cands {
		u, ok := ref.resolve(w)
		if !ok {
			t.Fatalf("reference cannot resolve %s", time.Unix(w, 0).UTC())
		}
		if u <= c.from.Unix() || u > c.to.Unix() || !lowerOK(u) {
			continue
		}
		if _, exists := ref.earliest[w]; !exists {
			propStats.gaps++
		} else if _, o := time.Unix(u+3600, 0).In(c.loc).Zone(); u+3600+int64(o) == w {
			propStats.overlaps++ // the wall time shows again an hour later
		}
		if prev, ok := byInstant[u]; !ok || w < prev {
			if ok {
				propStats.merged++
			}
			byInstant[u] = w
		} else {
			propStats.merged++
		}
	}
	propStats.slots += len(byInstant)
	var wantSlots []refSlot
	for u, w := range byInstant {
		wantSlots = append(wantSlots, refSlot{u, w})
	}
	slices.SortFunc(wantSlots, func(a, b refSlot) int { return int(a.at - b.at) })

	var got []Slot
	for at := c.from; ; {
		s, ok := sch.Next(at)
		if !ok || s.At.After(c.to) {
			break
		}
		if !s.At.After(at) {
			t.Fatalf("not strictly increasing: Next(%s) = %s", at, s.At)
		}
		got = append(got, s)
		at = s.At
		if len(got) > len(wantSlots)+5 {
			break
		}
	}
	for i := 0; i < max(len(got), len(wantSlots)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i].At.Format(time.RFC3339) + " " + got[i].Key
		}
		if i < len(wantSlots) {
			w = time.Unix(wantSlots[i].at, 0).UTC().Format(time.RFC3339) + " " +
				time.Unix(wantSlots[i].wall, 0).UTC().Format("2006-01-02T15:04:05") + "[" + c.loc.String() + "]"
		}
		if g != w {
			t.Fatalf("%s created %s: slot %d\n got  %s\n want %s\n(%d got, %d want)", c.spec, c.created.Format(time.RFC3339),
				i, g, w, len(got), len(wantSlots))
		}
	}
}

// matchesDay is a quick day filter for rrules, whose set is already known.
func (c *propCase) matchesDay(w time.Time) bool {
	day := w.Truncate(24 * time.Hour).Unix()
	for x := range c.rruleSet {
		if x >= day && x < day+secondsPerDay {
			return true
		}
	}
	return false
}
