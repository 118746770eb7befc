package scheduler

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
)

func applyAll(t *testing.T, f *fsm.FSM, first uint64, cmds ...[]byte) {
	t.Helper()
	for i, c := range cmds {
		res, ok := f.Apply(&raft.Log{Index: first + uint64(i), Term: 1, Type: raft.LogCommand, Data: c}).(*fsm.Result)
		if !ok || res.Err != nil {
			t.Fatalf("command %d: %+v", i, res)
		}
		for _, r := range res.Results {
			if r.Err != nil {
				t.Fatalf("command %d item: %v", i, r.Err)
			}
		}
	}
}

func put(t *testing.T, table string, rec any) []byte {
	t.Helper()
	c, err := fsm.PutCommand(table, rec, fsm.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTriggerFansOutToCallbackAndSubscribedEndpoints(t *testing.T) {
	f := fsm.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	pc, _ := fsm.ProjectCreateCommand(fsm.Project{Name: "p"})
	applyAll(t, f, 1, pc,
		put(t, fsm.TableEndpoints, &fsm.Endpoint{ID: "ep-all", Project: "p", URL: "https://a.example", EventTypes: []string{"*"}, Enabled: true, Retry: fsm.RetryPolicy{MaxAttempts: 3}}),
		put(t, fsm.TableEndpoints, &fsm.Endpoint{ID: "ep-off", Project: "p", URL: "https://b.example", EventTypes: []string{"report.*"}, Enabled: false}),
		put(t, fsm.TableEndpoints, &fsm.Endpoint{ID: "ep-other", Project: "p", URL: "https://c.example", EventTypes: []string{"invoice.paid"}, Enabled: true}),
		put(t, fsm.TableJobs, &fsm.Job{ID: "j1", Project: "p", Status: fsm.JobPaused, ScheduleKind: KindInterval, CallbackURL: "https://cb.example",
			EventType: "report.ready", IdempotencyKey: "rep", LastNumber: 6, OccurrenceCount: 5, TimeoutMs: 2000, Retry: fsm.RetryPolicy{MaxAttempts: 5}}),
	)
	st := f.State()
	job, _ := st.Job("j1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	jf, err := TriggerFire(st, job, []string{"n2", "n3"}, now)
	if err != nil {
		t.Fatal(err)
	}
	o := jf.Occurrence
	if o.Number != 7 || !o.Manual || o.IdempotencyKey != "rep-7" || o.ScheduledFor != fsm.MillisOf(now) || o.IdentityKey != "" {
		t.Errorf("occurrence %+v", o)
	}
	if jf.Job.LastNumber != 7 || jf.Job.OccurrenceCount != 5 || jf.Job.LastOccurrenceID != o.ID {
		t.Errorf("a trigger must number the occurrence but not use up maxOccurrences: %+v", jf.Job)
	}
	byDest := map[string]fsm.Delivery{}
	for _, d := range jf.Deliveries {
		dest := d.EndpointID
		if dest == "" {
			dest = "callback"
		}
		byDest[dest] = d
	}
	if len(byDest) != 3 {
		t.Fatalf("deliveries to %v; want the callback, ep-all and ep-off", byDest)
	}
	cb := byDest["callback"]
	if cb.Status != fsm.DeliveryPending || cb.MaxAttempts != 5 || (cb.AssignedNode != "n2" && cb.AssignedNode != "n3") ||
		cb.LeaseUntil != fsm.MillisOf(now.Add(2*time.Second+fsm.LeaseGrace)) || cb.OccurrenceID != o.ID || cb.JobID != "j1" {
		t.Errorf("callback delivery %+v", cb)
	}
	if d := byDest["ep-off"]; d.Status != fsm.DeliveryHeld || d.AssignedNode != "" {
		t.Errorf("delivery to a disabled endpoint must be held: %+v", d)
	}
	if d := byDest["ep-all"]; d.MaxAttempts != 3 || d.Status != fsm.DeliveryPending {
		t.Errorf("endpoint delivery %+v", d)
	}
	fire, _ := fsm.Encode(fsm.CmdFire, &fsm.Fire{At: fsm.MillisOf(now), Jobs: []fsm.JobFire{jf}})
	applyAll(t, f, 10, fire)

	// A scheduled slot: derived id, identity key, idempotency key per number.
	job, _ = f.State().Job("j1")
	fo := newFanout(f.State(), []string{"n2"}, now)
	slot := Slot{At: now, Key: "17", Seq: 17}
	so := fo.newOccurrence(job, slot, false, 0, false)
	if so.ID != fsm.DerivedID("occ", fsm.MillisOf(now), "j1", "17") || so.Number != 8 || so.IdempotencyKey != "rep-8" {
		t.Errorf("scheduled occurrence %+v", so)
	}
	job.IdempotencyKey = ""
	if k := occurrenceKey(job, so); k != "j1:17" {
		t.Errorf("key without idempotencyKey = %q", k)
	}
	job.IdempotencyKey, job.ScheduleKind = "once-key", KindOnce
	if k := occurrenceKey(job, so); k != "once-key" {
		t.Errorf("one-shot key = %q", k)
	}

	job.Status = fsm.JobCancelled
	if _, err := TriggerFire(f.State(), job, []string{"n2"}, now); err != ErrJobNotTriggerable {
		t.Errorf("trigger of a cancelled job: %v", err)
	}
}
