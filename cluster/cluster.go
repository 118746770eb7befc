package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Sentinel errors of this package; api maps them to HTTP codes.
var (
	// ErrNoLeader: the cluster has no leader right now (election in progress
	// or quorum lost). Safe to retry: nothing was written.
	ErrNoLeader = errors.New("no cluster leader; try again shortly")
	// ErrLeadershipLost: the write reached a leader that lost leadership
	// before it could confirm the commit. The write may or may not be applied.
	ErrLeadershipLost = errors.New("leadership lost while committing; the write may or may not have been applied")
	// ErrShutdown: this node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
	// ErrLeaderUnreachable: the forwarded call to the leader failed in
	// transport (the leader died or is cut off). A write may or may not have
	// been applied; retrying an idempotent write is safe.
	ErrLeaderUnreachable = errors.New("the leader could not be reached; the write may or may not have been applied")
)

// Config is everything a node needs to join or form a cluster.
type Config struct {
	NodeID  string
	DataDir string

	RaftAddr, AdvertiseRaftAddr     string
	GossipAddr, AdvertiseGossipAddr string
	// HTTPAddr is the API address other nodes and clients are told about.
	HTTPAddr string

	Join            []string
	BootstrapExpect int
	ClusterName     string
	// ClusterKey is the shared secret (ValidateKey). Empty is allowed only
	// for a single node (BootstrapExpect <= 1, no Join), which then uses
	// the key kept in its data dir, made on its first start.
	ClusterKey string
	// TLSMode is the Raft port's TLS mode (ParseTLSMode; empty means on).
	TLSMode string
	// TLSFiles, when set, replace the CA derived from the key by the
	// operator's certificates (the key's handshake still runs inside).
	TLSFiles TLSFiles
	Version  string

	// legacyPlaintext makes the node speak the Raft port's protocol of the
	// versions before TLS (plaintext handshake only): tests of the rolling
	// upgrade play an old node with it.
	legacyPlaintext bool

	Logger *slog.Logger
	FSM    *fsm.FSM

	// ApplyTimeout bounds a write when the caller's context has no deadline.
	ApplyTimeout time.Duration
	// ReconcileInterval is how often the leader re-checks voters against
	// members even without a membership event.
	ReconcileInterval time.Duration

	// Raft tuning; zero keeps hashicorp/raft's defaults. Tests shorten them.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, CommitTimeout time.Duration
	SnapshotThreshold                                                    uint64
	SnapshotInterval                                                     time.Duration
	TrailingLogs                                                         uint64

	// DiskReserve is the free space kept on the data dir's file system;
	// below it the node refuses writes (disk.go). Zero means
	// DefaultDiskReserve.
	DiskReserve uint64

	// Gossip tuning; zero keeps memberlist's LAN defaults.
	ProbeInterval, ProbeTimeout, GossipInterval time.Duration
	SuspicionMult                               int
}

// LeaderHook is how the scheduler and the dispatcher learn about leadership
// without cluster knowing what they do. EstablishLeadership runs after a
// Barrier, so the local state holds every committed write; it must return
// promptly (start goroutines bound to ctx). RevokeLeadership must block until
// everything started by EstablishLeadership has stopped.
type LeaderHook interface {
	EstablishLeadership(ctx context.Context) error
	RevokeLeadership()
}

// Cluster owns Raft, its stores and transport, gossip membership and the
// internal forwarding channel.
type Cluster struct {
	cfg    Config
	logger *slog.Logger
	fsm    *fsm.FSM

	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	transport *muxTransport
	netTrans  *raft.NetworkTransport
	members   *membership
	disk      *diskGuard
	// lastHandOff is when a short disk last made this leader hand over
	// (unix nanoseconds; disk.go).
	lastHandOff atomic.Int64
	fwdServer   *http.Server
	fwdClient   *http.Client
	// local coalesces writes on the leader into Raft entries, remote
	// coalesces a follower's writes into RPCs to the leader (coalesce.go).
	local, remote *coalescer
	batchRPC      batchSupport
	// batchPath is where forwardBatch sends batches: pathApplyBatch, but a
	// test points it elsewhere to play a leader of an older version.
	batchPath string

	hooks        []LeaderHook
	leaderNotify chan bool

	shutdownOnce sync.Once
	shutdownCh   chan struct{}
	// raftDone closes once raft.Shutdown has returned: a future still
	// unanswered then never will be (hashicorp/raft#498), so waiters give up.
	raftDone    chan struct{}
	monitorDone chan struct{}
	wg          sync.WaitGroup
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// LoadNodeID returns the node's permanent id: the one stored in the data dir,
// else the flag's, else a new random one. A flag that contradicts the stored
// id is an error, because Raft identifies servers by id and a silently
// changed id would make the cluster count this node twice.
func LoadNodeID(dataDir, flagID string) (string, error) {
	if flagID != "" && !nodeIDPattern.MatchString(flagID) {
		return "", fmt.Errorf("--node-id %q: use 1-63 letters, digits, '.', '_' or '-'", flagID)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, "node-id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		stored := strings.TrimSpace(string(b))
		if flagID != "" && flagID != stored {
			return "", fmt.Errorf("--node-id %q does not match %q stored in %s; node ids are permanent: use the stored id or a fresh data dir", flagID, stored, path)
		}
		return stored, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read node id: %w", err)
	}
	id := flagID
	if id == "" {
		buf := make([]byte, 4)
		_, _ = rand.Read(buf)
		id = "node-" + hex.EncodeToString(buf)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store node id: %w", err)
	}
	return id, nil
}

// New opens the node's stores and listeners. Nothing talks to other nodes
// until Start.
func New(cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FSM == nil {
		return nil, errors.New("cluster: Config.FSM is required")
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "chime"
	}
	if len(cfg.ClusterName) > 64 {
		return nil, errors.New("--cluster-name: at most 64 characters")
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = 30 * time.Second
	}
	mode, err := ParseTLSMode(cfg.TLSMode)
	if err != nil {
		return nil, err
	}
	cfg.TLSMode = string(mode)
	// Defense in depth: whatever the caller checked, no node runs on an
	// empty or weak key (anyone could prove it and command the cluster).
	key, err := resolveKey(cfg, cfg.Logger)
	if err != nil {
		return nil, err
	}
	cfg.ClusterKey = key
	c := &Cluster{
		cfg:          cfg,
		logger:       cfg.Logger, // the caller's logger already carries node_id
		fsm:          cfg.FSM,
		leaderNotify: make(chan bool, 16),
		shutdownCh:   make(chan struct{}),
		raftDone:     make(chan struct{}),
		monitorDone:  make(chan struct{}),
	}
	if err := c.openRaft(); err != nil {
		c.closeAll()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) openRaft() error {
	raftDir := filepath.Join(c.cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open raft log %s: %w", raftDir, err)
	}
	c.store = store
	// raft makes its snapshot directories 0755 and files 0644 (less the
	// umask); the agent's umask (077) narrows those, and this directory,
	// made here first, keeps them unreachable for anyone else regardless.
	if err := os.MkdirAll(filepath.Join(raftDir, "snapshots"), 0o700); err != nil {
		return fmt.Errorf("create snapshot dir: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, newHCLog(c.logger, "raft-snapshots"))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	cache, err := raft.NewLogCache(512, store)
	if err != nil {
		return err
	}
	if c.cfg.DiskReserve == 0 {
		c.cfg.DiskReserve = DefaultDiskReserve
	}
	c.disk = newDiskGuard(raftDir, c.cfg.DiskReserve, c.logger)
	c.disk.onLow = c.handOffLeadership
	c.disk.check()
	logs := guardedLogs{LogStore: cache, g: c.disk}
	stable := guardedStable{StableStore: store, g: c.disk, stop: c.shutdownCh}
	tr, err := newMuxTransport(transportConfig{
		Bind: c.cfg.RaftAddr, Advertise: c.cfg.AdvertiseRaftAddr,
		ClusterKey: c.cfg.ClusterKey, ClusterName: c.cfg.ClusterName, NodeID: c.cfg.NodeID, TLSFiles: c.cfg.TLSFiles,
		Mode: TLSMode(c.cfg.TLSMode), Legacy: c.cfg.legacyPlaintext, Logger: c.logger,
	})
	if err != nil {
		return err
	}
	c.transport = tr
	c.netTrans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftLayer{t: tr},
		MaxPool: 5,
		Timeout: 10 * time.Second,
		Logger:  newHCLog(c.logger, "raft-net"),
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.cfg.NodeID)
	rc.Logger = newHCLog(c.logger, "raft")
	rc.NotifyCh = c.leaderNotify
	// Let raft group concurrent Apply calls into one disk write and one FSM
	// transaction: this is what makes thousands of API writes per second
	// possible on one fsync per batch.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512
	// A removed node that comes back is re-added by the leader; it must not
	// have shut its Raft down in the meantime.
	rc.ShutdownOnRemove = false
	setDur(&rc.HeartbeatTimeout, c.cfg.HeartbeatTimeout)
	setDur(&rc.ElectionTimeout, c.cfg.ElectionTimeout)
	setDur(&rc.LeaderLeaseTimeout, c.cfg.LeaderLeaseTimeout)
	if c.cfg.LeaderLeaseTimeout == 0 {
		// Half the shorter of the two timeouts as they finally are: raft
		// refuses a lease longer than the heartbeat timeout, and a lease at
		// half of it still lets a cut-off leader step down in time.
		rc.LeaderLeaseTimeout = min(rc.HeartbeatTimeout, rc.ElectionTimeout) / 2
	}
	setDur(&rc.CommitTimeout, c.cfg.CommitTimeout)
	setDur(&rc.SnapshotInterval, c.cfg.SnapshotInterval)
	if c.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.cfg.SnapshotThreshold
	}
	if c.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = c.cfg.TrailingLogs
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}
	if err := c.recoverFromPeersFile(rc, raftDir, logs, snaps); err != nil {
		return err
	}
	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	r, err := raft.NewRaft(rc, c.fsm, logs, stable, snaps, c.netTrans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	c.raft = r
	self := nodeMeta{
		ID: c.cfg.NodeID, RaftAddr: c.RaftAddr(), HTTPAddr: c.cfg.HTTPAddr, Version: c.cfg.Version, Level: FeatureLevel,
		BootstrapExpect: c.cfg.BootstrapExpect, Bootstrapped: hasState,
	}
	c.members, err = newMembership(membershipConfig{
		Bind: c.cfg.GossipAddr, Advertise: c.cfg.AdvertiseGossipAddr,
		ClusterName: c.cfg.ClusterName, ClusterKey: c.cfg.ClusterKey,
		Self: self, Logger: c.logger,
		ProbeInterval: c.cfg.ProbeInterval, ProbeTimeout: c.cfg.ProbeTimeout,
		GossipInterval: c.cfg.GossipInterval, SuspicionMult: c.cfg.SuspicionMult,
	})
	if err != nil {
		return err
	}
	c.fwdClient = newForwardClient(tr)
	c.local = &coalescer{maxInFlight: leaderFlushes, maxItems: maxCoalescedItems, maxBytes: maxCoalescedBytes,
		flush: c.commitLocal, waitTaken: true}
	c.remote = &coalescer{maxInFlight: followerFlushes, maxItems: maxCoalescedItems, maxBytes: maxCoalescedBytes,
		flush: c.forwardBatch}
	c.batchPath = pathApplyBatch
	return nil
}

// recoverFromPeersFile handles the lost-quorum procedure: an operator writes
// raft/peers.json with the surviving servers on every survivor; at start-up
// it replaces the Raft configuration once and is deleted.
func (c *Cluster) recoverFromPeersFile(rc *raft.Config, raftDir string, logs raft.LogStore, snaps raft.SnapshotStore) error {
	path := filepath.Join(raftDir, "peers.json")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("recovery file %s: %w", path, err)
	}
	c.logger.Warn("recovering raft configuration from peers.json", "path", path, "servers", len(conf.Servers))
	// RecoverCluster replays state into an FSM of its own; ours is restored
	// again by NewRaft right after.
	if err := raft.RecoverCluster(rc, fsm.New(c.logger), logs, c.store, snaps, c.netTrans, conf); err != nil {
		return fmt.Errorf("recover cluster from %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("recovery done but %s could not be deleted: %w", path, err)
	}
	c.logger.Warn("raft configuration recovered; peers.json deleted")
	return nil
}

func setDur(dst *time.Duration, v time.Duration) {
	if v > 0 {
		*dst = v
	}
}

// Start joins gossip, starts the internal forwarding server, the leadership
// monitor and, when needed, the bootstrapper. hooks run, in order, whenever
// this node becomes leader (and are revoked in reverse order).
func (c *Cluster) Start(hooks ...LeaderHook) error {
	c.hooks = hooks
	c.fwdServer = c.newForwardServer()
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		if err := c.fwdServer.Serve(newForwardListener(c.transport)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.logger.Error("forwarding server stopped", "error", err)
		}
	}()
	go func() { defer c.wg.Done(); defer close(c.monitorDone); c.monitorLeadership() }()
	go func() { defer c.wg.Done(); c.bootstrap() }()
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.reconnect() }()
	go func() { defer c.wg.Done(); c.disk.run(c.shutdownCh) }()
	if len(c.cfg.Join) > 0 {
		n, err := c.members.join(c.cfg.Join)
		if err != nil && n == 0 {
			// Not fatal: the peers may simply not be up yet. Keep retrying in
			// the background so start order does not matter.
			c.logger.Warn("join failed; retrying in the background", "join", c.cfg.Join, "error", err)
			c.wg.Add(1)
			go func() { defer c.wg.Done(); c.retryJoin() }()
		} else {
			c.logger.Info("joined gossip", "contacted", n)
		}
	}
	return nil
}

func (c *Cluster) retryJoin() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.shutdownCh:
			return
		case <-t.C:
		}
		if n, err := c.members.join(c.cfg.Join); err == nil && n > 0 {
			c.logger.Info("joined gossip", "contacted", n)
			return
		}
	}
}

// gossipReconnectInterval is how often a node tries to reach the members
// gossip has declared dead.
const gossipReconnectInterval = 5 * time.Second

// reconnect joins, every gossipReconnectInterval, the address of each member
// declared dead. memberlist itself stops contacting a dead member soon after
// declaring it dead, so once both sides of a network partition had declared
// each other dead they stayed apart in gossip after the network healed (Raft
// reconnects on its own): the cut-off node showed as dead for good and got no
// deliveries. A join exchanges the full state, and each side refutes the
// other's claim that it is dead. (Serf's reconnect does the same.) A member
// that is really down costs one refused connection per interval.
func (c *Cluster) reconnect() {
	t := time.NewTicker(gossipReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-c.shutdownCh:
			return
		case <-t.C:
		}
		for _, addr := range c.members.deadAddrs() {
			if n, err := c.members.join([]string{addr}); err == nil && n > 0 {
				c.logger.Info("reached a member gossip had declared dead", "gossip_addr", addr)
			}
		}
	}
}

// Shutdown stops the node gracefully: a leader hands leadership over first,
// then the node stops its leader work, leaves gossip (so the new leader
// removes it from the voters cleanly), and closes Raft and its stores.
func (c *Cluster) Shutdown(ctx context.Context) error {
	var err error
	c.shutdownOnce.Do(func() {
		if c.raft.State() == raft.Leader && c.otherVoters() > 0 {
			c.logger.Info("transferring leadership before shutdown")
			f := c.raft.LeadershipTransfer()
			if e := c.waitFuture(ctx, f); e != nil {
				c.logger.Warn("leadership transfer failed; shutting down anyway", "error", e)
			}
		}
		close(c.shutdownCh)
		// Leader work stops before anything else goes away.
		<-c.monitorDone
		if e := c.members.leave(5 * time.Second); e != nil {
			c.logger.Warn("leaving gossip", "error", e)
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = c.fwdServer.Shutdown(sctx)
		cancel()
		err = c.raft.Shutdown().Error()
		close(c.raftDone)
		c.wg.Wait()
		c.closeAll()
	})
	return err
}

// Kill stops the node abruptly, without a leadership transfer or a gossip
// leave, as a crash would. Tests use it to simulate SIGKILL in process.
func (c *Cluster) Kill() {
	c.shutdownOnce.Do(func() {
		close(c.shutdownCh)
		_ = c.members.shutdown()
		if c.fwdServer != nil {
			_ = c.fwdServer.Close()
		}
		_ = c.raft.Shutdown().Error()
		close(c.raftDone)
		c.wg.Wait()
		c.closeAll()
	})
}

func (c *Cluster) closeAll() {
	if c.members != nil {
		_ = c.members.shutdown()
	}
	if c.netTrans != nil {
		_ = c.netTrans.Close()
	}
	if c.transport != nil {
		_ = c.transport.Close()
	}
	if c.store != nil {
		_ = c.store.Close()
	}
	if c.fwdClient != nil {
		c.fwdClient.CloseIdleConnections()
	}
}

func (c *Cluster) otherVoters() int {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != c.cfg.NodeID {
			n++
		}
	}
	return n
}

// waitFuture waits for a raft future without outliving ctx or Raft itself:
// hashicorp/raft can leave a future unanswered when it shuts down with the
// future in flight (hashicorp/raft#498), and a bare f.Error() would then
// block its caller, and Shutdown waiting on that caller, for ever.
func (c *Cluster) waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.raftDone:
		select {
		case err := <-done:
			return err
		default:
			return raft.ErrRaftShutdown
		}
	}
}

// NodeID is this node's permanent id.
func (c *Cluster) NodeID() string { return c.cfg.NodeID }

// RaftAddr is the advertised Raft (and internal RPC) address.
func (c *Cluster) RaftAddr() string { return c.transport.advertise.String() }

// IsLeader reports whether this node is the Raft leader right now.
func (c *Cluster) IsLeader() bool { return c.raft.State() == raft.Leader }

// FSM is the local replicated state.
func (c *Cluster) FSM() *fsm.FSM { return c.fsm }
