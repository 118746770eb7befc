package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Limits on requests; documented in docs/api.md and the OpenAPI document.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultListLimit    = 100
	MaxListLimit        = 500
)

// Defaults of Config.BodyReadGrace and Config.MinBodyRate: a 1 MiB body
// may take 10 s + 64 s; a client that sends a byte now and then is cut
// after about 10 s.
const (
	DefaultBodyReadGrace = 10 * time.Second
	DefaultMinBodyRate   = 16 << 10 // bytes per second
)

// decodeJSON reads a JSON object into v strictly: the body must fit the
// limit, arrive in time (timedBody), be one JSON value, and name no unknown
// field. Errors name the field.
func (s *Server) decodeJSON(c *gin.Context, v any) error {
	done := s.timedBody(c)
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes))
	done()
	if err != nil {
		return bodyError(err)
	}
	if ct := c.ContentType(); !jsonContentType(ct) {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Message: fmt.Sprintf("Content-Type %q: send application/json", ct)}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "request body is empty: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return badRequest("", "request body holds more than one JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return badRequest("", "request body holds more than one JSON value")
	}
	return nil
}

// bodyError is the answer to a body that could not be read.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "payload_too_large",
			Message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	case errors.Is(err, errBodyTooSlow):
		return err
	}
	return badRequest("", "cannot read request body: "+err.Error())
}

// timedBody makes reading the request's body fail with errBodyTooSlow once
// it falls behind Config.MinBodyRate after Config.BodyReadGrace from the
// first read: the read deadline of the connection moves with every read to
// start + grace + bytes read / rate, so a body of any size (the restore's
// snapshot too) may take as long as a client at the minimum rate needs,
// and a trickling one is cut. Without it, a client sending a byte now and
// then holds a connection and a handler for as long as it likes.
//
// done clears the deadline and must be called once the handler has read
// what it wants: a deadline left to pass while the handler still runs
// would fail any later read of the connection, net/http's own included (a
// body read to its end clears it itself). Reading the body again later
// re-arms it. After a timeout done leaves the deadline passed, so that
// net/http, which reads what is left of a body before it answers, fails at
// once and closes the connection instead of waiting for the trickle.
// Calling timedBody again for the same request reuses the wrapper, as long
// as the body is still the wrapper itself.
func (s *Server) timedBody(c *gin.Context) (done func()) {
	b, ok := c.Request.Body.(*deadlineBody)
	if !ok {
		if c.Request.Body == nil || c.Request.Body == http.NoBody {
			return func() {}
		}
		b = &deadlineBody{ReadCloser: c.Request.Body, rc: http.NewResponseController(c.Writer),
			grace: s.cfg.BodyReadGrace, rate: s.cfg.MinBodyRate}
		c.Request.Body = b
	}
	return func() {
		if b.timedOut {
			c.Header("Connection", "close")
			return
		}
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

// deadlineBody is a request body under timedBody's rule.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	grace    time.Duration
	rate     int64
	start    time.Time
	n        int64
	timedOut bool
	eof      bool // read to its end: no deadline is set again
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	now := time.Now()
	if b.start.IsZero() {
		b.start = now
	}
	allowed := b.grace + time.Duration(float64(b.n)/float64(b.rate)*float64(time.Second))
	// Not supported (a test's recorder, say): the body is read untimed.
	_ = b.rc.SetReadDeadline(b.start.Add(allowed))
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if b.eof = err == io.EOF; b.eof {
		// Read to its end: whatever the handler does next (a restore's
		// minutes of work) runs under no deadline of the body's.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	var ne net.Error
	if err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()) {
		b.timedOut = true
		return n, fmt.Errorf("%w: %d bytes in %s; send at least %d bytes per second after the first %s",
			errBodyTooSlow, b.n, time.Since(b.start).Round(time.Millisecond), b.rate, b.grace)
	}
	return n, err
}

// jsonContentType accepts JSON, no type at all, and curl's default for -d
// (application/x-www-form-urlencoded): the body is parsed as JSON either way,
// and refusing `curl -d '{...}'` would only punish the most common client.
func jsonContentType(ct string) bool {
	switch {
	case ct == "", ct == "application/json", ct == "application/x-www-form-urlencoded":
		return true
	case strings.HasPrefix(ct, "application/") && strings.HasSuffix(ct, "+json"):
		return true
	}
	return false
}

// jsonError turns encoding/json's errors into a 400 that names the field.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest("", fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return badRequest("", fmt.Sprintf("request body must be a JSON object, not %s", te.Value))
		}
		return badRequest(field, fmt.Sprintf("%s must be %s, not %s", field, jsonTypeName(te.Type.Kind().String()), te.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "malformed JSON: unexpected end of body")
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name, _ := strconv.Unquote(rest)
		return badRequest(name, fmt.Sprintf("unknown field %s", rest))
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return badRequest("", "invalid JSON: "+msg)
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	}
	return "a " + kind
}

// listParams reads ?limit= and ?cursor= (an opaque token we issued).
func listParams(c *gin.Context) (limit int, after string, err error) {
	limit = DefaultListLimit
	if v := c.Query("limit"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > MaxListLimit {
			return 0, "", badRequest("limit", fmt.Sprintf("limit must be an integer from 1 to %d", MaxListLimit))
		}
		limit = n
	}
	if v := c.Query("cursor"); v != "" {
		b, derr := base64.RawURLEncoding.DecodeString(v)
		if derr != nil || len(b) == 0 {
			return 0, "", badRequest("cursor", "cursor is not one this API issued; pass nextCursor from a previous page")
		}
		after = string(b)
	}
	return limit, after, nil
}

// listBody is the shape of every list: {"items": [...], "nextCursor": "..." | null}.
func listBody[T any](items []T, next string) gin.H {
	if items == nil {
		items = []T{}
	}
	var cursor any
	if next != "" {
		cursor = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	return gin.H{"items": items, "nextCursor": cursor}
}
