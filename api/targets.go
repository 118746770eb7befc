package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
	"golang.org/x/net/http/httpguts"
)

// Limits on delivery targets; documented in the OpenAPI document.
const (
	MaxHeaders          = 50
	MaxHeaderValueLen   = 4096
	DefaultMaxDataBytes = 256 << 10
	MaxTimeoutSeconds   = 60
	MaxIdempotencyLen   = 200
)

var (
	headerNamePattern = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
	// Event types are dot-separated segments (invoice.paid); subscriptions
	// may end in ".*" or be "*".
	eventTypePattern    = regexp.MustCompile(`^[a-z0-9_-]{1,64}(\.[a-z0-9_-]{1,64}){0,9}$`)
	subscriptionPattern = regexp.MustCompile(`^(\*|[a-z0-9_-]{1,64}(\.[a-z0-9_-]{1,64}){0,9}(\.\*)?)$`)
)

var allowedMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true,
}

func validateURL(field, raw string) error {
	if raw == "" {
		return badRequest(field, field+" is required")
	}
	if _, err := dispatch.ValidateURL(raw); err != nil {
		msg := err.Error()
		var fe *fsm.Error
		if errors.As(err, &fe) {
			// dispatch words its messages for a field called "url".
			msg = field + strings.TrimPrefix(fe.Message, "url")
		}
		return badRequest(field, msg)
	}
	return nil
}

func normalizeMethod(field, m string) (string, error) {
	if m == "" {
		return http.MethodPost, nil
	}
	up := strings.ToUpper(m)
	if !allowedMethods[up] {
		return "", badRequest(field, fmt.Sprintf("method %q: use GET, HEAD, POST, PUT, PATCH or DELETE", m))
	}
	return up, nil
}

func validateHeaders(field string, h map[string]string) error {
	if len(h) > MaxHeaders {
		return badRequest(field, fmt.Sprintf("at most %d headers", MaxHeaders))
	}
	for k, v := range h {
		switch {
		case !headerNamePattern.MatchString(k) || !httpguts.ValidHeaderFieldName(k):
			return badRequest(field+"."+k, fmt.Sprintf("%q is not a valid header name", k))
		case dispatch.ReservedHeader(k):
			return badRequest(field+"."+k, fmt.Sprintf("%s is set by Chime on every attempt and cannot be overridden", k))
		case len(v) > MaxHeaderValueLen:
			return badRequest(field+"."+k, fmt.Sprintf("header value must be at most %d bytes", MaxHeaderValueLen))
		case !httpguts.ValidHeaderFieldValue(v):
			// net/http refuses to send such a value: every attempt would fail.
			return badRequest(field+"."+k, "header value must not hold control characters (line breaks, NUL, DEL, …); tabs are allowed")
		case v == fsm.MaskedHeaderValue:
			// A shown object sent back (GET, edit, PATCH) must not store the
			// mask in place of the credential.
			return badRequest(field+"."+k, fmt.Sprintf("%q is how header values are shown, not a value: send the real value (values are never shown back)", v))
		}
	}
	return nil
}

// validateData checks a raw JSON payload against the size limit.
func (s *Server) validateData(field string, raw json.RawMessage) error {
	if int64(len(raw)) > s.cfg.MaxDataBytes {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "payload_too_large", Field: field,
			Message: fmt.Sprintf("%s is %d bytes; the limit is %d", field, len(raw), s.cfg.MaxDataBytes)}
	}
	return nil
}

func validateEventType(field, t string) error {
	if !eventTypePattern.MatchString(t) {
		return badRequest(field, fmt.Sprintf("event type %q: use dot-separated lowercase segments, e.g. invoice.paid", t))
	}
	// Clients may subscribe to Chime's own event types but not publish them
	// or use them as a job's eventType: a receiver must be able to trust that
	// an endpoint.disabled really comes from Chime.
	if fsm.LifecycleEventTypes[t] {
		return badRequest(field, fmt.Sprintf("event type %q is emitted by Chime itself; subscribe to it, but publish your own types", t))
	}
	return nil
}

// retryPolicyJSON is the API form of a retry policy (004).
type retryPolicyJSON struct {
	MaxAttempts         int     `json:"maxAttempts"`
	Backoff             string  `json:"backoff"`
	InitialDelaySeconds float64 `json:"initialDelaySeconds"`
	MaxDelaySeconds     float64 `json:"maxDelaySeconds"`
	Jitter              float64 `json:"jitter"`
}

func retryOut(p fsm.RetryPolicy) retryPolicyJSON {
	return retryPolicyJSON{MaxAttempts: p.MaxAttempts, Backoff: p.Backoff,
		InitialDelaySeconds: float64(p.InitialDelayMs) / 1000, MaxDelaySeconds: float64(p.MaxDelayMs) / 1000, Jitter: p.Jitter}
}

// retryIn merges a partial policy from the request over the defaults and
// validates the result.
func retryIn(field string, in *retryPolicyJSON, def fsm.RetryPolicy) (fsm.RetryPolicy, error) {
	p := def
	if in != nil {
		if in.MaxAttempts != 0 {
			p.MaxAttempts = in.MaxAttempts
		}
		if in.Backoff != "" {
			p.Backoff = in.Backoff
		}
		if in.InitialDelaySeconds != 0 {
			p.InitialDelayMs = int64(in.InitialDelaySeconds * 1000)
		}
		if in.MaxDelaySeconds != 0 {
			p.MaxDelayMs = int64(in.MaxDelaySeconds * 1000)
		}
		p.Jitter = in.Jitter
	}
	if err := dispatch.ValidatePolicy(p); err != nil {
		return p, fieldFromError(field, err)
	}
	return p, nil
}

// fieldFromError turns a validation error that names its own field (an
// *fsm.Error, as dispatch returns) into a 400; prefix is the fallback field.
func fieldFromError(prefix string, err error) error {
	field := prefix
	var fe *fsm.Error
	if errors.As(err, &fe) && fe.Field != "" {
		field = fe.Field
	}
	return badRequest(field, err.Error())
}

func timeoutMs(field string, seconds float64, def int64) (int64, error) {
	if seconds == 0 {
		return def, nil
	}
	if seconds < 1 || seconds > MaxTimeoutSeconds {
		return 0, badRequest(field, fmt.Sprintf("timeoutSeconds must be from 1 to %d", MaxTimeoutSeconds))
	}
	return int64(seconds * 1000), nil
}

// callShape validates what every target shares (its HTTP method, headers
// and attempt timeout) and returns the method and timeout to store.
func callShape(method string, headers map[string]string, timeoutSeconds float64) (string, int64, error) {
	m, err := normalizeMethod("method", method)
	if err != nil {
		return "", 0, err
	}
	if err := validateHeaders("headers", headers); err != nil {
		return "", 0, err
	}
	tmo, err := timeoutMs("timeoutSeconds", timeoutSeconds, dispatch.DefaultTimeout.Milliseconds())
	if err != nil {
		return "", 0, err
	}
	return m, tmo, nil
}
