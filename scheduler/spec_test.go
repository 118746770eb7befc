package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		in, field, msg string
	}{
		{`{"cronn":"* * * * *"}`, "cronn", "unknown field"},
		{`{"recurrence":{"frequency":"daily","every":2}}`, "every", "unknown field"},
		{`{"delaySeconds":"10"}`, "delaySeconds", "whole number"},
		{`{"delaySeconds":1.5}`, "delaySeconds", "whole number"},
		{`{"recurrence":{"interval":"2"}}`, "recurrence.interval", "whole number"},
		{`{"scheduleTimes":"10:00"}`, "scheduleTimes", "array"},
		{`{"delaySeconds":10} {}`, "", "after the JSON object"},
		{``, "", "empty"},
		{`[]`, "", "object"},
		{`{"delaySeconds":}`, "", "invalid JSON"},
	}
	for _, tt := range tests {
		_, err := ParseSpec([]byte(tt.in))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Message, tt.msg) {
			t.Errorf("ParseSpec(%s) = %v, want field %q with %q", tt.in, err, tt.field, tt.msg)
		}
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ParseSpec(%s): not ErrInvalidSpec", tt.in)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	now := mustTime(t, "2024-03-01T00:00:00Z")
	tests := []struct {
		spec, field, msg string
	}{
		{`{}`, "", "no schedule"},
		{`{"timezone":"Europe/Berlin"}`, "", "no schedule"},
		{`{"recurrenceSeconds":60,"cron":"* * * * *"}`, "cron", "cannot be combined with recurrenceSeconds"},
		{`{"scheduleTimes":["09:00"],"rrule":"FREQ=DAILY"}`, "rrule", "cannot be combined with scheduleTimes"},
		{`{"scheduleDaysOfWeek":[1]}`, "scheduleTimes", "required"},
		{`{"scheduleTimes":[]}`, "scheduleTimes", "at least one"},
		{`{"scheduleTimes":["09:00","25:00"]}`, "scheduleTimes[1]", "HH:mm"},
		{`{"scheduleTimes":["9am"]}`, "scheduleTimes[0]", "HH:mm"},
		{`{"scheduleTimes":["09:00"],"scheduleDaysOfWeek":[7]}`, "scheduleDaysOfWeek[0]", "0 (Sunday)"},
		{`{"scheduleTimes":["09:00"],"fireAtUtc":"2024-03-02T00:00:00Z"}`, "fireAtUtc", "startAt"},
		{`{"cron":"0 9 * * *","delaySeconds":10}`, "delaySeconds", "startAt"},
		{`{"recurrence":{"frequency":"hourly","times":["09:00"]}}`, "recurrence.frequency", "daily"},
		{`{"recurrence":{"times":["09:00"]}}`, "recurrence.frequency", "required"},
		{`{"recurrence":{"frequency":"daily","interval":0,"times":["09:00"]}}`, "recurrence.interval", "between 1"},
		{`{"recurrence":{"frequency":"daily"}}`, "recurrence.times", "required"},
		{`{"recurrence":{"frequency":"daily","times":["24:00"]}}`, "recurrence.times[0]", "HH:mm"},
		{`{"recurrence":{"frequency":"daily","weekdays":["MO"],"times":["09:00"]}}`, "recurrence.weekdays", "only applies to frequency weekly"},
		{`{"recurrence":{"frequency":"weekly","times":["09:00"]}}`, "recurrence.weekdays", "required"},
		{`{"recurrence":{"frequency":"weekly","weekdays":["MO","XX"],"times":["09:00"]}}`, "recurrence.weekdays[1]", "MO, TU"},
		{`{"recurrence":{"frequency":"monthly","times":["09:00"]}}`, "recurrence.monthDay", "needs monthDay"},
		{`{"recurrence":{"frequency":"monthly","monthDay":0,"times":["09:00"]}}`, "recurrence.monthDay", "between 1 and 31"},
		{`{"recurrence":{"frequency":"monthly","monthDay":32,"times":["09:00"]}}`, "recurrence.monthDay", "between 1 and 31"},
		{`{"recurrence":{"frequency":"monthly","monthDay":-2,"times":["09:00"]}}`, "recurrence.monthDay", "-1"},
		{`{"recurrence":{"frequency":"monthly","monthDay":1,"nthWeekday":{"weekday":"TU","nth":3},"times":["09:00"]}}`, "recurrence.nthWeekday", "cannot be combined"},
		{`{"recurrence":{"frequency":"monthly","nthWeekday":{"weekday":"TU","nth":6},"times":["09:00"]}}`, "recurrence.nthWeekday.nth", "between 1 and 5"},
		{`{"recurrence":{"frequency":"monthly","nthWeekday":{"weekday":"TUE","nth":1},"times":["09:00"]}}`, "recurrence.nthWeekday.weekday", "MO, TU"},
		{`{"recurrence":{"frequency":"weekly","weekdays":["MO"],"monthDay":3,"times":["09:00"]}}`, "recurrence.monthDay", "only applies to frequency monthly"},
		{`{"rrule":"FREQ=HOURLY"}`, "rrule", "only DAILY, WEEKLY, MONTHLY and YEARLY"},
		{`{"rrule":"FREQ=MINUTELY;BYHOUR=9"}`, "rrule", "only DAILY, WEEKLY, MONTHLY and YEARLY"},
		{`{"rrule":"FREQ=SECONDLY"}`, "rrule", "not accepted"},
		{`{"rrule":"FREQ=FORTNIGHTLY"}`, "rrule", "not a frequency"},
		{`{"rrule":"BYHOUR=9"}`, "rrule", "FREQ is required"},
		{`{"rrule":"FREQ=DAILY;COUNT=3"}`, "rrule", "maxOccurrences"},
		{`{"rrule":"FREQ=DAILY;UNTIL=20250101T000000Z"}`, "rrule", "endAtUtc"},
		{`{"rrule":"FREQ=DAILY;BYHOUR=24"}`, "rrule", "between 0 and 23"},
		{`{"rrule":"FREQ=WEEKLY;BYMONTHDAY=3"}`, "rrule", "BYMONTHDAY is not allowed"},
		{`{"rrule":"FREQ=DAILY;BYDAY=2MO"}`, "rrule", "only allowed with FREQ=MONTHLY"},
		{`{"rrule":"FREQ=MONTHLY;BYDAY=6MO"}`, "rrule", "at most 5"},
		{`{"rrule":"FREQ=DAILY;FOO=1"}`, "rrule", "unknown part"},
		{`{"rrule":"FREQ=DAILY;FREQ=WEEKLY"}`, "rrule", "twice"},
		{`{"rrule":"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}`, "rrule", "no slot within 100 years"},
		{`{"rrule":"FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31"}`, "rrule", "no slot within 100 years"},
		{`{"cron":"0 0 30 2 *"}`, "cron", "no slot within 100 years"},
		{`{"cron":"61 * * * *"}`, "cron", "field 1 (minute): 61 is out of range 0-59"},
		{`{"cron":"* * * *"}`, "cron", "five fields"},
		{`{"cron":"0 9 * * MON-FRI/0"}`, "cron", "step"},
		{`{"cron":"0 9 L * *"}`, "cron", "not supported"},
		{`{"cron":"0 9 * * 5-1"}`, "cron", "backwards"},
		{`{"cron":"@reboot"}`, "cron", "unknown macro"},
		{`{"scheduleTimes":["09:00"],"timezone":"Mars/Olympus"}`, "timezone", "unknown time zone"},
		{`{"scheduleTimes":["09:00"],"timezone":"Local"}`, "timezone", "IANA"},
		{`{"recurrenceSeconds":0}`, "recurrenceSeconds", "between 1"},
		{`{"delaySeconds":-1}`, "delaySeconds", "between 0"},
		{`{"fireAtUtc":"tomorrow"}`, "fireAtUtc", "RFC 3339"},
		{`{"fireAtUtc":"2024-03-01T10:00:00"}`, "fireAtUtc", "RFC 3339"},
		{`{"fireAtUtc":"1960-03-01T10:00:00Z"}`, "fireAtUtc", "between the years"},
		{`{"delaySeconds":10,"maxOccurrences":3}`, "maxOccurrences", "recurring"},
		{`{"delaySeconds":10,"endAtUtc":"2025-01-01T00:00:00Z"}`, "endAtUtc", "recurring"},
		{`{"scheduleTimes":["09:00"],"endAtUtc":"2020-01-01T00:00:00Z"}`, "endAtUtc", "before the first slot (2024-03-01T09:00:00Z)"},
		{`{"recurrenceSeconds":3600,"endAtUtc":"2024-03-01T00:30:00Z"}`, "endAtUtc", "before the first slot"},
		{`{"scheduleTimes":["09:00"],"startAt":"2024-05-01T00:00:00Z","endAtUtc":"2024-04-01T00:00:00Z"}`, "endAtUtc", "before startAt"},
		{`{"scheduleTimes":["09:00"],"maxOccurrences":0}`, "maxOccurrences", "at least 1"},
		{`{"scheduleTimes":["09:00"],"catchUp":"all"}`, "catchUp", `"one" or "none"`},
		{`{"scheduleTimes":["09:00"],"misfireGraceSeconds":0}`, "misfireGraceSeconds", "between 1"},
		{`{"scheduleTimes":["09:00"],"cooldownSeconds":-5}`, "cooldownSeconds", "between 0"},
	}
	for _, tt := range tests {
		s, err := ParseSpec([]byte(tt.spec))
		if err == nil {
			start := time.Now()
			err = s.Validate(DefaultConfig(), now)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s: validation took %v", tt.spec, d)
			}
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Message, tt.msg) {
			t.Errorf("%s:\n got  %v\n want field %q with %q", tt.spec, err, tt.field, tt.msg)
		}
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: not ErrInvalidSpec: %v", tt.spec, err)
		}
	}

	cfg := DefaultConfig()
	cfg.MinIntervalSeconds = 60 // as in 002
	s, _ := ParseSpec([]byte(`{"recurrenceSeconds":30}`))
	if err := s.Validate(cfg, now); err == nil || !strings.Contains(err.Error(), "recurrenceSeconds: must be at least 60") {
		t.Errorf("min interval: %v", err)
	}
}

func TestValidSpecsAndKinds(t *testing.T) {
	for spec, kind := range map[string]string{
		`{"fireAtUtc":"2024-03-01T10:00:00+01:00"}`:                                      KindOnce,
		`{"delaySeconds":0}`:                                                             KindOnce,
		`{"recurrenceSeconds":60,"timezone":"Europe/Rome"}`:                              KindInterval,
		`{"scheduleTimes":["9:05","10:00:30"],"scheduleDaysOfWeek":[]}`:                  KindCalendar,
		`{"recurrence":{"frequency":"WEEKLY","weekdays":["mo","Fr"],"times":["09:00"]}}`: KindRecurrence,
		`{"rrule":"RRULE:freq=monthly;byday=-1fr;byhour=9;byminute=0"}`:                  KindRRule,
		`{"cron":"*/15 9-17 * JAN-MAR mon-fri"}`:                                         KindCron,
		`{"cron":"@daily"}`:                                                              KindCron,
		`{"cron":"0 0 29 2 1"}`:                                                          KindCron, // Feb 29 or any Monday in February
		`{"rrule":"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO"}`:                       KindRRule,
	} {
		s, err := ParseSpec([]byte(spec))
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		sch, err := Compile(s, DefaultConfig(), mustTime(t, "2024-03-01T00:00:00Z"))
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if sch.Kind() != kind || s.Kind() != kind {
			t.Errorf("%s: kind %s/%s, want %s", spec, sch.Kind(), s.Kind(), kind)
		}
	}
	if !(Spec{}).IsEmpty() || (Spec{Cron: "* * * * *"}).IsEmpty() {
		t.Error("IsEmpty")
	}
}

func TestCanonical(t *testing.T) {
	in := `{"scheduleTimes":["15:00","9:00","09:00"],"scheduleDaysOfWeek":[2,1,2],"startAt":"2024-03-01T10:00:00+01:00","cooldownSeconds":0}`
	s, err := ParseSpec([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Canonical(); err == nil || !strings.Contains(err.Error(), "timezone") {
		t.Errorf("canonical without a time zone: %v", err)
	}
	cfg := DefaultConfig()
	cfg.DefaultTimezone = "Europe/Rome"
	got, err := s.WithDefaults(cfg).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"scheduleTimes":["09:00","15:00"],"scheduleDaysOfWeek":[1,2],"timezone":"Europe/Rome","startAt":"2024-03-01T09:00:00Z","catchUp":"one","misfireGraceSeconds":60}`
	if string(got) != want {
		t.Errorf("canonical\n got  %s\n want %s", got, want)
	}
	// The input is not modified.
	if s.ScheduleTimes[0] != "15:00" || s.Timezone != "" {
		t.Errorf("input modified: %+v", s)
	}

	for _, spec := range []string{
		`{"rrule":"RRULE:byhour=9;freq=monthly;byday=-1fr,1mo,1MO;INTERVAL=1;wkst=mo","timezone":"UTC"}`,
		`{"cron":"  0   9 * * mon-fri ","timezone":"UTC"}`,
		`{"recurrence":{"frequency":"Weekly","weekdays":["fr","mo","MO"],"times":["9:00"]},"timezone":"Asia/Tokyo","catchUp":"none","misfireGraceSeconds":300,"cooldownSeconds":3600,"maxOccurrences":5}`,
		`{"fireAtUtc":"2024-03-01T10:00:00.5+01:00","delaySeconds":30}`,
		`{"recurrenceSeconds":60,"delaySeconds":0,"endAtUtc":"2030-01-01T00:00:00-05:00"}`,
		`{"recurrence":{"frequency":"monthly","nthWeekday":{"weekday":"tu","nth":3},"times":["09:00"]},"timezone":"UTC"}`,
	} {
		s, err := ParseSpec([]byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		c1, err := s.Canonical()
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		s2, err := ParseSpec(c1)
		if err != nil {
			t.Fatalf("%s: reparse: %v", c1, err)
		}
		c2, _ := s2.Canonical()
		if string(c1) != string(c2) {
			t.Errorf("not idempotent:\n %s\n %s", c1, c2)
		}
		t.Logf("%s\n  -> %s", spec, c1)
		// The canonical spec compiles to the same schedule.
		created := mustTime(t, "2024-02-01T00:00:00Z")
		a, err1 := Compile(s, DefaultConfig(), created)
		b, err2 := Compile(s2, DefaultConfig(), created)
		if err1 != nil || err2 != nil {
			t.Fatalf("%v %v", err1, err2)
		}
		sa, sb := slotsAfter(a, created, 20), slotsAfter(b, created, 20)
		if len(sa) != len(sb) {
			t.Fatalf("%s: different slots", spec)
		}
		for i := range sa {
			if sa[i] != sb[i] {
				t.Fatalf("%s: slot %d differs: %+v vs %+v", spec, i, sa[i], sb[i])
			}
		}
	}

	canon := func(spec string) string {
		s, _ := ParseSpec([]byte(spec))
		b, err := s.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := canon(`{"rrule":"RRULE:byhour=9;freq=monthly;byday=-1fr,1mo,1MO;INTERVAL=1;wkst=mo","timezone":"UTC"}`); !strings.Contains(got, `"rrule":"FREQ=MONTHLY;BYDAY=1MO,-1FR;BYHOUR=9"`) {
		t.Errorf("rrule canonical %s", got)
	}
	if got := canon(`{"fireAtUtc":"2024-03-01T10:00:00.5+01:00","delaySeconds":30}`); got != `{"fireAtUtc":"2024-03-01T09:00:00.5Z","catchUp":"one","misfireGraceSeconds":60}` {
		t.Errorf("once canonical %s", got)
	}
}

func TestScheduleSpecIsCanonicalReady(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultTimezone = "America/New_York"
	s, _ := ParseSpec([]byte(`{"cron":"0 2 * * *"}`))
	sch, err := Compile(s, cfg, mustTime(t, "2024-03-09T12:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sch.Spec().Canonical()
	if err != nil || !strings.Contains(string(b), `"timezone":"America/New_York"`) {
		t.Errorf("%s %v", b, err)
	}
	if sch.Location().String() != "America/New_York" {
		t.Errorf("location %s", sch.Location())
	}
	if err := (Config{DefaultTimezone: "Nowhere/Never"}).Validate(); err == nil {
		t.Error("bad config accepted")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}

// Issue 12 item 16: the free-form schedule fields have limits far below the
// 1 MiB request body, checked before anything is parsed, and a value over
// its limit is refused naming the field (and without echoing it).
func TestSpecLengthLimits(t *testing.T) {
	now := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	long := strings.Repeat("1,", 100_000) + "1"
	many := func(n int, v string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	tests := []struct {
		name  string
		spec  Spec
		field string
	}{
		{"cron", Spec{Cron: long + " * * * *"}, "cron"},
		{"rrule", Spec{RRule: "FREQ=DAILY;BYHOUR=" + long}, "rrule"},
		{"recurrence.times count", Spec{Recurrence: &Recurrence{Frequency: "daily", Times: many(maxTimesPerDay+1, "09:00")}}, "recurrence.times"},
		{"recurrence.times item", Spec{Recurrence: &Recurrence{Frequency: "daily", Times: []string{strings.Repeat("0", 5000)}}}, "recurrence.times[0]"},
		{"recurrence.weekdays", Spec{Recurrence: &Recurrence{Frequency: "weekly", Weekdays: many(1000, "MO"), Times: []string{"09:00"}}}, "recurrence.weekdays"},
		{"recurrence.frequency", Spec{Recurrence: &Recurrence{Frequency: strings.Repeat("d", 5000), Times: []string{"09:00"}}}, "recurrence.frequency"},
		{"scheduleTimes count", Spec{ScheduleTimes: many(maxTimesPerDay+1, "09:00")}, "scheduleTimes"},
		{"scheduleTimes item", Spec{ScheduleTimes: []string{strings.Repeat("9", 5000)}}, "scheduleTimes[0]"},
		{"scheduleDaysOfWeek", Spec{ScheduleTimes: []string{"09:00"}, ScheduleDaysOfWeek: make([]int, 1000)}, "scheduleDaysOfWeek"},
		{"timezone", Spec{Cron: "0 9 * * *", Timezone: strings.Repeat("Europe/", 1000)}, "timezone"},
		{"startAt", Spec{Cron: "0 9 * * *", StartAt: strings.Repeat("2", 5000)}, "startAt"},
		{"fireAtUtc", Spec{FireAtUTC: strings.Repeat("2", 5000)}, "fireAtUtc"},
		{"catchUp", Spec{Cron: "0 9 * * *", CatchUp: strings.Repeat("x", 5000)}, "catchUp"},
	}
	for _, tt := range tests {
		err := tt.spec.Validate(DefaultConfig(), now)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Message, "at most") || len(fe.Message) > 300 {
			t.Errorf("%s: got %.300v; want a short error naming %q with its limit", tt.name, err, tt.field)
		}
	}
	// The longest useful values still pass: every minute listed in cron,
	// all 1,440 minutes of a day.
	var mins []string
	for m := range 60 {
		mins = append(mins, fmt.Sprint(m))
	}
	if err := (Spec{Cron: strings.Join(mins, ",") + " * * * *"}).Validate(DefaultConfig(), now); err != nil {
		t.Errorf("cron listing every minute: %v", err)
	}
	var day []string
	for m := range maxTimesPerDay {
		day = append(day, fmt.Sprintf("%02d:%02d", m/60, m%60))
	}
	if err := (Spec{ScheduleTimes: day}).Validate(DefaultConfig(), now); err != nil {
		t.Errorf("every minute of the day: %v", err)
	}
}
