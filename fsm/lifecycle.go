package fsm

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Lifecycle events (001): Chime tells subscribed endpoints what happened to
// its own objects. They are raised here, in Apply, and not by the API or the
// poller, for two reasons: a change and its event are one write (a change
// refused by a CAS raises nothing, an applied one cannot lose its event), and
// the subscriber set is the one in the log at that index, the same on every
// replica. An event is only stored when an endpoint of the project is
// subscribed to its type, so a cluster without such subscribers pays one
// endpoint scan per command and project, nothing per record.
//
// The event's data is what 001 puts beside "event" and "timestamp": the
// object as it is after the change under its own name ("job", "occurrence",
// "delivery", "endpoint"), its id ("jobId", ...), "changes" on job.updated
// (only the changed fields, new values) and "initiatorId": the id of the token
// that made the change, or null when the scheduler did.

// Lifecycle event types.
const (
	EventJobCreated           = "job.created"
	EventJobUpdated           = "job.updated"
	EventJobDeleted           = "job.deleted"
	EventJobPaused            = "job.paused"
	EventJobResumed           = "job.resumed"
	EventOccurrenceCreated    = "occurrence.created"
	EventOccurrenceCompleted  = "occurrence.completed"
	EventOccurrenceSkipped    = "occurrence.skipped"
	EventOccurrenceMissed     = "occurrence.missed"
	EventDeliveryDeadLettered = "delivery.dead_lettered"
	EventEndpointDisabled     = "endpoint.disabled"
	EventWebhookTest          = "webhook.test" // POST /v1/endpoints/{id}/test
)

// LifecycleEventTypes are the types only Chime emits; the API refuses to
// publish them, so a receiver can trust that one really comes from Chime.
var LifecycleEventTypes = map[string]bool{
	EventJobCreated: true, EventJobUpdated: true, EventJobDeleted: true, EventJobPaused: true, EventJobResumed: true,
	EventOccurrenceCreated: true, EventOccurrenceCompleted: true, EventOccurrenceSkipped: true, EventOccurrenceMissed: true,
	EventDeliveryDeadLettered: true, EventEndpointDisabled: true, EventWebhookTest: true,
}

// Matches reports whether an event type matches one subscription pattern:
// "*" matches everything, "invoice.*" matches "invoice.paid" and
// "invoice.line.added" (but not "invoice" itself), anything else is exact.
func Matches(pattern, eventType string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, ".*"):
		return strings.HasPrefix(eventType, pattern[:len(pattern)-1])
	}
	return pattern == eventType
}

// Subscribed reports whether ep receives events of eventType.
func (ep *Endpoint) Subscribed(eventType string) bool {
	for _, p := range ep.EventTypes {
		if Matches(p, eventType) {
			return true
		}
	}
	return false
}

// subscribers reports whether an endpoint of project, enabled or not (a
// disabled one gets the event held), is subscribed to typ. Endpoints are read
// once per command and project: a poller tick raises many events of one
// project. A Put of an endpoint clears the cache.
func (a *applier) subscribers(project, typ string) bool {
	if a.endpoints == nil {
		a.endpoints = map[string][]*Endpoint{}
	}
	eps, ok := a.endpoints[project]
	if !ok {
		eps, _ = a.state().Endpoints(project, "", 0)
		a.endpoints[project] = eps
	}
	for _, ep := range eps {
		if ep.Subscribed(typ) {
			return true
		}
	}
	return false
}

// lifecycle raises a lifecycle event about object id if anyone listens. data
// builds its body only then (nil: nothing to say), so that creates, fires and
// results without subscribers build no views. skip is an endpoint that must
// not receive it (the one it is about). Its id derives from the Raft index,
// the type and the object, so every replica creates the same one and one
// command can raise many.
func (a *applier) lifecycle(at Millis, project, typ, id, initiator, skip string, build func() map[string]any) {
	if !a.subscribers(project, typ) {
		return
	}
	data := build()
	if data == nil {
		return
	}
	if initiator != "" {
		data["initiatorId"] = initiator
	} else {
		data["initiatorId"] = nil
	}
	b, err := json.Marshal(data) // map keys are sorted: deterministic
	if err != nil {
		panic("fsm: encode " + typ + " event at raft index " + strconv.FormatUint(a.index, 10) + ": " + err.Error())
	}
	// The id is derived from the log entry, so the same event is the same
	// row on every replica. One entry can hold several commands (a Batch:
	// the leader coalesces concurrent writes), and two of them may raise the
	// same event for the same record in the same millisecond: the second and
	// later get a sequence number instead of overwriting the first. The first
	// keeps the plain derivation, which older nodes compute too.
	evID := DerivedID("evt", at, typ, id, strconv.FormatUint(a.index, 10))
	if a.eventIDs == nil {
		a.eventIDs = map[string]int{}
	}
	if n := a.eventIDs[evID]; n > 0 {
		a.eventIDs[evID] = n + 1
		evID = DerivedID("evt", at, typ, id, strconv.FormatUint(a.index, 10), strconv.Itoa(n))
	} else {
		a.eventIDs[evID] = 1
	}
	ev := &Event{
		ID: evID, Project: project, Type: typ, Data: b,
		ScheduledAt: at, Status: EventScheduled, InitiatorID: initiator, SkipEndpoint: skip, CreatedAt: at,
	}
	if why := a.lifecycleQuota(project); why != "" {
		ev.Status, ev.SkipReason = EventSkipped, "quota_exceeded: "+why
	}
	ev.setIndexes(a.index, a.index)
	a.mustInsert(TableEvents, ev)
}

// jobChanged raises the event of a job written through the API: created,
// paused, resumed, deleted (cancelled), or updated with the fields that
// changed. A write that changes nothing visible raises nothing.
func (a *applier) jobChanged(old, j *Job, initiator string) {
	typ := EventJobUpdated
	switch {
	case old == nil:
		typ = EventJobCreated
	case old.Status == j.Status:
	case j.Status == JobPaused:
		typ = EventJobPaused
	case j.Status == JobActive:
		typ = EventJobResumed
	case j.Status == JobCancelled:
		typ = EventJobDeleted
	}
	a.lifecycle(j.UpdatedAt, j.Project, typ, j.ID, initiator, "", func() map[string]any {
		view := jobView(j)
		data := map[string]any{"job": view, "jobId": j.ID}
		if typ == EventJobUpdated {
			changes := changedFields(jobView(old), view)
			if len(changes) == 0 {
				return nil
			}
			data["changes"] = changes
		}
		return data
	})
}

// changedFields lists the fields of after whose value differs from before's
// (updatedAt always does and is left out).
func changedFields(before, after map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range after {
		if k == "updatedAt" {
			continue
		}
		x, _ := json.Marshal(before[k])
		y, _ := json.Marshal(v)
		if !bytes.Equal(x, y) {
			out[k] = v
		}
	}
	return out
}

// occurrenceEvent raises typ about o.
func (a *applier) occurrenceEvent(typ string, o *Occurrence, initiator string) {
	at := o.CompletedAt
	if typ == EventOccurrenceCreated {
		at = o.FiredAt
	}
	a.lifecycle(at, o.Project, typ, o.ID, initiator, "", func() map[string]any {
		return map[string]any{"occurrence": occurrenceView(o), "occurrenceId": o.ID, "jobId": o.JobID}
	})
}

// eventType is the type of the event d delivers ("" for an occurrence's).
func (a *applier) eventType(d *Delivery) string {
	if d.EventID == "" {
		return ""
	}
	if ev, _ := a.first(TableEvents, IndexID, d.EventID).(*Event); ev != nil {
		return ev.Type
	}
	return ""
}

// deadLettered raises delivery.dead_lettered about d. It does not go to d's
// own endpoint (which is failing); the caller raises nothing for a
// dead-lettered delivery of a delivery.dead_lettered event: a failing
// subscriber must not feed itself an endless chain of notices.
func (a *applier) deadLettered(d *Delivery) {
	a.lifecycle(d.CompletedAt, d.Project, EventDeliveryDeadLettered, d.ID, "", d.EndpointID, func() map[string]any {
		return map[string]any{"delivery": deliveryView(d), "deliveryId": d.ID}
	})
}

// endpointDisabled raises endpoint.disabled; never to the endpoint itself.
func (a *applier) endpointDisabled(at Millis, ep *Endpoint, initiator string) {
	a.lifecycle(at, ep.Project, EventEndpointDisabled, ep.ID, initiator, ep.ID, func() map[string]any {
		return map[string]any{
			"endpoint":            map[string]any{"id": ep.ID, "url": ep.URL, "description": ep.Description},
			"endpointId":          ep.ID,
			"reason":              ep.DisabledReason,
			"consecutiveFailures": ep.ConsecutiveFailures,
		}
	})
}

// The views below name fields as the API does, so that an event's object
// reads like the API's answer for it. Times are RFC 3339 in UTC or null.

func timeView(m Millis) any {
	if m == 0 {
		return nil
	}
	return m.Time().Format(time.RFC3339Nano)
}

func strView(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func rawView(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func retryView(p RetryPolicy) map[string]any {
	return map[string]any{
		"maxAttempts": p.MaxAttempts, "backoff": p.Backoff, "jitter": p.Jitter,
		"initialDelaySeconds": float64(p.InitialDelayMs) / 1000, "maxDelaySeconds": float64(p.MaxDelayMs) / 1000,
	}
}

func jobView(j *Job) map[string]any {
	return map[string]any{
		"id": j.ID, "project": j.Project, "name": j.Name, "description": j.Description, "status": j.Status,
		"kind": j.ScheduleKind, "schedule": rawView(j.Schedule), "nextFireAt": timeView(j.NextFireAt),
		"occurrenceCount": j.OccurrenceCount, "seriesId": j.SeriesID, "callbackUrl": j.CallbackURL,
		"method": j.Method, "headers": MaskHeaders(j.Headers), "payload": rawView(j.Payload), "eventType": j.EventType,
		"retryPolicy": retryView(j.Retry), "timeoutSeconds": float64(j.TimeoutMs) / 1000,
		"idempotencyKey": j.IdempotencyKey, "correlationId": j.CorrelationID, "signed": j.SigningSecret != "",
		"manualCompletion": j.ManualCompletion, "createdAt": timeView(j.CreatedAt), "updatedAt": timeView(j.UpdatedAt),
	}
}

func occurrenceView(o *Occurrence) map[string]any {
	return map[string]any{
		"id": o.ID, "jobId": o.JobID, "project": o.Project, "number": o.Number, "identityKey": o.IdentityKey,
		"scheduledFor": timeView(o.ScheduledFor), "firedAt": timeView(o.FiredAt), "status": o.Status,
		"missedCount": o.MissedCount, "manual": o.Manual, "completedAt": timeView(o.CompletedAt),
	}
}

func deliveryView(d *Delivery) map[string]any {
	dest := "callback"
	if d.EndpointID != "" {
		dest = d.EndpointID
	}
	code := any(nil)
	if d.LastStatusCode != 0 {
		code = d.LastStatusCode
	}
	return map[string]any{
		"id": d.ID, "project": d.Project, "occurrenceId": strView(d.OccurrenceID), "jobId": strView(d.JobID),
		"eventId": strView(d.EventID), "endpointId": strView(d.EndpointID), "destination": dest, "status": d.Status,
		"attempts": d.Attempts, "maxAttempts": d.MaxAttempts, "scheduledFor": timeView(d.ScheduledFor),
		"lastStatusCode": code, "lastError": strView(d.LastError), "createdAt": timeView(d.CreatedAt),
		"updatedAt": timeView(d.UpdatedAt), "completedAt": timeView(d.CompletedAt),
	}
}
