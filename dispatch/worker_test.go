package dispatch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
)

// noQuorum is a node whose FSM holds one due delivery but whose cluster can
// commit nothing (the leader is gone for good).
type noQuorum struct {
	f       *fsm.FSM
	applies atomic.Int64
}

func (c *noQuorum) NodeID() string  { return "n2" }
func (c *noQuorum) FSM() *fsm.FSM   { return c.f }
func (c *noQuorum) InContact() bool { return true }

// ReadBarrier succeeds: the delivery in the FSM is the latest state.
func (c *noQuorum) ReadBarrier(context.Context) error { return nil }
func (c *noQuorum) Apply(ctx context.Context, _ []byte) (*fsm.Result, error) {
	c.applies.Add(1)
	<-ctx.Done() // as a forward to an unreachable leader does
	return nil, errors.New("no leader")
}

func TestStopIsBoundedWhenResultsCannotCommit(t *testing.T) {
	var hits atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer rcv.Close()
	now := time.Now()
	at := fsm.MillisOf(now)
	f := fsm.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	pc, _ := fsm.ProjectCreateCommand(fsm.Project{Name: "p"})
	cmds := [][]byte{pc,
		putCmd(t, fsm.TableJobs, &fsm.Job{ID: "j", Project: "p", Status: fsm.JobActive, CallbackURL: rcv.URL, TimeoutMs: 2000}),
		putCmd(t, fsm.TableOccurrences, &fsm.Occurrence{ID: "o", JobID: "j", Project: "p", Number: 1, Status: fsm.OccurrencePending}),
	}
	for i, c := range cmds {
		f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: c})
	}
	job, _ := f.State().Job("j")
	fire, _ := fsm.Encode(fsm.CmdFire, &fsm.Fire{At: at, Jobs: []fsm.JobFire{{Job: *job, Deliveries: []fsm.Delivery{{
		ID: "d", Project: "p", JobID: "j", OccurrenceID: "o", Status: fsm.DeliveryPending, AssignedNode: "n2",
		NextAttemptAt: at, LeaseUntil: at + 10*60_000, MaxAttempts: 3}}}}})
	f.Apply(&raft.Log{Index: 10, Term: 1, Type: raft.LogCommand, Data: fire})

	c := &noQuorum{f: f}
	d := NewDispatcher(c, DispatcherConfig{Workers: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sender: NewSender(SenderConfig{Policy: TargetPolicy{AllowPrivate: true}})})
	d.Start()
	deadline := time.Now().Add(5 * time.Second)
	for c.applies.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if hits.Load() != 1 || c.applies.Load() == 0 {
		t.Fatalf("the due delivery was not sent and reported: %d requests, %d applies", hits.Load(), c.applies.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	d.Stop(ctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Stop took %s with an uncommittable result; it must give up at its deadline", took)
	}
	if d.InFlight() != 0 {
		t.Errorf("%d deliveries still marked in flight after Stop", d.InFlight())
	}
}
