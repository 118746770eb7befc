package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// errBadSnapshot marks an uploaded snapshot that cannot be restored; nothing
// was changed.
var errBadSnapshot = errors.New("invalid snapshot")

// ErrBadSnapshot is returned by Restore for an upload that is not a valid
// Chime snapshot.
var ErrBadSnapshot = errBadSnapshot

// onLeader runs local on the leader, or sends the request to it.
func (c *Cluster) onLeader(ctx context.Context, local func(context.Context) error, path string, arg any) error {
	if c.raft.State() == raft.Leader {
		return local(ctx)
	}
	b, err := msgpack.Marshal(arg)
	if err != nil {
		return err
	}
	return c.forward(ctx, path, bytes.NewReader(b), nil)
}

// TransferLeadership asks the leader to hand over leadership, to the node
// `to` when given, else to the most up-to-date voter.
// It returns once this node knows the new leader (at most 5 s after the
// transfer), so the status a caller reads next names it.
func (c *Cluster) TransferLeadership(ctx context.Context, to string) error {
	if err := c.onLeader(ctx, func(ctx context.Context) error { return c.transferLocal(ctx, to) }, pathTransfer, to); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		if _, id := c.raft.LeaderWithID(); id != "" {
			return nil
		}
		select {
		case <-wctx.Done():
			return nil // the transfer itself succeeded; the status says "none" for now
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) transferLocal(ctx context.Context, to string) error {
	if c.raft.State() != raft.Leader {
		return ErrNoLeader
	}
	var f raft.Future
	if to == "" {
		if c.otherVoters() == 0 {
			return fsm.ErrorFromCode(fsm.CodeConflict, "no other voter to transfer leadership to", "")
		}
		f = c.raft.LeadershipTransfer()
	} else {
		srv, ok := c.server(to)
		if !ok {
			return fsm.ErrorFromCode(fsm.CodeNotFound, fmt.Sprintf("no voter %q in the cluster", to), "to")
		}
		if string(srv.ID) == c.cfg.NodeID {
			return fsm.ErrorFromCode(fsm.CodeConflict, fmt.Sprintf("%q already leads", to), "to")
		}
		f = c.raft.LeadershipTransferToServer(srv.ID, srv.Address)
	}
	if err := c.waitFuture(ctx, f); err != nil {
		return fmt.Errorf("leadership transfer: %w", err)
	}
	return nil
}

func (c *Cluster) server(id string) (raft.Server, bool) {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return raft.Server{}, false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s, true
		}
	}
	return raft.Server{}, false
}

// RemovePeer removes a server that is gone for good from the Raft
// configuration. A live member is refused: the leader would add it right
// back, and removing voters that still run is how split brains start.
func (c *Cluster) RemovePeer(ctx context.Context, id string) error {
	return c.onLeader(ctx, func(ctx context.Context) error { return c.removeLocal(ctx, id) }, pathRemove, id)
}

func (c *Cluster) removeLocal(ctx context.Context, id string) error {
	if c.raft.State() != raft.Leader {
		return ErrNoLeader
	}
	if id == c.cfg.NodeID {
		return fsm.ErrorFromCode(fsm.CodeConflict, "cannot remove the leader: transfer leadership first", "")
	}
	_, inConfig := c.server(id)
	m, known := c.members.member(id)
	if !inConfig && !known {
		return fsm.ErrorFromCode(fsm.CodeNotFound, fmt.Sprintf("no peer %q", id), "")
	}
	if known && (m.State == GossipAlive || m.State == GossipSuspect) {
		return fsm.ErrorFromCode(fsm.CodeConflict, fmt.Sprintf("peer %q is %s; stop it first, or it will be added back", id, m.State), "")
	}
	if inConfig {
		if err := c.waitFuture(ctx, c.raft.RemoveServer(raft.ServerID(id), 0, remaining(ctx, c.cfg.ApplyTimeout))); err != nil {
			return raftErr(err)
		}
	}
	c.members.forget(id)
	c.logger.Info("removed peer", "peer_id", id)
	return nil
}
