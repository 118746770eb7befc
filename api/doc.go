// Package api is Chime's public HTTP API on gin: routing, request decoding
// and validation, the mapping of errors to HTTP statuses (errors.go, the only
// place that does it), the resources (projects, jobs, occurrences, endpoints,
// events, deliveries) and the operator endpoints of the cluster.
//
// What it must never do: touch Raft or the state store directly. Writes go
// through Cluster.Apply as fsm commands built here, where everything
// non-deterministic (ids, timestamps, secrets, the node a re-queued delivery
// goes to) is decided; reads come from the local fsm.State, after a
// ReadBarrier when ?consistent=true. It never sends a webhook either: a
// trigger, a retry or a release only writes deliveries, already placed, and
// the dispatcher of the chosen node picks them up.
//
// Key decisions:
//   - Every error is {"error": {"code", "message", "field"}}; bad input is a
//     4xx naming the field, never a 500. 503s carry Retry-After.
//   - JSON is decoded strictly (unknown fields are errors) under an explicit
//     body limit; lists are {"items", "nextCursor"} with limit ≤ 500.
//   - A write returns after the node that took it has applied it, so a read
//     on the same node sees it.
//   - Every resource call acts in one project (?project=, default
//     "default"); an object of another project is a 404 exactly like a
//     missing one, so nothing leaks across tenants.
//   - Read-modify-writes are conditional (a Put with IfIndex, a fire checked
//     against the job's ModifyIndex) and are rebuilt from fresh state on a
//     conflict, at most maxConflictRetries times: the poller and the
//     dispatchers change the same records concurrently, and a blind write
//     would undo their work.
//   - Secrets are shown once: an endpoint's or a token's in the response that
//     creates it, never in a read, and never in a remembered Idempotency-Key
//     answer (withhold names the field; a replay says Chime-Secret-Withheld).
//     Tokens are stored as SHA-256 hashes; a list shows "chime_" and at most
//     4 characters of a secret.
//   - An Idempotency-Key belongs to the token that sent it first (the record
//     keeps its id): any other token gets 409, never the answer, and the
//     route's scope and project binding are checked before the key.
//   - Header values of jobs and endpoints are the receiver's credentials:
//     stored and sent, shown to nobody (fsm.MaskHeaders everywhere a target
//     is shown), replaced as a whole by PATCH.
//   - Nothing a client controls is unbounded: bodies by size and by a
//     minimum arrival rate (timedBody), schedule text fields by length,
//     streams per token, per project and per node.
//   - Authentication (auth.go): a bearer token with a scope per route (read,
//     write, admin), checked against the local state, so a revocation holds
//     on every node once replicated. A project-bound token's other projects
//     are 404s. A node that is not caught up answers an unknown token with
//     503, not 401: it may simply not have it yet. Health, readiness, cluster
//     status and the OpenAPI document are open.
//   - Bulk operator actions (replay, release) are chunked into commands of at
//     most 500 actions, so one request never becomes a Raft entry that stalls
//     every other write.
//   - Quotas (limits.go): the FSM enforces per-project counts and rates for
//     the whole cluster; handlers pre-check them against the local state so
//     a refused write rarely reaches the log (a keyed request before its
//     Idempotency-Key claim, preClaimQuota), and check minIntervalSeconds
//     (a schedule, which the FSM never interprets) for good. The leader's
//     BootstrapHook writes the cluster's limits row, which switches
//     enforcement on, only once every server runs a version that enforces
//     it (limitsWriter). A quota is a
//     429 quota_exceeded naming the limit, with Retry-After where waiting
//     helps; limits are changed only by an admin token bound to no project.
//   - Backups are written and verified by cluster (backup.go): the snapshot
//     route streams a signed file, and restore takes ?foreign=true for one
//     this cluster did not sign.
package api
