package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// monitorLeadership is the single goroutine that turns Raft's leadership
// notifications into one leaderLoop at a time.
func (c *Cluster) monitorLeadership() {
	var stop chan struct{}
	var done chan struct{}
	stopLoop := func() {
		if stop != nil {
			close(stop)
			<-done
			stop, done = nil, nil
		}
	}
	for {
		select {
		case isLeader := <-c.leaderNotify:
			if isLeader && stop == nil {
				stop, done = make(chan struct{}), make(chan struct{})
				go func(stop, done chan struct{}) {
					defer close(done)
					c.leaderLoop(stop)
				}(stop, done)
			} else if !isLeader {
				stopLoop()
			}
		case <-c.shutdownCh:
			stopLoop()
			return
		}
	}
}

// leaderLoop runs while this node leads: Barrier (so the local FSM holds every
// committed entry), then the hooks, then voter reconciliation on membership
// changes, until leadership is lost.
func (c *Cluster) leaderLoop(stop chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	c.logger.Info("gained leadership")
	established := 0 // how many hooks are established
	defer func() {
		for i := established - 1; i >= 0; i-- {
			c.hooks[i].RevokeLeadership()
		}
		c.logger.Info("leadership revoked")
	}()

	retry := time.NewTimer(0)
	defer retry.Stop()
	reconcile := time.NewTicker(c.cfg.ReconcileInterval)
	defer reconcile.Stop()
	barrierDone := false
	for {
		changed := c.members.watch()
		if !barrierDone {
			if err := c.waitFuture(ctx, c.raft.Barrier(c.cfg.ApplyTimeout)); err != nil {
				c.logger.Error("leader barrier failed", "error", err)
			} else {
				barrierDone = true
			}
		}
		if barrierDone {
			for established < len(c.hooks) {
				if err := c.hooks[established].EstablishLeadership(ctx); err != nil {
					c.logger.Error("establishing leadership failed; will retry", "hook", established, "error", err)
					break
				}
				established++
			}
			c.reconcileVoters(ctx)
		}
		wait := c.cfg.ReconcileInterval
		if !barrierDone || established < len(c.hooks) {
			wait = time.Second
		}
		retry.Reset(wait)
		select {
		case <-stop:
			return
		case <-changed:
		case <-reconcile.C:
		case <-retry.C:
		}
	}
}

// reconcileVoters makes the Raft configuration follow gossip: alive members
// become voters (or get their new address), members that left gracefully are
// removed, dead ones stay until an operator removes them, because removing a
// merely unreachable voter could let a minority form its own quorum later.
func (c *Cluster) reconcileVoters(ctx context.Context) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		c.logger.Warn("reading raft configuration", "error", err)
		return
	}
	servers := map[string]raft.Server{}
	for _, s := range f.Configuration().Servers {
		servers[string(s.ID)] = s
	}
	for _, m := range c.members.snapshot() {
		s, inConfig := servers[m.ID]
		switch m.State {
		case GossipAlive, GossipSuspect:
			if m.ID == c.cfg.NodeID || m.RaftAddr == "" {
				continue
			}
			if inConfig && string(s.Address) == m.RaftAddr && s.Suffrage == raft.Voter {
				continue
			}
			c.logger.Info("adding voter", "peer_id", m.ID, "raft_addr", m.RaftAddr)
			if err := c.waitFuture(ctx, c.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, c.cfg.ApplyTimeout)); err != nil {
				c.logger.Warn("adding voter failed", "peer_id", m.ID, "error", err)
			}
		case GossipLeft:
			if !inConfig || m.ID == c.cfg.NodeID {
				continue
			}
			c.logger.Info("removing voter that left", "peer_id", m.ID)
			if err := c.waitFuture(ctx, c.raft.RemoveServer(raft.ServerID(m.ID), 0, c.cfg.ApplyTimeout)); err != nil {
				c.logger.Warn("removing voter failed", "peer_id", m.ID, "error", err)
			}
		}
	}
}

// bootstrap forms a new cluster once BootstrapExpect fresh servers see each
// other. Every one of them computes the same configuration (all of them,
// sorted by id), which is what makes concurrent BootstrapCluster calls safe.
// A node that finds a member already holding Raft state never bootstraps: it
// waits for that cluster's leader to add it.
func (c *Cluster) bootstrap() {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	waitedLogged := false
	for {
		if c.members.selfMeta().Bootstrapped {
			return
		}
		if addr, _ := c.raft.LeaderWithID(); addr != "" {
			c.members.markBootstrapped()
			return
		}
		changed := c.members.watch()
		if c.cfg.BootstrapExpect > 0 && c.tryBootstrap() {
			c.members.markBootstrapped()
			return
		}
		if !waitedLogged {
			c.logger.Info("waiting for peers", "bootstrap_expect", c.cfg.BootstrapExpect, "join", c.cfg.Join)
			waitedLogged = true
		}
		select {
		case <-c.shutdownCh:
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

func (c *Cluster) tryBootstrap() bool {
	var servers []raft.Server
	for _, m := range c.members.snapshot() {
		if m.State != GossipAlive {
			continue
		}
		if m.Bootstrapped {
			// An existing cluster: we will be added as a voter by its leader.
			return false
		}
		if m.BootstrapExpect != 0 && m.BootstrapExpect != c.cfg.BootstrapExpect {
			c.logger.Error("peers disagree on --bootstrap-expect; not bootstrapping", "peer_id", m.ID, "theirs", m.BootstrapExpect, "ours", c.cfg.BootstrapExpect)
			return false
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.RaftAddr)})
	}
	if len(servers) < c.cfg.BootstrapExpect {
		return false
	}
	c.logger.Info("bootstrapping cluster", "servers", len(servers))
	err := c.waitFuture(context.Background(), c.raft.BootstrapCluster(raft.Configuration{Servers: servers}))
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		c.logger.Error("bootstrap failed", "error", err)
		return false
	}
	return true
}
