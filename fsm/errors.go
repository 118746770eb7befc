package fsm

import (
	"errors"
	"fmt"
)

// Sentinel kinds of domain error. Match them with errors.Is; the API maps them
// to HTTP statuses in one place.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
)

// Stable error codes, as they appear in API error bodies and in results
// forwarded between nodes.
const (
	CodeNotFound = "not_found"
	CodeConflict = "conflict"
	CodeInvalid  = "invalid"
)

// Error is a domain error returned in a Result: deterministic, so every
// replica computes the same one, and safe to show to the API client.
type Error struct {
	Kind    error  // ErrNotFound, ErrConflict or ErrInvalid (nil for an unknown code)
	Code    string // stable: "not_found", "conflict", "invalid"
	Message string
	Field   string // the offending field, when there is one
	// RetryAfterMs is, for ErrQuota, how long to wait before trying again
	// (0: waiting alone does not help, e.g. a count limit).
	RetryAfterMs int64
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if e.Kind != nil {
		return e.Kind.Error()
	}
	return e.Code
}

func (e *Error) Unwrap() error { return e.Kind }

// ErrorFromCode rebuilds an *Error from its code, e.g. after a result was
// forwarded from the leader. An unknown code keeps its code but has no Kind.
func ErrorFromCode(code, message, field string) error {
	var kind error
	switch code {
	case CodeNotFound:
		kind = ErrNotFound
	case CodeConflict:
		kind = ErrConflict
	case CodeInvalid:
		kind = ErrInvalid
	case CodeQuota:
		kind = ErrQuota
	}
	return &Error{Kind: kind, Code: code, Message: message, Field: field}
}

func notFound(field, format string, args ...any) *Error {
	return &Error{Kind: ErrNotFound, Code: CodeNotFound, Field: field, Message: fmt.Sprintf(format, args...)}
}

func conflict(field, format string, args ...any) *Error {
	return &Error{Kind: ErrConflict, Code: CodeConflict, Field: field, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}
