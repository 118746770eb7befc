package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// ackLog records which creates were acknowledged, by which node and when.
type ackLog struct {
	mu        sync.Mutex
	acked     map[string]ack
	via409    int            // acknowledged by a 409 on a retry
	failures  map[string]int // failed attempts by kind ("503 no_leader", "no response", ...)
	anomalies []string
}

type ack struct {
	node string
	at   time.Time
}

func newAckLog() *ackLog { return &ackLog{acked: map[string]ack{}, failures: map[string]int{}} }

func (a *ackLog) ack(name, node string, retry409 bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acked[name] = ack{node: node, at: time.Now()}
	if retry409 {
		a.via409++
	}
}

func (a *ackLog) fail(kind string) {
	a.mu.Lock()
	a.failures[kind]++
	a.mu.Unlock()
}

func (a *ackLog) anomaly(s string) {
	a.mu.Lock()
	a.anomalies = append(a.anomalies, s)
	a.mu.Unlock()
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

func (a *ackLog) names() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.acked))
	for n := range a.acked {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// byNodeSince counts acknowledgements after t, by node.
func (a *ackLog) byNodeSince(t time.Time) map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for _, k := range a.acked {
		if k.at.After(t) {
			out[k.node]++
		}
	}
	return out
}

// longestGap is the longest time without an acknowledgement from `from` to `to`.
func (a *ackLog) longestGap(from, to time.Time) time.Duration {
	a.mu.Lock()
	var ts []time.Time
	for _, k := range a.acked {
		if !k.at.Before(from) && !k.at.After(to) {
			ts = append(ts, k.at)
		}
	}
	a.mu.Unlock()
	slices.SortFunc(ts, func(x, y time.Time) int { return x.Compare(y) })
	prev, gap := from, time.Duration(0)
	for _, t := range ts {
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return max(gap, to.Sub(prev))
}

// writer creates uniquely named projects through random live nodes until ctx
// ends. A name whose outcome is unknown is retried a few times; a 409 on
// such a retry means an earlier attempt was applied. Names are unique, so a
// 409 on a first attempt is an anomaly.
func writer(ctx context.Context, c *cluster, w int, log *ackLog) {
	for seq := 0; ctx.Err() == nil; seq++ {
		name := fmt.Sprintf("kl-w%d-%06d", w, seq)
		uncertain := false
	attempts:
		for attempt := 0; attempt < 6 && ctx.Err() == nil; attempt++ {
			p := c.randomLive()
			if p == nil {
				sleepCtx(ctx, 50*time.Millisecond)
				continue
			}
			code, body, err := p.do(ctx, http.MethodPost, "/v1/projects", map[string]string{"name": name}, nil)
			switch {
			case err == nil && code == http.StatusCreated:
				log.ack(name, p.id, false)
				break attempts
			case err == nil && code == http.StatusConflict && uncertain:
				log.ack(name, p.id, true)
				break attempts
			case err == nil && code == http.StatusConflict:
				log.anomaly(fmt.Sprintf("%s: 409 on the first attempt via %s", name, p.id))
				break attempts
			}
			uncertain = true
			if ctx.Err() == nil {
				log.fail(failureKind(code, body, err))
			}
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
}

// failureKind names a failed attempt: "no response", or the status and the
// error code of the body ("503 no_leader").
func failureKind(code int, body []byte, err error) string {
	if code == 0 {
		return "no response"
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	kind := fmt.Sprintf("%d %s", code, e.Error.Code)
	if err != nil {
		kind += " (unreadable body)"
	}
	return kind
}

func TestKillLeaderUnderWrites(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Second)
	defer cancel()

	formed := waitReady(ctx, t, 30*time.Second, c.procs...)
	leader, _ := waitLeader(ctx, t, 10*time.Second, c.procs, "")
	t.Logf("cluster formed and ready in %s; leader %s", formed.Round(time.Millisecond), leader)

	log := newAckLog()
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopWriters(); wg.Wait() }()
	for w := range 3 {
		wg.Go(func() { writer(wctx, c, w, log) })
	}

	sleepCtx(ctx, 2*time.Second)
	if log.count() == 0 {
		t.Fatalf("no write acknowledged in 2s before the fault")
	}
	victim := c.byID(leader)
	survivors := c.others(leader)
	acksBefore := log.count()
	killAt := time.Now()
	victim.Kill()
	newLeader, failover := waitLeader(ctx, t, 10*time.Second, survivors, leader)
	t.Logf("SIGKILLed leader %s after %d acks; survivors agreed on %s after %s", leader, acksBefore, newLeader, failover.Round(time.Millisecond))

	// Writes keep being acknowledged by the survivors.
	base := log.count()
	waitFor(ctx, t, 10*time.Second, "20 more acknowledged writes on the survivors", func(context.Context) (bool, string) {
		n := log.count() - base
		return n >= 20, fmt.Sprintf("%d acks", n)
	})
	sleepCtx(ctx, time.Second)
	byNode := log.byNodeSince(killAt)
	t.Logf("acks after the kill, by node: %v", byNode)
	for _, p := range survivors {
		if byNode[p.id] == 0 {
			t.Errorf("no write acknowledged through survivor %s after the kill", p.id)
		}
	}

	restartAt := time.Now()
	victim.Restart()
	wantBeforeRestart := log.names()
	readyIn := waitReady(ctx, t, 30*time.Second, victim)
	waitHasAll(ctx, t, 15*time.Second, victim, wantBeforeRestart)
	t.Logf("restarted %s: ready after %s, holds all %d projects acknowledged before its restart after %s",
		victim.id, readyIn.Round(time.Millisecond), len(wantBeforeRestart), time.Since(restartAt).Round(time.Millisecond))
	sleepCtx(ctx, 500*time.Millisecond) // the writers use it too for a while

	stopWriters()
	wg.Wait()
	stopAt := time.Now()
	waitReady(ctx, t, 20*time.Second, c.procs...)

	log.mu.Lock()
	failures, via409, anomalies := maps.Clone(log.failures), log.via409, slices.Clone(log.anomalies)
	log.mu.Unlock()
	for _, a := range anomalies {
		t.Errorf("anomaly: %s", a)
	}
	if n := failures["401 unauthorized"]; n > 0 {
		// A node that has not caught up cannot know the token yet: 503.
		t.Errorf("%d writes answered 401 during the failover (want 503 not_ready)", n)
	}
	if n := failures["500 internal"]; n > 0 {
		// A follower forwarding to a dead leader must answer 503 with
		// Retry-After (cluster.ErrLeaderUnreachable), never 500.
		t.Errorf("%d writes answered 500 during the failover (want 503 with Retry-After)", n)
	}
	want := log.names()
	var checks []string
	for _, p := range c.procs {
		d := waitHasAll(ctx, t, 10*time.Second, p, want)
		checks = append(checks, fmt.Sprintf("%s %s", p.id, d.Round(time.Millisecond)))
	}
	waitSameProjects(ctx, t, 5*time.Second, c.procs)
	waitVoters(ctx, t, 10*time.Second, c.byID(newLeader), "n1", "n2", "n3")
	t.Logf("writes: %d acknowledged (%d of them by a 409 on a retry), failed attempts by kind %v; failover %s; longest time without an ack after the kill %s",
		len(want), via409, failures, failover.Round(time.Millisecond), log.longestGap(killAt, restartAt).Round(time.Millisecond))
	t.Logf("every node holds every acknowledged project and the same set (time to verify, from %s after stopping the writers: %s)",
		time.Since(stopAt).Round(time.Millisecond), strings.Join(checks, ", "))
}

func TestGracefulLeaderStop(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	waitReady(ctx, t, 30*time.Second, c.procs...)
	leader, _ := waitLeader(ctx, t, 10*time.Second, c.procs, "")
	mustCreate(ctx, t, "before-stop", c.procs...)

	victim := c.byID(leader)
	survivors := c.others(leader)
	stopAt := time.Now()
	victim.TermAsync()
	newLeader, failover := waitLeader(ctx, t, 5*time.Second, survivors, leader)
	code := victim.WaitExit(15 * time.Second)
	exitIn := time.Since(stopAt)
	t.Logf("SIGTERM to leader %s: survivors agreed on %s after %s; process exited with %d after %s",
		leader, newLeader, failover.Round(time.Millisecond), code, exitIn.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("%s exited with code %d after SIGTERM, want 0", victim.id, code)
	}
	if exitIn > 10*time.Second {
		t.Errorf("%s took %s to exit after SIGTERM", victim.id, exitIn)
	}

	nl := c.byID(newLeader)
	waitFor(ctx, t, 10*time.Second, fmt.Sprintf("%s to show %s as left and removed", nl.id, victim.id), func(ctx context.Context) (bool, string) {
		st, err := nl.status(ctx)
		if err != nil {
			return false, err.Error()
		}
		n, ok := st.node(victim.id)
		if !ok {
			return false, fmt.Sprintf("%s not listed: %s", victim.id, st.nodesString())
		}
		if n.Gossip != "left" || n.Raft != "none" {
			return false, fmt.Sprintf("%s gossip=%s raft=%s", victim.id, n.Gossip, n.Raft)
		}
		return true, ""
	})
	t.Logf("%s shows %s gossip=left raft=none %s after SIGTERM", nl.id, victim.id, time.Since(stopAt).Round(time.Millisecond))

	var away []string
	for i := range 10 {
		name := fmt.Sprintf("while-away-%02d", i)
		mustCreate(ctx, t, name, survivors...)
		away = append(away, name)
	}

	restartAt := time.Now()
	victim.Restart()
	waitReady(ctx, t, 30*time.Second, victim)
	waitVoters(ctx, t, 15*time.Second, nl, "n1", "n2", "n3")
	revoted := time.Since(restartAt)
	waitHasAll(ctx, t, 10*time.Second, victim, append(away, "before-stop"))
	t.Logf("restarted %s: a voter again after %s; holds the %d projects written while it was away", victim.id, revoted.Round(time.Millisecond), len(away))
	mustCreate(ctx, t, "after-return", victim)
	for _, p := range c.procs {
		waitHasAll(ctx, t, 5*time.Second, p, []string{"after-return"})
	}
}
