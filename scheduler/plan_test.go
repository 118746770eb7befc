package scheduler

import (
	"testing"
	"time"
)

func TestPlanCatchUpAfterThreeDaysDown(t *testing.T) {
	tests := []struct {
		name      string
		spec      string
		lastFire  string // the last slot fired before the downtime
		catchUp   string
		wantFire  bool
		wantSlot  string
		wantKey   string
		wantMiss  int64
		wantNext  string
		startedAt string
	}{
		{"hourly cron, one", `{"cron":"0 * * * *"}`, "2024-03-04T10:00:00Z", CatchUpOne, true, "2024-03-04T11:00:00Z", "2024-03-04T11:00:00[UTC]", 72, "2024-03-07T11:00:00Z", ""},
		{"hourly cron, none", `{"cron":"0 * * * *"}`, "2024-03-04T10:00:00Z", CatchUpNone, false, "", "", 72, "2024-03-07T11:00:00Z", ""},
		{"hourly interval, one", `{"recurrenceSeconds":3600,"fireAtUtc":"2024-03-01T00:00:00Z"}`, "2024-03-04T10:00:00Z", CatchUpOne, true, "2024-03-04T11:00:00Z", "83", 72, "2024-03-07T11:00:00Z", ""},
		{"hourly interval, none", `{"recurrenceSeconds":3600,"fireAtUtc":"2024-03-01T00:00:00Z"}`, "2024-03-04T10:00:00Z", CatchUpNone, false, "", "", 72, "2024-03-07T11:00:00Z", ""},
		{"daily, one", `{"scheduleTimes":["10:00"],"timezone":"Europe/Berlin"}`, "2024-03-04T09:00:00Z", CatchUpOne, true, "2024-03-05T09:00:00Z", "2024-03-05T10:00:00[Europe/Berlin]", 3, "2024-03-08T09:00:00Z", ""},
		{"daily, none", `{"scheduleTimes":["10:00"],"timezone":"Europe/Berlin"}`, "2024-03-04T09:00:00Z", CatchUpNone, false, "", "", 3, "2024-03-08T09:00:00Z", ""},
		{"weekly, one", `{"recurrence":{"frequency":"weekly","weekdays":["TU"],"times":["10:00"]},"timezone":"Europe/Berlin"}`, "2024-03-05T09:00:00Z", CatchUpOne, true, "2024-03-12T09:00:00Z", "2024-03-12T10:00:00[Europe/Berlin]", 1, "2024-03-19T09:00:00Z", ""},
		{"weekly, none", `{"recurrence":{"frequency":"weekly","weekdays":["TU"],"times":["10:00"]},"timezone":"Europe/Berlin"}`, "2024-03-05T09:00:00Z", CatchUpNone, false, "", "", 1, "2024-03-19T09:00:00Z", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sch := mustCompile(t, tt.spec, "2024-03-01T00:00:00Z")
			last := mustTime(t, tt.lastFire)
			next, ok := sch.Next(last)
			if !ok {
				t.Fatal("no next slot")
			}
			// The cluster went down just after the last fire and is back three days later.
			now := last.Add(3*24*time.Hour + 30*time.Minute)
			if tt.name[:6] == "weekly" {
				now = mustTime(t, "2024-03-13T09:30:00Z") // down from the 10th to the 13th
			}
			st := JobState{NextFireAt: next.At, OccurrenceCount: 5, Policy: sch.Policy()}
			st.CatchUp = tt.catchUp
			d := Plan(sch, st, now)
			if d.Fire != tt.wantFire || d.MissedCount != tt.wantMiss || d.Completed {
				t.Fatalf("decision %+v", d)
			}
			if tt.wantFire && (d.Slot.At.Format(time.RFC3339) != tt.wantSlot || d.Slot.Key != tt.wantKey) {
				t.Errorf("slot %s %q, want %s %q", d.Slot.At.Format(time.RFC3339), d.Slot.Key, tt.wantSlot, tt.wantKey)
			}
			if d.NextFireAt.Format(time.RFC3339) != tt.wantNext {
				t.Errorf("next %s, want %s", d.NextFireAt.Format(time.RFC3339), tt.wantNext)
			}
			// The job is not due again until its next slot.
			st2 := st.Apply(d)
			if ds, _ := PlanDue(sch, st2, now, 10); len(ds) != 0 {
				t.Errorf("still due after catch-up: %+v", ds)
			}
			wantCount := int64(5)
			if tt.wantFire {
				wantCount = 6
			}
			if st2.OccurrenceCount != wantCount {
				t.Errorf("count %d, want %d", st2.OccurrenceCount, wantCount)
			}
		})
	}
}

func TestPlanGraceAndRecentSlots(t *testing.T) {
	sch := mustCompile(t, `{"recurrenceSeconds":10,"fireAtUtc":"2024-01-01T00:00:00Z"}`, "2024-01-01T00:00:00Z")
	st, _ := sch.InitialState()
	if st.NextFireAt.Format(time.RFC3339) != "2024-01-01T00:00:00Z" || st.MisfireGrace != time.Minute || st.CatchUp != CatchUpOne {
		t.Fatalf("initial state %+v", st)
	}
	// A failover: 35 s late, every slot is within the grace and fires, in order.
	now := st.NextFireAt.Add(35 * time.Second)
	ds, st2 := PlanDue(sch, st, now, 100)
	if len(ds) != 4 {
		t.Fatalf("got %d decisions: %+v", len(ds), ds)
	}
	for i, d := range ds {
		if !d.Fire || d.MissedCount != 0 || d.Slot.Seq != int64(i) {
			t.Errorf("decision %d: %+v", i, d)
		}
	}
	if st2.NextFireAt.Format(time.RFC3339) != "2024-01-01T00:00:40Z" || st2.OccurrenceCount != 4 {
		t.Errorf("state %+v", st2)
	}

	// Exactly the grace late is missed; just under it is not.
	hourly := mustCompile(t, `{"cron":"0 * * * *"}`, "2024-01-01T00:00:00Z")
	base := JobState{NextFireAt: mustTime(t, "2024-01-01T01:00:00Z"), Policy: hourly.Policy()}
	if d := Plan(hourly, base, base.NextFireAt.Add(59*time.Second)); !d.Fire || d.MissedCount != 0 {
		t.Errorf("59 s late: %+v", d)
	}
	none := base
	none.CatchUp = CatchUpNone
	if d := Plan(hourly, none, base.NextFireAt.Add(60*time.Second)); d.Fire || d.MissedCount != 1 ||
		d.NextFireAt.Format(time.RFC3339) != "2024-01-01T02:00:00Z" {
		t.Errorf("60 s late, none: %+v", d)
	}
	if d := Plan(hourly, base, base.NextFireAt.Add(60*time.Second)); !d.Fire || d.MissedCount != 1 {
		t.Errorf("60 s late, one: %+v", d)
	}
	if d := Plan(hourly, base, base.NextFireAt.Add(-time.Second)); d.Fire || !d.NextFireAt.Equal(base.NextFireAt) {
		t.Errorf("not due: %+v", d)
	}

	// Missed slots followed by one within the grace: none skips the old ones and fires the
	// recent one; one fires a catch-up, then the recent one.
	now = mustTime(t, "2024-01-01T04:00:30Z")
	if d := Plan(hourly, none, now); !d.Fire || d.MissedCount != 3 || d.Slot.At.Format(time.RFC3339) != "2024-01-01T04:00:00Z" ||
		d.NextFireAt.Format(time.RFC3339) != "2024-01-01T05:00:00Z" {
		t.Errorf("none with a recent slot: %+v", d)
	}
	ds, _ = PlanDue(hourly, base, now, 10)
	if len(ds) != 2 || ds[0].MissedCount != 3 || ds[0].Slot.At.Format(time.RFC3339) != "2024-01-01T01:00:00Z" ||
		ds[1].MissedCount != 0 || ds[1].Slot.At.Format(time.RFC3339) != "2024-01-01T04:00:00Z" {
		t.Errorf("one with a recent slot: %+v", ds)
	}

	// A one-second interval down for three days is counted arithmetically.
	fast := mustCompile(t, `{"recurrenceSeconds":1,"delaySeconds":0}`, "2024-01-01T00:00:00Z")
	fs, _ := fast.InitialState()
	if d := Plan(fast, fs, fs.NextFireAt.Add(72*time.Hour)); d.MissedCount != 72*3600-60+1 {
		t.Errorf("fast interval missed %d", d.MissedCount)
	}
}

func TestPlanCompletion(t *testing.T) {
	sch := mustCompile(t, `{"scheduleTimes":["09:00"],"maxOccurrences":3,"endAtUtc":"2024-01-10T09:00:00Z"}`, "2024-01-01T00:00:00Z")
	st, _ := sch.InitialState()
	if st.MaxOccurrences != 3 {
		t.Fatalf("policy %+v", st.Policy)
	}
	var fired []string
	for day := 0; day < 10; day++ {
		now := mustTime(t, "2024-01-01T09:00:01Z").AddDate(0, 0, day)
		ds, st2 := PlanDue(sch, st, now, 10)
		for _, d := range ds {
			if d.Fire {
				fired = append(fired, d.Slot.At.Format(time.RFC3339))
			}
		}
		st = st2
	}
	if !equalStrings(fired, []string{"2024-01-01T09:00:00Z", "2024-01-02T09:00:00Z", "2024-01-03T09:00:00Z"}) {
		t.Errorf("fired %v", fired)
	}
	if !st.NextFireAt.IsZero() || st.OccurrenceCount != 3 {
		t.Errorf("state %+v", st)
	}

	// Manual triggers are not in OccurrenceCount; the poller counts only what Plan fires.
	// endAtUtc (inclusive) completes the job on its last slot.
	sch = mustCompile(t, `{"scheduleTimes":["09:00"],"endAtUtc":"2024-01-02T09:00:00Z"}`, "2024-01-01T00:00:00Z")
	st = JobState{NextFireAt: mustTime(t, "2024-01-02T09:00:00Z"), OccurrenceCount: 1, Policy: sch.Policy()}
	if d := Plan(sch, st, mustTime(t, "2024-01-02T09:00:05Z")); !d.Fire || !d.Completed || !d.NextFireAt.IsZero() {
		t.Errorf("last slot: %+v", d)
	}
	// Missed past the end with none: completes without firing.
	st.CatchUp = CatchUpNone
	if d := Plan(sch, st, mustTime(t, "2024-01-05T00:00:00Z")); d.Fire || !d.Completed || d.MissedCount != 1 {
		t.Errorf("missed last slot: %+v", d)
	}

	// A one-shot fires once and completes; missed with none it completes silently.
	once := mustCompile(t, `{"delaySeconds":60}`, "2024-01-01T00:00:00Z")
	os, _ := once.InitialState()
	if d := Plan(once, os, os.NextFireAt.Add(time.Second)); !d.Fire || !d.Completed || d.Slot.Key != "once" {
		t.Errorf("once: %+v", d)
	}
	os.CatchUp = CatchUpNone
	if d := Plan(once, os, os.NextFireAt.Add(time.Hour)); d.Fire || !d.Completed {
		t.Errorf("once missed, none: %+v", d)
	}
	os.CatchUp = CatchUpOne
	if d := Plan(once, os, os.NextFireAt.Add(time.Hour)); !d.Fire || !d.Completed || d.MissedCount != 1 {
		t.Errorf("once missed, one: %+v", d)
	}
	if d := Plan(once, JobState{}, time.Now()); !d.Completed || d.Fire {
		t.Errorf("no next fire: %+v", d)
	}
}

func TestPlanCooldown(t *testing.T) {
	sch := mustCompile(t, `{"cron":"0 * * * *","cooldownSeconds":21600}`, "2024-01-01T00:00:00Z")
	st, _ := sch.InitialState()
	if st.Cooldown != 6*time.Hour {
		t.Fatalf("cooldown %v", st.Cooldown)
	}
	now := st.NextFireAt.Add(time.Second)
	for _, tt := range []struct {
		completed string
		want      bool
	}{
		{"", false},
		{"2023-12-31T19:00:02Z", true},  // 5 h 59 m 59 s ago
		{"2023-12-31T19:00:01Z", false}, // exactly 6 h ago: the cooldown is over
		{"2023-12-31T12:00:00Z", false},
	} {
		s := st
		if tt.completed != "" {
			s.LastCompletedAt = mustTime(t, tt.completed)
		}
		if d := Plan(sch, s, now); !d.Fire || d.Cooldown != tt.want {
			t.Errorf("completed %q: %+v", tt.completed, d)
		}
	}
}

// When the stored next fire time is not a slot (the spec was edited), Plan waits for the
// schedule's real next slot instead of firing at a time that is not one.
func TestPlanNextFireNotASlot(t *testing.T) {
	sch := mustCompile(t, `{"scheduleTimes":["09:00"]}`, "2024-01-01T00:00:00Z")
	st := JobState{NextFireAt: mustTime(t, "2024-01-02T07:00:00Z"), Policy: sch.Policy()}
	d := Plan(sch, st, mustTime(t, "2024-01-02T07:00:10Z"))
	if d.Fire || d.NextFireAt.Format(time.RFC3339) != "2024-01-02T09:00:00Z" {
		t.Errorf("%+v", d)
	}
}
