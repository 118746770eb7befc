package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chime-sched/chime/client"
)

// scheduleFlags are the flags that describe a schedule, shared by
// `chime schedule preview` (offline) and `chime jobs create|update`, so that
// a schedule previewed is exactly the schedule a job gets. They read like
// the sources: --every 2w --on tue --at 09:00 --tz Europe/Rome; --monthly
// --nth 3 --on tue --at 09:00; --cron '0 9 * * 1'; --in 1h; --at-time
// 2026-12-01T10:00:00Z. --spec takes the schedule fields as JSON instead.
type scheduleFlags struct {
	spec                   string
	every                  string
	daily, weekly, monthly bool
	on, at                 listFlag
	nth, day               string
	cron, rrule            string
	in                     time.Duration
	atTime                 string
	tz                     string
	start, end             string
	maxOccurrences         int64
	catchUp                string
	misfireGrace, cooldown time.Duration
	names                  []string // every flag registered, to tell which were given
	given                  map[string]bool
}

func (s *scheduleFlags) register(fs *flag.FlagSet) {
	str := func(p *string, name, usage string) { fs.StringVar(p, name, "", usage); s.names = append(s.names, name) }
	boolean := func(p *bool, name, usage string) { fs.BoolVar(p, name, false, usage); s.names = append(s.names, name) }
	list := func(p *listFlag, name, usage string) { fs.Var(p, name, usage); s.names = append(s.names, name) }
	dur := func(p *time.Duration, name, usage string) {
		fs.DurationVar(p, name, 0, usage)
		s.names = append(s.names, name)
	}

	str(&s.spec, "spec", "the schedule fields as JSON, e.g. '{\"cron\":\"0 9 * * 1-5\",\"timezone\":\"Europe/Rome\"}' (instead of the other schedule flags)")
	str(&s.every, "every", "repeat: a fixed interval (90s, 15m, 2h) or a calendar period (3d, 2w, 6mo) that needs --at")
	boolean(&s.daily, "daily", "every day (same as --every 1d); needs --at")
	boolean(&s.weekly, "weekly", "every week (same as --every 1w); needs --on and --at")
	boolean(&s.monthly, "monthly", "every month (same as --every 1mo); needs --day, or --nth with --on, and --at")
	list(&s.on, "on", "`weekdays`: mon,tue,... (weekly; one weekday with --nth; without --every: only on these days)")
	list(&s.at, "at", "`times` of day HH:MM, comma-separated or repeated (without --every: every day at these times)")
	str(&s.nth, "nth", "monthly: the nth --on weekday of the month, 1 to 5 or last")
	str(&s.day, "day", "monthly: the day of the month, 1 to 31 or last")
	str(&s.cron, "cron", "a five-field cron expression, e.g. '0 9 * * 1'")
	str(&s.rrule, "rrule", "an RFC 5545 RRULE, e.g. 'FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9;BYMINUTE=0'")
	dur(&s.in, "in", "fire once after this delay, e.g. 1h (with --every: the first fire)")
	str(&s.atTime, "at-time", "fire once at this RFC 3339 instant, e.g. 2026-12-01T10:00:00Z (with --every 1h: the first fire)")
	str(&s.tz, "tz", "IANA time zone of --at, --cron and --rrule schedules, e.g. Europe/Rome (default: the cluster's)")
	str(&s.start, "start", "no fire before this RFC 3339 instant (also where \"every N\" counts from)")
	str(&s.end, "end", "no fire after this RFC 3339 instant")
	fs.Int64Var(&s.maxOccurrences, "max-occurrences", 0, "complete the job after this many scheduled fires")
	s.names = append(s.names, "max-occurrences")
	str(&s.catchUp, "catch-up", "slots missed while the cluster was down: one (fire once for them, the default) or none")
	dur(&s.misfireGrace, "misfire-grace", "a slot late by less than this always fires (default 60s)")
	dur(&s.cooldown, "cooldown", "occurrences this soon after the last completion send no webhook")
}

// parsed records which schedule flags the command line set; call it after
// fs.Parse.
func (s *scheduleFlags) parsed(fs *flag.FlagSet) {
	s.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(s.names, f.Name) {
			s.given[f.Name] = true
		}
	})
}

// any reports whether any schedule flag was given.
func (s *scheduleFlags) any() bool { return len(s.given) > 0 }

// errNoSchedule is build's error when no schedule flag was given.
var errNoSchedule = usagef("a schedule is required: give --spec '<json>' or flags such as --in 1h, --at-time <RFC 3339>, " +
	"--every 15m, --every 2w --on tue --at 09:00, --monthly --nth 3 --on tue --at 09:00, --at 09:00, or --cron '0 9 * * 1'")

var calendarPeriod = regexp.MustCompile(`^([0-9]+)(d|w|mo)$`)

// build turns the flags into the API's schedule fields. It checks what the
// flags mean together (and names the flag to fix); the values themselves
// (a cron expression, a zone) are checked by the scheduler, offline or on
// the node, whose errors name the JSON field.
func (s *scheduleFlags) build() (client.Schedule, error) {
	var out client.Schedule
	if !s.any() {
		return out, errNoSchedule
	}
	if s.given["spec"] {
		for _, n := range s.names {
			if n != "spec" && s.given[n] {
				return out, usagef("--spec cannot be combined with --%s: give the schedule one way", n)
			}
		}
		dec := json.NewDecoder(strings.NewReader(s.spec))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			return out, usagef("--spec: %v", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return out, usagef("--spec: unexpected data after the JSON object")
		}
		return out, nil
	}

	// Which kind of schedule: at most one of these.
	var kinds []string
	for _, k := range []string{"every", "daily", "weekly", "monthly", "cron", "rrule"} {
		if s.given[k] {
			kinds = append(kinds, "--"+k)
		}
	}
	if len(kinds) > 1 {
		return out, usagef("%s cannot be combined with %s: give one of --every, --daily, --weekly, --monthly, --cron, --rrule", kinds[1], kinds[0])
	}
	if s.given["in"] && s.given["at-time"] {
		return out, usagef("--in cannot be combined with --at-time: give one first fire")
	}

	unit, n := "", 1
	switch {
	case s.daily:
		unit = "d"
	case s.weekly:
		unit = "w"
	case s.monthly:
		unit = "mo"
	case s.given["every"]:
		if m := calendarPeriod.FindStringSubmatch(s.every); m != nil {
			v, err := strconv.Atoi(m[1])
			if err != nil || v < 1 {
				return out, usagef("--every %s: the count must be a whole number from 1", s.every)
			}
			unit, n = m[2], v
			break
		}
		d, err := time.ParseDuration(s.every)
		if err != nil || d < time.Second || d%time.Second != 0 {
			return out, usagef("--every %q: use an interval in whole seconds (90s, 15m, 2h) or a calendar period with --at (3d, 2w, 6mo)", s.every)
		}
		if err := s.refuse("a fixed --every interval", "on", "at", "nth", "day"); err != nil {
			return out, err
		}
		out.RecurrenceSeconds = client.Ptr(int64(d / time.Second))
	}

	switch unit {
	case "d", "w", "mo":
		if err := s.refuse("--every, --daily, --weekly and --monthly schedules (use --start to delay them)", "in", "at-time"); err != nil {
			return out, err
		}
		if len(s.at) == 0 {
			return out, usagef("a calendar period needs --at HH:MM, the time(s) of day to fire")
		}
		r := &client.Recurrence{Times: s.at, Interval: client.Ptr(n)}
		switch unit {
		case "d":
			r.Frequency = "daily"
			if err := s.refuse("daily schedules (for some weekdays use --weekly --on, or --at with --on and no --every)", "on", "nth", "day"); err != nil {
				return out, err
			}
		case "w":
			r.Frequency = "weekly"
			if err := s.refuse("weekly schedules", "nth", "day"); err != nil {
				return out, err
			}
			if len(s.on) == 0 {
				return out, usagef("a weekly schedule needs --on, the weekday(s), e.g. --on tue or --on mon,thu")
			}
			for _, d := range s.on {
				w, err := parseWeekday(d)
				if err != nil {
					return out, err
				}
				r.Weekdays = append(r.Weekdays, weekdayCodes[w])
			}
		case "mo":
			r.Frequency = "monthly"
			if err := s.monthDay(r); err != nil {
				return out, err
			}
		}
		out.Recurrence = r
	case "":
		switch {
		case s.given["cron"]:
			if err := s.refuse("--cron (the expression holds the times)", "on", "at", "nth", "day", "in", "at-time"); err != nil {
				return out, err
			}
			out.Cron = s.cron
		case s.given["rrule"]:
			if err := s.refuse("--rrule (the rule holds the times)", "on", "at", "nth", "day", "in", "at-time"); err != nil {
				return out, err
			}
			out.RRule = s.rrule
		case len(s.at) > 0:
			// A calendar: these times, every day or on the --on days.
			if err := s.refuse("--at without --every (for a monthly rule use --monthly)", "nth", "day", "in", "at-time"); err != nil {
				return out, err
			}
			out.ScheduleTimes = s.at
			for _, d := range s.on {
				w, err := parseWeekday(d)
				if err != nil {
					return out, err
				}
				out.ScheduleDaysOfWeek = append(out.ScheduleDaysOfWeek, int(w))
			}
		case s.given["on"], s.given["nth"], s.given["day"]:
			return out, usagef("--on, --nth and --day need --at (and --weekly or --monthly for a rule)")
		}
	}

	if s.given["in"] {
		if s.in < 0 || s.in%time.Second != 0 {
			return out, usagef("--in %s: use a whole number of seconds or more, e.g. 90s, 15m, 1h", s.in)
		}
		out.DelaySeconds = client.Ptr(int64(s.in / time.Second))
	}
	out.FireAtUTC = s.atTime
	out.Timezone, out.StartAt, out.EndAtUTC, out.CatchUp = s.tz, s.start, s.end, s.catchUp
	if s.given["max-occurrences"] {
		out.MaxOccurrences = client.Ptr(s.maxOccurrences)
	}
	if s.given["misfire-grace"] {
		out.MisfireGraceSeconds = client.Ptr(int64(s.misfireGrace / time.Second))
	}
	if s.given["cooldown"] {
		out.CooldownSeconds = client.Ptr(int64(s.cooldown / time.Second))
	}
	if out.RecurrenceSeconds == nil && out.Recurrence == nil && out.Cron == "" && out.RRule == "" &&
		out.ScheduleTimes == nil && out.DelaySeconds == nil && out.FireAtUTC == "" {
		return out, errNoSchedule
	}
	return out, nil
}

// monthDay fills the day of a monthly rule: --day, or --nth with one --on.
func (s *scheduleFlags) monthDay(r *client.Recurrence) error {
	switch {
	case s.given["day"] && s.given["nth"]:
		return usagef("--day cannot be combined with --nth: a monthly rule fires on a day of the month or on the nth weekday")
	case s.given["day"]:
		if len(s.on) > 0 {
			return usagef("--on goes with --nth (the 3rd Tuesday), not with --day")
		}
		d, err := nthOrLast("--day", s.day, 31)
		if err != nil {
			return err
		}
		r.MonthDay = client.Ptr(d)
	case s.given["nth"]:
		if len(s.on) != 1 {
			return usagef("--nth needs exactly one --on weekday, e.g. --nth 3 --on tue")
		}
		w, err := parseWeekday(s.on[0])
		if err != nil {
			return err
		}
		nth, err := nthOrLast("--nth", s.nth, 5)
		if err != nil {
			return err
		}
		r.NthWeekday = &client.NthWeekday{Weekday: weekdayCodes[w], Nth: nth}
	default:
		return usagef("a monthly schedule needs --day (1 to 31, or last) or --nth with --on (--nth 3 --on tue, --nth last --on fri)")
	}
	return nil
}

// refuse reports the first of flags given, which have no meaning in what.
func (s *scheduleFlags) refuse(what string, flags ...string) error {
	for _, f := range flags {
		if s.given[f] {
			return usagef("--%s does not apply to %s", f, what)
		}
	}
	return nil
}

// nthOrLast reads 1..max, or "last" (-1).
func nthOrLast(flagName, v string, highest int) (int, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "last" || v == "-1" {
		return -1, nil
	}
	n, err := strconv.Atoi(strings.TrimRight(v, "stndrh")) // 1st, 2nd, 3rd, 4th
	if err != nil || n < 1 || n > highest {
		return 0, usagef("%s %q: use 1 to %d, or last", flagName, v, highest)
	}
	return n, nil
}

// weekdayCodes are the API's weekday names of recurrence rules.
var weekdayCodes = [7]string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"}

func parseWeekday(v string) (time.Weekday, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	if len(s) >= 2 {
		for d := time.Sunday; d <= time.Saturday; d++ {
			if strings.HasPrefix(strings.ToLower(d.String()), s) {
				return d, nil
			}
		}
	}
	return 0, usagef("--on %q: use weekday names such as mon, tue, wednesday (or mo, tu, we, th, fr, sa, su)", v)
}

// specJSON is the schedule as the scheduler package and the API read it.
func (s *scheduleFlags) specJSON(sch client.Schedule) ([]byte, error) {
	if s.given["spec"] {
		// As typed: the scheduler's strict parse then names the field.
		return bytes.TrimSpace([]byte(s.spec)), nil
	}
	return json.Marshal(sch)
}
