package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
	"github.com/gin-gonic/gin"
)

// Error is the body of every error response:
// {"error": {"code": "...", "message": "...", "field": "..."}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// RetryAfter, in seconds, becomes the Retry-After header (0: none).
	RetryAfter int64 `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// badRequest is a 400 naming the offending field.
func badRequest(field, message string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Field: field, Message: message}
}

var errNotReady = errors.New("not ready")

// diskFullRetryAfter is the Retry-After, in seconds, of a write refused for
// a short disk.
const diskFullRetryAfter = 10

// errBodyTooSlow: the request body arrived slower than the minimum rate
// (timedBody).
var errBodyTooSlow = errors.New("the request body arrived too slowly")

// toHTTP is the one place where errors become HTTP statuses and codes.
func toHTTP(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var fe *fsm.Error
	msg := err.Error()
	field := ""
	if errors.As(err, &fe) {
		msg, field = fe.Message, fe.Field
	}
	switch {
	case errors.Is(err, fsm.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: msg, Field: field}
	case errors.Is(err, fsm.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: msg, Field: field}
	case errors.Is(err, fsm.ErrQuota):
		// 429 for every limit; Retry-After only where waiting helps (a
		// rate, or deliveries that will settle), not for a count of jobs
		// or endpoints that only a delete or an admin can change.
		var ra int64
		if fe != nil && fe.RetryAfterMs > 0 {
			ra = (fe.RetryAfterMs + 999) / 1000
		}
		return &Error{Status: http.StatusTooManyRequests, Code: fsm.CodeQuota, Message: msg, Field: field, RetryAfter: ra}
	case errors.Is(err, fsm.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: msg, Field: field}
	case errors.Is(err, scheduler.ErrJobNotTriggerable):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: msg, Field: "status"}
	case errors.Is(err, cluster.ErrUnverifiedSnapshot): // before ErrBadSnapshot, which it wraps
		return &Error{Status: http.StatusBadRequest, Code: "unverified_snapshot", Message: msg, Field: "foreign"}
	case errors.Is(err, cluster.ErrBadSnapshot):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_snapshot", Message: msg}
	case errors.Is(err, cluster.ErrNoLeader):
		return &Error{Status: http.StatusServiceUnavailable, Code: "no_leader", Message: msg}
	case errors.Is(err, cluster.ErrLeadershipLost), errors.Is(err, cluster.ErrLeaderUnreachable):
		return &Error{Status: http.StatusServiceUnavailable, Code: "outcome_unknown", Message: msg}
	case errors.Is(err, cluster.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: "timeout", Message: msg}
	case errors.Is(err, cluster.ErrDiskFull):
		// Freeing space takes an operator: retrying every second is noise.
		return &Error{Status: http.StatusServiceUnavailable, Code: "disk_full", Message: msg, RetryAfter: diskFullRetryAfter}
	case errors.Is(err, cluster.ErrShutdown):
		return &Error{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: msg}
	case errors.Is(err, errBodyTooSlow):
		return &Error{Status: http.StatusRequestTimeout, Code: "request_timeout", Message: msg}
	case errors.Is(err, errNotReady):
		return &Error{Status: http.StatusServiceUnavailable, Code: "not_ready", Message: msg}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
}

// fail writes err as the error body and stops the handler chain.
func fail(c *gin.Context, logger *slog.Logger, err error) {
	e := toHTTP(err)
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.FormatInt(e.RetryAfter, 10))
	}
	if e.Status >= 500 {
		if e.Code == "internal" {
			logger.Error("request failed", "method", c.Request.Method, "path", c.FullPath(), "error", err)
		}
		if e.Status == http.StatusServiceUnavailable && e.RetryAfter == 0 {
			// Every 503 here is transient: an election, a catch-up, a
			// shutdown (a disk being freed says how long itself).
			c.Header("Retry-After", "1")
		}
	}
	c.AbortWithStatusJSON(e.Status, gin.H{"error": e})
}
