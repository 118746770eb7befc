package cluster

import (
	"hash/fnv"
	"sort"

	"github.com/hashicorp/raft"
)

// Place picks the node that owns key among nodes by rendezvous (highest
// random weight) hashing: every node gets a score hash(node, key) and the
// highest wins. When a node disappears only the keys it owned move, and
// every caller with the same node list agrees without coordination.
// nodes must be non-empty; ties (practically impossible) go to the smaller id.
func Place(key string, nodes []string) string {
	best, bestScore := "", uint64(0)
	for _, n := range nodes {
		s := score(n, key)
		if best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}

// score mixes FNV-1a of node and key through a 64-bit finalizer: FNV alone
// has weak high bits for similar inputs, which would skew the shares.
func score(node, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb34fe63a9e53
	x ^= x >> 33
	return x
}

// DeliveryNodes returns the nodes that should run deliveries, sorted by id:
// the live followers (alive in gossip and in the Raft configuration), or
// only the leader when no follower is alive. The leader keeps itself out
// while it has help, so that its Raft and poller work is not slowed down by
// HTTP calls. Any node can ask (a follower places manual triggers and
// retries); with no known leader, every live member is eligible.
func (c *Cluster) DeliveryNodes() []string {
	_, leaderID := c.raft.LeaderWithID()
	leader := string(leaderID)
	inConfig := map[string]bool{}
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter || s.Suffrage == raft.Nonvoter {
				inConfig[string(s.ID)] = true
			}
		}
	}
	var out []string
	for _, m := range c.members.snapshot() {
		if m.ID == leader || !inConfig[m.ID] || m.State != GossipAlive {
			continue
		}
		out = append(out, m.ID)
	}
	if len(out) == 0 {
		if leader == "" {
			leader = c.cfg.NodeID
		}
		return []string{leader}
	}
	sort.Strings(out)
	return out
}

// Alive reports whether the node is alive in gossip (suspect counts as alive:
// memberlist has not given up on it yet).
func (c *Cluster) Alive(id string) bool {
	if id == c.cfg.NodeID {
		return true
	}
	m, ok := c.members.member(id)
	return ok && (m.State == GossipAlive || m.State == GossipSuspect)
}
