//go:build chime_next

// Built only with -tags chime_next, for the rolling-upgrade test
// (e2e/upgrade_test.go): see fsm/next.go.

package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
)

// nextHeartbeatEvery is how often the leader applies a CmdNextHeartbeat.
const nextHeartbeatEvery = 2 * time.Second

// nextHooks adds the heartbeat sender to the leader hooks.
func nextHooks(c *cluster.Cluster, nodeID string, logger *slog.Logger) []cluster.LeaderHook {
	return []cluster.LeaderHook{&nextHeartbeater{c: c, node: nodeID, logger: logger.With("component", "chime_next")}}
}

// nextHeartbeater applies a CmdNextHeartbeat every nextHeartbeatEvery while
// this node leads, and logs what the state holds after each.
type nextHeartbeater struct {
	c      *cluster.Cluster
	node   string
	logger *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func (h *nextHeartbeater) EstablishLeadership(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go h.run(ctx, h.done)
	return nil
}

func (h *nextHeartbeater) RevokeLeadership() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel, h.done = nil, nil
	h.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (h *nextHeartbeater) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(nextHeartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cmd, err := fsm.NextHeartbeatCommand(h.node, fsm.Millis(time.Now().UnixMilli()))
		if err != nil {
			h.logger.Error("next heartbeat", "error", err)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := h.c.Apply(actx, cmd)
		cancel()
		if err != nil {
			h.logger.Warn("next heartbeat not applied", "error", err)
			continue
		}
		hb := h.c.FSM().State().NextHeartbeats()
		h.logger.Info("next heartbeat applied", "raft_index", res.Index, "ignored", res.Ignored, "count", hb.Count)
	}
}
