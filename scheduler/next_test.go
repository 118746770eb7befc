package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestScheduleVectors lists fires of schedules around DST changes and other edges, with
// the expected instants written out by hand.
func TestScheduleVectors(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		created string
		from    string // list slots strictly after this (default: created)
		want    []string
		last    bool // want lists every slot: there is none after
	}{
		{
			name:    "New York 02:30 daily, spring forward",
			spec:    `{"recurrence":{"frequency":"daily","times":["02:30"]},"timezone":"America/New_York"}`,
			created: "2024-03-08T12:00:00Z",
			want:    []string{"2024-03-09T07:30:00Z", "2024-03-10T07:30:00Z", "2024-03-11T06:30:00Z", "2024-03-12T06:30:00Z"},
		},
		{
			name:    "New York 02:30 daily, fall back",
			spec:    `{"recurrence":{"frequency":"daily","times":["02:30"]},"timezone":"America/New_York"}`,
			created: "2024-11-01T12:00:00Z",
			want:    []string{"2024-11-02T06:30:00Z", "2024-11-03T07:30:00Z", "2024-11-04T07:30:00Z"},
		},
		{
			name:    "New York 01:30 daily, fall back fires once at the earlier instant",
			spec:    `{"scheduleTimes":["01:30"],"timezone":"America/New_York"}`,
			created: "2024-11-01T12:00:00Z",
			want:    []string{"2024-11-02T05:30:00Z", "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"},
		},
		{
			name:    "Berlin 02:30 daily, spring forward",
			spec:    `{"recurrence":{"frequency":"daily","times":["02:30"]},"timezone":"Europe/Berlin"}`,
			created: "2024-03-29T12:00:00Z",
			want:    []string{"2024-03-30T01:30:00Z", "2024-03-31T01:30:00Z", "2024-04-01T00:30:00Z"},
		},
		{
			name:    "Berlin 02:30 daily, fall back",
			spec:    `{"recurrence":{"frequency":"daily","times":["02:30"]},"timezone":"Europe/Berlin"}`,
			created: "2024-10-25T12:00:00Z",
			want:    []string{"2024-10-26T00:30:00Z", "2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"},
		},
		{
			name:    "Sydney 02:30 daily, fall back (April)",
			spec:    `{"recurrence":{"frequency":"daily","times":["02:30"]},"timezone":"Australia/Sydney"}`,
			created: "2024-04-05T00:00:00Z",
			want:    []string{"2024-04-05T15:30:00Z", "2024-04-06T15:30:00Z", "2024-04-07T16:30:00Z"},
		},
		{
			name:    "Sydney 02:30 daily, spring forward (October)",
			spec:    `{"recurrence":{"frequency":"daily","times":["02:30"]},"timezone":"Australia/Sydney"}`,
			created: "2024-10-04T00:00:00Z",
			want:    []string{"2024-10-04T16:30:00Z", "2024-10-05T16:30:00Z", "2024-10-06T15:30:00Z"},
		},
		{
			name:    "Lord Howe 02:15 daily, 30-minute gap",
			spec:    `{"scheduleTimes":["02:15"],"timezone":"Australia/Lord_Howe"}`,
			created: "2024-10-04T00:00:00Z",
			want:    []string{"2024-10-04T15:45:00Z", "2024-10-05T15:45:00Z", "2024-10-06T15:15:00Z"},
		},
		{
			name:    "Sao Paulo midnight gap: one fire on each civil date",
			spec:    `{"recurrence":{"frequency":"daily","times":["00:00"]},"timezone":"America/Sao_Paulo"}`,
			created: "2018-11-02T12:00:00Z",
			want:    []string{"2018-11-03T03:00:00Z", "2018-11-04T03:00:00Z", "2018-11-05T02:00:00Z"},
		},
		{
			name:    "Sao Paulo midnight, fall back",
			spec:    `{"recurrence":{"frequency":"daily","times":["00:00"]},"timezone":"America/Sao_Paulo"}`,
			created: "2019-02-15T12:00:00Z",
			want:    []string{"2019-02-16T02:00:00Z", "2019-02-17T03:00:00Z", "2019-02-18T03:00:00Z"},
		},
		{
			name:    "Apia: the skipped day and the next resolve to one instant, fired once",
			spec:    `{"scheduleTimes":["09:00"],"timezone":"Pacific/Apia"}`,
			created: "2011-12-28T00:00:00Z",
			want:    []string{"2011-12-28T19:00:00Z", "2011-12-29T19:00:00Z", "2011-12-30T19:00:00Z", "2011-12-31T19:00:00Z"},
		},
		{
			name:    "cron 0 2 * * * in Berlin, spring forward",
			spec:    `{"cron":"0 2 * * *","timezone":"Europe/Berlin"}`,
			created: "2024-03-29T12:00:00Z",
			want:    []string{"2024-03-30T01:00:00Z", "2024-03-31T01:00:00Z", "2024-04-01T00:00:00Z"},
		},
		{
			name:    "cron 0 2 * * * in Berlin, fall back",
			spec:    `{"cron":"0 2 * * *","timezone":"Europe/Berlin"}`,
			created: "2024-10-25T12:00:00Z",
			want:    []string{"2024-10-26T00:00:00Z", "2024-10-27T00:00:00Z", "2024-10-28T01:00:00Z"},
		},
		{
			name:    "hourly cron across New York spring forward: 02:00 and 03:00 are one instant",
			spec:    `{"cron":"0 * * * *","timezone":"America/New_York"}`,
			created: "2024-03-10T05:30:00Z",
			want:    []string{"2024-03-10T06:00:00Z", "2024-03-10T07:00:00Z", "2024-03-10T08:00:00Z"},
		},
		{
			name:    "out-of-order civil times in a gap come out in instant order",
			spec:    `{"scheduleTimes":["02:30","03:15"],"timezone":"America/New_York"}`,
			created: "2024-03-10T05:00:00Z",
			want:    []string{"2024-03-10T07:15:00Z", "2024-03-10T07:30:00Z", "2024-03-11T06:30:00Z", "2024-03-11T07:15:00Z"},
		},
		{
			name:    "calendar times with days of week (Mon, Tue) in Rome",
			spec:    `{"scheduleTimes":["15:00","10:00"],"scheduleDaysOfWeek":[2,1],"timezone":"Europe/Rome"}`,
			created: "2024-06-02T12:00:00Z", // a Sunday
			want: []string{"2024-06-03T08:00:00Z", "2024-06-03T13:00:00Z", "2024-06-04T08:00:00Z", "2024-06-04T13:00:00Z",
				"2024-06-10T08:00:00Z", "2024-06-10T13:00:00Z"},
		},
		{
			name:    "every 10 days, civil, across a DST change",
			spec:    `{"recurrence":{"frequency":"daily","interval":10,"times":["09:00"]},"timezone":"Europe/Berlin","startAt":"2024-03-01T00:00:00+01:00"}`,
			created: "2024-02-20T00:00:00Z",
			want:    []string{"2024-03-01T08:00:00Z", "2024-03-11T08:00:00Z", "2024-03-21T08:00:00Z", "2024-03-31T07:00:00Z", "2024-04-10T07:00:00Z"},
		},
		{
			name:    "monthly day 31 skips shorter months",
			spec:    `{"recurrence":{"frequency":"monthly","monthDay":31,"times":["12:00"]}}`,
			created: "2024-01-01T00:00:00Z",
			want: []string{"2024-01-31T12:00:00Z", "2024-03-31T12:00:00Z", "2024-05-31T12:00:00Z", "2024-07-31T12:00:00Z",
				"2024-08-31T12:00:00Z", "2024-10-31T12:00:00Z", "2024-12-31T12:00:00Z", "2025-01-31T12:00:00Z"},
		},
		{
			name:    "monthly day -1 is the last day",
			spec:    `{"recurrence":{"frequency":"monthly","monthDay":-1,"times":["12:00"]}}`,
			created: "2024-01-01T00:00:00Z",
			want: []string{"2024-01-31T12:00:00Z", "2024-02-29T12:00:00Z", "2024-03-31T12:00:00Z", "2024-04-30T12:00:00Z",
				"2024-05-31T12:00:00Z", "2024-06-30T12:00:00Z"},
		},
		{
			name:    "rrule last Friday at 09:00 in New York",
			spec:    `{"rrule":"FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9;BYMINUTE=0","timezone":"America/New_York"}`,
			created: "2024-01-01T00:00:00Z",
			want:    []string{"2024-01-26T14:00:00Z", "2024-02-23T14:00:00Z", "2024-03-29T13:00:00Z", "2024-04-26T13:00:00Z"},
		},
		{
			name:    "interval: anchor + k·N on the UTC timeline across DST",
			spec:    `{"recurrenceSeconds":86400,"fireAtUtc":"2024-03-09T12:00:00Z"}`,
			created: "2024-03-01T00:00:00Z",
			want:    []string{"2024-03-09T12:00:00Z", "2024-03-10T12:00:00Z", "2024-03-11T12:00:00Z"},
		},
		{
			name:    "interval: a past fireAtUtc sets the phase",
			spec:    `{"recurrenceSeconds":3600,"fireAtUtc":"2020-01-01T00:30:00Z"}`,
			created: "2024-03-01T10:45:00Z",
			want:    []string{"2024-03-01T11:30:00Z", "2024-03-01T12:30:00Z"},
		},
		{
			name:    "interval: delaySeconds 0 fires at creation",
			spec:    `{"recurrenceSeconds":60,"delaySeconds":0}`,
			created: "2024-03-01T10:45:00Z",
			want:    []string{"2024-03-01T10:45:00Z", "2024-03-01T10:46:00Z"},
		},
		{
			name:    "interval: default first fire is now + N",
			spec:    `{"recurrenceSeconds":60}`,
			created: "2024-03-01T10:45:00.5Z",
			want:    []string{"2024-03-01T10:46:01Z", "2024-03-01T10:47:01Z"},
		},
		{
			name:    "interval: startAt alone starts the series",
			spec:    `{"recurrenceSeconds":3600,"startAt":"2024-06-01T09:00:00Z"}`,
			created: "2024-03-01T10:45:17Z",
			want:    []string{"2024-06-01T09:00:00Z", "2024-06-01T10:00:00Z"},
		},
		{
			name:    "interval: startAt bounds a series anchored elsewhere",
			spec:    `{"recurrenceSeconds":3600,"fireAtUtc":"2024-03-01T00:30:00Z","startAt":"2024-06-01T09:00:00Z"}`,
			created: "2024-03-01T00:00:00Z",
			want:    []string{"2024-06-01T09:30:00Z", "2024-06-01T10:30:00Z"},
		},
		{
			name:    "endAtUtc is inclusive",
			spec:    `{"recurrenceSeconds":3600,"endAtUtc":"2024-03-01T13:00:00Z"}`,
			created: "2024-03-01T10:00:00Z",
			want:    []string{"2024-03-01T11:00:00Z", "2024-03-01T12:00:00Z", "2024-03-01T13:00:00Z"},
			last:    true,
		},
		{
			name:    "endAtUtc is inclusive for civil schedules",
			spec:    `{"scheduleTimes":["09:00"],"timezone":"Europe/Berlin","endAtUtc":"2024-03-03T08:00:00Z"}`,
			created: "2024-03-01T00:00:00Z",
			want:    []string{"2024-03-01T08:00:00Z", "2024-03-02T08:00:00Z", "2024-03-03T08:00:00Z"},
			last:    true,
		},
		{
			name:    "startAt is inclusive",
			spec:    `{"scheduleTimes":["09:00"],"startAt":"2024-03-05T09:00:00Z"}`,
			created: "2024-03-01T00:00:00Z",
			want:    []string{"2024-03-05T09:00:00Z", "2024-03-06T09:00:00Z"},
		},
		{
			name:    "a past startAt sets the phase but no slot precedes the creation time",
			spec:    `{"recurrence":{"frequency":"daily","interval":2,"times":["09:00"]},"startAt":"2024-02-28T00:00:00Z"}`,
			created: "2024-03-05T10:00:00Z",
			want:    []string{"2024-03-07T09:00:00Z", "2024-03-09T09:00:00Z"},
		},
		{
			name:    "interval: a past startAt sets the phase",
			spec:    `{"recurrenceSeconds":3600,"startAt":"2024-02-28T00:30:00Z"}`,
			created: "2024-03-05T10:00:00Z",
			want:    []string{"2024-03-05T10:30:00Z", "2024-03-05T11:30:00Z"},
		},
		{
			name:    "default lower bound is strictly after creation",
			spec:    `{"scheduleTimes":["09:00"]}`,
			created: "2024-03-01T09:00:00Z",
			want:    []string{"2024-03-02T09:00:00Z"},
		},
		{
			name:    "once: fireAtUtc wins over delaySeconds",
			spec:    `{"fireAtUtc":"2024-03-01T12:00:00Z","delaySeconds":60}`,
			created: "2024-03-01T10:00:00Z",
			want:    []string{"2024-03-01T12:00:00Z"},
			last:    true,
		},
		{
			name:    "once: a past time fires at once",
			spec:    `{"fireAtUtc":"2020-03-01T12:00:00Z"}`,
			created: "2024-03-01T10:00:00Z",
			from:    "2024-03-01T09:00:00Z",
			want:    []string{"2024-03-01T10:00:00Z"},
			last:    true,
		},
		{
			name:    "once: delaySeconds",
			spec:    `{"delaySeconds":3600}`,
			created: "2024-03-01T10:00:00Z",
			want:    []string{"2024-03-01T11:00:00Z"},
			last:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sch := mustCompile(t, tt.spec, tt.created)
			from := mustTime(t, tt.created).Add(-time.Nanosecond)
			if tt.from != "" {
				from = mustTime(t, tt.from)
			}
			got := slotTimes(slotsAfter(sch, from, len(tt.want)+1))
			if len(got) > len(tt.want) && !tt.last {
				got = got[:len(tt.want)]
			}
			if !equalStrings(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestSlotKeys(t *testing.T) {
	sch := mustCompile(t, `{"scheduleTimes":["09:00"],"timezone":"Pacific/Apia"}`, "2011-12-29T00:00:00Z")
	got := slotsAfter(sch, mustTime(t, "2011-12-29T00:00:00Z"), 3)
	want := []string{"2011-12-29T09:00:00[Pacific/Apia]", "2011-12-30T09:00:00[Pacific/Apia]", "2012-01-01T09:00:00[Pacific/Apia]"}
	for i := range want {
		if got[i].Key != want[i] {
			t.Errorf("slot %d key %q, want %q", i, got[i].Key, want[i])
		}
	}
	// The key of an instant does not depend on where the search starts.
	again, _ := sch.Next(got[1].At.Add(-time.Second))
	if again.Key != got[1].Key {
		t.Errorf("key changed: %q vs %q", again.Key, got[1].Key)
	}

	iv := mustCompile(t, `{"recurrenceSeconds":60,"fireAtUtc":"2024-01-01T00:00:00Z"}`, "2024-01-01T00:00:00Z")
	s, _ := iv.Next(mustTime(t, "2024-01-01T01:00:30Z"))
	if s.Key != "61" || s.Seq != 61 || s.At.Format(time.RFC3339) != "2024-01-01T01:01:00Z" {
		t.Errorf("interval slot %+v", s)
	}
	once := mustCompile(t, `{"delaySeconds":5}`, "2024-01-01T00:00:00Z")
	if s, _ := once.First(); s.Key != "once" {
		t.Errorf("once key %q", s.Key)
	}
}

// nthWeekdayCheck verifies a list of fires against an independent day-by-day count.
func TestNthWeekdayOverTwoYears(t *testing.T) {
	tests := []struct {
		name string
		spec string
		ok   func(d time.Time) bool
	}{
		{"3rd Tuesday", `{"recurrence":{"frequency":"monthly","nthWeekday":{"weekday":"TU","nth":3},"times":["09:00"]},"timezone":"Europe/Berlin"}`,
			func(d time.Time) bool { return d.Weekday() == time.Tuesday && (d.Day()-1)/7 == 2 }},
		{"last Friday", `{"recurrence":{"frequency":"monthly","nthWeekday":{"weekday":"FR","nth":-1},"times":["09:00"]},"timezone":"Europe/Berlin"}`,
			func(d time.Time) bool { return d.Weekday() == time.Friday && d.AddDate(0, 0, 7).Month() != d.Month() }},
		{"last Friday (rrule)", `{"rrule":"FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9","timezone":"Europe/Berlin"}`,
			func(d time.Time) bool { return d.Weekday() == time.Friday && d.AddDate(0, 0, 7).Month() != d.Month() }},
		{"3rd Tuesday (rrule)", `{"rrule":"FREQ=MONTHLY;BYDAY=3TU;BYHOUR=9","timezone":"Europe/Berlin"}`,
			func(d time.Time) bool { return d.Weekday() == time.Tuesday && (d.Day()-1)/7 == 2 }},
	}
	berlin := mustLoc(t, "Europe/Berlin")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sch := mustCompile(t, tt.spec, "2024-01-01T00:00:00Z")
			var want []string
			for d := time.Date(2024, 1, 1, 9, 0, 0, 0, berlin); d.Year() < 2026; d = d.AddDate(0, 0, 1) {
				if tt.ok(d) {
					want = append(want, d.UTC().Format(time.RFC3339))
				}
			}
			if len(want) != 24 {
				t.Fatalf("reference has %d dates", len(want))
			}
			got := slotTimes(slotsAfter(sch, mustTime(t, "2024-01-01T00:00:00Z"), 24))
			if !equalStrings(got, want) {
				t.Errorf("got  %v\nwant %v", got, want)
			}
		})
	}
	// Spot checks.
	sch := mustCompile(t, tests[0].spec, "2024-01-01T00:00:00Z")
	if s, _ := sch.First(); s.Key != "2024-01-16T09:00:00[Europe/Berlin]" {
		t.Errorf("first 3rd Tuesday %s", s.Key)
	}
}

// Every 2 weeks on Tuesday: the week of the start date is week 0. The phase holds across
// a year and whatever point Next starts from (re-anchoring).
func TestEveryTwoWeeksKeepsPhase(t *testing.T) {
	for _, spec := range []string{
		`{"recurrence":{"frequency":"weekly","interval":2,"weekdays":["TU"],"times":["09:00"]},"timezone":"Europe/Berlin"}`,
		`{"rrule":"FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;BYHOUR=9","timezone":"Europe/Berlin"}`,
		`{"cron":"0 9 * * 2","timezone":"Europe/Berlin"}`, // control: weekly, so every second slot
	} {
		created := "2024-01-03T12:00:00Z" // Wednesday; week of Monday 2024-01-01 is week 0
		sch := mustCompile(t, spec, created)
		berlin := mustLoc(t, "Europe/Berlin")
		step := 14
		if strings.Contains(spec, "cron") {
			step = 7
		}
		first := time.Date(2024, 1, 16, 9, 0, 0, 0, berlin)
		if step == 7 {
			first = time.Date(2024, 1, 9, 9, 0, 0, 0, berlin)
		}
		slots := slotsAfter(sch, mustTime(t, created), 60)
		for i, s := range slots {
			want := first.AddDate(0, 0, step*i)
			if !s.At.Equal(want) {
				t.Fatalf("%s: slot %d = %s, want %s", spec, i, s.At, want)
			}
		}
		// Re-anchored: start the search anywhere in the next 20 years.
		for i := 0; i < 200; i++ {
			after := mustTime(t, created).Add(time.Duration(i) * 876 * time.Hour).Add(time.Duration(i*i) * time.Minute)
			s, ok := sch.Next(after)
			if !ok {
				t.Fatalf("no slot after %s", after)
			}
			days := s.At.In(berlin).Sub(first).Hours() / 24
			local := s.At.In(berlin)
			if local.Weekday() != time.Tuesday || local.Hour() != 9 || int(days+0.5)%step != 0 {
				t.Fatalf("%s: Next(%s) = %s (%.2f days from first)", spec, after, local, days)
			}
			if !s.At.After(after) || s.At.Sub(after) > time.Duration(step)*24*time.Hour+time.Hour {
				t.Fatalf("%s: Next(%s) = %s is not the next one", spec, after, local)
			}
		}
	}
}

func TestRRuleDefaultsFromStartDate(t *testing.T) {
	tests := []struct{ rule, created, want string }{
		{"FREQ=DAILY", "2024-05-10T15:20:00Z", "2024-05-11T00:00:00Z"},
		{"FREQ=DAILY;BYHOUR=9", "2024-05-10T15:20:00Z", "2024-05-11T09:00:00Z"},
		{"FREQ=WEEKLY", "2024-05-10T15:20:00Z", "2024-05-17T00:00:00Z"}, // the start date's weekday
		{"FREQ=MONTHLY", "2024-05-10T15:20:00Z", "2024-06-10T00:00:00Z"},
		{"FREQ=YEARLY", "2024-05-10T15:20:00Z", "2025-05-10T00:00:00Z"},
		{"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", "2024-05-10T00:00:00Z", "2044-02-29T00:00:00Z"},
		{"FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=17", "2024-05-10T00:00:00Z", "2024-05-31T17:00:00Z"},
		{"FREQ=YEARLY;BYWEEKNO=1;BYDAY=MO", "2024-05-10T00:00:00Z", "2024-12-30T00:00:00Z"},
	}
	for _, tt := range tests {
		sch := mustCompile(t, `{"rrule":"`+tt.rule+`"}`, tt.created)
		s, ok := sch.First()
		if !ok || s.At.Format(time.RFC3339) != tt.want {
			t.Errorf("%s created %s: first %v, want %s", tt.rule, tt.created, s.At, tt.want)
		}
	}
}

// Next after n steps equals Next from scratch, for every kind, far from the start.
func TestNextIsIndependentOfHistory(t *testing.T) {
	specs := []string{
		`{"recurrence":{"frequency":"daily","interval":3,"times":["09:00","21:30"]},"timezone":"America/New_York"}`,
		`{"recurrence":{"frequency":"weekly","interval":3,"weekdays":["MO","FR"],"times":["09:00"]},"timezone":"Australia/Sydney"}`,
		`{"recurrence":{"frequency":"monthly","interval":5,"monthDay":30,"times":["09:00"]},"timezone":"Europe/Berlin"}`,
		`{"recurrence":{"frequency":"monthly","interval":2,"nthWeekday":{"weekday":"SU","nth":5},"times":["09:00"]},"timezone":"Europe/Berlin"}`,
		`{"rrule":"FREQ=MONTHLY;INTERVAL=7;BYMONTHDAY=1,15;BYHOUR=8,20","timezone":"Asia/Tehran"}`,
		`{"rrule":"FREQ=YEARLY;INTERVAL=3;BYMONTH=3,10;BYDAY=-1SU;BYHOUR=2;BYMINUTE=30","timezone":"Europe/Berlin"}`,
		`{"rrule":"FREQ=DAILY;INTERVAL=9;BYHOUR=0,12","timezone":"America/Sao_Paulo"}`,
		`{"cron":"*/20 1-3 * 3,10,11 0","timezone":"America/New_York"}`,
	}
	for _, spec := range specs {
		sch := mustCompile(t, spec, "2014-02-03T04:05:06Z")
		from := mustTime(t, "2024-01-01T00:00:00Z")
		seq := slotsAfter(sch, from, 60)
		if len(seq) < 20 {
			t.Fatalf("%s: only %d slots", spec, len(seq))
		}
		for i := 1; i < len(seq); i++ {
			if !seq[i].At.After(seq[i-1].At) {
				t.Fatalf("%s: not increasing at %d", spec, i)
			}
			mid := seq[i-1].At.Add(seq[i].At.Sub(seq[i-1].At) / 2)
			if s, _ := sch.Next(mid); s != seq[i] {
				t.Fatalf("%s: Next(%s) = %+v, want %+v", spec, mid, s, seq[i])
			}
		}
	}
}

func TestMaxOccurrencesAndPreview(t *testing.T) {
	got, err := Preview([]byte(`{"scheduleTimes":["09:00"],"maxOccurrences":3}`), DefaultConfig(), mustTime(t, "2024-01-01T00:00:00Z"), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2024-01-01T09:00:00Z", "2024-01-02T09:00:00Z", "2024-01-03T09:00:00Z"}
	if !equalStrings(formatAll(got), want) {
		t.Errorf("got %v want %v", formatAll(got), want)
	}

	got, err = Preview([]byte(`{"recurrence":{"frequency":"daily","times":["02:30"]},"timezone":"America/New_York"}`),
		DefaultConfig(), mustTime(t, "2024-03-09T12:00:00Z"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"2024-03-10T07:30:00Z", "2024-03-11T06:30:00Z"}; !equalStrings(formatAll(got), want) {
		t.Errorf("got %v want %v", formatAll(got), want)
	}

	for _, n := range []int{0, -1, MaxPreviewCount + 1} {
		if _, err := Preview([]byte(`{"scheduleTimes":["09:00"]}`), DefaultConfig(), time.Now(), n); err == nil ||
			!strings.Contains(err.Error(), "count") {
			t.Errorf("count %d: err %v", n, err)
		}
	}
	if got, err := Preview([]byte(`{"cron":"* * * * *"}`), DefaultConfig(), mustTime(t, "2024-01-01T00:00:00Z"), MaxPreviewCount); err != nil || len(got) != MaxPreviewCount {
		t.Errorf("max count: %d, %v", len(got), err)
	}
	if _, err := Preview([]byte(`{"cron":"0 0 30 2 *"}`), DefaultConfig(), time.Now(), 1); err == nil {
		t.Error("February 30 previewed")
	}
	got, _ = Preview([]byte(`{"delaySeconds":10}`), DefaultConfig(), mustTime(t, "2024-01-01T00:00:00Z"), 5)
	if fmt.Sprint(formatAll(got)) != "[2024-01-01T00:00:10Z]" {
		t.Errorf("once preview %v", got)
	}
}

// A compiled schedule is shared by the poller's goroutines; run with -race.
func TestScheduleConcurrentUse(t *testing.T) {
	specs := []string{
		`{"rrule":"FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9","timezone":"America/New_York"}`,
		`{"recurrence":{"frequency":"weekly","interval":2,"weekdays":["TU"],"times":["09:00"]},"timezone":"Europe/Berlin"}`,
		`{"cron":"*/5 * * * *","timezone":"Australia/Lord_Howe"}`,
		`{"recurrenceSeconds":60}`,
	}
	for _, spec := range specs {
		sch := mustCompile(t, spec, "2014-01-01T00:00:00Z")
		from := mustTime(t, "2024-01-01T00:00:00Z")
		want := slotsAfter(sch, from, 50)
		done := make(chan []Slot)
		for g := 0; g < 8; g++ {
			go func() { done <- slotsAfter(sch, from, 50) }()
		}
		for g := 0; g < 8; g++ {
			got := <-done
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s: concurrent slot %d differs", spec, i)
				}
			}
		}
	}
}

func TestCronDSTDayCountsAndDayOrRule(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	sch := mustCompile(t, `{"cron":"0 * * * *","timezone":"America/New_York"}`, "2024-01-01T00:00:00Z")
	for _, tt := range []struct {
		day  time.Time
		want int
	}{
		{time.Date(2024, 3, 10, 0, 0, 0, 0, ny), 23},
		{time.Date(2024, 11, 3, 0, 0, 0, 0, ny), 24}, // a 25-hour day: 01:00 fires once
		{time.Date(2024, 6, 1, 0, 0, 0, 0, ny), 24},
	} {
		end := time.Date(tt.day.Year(), tt.day.Month(), tt.day.Day()+1, 0, 0, 0, 0, ny)
		n := 0
		for s, ok := sch.Next(tt.day.Add(-time.Second)); ok && s.At.Before(end); s, ok = sch.Next(s.At) {
			n++
		}
		if n != tt.want {
			t.Errorf("%s: %d fires, want %d", tt.day.Format("2006-01-02"), n, tt.want)
		}
	}

	// Both day fields restricted: either matches (Vixie cron). One starting with "*": both.
	or := mustCompile(t, `{"cron":"0 0 13 * 5"}`, "2024-09-01T00:00:00Z")
	want := []string{"2024-09-06T00:00:00Z", "2024-09-13T00:00:00Z", "2024-09-20T00:00:00Z", "2024-09-27T00:00:00Z", "2024-10-04T00:00:00Z", "2024-10-11T00:00:00Z", "2024-10-13T00:00:00Z"}
	if got := slotTimes(slotsAfter(or, mustTime(t, "2024-09-01T00:00:00Z"), len(want))); !equalStrings(got, want) {
		t.Errorf("dom OR dow: %v", got)
	}
	and := mustCompile(t, `{"cron":"0 0 */2 * 5"}`, "2024-09-01T00:00:00Z")
	want = []string{"2024-09-13T00:00:00Z", "2024-09-27T00:00:00Z", "2024-10-11T00:00:00Z"}
	if got := slotTimes(slotsAfter(and, mustTime(t, "2024-09-01T00:00:00Z"), len(want))); !equalStrings(got, want) {
		t.Errorf("dom AND dow: %v", got)
	}
}
