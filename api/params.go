package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// The statuses a ?status= filter accepts, per resource.
var (
	jobStatuses        = fsm.JobStatuses
	occurrenceStatuses = []string{fsm.OccurrencePending, fsm.OccurrenceCompleted, fsm.OccurrenceSkipped,
		fsm.OccurrenceMissed, fsm.OccurrenceCooldown}
	deliveryStatuses = []string{fsm.DeliveryPending, fsm.DeliveryInFlight, fsm.DeliveryRetryScheduled,
		fsm.DeliverySucceeded, fsm.DeliveryDeadLetter, fsm.DeliveryCancelled, fsm.DeliveryHeld}
)

// MaxIDLen bounds ids passed as filters (endpointId, jobId); no id we mint is
// close to it, so a longer one can only be a mistake.
const MaxIDLen = 100

// notFound is the 404 for an object that does not exist in the caller's
// project, whether it exists elsewhere or not.
func notFound(what, id string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("%s %q not found", what, id)}
}

// inProject returns what get finds for id when it belongs to project. A
// record of another project is reported exactly like a missing one, so no
// caller learns what other projects hold.
func inProject[T any](get func(string) (*T, error), projectOf func(*T) string, what, id, project string) (*T, error) {
	r, err := get(id)
	if err != nil || projectOf(r) != project {
		return nil, notFound(what, id)
	}
	return r, nil
}

// load reads the record the path's :id names, from the state the request
// reads (see scope) and inside its project, as inProject has it.
func load[T any](s *Server, c *gin.Context, get func(*fsm.State, string) (*T, error), projectOf func(*T) string, what string) (*fsm.State, *T, error) {
	project, st, err := s.scope(c)
	if err != nil {
		return nil, nil, err
	}
	r, err := inProject(func(id string) (*T, error) { return get(st, id) }, projectOf, what, c.Param("id"), project)
	if err != nil {
		return nil, nil, err
	}
	return st, r, nil
}

func endpointProject(e *fsm.Endpoint) string     { return e.Project }
func jobProject(j *fsm.Job) string               { return j.Project }
func occurrenceProject(o *fsm.Occurrence) string { return o.Project }
func eventProject(e *fsm.Event) string           { return e.Project }
func deliveryProject(d *fsm.Delivery) string     { return d.Project }

// scope returns the request's project and the state to read from.
// The state comes first: with ?consistent=true its read barrier must also
// cover the project check.
func (s *Server) scope(c *gin.Context) (string, *fsm.State, error) {
	st, err := s.state(c)
	if err != nil {
		return "", nil, err
	}
	project, err := s.project(c)
	if err != nil {
		return "", nil, err
	}
	return project, st, nil
}

// oneOf checks an enumerated value ("" passes: no filter).
func oneOf(field, v string, allowed []string) error {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	return badRequest(field, fmt.Sprintf("%s must be one of %s, not %q", field, strings.Join(allowed, ", "), v))
}

// statusParam reads ?status= and checks it against the resource's statuses.
func statusParam(c *gin.Context, allowed []string) (string, error) {
	v := c.Query("status")
	return v, oneOf("status", v, allowed)
}

// idParam reads a filter that names an object by id.
func idParam(c *gin.Context, field string) (string, error) {
	v := c.Query(field)
	return v, checkID(field, v)
}

func checkID(field, v string) error {
	if len(v) > MaxIDLen {
		return badRequest(field, fmt.Sprintf("%s is longer than %d characters", field, MaxIDLen))
	}
	return nil
}

// parseTime reads an RFC 3339 time ("" is unset, the zero time).
func parseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badRequest(field, fmt.Sprintf("%s must be an RFC 3339 time such as 2024-03-10T07:30:00Z, not %q", field, v))
	}
	return t, nil
}

// timeRange reads a [from, to) pair of RFC 3339 times.
func timeRange(from, to string) (fsm.Millis, fsm.Millis, error) {
	f, err := parseTime("from", from)
	if err != nil {
		return 0, 0, err
	}
	t, err := parseTime("to", to)
	if err != nil {
		return 0, 0, err
	}
	if !f.IsZero() && !t.IsZero() && !t.After(f) {
		return 0, 0, badRequest("to", "to must be after from")
	}
	return fsm.MillisOf(f), fsm.MillisOf(t), nil
}

// boolParam reads an optional ?name=true|false.
func boolParam(c *gin.Context, name string) (bool, error) {
	switch c.Query(name) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, badRequest(name, name+" must be true or false")
}

// strPtr is nil for "": unset strings are null in responses, not "".
func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
