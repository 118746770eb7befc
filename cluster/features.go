package cluster

import "github.com/hashicorp/raft"

// Feature levels. A node gossips the highest level its build supports
// (nodeMeta.Level); a feature that changes what Apply decides, so that an
// older replica would apply differently, is switched on through the log only
// once every server in the Raft configuration is at its level: until then
// all replicas apply alike, whatever their versions.
const (
	// LevelQuotas: Apply enforces per-project quotas when the cluster-wide
	// limits row exists (fsm/quota.go). Older builds skip the quota tables.
	LevelQuotas = 1

	// FeatureLevel is this build's level.
	FeatureLevel = LevelQuotas
)

// AllServersAtLeast reports whether every server (voter or not) in the Raft
// configuration is known, through gossip, to run at feature level level or
// higher. A server this node has never heard of since it started, or that
// left, does not count as upgraded; a dead one counts with the level it last
// gossiped (restarting it on an older build is a downgrade, see
// docs/operations.md). With no configuration it reports false.
func (c *Cluster) AllServersAtLeast(level int) bool {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	return serversAtLeast(f.Configuration().Servers, c.members.snapshot(), c.cfg.NodeID, FeatureLevel, level)
}

// serversAtLeast is AllServersAtLeast's rule: self runs at selfLevel; every
// other server must be a member whose gossiped level is at least level.
func serversAtLeast(servers []raft.Server, members []Member, self string, selfLevel, level int) bool {
	if len(servers) == 0 {
		return false
	}
	known := make(map[string]Member, len(members))
	for _, m := range members {
		known[m.ID] = m
	}
	for _, s := range servers {
		id := string(s.ID)
		if id == self {
			if selfLevel < level {
				return false
			}
			continue
		}
		m, ok := known[id]
		if !ok || m.State == GossipLeft || m.State == GossipUnknown || m.Level < level {
			return false
		}
	}
	return true
}
