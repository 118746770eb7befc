package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// MaxEventTypes bounds the subscriptions of one endpoint.
const MaxEventTypes = 100

// disabledByAPI is the DisabledReason of an endpoint switched off by hand,
// as opposed to the state machine's auto-deactivation reasons.
const disabledByAPI = "disabled through the API"

// endpointRequest is POST /v1/endpoints (001, 004).
type endpointRequest struct {
	URL            string            `json:"url"`
	Description    string            `json:"description"`
	EventTypes     []string          `json:"eventTypes"`
	Method         string            `json:"method"`
	Headers        map[string]string `json:"headers"`
	TimeoutSeconds float64           `json:"timeoutSeconds"`
	RetryPolicy    *retryPolicyJSON  `json:"retryPolicy"`
	Enabled        *bool             `json:"enabled"`
}

// endpointJSON never carries the secret: it is shown once, in the response
// to the create (endpointCreatedJSON).
type endpointJSON struct {
	ID                  string            `json:"id"`
	Project             string            `json:"project"`
	URL                 string            `json:"url"`
	Description         string            `json:"description"`
	EventTypes          []string          `json:"eventTypes"`
	Method              string            `json:"method"`
	Headers             map[string]string `json:"headers"`
	TimeoutSeconds      float64           `json:"timeoutSeconds"`
	RetryPolicy         retryPolicyJSON   `json:"retryPolicy"`
	Enabled             bool              `json:"enabled"`
	DisabledReason      *string           `json:"disabledReason"`
	ConsecutiveFailures int               `json:"consecutiveFailures"`
	Breaker             *breakerJSON      `json:"breaker,omitempty"` // GET and list only (breakers.go)
	CreatedAt           *time.Time        `json:"createdAt"`
	UpdatedAt           *time.Time        `json:"updatedAt"`
}

type endpointCreatedJSON struct {
	endpointJSON
	Secret string `json:"secret"`
}

type endpointEnabledJSON struct {
	endpointJSON
	// Released is how many held deliveries were re-queued (releaseHeld=true).
	Released *int `json:"released,omitempty"`
}

func endpointOut(e *fsm.Endpoint) endpointJSON {
	out := endpointJSON{
		ID: e.ID, Project: e.Project, URL: e.URL, Description: e.Description, EventTypes: e.EventTypes,
		Method: e.Method, Headers: fsm.MaskHeaders(e.Headers), TimeoutSeconds: float64(e.TimeoutMs) / 1000,
		RetryPolicy: retryOut(e.Retry), Enabled: e.Enabled, DisabledReason: strPtr(e.DisabledReason),
		ConsecutiveFailures: e.ConsecutiveFailures, CreatedAt: timePtr(e.CreatedAt), UpdatedAt: timePtr(e.UpdatedAt),
	}
	if out.EventTypes == nil {
		out.EventTypes = []string{}
	}
	if out.Headers == nil {
		out.Headers = map[string]string{}
	}
	return out
}

func validateSubscriptions(field string, patterns []string) ([]string, error) {
	if len(patterns) == 0 {
		return nil, badRequest(field, field+` is required: a list of event types such as "invoice.paid", "job.*" or "*"`)
	}
	if len(patterns) > MaxEventTypes {
		return nil, badRequest(field, fmt.Sprintf("at most %d event types", MaxEventTypes))
	}
	out := make([]string, 0, len(patterns))
	seen := map[string]bool{}
	for i, p := range patterns {
		if !subscriptionPattern.MatchString(p) {
			return nil, badRequest(fmt.Sprintf("%s[%d]", field, i),
				fmt.Sprintf("%q: use an event type (invoice.paid), a prefix (invoice.*) or *", p))
		}
		// Duplicates would match twice and mean nothing more: keep one.
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// buildEndpoint validates a create request and returns the record to store,
// with a fresh secret.
func buildEndpoint(req *endpointRequest, project string, now time.Time) (*fsm.Endpoint, error) {
	at := fsm.MillisOf(now)
	ep := &fsm.Endpoint{ID: fsm.NewID("ep", now), Project: project, Enabled: true, CreatedAt: at, UpdatedAt: at}
	if err := setEndpoint(ep, req); err != nil {
		return nil, err
	}
	secret, err := dispatch.NewSecret()
	if err != nil {
		return nil, err
	}
	ep.Secret = secret
	return ep, nil
}

// setEndpoint validates the request's fields and sets them on ep. enabled
// absent keeps ep as it is (a new endpoint starts enabled).
func setEndpoint(ep *fsm.Endpoint, req *endpointRequest) error {
	if err := validateURL("url", req.URL); err != nil {
		return err
	}
	if err := validateDescription("description", req.Description); err != nil {
		return err
	}
	types, err := validateSubscriptions("eventTypes", req.EventTypes)
	if err != nil {
		return err
	}
	method, tmo, err := callShape(req.Method, req.Headers, req.TimeoutSeconds)
	if err != nil {
		return err
	}
	retry, err := retryIn("retryPolicy", req.RetryPolicy, dispatch.EndpointDefaultPolicy())
	if err != nil {
		return err
	}
	ep.URL, ep.Description, ep.EventTypes, ep.Method, ep.Headers = req.URL, req.Description, types, method, req.Headers
	ep.TimeoutMs, ep.Retry = tmo, retry
	if req.Enabled != nil && *req.Enabled != ep.Enabled {
		ep.Enabled, ep.DisabledReason = *req.Enabled, ""
		if !ep.Enabled {
			ep.DisabledReason = disabledByAPI
		}
	}
	return nil
}

func (s *Server) createEndpoint(c *gin.Context) error {
	_, ep, err := decodeNew(s, c, buildEndpoint)
	if err != nil {
		return err
	}
	if err := s.checkQuota(ep.Project, fsm.QuotaCreateEndpoint); err != nil {
		return err
	}
	_, stored, err := putNew(s, c, fsm.TableEndpoints, ep, ep.ID, (*fsm.State).Endpoint)
	if err != nil {
		return err
	}
	withhold(c, "secret")
	c.JSON(http.StatusCreated, endpointCreatedJSON{endpointJSON: endpointOut(stored), Secret: stored.Secret})
	return nil
}

func (s *Server) listEndpoints(c *gin.Context) error {
	project, st, err := s.scope(c)
	if err != nil {
		return err
	}
	limit, after, err := listParams(c)
	if err != nil {
		return err
	}
	eps, next := st.Endpoints(project, after, limit)
	items := make([]endpointJSON, 0, len(eps))
	for _, e := range eps {
		items = append(items, s.withBreaker(st, endpointOut(e)))
	}
	c.JSON(http.StatusOK, listBody(items, next))
	return nil
}

func (s *Server) loadEndpoint(c *gin.Context) (*fsm.State, *fsm.Endpoint, error) {
	return load(s, c, (*fsm.State).Endpoint, endpointProject, "endpoint")
}

func (s *Server) getEndpoint(c *gin.Context) error {
	st, ep, err := s.loadEndpoint(c)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, s.withBreaker(st, endpointOut(ep)))
	return nil
}

// listEndpointDeliveries is the endpoint's delivery history (001).
func (s *Server) listEndpointDeliveries(c *gin.Context) error {
	st, ep, err := s.loadEndpoint(c)
	if err != nil {
		return err
	}
	status, err := statusParam(c, deliveryStatuses)
	if err != nil {
		return err
	}
	return s.writeDeliveryPage(c, st, fsm.DeliveryFilter{Project: ep.Project, EndpointID: ep.ID, Status: status})
}

// setEnabled switches the endpoint of the path on or off. Enabling keeps
// consecutiveFailures, as 001 says: only a success resets it; an endpoint
// already so keeps its reason (an auto-deactivation's, say).
func (s *Server) setEnabled(c *gin.Context, enabled bool) (*fsm.Endpoint, error) {
	return s.changeEndpoint(c, func(ep *fsm.Endpoint, _ time.Time) (bool, error) {
		if ep.Enabled == enabled {
			return false, nil
		}
		ep.Enabled, ep.DisabledReason = enabled, ""
		if !enabled {
			ep.DisabledReason = disabledByAPI
		}
		return true, nil
	})
}

// enableEndpoint switches the endpoint on; with ?releaseHeld=true it also
// re-queues every delivery held while it was off. New deliveries are no
// longer held from the moment it is enabled, so the release runs after.
func (s *Server) enableEndpoint(c *gin.Context) error {
	release, err := boolParam(c, "releaseHeld")
	if err != nil {
		return err
	}
	ep, err := s.setEnabled(c, true)
	if err != nil {
		return err
	}
	out := endpointEnabledJSON{endpointJSON: endpointOut(ep)}
	if release {
		n, err := s.releaseHeld(c, ep)
		if err != nil {
			return err
		}
		out.Released = &n
	}
	c.JSON(http.StatusOK, out)
	return nil
}

// releaseHeld re-queues the endpoint's held deliveries, a page at a time.
func (s *Server) releaseHeld(c *gin.Context, ep *fsm.Endpoint) (int, error) {
	st := s.cfg.Cluster.FSM().State()
	f := fsm.DeliveryFilter{Project: ep.Project, EndpointID: ep.ID, Status: fsm.DeliveryHeld}
	n := 0
	for after := ""; ; {
		ds, next := st.DeliveriesMatching(f, after, maxActionsPerCommand)
		ids, err := s.requeue(c, st, ds, fsm.ActionRelease)
		n += len(ids)
		if err != nil || next == "" {
			return n, err
		}
		after = next
	}
}

func (s *Server) disableEndpoint(c *gin.Context) error {
	ep, err := s.setEnabled(c, false)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, endpointOut(ep))
	return nil
}

// testEndpoint is POST /v1/endpoints/{id}/test (001): it sends one
// webhook.test event to this endpoint alone, through the normal pipeline (so
// it is signed, placed and recorded like any delivery, and works on any
// node), and answers with the delivery and its attempt once the attempt is
// made: 200. The call is sent even to a disabled endpoint (checking it before
// enabling it is the point), is tried once, and counts neither for nor
// against the endpoint's health. If no attempt is recorded within the
// endpoint's timeout plus testGrace, the answer is 202 with the delivery as
// it stands; GET /v1/deliveries/{id} shows the outcome later.
func (s *Server) testEndpoint(c *gin.Context) error {
	_, ep, err := s.loadEndpoint(c)
	if err != nil {
		return err
	}
	if err := s.checkQuota(ep.Project, fsm.QuotaPublishEvent); err != nil {
		return err
	}
	now := s.cfg.Now()
	at := fsm.MillisOf(now)
	data, err := json.Marshal(map[string]any{
		"message":  "This is a test event from Chime.",
		"endpoint": map[string]any{"id": ep.ID, "url": ep.URL},
	})
	if err != nil {
		return err
	}
	ev := &fsm.Event{
		ID: fsm.NewID("evt", now), Project: ep.Project, Type: fsm.EventWebhookTest, Data: data, ScheduledAt: at,
		Status: fsm.EventScheduled, InitiatorID: initiator(c), OnlyEndpoint: ep.ID, CreatedAt: at,
	}
	if _, _, err := putNew(s, c, fsm.TableEvents, ev, ev.ID, (*fsm.State).Event); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), fsm.TimeoutOf(ep.TimeoutMs)+testGrace)
	defer cancel()
	f := s.cfg.Cluster.FSM()
	for {
		st := f.State()
		ds, _ := st.DeliveriesByEvent(ev.ID, "", 1)
		if e, _ := st.Event(ev.ID); e != nil && e.Status == fsm.EventSkipped {
			// Its fan-out would have passed maxUndelivered.
			return &fsm.Error{Kind: fsm.ErrQuota, Code: fsm.CodeQuota, Field: "maxUndelivered", Message: e.SkipReason,
				RetryAfterMs: fsm.UndeliveredRetryAfterMs}
		}
		if len(ds) == 1 && (ds[0].Attempts > 0 || ds[0].Terminal()) {
			c.JSON(http.StatusOK, deliveryDetailOut(st, ds[0]))
			return nil
		}
		// Look again once this node applies anything newer than what it read.
		if f.WaitForIndex(ctx, st.Index()+1) != nil {
			if len(ds) == 1 {
				c.JSON(http.StatusAccepted, deliveryDetailOut(st, ds[0]))
				return nil
			}
			return &Error{Status: http.StatusGatewayTimeout, Code: "timeout",
				Message: fmt.Sprintf("the test event %s was not sent within %s; is the cluster firing? (GET /v1/events/%s shows it later)", ev.ID, fsm.TimeoutOf(ep.TimeoutMs)+testGrace, ev.ID)}
		}
	}
}

// testGrace is how long a test call may wait beyond the endpoint's timeout
// for the poller to fan the event out and a node to report the attempt.
const testGrace = 10 * time.Second
