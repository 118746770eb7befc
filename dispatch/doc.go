// Package dispatch delivers Chime's messages to receivers: it signs each
// attempt, makes the HTTP call safely, and decides retries. It holds the
// per-node dispatcher that runs the deliveries assigned to the node and
// reports their results through Raft, and the leader's loop that reassigns
// the deliveries of dead nodes and expired leases. Of Chime's packages it
// imports fsm and cluster only (the api imports it for target validation and
// secret generation, so that the rules are defined once).
//
// The building blocks:
//
//   - signing.go: signing secrets ("whsec_" + base64 of 32 random bytes) and
//     the signature headers of every attempt: Standard Webhooks
//     (webhook-id, webhook-timestamp, webhook-signature "v1,<base64>" over
//     "id.timestamp.body") and source 001's X-Webhook-Signature
//     "sha256=<hex>" over the body, keyed with the secret string as shown.
//     During a rotation grace period both secrets sign webhook-signature;
//     X-Webhook-Signature carries the newest only, because 001's receiver
//     compares it with one value.
//   - retry.go: retry policies (fixed, linear, exponential backoff, cap,
//     jitter, Retry-After), their validation, and the defaults of the
//     sources: endpoints 3 attempts at +10 s, +20 s (001); inline callbacks 5
//     attempts at 2^(n-1) minutes capped at 1 h (002).
//   - guard.go: the outbound address policy (no loopback, private,
//     link-local, metadata, CGNAT or other special-purpose addresses, in any
//     IPv4 or IPv6 spelling, unless configured) and URL validation.
//   - request.go: what an attempt sends: the target's method, URL and
//     headers, the job's payload or 001's envelope, Chime's headers and the
//     signatures, all from the replicated state.
//   - worker.go: the Dispatcher. It watches the local FSM (memdb watch) for
//     deliveries of this node that are due, starts them on a bounded pool
//     only while the node is in contact with the leader and the lease outlives
//     the call, and reports outcomes in batched DeliveryResults commands. The
//     in-flight state stays local; the lease covers a node that dies mid-call.
//   - fair.go: fair sharing of the worker pool: one due queue per project
//     served round-robin, a fair share per project with a reserve kept
//     free for newcomers, a cap on concurrent calls per target, and the
//     targets' circuit breakers (replicated in fsm/breaker.go) honoured:
//     nothing to an open target, one probe at a time per node half-open.
//   - targets.go: per-project target ranges (an admin's
//     allowedTargetCidrs, cut to the node's --allowed-target-cidrs).
//   - reassign.go: the Reassigner, a leader hook: each second it moves the
//     unfinished deliveries of nodes gone from gossip, of passed leases, and
//     waiting retries off the leader while it has followers, with new fences.
//   - sender.go: the HTTP call: one shared keep-alive transport, bounded
//     response reads, a 1 KiB UTF-8 summary, timeouts, outcome
//     classification (2xx success, 410 gone, 3xx failure).
//
// What it must never do:
//
//   - Follow a redirect. A 3xx is a failed attempt; following it would send
//     a signed payload to a URL nobody configured and could be used to reach
//     an internal address.
//   - Use a proxy from the environment (HTTP_PROXY and friends). A proxy dials
//     on our behalf, so the address check would see the proxy, not the target.
//   - Trust a DNS answer. The address check runs on the IP the socket
//     actually connects to (a net.Dialer Control hook), for every address
//     tried, so DNS rebinding and odd host spellings cannot bypass it.
//   - Read an unbounded response, or drain an oversized one: the body is read
//     up to a limit (64 KiB) and the connection is closed beyond it.
//   - Hold a delivery outside Raft. Workers act on deliveries the FSM
//     assigned to their node and report every result (and every retry
//     decision) in a Raft command, fenced by the assignment token; nothing
//     about a delivery lives only in a node's memory, so losing a node loses
//     no delivery.
//
// Key decisions:
//
//   - One tenant must not cost the others their delivery time: a call holds
//     its slot until an answer or its timeout, so slots are shared fairly
//     (fair.go) rather than first come, first served.
//   - The circuit breaker is replicated, not node-local: every node stops at
//     the same point, restarts know it, and the API shows what dispatchers
//     do. Deliveries it holds back are left untouched (fence, lease and
//     attempt count), so every delivery guarantee stays as it is.
//   - The node's address policy is the upper bound; a project's own ranges
//     narrow it, each with its own transport, so no kept-alive connection
//     crosses projects. Bodies of responses from internal addresses reached
//     through the node-wide ranges are not recorded (no readable SSRF).
//   - Delivery is at least once. The webhook-id (the delivery id) is the same
//     on every attempt and reassignment so receivers can deduplicate; every
//     attempt is signed afresh with its own timestamp.
//   - Success is 2xx only. 410 also tells the caller to disable the endpoint.
//     A 2xx whose body then fails to read is still a success.
//   - NextDelay is total: any stored policy, valid or not, gives a bounded
//     delay (1 s to 24 h) without overflow; ValidatePolicy is what the API
//     uses to refuse bad input with field names.
//   - The sender speaks HTTP/1.1 only, so an attempt owns its connection.
package dispatch
