package fsm

import (
	"strconv"
	"time"
)

// The msgpack tag names below are part of the replicated log and of every
// snapshot ever written: never rename or reuse one. Records are encoded as maps
// (not arrays) so that a field added by a newer node is ignored by an older
// decoder during a rolling upgrade. Short names keep snapshots small.

// Millis is a point in time in Unix milliseconds, UTC; 0 means unset.
// Commands carry times as Millis so that Apply never reads the clock.
type Millis int64

// Time returns m as a UTC time, or the zero time when m is 0.
func (m Millis) Time() time.Time {
	if m == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(m)).UTC()
}

// MillisOf returns t in Unix milliseconds, or 0 for the zero time.
func MillisOf(t time.Time) Millis {
	if t.IsZero() {
		return 0
	}
	return Millis(t.UnixMilli())
}

// Job statuses.
const (
	JobActive    = "active"
	JobPaused    = "paused"
	JobArchived  = "archived"
	JobCompleted = "completed"
	JobCancelled = "cancelled"
)

// JobStatuses lists every job status; State.Jobs reads one index run per
// status, so a new status must be added here.
var JobStatuses = []string{JobActive, JobPaused, JobArchived, JobCompleted, JobCancelled}

// Occurrence statuses. Every status but pending is terminal.
const (
	OccurrencePending   = "pending"
	OccurrenceCompleted = "completed"
	OccurrenceSkipped   = "skipped"
	OccurrenceMissed    = "missed"
	OccurrenceCooldown  = "cooldown"
)

// Event statuses.
const (
	EventScheduled = "scheduled"
	EventPublished = "published"
	// EventSkipped: Chime did not fan the event out (SkipReason says why,
	// "quota_exceeded: …"); it has no deliveries.
	EventSkipped = "skipped"
)

// SettledAt is when an event stopped waiting (published or skipped): the
// latest of its times, what retention measures its age by.
func (e *Event) SettledAt() Millis { return max(e.CreatedAt, e.ScheduledAt, e.PublishedAt) }

// Delivery statuses. pending, in_flight and retry_scheduled are active;
// succeeded, dead_letter and cancelled are terminal; held is neither (it waits
// for its endpoint to be enabled again).
const (
	DeliveryPending        = "pending"
	DeliveryInFlight       = "in_flight"
	DeliveryRetryScheduled = "retry_scheduled"
	DeliverySucceeded      = "succeeded"
	DeliveryDeadLetter     = "dead_letter"
	DeliveryCancelled      = "cancelled"
	DeliveryHeld           = "held"
)

// Retry backoff kinds.
const (
	BackoffFixed       = "fixed"
	BackoffLinear      = "linear"
	BackoffExponential = "exponential"
)

// DefaultProject is created by CmdBootstrap and can never be deleted.
const DefaultProject = "default"

// Project is a tenant; every other record belongs to one.
type Project struct {
	Name          string `msgpack:"name,omitempty"`
	Description   string `msgpack:"desc,omitempty"`
	SigningSecret string `msgpack:"sigsec,omitempty"`
	// AllowedTargetCIDRs, when TargetCIDRsSet, replace the node's
	// --allowed-target-cidrs for this project's deliveries (within them:
	// the flag stays the upper bound); an empty list allows no special
	// range. Only an admin sets them (dispatch/targets.go).
	AllowedTargetCIDRs []string `msgpack:"cidrs,omitempty"`
	TargetCIDRsSet     bool     `msgpack:"cidrset,omitempty"`
	CreatedAt          Millis   `msgpack:"cat,omitempty"`
	UpdatedAt          Millis   `msgpack:"uat,omitempty"`
	CreateIndex        uint64   `msgpack:"ci,omitempty"`
	ModifyIndex        uint64   `msgpack:"mi,omitempty"`
}

// Token is an API credential. Only the hash of its secret is stored.
type Token struct {
	ID          string   `msgpack:"id,omitempty"`
	Name        string   `msgpack:"name,omitempty"`
	Hash        string   `msgpack:"hash,omitempty"`   // hex sha256 of the secret
	Prefix      string   `msgpack:"prefix,omitempty"` // first characters, shown in lists
	Scopes      []string `msgpack:"scopes,omitempty"`
	Project     string   `msgpack:"proj,omitempty"` // "" = any project
	ExpiresAt   Millis   `msgpack:"exp,omitempty"`
	CreatedAt   Millis   `msgpack:"cat,omitempty"`
	CreatedBy   string   `msgpack:"by,omitempty"`
	CreateIndex uint64   `msgpack:"ci,omitempty"`
	ModifyIndex uint64   `msgpack:"mi,omitempty"`
}

// RetryPolicy says how often and how far apart a delivery is retried.
type RetryPolicy struct {
	MaxAttempts    int     `msgpack:"max,omitempty"`
	Backoff        string  `msgpack:"backoff,omitempty"` // fixed | linear | exponential
	InitialDelayMs int64   `msgpack:"init,omitempty"`
	MaxDelayMs     int64   `msgpack:"maxdelay,omitempty"`
	Jitter         float64 `msgpack:"jitter,omitempty"`
}

// Endpoint is a webhook destination subscribed to event types.
type Endpoint struct {
	ID                  string            `msgpack:"id,omitempty"`
	Project             string            `msgpack:"proj,omitempty"`
	URL                 string            `msgpack:"url,omitempty"`
	Description         string            `msgpack:"desc,omitempty"`
	Method              string            `msgpack:"method,omitempty"`
	Headers             map[string]string `msgpack:"hdrs,omitempty"`
	TimeoutMs           int64             `msgpack:"tmo,omitempty"`
	Secret              string            `msgpack:"secret,omitempty"`
	PreviousSecret      string            `msgpack:"prevsec,omitempty"`
	PreviousSecretUntil Millis            `msgpack:"prevuntil,omitempty"`
	Retry               RetryPolicy       `msgpack:"retry,omitempty"`
	EventTypes          []string          `msgpack:"etypes,omitempty"`
	Enabled             bool              `msgpack:"on,omitempty"`
	DisabledReason      string            `msgpack:"offwhy,omitempty"`
	ConsecutiveFailures int               `msgpack:"fails,omitempty"`
	CreatedAt           Millis            `msgpack:"cat,omitempty"`
	UpdatedAt           Millis            `msgpack:"uat,omitempty"`
	CreateIndex         uint64            `msgpack:"ci,omitempty"`
	ModifyIndex         uint64            `msgpack:"mi,omitempty"`
}

// Job is a schedule plus a target (inline callback and/or event type).
type Job struct {
	ID           string `msgpack:"id,omitempty"`
	Project      string `msgpack:"proj,omitempty"`
	Name         string `msgpack:"name,omitempty"`
	Description  string `msgpack:"desc,omitempty"`
	Status       string `msgpack:"status,omitempty"`
	ScheduleKind string `msgpack:"skind,omitempty"`
	Schedule     []byte `msgpack:"sched,omitempty"` // owned by scheduler/; never interpreted here
	// ScheduleSetAt is when the schedule was set: the origin of delaySeconds
	// and of the default start, so every node compiles the same schedule.
	ScheduleSetAt  Millis            `msgpack:"schedat,omitempty"`
	CallbackURL    string            `msgpack:"url,omitempty"`
	Method         string            `msgpack:"method,omitempty"`
	Headers        map[string]string `msgpack:"hdrs,omitempty"`
	Payload        []byte            `msgpack:"payload,omitempty"` // raw JSON
	EventType      string            `msgpack:"etype,omitempty"`
	SigningSecret  string            `msgpack:"sigsec,omitempty"`
	IdempotencyKey string            `msgpack:"idem,omitempty"`
	CorrelationID  string            `msgpack:"corr,omitempty"`
	Retry          RetryPolicy       `msgpack:"retry,omitempty"`
	TimeoutMs      int64             `msgpack:"tmo,omitempty"`
	CooldownMs     int64             `msgpack:"cool,omitempty"`
	MisfireGraceMs int64             `msgpack:"grace,omitempty"`
	CatchUp        string            `msgpack:"catchup,omitempty"`
	// ManualCompletion keeps occurrences pending until completed or skipped
	// by hand (a reminder, as in 000) instead of completing them once their
	// deliveries finish (a callback, as in 002).
	ManualCompletion bool   `msgpack:"mancomp,omitempty"`
	NextFireAt       Millis `msgpack:"next,omitempty"`   // 0 = none
	Cursor           []byte `msgpack:"cursor,omitempty"` // opaque scheduler state
	OccurrenceCount  int64  `msgpack:"occs,omitempty"`
	// LastNumber is the number of the job's latest occurrence, manual
	// triggers included (OccurrenceCount leaves them out: they do not use up
	// maxOccurrences). The next occurrence is LastNumber+1.
	LastNumber       int64  `msgpack:"lastnum,omitempty"`
	LastOccurrenceID string `msgpack:"lastocc,omitempty"`
	LastFiredAt      Millis `msgpack:"lastfire,omitempty"`
	LastCompletedAt  Millis `msgpack:"lastdone,omitempty"`
	SeriesID         string `msgpack:"series,omitempty"`
	CreatedBy        string `msgpack:"by,omitempty"`
	CreatedAt        Millis `msgpack:"cat,omitempty"`
	UpdatedAt        Millis `msgpack:"uat,omitempty"`
	CreateIndex      uint64 `msgpack:"ci,omitempty"`
	ModifyIndex      uint64 `msgpack:"mi,omitempty"`
}

// Occurrence is one firing of a job, numbered within the job.
type Occurrence struct {
	ID             string `msgpack:"id,omitempty"`
	JobID          string `msgpack:"job,omitempty"`
	Project        string `msgpack:"proj,omitempty"`
	Number         int64  `msgpack:"num,omitempty"`
	IdentityKey    string `msgpack:"ident,omitempty"`
	ScheduledFor   Millis `msgpack:"sched,omitempty"`
	FiredAt        Millis `msgpack:"fired,omitempty"`
	Status         string `msgpack:"status,omitempty"`
	MissedCount    int64  `msgpack:"missed,omitempty"`
	Manual         bool   `msgpack:"manual,omitempty"`
	IdempotencyKey string `msgpack:"idem,omitempty"`
	CompletedAt    Millis `msgpack:"done,omitempty"`
	// SkipReason says why Chime itself skipped the occurrence (a quota),
	// "" when it was skipped by hand or not skipped.
	SkipReason  string `msgpack:"skipwhy,omitempty"`
	CreateIndex uint64 `msgpack:"ci,omitempty"`
	ModifyIndex uint64 `msgpack:"mi,omitempty"`
}

// Terminal reports whether o is no longer pending.
func (o *Occurrence) Terminal() bool {
	switch o.Status {
	case OccurrenceCompleted, OccurrenceSkipped, OccurrenceMissed, OccurrenceCooldown:
		return true
	}
	return false
}

// Event is a published business event, fanned out to subscribed endpoints.
type Event struct {
	ID             string `msgpack:"id,omitempty"`
	Project        string `msgpack:"proj,omitempty"`
	Type           string `msgpack:"type,omitempty"`
	Data           []byte `msgpack:"data,omitempty"`
	ScheduledAt    Millis `msgpack:"sched,omitempty"`
	PublishedAt    Millis `msgpack:"pub,omitempty"`
	Status         string `msgpack:"status,omitempty"`
	IdempotencyKey string `msgpack:"idem,omitempty"`
	InitiatorID    string `msgpack:"init,omitempty"`
	// SkipEndpoint is an endpoint the event must not go to (the one an
	// endpoint.disabled or delivery.dead_lettered event is about).
	SkipEndpoint string `msgpack:"skip,omitempty"`
	// OnlyEndpoint sends the event to that endpoint alone, subscribed or
	// not, enabled or not (webhook.test).
	OnlyEndpoint string `msgpack:"only,omitempty"`
	// SkipReason says why Chime skipped the event (status skipped).
	SkipReason  string `msgpack:"skipwhy,omitempty"`
	CreatedAt   Millis `msgpack:"cat,omitempty"`
	CreateIndex uint64 `msgpack:"ci,omitempty"`
	ModifyIndex uint64 `msgpack:"mi,omitempty"`
}

// Delivery is one message to one destination, from an occurrence or an event.
type Delivery struct {
	ID             string `msgpack:"id,omitempty"`
	Project        string `msgpack:"proj,omitempty"`
	OccurrenceID   string `msgpack:"occ,omitempty"`
	JobID          string `msgpack:"job,omitempty"`
	EventID        string `msgpack:"event,omitempty"`
	EndpointID     string `msgpack:"ep,omitempty"` // "" = the job's inline callback
	Status         string `msgpack:"status,omitempty"`
	Attempts       int    `msgpack:"atts,omitempty"`
	MaxAttempts    int    `msgpack:"maxatts,omitempty"`
	NextAttemptAt  Millis `msgpack:"next,omitempty"`
	AssignedNode   string `msgpack:"node,omitempty"`
	Fence          uint64 `msgpack:"fence,omitempty"`
	LeaseUntil     Millis `msgpack:"lease,omitempty"`
	ScheduledFor   Millis `msgpack:"sched,omitempty"`
	LastStatusCode int    `msgpack:"code,omitempty"`
	LastError      string `msgpack:"err,omitempty"`
	CreatedAt      Millis `msgpack:"cat,omitempty"`
	UpdatedAt      Millis `msgpack:"uat,omitempty"`
	CompletedAt    Millis `msgpack:"done,omitempty"`
	CreateIndex    uint64 `msgpack:"ci,omitempty"`
	ModifyIndex    uint64 `msgpack:"mi,omitempty"`
}

// Active reports whether d still waits for (or is in) an HTTP attempt.
func (d *Delivery) Active() bool {
	switch d.Status {
	case DeliveryPending, DeliveryInFlight, DeliveryRetryScheduled:
		return true
	}
	return false
}

// Terminal reports whether d is finished for good (succeeded, dead_letter or
// cancelled). A held delivery is neither active nor terminal.
func (d *Delivery) Terminal() bool {
	switch d.Status {
	case DeliverySucceeded, DeliveryDeadLetter, DeliveryCancelled:
		return true
	}
	return false
}

// Attempt is one HTTP call of a delivery.
type Attempt struct {
	DeliveryID      string `msgpack:"del,omitempty"`
	Number          int    `msgpack:"num,omitempty"`
	Node            string `msgpack:"node,omitempty"`
	Fence           uint64 `msgpack:"fence,omitempty"`
	StartedAt       Millis `msgpack:"start,omitempty"`
	LatencyMs       int64  `msgpack:"lat,omitempty"`
	StatusCode      int    `msgpack:"code,omitempty"`
	ResponseSummary string `msgpack:"resp,omitempty"`
	Error           string `msgpack:"err,omitempty"`
	CreateIndex     uint64 `msgpack:"ci,omitempty"`
	ModifyIndex     uint64 `msgpack:"mi,omitempty"`
}

// AttemptID is the id CmdDelete takes for an attempt: "deliveryID/number".
func AttemptID(deliveryID string, number int) string {
	return deliveryID + "/" + strconv.Itoa(number)
}

// record is what every table row implements, so that Put, Delete and the
// snapshot code can treat the tables alike.
// IdempotencyRecord remembers a POST sent with an Idempotency-Key header:
// claimed while the first request runs, then its answer, until ExpiresAt
// (24 hours). The API owns its meaning (api/idempotency.go).
type IdempotencyRecord struct {
	ID          string `msgpack:"id,omitempty"` // "<project>/<key>"
	Fingerprint string `msgpack:"fp,omitempty"` // hash of method, path, query and body
	// Status is the first answer's HTTP status; 0 while the first request
	// runs, claimed until ClaimUntil.
	Status     int    `msgpack:"status,omitempty"`
	Body       []byte `msgpack:"body,omitempty"`
	ClaimUntil Millis `msgpack:"claim,omitempty"`
	// Applied: the request's write committed (set in the same command as
	// the write); with Status 0 and the claim over, its answer was lost.
	Applied bool `msgpack:"applied,omitempty"`
	// Caller is the id of the token that sent the first request (never the
	// token itself): the answer is replayed to that token only. Records of
	// older versions have none: they are replayed only to admin tokens bound
	// to no project, scrubbed of secrets (api/idempotency.go).
	Caller string `msgpack:"caller,omitempty"`
	// Withheld names the answer's fields that carried a secret, removed
	// from Body before it was stored: a secret is shown once.
	Withheld    []string `msgpack:"withheld,omitempty"`
	CreatedAt   Millis   `msgpack:"cat,omitempty"`
	ExpiresAt   Millis   `msgpack:"exp,omitempty"`
	CreateIndex uint64   `msgpack:"ci,omitempty"`
	ModifyIndex uint64   `msgpack:"mi,omitempty"`
}

type record interface {
	// key is the primary id as shown in messages and taken by CmdDelete.
	key() string
	// projectName is the owning project ("" when none).
	projectName() string
	indexes() (create, modify uint64)
	setIndexes(create, modify uint64)
}

func (r *Project) key() string                   { return r.Name }
func (r *Project) projectName() string           { return "" }
func (r *Project) indexes() (uint64, uint64)     { return r.CreateIndex, r.ModifyIndex }
func (r *Project) setIndexes(c, m uint64)        { r.CreateIndex, r.ModifyIndex = c, m }
func (r *IdempotencyRecord) key() string         { return r.ID }
func (r *IdempotencyRecord) projectName() string { return "" }
func (r *IdempotencyRecord) indexes() (uint64, uint64) {
	return r.CreateIndex, r.ModifyIndex
}
func (r *IdempotencyRecord) setIndexes(c, m uint64) { r.CreateIndex, r.ModifyIndex = c, m }

func (r *Token) key() string                    { return r.ID }
func (r *Token) projectName() string            { return r.Project }
func (r *Token) indexes() (uint64, uint64)      { return r.CreateIndex, r.ModifyIndex }
func (r *Token) setIndexes(c, m uint64)         { r.CreateIndex, r.ModifyIndex = c, m }
func (r *Endpoint) key() string                 { return r.ID }
func (r *Endpoint) projectName() string         { return r.Project }
func (r *Endpoint) indexes() (uint64, uint64)   { return r.CreateIndex, r.ModifyIndex }
func (r *Endpoint) setIndexes(c, m uint64)      { r.CreateIndex, r.ModifyIndex = c, m }
func (r *Job) key() string                      { return r.ID }
func (r *Job) projectName() string              { return r.Project }
func (r *Job) indexes() (uint64, uint64)        { return r.CreateIndex, r.ModifyIndex }
func (r *Job) setIndexes(c, m uint64)           { r.CreateIndex, r.ModifyIndex = c, m }
func (r *Occurrence) key() string               { return r.ID }
func (r *Occurrence) projectName() string       { return r.Project }
func (r *Occurrence) indexes() (uint64, uint64) { return r.CreateIndex, r.ModifyIndex }
func (r *Occurrence) setIndexes(c, m uint64)    { r.CreateIndex, r.ModifyIndex = c, m }
func (r *Event) key() string                    { return r.ID }
func (r *Event) projectName() string            { return r.Project }
func (r *Event) indexes() (uint64, uint64)      { return r.CreateIndex, r.ModifyIndex }
func (r *Event) setIndexes(c, m uint64)         { r.CreateIndex, r.ModifyIndex = c, m }
func (r *Delivery) key() string                 { return r.ID }
func (r *Delivery) projectName() string         { return r.Project }
func (r *Delivery) indexes() (uint64, uint64)   { return r.CreateIndex, r.ModifyIndex }
func (r *Delivery) setIndexes(c, m uint64)      { r.CreateIndex, r.ModifyIndex = c, m }
func (r *Attempt) key() string                  { return AttemptID(r.DeliveryID, r.Number) }
func (r *Attempt) projectName() string          { return "" }
func (r *Attempt) indexes() (uint64, uint64)    { return r.CreateIndex, r.ModifyIndex }
func (r *Attempt) setIndexes(c, m uint64)       { r.CreateIndex, r.ModifyIndex = c, m }

// MaskedHeaderValue replaces every value of a job's or an endpoint's
// headers wherever they are shown (the API, the stream, lifecycle events):
// they are the receiver's credentials (Authorization, API keys), kept only
// to be sent. The API refuses it as a value, so that a client that sends a
// shown object back cannot store the mask in place of the credential.
const MaskedHeaderValue = "********"

// MaskHeaders returns h with every value masked, names kept (nil for none).
func MaskHeaders(h map[string]string) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	for k := range h {
		out[k] = MaskedHeaderValue
	}
	return out
}
