package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// MaxEventDelay is how far ahead an event may be scheduled; the same horizon
// as a job's delaySeconds.
const MaxEventDelay = 100 * 366 * 24 * time.Hour

// eventRequest is POST /v1/events (003): a type, its data, and optionally
// when to publish it. It is decoded from eventBody by UnmarshalJSON.
type eventRequest struct {
	Type           string
	Data           json.RawMessage
	ScheduledAt    string
	IdempotencyKey string
	// typeField and atField are the names Type and ScheduledAt came under,
	// so that an error names the field the client sent.
	typeField, atField string
}

// eventBody is the wire form of eventRequest. Besides our names it accepts
// 003's, event_type and scheduled_run_time, so that 003's curl example works
// as written. Every aliased name is a pointer so that presence is seen: a
// field given under both names is refused rather than one silently winning.
// (JSON null counts as absent, as for every other field.)
type eventBody struct {
	Type             *string         `json:"type"`
	EventType        *string         `json:"event_type"`
	ScheduledAt      *string         `json:"scheduledAt"`
	ScheduledRunTime *string         `json:"scheduled_run_time"`
	Data             json.RawMessage `json:"data"`
	IdempotencyKey   string          `json:"idempotencyKey"`
}

// UnmarshalJSON decodes the body strictly (unknown fields are refused, as by
// decodeJSON) and folds each alias into our name.
func (r *eventRequest) UnmarshalJSON(b []byte) error {
	var w eventBody
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return err
	}
	var err error
	if r.Type, r.typeField, err = aliased("type", w.Type, "event_type", w.EventType); err != nil {
		return err
	}
	if r.ScheduledAt, r.atField, err = aliased("scheduledAt", w.ScheduledAt, "scheduled_run_time", w.ScheduledRunTime); err != nil {
		return err
	}
	r.Data, r.IdempotencyKey = w.Data, w.IdempotencyKey
	return nil
}

// aliased returns the value given under name or under its alias, and the name
// it came under; both at once is a 400 naming the alias.
func aliased(name string, v *string, alias string, av *string) (string, string, error) {
	switch {
	case v != nil && av != nil:
		return "", "", badRequest(alias, fmt.Sprintf("%s is another name for %s: give one of them, not both", alias, name))
	case av != nil:
		return *av, alias, nil
	case v != nil:
		return *v, name, nil
	}
	return "", name, nil
}

type eventJSON struct {
	ID             string          `json:"id"`
	Project        string          `json:"project"`
	Type           string          `json:"type"`
	Data           json.RawMessage `json:"data"`
	Status         string          `json:"status"`
	SkipReason     string          `json:"skipReason,omitempty"`
	ScheduledAt    *time.Time      `json:"scheduledAt"`
	PublishedAt    *time.Time      `json:"publishedAt"`
	IdempotencyKey *string         `json:"idempotencyKey"`
	CreatedAt      *time.Time      `json:"createdAt"`
}

type eventDetailJSON struct {
	eventJSON
	Deliveries []deliveryJSON `json:"deliveries"`
}

func eventOut(e *fsm.Event) eventJSON {
	data := json.RawMessage(e.Data)
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	if fsm.LifecycleEventTypes[e.Type] && bytes.Contains(data, []byte(`"headers"`)) {
		data = maskEventHeaders(data)
	}
	return eventJSON{
		ID: e.ID, Project: e.Project, Type: e.Type, Data: data, Status: e.Status, SkipReason: e.SkipReason,
		ScheduledAt: timePtr(e.ScheduledAt), PublishedAt: timePtr(e.PublishedAt),
		IdempotencyKey: strPtr(e.IdempotencyKey), CreatedAt: timePtr(e.CreatedAt),
	}
}

// maskEventHeaders masks the header values in the data of a lifecycle event
// that Chime stored before header values were treated as secrets (the job
// under "job", and its old and new values under "changes"): every object
// named "headers" has its values replaced. New events are stored masked
// (fsm.MaskHeaders); published events' data is the publisher's own and is
// never touched.
func maskEventHeaders(data json.RawMessage) json.RawMessage {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return data
	}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				if h, ok := x.(map[string]any); ok && k == "headers" {
					for name := range h {
						h[name] = fsm.MaskedHeaderValue
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range t {
				walk(x)
			}
		}
	}
	walk(v)
	out, err := json.Marshal(v)
	if err != nil {
		return data
	}
	return out
}

// buildEvent validates a publish request and returns the event to store.
func (s *Server) buildEvent(req *eventRequest, project string, now time.Time) (*fsm.Event, error) {
	typeField, atField := req.typeField, req.atField
	if typeField == "" {
		typeField = "type"
	}
	if atField == "" {
		atField = "scheduledAt"
	}
	if req.Type == "" {
		return nil, badRequest(typeField, typeField+" is required, e.g. invoice.paid")
	}
	if err := validateEventType(typeField, req.Type); err != nil {
		return nil, err
	}
	if err := s.validateData("data", req.Data); err != nil {
		return nil, err
	}
	at := now
	if req.ScheduledAt != "" {
		t, err := parseTime(atField, req.ScheduledAt)
		if err != nil {
			return nil, err
		}
		if t.After(now.Add(MaxEventDelay)) {
			return nil, badRequest(atField, atField+" is more than 100 years ahead")
		}
		// A time in the past is kept as given (the receiver sees when the
		// event was meant for); the poller publishes it at once.
		at = t
	}
	if len(req.IdempotencyKey) > MaxIdempotencyLen {
		return nil, badRequest("idempotencyKey", fmt.Sprintf("at most %d characters", MaxIdempotencyLen))
	}
	data := []byte(req.Data)
	if len(data) == 0 {
		data = []byte("null") // the envelope's "data" is always valid JSON
	}
	return &fsm.Event{
		ID: fsm.NewID("evt", now), Project: project, Type: req.Type, Data: data, ScheduledAt: fsm.MillisOf(at),
		Status: fsm.EventScheduled, IdempotencyKey: req.IdempotencyKey, CreatedAt: fsm.MillisOf(now),
	}, nil
}

// publishEvent stores the event as scheduled; the leader's poller fans it
// out when it is due (at once when scheduledAt is absent or past), so the
// answer is 202. A valid request with a repeated idempotencyKey answers 200
// with the event that key first created, whatever else the body says.
func (s *Server) publishEvent(c *gin.Context) error {
	project, ev, err := decodeNew(s, c, s.buildEvent)
	if err != nil {
		return err
	}
	prior := func() (*fsm.Event, error) {
		return s.cfg.Cluster.FSM().State().EventByIdempotencyKey(project, ev.IdempotencyKey)
	}
	if p, err := prior(); err == nil {
		c.JSON(http.StatusOK, eventOut(p))
		return nil
	}
	if err := s.checkQuota(project, fsm.QuotaPublishEvent); err != nil {
		return err
	}
	_, stored, err := putNew(s, c, fsm.TableEvents, ev, ev.ID, (*fsm.State).Event)
	if errors.Is(err, fsm.ErrConflict) && ev.IdempotencyKey != "" {
		// A concurrent publish with the same key won the race.
		if p, perr := prior(); perr == nil {
			c.JSON(http.StatusOK, eventOut(p))
			return nil
		}
	}
	if err != nil {
		return err
	}
	c.JSON(http.StatusAccepted, eventOut(stored))
	return nil
}

// getEvent shows the event with its deliveries: one per endpoint subscribed
// when it was published, so the list is bounded by the project's endpoints.
func (s *Server) getEvent(c *gin.Context) error {
	st, ev, err := load(s, c, (*fsm.State).Event, eventProject, "event")
	if err != nil {
		return err
	}
	ds, _ := st.DeliveriesByEvent(ev.ID, "", 0)
	c.JSON(http.StatusOK, eventDetailJSON{eventJSON: eventOut(ev), Deliveries: deliveriesOut(ds)})
	return nil
}
