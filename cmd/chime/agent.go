package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/chime-sched/chime/api"
	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
)

type agentFlags struct {
	config                            string
	nodeID, dataDir                   string
	httpAddr, raftAddr, gossipAddr    string
	advHTTP, advRaft, advGossip       string
	join                              listFlag
	bootstrapExpect                   int
	clusterName, clusterKey           string
	tlsMode                           string
	tlsFiles                          cluster.TLSFiles
	pollInterval                      time.Duration
	logLevel, logFormat               string
	heartbeatTimeout, electionTimeout time.Duration
	snapshotThreshold                 uint64
	snapshotInterval                  time.Duration
	trailingLogs                      uint64
	shutdownTimeout                   time.Duration
	maxBodyBytes                      int64
	retention                         time.Duration
	workers                           int
	maxCallsPerTarget                 int
	allowPrivateTargets               bool
	allowedTargetCIDRs                listFlag
	defaultTimezone                   string
	debugAddr                         string
	rootToken                         string
	diskReserve                       byteSize
}

func agentFlagSet(f *agentFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("chime agent", flag.ContinueOnError)
	fs.StringVar(&f.config, "config", "", "YAML file of settings (keys are these flag names)")
	fs.StringVar(&f.nodeID, "node-id", "", "permanent node id (default: stored in the data dir, else generated)")
	fs.StringVar(&f.dataDir, "data-dir", "./chime-data", "directory for the Raft log, snapshots and the node id")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8700", "address of the HTTP API and dashboard")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:8701", "address for Raft and internal RPC (TCP)")
	fs.StringVar(&f.gossipAddr, "gossip-addr", "127.0.0.1:8702", "address for gossip membership (TCP and UDP)")
	fs.StringVar(&f.advHTTP, "advertise-http-addr", "", "HTTP address other nodes and clients are told (default: --http-addr)")
	fs.StringVar(&f.advRaft, "advertise-raft-addr", "", "Raft address other nodes dial (default: --raft-addr)")
	fs.StringVar(&f.advGossip, "advertise-gossip-addr", "", "gossip address other nodes dial (default: --gossip-addr)")
	fs.Var(&f.join, "join", "gossip address(es) of existing nodes, comma-separated")
	fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", -1, "form a new cluster once this many servers see each other (default: 1 without --join, else 0 = join only)")
	fs.StringVar(&f.clusterName, "cluster-name", "chime", "cluster name; nodes of other clusters are refused")
	fs.StringVar(&f.clusterKey, "cluster-key", "", "shared secret, at least 32 random bytes in hex or base64 (chime keygen makes one): encrypts gossip, authenticates internal calls and derives the Raft port's TLS certificates; the same on every node. Required for more than one node; a single node without it makes one and keeps it in the data dir")
	fs.StringVar(&f.tlsFiles.CAFile, "tls-ca-file", "", "PEM file of the CA certificate(s) that sign the nodes' Raft-port certificates (default: a CA derived from --cluster-key; all three --tls-*-file or none)")
	fs.StringVar(&f.tlsFiles.CertFile, "tls-cert-file", "", "PEM file of this node's Raft-port certificate, valid for server and client auth under --tls-ca-file")
	fs.StringVar(&f.tlsFiles.KeyFile, "tls-key-file", "", "PEM file of the private key of --tls-cert-file")
	fs.StringVar(&f.tlsMode, "tls-mode", string(cluster.TLSOn), "TLS on the Raft port: on (mutual TLS only) or upgrade (also plaintext, only while rolling a cluster from a version without TLS)")
	fs.DurationVar(&f.pollInterval, "poll-interval", time.Second, "longest the leader's poller sleeps between checks for due work (1m reproduces once-a-minute schedulers)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&f.heartbeatTimeout, "raft-heartbeat-timeout", 0, "Raft heartbeat timeout (default 1s)")
	fs.DurationVar(&f.electionTimeout, "raft-election-timeout", 0, "Raft election timeout (default 1s)")
	fs.Uint64Var(&f.snapshotThreshold, "raft-snapshot-threshold", 0, "log entries between Raft snapshots (default 8192)")
	fs.DurationVar(&f.snapshotInterval, "raft-snapshot-interval", 0, "how often Raft checks whether a snapshot is due (default 2m, jittered)")
	fs.Uint64Var(&f.trailingLogs, "raft-trailing-logs", 0, "log entries kept after a snapshot, so a briefly lagging node catches up from the log, not a snapshot (default 10240)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take")
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", api.DefaultMaxBodyBytes, "largest accepted JSON request body")
	fs.DurationVar(&f.retention, "retention", scheduler.DefaultRetention, "finished occurrences, deliveries, attempts and settled events older than this are deleted (0 keeps them forever)")
	fs.IntVar(&f.workers, "workers", dispatch.DefaultWorkers, "concurrent HTTP deliveries on this node")
	fs.IntVar(&f.maxCallsPerTarget, "max-calls-per-target", dispatch.DefaultMaxPerTarget, "concurrent calls of this node to one endpoint or one project's callback host (at most --workers)")
	fs.BoolVar(&f.allowPrivateTargets, "allow-private-targets", false, "let deliveries reach loopback, private and other special-purpose addresses (development only)")
	fs.Var(&f.allowedTargetCIDRs, "allowed-target-cidrs", "address ranges deliveries may reach although they are private, comma-separated (10.20.0.0/16,fd00::/8)")
	fs.StringVar(&f.defaultTimezone, "default-timezone", "UTC", "IANA time zone of schedules that name none")
	fs.StringVar(&f.rootToken, "root-token", "", "the first admin API token when the cluster is created (prefer CHIME_ROOT_TOKEN: flags show in ps); default: generated and logged once")
	f.diskReserve = cluster.DefaultDiskReserve
	fs.Var(&f.diskReserve, "disk-reserve", "free space kept on the data dir's file system: below it the node refuses writes (503 disk_full) and stops leading")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "serve Go's pprof profiles on this address (off by default; bind it to loopback)")
	return fs
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func runAgent(args []string) int {
	var f agentFlags
	fs := agentFlagSet(&f)
	if err := loadSettings(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "chime agent:", err)
		return 2
	}
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chime agent:", err)
		return 2
	}
	if err := runAgentWith(f, logger); err != nil {
		logger.Error("agent stopped", "error", err)
		fmt.Fprintln(os.Stderr, "chime agent:", err)
		return 1
	}
	return 0
}

// gcPercent is the agent's GOGC unless the environment sets one. The state
// is an immutable radix tree rewritten on every command, so the agent
// allocates fast while its live heap stays modest; at Go's default of 100 the
// collector took a third of the CPU in the fire benchmark, and 400 (a heap up
// to five times the live data) cut that by half. docs/benchmarks.md has the
// figures; GOGC=100 restores the default.
const gcPercent = 400

func runAgentWith(f agentFlags, logger *slog.Logger) error {
	// Everything the node writes (Raft log and snapshots, node id, key,
	// restore spools) is for this user only, whatever libraries ask for.
	restrictFileModes()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	applyMemoryLimit(logger) // GOGC 400 needs a ceiling where there is one (memlimit.go)
	if f.pollInterval < 10*time.Millisecond || f.pollInterval > time.Hour {
		return fmt.Errorf("--poll-interval %s: use a value from 10ms to 1h", f.pollInterval)
	}
	if f.retention < 0 {
		return fmt.Errorf("--retention %s: use 0 (keep forever) or a positive duration such as 720h", f.retention)
	}
	if f.workers < 1 || f.workers > 4096 {
		return fmt.Errorf("--workers %d: use a value from 1 to 4096", f.workers)
	}
	if f.maxCallsPerTarget < 1 || f.maxCallsPerTarget > 4096 {
		return fmt.Errorf("--max-calls-per-target %d: use a value from 1 to 4096", f.maxCallsPerTarget)
	}
	// Responses from internal addresses reached through the node-wide
	// ranges are not recorded (dispatch.TargetPolicy.WithholdInternalBodies).
	targets := dispatch.TargetPolicy{AllowPrivate: f.allowPrivateTargets, WithholdInternalBodies: true}
	for _, s := range f.allowedTargetCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("--allowed-target-cidrs %q: not a CIDR range such as 10.20.0.0/16", s)
		}
		targets.Allowed = append(targets.Allowed, p.Masked())
	}
	if f.diskReserve < 1<<20 {
		return fmt.Errorf("--disk-reserve %s: keep at least 1MiB, what Raft's own writes need while the node refuses the rest", f.diskReserve.String())
	}
	if f.rootToken != "" {
		if err := api.ValidateRootToken(f.rootToken); err != nil {
			// The token only counts when a cluster is created. A node that
			// already has its state (an upgrade of a node set up with a
			// shorter token, say) must not be kept down by it: it goes on
			// without, and says so.
			if _, serr := os.Stat(filepath.Join(f.dataDir, "raft", "raft.db")); serr != nil {
				return err
			}
			logger.Warn("CHIME_ROOT_TOKEN ignored: too short for a new cluster, and this node's cluster exists already (the token only counts when a cluster is created); unset it", "error", err)
			f.rootToken = ""
		}
	}
	schedCfg := scheduler.DefaultConfig()
	schedCfg.DefaultTimezone = f.defaultTimezone
	if err := schedCfg.Validate(); err != nil {
		return fmt.Errorf("--default-timezone %q: %w", f.defaultTimezone, err)
	}
	if f.bootstrapExpect < 0 {
		f.bootstrapExpect = 1
		if len(f.join) > 0 {
			f.bootstrapExpect = 0
		}
	}
	// cluster.New checks these again; here they fail before anything is
	// written to the data dir.
	if f.clusterKey == "" && (f.bootstrapExpect > 1 || len(f.join) > 0) {
		return fmt.Errorf("CHIME_CLUSTER_KEY / %w", cluster.ErrNoClusterKey)
	}
	if f.clusterKey != "" {
		if err := cluster.ValidateKey(f.clusterKey); err != nil {
			return fmt.Errorf("CHIME_CLUSTER_KEY / %w", err)
		}
	}
	tlsMode, err := cluster.ParseTLSMode(f.tlsMode)
	if err != nil {
		return err
	}
	if err := f.tlsFiles.Validate(); err != nil {
		return err
	}
	if tlsMode == cluster.TLSUpgrade {
		logger.Warn("--tls-mode upgrade: the Raft port also accepts plaintext from nodes of versions without TLS; once every node runs this version, restart each with --tls-mode on")
	}
	advHTTP := f.advHTTP
	if advHTTP == "" {
		advHTTP = f.httpAddr
		if host, _, err := net.SplitHostPort(f.httpAddr); err == nil {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				return fmt.Errorf("--http-addr %s binds every interface: set --advertise-http-addr to the address clients use", f.httpAddr)
			}
		}
	}
	// After every check of the settings, so a bad one leaves nothing on disk.
	nodeID, err := cluster.LoadNodeID(f.dataDir, f.nodeID)
	if err != nil {
		return err
	}
	logger = logger.With("node_id", nodeID)
	httpLn, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-addr %s: %w", f.httpAddr, err)
	}
	state := fsm.New(logger)
	c, err := cluster.New(cluster.Config{
		NodeID: nodeID, DataDir: f.dataDir,
		RaftAddr: f.raftAddr, AdvertiseRaftAddr: f.advRaft,
		GossipAddr: f.gossipAddr, AdvertiseGossipAddr: f.advGossip,
		HTTPAddr: advHTTP, Join: f.join, BootstrapExpect: f.bootstrapExpect,
		ClusterName: f.clusterName, ClusterKey: f.clusterKey, TLSMode: string(tlsMode), TLSFiles: f.tlsFiles, Version: version,
		Logger: logger, FSM: state,
		HeartbeatTimeout: f.heartbeatTimeout, ElectionTimeout: f.electionTimeout,
		SnapshotThreshold: f.snapshotThreshold, SnapshotInterval: f.snapshotInterval, TrailingLogs: f.trailingLogs,
		DiskReserve: uint64(f.diskReserve),
	})
	if err != nil {
		httpLn.Close()
		return err
	}
	apiServer := api.New(api.Config{Cluster: c, Logger: logger, Version: version, MaxBodyBytes: f.maxBodyBytes, Schedule: schedCfg})
	retention := f.retention
	if retention == 0 {
		retention = -1 // the poller's "never prune"
	}
	poller := scheduler.NewPoller(c, scheduler.PollerConfig{Interval: f.pollInterval, Retention: retention, Schedule: schedCfg, Logger: logger})
	reassigner := dispatch.NewReassigner(c, nil, logger)
	dispatcher := dispatch.NewDispatcher(c, dispatch.DispatcherConfig{
		Workers: f.workers, MaxPerTarget: f.maxCallsPerTarget, Logger: logger,
		Sender: dispatch.NewSender(dispatch.SenderConfig{Policy: targets, UserAgent: "Chime/" + version}),
	})
	// Hooks run in order on establish and in reverse on revoke: the root
	// token and the default project first, then the reassigner and the poller.
	hooks := []cluster.LeaderHook{&api.BootstrapHook{Cluster: c, Logger: logger, RootToken: f.rootToken}, reassigner, poller}
	hooks = append(hooks, nextHooks(c, nodeID, logger)...) // none in the default build
	if err := c.Start(hooks...); err != nil {
		httpLn.Close()
		_ = c.Shutdown(context.Background())
		return err
	}
	dispatcher.Start()
	if f.debugAddr != "" {
		if err := serveDebug(f.debugAddr, logger); err != nil {
			logger.Warn("debug listener not started", "error", err)
		}
	}
	srv := &http.Server{
		Handler:           apiServer.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(apiServer.CloseStreams) // streams are never idle
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(httpLn) }()
	logger.Info("chime agent started", "version", version, "http_addr", advHTTP, "raft_addr", c.RaftAddr(),
		"gossip_addr", f.gossipAddr, "data_dir", f.dataDir, "bootstrap_expect", f.bootstrapExpect, "poll_interval", f.pollInterval,
		"workers", f.workers, "allow_private_targets", f.allowPrivateTargets, "tls_mode", tlsMode, "tls_certificates", tlsSource(f.tlsFiles))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var runErr error
	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String())
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	// Reverse order of construction: stop taking requests, then leave the
	// cluster (leadership transfer first), then close the stores.
	ctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("http shutdown", "error", err)
	}
	// Let running calls finish and report (half the budget), so that no
	// attempt is cut off and made again elsewhere, then leave.
	dctx, dcancel := context.WithTimeout(ctx, f.shutdownTimeout/2)
	dispatcher.Stop(dctx)
	dcancel()
	if err := c.Shutdown(ctx); err != nil {
		logger.Warn("cluster shutdown", "error", err)
	}
	logger.Info("stopped")
	return runErr
}

// tlsSource says, for the start-up line, where the Raft port's certificates
// come from.
func tlsSource(files cluster.TLSFiles) string {
	if files.CertFile != "" {
		return "files"
	}
	return "derived from the cluster key"
}
