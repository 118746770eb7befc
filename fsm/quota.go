package fsm

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// Per-project quotas (issue 12, item 4).
//
// Counts (live jobs, endpoints, undelivered deliveries) are checked here, in
// Apply, against counters kept in the same transaction as the records they
// count: every replica decides the same way, and two creates sent through two
// nodes at once are ordered by the log, so together they can never overshoot
// a limit. Rates are token buckets kept in the same place (GCRA: one
// "theoretical arrival time" per bucket, in integer microseconds, so no
// floating point can differ between replicas), fed with the time the API
// node put in the record (CreatedAt) or the command (Fire.At): the clock is
// read outside Apply, as for everything else. A node whose clock runs ahead
// makes the other nodes' writes look early, so skew only ever makes a limit
// stricter, never looser. The API checks the same rules against its local
// state first, so a refused write usually never reaches the log.

// ClusterLimitsID is the id of the cluster-wide limits row; every other row
// is named after the project it overrides.
const ClusterLimitsID = "*"

// Unlimited, as a limit, means no limit at all. 0 means "not set": a project
// row then inherits the cluster row's value, and the cluster row's unset
// values are unlimited.
const Unlimited int64 = -1

// ErrQuota is the kind of a refused write that would exceed a project's
// limit (HTTP 429).
var ErrQuota = errors.New("quota exceeded")

// CodeQuota is ErrQuota's stable code.
const CodeQuota = "quota_exceeded"

// Limits is a cluster-wide (ID ClusterLimitsID) or per-project set of limits.
type Limits struct {
	ID                 string `msgpack:"id,omitempty"`
	MaxJobs            int64  `msgpack:"jobs,omitempty"`  // live jobs: active or paused
	MaxEndpoints       int64  `msgpack:"eps,omitempty"`   // endpoints, enabled or not
	MaxUndelivered     int64  `msgpack:"undel,omitempty"` // deliveries not yet succeeded nor cancelled
	CreatesPerSecond   int64  `msgpack:"cps,omitempty"`   // job and endpoint creates
	CreateBurst        int64  `msgpack:"cburst,omitempty"`
	PublishesPerSecond int64  `msgpack:"pps,omitempty"` // events published, manual triggers, endpoint tests
	PublishBurst       int64  `msgpack:"pburst,omitempty"`
	MinIntervalSeconds int64  `msgpack:"minint,omitempty"` // the smallest gap between two fires of a job
	// MaxScheduledEvents bounds the events waiting for their scheduledAt:
	// they cost memory now and fan out later, whatever the publish rate.
	MaxScheduledEvents int64  `msgpack:"schedev,omitempty"`
	UpdatedAt          Millis `msgpack:"uat,omitempty"`
	CreateIndex        uint64 `msgpack:"ci,omitempty"`
	ModifyIndex        uint64 `msgpack:"mi,omitempty"`
}

// DefaultLimits are the cluster-wide limits a new cluster starts with (the
// API's bootstrap writes them when the cluster has no limits row, see
// docs/operations.md, "Limits"). They are data, not code: a cluster keeps the
// limits it was given even if a later release changes these.
var DefaultLimits = Limits{
	ID:                 ClusterLimitsID,
	MaxJobs:            10_000,
	MaxEndpoints:       1_000,
	MaxUndelivered:     10_000,
	CreatesPerSecond:   200,
	CreateBurst:        400,
	PublishesPerSecond: 200,
	PublishBurst:       400,
	MinIntervalSeconds: 1,
	MaxScheduledEvents: 10_000,
}

// Effective merges a project's row over the cluster row: a field the project
// row leaves at 0 is the cluster's. Either may be nil. In the result, 0 and
// Unlimited both mean no limit; use the accessors.
func Effective(cluster, project *Limits) Limits {
	var out Limits
	if cluster != nil {
		out = *cluster
	}
	if project == nil {
		return out
	}
	pick := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	pick(&out.MaxJobs, project.MaxJobs)
	pick(&out.MaxEndpoints, project.MaxEndpoints)
	pick(&out.MaxUndelivered, project.MaxUndelivered)
	pick(&out.CreatesPerSecond, project.CreatesPerSecond)
	pick(&out.CreateBurst, project.CreateBurst)
	pick(&out.PublishesPerSecond, project.PublishesPerSecond)
	pick(&out.PublishBurst, project.PublishBurst)
	pick(&out.MinIntervalSeconds, project.MinIntervalSeconds)
	pick(&out.MaxScheduledEvents, project.MaxScheduledEvents)
	out.ID = project.ID
	return out
}

// limited reports whether v is a limit (not unset nor Unlimited).
func limited(v int64) bool { return v > 0 }

// Usage is what a project uses, kept by Apply. The counts are derived (and
// rebuilt on restore); the buckets are not, so they travel in snapshots.
type Usage struct {
	Project     string `msgpack:"proj,omitempty"`
	Jobs        int64  `msgpack:"jobs,omitempty"`
	Endpoints   int64  `msgpack:"eps,omitempty"`
	Undelivered int64  `msgpack:"undel,omitempty"`
	// Scheduled counts the project's events not yet fanned out.
	Scheduled int64 `msgpack:"sched,omitempty"`
	// CreateTAT and PublishTAT are the buckets' theoretical arrival times
	// (GCRA), in Unix microseconds.
	CreateTAT  int64 `msgpack:"ctat,omitempty"`
	PublishTAT int64 `msgpack:"ptat,omitempty"`
	// ClaimTAT is the bucket of Idempotency-Key claims (QuotaClaim).
	ClaimTAT int64 `msgpack:"itat,omitempty"`
}

func (r *Limits) key() string               { return r.ID }
func (r *Limits) projectName() string       { return "" }
func (r *Limits) indexes() (uint64, uint64) { return r.CreateIndex, r.ModifyIndex }
func (r *Limits) setIndexes(c, m uint64)    { r.CreateIndex, r.ModifyIndex = c, m }
func (r *Usage) key() string                { return r.Project }
func (r *Usage) projectName() string        { return "" }
func (r *Usage) indexes() (uint64, uint64)  { return 0, 0 }
func (r *Usage) setIndexes(uint64, uint64)  {}

// Table names of the quota tables.
const (
	TableLimits = "limits"
	TableUsage  = "usage"
)

// The quota tables' snapshot record types carry the ignorable bit: a node of
// an older version, which enforces no quota, skips them.
var limitsTable = &tableDef{
	name: TableLimits, singular: "limits", num: 0x8A,
	schema: &memdb.TableSchema{Name: TableLimits, Indexes: indexes(
		index(IndexID, true, nil, str(func(r *Limits) string { return r.ID })),
	)},
	recordType: reflect.TypeFor[*Limits](),
	decode:     decodeRecord[Limits],
	idArgs:     stringID,
	validate: func(r record) *Error {
		l := r.(*Limits)
		if l.ID == "" {
			return invalid("id", "id is required")
		}
		for _, v := range []int64{l.MaxJobs, l.MaxEndpoints, l.MaxUndelivered, l.CreatesPerSecond, l.CreateBurst,
			l.PublishesPerSecond, l.PublishBurst, l.MinIntervalSeconds, l.MaxScheduledEvents} {
			if v < Unlimited {
				return invalid("", "a limit is positive, 0 (inherit) or -1 (unlimited)")
			}
		}
		return nil
	},
}

var usageTable = &tableDef{
	name: TableUsage, singular: "usage", num: 0x8B,
	schema: &memdb.TableSchema{Name: TableUsage, Indexes: indexes(
		index(IndexID, true, nil, str(func(r *Usage) string { return r.Project })),
	)},
	recordType: reflect.TypeFor[*Usage](),
	decode:     decodeRecord[Usage],
	idArgs:     stringID,
	validate: func(record) *Error {
		return invalid("table", "usage is kept by the state machine and cannot be written")
	},
}

// ---------------------------------------------------------------------------
// Reading.

// Limits returns the row id (ClusterLimitsID or a project), or ErrNotFound.
func (s *State) Limits(id string) (*Limits, error) {
	return get[Limits](s, TableLimits, fmt.Sprintf("limits %q", id), id)
}

// EffectiveLimits is what applies to project now: nothing while the cluster
// has no cluster-wide row (see limitsOf).
func (s *State) EffectiveLimits(project string) Limits {
	c, err := s.Limits(ClusterLimitsID)
	if err != nil {
		return Limits{ID: project}
	}
	p, _ := s.Limits(project)
	l := Effective(c, p)
	l.ID = project
	return l
}

// Usage returns what project uses (zero when it has no row yet).
func (s *State) Usage(project string) Usage {
	if u, err := get[Usage](s, TableUsage, "usage", project); err == nil {
		return *u
	}
	return Usage{Project: project}
}

// Quota operations that a write may be checked for.
type QuotaOp int

const (
	QuotaCreateJob QuotaOp = iota + 1
	QuotaCreateEndpoint
	QuotaPublish // an event, a manual trigger or an endpoint test
	// QuotaPublishEvent is a publish that stores an event (a published
	// event, an endpoint test): it also waits among the scheduled events.
	QuotaPublishEvent
	// QuotaClaim is a new Idempotency-Key claim: a Raft write, and a record
	// kept for a day with its answer, whatever the request turns out to be.
	QuotaClaim
)

// CheckQuota is the API's pre-check: the rule Apply will run, against this
// (possibly slightly stale) state, at time at. It returns an *Error of kind
// ErrQuota, or nil.
func (s *State) CheckQuota(project string, op QuotaOp, at Millis) error {
	l := s.EffectiveLimits(project)
	u := s.Usage(project)
	return errOf(checkOp(&l, &u, op, at, 1))
}

// ---------------------------------------------------------------------------
// Applying.

// checkOp checks op against l and u and, when allowed, takes its tokens from
// u's buckets (u is the caller's copy). n is the number of new deliveries a
// publish brings (checked against the undelivered limit when known).
func checkOp(l *Limits, u *Usage, op QuotaOp, at Millis, n int64) *Error {
	switch op {
	case QuotaCreateJob:
		if limited(l.MaxJobs) && u.Jobs >= l.MaxJobs {
			return quotaErr("maxJobs", 0, "project %q has %d live jobs, its limit (maxJobs); delete, archive or cancel jobs, or ask an admin to raise it", u.Project, l.MaxJobs)
		}
		return bucket(&u.CreateTAT, at, l.CreatesPerSecond, l.CreateBurst, "createsPerSecond", u.Project)
	case QuotaCreateEndpoint:
		if limited(l.MaxEndpoints) && u.Endpoints >= l.MaxEndpoints {
			return quotaErr("maxEndpoints", 0, "project %q has %d endpoints, its limit (maxEndpoints); delete endpoints, or ask an admin to raise it", u.Project, l.MaxEndpoints)
		}
		return bucket(&u.CreateTAT, at, l.CreatesPerSecond, l.CreateBurst, "createsPerSecond", u.Project)
	case QuotaClaim:
		// Every keyed request is at most one create or one publish (or a
		// state change), so claims share the sum of both rates: a client
		// that keys everything it sends is never held back by it, while a
		// loop of keyed requests that fail (each one a claim and a 4xx
		// answer kept for a day) is bounded like creates and publishes.
		if !limited(l.CreatesPerSecond) || !limited(l.PublishesPerSecond) {
			return nil
		}
		burst := func(rate, b int64) int64 {
			if limited(b) {
				return b
			}
			return rate
		}
		rate := l.CreatesPerSecond + l.PublishesPerSecond
		e := bucket(&u.ClaimTAT, at, rate, burst(l.CreatesPerSecond, l.CreateBurst)+burst(l.PublishesPerSecond, l.PublishBurst),
			"createsPerSecond", u.Project)
		if e != nil {
			e.Field = "Idempotency-Key"
			e.Message = fmt.Sprintf("project %q claims Idempotency-Keys faster than its createsPerSecond + publishesPerSecond (%d per second)", u.Project, rate)
		}
		return e
	case QuotaPublish, QuotaPublishEvent:
		if e := undeliveredErr(l, u, n); e != nil {
			return e
		}
		if op == QuotaPublishEvent {
			if e := scheduledErr(l, u); e != nil {
				return e
			}
		}
		return bucket(&u.PublishTAT, at, l.PublishesPerSecond, l.PublishBurst, "publishesPerSecond", u.Project)
	}
	return nil
}

// UndeliveredRetryAfterMs is the Retry-After of a write refused because the
// project holds too many undelivered deliveries: they settle as attempts
// finish, but not in a time that can be computed.
const UndeliveredRetryAfterMs = 30_000

func undeliveredErr(l *Limits, u *Usage, n int64) *Error {
	if limited(l.MaxUndelivered) && u.Undelivered+n > l.MaxUndelivered {
		return quotaErr("maxUndelivered", UndeliveredRetryAfterMs,
			"project %q has %d undelivered deliveries (pending, in flight, retrying, held or dead-lettered) and may hold %d (maxUndelivered); retry or cancel dead letters, or ask an admin to raise it",
			u.Project, u.Undelivered, l.MaxUndelivered)
	}
	return nil
}

// scheduledErr refuses one more event waiting to be fanned out when the
// project already has its limit of them.
func scheduledErr(l *Limits, u *Usage) *Error {
	if limited(l.MaxScheduledEvents) && u.Scheduled >= l.MaxScheduledEvents {
		return quotaErr("maxScheduledEvents", UndeliveredRetryAfterMs,
			"project %q has %d events waiting to be published and may hold %d (maxScheduledEvents); wait for them to fan out, or ask an admin to raise it",
			u.Project, u.Scheduled, l.MaxScheduledEvents)
	}
	return nil
}

// bucket is a GCRA token bucket of rate per second holding burst tokens
// (burst 0: rate), all in integer microseconds.
func bucket(tat *int64, at Millis, rate, burst int64, field, project string) *Error {
	if !limited(rate) {
		return nil
	}
	if !limited(burst) {
		burst = rate
	}
	interval := max(1_000_000/rate, 1)
	now := int64(at) * 1000
	next := max(*tat, now) + interval
	if over := next - now - interval*burst; over > 0 {
		return quotaErr(field, (over+999)/1000, "project %q sends more than %d per second (%s, burst %d)", project, rate, field, burst)
	}
	*tat = next
	return nil
}

func quotaErr(field string, retryAfterMs int64, format string, args ...any) *Error {
	return &Error{Kind: ErrQuota, Code: CodeQuota, Field: field, Message: fmt.Sprintf(format, args...), RetryAfterMs: retryAfterMs}
}

// usageOf is project's usage as this transaction sees it. The copy it
// returns is this transaction's own: change it in place; flushUsage stores it.
func (a *applier) usageOf(project string) *Usage {
	if u := a.usage[project]; u != nil {
		return u
	}
	u := &Usage{Project: project}
	if cur, _ := a.first(TableUsage, IndexID, project).(*Usage); cur != nil {
		*u = *cur
	}
	if a.usage == nil {
		a.usage = map[string]*Usage{}
	}
	a.usage[project] = u
	return u
}

// limitsOf is what applies to project in this transaction. Nothing is
// enforced while the cluster-wide row does not exist, project rows included:
// the leader writes that row only once every server in the Raft
// configuration enforces quotas (api.BootstrapHook), because an older
// replica, which skips the quota tables, would go on applying the writes a
// newer one refuses, and the replicas' jobs and deliveries would differ.
func (a *applier) limitsOf(project string) Limits {
	c, _ := a.first(TableLimits, IndexID, ClusterLimitsID).(*Limits)
	if c == nil {
		return Limits{}
	}
	p, _ := a.first(TableLimits, IndexID, project).(*Limits)
	return Effective(c, p)
}

// quota checks op for project and takes its tokens; nothing is written when
// it fails.
func (a *applier) quota(project string, op QuotaOp, at Millis, n int64) *Error {
	l := a.limitsOf(project)
	u := a.usageOf(project)
	trial := *u
	if e := checkOp(&l, &trial, op, at, n); e != nil {
		return e
	}
	*u = trial
	return nil
}

// flushUsage stores the usage rows this transaction changed.
func (a *applier) flushUsage() {
	for _, u := range a.usage {
		if err := a.txn.Insert(TableUsage, u); err != nil {
			panic(fmt.Sprintf("fsm: insert into %s at raft index %d: %v", TableUsage, a.index, err))
		}
	}
	a.usage = nil
}

// counts is what a record adds to its project's usage.
type counts struct{ jobs, eps, undelivered, scheduled int64 }

// countOf is what obj of table adds to its project's counts.
func countOf(table string, obj any) (string, counts) {
	switch r := obj.(type) {
	case *Job:
		if table == TableJobs && (r.Status == JobActive || r.Status == JobPaused) {
			return r.Project, counts{jobs: 1}
		}
		return r.Project, counts{}
	case *Endpoint:
		return r.Project, counts{eps: 1}
	case *Delivery:
		if r.Status != DeliverySucceeded && r.Status != DeliveryCancelled {
			return r.Project, counts{undelivered: 1}
		}
		return r.Project, counts{}
	case *Event:
		if table == TableEvents && r.Status == EventScheduled {
			return r.Project, counts{scheduled: 1}
		}
		return r.Project, counts{}
	}
	return "", counts{}
}

func countedTable(table string) bool {
	return table == TableJobs || table == TableEndpoints || table == TableDeliveries || table == TableEvents
}

// recount updates the counts for obj of table replacing (or, with gone,
// removing) whatever is stored under its id. mustInsert and mustDelete call
// it, so every way a record enters or leaves memdb is counted.
func (a *applier) recount(table string, obj any, gone bool) {
	r := obj.(record)
	old, err := a.txn.First(table, IndexID, r.key())
	if err != nil {
		panic(fmt.Sprintf("fsm: lookup %s at raft index %d: %v", table, a.index, err))
	}
	if old != nil {
		p, c := countOf(table, old)
		a.addUsage(p, counts{-c.jobs, -c.eps, -c.undelivered, -c.scheduled})
	}
	if !gone {
		p, c := countOf(table, obj)
		a.addUsage(p, c)
	}
}

func (a *applier) addUsage(project string, c counts) {
	if project == "" || c == (counts{}) {
		return
	}
	u := a.usageOf(project)
	u.Jobs += c.jobs
	u.Endpoints += c.eps
	u.Undelivered += c.undelivered
	u.Scheduled += c.scheduled
}

// putQuota checks the quota of a generic Put: a new live job, a new
// endpoint, a published event. Updates are free (a job made live again
// counts as a create).
func (a *applier) putQuota(existing, rec record) *Error {
	switch r := rec.(type) {
	case *Job:
		live := r.Status == JobActive || r.Status == JobPaused
		old, _ := existing.(*Job)
		if live && (old == nil || (old.Status != JobActive && old.Status != JobPaused)) {
			at := r.UpdatedAt
			if old == nil {
				at = r.CreatedAt
			}
			return a.quota(r.Project, QuotaCreateJob, at, 0)
		}
	case *Endpoint:
		if existing == nil {
			return a.quota(r.Project, QuotaCreateEndpoint, r.CreatedAt, 0)
		}
	case *Event:
		if existing == nil {
			return a.quota(r.Project, QuotaPublishEvent, r.CreatedAt, 1)
		}
	case *IdempotencyRecord:
		// A new claim, or one taking over an expired record; settling a
		// claim (its answer, its release) is free.
		old, _ := existing.(*IdempotencyRecord)
		if r.Status == 0 && (old == nil || old.ExpiresAt <= r.CreatedAt) {
			if project, _, ok := strings.Cut(r.ID, "/"); ok {
				return a.quota(project, QuotaClaim, r.CreatedAt, 0)
			}
		}
	}
	return nil
}

// rebuildUsage recomputes every project's counts from the records (after a
// restore), keeping the buckets the snapshot carried.
func rebuildUsage(txn *memdb.Txn) error {
	usage := map[string]*Usage{}
	it, err := txn.Get(TableUsage, IndexID)
	if err != nil {
		return err
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		u := *obj.(*Usage)
		u.Jobs, u.Endpoints, u.Undelivered, u.Scheduled = 0, 0, 0, 0
		usage[u.Project] = &u
	}
	for _, table := range []string{TableJobs, TableEndpoints, TableDeliveries, TableEvents} {
		it, err := txn.Get(table, IndexID)
		if err != nil {
			return err
		}
		for obj := it.Next(); obj != nil; obj = it.Next() {
			p, c := countOf(table, obj)
			if p == "" || c == (counts{}) {
				continue
			}
			u := usage[p]
			if u == nil {
				u = &Usage{Project: p}
				usage[p] = u
			}
			u.Jobs += c.jobs
			u.Endpoints += c.eps
			u.Undelivered += c.undelivered
			u.Scheduled += c.scheduled
		}
	}
	for _, u := range usage {
		if err := txn.Insert(TableUsage, u); err != nil {
			return err
		}
	}
	return nil
}

// deleteProjectQuota removes a deleted project's limits and usage rows.
func (a *applier) deleteProjectQuota(name string) {
	for _, table := range []string{TableLimits, TableUsage} {
		if obj, _ := a.txn.First(table, IndexID, name); obj != nil {
			if err := a.txn.Delete(table, obj); err != nil {
				panic(fmt.Sprintf("fsm: delete from %s at raft index %d: %v", table, a.index, err))
			}
		}
	}
	delete(a.usage, name)
}

// fireQuota checks that a scheduled fire's (or an event fan-out's) n
// deliveries fit under project's undelivered limit.
func (a *applier) fireQuota(project string, n int64) *Error {
	l := a.limitsOf(project)
	return undeliveredErr(&l, a.usageOf(project), n)
}

// lifecycleQuota says why a lifecycle event raised now must be stored as
// skipped instead of scheduled ("" when it may wait for its fan-out): the
// change that raised it is applied either way, and the event's fan-out is
// checked against maxUndelivered when the poller publishes it.
func (a *applier) lifecycleQuota(project string) string {
	l := a.limitsOf(project)
	if e := scheduledErr(&l, a.usageOf(project)); e != nil {
		return e.Message
	}
	return ""
}
