package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fault suite (issue 6): each scenario runs the workload against real
// processes, injects its faults, and then checks the invariants below. The
// figures go to the test log as one "FAULT <scenario>" line (make chaos
// prints them; docs/reliability.md quotes the last run).
//
//   - every write acknowledged to a client is present on every node;
//   - every due occurrence exists exactly once (by its idempotency key, which
//     is derived from the slot) and was delivered at least once to every
//     target; every due event was delivered to every subscribed endpoint;
//   - repeated sends (one webhook-id received more than once) are counted;
//     a run without faults has none;
//   - fencing: for each webhook-id, no call arrives with a lower fence after
//     one with a higher fence (no node acted after losing its lease);
//   - fires resumed within 5 s of each leader loss;
//   - every request carried valid signatures of both formats.

// maxFireGap is the promise: after a leader is lost, the next occurrence is
// created within this long.
const maxFireGap = 5 * time.Second

type faultRun struct {
	t    *testing.T
	name string
	c    *cluster
	rcv  *faultReceiver
	wl   *workload
	ctx  context.Context

	streamDone chan struct{}

	mu         sync.Mutex
	losses     []time.Time // a leader was killed, stopped or cut off
	outages    []time.Time // the whole cluster came back (restarted) at
	faults     []string
	allowDupes bool
	summary    func() string // the scenario's own figures, appended to its FAULT line
}

// newFaultRun starts a cluster of nodes processes with the extra flags, sets
// up the workload's recurring jobs to run for run from about 15 s from now,
// and starts the stream of one-shots and events (4 writes a second).
func newFaultRun(t *testing.T, name string, nodes int, run time.Duration, extra ...string) *faultRun {
	t.Helper()
	rcv := newFaultReceiver(t)
	c := startCluster(t, nodes, append([]string{"--allow-private-targets"}, extra...)...)
	return startFaultRun(t, name, c, rcv, run)
}

// startFaultRun is newFaultRun on a cluster already started (with
// --allow-private-targets) and the receiver its targets point at.
func startFaultRun(t *testing.T, name string, c *cluster, rcv *faultReceiver, run time.Duration) *faultRun {
	t.Helper()
	nodes := len(c.procs)
	ctx, cancel := context.WithTimeout(t.Context(), run+6*time.Minute)
	t.Cleanup(cancel)
	waitReady(ctx, t, 30*time.Second, c.procs...)
	waitLeader(ctx, t, 10*time.Second, c.procs, "")
	start := time.Now().Add(15 * time.Second).Truncate(time.Second)
	r := &faultRun{t: t, name: name, c: c, rcv: rcv, ctx: ctx, streamDone: make(chan struct{}), allowDupes: true}
	r.wl = newWorkload(t, c, rcv, start, start.Add(run))
	r.wl.setup(ctx)
	if time.Now().After(start) {
		t.Fatalf("setting up the workload took until %s, past its start %s", time.Now().Format(time.TimeOnly), start.Format(time.TimeOnly))
	}
	go func() {
		defer close(r.streamDone)
		r.wl.stream(ctx, 250*time.Millisecond, r.wl.end.Add(-8*time.Second))
	}()
	sleepCtx(ctx, time.Until(start))
	t.Logf("%s: %d nodes, workload from %s to %s", name, nodes, start.Format(time.TimeOnly), r.wl.end.Format(time.TimeOnly))
	return r
}

// at sleeps until offset d into the run.
func (r *faultRun) at(d time.Duration) { sleepCtx(r.ctx, time.Until(r.wl.start.Add(d))) }

func (r *faultRun) note(format string, args ...any) {
	s := fmt.Sprintf("+%s ", time.Since(r.wl.start).Round(100*time.Millisecond)) + fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.faults = append(r.faults, s)
	r.mu.Unlock()
	r.t.Log(s)
}

func (r *faultRun) leaderLost(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.losses = append(r.losses, at)
}

func (r *faultRun) clusterBack(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outages = append(r.outages, at)
}

func (r *faultRun) live() []*proc {
	var out []*proc
	for _, p := range r.c.procs {
		if p.live.Load() {
			out = append(out, p)
		}
	}
	return out
}

// leader waits for the live nodes to agree on a leader.
func (r *faultRun) leader() *proc {
	id, _ := waitLeader(r.ctx, r.t, 20*time.Second, r.live(), "")
	return r.c.byID(id)
}

// killLeader SIGKILLs the current leader and waits for a new one.
func (r *faultRun) killLeader() *proc {
	l := r.leader()
	l.Kill()
	now := time.Now()
	r.leaderLost(now)
	nl, took := waitLeader(r.ctx, r.t, 20*time.Second, r.live(), l.id)
	r.note("SIGKILL leader %s; %s leads after %s", l.id, nl, took.Round(time.Millisecond))
	return l
}

func (r *faultRun) restart(p *proc) {
	p.Restart()
	took := waitReady(r.ctx, r.t, 30*time.Second, p)
	r.note("restarted %s, ready after %s", p.id, took.Round(time.Millisecond))
}

// deliveringFollower is the follower that sent the most calls in the last 3 s.
func (r *faultRun) deliveringFollower() *proc {
	l := r.leader()
	since := time.Now().Add(-3 * time.Second)
	counts := map[string]int{}
	r.rcv.mu.Lock()
	for _, rs := range r.rcv.byID {
		for _, x := range rs {
			if x.at.After(since) && x.node != l.id {
				counts[x.node]++
			}
		}
	}
	r.rcv.mu.Unlock()
	best := r.c.others(l.id)[0]
	for _, p := range r.c.others(l.id) {
		if counts[p.id] > counts[best.id] {
			best = p
		}
	}
	return best
}

// finish waits for the workload to end, for every node to be ready, and
// checks the invariants.
func (r *faultRun) finish() {
	t := r.t
	t.Helper()
	r.at(r.wl.end.Sub(r.wl.start))
	<-r.streamDone
	// A write retried until late (a key held by a node cut off mid-request)
	// may be acknowledged after the end and fall due after it: give the last
	// one time to fire before counting occurrences.
	sleepCtx(r.ctx, time.Until(r.wl.lastDue().Add(3*time.Second)))
	waitReady(r.ctx, t, 60*time.Second, r.c.procs...)
	r.check()
}

func (r *faultRun) check() {
	t := r.t
	t.Helper()
	ctx := r.ctx
	jobs, events := r.wl.acked()
	leader := r.leader()

	// 1. Every acknowledged write is on every node.
	for _, p := range r.c.procs {
		waitFor(ctx, t, 60*time.Second, "every acknowledged write on "+p.id, func(ctx context.Context) (bool, string) {
			have, err := listAll[struct {
				ID string `json:"id"`
			}](ctx, p, "/v1/jobs")
			if err != nil {
				return false, err.Error()
			}
			ids := map[string]bool{}
			for _, j := range have {
				ids[j.ID] = true
			}
			var missing []string
			for _, j := range jobs {
				if !ids[j.id] {
					missing = append(missing, "job "+j.id)
				}
			}
			for _, e := range events {
				if len(missing) > 20 {
					break
				}
				code, _, err := p.do(ctx, http.MethodGet, "/v1/events/"+e.id, nil, nil)
				if err != nil || code != http.StatusOK {
					missing = append(missing, fmt.Sprintf("event %s (%d %v)", e.id, code, err))
				}
			}
			return len(missing) == 0, fmt.Sprintf("%d missing: %s", len(missing), strings.Join(missing[:min(len(missing), 10)], ", "))
		})
	}

	// 2. Occurrences: exactly one per due slot, and no other.
	var want []string // receiver keys that must arrive
	occurrences, firedAt := 0, []time.Time{}
	var problems []string
	for _, j := range jobs {
		occs, err := listAll[occurrenceJSON](ctx, leader, "/v1/jobs/"+j.id+"/occurrences")
		if err != nil {
			t.Fatalf("occurrences of %s: %v", j.id, err)
		}
		byKey := map[string]int{}
		bySlot := map[time.Time]int{}
		for _, o := range occs {
			byKey[o.IdempotencyKey]++
			if !o.Manual {
				bySlot[o.ScheduledFor.UTC()]++
			}
			firedAt = append(firedAt, o.FiredAt)
			want = append(want, pathCallback+" "+o.IdempotencyKey)
			for _, path := range subscribers(j.eventType) {
				want = append(want, path+" "+o.IdempotencyKey)
			}
		}
		occurrences += len(occs)
		for k, n := range byKey {
			if n > 1 {
				problems = append(problems, fmt.Sprintf("job %s: %d occurrences with key %s", j.id, n, k))
			}
		}
		expected := 1
		if j.recurring {
			fires, err := r.wl.expectedFires(ctx, leader, j)
			if err != nil {
				t.Fatal(err)
			}
			expected = len(fires)
			for _, f := range fires {
				if bySlot[f.UTC()] == 0 {
					problems = append(problems, fmt.Sprintf("job %s (%v): no occurrence for the slot %s", j.id, j.spec, f.Format(time.RFC3339)))
				}
				delete(bySlot, f.UTC())
			}
			for s := range bySlot {
				problems = append(problems, fmt.Sprintf("job %s (%v): an occurrence for %s, which is not a slot", j.id, j.spec, s.Format(time.RFC3339)))
			}
		}
		if len(occs) != expected {
			_, state, _ := leader.do(ctx, http.MethodGet, "/v1/jobs/"+j.id, nil, nil)
			problems = append(problems, fmt.Sprintf("job %s: %d occurrences, want %d; the job: %s", j.id, len(occs), expected, state))
		}
	}
	for _, e := range events {
		for _, path := range subscribers(e.typ) {
			want = append(want, path+" "+e.id)
		}
	}
	if len(problems) > 0 {
		t.Errorf("%d occurrence problems:\n%s", len(problems), strings.Join(problems[:min(len(problems), 30)], "\n"))
	}

	// 3. Everything due was delivered (retries may still be under way).
	var missing []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		missing = missing[:0]
		for _, k := range want {
			if !r.rcv.has(k) {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d deliveries never arrived, e.g. %s", len(missing), len(want), strings.Join(missing[:min(len(missing), 10)], ", "))
	}

	// The cluster's own record agrees: nothing still waits and nothing was
	// dead-lettered (the receiver accepted every call).
	var unsettled string
	settle := time.Now().Add(60 * time.Second)
	for ctx.Err() == nil {
		unsettled = ""
		for _, status := range []string{"pending", "in_flight", "retry_scheduled", "held", "dead_letter"} {
			ds, err := listAll[struct {
				ID string `json:"id"`
			}](ctx, leader, "/v1/deliveries?status="+status)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) > 0 {
				unsettled += fmt.Sprintf(" %d %s (e.g. %s)", len(ds), status, ds[0].ID)
			}
		}
		if unsettled == "" || time.Now().After(settle) {
			break
		}
		sleepCtx(ctx, time.Second)
	}
	if unsettled != "" {
		t.Errorf("deliveries not settled as succeeded:%s", unsettled)
	}

	// 4. Fires resumed after every leader loss.
	slices.SortFunc(firedAt, func(a, b time.Time) int { return a.Compare(b) })
	r.mu.Lock()
	losses, outages, faults := slices.Clone(r.losses), slices.Clone(r.outages), slices.Clone(r.faults)
	r.mu.Unlock()
	resume := func(after time.Time) time.Duration {
		i, _ := slices.BinarySearchFunc(firedAt, after, func(a, b time.Time) int { return a.Compare(b) })
		for ; i < len(firedAt); i++ {
			if firedAt[i].After(after) {
				return firedAt[i].Sub(after)
			}
		}
		return -1
	}
	var gaps, recoveries []string
	var maxGap time.Duration
	for _, l := range losses {
		g := resume(l)
		gaps = append(gaps, g.Round(10*time.Millisecond).String())
		maxGap = max(maxGap, g)
		if g < 0 || g > maxFireGap {
			t.Errorf("fires resumed %s after the leader loss at %s, want within %s", g, l.Format("15:04:05.000"), maxFireGap)
		}
	}
	for _, o := range outages {
		g := resume(o)
		recoveries = append(recoveries, g.Round(10*time.Millisecond).String())
		if g < 0 || g > 30*time.Second {
			t.Errorf("fires resumed %s after the cluster restarted at %s, want within 30s", g, o.Format("15:04:05.000"))
		}
	}

	// 5. Repeated sends, fencing, signatures.
	f := r.rcv.figures()
	if len(f.fenceViolations) > 0 {
		t.Errorf("%d calls arrived after a call with a higher fence (a node acted after losing its lease):\n%s",
			len(f.fenceViolations), strings.Join(f.fenceViolations[:min(len(f.fenceViolations), 10)], "\n"))
	}
	if len(f.badSig) > 0 {
		t.Errorf("%d requests without valid signatures, e.g. %s", len(f.badSig), strings.Join(f.badSig[:min(len(f.badSig), 5)], ", "))
	}
	if !r.allowDupes && f.duplicates > 0 {
		t.Errorf("%d repeated sends in a run without faults", f.duplicates)
	}
	r.wl.mu.Lock()
	retried, lost, answerLost, errs := r.wl.retried, len(r.wl.lost), r.wl.answerLost, fmt.Sprint(r.wl.errs)
	r.wl.mu.Unlock()
	var nodes []string
	for _, n := range sortedKeys(f.byNode) {
		nodes = append(nodes, fmt.Sprintf("%s=%d", n, f.byNode[n]))
	}
	t.Logf("FAULT %s: acked writes %d jobs + %d events (%d needed a retry, %d never acknowledged, %d applied with the answer lost; failed tries %s); "+
		"occurrences %d, problems %d; deliveries due %d, missing %d; requests %d for %d webhook-ids, repeated sends %d; "+
		"fence violations %d; bad signatures %d; fire gap after leader loss max %s (each %v); after cluster restart %v; calls by node %s%s",
		r.name, len(jobs), len(events), retried, lost, answerLost, errs, occurrences, len(problems), len(want), len(missing),
		f.requests, f.ids, f.duplicates, len(f.fenceViolations), len(f.badSig), maxGap.Round(10*time.Millisecond), gaps, recoveries,
		strings.Join(nodes, " "), r.extra())
	t.Logf("FAULT %s faults: %s", r.name, strings.Join(faults, "; "))
}

func (r *faultRun) extra() string {
	if r.summary == nil {
		return ""
	}
	return "; " + r.summary()
}

// ---- the scenarios ---------------------------------------------------------

// TestFaultBaseline: the workload with no faults; nothing may be sent twice.
func TestFaultBaseline(t *testing.T) {
	r := newFaultRun(t, "baseline", 3, envDuration("CHIME_FAULT_BASELINE_RUN", 40*time.Second))
	r.allowDupes = false
	r.finish()
}

// TestFaultKillLeader is scenario 1: SIGKILL the leader every 20 s, under
// load, for 3 minutes; each killed node comes back 5 s later.
func TestFaultKillLeader(t *testing.T) {
	run := envDuration("CHIME_FAULT_RUN", 3*time.Minute)
	r := newFaultRun(t, "kill-leader", 3, run)
	for k := 1; time.Duration(k)*20*time.Second < run-10*time.Second; k++ {
		r.at(time.Duration(k) * 20 * time.Second)
		old := r.killLeader()
		sleepCtx(r.ctx, 5*time.Second)
		r.restart(old)
	}
	r.finish()
	// Leadership moved round the cluster, and with it the work: every node
	// delivered a share.
	for _, p := range r.c.procs {
		if r.rcv.figures().byNode[p.id] == 0 {
			t.Errorf("%s delivered nothing", p.id)
		}
	}
}

// TestFaultDeliveringFollower is scenario 2: SIGKILL the follower that is
// delivering, bring it back; then SIGSTOP the delivering follower for longer
// than a lease and SIGCONT it: its deliveries move to another node, and the
// fence check shows it sends nothing it no longer holds.
func TestFaultDeliveringFollower(t *testing.T) {
	r := newFaultRun(t, "delivering-follower", 3, 110*time.Second)
	r.at(15 * time.Second)
	f := r.deliveringFollower()
	f.Kill()
	r.note("SIGKILL delivering follower %s", f.id)
	sleepCtx(r.ctx, 10*time.Second)
	r.restart(f)

	r.at(45 * time.Second)
	f = r.deliveringFollower()
	cmd, _ := f.current()
	stop := 3*time.Second + 30*time.Second + 7*time.Second // target timeout + lease grace + margin
	f.note("SIGSTOP")
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	r.note("SIGSTOP delivering follower %s for %s", f.id, stop)
	sleepCtx(r.ctx, stop)
	f.note("SIGCONT")
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	r.note("SIGCONT %s", f.id)
	r.finish()
}

// TestFaultRestarts is scenario 4: every node SIGKILLed and restarted at
// once; every node SIGTERMed at once and restarted; then a rolling restart,
// one node at a time, each back and a voter before the next goes.
func TestFaultRestarts(t *testing.T) {
	r := newFaultRun(t, "restarts", 3, 130*time.Second)
	r.at(15 * time.Second)
	for _, p := range r.c.procs {
		p.Kill()
	}
	r.note("SIGKILL all")
	restartAll(r.c)
	r.clusterBack(time.Now())
	took := waitReady(r.ctx, t, 30*time.Second, r.c.procs...)
	r.note("all restarted, ready after %s", took.Round(time.Millisecond))

	r.at(45 * time.Second)
	for _, p := range r.c.procs {
		p.TermAsync()
	}
	for _, p := range r.c.procs {
		if code := p.WaitExit(30 * time.Second); code != 0 {
			t.Errorf("%s: exit code %d after SIGTERM", p.id, code)
		}
	}
	r.note("SIGTERM all")
	restartAll(r.c)
	r.clusterBack(time.Now())
	took = waitReady(r.ctx, t, 30*time.Second, r.c.procs...)
	r.note("all restarted, ready after %s", took.Round(time.Millisecond))
	waitVoters(r.ctx, t, 30*time.Second, r.leader(), "n1", "n2", "n3")

	r.at(75 * time.Second)
	for _, p := range r.c.procs {
		wasLeader := r.leader() == p
		code, took := p.Term()
		if wasLeader {
			r.leaderLost(time.Now().Add(-took))
		}
		r.note("SIGTERM %s (leader: %v): exit %d after %s", p.id, wasLeader, code, took.Round(time.Millisecond))
		r.restart(p)
		waitVoters(r.ctx, t, 30*time.Second, r.leader(), "n1", "n2", "n3")
	}
	r.finish()
}

// TestFaultWipedNode is scenario 6: a follower is killed, its data dir
// deleted, and it is restarted with the same id; the leader has compacted
// its log, so the node catches up from a snapshot.
func TestFaultWipedNode(t *testing.T) {
	r := newFaultRun(t, "wiped-node", 3, 60*time.Second,
		"--raft-snapshot-threshold", "200", "--raft-snapshot-interval", "2s", "--raft-trailing-logs", "50")
	r.at(20 * time.Second)
	f := r.c.others(r.leader().id)[0]
	f.Kill()
	if err := os.RemoveAll(f.dataDir); err != nil {
		t.Fatal(err)
	}
	r.note("SIGKILL %s and delete %s", f.id, filepath.Base(f.dataDir))
	sleepCtx(r.ctx, 5*time.Second)
	r.restart(f)
	r.finish()
	if log := tail(f.logPath, 100000); !strings.Contains(strings.ToLower(log), "installed remote snapshot") {
		t.Errorf("%s caught up without installing a snapshot", f.id)
	}
}
