package cluster

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip states as shown by the status API.
const (
	GossipAlive   = "alive"
	GossipSuspect = "suspect"
	GossipDead    = "dead"
	GossipLeft    = "left"
	// GossipUnknown is a Raft server this node has not heard of through
	// gossip since it started (for example a peer that was down the whole time).
	GossipUnknown = "unknown"
)

// nodeMeta is what each node gossips about itself. Keys are short because
// memberlist caps metadata at 512 bytes.
type nodeMeta struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft"`
	HTTPAddr string `json:"http"`
	Version  string `json:"ver"`
	// Level is the node's feature level (FeatureLevel): what it enforces
	// in Apply. Nodes that predate it gossip none and read as 0.
	Level           int `json:"lvl,omitempty"`
	BootstrapExpect int `json:"exp,omitempty"`
	// Bootstrapped is set once the node has Raft state or has seen a leader;
	// a fresh node that sees it never bootstraps a second cluster.
	Bootstrapped bool `json:"b,omitempty"`
	// Leaving is gossiped just before a graceful leave. memberlist's
	// NotifyLeave cannot tell a leave from a death (it passes the Node whose
	// State field it never updates), so peers rely on this flag instead.
	Leaving bool `json:"l,omitempty"`
}

// Member is a node as seen through gossip.
type Member struct {
	nodeMeta
	State string
	addr  string // gossip address (as advertised)
}

// membership owns memberlist and the table of every node heard of, because
// memberlist itself forgets dead and left nodes in its Members() list.
type membership struct {
	ml     *memberlist.Memberlist
	logger *slog.Logger

	mu      sync.Mutex
	self    nodeMeta
	members map[string]*Member

	// changed is closed (and replaced) on every membership change, so any
	// number of goroutines can wait for the next one: the leader reconciles
	// Raft voters on it and the bootstrapper re-checks.
	changed chan struct{}
}

// gossipKey derives memberlist's AES-256 key from the operator's cluster key.
func gossipKey(clusterKey string) []byte {
	sum := sha256.Sum256([]byte("chime-gossip-v1:" + clusterKey))
	return sum[:]
}

type membershipConfig struct {
	Bind, Advertise string
	ClusterName     string
	ClusterKey      string
	Self            nodeMeta
	Logger          *slog.Logger
	// Tuning: tests shorten the failure detector.
	ProbeInterval, ProbeTimeout, GossipInterval time.Duration
	SuspicionMult                               int
}

func newMembership(cfg membershipConfig) (*membership, error) {
	m := &membership{
		logger:  cfg.Logger,
		self:    cfg.Self,
		members: map[string]*Member{},
		changed: make(chan struct{}),
	}
	host, portStr, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: bad port", cfg.Bind)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Self.ID
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port
	if cfg.Advertise != "" {
		ah, ap, err := net.SplitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("advertise gossip address %q: %w", cfg.Advertise, err)
		}
		mc.AdvertiseAddr = ah
		if mc.AdvertisePort, err = strconv.Atoi(ap); err != nil {
			return nil, fmt.Errorf("advertise gossip address %q: bad port", cfg.Advertise)
		}
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return nil, fmt.Errorf("gossip address %s binds every interface: set --advertise-gossip-addr", cfg.Bind)
	}
	mc.Label = "chime/" + cfg.ClusterName
	// cluster.New never gets here without a valid key (keys.go).
	mc.SecretKey = gossipKey(cfg.ClusterKey)
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.Delegate = &gossipDelegate{m: m}
	mc.Events = &gossipEvents{m: m}
	mc.Logger = newGossipLogger(cfg.Logger)
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	if cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = cfg.ProbeTimeout
	}
	if cfg.GossipInterval > 0 {
		mc.GossipInterval = cfg.GossipInterval
	}
	if cfg.SuspicionMult > 0 {
		mc.SuspicionMult = cfg.SuspicionMult
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	m.ml = ml
	return m, nil
}

func (m *membership) join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	return m.ml.Join(addrs)
}

func (m *membership) selfMeta() nodeMeta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.self
}

// markBootstrapped flips the Bootstrapped flag in our gossiped metadata once.
func (m *membership) markBootstrapped() {
	m.mu.Lock()
	if m.self.Bootstrapped {
		m.mu.Unlock()
		return
	}
	m.self.Bootstrapped = true
	m.mu.Unlock()
	// No need to wait long for the broadcast: the flag only has to reach a
	// fresh node before it decides to bootstrap, and regular gossip carries
	// it. The timeout matters: UpdateNode(0) waits for the broadcast without
	// end, and a node shut down meanwhile never sends it, which hung Kill.
	if err := m.ml.UpdateNode(time.Second); err != nil {
		m.logger.Debug("gossip metadata update not yet acknowledged", "error", err)
	}
}

func (m *membership) notify() {
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// watch returns a channel closed at the next membership change.
func (m *membership) watch() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

func (m *membership) record(n *memberlist.Node, state string) {
	var meta nodeMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil || meta.ID == "" {
		m.logger.Warn("ignoring gossip member without chime metadata", "member", n.Name, "addr", n.Address())
		return
	}
	m.mu.Lock()
	prev := m.members[meta.ID]
	m.members[meta.ID] = &Member{nodeMeta: meta, State: state, addr: n.Address()}
	m.mu.Unlock()
	if prev == nil || prev.State != state {
		m.logger.Info("member state", "peer_id", meta.ID, "state", state, "raft_addr", meta.RaftAddr, "http_addr", meta.HTTPAddr)
	}
	m.notify()
}

// snapshot returns every member heard of, sorted by id, with suspect states
// filled in from memberlist (which reports them only through Members()).
func (m *membership) snapshot() []Member {
	suspect := map[string]bool{}
	for _, n := range m.ml.Members() {
		if n.State == memberlist.StateSuspect {
			suspect[n.Name] = true
		}
	}
	m.mu.Lock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		c := *mem
		if c.State == GossipAlive && suspect[c.ID] {
			c.State = GossipSuspect
		}
		out = append(out, c)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// deadAddrs is the gossip address of every member declared dead (not left).
func (m *membership) deadAddrs() []string {
	var out []string
	for _, mem := range m.snapshot() {
		if mem.State == GossipDead && mem.ID != m.selfMeta().ID && mem.addr != "" {
			out = append(out, mem.addr)
		}
	}
	return out
}

func (m *membership) member(id string) (Member, bool) {
	for _, mem := range m.snapshot() {
		if mem.ID == id {
			return mem, true
		}
	}
	return Member{}, false
}

// forget drops a removed node from the table so status stops showing it.
func (m *membership) forget(id string) {
	m.mu.Lock()
	delete(m.members, id)
	m.mu.Unlock()
}

// leave announces that this node is leaving on purpose, then leaves.
func (m *membership) leave(timeout time.Duration) error {
	m.mu.Lock()
	m.self.Leaving = true
	m.mu.Unlock()
	if err := m.ml.UpdateNode(timeout); err != nil {
		m.logger.Warn("announcing leave", "error", err)
	}
	return m.ml.Leave(timeout)
}

func (m *membership) shutdown() error { return m.ml.Shutdown() }

type gossipDelegate struct{ m *membership }

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.m.selfMeta())
	if len(b) > limit {
		// Addresses are the only variable part; this needs absurdly long ones.
		d.m.logger.Error("gossip metadata too large", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}
func (d *gossipDelegate) NotifyMsg([]byte)                {}
func (d *gossipDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(bool) []byte          { return nil }
func (d *gossipDelegate) MergeRemoteState([]byte, bool)   {}

type gossipEvents struct{ m *membership }

func (e *gossipEvents) NotifyJoin(n *memberlist.Node)   { e.m.record(n, GossipAlive) }
func (e *gossipEvents) NotifyUpdate(n *memberlist.Node) { e.m.record(n, GossipAlive) }
func (e *gossipEvents) NotifyLeave(n *memberlist.Node) {
	state := GossipDead
	var meta nodeMeta
	if json.Unmarshal(n.Meta, &meta) == nil && meta.Leaving {
		state = GossipLeft
	}
	e.m.record(n, state)
}
