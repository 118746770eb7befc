package fsm

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Circuit breakers. A target (an endpoint, or a project's inline callbacks to
// one scheme://host:port) that keeps timing out or refusing connections is
// not called for a while: every delivery to it waits, without using up an
// attempt, until the breaker lets a probe through.
//
// The breaker is replicated state, derived in Apply from the attempt results
// the nodes report (DeliveryResult.Unreachable), exactly like the endpoint's
// consecutive-failure counter. So every node stops calling the target at the
// same point of the log, a node that joins or restarts knows it at once, and
// the API node shows what the dispatchers act on. A node-local breaker would
// make each node learn the failure separately (N× the hanging calls) and
// leave the API blind. Apply reads no clock: a breaker opens at the reporting
// command's At and stays open until At + cooldown; whether it has become
// half-open is decided by the reader's clock (StateAt).
//
// Breakers live in their own table, not on the Endpoint record: an older
// node applying the same DeliveryResults ignores the Unreachable flag, and if
// the breaker were fields of the endpoint, its ModifyIndex would then differ
// between old and new nodes and a later update with ifIndex could apply on
// some replicas only. A table the old node does not have cannot diverge
// anything it reads; its snapshot records are of an ignorable type (an older
// node skips them).

// TableBreakers holds one Breaker per target with recent unreachable
// attempts.
const TableBreakers = "breakers"

// Breaker settings (documented in docs/delivery.md).
const (
	// BreakerThreshold consecutive unreachable attempts (timeout,
	// connection refused or reset, TLS failure; no HTTP answer) open it.
	BreakerThreshold = 5
	// BreakerCooldown is how long it first stays open; it doubles on every
	// failed probe, up to BreakerMaxCooldown.
	BreakerCooldown    = 30 * time.Second
	BreakerMaxCooldown = 10 * time.Minute
	maxBreakerError    = 200
)

// Breaker states as shown by the API.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// Breaker is the failure record of one target. A target without a record is
// closed with no failures; any HTTP answer deletes the record.
type Breaker struct {
	Key        string `msgpack:"key,omitempty"` // BreakerKeyEndpoint or BreakerKeyCallback
	Project    string `msgpack:"proj,omitempty"`
	EndpointID string `msgpack:"ep,omitempty"`
	Target     string `msgpack:"target,omitempty"` // inline callbacks: scheme://host:port
	// Failures counts consecutive unreachable attempts.
	Failures int `msgpack:"fails,omitempty"`
	// Opens counts consecutive openings (the first, then each failed probe).
	Opens     int    `msgpack:"opens,omitempty"`
	OpenedAt  Millis `msgpack:"opened,omitempty"`
	Until     Millis `msgpack:"until,omitempty"` // 0 = closed
	LastError string `msgpack:"err,omitempty"`
	UpdatedAt Millis `msgpack:"uat,omitempty"`

	CreateIndex uint64 `msgpack:"ci,omitempty"`
	ModifyIndex uint64 `msgpack:"mi,omitempty"`
}

func (r *Breaker) key() string               { return r.Key }
func (r *Breaker) projectName() string       { return "" } // never blocks a project delete
func (r *Breaker) indexes() (uint64, uint64) { return r.CreateIndex, r.ModifyIndex }
func (r *Breaker) setIndexes(c, m uint64)    { r.CreateIndex, r.ModifyIndex = c, m }
func (r *Breaker) open() bool                { return r.Until != 0 }
func (r *Breaker) cooldown() time.Duration   { return breakerCooldown(r.Opens) }
func breakerCooldown(opens int) time.Duration {
	d := BreakerCooldown
	for i := 1; i < opens && d < BreakerMaxCooldown; i++ {
		d *= 2
	}
	return min(d, BreakerMaxCooldown)
}

// StateAt is the breaker's state at now: closed, open (no call until Until),
// or half_open (Until has passed: one probe call at a time may go).
func (r *Breaker) StateAt(now Millis) string {
	switch {
	case r == nil || r.Until == 0:
		return BreakerClosed
	case now < r.Until:
		return BreakerOpen
	}
	return BreakerHalfOpen
}

// BreakerKeyEndpoint is the breaker (and concurrency) key of an endpoint.
func BreakerKeyEndpoint(id string) string { return "ep " + id }

// BreakerKeyCallback is the key of a project's inline callbacks to rawURL's
// scheme, host and port. Per project, so that one tenant's failing calls
// never hold back another tenant's calls to the same host.
func BreakerKeyCallback(project, rawURL string) string {
	return "cb " + project + " " + CallbackTarget(rawURL)
}

// CallbackTarget is scheme://host:port of rawURL, lower-cased, with the
// scheme's default port ("" parts for an unparsable URL).
func CallbackTarget(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "invalid"
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// TargetKey is the breaker and concurrency key of d's target: its endpoint,
// or its job's inline callback host ("" if the job is gone).
func (s *State) TargetKey(d *Delivery) string {
	if d.EndpointID != "" {
		return BreakerKeyEndpoint(d.EndpointID)
	}
	obj, err := s.txn.First(TableJobs, IndexID, d.JobID)
	if err != nil || obj == nil {
		return ""
	}
	return BreakerKeyCallback(d.Project, obj.(*Job).CallbackURL)
}

// Breaker returns the breaker of key, nil when it has none (closed).
func (s *State) Breaker(key string) *Breaker {
	obj, err := s.txn.First(TableBreakers, IndexID, key)
	if err != nil || obj == nil {
		return nil
	}
	return obj.(*Breaker)
}

// Breakers lists every breaker record, by key.
func (s *State) Breakers() []*Breaker { return all[Breaker](s.iter(TableBreakers, IndexID)) }

// breakerResult updates the breaker of d's target with an accepted attempt
// result: an HTTP answer of any status deletes it (the target is reachable);
// an unreachable attempt counts, opens the breaker at BreakerThreshold, and
// reopens it with a doubled cooldown when it was the probe (started at or
// after Until). Results of calls started before the breaker opened only
// count: they say nothing about the probe.
func (a *applier) breakerResult(at Millis, d *Delivery, r *DeliveryResult) {
	key := a.state().TargetKey(d)
	if key == "" {
		return
	}
	cur, _ := a.first(TableBreakers, IndexID, key).(*Breaker)
	if !r.Unreachable {
		if cur != nil {
			a.mustDelete(TableBreakers, cur)
		}
		return
	}
	b := Breaker{Key: key, Project: d.Project, EndpointID: d.EndpointID}
	if cur != nil {
		b = *cur
	} else if d.EndpointID == "" {
		b.Target = strings.TrimPrefix(key, "cb "+d.Project+" ")
	}
	b.Failures++
	b.LastError = r.Attempt.Error
	if len(b.LastError) > maxBreakerError {
		b.LastError = b.LastError[:maxBreakerError]
	}
	b.UpdatedAt = at
	switch {
	case !b.open() && b.Failures >= BreakerThreshold:
		b.Opens = 1
		b.OpenedAt, b.Until = at, at+Millis(b.cooldown().Milliseconds())
	case b.open() && r.Attempt.StartedAt >= b.Until:
		b.Opens++
		b.OpenedAt, b.Until = at, at+Millis(b.cooldown().Milliseconds())
	}
	if cur != nil {
		b.setIndexes(cur.CreateIndex, a.index)
	} else {
		b.setIndexes(a.index, a.index)
	}
	a.mustInsert(TableBreakers, &b)
}

// pruneBreakers removes up to limit breakers not updated since before: a
// target nobody has called since (a deleted endpoint, a job's old host).
func (a *applier) pruneBreakers(before Millis, limit int) {
	var old []*Breaker
	for _, b := range a.state().Breakers() {
		if b.UpdatedAt <= before && len(old) < limit {
			old = append(old, b)
		}
	}
	for _, b := range old {
		a.mustDelete(TableBreakers, b)
	}
}
