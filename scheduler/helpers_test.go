package scheduler

import (
	"testing"
	"time"
	_ "time/tzdata" // the production binary embeds the tz database; so does the test binary
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	u, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return u.UTC()
}

func mustCompile(t testing.TB, spec, created string) *Schedule {
	t.Helper()
	s, err := ParseSpec([]byte(spec))
	if err != nil {
		t.Fatalf("ParseSpec(%s): %v", spec, err)
	}
	sch, err := Compile(s, DefaultConfig(), mustTime(t, created))
	if err != nil {
		t.Fatalf("Compile(%s): %v", spec, err)
	}
	return sch
}

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// slotsAfter lists up to n slots strictly after from.
func slotsAfter(sch *Schedule, from time.Time, n int) []Slot {
	var out []Slot
	for len(out) < n {
		s, ok := sch.Next(from)
		if !ok {
			break
		}
		out = append(out, s)
		from = s.At
	}
	return out
}

func formatAll(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.UTC().Format(time.RFC3339)
	}
	return out
}

func slotTimes(slots []Slot) []string {
	out := make([]string, len(slots))
	for i, s := range slots {
		out[i] = s.At.Format(time.RFC3339)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
