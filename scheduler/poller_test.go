package scheduler

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
)

// fakeCluster applies commands straight to an FSM, as a single leader would.
type fakeCluster struct {
	mu    sync.Mutex
	f     *fsm.FSM
	index uint64
	nodes []string
}

func newFakeCluster(t *testing.T) *fakeCluster {
	c := &fakeCluster{f: fsm.New(slog.New(slog.NewTextHandler(io.Discard, nil))), nodes: []string{"n2", "n3"}}
	pc, _ := fsm.ProjectCreateCommand(fsm.Project{Name: "p"})
	if _, err := c.Apply(t.Context(), pc); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *fakeCluster) FSM() *fsm.FSM           { return c.f }
func (c *fakeCluster) DeliveryNodes() []string { return c.nodes }
func (c *fakeCluster) Apply(_ context.Context, cmd []byte) (*fsm.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	res := c.f.Apply(&raft.Log{Index: c.index, Term: 1, Type: raft.LogCommand, Data: cmd}).(*fsm.Result)
	return res, res.Err
}

// addJob stores a job built from a spec the way the API does.
func (c *fakeCluster) addJob(t *testing.T, id string, spec Spec, created time.Time, mod func(*fsm.Job)) {
	t.Helper()
	cfg := DefaultConfig()
	spec = spec.WithDefaults(cfg)
	sch, err := Compile(spec, cfg, created)
	if err != nil {
		t.Fatal(err)
	}
	canon, _ := spec.Canonical()
	st, _ := sch.InitialState()
	j := &fsm.Job{ID: id, Project: "p", Status: fsm.JobActive, ScheduleKind: sch.Kind(), Schedule: canon,
		ScheduleSetAt: fsm.MillisOf(created), NextFireAt: fsm.MillisOf(st.NextFireAt), CallbackURL: "https://cb.example",
		Retry: fsm.RetryPolicy{MaxAttempts: 2}, TimeoutMs: 1000}
	if mod != nil {
		mod(j)
	}
	cmd, _ := fsm.PutCommand(fsm.TableJobs, j, fsm.PutOptions{})
	if _, err := c.Apply(t.Context(), cmd); err != nil {
		t.Fatal(err)
	}
}

func i64(v int64) *int64 { return &v }

func occurrences(t *testing.T, c *fakeCluster, job string) []*fsm.Occurrence {
	t.Helper()
	os, _ := c.f.State().OccurrencesByJob(job, 0, 0)
	return os
}

func TestPollerTickFiresDueJobsOnce(t *testing.T) {
	c := newFakeCluster(t)
	p := NewPoller(c, PollerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	c.addJob(t, "every10", Spec{RecurrenceSeconds: i64(10), FireAtUTC: t0.Format(time.RFC3339), MaxOccurrences: i64(3)}, t0.Add(-time.Minute), nil)
	c.addJob(t, "later", Spec{FireAtUTC: t0.Add(time.Hour).Format(time.RFC3339)}, t0.Add(-time.Minute), nil)

	ctx := t.Context()
	if progress, more := p.tick(ctx, c.f.State(), t0.Add(-time.Second)); !progress || more {
		t.Fatalf("nothing due: progress=%v more=%v", progress, more)
	}
	p.tick(ctx, c.f.State(), t0.Add(20*time.Millisecond))
	p.tick(ctx, c.f.State(), t0.Add(30*time.Millisecond)) // same slot again: nothing new
	os := occurrences(t, c, "every10")
	if len(os) != 1 || os[0].Number != 1 || os[0].ScheduledFor != fsm.MillisOf(t0) || os[0].FiredAt != fsm.MillisOf(t0.Add(20*time.Millisecond)) {
		t.Fatalf("after the first slot: %+v", os)
	}
	ds := c.f.State().DeliveriesByOccurrence(os[0].ID)
	if len(ds) != 1 || ds[0].AssignedNode == "" || ds[0].Status != fsm.DeliveryPending || ds[0].MaxAttempts != 2 {
		t.Fatalf("deliveries: %+v", ds)
	}
	job, _ := c.f.State().Job("every10")
	if job.NextFireAt != fsm.MillisOf(t0.Add(10*time.Second)) || job.OccurrenceCount != 1 || job.LastNumber != 1 {
		t.Fatalf("job after a fire: next %v count %d", job.NextFireAt.Time(), job.OccurrenceCount)
	}

	// A leader that was away 25 s: the two slots within the 60 s grace fire
	// one per tick, and the job completes at maxOccurrences.
	now := t0.Add(25 * time.Second)
	for range 5 {
		p.tick(ctx, c.f.State(), now)
	}
	os = occurrences(t, c, "every10")
	if len(os) != 3 || os[2].ScheduledFor != fsm.MillisOf(t0.Add(20*time.Second)) {
		t.Fatalf("catching up within the grace: %d occurrences", len(os))
	}
	job, _ = c.f.State().Job("every10")
	if job.Status != fsm.JobCompleted || job.NextFireAt != 0 {
		t.Fatalf("job after maxOccurrences: %s next %d", job.Status, job.NextFireAt)
	}
	if l, _ := c.f.State().Job("later"); l.OccurrenceCount != 0 {
		t.Fatal("a job that is not due fired")
	}
}

func TestPollerCatchUpCooldownAndMissed(t *testing.T) {
	c := newFakeCluster(t)
	p := NewPoller(c, PollerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	// Every minute, catch-up one; down for ten minutes.
	c.addJob(t, "minutely", Spec{Cron: "* * * * *"}, t0.Add(-time.Hour), func(j *fsm.Job) { j.ManualCompletion = true })
	now := t0.Add(10*time.Minute + 30*time.Second)
	p.tick(t.Context(), c.f.State(), now)
	os := occurrences(t, c, "minutely")
	if len(os) != 1 {
		t.Fatalf("catch-up one after downtime: %d occurrences", len(os))
	}
	if os[0].MissedCount == 0 {
		t.Errorf("the catch-up occurrence carries no missedCount: %+v", os[0])
	}
	job, _ := c.f.State().Job("minutely")
	if job.NextFireAt.Time().Before(now.Add(-time.Minute)) {
		t.Errorf("after catch-up the job resumes near now, not at %s", job.NextFireAt.Time())
	}
	// The next slot marks the pending (hand-completed) occurrence missed once
	// its deliveries are done.
	d := c.f.State().DeliveriesByOccurrence(os[0].ID)[0]
	res, _ := fsm.Encode(fsm.CmdDeliveryResults, &fsm.DeliveryResults{At: fsm.MillisOf(now), Results: []fsm.DeliveryResult{{DeliveryID: d.ID, Fence: d.Fence, Status: fsm.DeliverySucceeded}}})
	if _, err := c.Apply(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	p.tick(t.Context(), c.f.State(), job.NextFireAt.Time())
	first, _ := c.f.State().Occurrence(os[0].ID)
	if first.Status != fsm.OccurrenceMissed {
		t.Errorf("older pending occurrence is %s, want missed", first.Status)
	}

	// Cooldown: an occurrence within cooldownSeconds of the last completion
	// is created as cooldown and sends nothing.
	c.addJob(t, "cool", Spec{RecurrenceSeconds: i64(60), FireAtUTC: t0.Format(time.RFC3339), CooldownSeconds: i64(300)}, t0.Add(-time.Hour),
		func(j *fsm.Job) { j.LastCompletedAt = fsm.MillisOf(t0.Add(-time.Minute)) })
	p.tick(t.Context(), c.f.State(), t0.Add(time.Second))
	co := occurrences(t, c, "cool")
	if len(co) != 1 || co[0].Status != fsm.OccurrenceCooldown || len(c.f.State().DeliveriesByOccurrence(co[0].ID)) != 0 {
		t.Fatalf("cooldown occurrence: %+v", co)
	}
}

func TestPollerPublishesEvents(t *testing.T) {
	c := newFakeCluster(t)
	p := NewPoller(c, PollerConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, ep := range []*fsm.Endpoint{
		{ID: "a", Project: "p", URL: "https://a.example", EventTypes: []string{"invoice.*"}, Enabled: true},
		{ID: "b", Project: "p", URL: "https://b.example", EventTypes: []string{"endpoint.disabled"}, Enabled: true},
		{ID: "c", Project: "p", URL: "https://c.example", EventTypes: []string{"*"}, Enabled: false},
	} {
		cmd, _ := fsm.PutCommand(fsm.TableEndpoints, ep, fsm.PutOptions{})
		c.Apply(t.Context(), cmd)
	}
	for _, ev := range []*fsm.Event{
		{ID: "e1", Project: "p", Type: "invoice.paid", ScheduledAt: fsm.MillisOf(t0), Status: fsm.EventScheduled},
		{ID: "e2", Project: "p", Type: "invoice.paid", ScheduledAt: fsm.MillisOf(t0.Add(time.Hour)), Status: fsm.EventScheduled},
		{ID: "e4", Project: "p", Type: fsm.EventWebhookTest, OnlyEndpoint: "c", ScheduledAt: fsm.MillisOf(t0), Status: fsm.EventScheduled},
		{ID: "e3", Project: "p", Type: fsm.EventEndpointDisabled, SkipEndpoint: "c", ScheduledAt: fsm.MillisOf(t0), Status: fsm.EventScheduled},
	} {
		cmd, _ := fsm.PutCommand(fsm.TableEvents, ev, fsm.PutOptions{})
		c.Apply(t.Context(), cmd)
	}
	p.tick(t.Context(), c.f.State(), t0.Add(time.Millisecond))
	st := c.f.State()
	dests := func(ev string) map[string]string {
		ds, _ := st.DeliveriesByEvent(ev, "", 0)
		out := map[string]string{}
		for _, d := range ds {
			out[d.EndpointID] = d.Status
		}
		return out
	}
	if got := dests("e1"); len(got) != 2 || got["a"] != fsm.DeliveryPending || got["c"] != fsm.DeliveryHeld {
		t.Errorf("e1 deliveries %v; want a pending, c held", got)
	}
	if got := dests("e3"); len(got) != 1 || got["b"] != fsm.DeliveryPending {
		t.Errorf("endpoint.disabled about c went to %v; want b only", got)
	}
	if got := dests("e4"); len(got) != 1 || got["c"] != fsm.DeliveryPending {
		t.Errorf("webhook.test for disabled c went to %v; want c only, pending", got)
	}
	if e2, _ := st.Event("e2"); e2.Status != fsm.EventScheduled {
		t.Error("an event scheduled later was published early")
	}
}

func TestPollerLoopWakesForNewWork(t *testing.T) {
	c := newFakeCluster(t)
	p := NewPoller(c, PollerConfig{Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := p.EstablishLeadership(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer p.RevokeLeadership()
	time.Sleep(50 * time.Millisecond) // the loop is asleep for an hour
	now := time.Now()
	c.addJob(t, "soon", Spec{FireAtUTC: now.Add(200 * time.Millisecond).UTC().Format(time.RFC3339Nano)}, now, nil)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if os := occurrences(t, c, "soon"); len(os) == 1 {
			if late := time.Since(os[0].ScheduledFor.Time()); late > time.Second {
				t.Errorf("fired %s late", late)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("a job created while the poller slept did not fire: the loop does not watch the jobs")
}
