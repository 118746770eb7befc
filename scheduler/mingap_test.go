package scheduler

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// timesEvery lists n times of day from start, step minutes apart.
func timesEvery(start, n, step int) []string {
	out := make([]string, n)
	for i := range n {
		m := start + i*step
		out[i] = fmt.Sprintf("%02d:%02d", m/60%24, m%60)
	}
	return out
}

// Issue 12 item 4, review: minIntervalSeconds looked at the next 64 fires
// only, so a dense cluster placed after them passed. MinGap must find the
// smallest gap wherever it is: late in a long times list, across midnight,
// on one weekday, across a month's end, at a DST change.
func TestMinGapFindsTheSmallestGapAnywhere(t *testing.T) {
	from := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC) // a Monday
	hourly := timesEvery(0, 20, 60)                      // 00:00 … 19:00, one an hour
	dense := append(append([]string{}, hourly...), "21:00", "21:01")
	for _, c := range []struct {
		name  string
		spec  any
		below time.Duration
		want  bool
	}{
		{"hourly times pass an hour", map[string]any{"scheduleTimes": hourly}, time.Hour, false},
		// 200 times 6 minutes apart, then two a minute apart: fire 201+.
		{"a cluster after the 200th time", map[string]any{"scheduleTimes": append(timesEvery(0, 200, 6), "21:00", "21:01")}, 5 * time.Minute, true},
		{"a cluster late in the day", map[string]any{"scheduleTimes": dense}, time.Hour, true},
		{"across midnight", map[string]any{"scheduleTimes": []string{"00:30", "23:50"}, "timezone": "UTC"}, time.Hour, true},
		{"across midnight, days apart", map[string]any{"scheduleTimes": []string{"00:10", "23:50"}, "scheduleDaysOfWeek": []int{1, 4}}, 30 * time.Minute, false},
		{"only on Saturdays", map[string]any{"scheduleTimes": dense, "scheduleDaysOfWeek": []int{6}}, time.Hour, true},
		{"every other week, on Friday", map[string]any{"recurrence": map[string]any{"frequency": "weekly", "interval": 2, "weekdays": []string{"FR"}, "times": dense}}, time.Hour, true},
		// 30 June 23:55 → 1 July 00:05, months after the first fire (1 January).
		{"month end to month start", map[string]any{"rrule": "FREQ=YEARLY;BYMONTH=1,6,7;BYMONTHDAY=1,-1;BYHOUR=0,23;BYMINUTE=5,55"}, 20 * time.Minute, true},
		{"monthly, one day", map[string]any{"recurrence": map[string]any{"frequency": "monthly", "monthDay": -1, "times": []string{"00:05", "23:55"}}}, time.Hour, false},
		{"cron minute list late in the day", map[string]any{"cron": "0,1 23 * * *"}, time.Hour, true},
		{"cron, 31st then 1st", map[string]any{"cron": "5,55 0,23 1,31 * *"}, 20 * time.Minute, true},
		{"rrule, a cluster of seconds", map[string]any{"rrule": "FREQ=DAILY;BYHOUR=22;BYMINUTE=0;BYSECOND=0,30"}, time.Minute, true},
		// 01:59 and 03:00 are 61 minutes apart on the clock, 1 minute apart
		// on the day clocks spring forward (2026-03-08 in New York).
		{"a DST change", map[string]any{"scheduleTimes": []string{"01:59", "03:00"}, "timezone": "America/New_York"}, 30 * time.Minute, true},
		{"no DST change in UTC", map[string]any{"scheduleTimes": []string{"01:59", "03:00"}, "timezone": "UTC"}, 30 * time.Minute, false},
	} {
		b, _ := json.Marshal(c.spec)
		sp, err := ParseSpec(b)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		sch, err := Compile(sp, DefaultConfig(), from)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		start := time.Now()
		g, found := sch.MinGap(from, c.below)
		if found != c.want || (found && g.Len() >= c.below) {
			t.Errorf("%s: found %v (%s, %s → %s), want %v", c.name, found, g.Len(), g.From, g.To, c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s", c.name, d)
		}
	}
}

// The worst case the spec allows (1,440 times a day, none closer than the
// bound) examines every window and still ends.
func TestMinGapWorstCase(t *testing.T) {
	sp, err := ParseSpec([]byte(`{"scheduleTimes":["` + strings.Join(timesEvery(0, 1440, 1), `","`) + `"],"timezone":"Europe/Paris"}`))
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	sch, err := Compile(sp, DefaultConfig(), from)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if g, found := sch.MinGap(from, 59*time.Second); found {
		t.Fatalf("found %s", g.Len())
	}
	t.Logf("1,440 fires a day, every window: %s", time.Since(start))
}

func TestZoneTransitions(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	got := zoneTransitions(ny, from, from.AddDate(1, 0, 0))
	want := []time.Time{time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)}
	if len(got) != 2 || !got[0].Equal(want[0]) || !got[1].Equal(want[1]) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	if got := zoneTransitions(time.UTC, from, from.AddDate(1, 0, 0)); len(got) != 0 {
		t.Fatalf("UTC transitions %v", got)
	}
}
