// Package scheduler owns Chime's schedule maths: the schedule spec the job API takes, its
// validation and canonical encoding, next-fire computation for every kind (one-shot,
// interval, calendar times, daily/weekly/monthly recurrence, RFC 5545 rrule, cron) in any
// IANA zone, and the poller's pure decision for a due job (catch-up, misfire grace,
// cooldown, run limit, end date). It also holds the leader-only poller (poller.go) that
// applies these decisions, and the fan-out (fanout.go) that turns a decision or a manual
// trigger into an occurrence and placed deliveries; docs/schedules.md is the user-facing
// description with the test vectors, docs/delivery.md the pipeline's.
//
// # The poller
//
// It runs only between establish and revoke of leadership (a cluster.LeaderHook) and sleeps
// until the earliest due job or event, the poll interval, or a change of the jobs or
// events tables (a memdb watch), so a fire is late by milliseconds. Each tick reads what
// is due, calls Plan once per job, builds the occurrence (its id derived from the job and
// the slot's identity key, so one slot can never become two occurrences) and one delivery
// per destination, placed on a node by rendezvous hashing, and applies it all in Fire
// commands of bounded size. The FSM applies each job's part only if the job is unchanged
// since the read (compare-and-set on its ModifyIndex); a refused part is planned again from
// the new state. The poller never calls the dispatcher: deliveries are data. Every minute
// it also issues a Prune command for history older than the retention period.
//
// # What the maths files must never do
//
// They (every file but poller.go and fanout.go) do not read the clock (every function takes
// the time it needs), start goroutines, touch Raft, HTTP or the FSM, or import other Chime
// packages. Everything they return is a
// deterministic function of the arguments, so every node computes the same fires and the
// same occurrence keys, and a new leader recomputes exactly what the old one would have.
//
// # Key decisions
//
//   - Civil time first. Calendar, recurrence, rrule and cron schedules produce civil
//     date-times (a local date and wall-clock time, no zone) and only then resolve them to
//     instants. "Every N days/weeks/months" steps in civil dates, never in multiples of
//     24 h; intervals (recurrenceSeconds) step on the UTC timeline, anchor + k·N, and never
//     drift.
//   - DST rules, implemented in resolve.go from the zone's own transitions: a wall time that
//     exists once is that instant; one that exists twice (fall back) is the earlier
//     instant; one that does not exist (spring forward) is read with the offset in force
//     just before the jump (New York 02:30 → 03:30 EDT); two civil times that resolve to one
//     instant fire once, under the earliest civil time's key. time.Date is never asked to
//     resolve a gap or an overlap: its choice there is unspecified and differs by zone.
//   - rrule-go is pinned in go.mod and hidden behind civilRule (rrule.go). It only sees
//     floating civil times labelled UTC, never a zone with DST; DTSTART is the local
//     midnight of the start date; COUNT, UNTIL and DTSTART are refused in favour of
//     maxOccurrences, endAtUtc and startAt; only DAILY, WEEKLY, MONTHLY and YEARLY are
//     accepted because finer frequencies can make rrule-go scan without end.
//   - Next-fire cost does not depend on the schedule's age: every rule jumps to the latest
//     period in phase with its interval before searching (rrule-go gets a re-anchored
//     DTSTART), so a rule started ten years ago costs the same as one started today (under
//     1 µs for native kinds, a few µs for rrules; figures in docs/schedules.md).
//   - Bounded time everywhere: a civil search looks at most 100 years ahead (an rrule with
//     no match, such as February 30, is found out in milliseconds, see rrule.go), so a rule
//     with no slot is an error at creation and Next always returns.
//   - Occurrence identity: Slot.Key is the civil nominal time plus zone for civil schedules,
//     k for intervals, "once" for one-shots. With the job id it names an occurrence, so the
//     same slot can never become two occurrences, whichever leader plans it.
//   - Specs are stored as the bytes of Spec.Canonical (defaults filled in, normalised), and
//     compiled again on any node with the job's creation time; a compiled *Schedule is
//     immutable and safe to cache and share between goroutines.
//   - Smallest gap (mingap.go, for a project's minIntervalSeconds): every fire of the
//     windows where two fires of a civil schedule can come closest (one cycle from the first
//     fire, month starts, zone offset changes), not the next few fires: a 1,440-entry times
//     list can hide a dense cluster anywhere. Bounded: it stops at the first gap too small.
//
// # Time zone data
//
// Zones are loaded by name with time.LoadLocation (cached). The chime binary embeds the tz
// database (cmd/chime imports time/tzdata; so does this package's test binary), so a node
// without zoneinfo files still knows every zone. Note that Go prefers the host's zoneinfo
// (ZONEINFO, /usr/share/zoneinfo) when it exists; nodes agree on DST rules only if they
// run with the same tz data, e.g. the same container image.
package scheduler
