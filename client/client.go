package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of a new Client.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultStreamTimeout = 10 * time.Minute
	// maxErrorBody bounds how much of an error answer is read: the API's are a
	// few hundred bytes, and a proxy's HTML page is of no use past its start.
	maxErrorBody = 64 << 10
)

// Client calls one Chime node. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	baseErr   error
	token     string
	project   string
	userAgent string
	http      *http.Client
	// stream is http with the stream timeout: a snapshot is the whole state
	// and may take longer to move than any ordinary call.
	stream *http.Client
	// open is http without a timeout, for the change stream, which lasts as
	// long as its context.
	open          *http.Client
	timeout       time.Duration
	timeoutSet    bool
	streamTimeout time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends requests through hc (its Transport, its Timeout).
// Snapshot transfers use a copy of it with the stream timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithTimeout bounds each ordinary call (default 30 s; 0 means no bound
// other than the context's).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout, c.timeoutSet = d, true }
}

// WithStreamTimeout bounds a snapshot download or restore (default 10 min).
func WithStreamTimeout(d time.Duration) Option {
	return func(c *Client) { c.streamTimeout = d }
}

// WithProject makes every project-scoped call act in project (?project=);
// without it the API uses the token's project, else "default". Admin tokens
// that are not bound to a project use it to reach other projects.
func WithProject(project string) Option {
	return func(c *Client) { c.project = project }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client of the node at addr ("http://127.0.0.1:8700",
// "https://chime.example.com" or a bare "127.0.0.1:8700", which means http)
// that authenticates with token (empty: no Authorization header, enough
// for health, readiness and cluster status only). A malformed addr is
// reported by every call.
func New(addr, token string, opts ...Option) *Client {
	c := &Client{token: token, userAgent: "chime-go-client", timeout: DefaultTimeout, streamTimeout: DefaultStreamTimeout}
	c.base, c.baseErr = parseAddr(addr)
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: c.timeout}
	} else if c.timeoutSet {
		// A copy: the caller's client may be shared with other code.
		hc := *c.http
		hc.Timeout = c.timeout
		c.http = &hc
	}
	sc, oc := *c.http, *c.http
	sc.Timeout, oc.Timeout = c.streamTimeout, 0
	c.stream, c.open = &sc, &oc
	return c
}

func parseAddr(addr string) (*url.URL, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return nil, errors.New("chime: no API address: give one such as http://127.0.0.1:8700")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("chime: API address %q: %w", addr, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("chime: API address %q: use http://host:port or https://host", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("chime: API address %q: give no query or fragment", addr)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

// Addr is the base URL calls go to.
func (c *Client) Addr() string {
	if c.base == nil {
		return ""
	}
	return c.base.String()
}

// Project is the project set with WithProject ("" when none).
func (c *Client) Project() string { return c.project }

// InProject returns a copy of c that acts in project; c is unchanged.
func (c *Client) InProject(project string) *Client {
	cp := *c
	cp.project = project
	return &cp
}

// Error is an answer of the API outside 2xx. Code, Field and Message come
// from the API's error body {"error": {"code", "field", "message"}}; Field
// names the request field to fix, when there is one.
type Error struct {
	Status  int
	Code    string
	Field   string
	Message string
	// RetryAfter is the server's Retry-After (on 429s: a rate limit; on 503s: an election, a
	// catch-up, a shutdown), 0 when absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chime: %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Field != "" {
		b.WriteString(" (field " + e.Field + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

type rawBodyKey struct{}

// WithRawBody returns a context under which every successful call stores the
// exact body the API answered in *dst (the last call wins; a 204 stores
// nothing). It is how a caller prints the API's own JSON without a second
// set of types; dst must not be shared between concurrent calls.
func WithRawBody(ctx context.Context, dst *[]byte) context.Context {
	return context.WithValue(ctx, rawBodyKey{}, dst)
}

type idempotencyKey struct{}

// WithIdempotencyKey returns a context under which a state-changing POST
// carries Idempotency-Key: key. Sent again with the same key (within the
// API's 24 h window), the call gets the first answer back instead of doing
// the work twice, which makes it safe to repeat a create or a trigger whose
// answer was lost. Use one key per intended operation: the same key on a
// different call is refused (422 idempotency_key_reused), and a concurrent
// repeat gets 409 idempotency_in_progress (retry it). A key belongs to the
// token that used it first: another token gets 409
// idempotency_key_other_caller. A replayed answer never holds a secret: a
// repeated CreateToken, CreateEndpoint or RotateSecret returns the object
// with Token or Secret empty (the answer's Chime-Secret-Withheld header names
// the field); the secret was in the first answer only.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKey{}, key)
}

// request describes one call.
type request struct {
	method string
	path   string
	query  url.Values
	// scoped calls carry ?project= when the client has one.
	scoped bool
	body   any
	// rawBody is sent as is (a snapshot), instead of body.
	rawBody     io.Reader
	contentType string
	// stream runs the call under the stream timeout, open under none.
	stream, open bool
}

// do sends r and decodes a 2xx JSON answer into out (nil: the body is
// discarded).
func (c *Client) do(ctx context.Context, r request, out any) error {
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("chime: %s %s: read answer: %w", r.method, r.path, err)
	}
	if dst, ok := ctx.Value(rawBodyKey{}).(*[]byte); ok && dst != nil && len(body) > 0 {
		*dst = body
	}
	if out == nil || len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("chime: %s %s: decode answer: %w", r.method, r.path, err)
	}
	return nil
}

// send makes the call and returns a 2xx response with its body open; any
// other answer becomes an *Error.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	// r.path holds escaped ids, so it is joined as text, not into u.Path.
	u, err := url.Parse(c.base.String() + r.path)
	if err != nil {
		return nil, fmt.Errorf("chime: %s %s: %w", r.method, r.path, err)
	}
	q := r.query
	if r.scoped && c.project != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("project", c.project)
	}
	u.RawQuery = q.Encode()

	var body io.Reader
	contentType := r.contentType
	switch {
	case r.rawBody != nil:
		body = r.rawBody
	case r.body != nil:
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("chime: %s %s: encode request: %w", r.method, r.path, err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("chime: %s %s: %w", r.method, r.path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if key, _ := ctx.Value(idempotencyKey{}).(string); key != "" && r.method == http.MethodPost {
		req.Header.Set("Idempotency-Key", key)
	}
	hc := c.http
	switch {
	case r.open:
		hc = c.open
	case r.stream:
		hc = c.stream
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(resp)
}

func decodeError(resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode}
	if s, err := time.ParseDuration(resp.Header.Get("Retry-After") + "s"); err == nil && s > 0 {
		e.RetryAfter = s
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error != nil {
		e.Code, e.Field, e.Message = body.Error.Code, body.Error.Field, body.Error.Message
		return e
	}
	// Not Chime's error body (a proxy, a load balancer): keep what it said.
	e.Message = strings.TrimSpace(string(raw))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "…"
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// id escapes one path segment.
func id(s string) string { return url.PathEscape(s) }

// Ptr returns a pointer to v, for the optional fields of requests and
// patches: client.Ptr(false), client.Ptr(int64(3600)).
func Ptr[T any](v T) *T { return &v }
