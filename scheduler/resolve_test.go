package scheduler

import (
	"testing"
	"time"
)

func TestResolveDSTVectors(t *testing.T) {
	tests := []struct {
		name  string
		zone  string
		civil civil
		want  string
	}{
		// The vectors of the issue.
		{"NY gap", "America/New_York", mkCivil(2024, 3, 10, 2, 30, 0), "2024-03-10T07:30:00Z"},
		{"Berlin gap", "Europe/Berlin", mkCivil(2024, 3, 31, 2, 30, 0), "2024-03-31T01:30:00Z"},
		{"Lord Howe 30-minute gap", "Australia/Lord_Howe", mkCivil(2024, 10, 6, 2, 15, 0), "2024-10-05T15:45:00Z"},
		{"NY overlap: earlier", "America/New_York", mkCivil(2024, 11, 3, 1, 30, 0), "2024-11-03T05:30:00Z"},
		{"Berlin overlap: earlier", "Europe/Berlin", mkCivil(2024, 10, 27, 2, 30, 0), "2024-10-27T00:30:00Z"},
		// Edges of the gaps and overlaps.
		{"NY gap start", "America/New_York", mkCivil(2024, 3, 10, 2, 0, 0), "2024-03-10T07:00:00Z"},
		{"NY just before gap", "America/New_York", mkCivil(2024, 3, 10, 1, 59, 59), "2024-03-10T06:59:59Z"},
		{"NY gap end exists", "America/New_York", mkCivil(2024, 3, 10, 3, 0, 0), "2024-03-10T07:00:00Z"},
		{"NY overlap start", "America/New_York", mkCivil(2024, 11, 3, 1, 0, 0), "2024-11-03T05:00:00Z"},
		{"NY after overlap", "America/New_York", mkCivil(2024, 11, 3, 2, 0, 0), "2024-11-03T07:00:00Z"},
		{"Lord Howe overlap: earlier", "Australia/Lord_Howe", mkCivil(2024, 4, 7, 1, 45, 0), "2024-04-06T14:45:00Z"},
		{"Sao Paulo midnight gap", "America/Sao_Paulo", mkCivil(2018, 11, 4, 0, 0, 0), "2018-11-04T03:00:00Z"},
		{"Sao Paulo overlap before midnight", "America/Sao_Paulo", mkCivil(2019, 2, 16, 23, 30, 0), "2019-02-17T01:30:00Z"},
		{"Apia skipped day", "Pacific/Apia", mkCivil(2011, 12, 30, 9, 0, 0), "2011-12-30T19:00:00Z"},
		{"Apia day after", "Pacific/Apia", mkCivil(2011, 12, 31, 9, 0, 0), "2011-12-30T19:00:00Z"},
		{"Kathmandu odd offset", "Asia/Kathmandu", mkCivil(2024, 6, 1, 9, 0, 0), "2024-06-01T03:15:00Z"},
		{"UTC", "UTC", mkCivil(2024, 6, 1, 9, 0, 0), "2024-06-01T09:00:00Z"},
		{"Dublin negative DST summer", "Europe/Dublin", mkCivil(2024, 7, 1, 12, 0, 0), "2024-07-01T11:00:00Z"},
		{"Dublin gap", "Europe/Dublin", mkCivil(2024, 3, 31, 1, 30, 0), "2024-03-31T01:30:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(mustLoc(t, tt.zone), tt.civil)
			if got.Format(time.RFC3339) != tt.want {
				t.Errorf("resolve(%s, %s) = %s, want %s", tt.zone, tt.civil, got.Format(time.RFC3339), tt.want)
			}
		})
	}
}

// Away from transitions every wall time exists once and time.Date agrees.
func TestResolveMatchesTimeDateWhereUnambiguous(t *testing.T) {
	for _, zone := range []string{"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Tokyo", "America/Santiago"} {
		loc := mustLoc(t, zone)
		for d := 0; d < 366*3; d += 5 {
			c := mkCivil(2023, 1, 1+d, 12, 17, 0)
			want := time.Date(c.t.Year(), c.t.Month(), c.t.Day(), 12, 17, 0, 0, loc)
			if got := resolve(loc, c); !got.Equal(want) {
				t.Fatalf("%s %s: got %s want %s", zone, c, got, want)
			}
			if back := wallClock(loc, want); !back.equal(c) {
				t.Fatalf("%s wallClock(%s) = %s, want %s", zone, want, back, c)
			}
		}
	}
}

// periodAt must describe the offset correctly everywhere, including past the zones'
// explicit transitions, where Go's ZoneBounds is approximate (and wrong on the last day of
// leap years).
func TestPeriodAtAgreesWithZone(t *testing.T) {
	for _, zone := range []string{"Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "America/Santiago", "UTC", "Asia/Kolkata"} {
		loc := mustLoc(t, zone)
		x := mustTime(t, "2030-01-01T00:00:00Z").Unix()
		end := mustTime(t, "2070-01-01T00:00:00Z").Unix()
		for x < end {
			p := periodAt(loc, x)
			if !p.contains(x) {
				t.Fatalf("%s: period at %s does not contain it", zone, time.Unix(x, 0).UTC())
			}
			for _, probe := range []int64{x, p.start, p.end - 1} {
				if probe < x-400*secondsPerDay || (!p.hasEnd && probe == p.end-1) || (!p.hasStart && probe == p.start) {
					continue
				}
				if _, off := time.Unix(probe, 0).In(loc).Zone(); int64(off) != p.offset {
					t.Fatalf("%s: offset at %s is %d, period says %d", zone, time.Unix(probe, 0).UTC(), off, p.offset)
				}
			}
			if !p.hasEnd {
				break
			}
			x = p.end
		}
	}
}
