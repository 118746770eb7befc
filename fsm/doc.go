// Package fsm is Chime's replicated state machine: the command types and their
// encoding, the go-memdb state with its tables and indexes, deterministic
// Apply, and streaming snapshot/restore. It imports nothing else of Chime's.
//
// What it must never do:
//
//   - Read the clock, randomness or the network in Apply. Every id, time and
//     secret is decided by the node that builds the command and travels in it,
//     so every replica computes the same state ("decided outside, checked and
//     stored inside"): Put and Delete only check preconditions (CAS on
//     ModifyIndex, existence, the owning project, unique keys) and store.
//   - Continue past a command it does not understand. Commands are
//     [type byte][msgpack body]; type numbers are append-only. A type with
//     IgnorableFlag (0x80) may be skipped by an older node; any other unknown
//     type, or a body that does not decode, panics, because a replica that
//     skipped it would silently diverge. Stopping loudly lets the operator
//     upgrade the node instead.
//   - Let a failed command leave partial writes. Handlers check everything
//     before writing, so the commands of a batch (and of a raft ApplyBatch)
//     share one memdb transaction — the main write-throughput lever — and one
//     command's domain error does not undo the others.
//   - Modify a stored record in place. memdb stores pointers that readers and
//     snapshots share; a change is always a new record.
//
// Key decisions:
//
//   - Records are msgpack maps with short, never-renamed keys, so a field added
//     by a newer node is ignored by an older one during a rolling upgrade.
//     Encoding sorts map keys, so a command always encodes to the same bytes.
//   - Indexes use our own typed indexer (schema.go): times sort
//     chronologically (sign bit flipped), strings are escaped and terminated
//     so compound keys never collide, and conditional indexes (jobs due to
//     fire, active deliveries per node, …) hold only the rows the hot queries
//     want. memdb does not enforce unique secondary indexes; Put checks them.
//   - The pipeline's commands (pipeline.go, control.go) carry decisions taken
//     outside and check them inside: Fire applies each job's part only if the
//     job is unchanged since the poller read it and refuses a second
//     occurrence for a slot; a delivery's fence is the Raft index of the
//     command that last assigned it, and DeliveryResults are accepted only
//     under the current fence; Assign and the retry/release actions move the
//     fence. Auto-completion of occurrences and endpoint auto-disable happen
//     in the same transaction as the result that causes them.
//   - Lifecycle events (001: job.created … endpoint.disabled, lifecycle.go)
//     are raised here, in the transaction of the change, with ids derived
//     from the Raft index, and only when an endpoint of the project is
//     subscribed to the type; API writes carry the caller's token id
//     (initiatorId). The poller fans them out like published events.
//   - The applied index and term are stored in memdb in the same transaction
//     as the data, so a State's Index always matches what it shows and a
//     snapshot's header index is exact.
//   - Snapshots stream [table byte][uvarint len][msgpack record] after a
//     versioned header and end with an end marker; restore builds a new memdb
//     aside and swaps it in only after the whole stream was read, then closes
//     the old state's AbandonCh (go-memdb v1.3.5 has no abandon channel of its
//     own) so that watchers of the old state wake up and re-query.
//   - Finished history (succeeded deliveries with their attempts, occurrences
//     no longer pending) lives in the archive (archive.go), not memdb: one
//     pre-encoded blob and one pointer-free entry per record, so the garbage
//     collector never walks it and a snapshot copies its bytes. Placement is a
//     function of the record, so every replica agrees on it; entries carry
//     the Raft indexes that archived and removed them, so a State sees the
//     archive at its own index. State's reads merge the two.
//   - A Batch may carry a Guard (a record that must still be at an index) and
//     StopOnError; the API uses both to tie a keyed request's write to its
//     Idempotency-Key claim in one command.
//   - Per-project quotas (quota.go) are enforced here, so they hold
//     whichever node takes the writes: live jobs, endpoints and undelivered
//     deliveries are counted by mustInsert/mustDelete in the transaction
//     that changes them (derived, rebuilt on restore); create and publish
//     rates are GCRA buckets in integer microseconds fed with the time the
//     API node stamped on the record, kept in the usage table and carried in
//     snapshots. A scheduled fire over the undelivered limit is stored as a
//     skipped occurrence with a SkipReason, never dropped silently; so is an
//     event whose fan-out (published, test or lifecycle) would pass it (a
//     skipped event). Limits are rows (cluster "*" and per project), not
//     constants, so changing DefaultLimits in a release does not change a
//     running cluster; nothing is enforced while the cluster row is absent,
//     because the leader writes it only once no replica of an older version
//     (which skips the quota tables) would apply differently.
//   - ext.go lets a build tag add tables, command types and snapshot records
//     without touching the code above. The default build adds none; the
//     chime_next tag (next.go) plays a newer version with an ignorable command
//     and an ignorable snapshot record for the rolling-upgrade test.
//   - Circuit breakers (breaker.go) are derived in Apply from reported
//     attempt results (DeliveryResult.Unreachable) with the command's time,
//     in a table of their own whose snapshot records are of an ignorable
//     type (0x90): an older node that ignores the flag keeps every record it
//     knows identical to the newer nodes' (fields on Endpoint would have made
//     its ModifyIndex differ). Ignorable snapshot record types are numbered
//     from 0x8A up, in the order they were added (0x8A limits, 0x8B usage,
//     0x90 breakers); a new one takes the next free number with the 0x80 bit.
package fsm
