package client

import (
	"encoding/json"
	"time"
)

// The types below are the API's JSON shapes (api/*.go and the OpenAPI
// document), field for field and in the same order, so that re-encoding a
// decoded answer gives back what the API sent. Request types omit what is
// unset, so the API applies its defaults.

// Statuses of jobs, occurrences and deliveries, as the API reports them and
// its ?status= filters take them.
const (
	JobActive    = "active"
	JobPaused    = "paused"
	JobArchived  = "archived"
	JobCompleted = "completed"
	JobCancelled = "cancelled"

	OccurrencePending   = "pending"
	OccurrenceCompleted = "completed"
	OccurrenceSkipped   = "skipped"
	OccurrenceMissed    = "missed"
	OccurrenceCooldown  = "cooldown"

	DeliveryPending        = "pending"
	DeliveryInFlight       = "in_flight"
	DeliveryRetryScheduled = "retry_scheduled"
	DeliverySucceeded      = "succeeded"
	DeliveryDeadLetter     = "dead_letter"
	DeliveryCancelled      = "cancelled"
	DeliveryHeld           = "held"
)

// Token scopes; each includes the ones before it.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

// Page is one page of a list. NextCursor is "" on the last page; pass it as
// the Cursor of the next call (or use All).
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor"`
}

// ListOptions are the paging parameters every list takes.
type ListOptions struct {
	// Limit is the page size, 1 to 500 (0: the API's default, 100).
	Limit int
	// Cursor is the NextCursor of the previous page ("" for the first).
	Cursor string
}

// Schedule holds a job's schedule fields (docs/schedules.md). Give exactly
// one of RecurrenceSeconds, ScheduleTimes, Recurrence, RRule and Cron, or
// none of them and FireAtUTC or DelaySeconds for a one-shot.
type Schedule struct {
	FireAtUTC          string      `json:"fireAtUtc,omitempty"`
	DelaySeconds       *int64      `json:"delaySeconds,omitempty"`
	RecurrenceSeconds  *int64      `json:"recurrenceSeconds,omitempty"`
	ScheduleTimes      []string    `json:"scheduleTimes,omitempty"`
	ScheduleDaysOfWeek []int       `json:"scheduleDaysOfWeek,omitempty"`
	Recurrence         *Recurrence `json:"recurrence,omitempty"`
	RRule              string      `json:"rrule,omitempty"`
	Cron               string      `json:"cron,omitempty"`
	// Timezone is the IANA zone of calendar, recurrence, rrule and cron
	// schedules (default: the cluster's, UTC unless configured).
	Timezone            string `json:"timezone,omitempty"`
	StartAt             string `json:"startAt,omitempty"`
	EndAtUTC            string `json:"endAtUtc,omitempty"`
	MaxOccurrences      *int64 `json:"maxOccurrences,omitempty"`
	CatchUp             string `json:"catchUp,omitempty"`
	MisfireGraceSeconds *int64 `json:"misfireGraceSeconds,omitempty"`
	CooldownSeconds     *int64 `json:"cooldownSeconds,omitempty"`
}

// IsZero reports whether no schedule field is set.
func (s Schedule) IsZero() bool {
	return s.FireAtUTC == "" && s.DelaySeconds == nil && s.RecurrenceSeconds == nil && s.ScheduleTimes == nil &&
		s.ScheduleDaysOfWeek == nil && s.Recurrence == nil && s.RRule == "" && s.Cron == "" && s.Timezone == "" &&
		s.StartAt == "" && s.EndAtUTC == "" && s.MaxOccurrences == nil && s.CatchUp == "" &&
		s.MisfireGraceSeconds == nil && s.CooldownSeconds == nil
}

// Recurrence is a daily, weekly or monthly rule.
type Recurrence struct {
	Frequency string `json:"frequency"`
	Interval  *int   `json:"interval,omitempty"`
	// Weekdays are MO, TU, WE, TH, FR, SA, SU (weekly only, required there).
	Weekdays   []string    `json:"weekdays,omitempty"`
	MonthDay   *int        `json:"monthDay,omitempty"`
	NthWeekday *NthWeekday `json:"nthWeekday,omitempty"`
	Times      []string    `json:"times,omitempty"`
}

// NthWeekday is "the 3rd Tuesday" (Nth 1..5) or "the last Friday" (Nth -1).
type NthWeekday struct {
	Weekday string `json:"weekday"`
	Nth     int    `json:"nth"`
}

// RetryPolicy is how a failed delivery is retried. In requests, unset
// fields keep the target's defaults.
type RetryPolicy struct {
	MaxAttempts         int     `json:"maxAttempts,omitempty"`
	Backoff             string  `json:"backoff,omitempty"` // fixed, linear or exponential
	InitialDelaySeconds float64 `json:"initialDelaySeconds,omitempty"`
	MaxDelaySeconds     float64 `json:"maxDelaySeconds,omitempty"`
	Jitter              float64 `json:"jitter,omitempty"`
}

// JobRequest creates a job: a schedule plus a target, an inline callback
// (CallbackURL) and/or an EventType fanned out to subscribed endpoints.
type JobRequest struct {
	Schedule
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	CallbackURL string            `json:"callbackUrl,omitempty"`
	Method      string            `json:"method,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	// Payload is the callback's JSON body.
	Payload          json.RawMessage `json:"payload,omitempty"`
	EventType        string          `json:"eventType,omitempty"`
	MaxRetries       int             `json:"maxRetries,omitempty"`
	RetryPolicy      *RetryPolicy    `json:"retryPolicy,omitempty"`
	TimeoutSeconds   float64         `json:"timeoutSeconds,omitempty"`
	IdempotencyKey   string          `json:"idempotencyKey,omitempty"`
	CorrelationID    string          `json:"correlationId,omitempty"`
	SigningSecret    string          `json:"signingSecret,omitempty"`
	ManualCompletion bool            `json:"manualCompletion,omitempty"`
}

// JobPatch changes a job (PATCH): the fields set replace the stored ones,
// the others stay. A non-nil Schedule replaces the whole schedule (its next
// fire is then computed from now). Pointers tell "set to the zero value"
// from "leave alone"; Payload json.RawMessage("null") removes the payload.
type JobPatch struct {
	*Schedule
	Name             *string            `json:"name,omitempty"`
	Description      *string            `json:"description,omitempty"`
	CallbackURL      *string            `json:"callbackUrl,omitempty"`
	Method           *string            `json:"method,omitempty"`
	Headers          *map[string]string `json:"headers,omitempty"`
	Payload          json.RawMessage    `json:"payload,omitempty"`
	EventType        *string            `json:"eventType,omitempty"`
	MaxRetries       *int               `json:"maxRetries,omitempty"`
	RetryPolicy      *RetryPolicy       `json:"retryPolicy,omitempty"`
	TimeoutSeconds   *float64           `json:"timeoutSeconds,omitempty"`
	IdempotencyKey   *string            `json:"idempotencyKey,omitempty"`
	CorrelationID    *string            `json:"correlationId,omitempty"`
	SigningSecret    *string            `json:"signingSecret,omitempty"`
	ManualCompletion *bool              `json:"manualCompletion,omitempty"`
}

// OccurrenceRef is the short form of a job's last occurrence.
type OccurrenceRef struct {
	ID           string    `json:"id"`
	Number       int64     `json:"number"`
	ScheduledFor time.Time `json:"scheduledFor"`
	Status       string    `json:"status"`
}

// Job is a job as the API shows it.
type Job struct {
	ID          string `json:"id"`
	Project     string `json:"project"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Status      string `json:"status"`
	// Kind is once, interval, calendar, recurrence, rrule or cron.
	Kind string `json:"kind"`
	// Schedule is the stored (canonical) schedule: defaults filled in,
	// instants in UTC.
	Schedule        Schedule       `json:"schedule"`
	NextFireAt      *time.Time     `json:"nextFireAt"`
	OccurrenceCount int64          `json:"occurrenceCount"`
	SeriesID        string         `json:"seriesId"`
	LastOccurrence  *OccurrenceRef `json:"lastOccurrence"`
	CallbackURL     string         `json:"callbackUrl,omitempty"`
	Method          string         `json:"method,omitempty"`
	// Headers shows the names only: every value is MaskedHeaderValue.
	Headers          map[string]string `json:"headers,omitempty"`
	Payload          json.RawMessage   `json:"payload,omitempty"`
	EventType        string            `json:"eventType,omitempty"`
	RetryPolicy      RetryPolicy       `json:"retryPolicy"`
	TimeoutSeconds   float64           `json:"timeoutSeconds"`
	IdempotencyKey   string            `json:"idempotencyKey,omitempty"`
	CorrelationID    string            `json:"correlationId,omitempty"`
	Signed           bool              `json:"signed"`
	ManualCompletion bool              `json:"manualCompletion"`
	CreatedAt        time.Time         `json:"createdAt"`
	UpdatedAt        time.Time         `json:"updatedAt"`
}

// JobListOptions filter GET /v1/jobs.
type JobListOptions struct {
	ListOptions
	// Status keeps the jobs in this status only ("": all).
	Status string
	// From and To keep the jobs whose next fire is in [From, To); zero
	// values leave that side open.
	From, To time.Time
}

// PreviewRequest asks for the next fires of a schedule.
type PreviewRequest struct {
	Schedule
	// From is the creation time to assume (RFC 3339; "" is now).
	From string `json:"from,omitempty"`
	// Count is how many fires (0: the API's default, 10).
	Count int `json:"count,omitempty"`
}

// Occurrence is one firing of a job.
type Occurrence struct {
	ID             string     `json:"id"`
	Project        string     `json:"project"`
	JobID          string     `json:"jobId"`
	Number         int64      `json:"number"`
	Status         string     `json:"status"`
	ScheduledFor   *time.Time `json:"scheduledFor"`
	FiredAt        *time.Time `json:"firedAt"`
	CompletedAt    *time.Time `json:"completedAt"`
	MissedCount    int64      `json:"missedCount"`
	Manual         bool       `json:"manual"`
	IdempotencyKey string     `json:"idempotencyKey"`
	// SkipReason says why Chime skipped it ("quota_exceeded: …"), if it did.
	SkipReason string `json:"skipReason,omitempty"`
}

// OccurrenceDetail is an occurrence with its deliveries.
type OccurrenceDetail struct {
	Occurrence
	Deliveries []Delivery `json:"deliveries"`
}

// OccurrenceListOptions filter GET /v1/jobs/{id}/occurrences.
type OccurrenceListOptions struct {
	ListOptions
	Status string
}

// EndpointRequest creates an endpoint.
type EndpointRequest struct {
	URL         string `json:"url"`
	Description string `json:"description,omitempty"`
	// EventTypes are the subscriptions: "invoice.paid", "invoice.*" or "*".
	EventTypes     []string          `json:"eventTypes"`
	Method         string            `json:"method,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
	TimeoutSeconds float64           `json:"timeoutSeconds,omitempty"`
	RetryPolicy    *RetryPolicy      `json:"retryPolicy,omitempty"`
	// Enabled false creates it disabled (nil: enabled).
	Enabled *bool `json:"enabled,omitempty"`
}

// EndpointPatch changes an endpoint (PATCH): the fields set replace the
// stored ones. Enabling here does not release held deliveries; use
// EnableEndpoint with releaseHeld for that.
type EndpointPatch struct {
	URL            *string            `json:"url,omitempty"`
	Description    *string            `json:"description,omitempty"`
	EventTypes     *[]string          `json:"eventTypes,omitempty"`
	Method         *string            `json:"method,omitempty"`
	Headers        *map[string]string `json:"headers,omitempty"`
	TimeoutSeconds *float64           `json:"timeoutSeconds,omitempty"`
	RetryPolicy    *RetryPolicy       `json:"retryPolicy,omitempty"`
	Enabled        *bool              `json:"enabled,omitempty"`
}

// Endpoint is an endpoint as the API shows it: never its secret.
type Endpoint struct {
	ID          string   `json:"id"`
	Project     string   `json:"project"`
	URL         string   `json:"url"`
	Description string   `json:"description"`
	EventTypes  []string `json:"eventTypes"`
	Method      string   `json:"method"`
	// Headers shows the names only: every value is MaskedHeaderValue.
	Headers             map[string]string `json:"headers"`
	TimeoutSeconds      float64           `json:"timeoutSeconds"`
	RetryPolicy         RetryPolicy       `json:"retryPolicy"`
	Enabled             bool              `json:"enabled"`
	DisabledReason      *string           `json:"disabledReason"`
	ConsecutiveFailures int               `json:"consecutiveFailures"`
	// Breaker is set by GetEndpoint and ListEndpoints only.
	Breaker   *Breaker   `json:"breaker,omitempty"`
	CreatedAt *time.Time `json:"createdAt"`
	UpdatedAt *time.Time `json:"updatedAt"`
}

// Breaker is an endpoint's circuit breaker: closed, open (no call until
// Until) or half_open (one probe call at a time).
type Breaker struct {
	State                  string     `json:"state"`
	Since                  *time.Time `json:"since"`
	Until                  *time.Time `json:"until"`
	ConsecutiveUnreachable int        `json:"consecutiveUnreachable"`
	LastError              string     `json:"lastError,omitempty"`
}

// EndpointWithSecret is the answer to a create: the signing secret is
// shown this once.
type EndpointWithSecret struct {
	Endpoint
	Secret string `json:"secret"`
}

// RotatedSecret is the answer to a secret rotation: the new secret, shown
// this once, and until when the previous one still signs (nil: it stopped
// at once).
type RotatedSecret struct {
	Endpoint
	Secret                  string     `json:"secret"`
	PreviousSecretExpiresAt *time.Time `json:"previousSecretExpiresAt"`
}

// EnabledEndpoint is the answer to an enable; Released is how many held
// deliveries were re-queued (set only when releaseHeld was asked).
type EnabledEndpoint struct {
	Endpoint
	Released *int `json:"released,omitempty"`
}

// DeletedEndpoint is the answer to an endpoint delete.
type DeletedEndpoint struct {
	ID                string `json:"id"`
	Deleted           bool   `json:"deleted"`
	DeliveriesRemoved int    `json:"deliveriesRemoved"`
}

// EventRequest publishes an event.
type EventRequest struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
	// ScheduledAt publishes it later (RFC 3339; "" is now).
	ScheduledAt string `json:"scheduledAt,omitempty"`
	// IdempotencyKey makes a repeated publish answer the first event.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
}

// Event is a published event.
type Event struct {
	ID      string          `json:"id"`
	Project string          `json:"project"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
	Status  string          `json:"status"`
	// SkipReason says why Chime skipped the event (status "skipped",
	// "quota_exceeded: …"), if it did.
	SkipReason     string     `json:"skipReason,omitempty"`
	ScheduledAt    *time.Time `json:"scheduledAt"`
	PublishedAt    *time.Time `json:"publishedAt"`
	IdempotencyKey *string    `json:"idempotencyKey"`
	CreatedAt      *time.Time `json:"createdAt"`
}

// EventDetail is an event with its deliveries.
type EventDetail struct {
	Event
	Deliveries []Delivery `json:"deliveries"`
}

// Delivery is one message to one destination.
type Delivery struct {
	ID           string  `json:"id"`
	Project      string  `json:"project"`
	Status       string  `json:"status"`
	JobID        *string `json:"jobId"`
	OccurrenceID *string `json:"occurrenceId"`
	EventID      *string `json:"eventId"`
	EndpointID   *string `json:"endpointId"`
	// Destination is "callback" for a job's inline callback, else the
	// endpoint id.
	Destination    string     `json:"destination"`
	Attempts       int        `json:"attempts"`
	MaxAttempts    int        `json:"maxAttempts"`
	NextAttemptAt  *time.Time `json:"nextAttemptAt"`
	AssignedNode   *string    `json:"assignedNode"`
	ScheduledFor   *time.Time `json:"scheduledFor"`
	LastStatusCode *int       `json:"lastStatusCode"`
	LastError      *string    `json:"lastError"`
	CreatedAt      *time.Time `json:"createdAt"`
	UpdatedAt      *time.Time `json:"updatedAt"`
	CompletedAt    *time.Time `json:"completedAt"`
}

// Attempt is one HTTP call of a delivery.
type Attempt struct {
	Number          int        `json:"number"`
	Node            string     `json:"node"`
	StartedAt       *time.Time `json:"startedAt"`
	LatencyMs       int64      `json:"latencyMs"`
	StatusCode      *int       `json:"statusCode"`
	ResponseSummary string     `json:"responseSummary"`
	Error           *string    `json:"error"`
}

// DeliveryDetail is a delivery with every recorded attempt, oldest first.
type DeliveryDetail struct {
	Delivery
	AttemptHistory []Attempt `json:"attemptHistory"`
}

// DeliveryListOptions filter GET /v1/deliveries (and, Status only, an
// endpoint's history).
type DeliveryListOptions struct {
	ListOptions
	Status     string
	EndpointID string
	JobID      string
	// From and To keep the deliveries created in [From, To).
	From, To time.Time
}

// ReplayRequest selects the dead letters to re-queue in bulk.
type ReplayRequest struct {
	// Status may only be dead_letter ("" means the same).
	Status     string `json:"status,omitempty"`
	EndpointID string `json:"endpointId,omitempty"`
	JobID      string `json:"jobId,omitempty"`
	From       string `json:"from,omitempty"`
	To         string `json:"to,omitempty"`
	// Limit is 1 to 1000 (nil: 100).
	Limit *int `json:"limit,omitempty"`
}

// ReplayResult lists the deliveries re-queued.
type ReplayResult struct {
	Requeued int      `json:"requeued"`
	IDs      []string `json:"ids"`
}

// TokenRequest creates an API token.
type TokenRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// Project restricts the token to one project ("": all).
	Project string `json:"project,omitempty"`
	// ExpiresAt is RFC 3339 ("": never).
	ExpiresAt string `json:"expiresAt,omitempty"`
}

// Token is an API token as listed: never its secret.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Scopes    []string   `json:"scopes"`
	Project   *string    `json:"project"`
	ExpiresAt *time.Time `json:"expiresAt"`
	Revoked   bool       `json:"revoked"`
	CreatedAt time.Time  `json:"createdAt"`
	CreatedBy string     `json:"createdBy,omitempty"`
}

// NewToken is the answer to a create: Secret is the bearer token, shown
// this once (Chime keeps only its hash).
type NewToken struct {
	Token
	Secret string `json:"token"`
}

// ProjectRequest creates a project.
type ProjectRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Project is a tenant.
type Project struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// AllowedTargetCIDRs: the internal ranges the project's deliveries may
	// reach (within the nodes'); nil = the nodes' --allowed-target-cidrs.
	AllowedTargetCIDRs *[]string `json:"allowedTargetCidrs"`
	CreatedAt          time.Time `json:"createdAt"`
	UpdatedAt          time.Time `json:"updatedAt"`
}

// ClusterStatus is the cluster as the node called sees it.
type ClusterStatus struct {
	NodeID string      `json:"nodeId"`
	Leader *LeaderInfo `json:"leader"`
	Nodes  []Node      `json:"nodes"`
	Raft   RaftStatus  `json:"raft"`
}

// LeaderInfo identifies the leader.
type LeaderInfo struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"httpAddr"`
}

// Node is one member.
type Node struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"httpAddr"`
	RaftAddr string `json:"raftAddr"`
	// Gossip is alive, suspect, dead, left or unknown.
	Gossip string `json:"gossip"`
	// Raft is leader, voter, nonvoter or none.
	Raft    string `json:"raft"`
	Version string `json:"version"`
}

// RaftStatus holds the called node's Raft indexes.
type RaftStatus struct {
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"lastIndex"`
	CommitIndex  uint64 `json:"commitIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
}

// RestoreResult is the answer to a snapshot restore.
type RestoreResult struct {
	Restored     bool   `json:"restored"`
	AppliedIndex uint64 `json:"appliedIndex"`
	DurationMs   int64  `json:"durationMs"`
}

// Health is the answer of GET /v1/health and /v1/ready.
type Health struct {
	Status  string `json:"status"`
	NodeID  string `json:"nodeId"`
	Version string `json:"version,omitempty"`
}

// MaskedHeaderValue is every header value of a job or an endpoint as the API
// shows it: the values are the receiver's credentials, sent with each
// delivery and shown to nobody. Sending it back as a value is refused (400):
// to change headers, send the whole set with real values.
const MaskedHeaderValue = "********"
