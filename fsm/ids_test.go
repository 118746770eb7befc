package fsm

import (
	"strings"
	"testing"
	"time"
)

func TestIDsSortByTimeAndDeriveDeterministically(t *testing.T) {
	base := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	prev := ""
	for i := range 1000 {
		id := NewID("job", base.Add(time.Duration(i)*time.Millisecond))
		if !strings.HasPrefix(id, "job_") || len(id) != len("job_")+26 {
			t.Fatalf("bad id %q", id)
		}
		if id <= prev {
			t.Fatalf("%q does not sort after %q", id, prev)
		}
		prev = id
	}
	a := DerivedID("occ", 1000, "job_x", "2026-03-10T02:30@America/New_York")
	if a != DerivedID("occ", 1000, "job_x", "2026-03-10T02:30@America/New_York") {
		t.Fatal("derived ids differ for the same inputs")
	}
	if a == DerivedID("occ", 1000, "job_x", "2026-03-10T02:31@America/New_York") || a == DerivedID("occ", 1000, "job_y", "2026-03-10T02:30@America/New_York") {
		t.Fatal("derived ids collide for different inputs")
	}
	if DerivedID("dlv", 1000, "a", "bc") == DerivedID("dlv", 1000, "ab", "c") {
		t.Fatal("parts are not separated")
	}
}
