package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kinds of schedule, as returned by Spec.Kind and Schedule.Kind.
const (
	KindOnce       = "once"
	KindInterval   = "interval"
	KindCalendar   = "calendar"
	KindRecurrence = "recurrence"
	KindRRule      = "rrule"
	KindCron       = "cron"
)

// Catch-up policies (Spec.CatchUp, JobState.CatchUp).
const (
	// CatchUpOne creates one occurrence at the earliest missed slot, carrying the number of
	// missed slots, then resumes at the next slot (000's behaviour). The default.
	CatchUpOne = "one"
	// CatchUpNone skips missed slots and resumes at the next slot (002's behaviour).
	CatchUpNone = "none"
)

// Lengths of the free-form fields, far below the API's 1 MiB body: checked
// before anything is parsed (a cron expression of 1 MiB would be parsed, stored
// and replicated otherwise), refused naming the field. Each is above the
// longest useful value: a cron expression listing every value of every field
// is about 360 characters; a clock "HH:mm:ss" 8; the longest IANA zone name 32.
const (
	MaxCronLen        = 512
	MaxRRuleLen       = 2048
	MaxTimeOfDayLen   = 16
	MaxTimezoneLen    = 64
	MaxInstantLen     = 64
	MaxKeywordLen     = 32 // frequency, catchUp, weekday codes
	MaxWeekdaysListed = 7  // recurrence.weekdays, scheduleDaysOfWeek
)

// Defaults and limits.
const (
	DefaultMisfireGraceSeconds = 60
	MaxMisfireGraceSeconds     = 31 * secondsPerDay
	MaxCooldownSeconds         = 366 * secondsPerDay
	maxDelaySeconds            = 100 * 366 * secondsPerDay
	maxRecurrenceSeconds       = 100 * 366 * secondsPerDay
	maxRecurrenceInterval      = 1000
	maxTimesPerDay             = 1440
	// horizonYears is how far ahead a search for the next slot of a civil schedule looks.
	// A rule whose next slot is further away than this has none.
	horizonYears = 100
	minYear      = 1970
	maxYear      = 4000
)

// ErrInvalidSpec is matched (errors.Is) by every *FieldError.
var ErrInvalidSpec = errors.New("invalid schedule")

// FieldError reports one bad input. Field is the JSON path of the offending field
// ("recurrence.monthDay", "scheduleTimes[1]"), empty for the spec as a whole.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "schedule: " + e.Message
	}
	return e.Field + ": " + e.Message
}

// Unwrap makes errors.Is(err, ErrInvalidSpec) true.
func (e *FieldError) Unwrap() error { return ErrInvalidSpec }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Config is the node configuration the schedule maths depends on.
type Config struct {
	// DefaultTimezone is the IANA zone of civil schedules that name none. Default "UTC".
	DefaultTimezone string
	// MinIntervalSeconds is the smallest recurrenceSeconds accepted. Default 1.
	MinIntervalSeconds int64
}

// DefaultConfig returns the defaults: UTC, and intervals of at least one second.
func DefaultConfig() Config {
	return Config{DefaultTimezone: "UTC", MinIntervalSeconds: 1}
}

// Validate checks the configuration itself, for use at startup.
func (c Config) Validate() error {
	if c.DefaultTimezone != "" {
		if _, err := loadZone(c.DefaultTimezone); err != nil {
			return fmt.Errorf("scheduler: default time zone: %w", err)
		}
	}
	if c.MinIntervalSeconds < 0 || c.MinIntervalSeconds > maxRecurrenceSeconds {
		return fmt.Errorf("scheduler: minimum interval %d s is out of range", c.MinIntervalSeconds)
	}
	return nil
}

func (c Config) defaultTimezone() string {
	if c.DefaultTimezone == "" {
		return "UTC"
	}
	return c.DefaultTimezone
}

func (c Config) minInterval() int64 { return max(c.MinIntervalSeconds, 1) }

// Spec is a schedule as the job API takes it (field names from sources 000 and 002).
// Instants are RFC 3339 text, kept as text so that errors can name the field and the
// canonical encoding can normalise them; they are parsed by Compile. Optional numbers are
// pointers so that an explicit 0 can be told from an absent field.
//
// Exactly one of recurrenceSeconds, scheduleTimes (with scheduleDaysOfWeek), recurrence,
// rrule and cron may be given; with none of them the schedule is a one-shot (fireAtUtc
// or delaySeconds).
type Spec struct {
	FireAtUTC           string      `json:"fireAtUtc,omitempty"`
	DelaySeconds        *int64      `json:"delaySeconds,omitempty"`
	RecurrenceSeconds   *int64      `json:"recurrenceSeconds,omitempty"`
	ScheduleTimes       []string    `json:"scheduleTimes,omitempty"`
	ScheduleDaysOfWeek  []int       `json:"scheduleDaysOfWeek,omitempty"`
	Recurrence          *Recurrence `json:"recurrence,omitempty"`
	RRule               string      `json:"rrule,omitempty"`
	Cron                string      `json:"cron,omitempty"`
	Timezone            string      `json:"timezone,omitempty"`
	StartAt             string      `json:"startAt,omitempty"`
	EndAtUTC            string      `json:"endAtUtc,omitempty"`
	MaxOccurrences      *int64      `json:"maxOccurrences,omitempty"`
	CatchUp             string      `json:"catchUp,omitempty"`
	MisfireGraceSeconds *int64      `json:"misfireGraceSeconds,omitempty"`
	CooldownSeconds     *int64      `json:"cooldownSeconds,omitempty"`
}

// Recurrence is the daily / weekly / monthly rule of source 000.
type Recurrence struct {
	Frequency  string      `json:"frequency"`
	Interval   *int        `json:"interval,omitempty"`
	Weekdays   []string    `json:"weekdays,omitempty"`
	MonthDay   *int        `json:"monthDay,omitempty"`
	NthWeekday *NthWeekday `json:"nthWeekday,omitempty"`
	Times      []string    `json:"times,omitempty"`
}

// NthWeekday is "the 3rd Tuesday" (nth 1..5) or "the last Friday" (nth -1) of a month.
type NthWeekday struct {
	Weekday string `json:"weekday"`
	Nth     int    `json:"nth"`
}

// ParseSpec decodes a spec strictly: unknown fields, wrong types and trailing data are
// errors (*FieldError). It does not validate values; see Validate and Compile.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Spec{}, fieldErr("", "unexpected data after the JSON object")
	}
	return s, nil
}

func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return fieldErr("", "empty input: expected a JSON object")
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return fieldErr("", "must be a JSON object")
		}
		return fieldErr(typeErr.Field, "must be %s, not %s", jsonTypeName(typeErr.Type), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fieldErr("", "invalid JSON at offset %d: %v", syntaxErr.Offset, syntaxErr)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return fieldErr(name, "unknown field")
	}
	return fieldErr("", "invalid JSON: %v", err)
}

func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(jsonTypeName(t.Elem()), "a ") + "s"
	case reflect.Struct:
		return "an object"
	}
	return t.String()
}

// kindFields lists the kind-defining fields present, as (kind, JSON field) pairs.
func (s Spec) kindFields() [][2]string {
	var out [][2]string
	if s.RecurrenceSeconds != nil {
		out = append(out, [2]string{KindInterval, "recurrenceSeconds"})
	}
	if s.ScheduleTimes != nil {
		out = append(out, [2]string{KindCalendar, "scheduleTimes"})
	} else if s.ScheduleDaysOfWeek != nil {
		out = append(out, [2]string{KindCalendar, "scheduleDaysOfWeek"})
	}
	if s.Recurrence != nil {
		out = append(out, [2]string{KindRecurrence, "recurrence"})
	}
	if s.RRule != "" {
		out = append(out, [2]string{KindRRule, "rrule"})
	}
	if s.Cron != "" {
		out = append(out, [2]string{KindCron, "cron"})
	}
	return out
}

// Kind returns the kind of a valid spec, or "" when it has no schedule field at all.
func (s Spec) Kind() string {
	if k := s.kindFields(); len(k) > 0 {
		return k[0][0]
	}
	if s.FireAtUTC != "" || s.DelaySeconds != nil {
		return KindOnce
	}
	return ""
}

// IsEmpty reports whether the spec has no schedule at all (a job that only runs when
// triggered by hand). Such a spec does not compile.
func (s Spec) IsEmpty() bool { return s.Kind() == "" }

func isCivilKind(k string) bool {
	return k == KindCalendar || k == KindRecurrence || k == KindRRule || k == KindCron
}

// WithDefaults fills in the defaults that a canonical encoding needs and that come from the
// configuration: the time zone of civil schedules, catchUp "one" and misfireGraceSeconds 60.
// It does not validate.
func (s Spec) WithDefaults(cfg Config) Spec {
	s = s.clone()
	if s.Timezone == "" && isCivilKind(s.Kind()) {
		s.Timezone = cfg.defaultTimezone()
	}
	if s.CatchUp == "" {
		s.CatchUp = CatchUpOne
	}
	if s.MisfireGraceSeconds == nil {
		s.MisfireGraceSeconds = ptr(int64(DefaultMisfireGraceSeconds))
	}
	return s
}

// Canonical returns the deterministic JSON encoding of a valid spec, for storage: instants
// in UTC, lists sorted and without duplicates, names upper-cased, rrule and cron
// re-encoded, fields that have no effect dropped (delaySeconds when fireAtUtc is given, a
// zero cooldown), and the defaults catchUp and misfireGraceSeconds filled in. The time
// zone of a civil schedule depends on configuration, so it must already be set (use
// WithDefaults); Canonical returns an error otherwise. Canonical(ParseSpec(Canonical(s)))
// equals Canonical(s).
func (s Spec) Canonical() ([]byte, error) {
	n, err := s.normalized()
	if err != nil {
		return nil, err
	}
	if n.Timezone == "" && isCivilKind(n.Kind()) {
		return nil, fieldErr("timezone", "is not set; fill it with WithDefaults(cfg) before encoding")
	}
	return json.Marshal(n)
}

func ptr[T any](v T) *T { return &v }

// clone copies the spec deeply, so that normalising never writes through to the caller's
// slices or pointers.
func (s Spec) clone() Spec {
	s.DelaySeconds = clonePtr(s.DelaySeconds)
	s.RecurrenceSeconds = clonePtr(s.RecurrenceSeconds)
	s.ScheduleTimes = slices.Clone(s.ScheduleTimes)
	s.ScheduleDaysOfWeek = slices.Clone(s.ScheduleDaysOfWeek)
	s.MaxOccurrences = clonePtr(s.MaxOccurrences)
	s.MisfireGraceSeconds = clonePtr(s.MisfireGraceSeconds)
	s.CooldownSeconds = clonePtr(s.CooldownSeconds)
	if s.Recurrence != nil {
		r := *s.Recurrence
		r.Interval = clonePtr(r.Interval)
		r.Weekdays = slices.Clone(r.Weekdays)
		r.MonthDay = clonePtr(r.MonthDay)
		r.NthWeekday = clonePtr(r.NthWeekday)
		r.Times = slices.Clone(r.Times)
		s.Recurrence = &r
	}
	return s
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// normalized checks every field on its own and the rules between fields that do not
// depend on configuration or time, and returns the spec in canonical form.
func (s Spec) normalized() (Spec, error) {
	s = s.clone()
	kinds := s.kindFields()
	if len(kinds) > 1 {
		names := make([]string, len(kinds))
		for i, k := range kinds {
			names[i] = k[1]
		}
		return s, fieldErr(kinds[1][1], "cannot be combined with %s: give exactly one of recurrenceSeconds, scheduleTimes, recurrence, rrule or cron (got %s)",
			kinds[0][1], strings.Join(names, ", "))
	}
	kind := s.Kind()
	if kind == "" {
		return s, fieldErr("", "no schedule: give fireAtUtc or delaySeconds for a one-shot, or one of recurrenceSeconds, scheduleTimes, recurrence, rrule or cron")
	}
	civilKind := isCivilKind(kind)

	// fireAtUtc, delaySeconds
	if civilKind {
		if s.FireAtUTC != "" {
			return s, fieldErr("fireAtUtc", "only applies to one-shot and interval schedules; use startAt to delay a %s schedule", kind)
		}
		if s.DelaySeconds != nil {
			return s, fieldErr("delaySeconds", "only applies to one-shot and interval schedules; use startAt to delay a %s schedule", kind)
		}
	}
	if s.FireAtUTC != "" {
		t, err := parseInstant("fireAtUtc", s.FireAtUTC)
		if err != nil {
			return s, err
		}
		s.FireAtUTC, s.DelaySeconds = formatInstant(t), nil // fireAtUtc wins
	}
	if d := s.DelaySeconds; d != nil && (*d < 0 || *d > maxDelaySeconds) {
		return s, fieldErr("delaySeconds", "must be between 0 and %d", int64(maxDelaySeconds))
	}

	// one-shot bounds
	if kind == KindOnce {
		for _, f := range []struct {
			name    string
			present bool
		}{{"startAt", s.StartAt != ""}, {"endAtUtc", s.EndAtUTC != ""}, {"maxOccurrences", s.MaxOccurrences != nil}} {
			if f.present {
				return s, fieldErr(f.name, "only applies to recurring schedules (this one fires once)")
			}
		}
	}

	// kind-specific fields
	switch kind {
	case KindInterval:
		if n := *s.RecurrenceSeconds; n < 1 || n > maxRecurrenceSeconds {
			return s, fieldErr("recurrenceSeconds", "must be between 1 and %d", int64(maxRecurrenceSeconds))
		}
	case KindCalendar:
		if s.ScheduleTimes == nil {
			return s, fieldErr("scheduleTimes", "is required with scheduleDaysOfWeek")
		}
		times, err := normalizeClocks("scheduleTimes", s.ScheduleTimes)
		if err != nil {
			return s, err
		}
		s.ScheduleTimes = times
		days := slices.Clone(s.ScheduleDaysOfWeek)
		for i, d := range days {
			if d < 0 || d > 6 {
				return s, fieldErr(fmt.Sprintf("scheduleDaysOfWeek[%d]", i), "must be between 0 (Sunday) and 6 (Saturday), got %d", d)
			}
		}
		slices.Sort(days)
		s.ScheduleDaysOfWeek = slices.Compact(days)
		if len(s.ScheduleDaysOfWeek) == 0 {
			s.ScheduleDaysOfWeek = nil // [] means every day
		}
	case KindRecurrence:
		if err := s.Recurrence.normalize(); err != nil {
			return s, err
		}
	case KindRRule:
		p, err := parseRRule(s.RRule)
		if err != nil {
			return s, fieldErr("rrule", "%v", err)
		}
		s.RRule = p.canonical()
	case KindCron:
		if _, err := parseCron(s.Cron); err != nil {
			return s, fieldErr("cron", "%v", err)
		}
		s.Cron = canonicalCron(s.Cron)
	}

	if s.Timezone != "" {
		if _, err := loadZone(s.Timezone); err != nil {
			return s, fieldErr("timezone", "%v", err)
		}
	}

	// bounds
	var start, end time.Time
	if s.StartAt != "" {
		t, err := parseInstant("startAt", s.StartAt)
		if err != nil {
			return s, err
		}
		start, s.StartAt = t, formatInstant(t)
	}
	if s.EndAtUTC != "" {
		t, err := parseInstant("endAtUtc", s.EndAtUTC)
		if err != nil {
			return s, err
		}
		end, s.EndAtUTC = t, formatInstant(t)
		if !start.IsZero() && end.Before(start) {
			return s, fieldErr("endAtUtc", "is before startAt")
		}
	}
	if m := s.MaxOccurrences; m != nil && *m < 1 {
		return s, fieldErr("maxOccurrences", "must be at least 1")
	}

	// policy
	switch s.CatchUp {
	case "":
		s.CatchUp = CatchUpOne
	case CatchUpOne, CatchUpNone:
	default:
		return s, fieldErr("catchUp", `must be "one" or "none", got %q`, s.CatchUp)
	}
	if g := s.MisfireGraceSeconds; g == nil {
		s.MisfireGraceSeconds = ptr(int64(DefaultMisfireGraceSeconds))
	} else if *g < 1 || *g > MaxMisfireGraceSeconds {
		return s, fieldErr("misfireGraceSeconds", "must be between 1 and %d", int64(MaxMisfireGraceSeconds))
	}
	if c := s.CooldownSeconds; c != nil {
		if *c < 0 || *c > MaxCooldownSeconds {
			return s, fieldErr("cooldownSeconds", "must be between 0 and %d", int64(MaxCooldownSeconds))
		}
		if *c == 0 {
			s.CooldownSeconds = nil
		}
	}
	return s, nil
}

// checkLengths refuses a free-form field longer than its limit (see
// MaxCronLen), before any parsing; the message does not echo the value.
// Validate and Preview check it, Compile does not: a job stored before the
// limits existed still compiles on every node.
func (s Spec) checkLengths() error {
	str := func(field, v string, limit int) error {
		if len(v) > limit {
			return fieldErr(field, "is %d bytes; at most %d are allowed", len(v), limit)
		}
		return nil
	}
	list := func(field string, vs []string, count, itemLimit int) error {
		if len(vs) > count {
			return fieldErr(field, "has %d entries; at most %d are allowed", len(vs), count)
		}
		for i, v := range vs {
			if err := str(fmt.Sprintf("%s[%d]", field, i), v, itemLimit); err != nil {
				return err
			}
		}
		return nil
	}
	checks := []error{
		str("cron", s.Cron, MaxCronLen),
		str("rrule", s.RRule, MaxRRuleLen),
		str("timezone", s.Timezone, MaxTimezoneLen),
		str("fireAtUtc", s.FireAtUTC, MaxInstantLen),
		str("startAt", s.StartAt, MaxInstantLen),
		str("endAtUtc", s.EndAtUTC, MaxInstantLen),
		str("catchUp", s.CatchUp, MaxKeywordLen),
		list("scheduleTimes", s.ScheduleTimes, maxTimesPerDay, MaxTimeOfDayLen),
	}
	if len(s.ScheduleDaysOfWeek) > MaxWeekdaysListed {
		checks = append(checks, fieldErr("scheduleDaysOfWeek", "has %d entries; at most %d are allowed", len(s.ScheduleDaysOfWeek), MaxWeekdaysListed))
	}
	if r := s.Recurrence; r != nil {
		checks = append(checks,
			str("recurrence.frequency", r.Frequency, MaxKeywordLen),
			list("recurrence.times", r.Times, maxTimesPerDay, MaxTimeOfDayLen),
			list("recurrence.weekdays", r.Weekdays, MaxWeekdaysListed, MaxKeywordLen))
		if r.NthWeekday != nil {
			checks = append(checks, str("recurrence.nthWeekday.weekday", r.NthWeekday.Weekday, MaxKeywordLen))
		}
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	return nil
}

var weekdayCodes = map[string]time.Weekday{
	"SU": time.Sunday, "MO": time.Monday, "TU": time.Tuesday, "WE": time.Wednesday,
	"TH": time.Thursday, "FR": time.Friday, "SA": time.Saturday,
}

func parseWeekday(field, s string) (time.Weekday, error) {
	w, ok := weekdayCodes[strings.ToUpper(strings.TrimSpace(s))]
	if !ok {
		return 0, fieldErr(field, "must be one of MO, TU, WE, TH, FR, SA, SU, got %q", s)
	}
	return w, nil
}

func (r *Recurrence) normalize() error {
	const p = "recurrence."
	r.Frequency = strings.ToLower(strings.TrimSpace(r.Frequency))
	switch r.Frequency {
	case "daily", "weekly", "monthly":
	case "":
		return fieldErr(p+"frequency", `is required: "daily", "weekly" or "monthly"`)
	default:
		return fieldErr(p+"frequency", `must be "daily", "weekly" or "monthly", got %q`, r.Frequency)
	}
	if r.Interval == nil {
		r.Interval = ptr(1)
	} else if *r.Interval < 1 || *r.Interval > maxRecurrenceInterval {
		return fieldErr(p+"interval", "must be between 1 and %d", maxRecurrenceInterval)
	}
	// weekdays: weekly only, required there
	if r.Frequency != "weekly" && r.Weekdays != nil {
		return fieldErr(p+"weekdays", "only applies to frequency weekly (for some weekdays every week use weekly with interval 1)")
	}
	if r.Frequency == "weekly" {
		if len(r.Weekdays) == 0 {
			return fieldErr(p+"weekdays", "is required for frequency weekly, e.g. [\"MO\",\"TH\"]")
		}
		ws := make([]time.Weekday, len(r.Weekdays))
		for i, s := range r.Weekdays {
			w, err := parseWeekday(fmt.Sprintf("%sweekdays[%d]", p, i), s)
			if err != nil {
				return err
			}
			ws[i] = w
		}
		slices.SortFunc(ws, func(a, b time.Weekday) int { return weekdayFromMonday(a) - weekdayFromMonday(b) })
		ws = slices.Compact(ws)
		r.Weekdays = make([]string, len(ws))
		for i, w := range ws {
			r.Weekdays[i] = rruleDays[w]
		}
	}
	// monthDay / nthWeekday: monthly only, exactly one there
	if r.Frequency != "monthly" {
		if r.MonthDay != nil {
			return fieldErr(p+"monthDay", "only applies to frequency monthly")
		}
		if r.NthWeekday != nil {
			return fieldErr(p+"nthWeekday", "only applies to frequency monthly")
		}
	} else {
		switch {
		case r.MonthDay != nil && r.NthWeekday != nil:
			return fieldErr(p+"nthWeekday", "cannot be combined with monthDay: give one of them")
		case r.MonthDay == nil && r.NthWeekday == nil:
			return fieldErr(p+"monthDay", "frequency monthly needs monthDay (1..31, or -1 for the last day) or nthWeekday")
		case r.MonthDay != nil:
			if d := *r.MonthDay; d != -1 && (d < 1 || d > 31) {
				return fieldErr(p+"monthDay", "must be between 1 and 31, or -1 for the last day of the month, got %d", d)
			}
		default:
			w, err := parseWeekday(p+"nthWeekday.weekday", r.NthWeekday.Weekday)
			if err != nil {
				return err
			}
			r.NthWeekday.Weekday = rruleDays[w]
			if n := r.NthWeekday.Nth; n != -1 && (n < 1 || n > 5) {
				return fieldErr(p+"nthWeekday.nth", "must be between 1 and 5, or -1 for the last, got %d", n)
			}
		}
	}
	if r.Times == nil {
		return fieldErr(p+"times", "is required: one or more times of day such as [\"09:00\"]")
	}
	times, err := normalizeClocks(p+"times", r.Times)
	if err != nil {
		return err
	}
	r.Times = times
	return nil
}

// parseClock parses "HH:mm" (or "H:mm", "HH:mm:ss") into seconds since midnight.
func parseClock(s string) (int, bool) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false
	}
	limits := []int{23, 59, 59}
	sec := 0
	for i, part := range parts {
		if len(part) < 1 || len(part) > 2 || (i > 0 && len(part) != 2) {
			return 0, false
		}
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 || n > limits[i] || part[0] == '+' || part[0] == '-' {
			return 0, false
		}
		sec = sec*60 + n
	}
	if len(parts) == 2 {
		sec *= 60
	}
	return sec, true
}

// normalizeClocks checks a list of times of day and returns it sorted, without
// duplicates, as HH:mm (HH:mm:ss when seconds are given).
func normalizeClocks(field string, in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, fieldErr(field, "must list at least one time of day such as \"09:00\"")
	}
	secs := make([]int, len(in))
	for i, s := range in {
		sec, ok := parseClock(strings.TrimSpace(s))
		if !ok {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", field, i), "must be a time of day HH:mm between 00:00 and 23:59, got %q", s)
		}
		secs[i] = sec
	}
	slices.Sort(secs)
	secs = slices.Compact(secs)
	if len(secs) > maxTimesPerDay {
		return nil, fieldErr(field, "has %d times; at most %d are allowed", len(secs), maxTimesPerDay)
	}
	out := make([]string, len(secs))
	for i, sec := range secs {
		out[i] = formatClock(sec)
	}
	return out, nil
}

func clockSeconds(times []string) []int {
	out := make([]int, len(times))
	for i, s := range times {
		out[i], _ = parseClock(s)
	}
	return out
}

func parseInstant(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fieldErr(field, "must be an RFC 3339 date-time with an offset, such as 2024-03-10T07:30:00Z, got %q", s)
	}
	if y := t.UTC().Year(); y < minYear || y > maxYear {
		return time.Time{}, fieldErr(field, "must be between the years %d and %d, got %q", minYear, maxYear, s)
	}
	return t.UTC(), nil
}

func formatInstant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

var zoneCache sync.Map // IANA name → *time.Location; only valid names are stored

// loadZone loads an IANA zone, caching it: zones are immutable and LoadLocation reads and
// parses the zone file on every call.
func loadZone(name string) (*time.Location, error) {
	if v, ok := zoneCache.Load(name); ok {
		return v.(*time.Location), nil
	}
	if name == "" || name == "Local" || strings.TrimSpace(name) != name {
		return nil, fmt.Errorf("%q is not an IANA time zone name such as Europe/Berlin", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (use an IANA name such as Europe/Berlin)", name)
	}
	zoneCache.Store(name, loc)
	return loc, nil
}
