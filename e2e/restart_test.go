package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestFullClusterRestart(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Second)
	defer cancel()

	waitReady(ctx, t, 30*time.Second, c.procs...)
	waitLeader(ctx, t, 10*time.Second, c.procs, "")
	var names []string
	for i := range 50 {
		name := fmt.Sprintf("restart-%02d", i)
		mustCreate(ctx, t, name, c.procs[i%len(c.procs)])
		names = append(names, name)
	}

	// Crash: every node SIGKILLed, then all started again at once.
	for _, p := range c.procs {
		p.Kill()
	}
	restartAll(c)
	back := waitReady(ctx, t, 30*time.Second, c.procs...)
	leader, _ := waitLeader(ctx, t, 10*time.Second, c.procs, "")
	t.Logf("after SIGKILL of all 3: ready again %s after the restart, leader %s", back.Round(time.Millisecond), leader)
	for _, p := range c.procs {
		waitHasAll(ctx, t, 10*time.Second, p, names)
	}

	// Graceful: SIGTERM one after another; each stopped node is removed
	// from the voters before the next stops, as in a rolling stop.
	for i, p := range c.procs {
		code, took := p.Term()
		t.Logf("SIGTERM %s: exit code %d after %s", p.id, code, took.Round(time.Millisecond))
		if code != 0 {
			t.Errorf("%s exited with %d after SIGTERM, want 0", p.id, code)
		}
		rest := c.procs[i+1:]
		if len(rest) == 0 {
			break
		}
		nl, _ := waitLeader(ctx, t, 10*time.Second, rest, "")
		waitFor(ctx, t, 10*time.Second, fmt.Sprintf("%s removed from the voters", p.id), func(ctx context.Context) (bool, string) {
			st, err := c.byID(nl).status(ctx)
			if err != nil {
				return false, err.Error()
			}
			if n, ok := st.node(p.id); ok && n.Raft != "none" {
				return false, st.nodesString()
			}
			return true, ""
		})
	}
	restartAll(c)
	back = waitReady(ctx, t, 30*time.Second, c.procs...)
	leader, _ = waitLeader(ctx, t, 10*time.Second, c.procs, "")
	voters := waitVoters(ctx, t, 20*time.Second, c.byID(leader), "n1", "n2", "n3")
	t.Logf("after SIGTERM of all 3: ready again %s after the restart, leader %s, 3 voters after %s", back.Round(time.Millisecond), leader, (back + voters).Round(time.Millisecond))
	for _, p := range c.procs {
		waitHasAll(ctx, t, 10*time.Second, p, names)
	}
	mustCreate(ctx, t, "after-restarts", c.procs...)
	for _, p := range c.procs {
		waitHasAll(ctx, t, 5*time.Second, p, []string{"after-restarts"})
	}
}

// restartAll starts every node of c again at (nearly) the same time.
func restartAll(c *cluster) {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		wg.Go(p.Restart)
	}
	wg.Wait()
}
