package dispatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chime-sched/chime/fsm"
)

// Chime's own headers on every attempt (besides the signature headers).
const (
	HeaderIdempotencyKey = "Chime-Idempotency-Key"
	HeaderCorrelationID  = "Chime-Correlation-Id"
	HeaderScheduledFor   = "Chime-Scheduled-For"
	HeaderAttempt        = "Chime-Attempt"
	HeaderDeliveryID     = "Chime-Delivery-Id"
	// HeaderFence is the delivery's assignment token (the Raft index of the
	// assignment): it grows with every reassignment, so a receiver that
	// keeps the highest fence seen per webhook-id can refuse a call from a
	// node that lost its lease while stalled. HeaderNode names that node.
	HeaderFence = "Chime-Fence"
	HeaderNode  = "Chime-Node"
)

// ErrTargetGone: the delivery's job, endpoint or event was deleted; the
// delivery cannot be made and is dead-lettered with this reason.
var ErrTargetGone = errors.New("the delivery's target no longer exists")

// Envelope is the body of an endpoint delivery (001). Job and Occurrence are
// set for deliveries of a job's occurrence, EventID for published events.
type Envelope struct {
	Event      string          `json:"event"`
	Timestamp  time.Time       `json:"timestamp"`
	Data       json.RawMessage `json:"data"`
	EventID    string          `json:"eventId,omitempty"`
	Job        *EnvelopeJob    `json:"job,omitempty"`
	Occurrence *EnvelopeOcc    `json:"occurrence,omitempty"`
}

// lifecycleBody is the envelope of an event Chime raises about its own
// objects. As in 001, the object, its id, "changes" and "initiatorId" sit
// beside "event" and "timestamp" instead of under "data".
func lifecycleBody(env Envelope) ([]byte, error) {
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(env.Data, &fields); err != nil {
		return nil, err
	}
	for k, v := range map[string]any{"event": env.Event, "timestamp": env.Timestamp, "eventId": env.EventID} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		fields[k] = b
	}
	return json.Marshal(fields)
}

// EnvelopeJob names the job that fired.
type EnvelopeJob struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// EnvelopeOcc describes the occurrence that fired.
type EnvelopeOcc struct {
	ID           string    `json:"id"`
	Number       int64     `json:"number"`
	ScheduledFor time.Time `json:"scheduledFor"`
	MissedCount  int64     `json:"missedCount"`
}

// Prepared is one attempt ready to send, with what the worker needs to judge
// its outcome.
type Prepared struct {
	Request Request
	Policy  fsm.RetryPolicy // MaxAttempts is the delivery's
	// Endpoint: the target is an endpoint (a 410 disables it); false for a
	// job's inline callback.
	Endpoint bool
}

// Prepare builds attempt number attempt of d at now from the state: target,
// body, Chime headers and signatures (signed afresh for this attempt). The
// body is the same on every attempt, since it only depends on stored data.
func Prepare(st *fsm.State, d *fsm.Delivery, attempt int, now time.Time) (Prepared, error) {
	var p Prepared
	var secrets []string
	var body []byte
	var idem, corr string
	headers := map[string]string{}

	var job *fsm.Job
	var occ *fsm.Occurrence
	if d.JobID != "" {
		j, err := st.Job(d.JobID)
		if err != nil {
			return p, fmt.Errorf("%w: job %s", ErrTargetGone, d.JobID)
		}
		o, err := st.Occurrence(d.OccurrenceID)
		if err != nil {
			return p, fmt.Errorf("%w: occurrence %s", ErrTargetGone, d.OccurrenceID)
		}
		job, occ = j, o
		idem, corr = o.IdempotencyKey, j.CorrelationID
	}

	if d.EndpointID == "" { // a job's inline callback (002): the job's payload as it is
		if job == nil {
			return p, fmt.Errorf("%w: delivery %s has neither endpoint nor job", ErrTargetGone, d.ID)
		}
		p.Request = Request{Method: job.Method, URL: job.CallbackURL, Timeout: fsm.TimeoutOf(job.TimeoutMs)}
		p.Policy = job.Retry
		copyHeaders(headers, job.Headers)
		body = job.Payload
		if job.SigningSecret != "" {
			secrets = []string{job.SigningSecret}
		} else if pr, err := st.Project(job.Project); err == nil && pr.SigningSecret != "" {
			secrets = []string{pr.SigningSecret}
		}
	} else {
		ep, err := st.Endpoint(d.EndpointID)
		if err != nil {
			return p, fmt.Errorf("%w: endpoint %s", ErrTargetGone, d.EndpointID)
		}
		p.Endpoint = true
		p.Request = Request{Method: ep.Method, URL: ep.URL, Timeout: fsm.TimeoutOf(ep.TimeoutMs)}
		p.Policy = ep.Retry
		copyHeaders(headers, ep.Headers)
		secrets = []string{ep.Secret}
		if ep.PreviousSecret != "" && fsm.MillisOf(now) < ep.PreviousSecretUntil {
			secrets = append(secrets, ep.PreviousSecret)
		}
		env := Envelope{Timestamp: d.CreatedAt.Time()}
		if job != nil {
			env.Event, env.Data = job.EventType, job.Payload
			env.Job = &EnvelopeJob{ID: job.ID, Name: job.Name}
			env.Occurrence = &EnvelopeOcc{ID: occ.ID, Number: occ.Number, ScheduledFor: occ.ScheduledFor.Time(), MissedCount: occ.MissedCount}
		} else {
			ev, err := st.Event(d.EventID)
			if err != nil {
				return p, fmt.Errorf("%w: event %s", ErrTargetGone, d.EventID)
			}
			env.Event, env.Data, env.EventID = ev.Type, ev.Data, ev.ID
			idem = ev.IdempotencyKey
			if idem == "" {
				idem = ev.ID
			}
		}
		if len(env.Data) == 0 {
			env.Data = json.RawMessage("null")
		}
		if fsm.LifecycleEventTypes[env.Event] {
			body, err = lifecycleBody(env)
		} else {
			body, err = json.Marshal(env)
		}
		if err != nil {
			return p, fmt.Errorf("encode envelope of %s: %w", d.ID, err)
		}
	}
	if p.Request.Method == "" {
		p.Request.Method = http.MethodPost
	}
	if p.Request.Method == http.MethodGet || p.Request.Method == http.MethodHead {
		body = nil // signed over what is actually sent
	}
	p.Request.Body = body
	p.Policy.MaxAttempts = d.MaxAttempts

	if idem != "" {
		headers[HeaderIdempotencyKey] = idem
	}
	if corr != "" {
		headers[HeaderCorrelationID] = corr
	}
	if d.ScheduledFor != 0 {
		headers[HeaderScheduledFor] = d.ScheduledFor.Time().Format(time.RFC3339Nano)
	}
	headers[HeaderAttempt] = strconv.Itoa(attempt)
	headers[HeaderDeliveryID] = d.ID
	if d.Fence != 0 {
		headers[HeaderFence] = strconv.FormatUint(d.Fence, 10)
		headers[HeaderNode] = d.AssignedNode
	}
	if len(secrets) > 0 && secrets[0] != "" {
		sig, err := SignAll(secrets, d.ID, now, body)
		if err != nil {
			return p, fmt.Errorf("sign %s: %w", d.ID, err)
		}
		sig.Apply(headers)
	} else {
		// Unsigned callbacks still carry the id and time receivers deduplicate on.
		headers[HeaderWebhookID] = d.ID
		headers[HeaderWebhookTimestamp] = strconv.FormatInt(now.Unix(), 10)
	}
	p.Request.Headers = headers
	return p, nil
}

// ReservedHeader reports whether a target may not set header name (any
// spelling): Chime sets it on every attempt (its own Chime-* headers, the
// signature headers, Content-Type, User-Agent), the transport owns it
// (framing, Host), or it is hop-by-hop or meant for a proxy (Expect and
// Upgrade would change how the call is made; Proxy-Authorization would be
// sent to the receiver). The API refuses such headers and the dispatcher
// drops them, both by this one rule.
func ReservedHeader(name string) bool {
	ck := http.CanonicalHeaderKey(name)
	switch ck {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Content-Type", "User-Agent",
		"Keep-Alive", "Te", "Trailer", "Upgrade", "Expect", "Proxy-Authorization", "Proxy-Connection",
		http.CanonicalHeaderKey(HeaderLegacySignature):
		return true
	}
	return strings.HasPrefix(ck, "Chime-") || strings.HasPrefix(ck, "Webhook-")
}

// copyHeaders copies a target's headers under their canonical names,
// leaving out the reserved ones: those are set after, and two spellings of
// one name would make the sent value depend on map order.
func copyHeaders(dst, src map[string]string) {
	for k, v := range src {
		if !ReservedHeader(k) {
			dst[http.CanonicalHeaderKey(k)] = v
		}
	}
}
