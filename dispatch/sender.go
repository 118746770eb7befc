package dispatch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Sender defaults and bounds.
const (
	DefaultMaxResponseBytes = 64 << 10
	DefaultDialTimeout      = 5 * time.Second
	DefaultTimeout          = 10 * time.Second // per attempt, as in 001
	MaxTimeout              = 60 * time.Second
	SummaryBytes            = 1 << 10 // response summary kept with an attempt
	DefaultUserAgent        = "Chime"

	tlsHandshakeTimeout = 10 * time.Second
	maxIdleConnsPerHost = 64 // one per worker of a ~64-worker pool hitting one receiver
	maxIdleConns        = 256
	idleConnTimeout     = 90 * time.Second
	maxHeaderBytes      = 64 << 10
	maxErrBytes         = 512
	// maxPolicyTransports bounds the transports kept for projects with
	// their own target ranges (one per distinct policy).
	maxPolicyTransports = 256
)

// SenderConfig configures a Sender; zero fields take the defaults.
type SenderConfig struct {
	Policy           TargetPolicy
	UserAgent        string        // default "Chime"; cmd passes "Chime/<version>"
	MaxResponseBytes int64         // default 64 KiB
	DialTimeout      time.Duration // default 5 s
}

// Sender makes the HTTP call of one attempt. It is safe for concurrent use
// and meant to be shared by all workers of a node, so that connections to a
// receiver are kept alive and reused.
type Sender struct {
	client    *http.Client
	transport *http.Transport
	userAgent string
	maxBody   int64
	policy    TargetPolicy
	newClient func(TargetPolicy) (*http.Client, *http.Transport)

	// Projects with their own target ranges get their own transport per
	// policy: a kept-alive connection dialled under one project's ranges
	// must never carry another project's call (which never went through its
	// own check).
	mu       sync.Mutex
	byPolicy map[string]*http.Client
}

// Request is one attempt's HTTP call, fully prepared (signature headers
// included). Send adds User-Agent (SenderConfig.UserAgent) and, when a body is
// sent, Content-Type: application/json, unless Headers set them.
type Request struct {
	Method  string // default POST
	URL     string
	Headers map[string]string
	Body    []byte        // not sent for GET and HEAD
	Timeout time.Duration // whole call, body read included; default 10 s, at most 60 s
	// Policy, when set, replaces the sender's address policy for this call
	// (a project's own ranges, see TargetPolicy.ForProject).
	Policy *TargetPolicy
}

// Outcome is what an attempt records.
type Outcome struct {
	StatusCode int           // 0 when no response arrived
	Latency    time.Duration // from the start of the call to the end of the body read
	Summary    string        // the first ≤1 KiB of the response body, valid UTF-8
	RetryAfter time.Duration // the response's Retry-After, 0 = none
	Err        string        // "" when a response arrived, except "redirect to …" for a 3xx
	Success    bool          // 2xx only
	Gone       bool          // 410: the receiver wants no more deliveries
	// Unreachable: no HTTP answer arrived because of the target (timeout,
	// connection refused or reset, TLS failure); it feeds the target's
	// circuit breaker. A refused address or a cancelled call is not.
	Unreachable bool
}

// NewSender builds a Sender with one shared transport: keep-alive, no proxy
// (never from the environment: a proxy would dial on our behalf and bypass
// the address check), TLS ≥ 1.2 with a handshake timeout, HTTP/1.1 only, and
// the TargetPolicy checked on every dialled address. Redirects are never
// followed.
//
// HTTP/1.1 only (Go enables HTTP/2 automatically only for a default dialer):
// each in-flight attempt then owns its connection, so closing an oversized
// response closes exactly that connection, and one slow receiver response
// does not share a connection's flow control with the others.
func NewSender(cfg SenderConfig) *Sender {
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	newClient := func(policy TargetPolicy) (*http.Client, *http.Transport) {
		t := &http.Transport{
			Proxy:                  nil,
			DialContext:            policy.DialContext(dialer),
			TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:    tlsHandshakeTimeout,
			ForceAttemptHTTP2:      false,
			MaxIdleConns:           maxIdleConns,
			MaxIdleConnsPerHost:    maxIdleConnsPerHost,
			IdleConnTimeout:        idleConnTimeout,
			MaxResponseHeaderBytes: maxHeaderBytes,
			ExpectContinueTimeout:  0,
		}
		return &http.Client{
			Transport: t,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}, t
	}
	client, t := newClient(cfg.Policy)
	return &Sender{
		transport: t, client: client, newClient: newClient, policy: cfg.Policy,
		byPolicy:  map[string]*http.Client{},
		userAgent: cfg.UserAgent,
		maxBody:   cfg.MaxResponseBytes,
	}
}

// clientFor returns the client of policy p (nil: the sender's own).
func (s *Sender) clientFor(p *TargetPolicy) *http.Client {
	if p == nil {
		return s.client
	}
	k := p.key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byPolicy[k]; ok {
		return c
	}
	if len(s.byPolicy) >= maxPolicyTransports {
		for k, c := range s.byPolicy { // calls in flight keep theirs
			c.CloseIdleConnections()
			delete(s.byPolicy, k)
		}
	}
	c, _ := s.newClient(*p)
	s.byPolicy[k] = c
	return c
}

// Close closes idle connections. Calls in flight are not interrupted.
func (s *Sender) Close() {
	s.transport.CloseIdleConnections()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.byPolicy {
		c.CloseIdleConnections()
	}
}

// Send makes the call and reports its outcome; it never returns an error and
// never panics: bad input is an Outcome with Err set.
//
// The response body is read up to MaxResponseBytes so that the connection can
// be reused; a longer body is cut there and its connection closed, not
// drained. A 3xx is returned as it is (never followed) and is a failure with
// Err "redirect to <Location>". A 2xx is a success even if reading its body
// then failed: the receiver has answered.
func (s *Sender) Send(ctx context.Context, r Request) (out Outcome) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			out = Outcome{Latency: time.Since(start), Err: cut(fmt.Sprintf("internal error: %v", p), maxErrBytes)}
		}
	}()
	if ctx == nil {
		ctx = context.Background()
	}
	fail := func(msg string) Outcome {
		return Outcome{Latency: time.Since(start), Err: cut(msg, maxErrBytes)}
	}
	if _, err := ValidateURL(r.URL); err != nil {
		return fail(err.Error())
	}
	method := strings.ToUpper(strings.TrimSpace(r.Method))
	if method == "" {
		method = http.MethodPost
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout = min(timeout, MaxTimeout)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var body io.Reader
	bodiless := method == http.MethodGet || method == http.MethodHead
	withBody := !bodiless && len(r.Body) > 0
	if withBody {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(tctx, method, r.URL, body)
	if err != nil {
		return fail(unwrapURLError(err).Error())
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", s.userAgent)
	}
	if withBody && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bodiless {
		req.Header.Del("Content-Type")
	}

	policy := s.policy
	if r.Policy != nil {
		policy = *r.Policy
	}
	var remote atomic.Pointer[netip.Addr]
	if policy.WithholdInternalBodies && !policy.AllowPrivate {
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if ap, err := netip.ParseAddrPort(info.Conn.RemoteAddr().String()); err == nil {
					a := ap.Addr().Unmap()
					remote.Store(&a)
				}
			},
		}))
	}
	resp, err := s.clientFor(r.Policy).Do(req)
	if err != nil {
		out = fail(describe(err, ctx, tctx, timeout))
		_, refused := errors.AsType[*RefusedError](err)
		out.Unreachable = !refused && ctx.Err() == nil
		return out
	}
	defer resp.Body.Close()
	out.StatusCode = resp.StatusCode
	out.Success = resp.StatusCode >= 200 && resp.StatusCode <= 299
	out.Gone = resp.StatusCode == http.StatusGone
	out.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		out.Err = "redirect (not followed)"
		if loc, err := resp.Location(); err == nil {
			out.Err = cut("redirect to "+loc.String()+" (not followed)", maxErrBytes)
		}
	}

	// Read one byte more than the limit to tell "exactly the limit" from
	// "longer". Closing a body that was not read to EOF makes the transport
	// close the connection instead of draining it.
	data, _ := io.ReadAll(io.LimitReader(resp.Body, s.maxBody+1))
	if int64(len(data)) > s.maxBody {
		data = data[:s.maxBody]
	}
	resp.Body.Close()
	out.Summary = summarize(maskEchoedHeaders(data, r.Headers), SummaryBytes)
	// An address only the node-wide ranges admit: keep status and timing,
	// not what an internal service said (see WithholdInternalBodies).
	if a := remote.Load(); a != nil {
		if re, ok := (TargetPolicy{}).Check(*a).(*RefusedError); ok {
			out.Summary = fmt.Sprintf("(response body not recorded: %s is %s, allowed by the node's --allowed-target-cidrs; an admin can grant the project this range to record it)", re.Addr, re.Reason)
		}
	}
	out.Latency = time.Since(start)
	return out
}

// minEchoMask is the shortest header value masked in a response: shorter
// ones (an attempt number) are no secret, and masking them would garble the
// summary.
const minEchoMask = 8

// maskEchoedHeaders replaces, in a response body, every value of a header
// the call sent: a receiver that echoes its request (a debugging endpoint,
// an error page) must not turn the summary, which read tokens see, into a
// copy of the credentials that the API never shows (issue 12, item 7).
func maskEchoedHeaders(body []byte, headers map[string]string) []byte {
	for _, v := range headers {
		if len(v) >= minEchoMask && bytes.Contains(body, []byte(v)) {
			body = bytes.ReplaceAll(body, []byte(v), []byte("********"))
		}
	}
	return body
}

// describe turns a client error into the attempt's error text.
func describe(err error, parent, call context.Context, timeout time.Duration) string {
	if re, ok := errors.AsType[*RefusedError](err); ok {
		return re.Error()
	}
	if parent.Err() != nil {
		return "cancelled: " + context.Cause(parent).Error()
	}
	if errors.Is(call.Err(), context.DeadlineExceeded) {
		return "timeout after " + timeout.String()
	}
	return unwrapURLError(err).Error()
}

// unwrapURLError drops the `Post "http://…": ` prefix of a *url.Error: the
// attempt already records the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok && ue.Err != nil {
		return ue.Err
	}
	return err
}

// summarize returns at most n bytes of b as valid UTF-8: it stops before a
// rune that would not fit whole and replaces invalid bytes with U+FFFD.
func summarize(b []byte, n int) string {
	if len(b) <= n && utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 && !utf8.FullRune(b) {
			break // a rune cut by the read limit
		}
		if sb.Len()+utf8.RuneLen(r) > n {
			break
		}
		sb.WriteRune(r)
		b = b[size:]
	}
	return sb.String()
}

// cut shortens s to at most n bytes on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return summarize([]byte(s), n)
}
