// Package cluster owns everything that makes several chime processes one
// system: hashicorp/raft with its BoltDB log/stable store and file snapshots,
// the authenticated transport on the Raft port, memberlist gossip, cluster
// bootstrap and voter reconciliation, the leadership loop, and forwarding
// writes and consistent reads to the leader.
//
// What it must never do: know about schedules, deliveries or HTTP APIs.
// Leadership reaches the scheduler and the dispatcher only through the
// LeaderHook interface, wired by cmd/chime.
//
// Key decisions:
//   - The cluster key is the one root of trust and is never weak (keys.go):
//     at least 32 random-looking bytes; a single node without one makes one
//     and keeps it in its data dir (0600); a node with peers refuses to
//     start without one. New re-checks this whatever its caller did.
//   - One port for Raft and internal RPC, under mutual TLS 1.3 (tls.go).
//     The CA is derived from the cluster key and name, identically on every
//     node, and each node signs a fresh leaf at start: TLS is on everywhere
//     with nothing to configure, and who can join is still exactly who holds
//     the key. Inside TLS each connection runs a mutual HMAC
//     challenge-response over the key and name, then a purpose byte routes
//     it to Raft or to an internal HTTP/1.1 server. The forwarding client is
//     a plain net/http client dialing through that: pooling, keep-alive and
//     deadlines come for free. TLSUpgrade also speaks the plaintext protocol
//     of versions before TLS, for the two-step rolling upgrade.
//   - Refused peers (another key, name or CA) are logged at WARN, once a
//     minute per host: a misconfigured node retrying every second must not
//     flood its peers' logs with ERRORs (memberlist's included).
//   - Apply waits for the local FSM to reach the write's index before it
//     returns: read-your-writes on the node that took the request.
//   - Concurrent writes are coalesced: a follower forwards them in one RPC,
//     the leader commits them as one fsm.Batch entry with a result per
//     command (coalesce.go). Per-message costs, not bytes, limit writes on
//     small machines.
//   - Only "no leader" errors are retried; a write whose fate is unknown
//     (leadership lost mid-commit) is reported, never silently repeated.
//   - Bootstrap follows --bootstrap-expect: once N fresh servers see each
//     other, each bootstraps the same sorted configuration (raft tolerates
//     identical concurrent bootstraps). A node that sees a member with Raft
//     state never bootstraps: the leader adds it.
//   - The leader adds alive members as voters, removes members that left
//     gracefully, and keeps dead ones until an operator removes them, so a
//     network blip never shrinks the quorum.
//   - Backups (backup.go) are the FSM's snapshot stream followed by an
//     HMAC-SHA256 trailer keyed with a key derived from the cluster key (its
//     own label, never the node-authentication key). Restore verifies it on
//     the leader before the scratch decode and before Raft: a changed byte is
//     refused; a file this cluster did not sign needs RestoreOptions.Foreign.
//     Raft's own snapshots between nodes are not signed: they travel over
//     the authenticated transport.
//   - Graceful shutdown: transfer leadership, stop leader work, leave gossip,
//     then close Raft. Node ids are permanent and stored in the data dir.
//   - Feature levels (features.go): each node gossips the level of its build
//     beside its version. A feature that changes what Apply decides (quotas)
//     is switched on through the log only when AllServersAtLeast its level,
//     so replicas of different versions never apply a command differently;
//     cluster knows the numbers, not the features.
package cluster
