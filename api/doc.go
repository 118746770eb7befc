// Package api is Chime's public HTTP API on gin: routing, request decoding
// and validation, the mapping of errors to HTTP statuses (errors.go, the only
// place that does it), and the operator endpoints of the cluster.
//
// What it must never do: touch Raft or the state store directly. Writes go
// through Cluster.Apply as fsm commands built here, where everything
// non-deterministic (ids, timestamps, secrets) is decided; reads come from
// the local fsm.State, after a ReadBarrier when ?consistent=true.
//
// Key decisions:
//   - Every error is {"error": {"code", "message", "field"}}; bad input is a
//     4xx naming the field, never a 500. 503s carry Retry-After.
//   - JSON is decoded strictly (unknown fields are errors) under an explicit
//     body limit; lists are {"items", "nextCursor"} with limit ≤ 500.
//   - A write returns after the node that took it has applied it, so a read
//     on the same node sees it.
package api
