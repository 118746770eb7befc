package dispatch

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chime-sched/chime/client/webhook"
)

// loopback allows the httptest servers on 127.0.0.1 (and nothing else
// special).
var loopback = TargetPolicy{Allowed: []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
}}

func newTestSender(t *testing.T, cfg SenderConfig) *Sender {
	t.Helper()
	if cfg.Policy.Allowed == nil && !cfg.Policy.AllowPrivate {
		cfg.Policy = loopback
	}
	s := NewSender(cfg)
	t.Cleanup(s.Close)
	return s
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestSendOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    Outcome // Latency ignored
	}{
		{"200", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
			Outcome{StatusCode: 200, Summary: "ok", Success: true}},
		{"204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) },
			Outcome{StatusCode: 204, Success: true}},
		{"500 with summary", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, `{"error":"db down"}`)
		}, Outcome{StatusCode: 500, Summary: `{"error":"db down"}`}},
		{"410 gone", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(410) },
			Outcome{StatusCode: 410, Gone: true}},
		{"503 Retry-After seconds", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(503)
		}, Outcome{StatusCode: 503, RetryAfter: 30 * time.Second}},
		{"429 Retry-After far date", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(time.Hour+30*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(429)
		}, Outcome{StatusCode: 429, RetryAfter: time.Hour}}, // compared to the minute below
	}
	s := newTestSender(t, SenderConfig{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, tc.handler)
			got := s.Send(context.Background(), Request{URL: srv.URL, Body: []byte(`{}`)})
			if got.Latency <= 0 {
				t.Errorf("latency %v", got.Latency)
			}
			got.Latency = 0
			if tc.want.RetryAfter >= time.Hour {
				got.RetryAfter = got.RetryAfter.Truncate(time.Minute)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestSendRedirectNotFollowed(t *testing.T) {
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	srv := serve(t, mux.ServeHTTP)
	got := newTestSender(t, SenderConfig{}).Send(context.Background(), Request{URL: srv.URL + "/hook"})
	if got.Success || got.StatusCode != 302 || followed.Load() != 0 {
		t.Fatalf("got %+v, followed %d", got, followed.Load())
	}
	if want := "redirect to " + srv.URL + "/elsewhere"; !strings.HasPrefix(got.Err, want) {
		t.Fatalf("Err %q, want prefix %q", got.Err, want)
	}
}

func TestSendTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	start := time.Now()
	got := newTestSender(t, SenderConfig{}).Send(context.Background(),
		Request{URL: srv.URL, Timeout: 100 * time.Millisecond})
	if got.Err != "timeout after 100ms" || got.StatusCode != 0 || got.Success {
		t.Fatalf("got %+v", got)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v", el)
	}

	// A cancelled parent context is reported as such, not as a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got = newTestSender(t, SenderConfig{}).Send(ctx, Request{URL: srv.URL})
	if !strings.HasPrefix(got.Err, "cancelled") {
		t.Fatalf("got %+v", got)
	}
}

// TestSendOversizedBodyNotDrained: the receiver streams without end; Send
// reads up to the limit, closes the connection and returns; the receiver's
// next writes fail.
func TestSendOversizedBodyNotDrained(t *testing.T) {
	writeFailed := make(chan struct{})
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 32<<10))
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := w.Write(chunk); err != nil {
				close(writeFailed)
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	s := newTestSender(t, SenderConfig{MaxResponseBytes: 100 << 10})
	start := time.Now()
	got := s.Send(context.Background(), Request{URL: srv.URL, Timeout: 10 * time.Second})
	if !got.Success || got.Err != "" || len(got.Summary) != SummaryBytes {
		t.Fatalf("got status %d err %q summary %d bytes", got.StatusCode, got.Err, len(got.Summary))
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Send took %v: the body was drained", el)
	}
	select {
	case <-writeFailed:
	case <-time.After(5 * time.Second):
		t.Fatal("the receiver could still write: the connection was not closed")
	}
}

// TestSendReusesConnection: a body within the limit is read to the end, so
// the connection is kept alive and reused.
func TestSendReusesConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("y", 4<<10))
	}))
	srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := newTestSender(t, SenderConfig{})
	for i := 0; i < 5; i++ {
		if got := s.Send(context.Background(), Request{URL: srv.URL}); !got.Success {
			t.Fatalf("got %+v", got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential calls, want 1", n)
	}
}

func TestSendSummaryUTF8Boundary(t *testing.T) {
	// 1023 ASCII bytes then "é" (2 bytes) straddling the 1 KiB mark.
	body := strings.Repeat("a", SummaryBytes-1) + "é" + "tail"
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, body)
	})
	got := newTestSender(t, SenderConfig{}).Send(context.Background(), Request{URL: srv.URL})
	if got.Summary != strings.Repeat("a", SummaryBytes-1) || !utf8.ValidString(got.Summary) {
		t.Fatalf("summary %d bytes, valid=%v", len(got.Summary), utf8.ValidString(got.Summary))
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"héllo", 2, "h"},
		{"héllo", 3, "hé"},
		{"ab\xffcd", 10, "ab\uFFFDcd"},
		{"ab\xffcd", 4, "ab"}, // U+FFFD is 3 bytes: does not fit
		{"€uro", 2, ""},
		{"x\xe2\x82", 10, "x"}, // a rune cut by the read limit
		{"", 5, ""},
	}
	for _, tc := range tests {
		got := summarize([]byte(tc.in), tc.n)
		if got != tc.want || len(got) > tc.n || !utf8.ValidString(got) {
			t.Errorf("summarize(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestSendRequestShape(t *testing.T) {
	type seen struct {
		method, body, ctype, ua, custom, te string
		length                              int64
		header                              http.Header
	}
	got := make(chan seen, 1)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, string(b), r.Header.Get("Content-Type"), r.Header.Get("User-Agent"),
			r.Header.Get("X-Source"), strings.Join(r.TransferEncoding, ","), r.ContentLength, r.Header.Clone()}
	})
	s := newTestSender(t, SenderConfig{UserAgent: "Chime/test"})
	body := []byte(`{"orderId":"abc123"}`)

	for _, m := range []string{"GET", "HEAD", "get"} {
		out := s.Send(context.Background(), Request{Method: m, URL: srv.URL, Body: body,
			Headers: map[string]string{"Content-Type": "application/json"}})
		r := <-got
		if !out.Success || r.body != "" || r.length != 0 || r.te != "" || r.ctype != "" {
			t.Errorf("%s: sent a body: %+v (outcome %+v)", m, r, out)
		}
	}

	now := time.Now()
	sig, err := Sign(vecSecret, "dlv_42", now, body)
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{"X-Source": "contit"}
	sig.Apply(headers)
	out := s.Send(context.Background(), Request{Method: "POST", URL: srv.URL, Body: body, Headers: headers})
	r := <-got
	if !out.Success || r.method != "POST" || r.body != string(body) || r.ctype != "application/json" ||
		r.ua != "Chime/test" || r.custom != "contit" || r.length != int64(len(body)) {
		t.Fatalf("POST arrived as %+v", r)
	}
	// What arrived verifies with the receiver-side library.
	v := webhook.Verifier{Secrets: []string{vecSecret}}
	if err := v.Verify(r.header, []byte(r.body)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := v.VerifyLegacy(r.header, []byte(r.body)); err != nil {
		t.Fatalf("VerifyLegacy: %v", err)
	}
}

func TestSendRefusesLoopbackWithoutPolicy(t *testing.T) {
	var hits atomic.Int32
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	s := NewSender(SenderConfig{}) // the zero policy
	defer s.Close()
	for _, u := range []string{srv.URL, "http://localhost:" + port + "/hook"} {
		got := s.Send(context.Background(), Request{URL: u})
		if got.Success || got.StatusCode != 0 || !strings.HasPrefix(got.Err, "refused: ") ||
			!strings.Contains(got.Err, "loopback") {
			t.Errorf("%s: got %+v", u, got)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the receiver was reached %d times", hits.Load())
	}
	if got := s.Send(context.Background(), Request{URL: srv.URL}); got.Err != "refused: 127.0.0.1 is a loopback address" {
		t.Fatalf("Err %q", got.Err)
	}
}

func TestSendBadInputNeverPanics(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	s := newTestSender(t, SenderConfig{})
	tests := []struct {
		name string
		req  Request
	}{
		{"empty url", Request{}},
		{"ftp", Request{URL: "ftp://x/"}},
		{"userinfo", Request{URL: "http://a:b@127.0.0.1/"}},
		{"bad method", Request{Method: "PO ST", URL: srv.URL}},
		{"bad header name", Request{URL: srv.URL, Headers: map[string]string{"Bad Name": "x"}}},
		{"bad header value", Request{URL: srv.URL, Headers: map[string]string{"X-A": "a\r\nInjected: 1"}}},
		{"connection refused", Request{URL: "http://127.0.0.1:1/"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Send(context.Background(), tc.req)
			if got.Err == "" || got.Success || got.StatusCode != 0 {
				t.Fatalf("got %+v", got)
			}
		})
	}
	if got := s.Send(nil, Request{URL: srv.URL}); !got.Success { // a nil context is bad input too
		t.Fatalf("nil context: %+v", got)
	}
}

// TestSendConcurrent: one Sender shared by a worker pool's worth of
// goroutines (run with -race).
func TestSendConcurrent(t *testing.T) {
	var n atomic.Int32
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
	})
	s := newTestSender(t, SenderConfig{})
	const workers, each = 64, 5
	errs := make(chan string, workers*each)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := 0; i < each; i++ {
				if out := s.Send(context.Background(), Request{URL: srv.URL, Body: []byte(`{"n":1}`)}); !out.Success {
					errs <- out.Err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if n.Load() != workers*each {
		t.Fatalf("%d requests arrived", n.Load())
	}
}

// A response from an internal address that the node-wide ranges let
// through is not recorded (the status and timing are); under a project's own
// admin-set ranges it is.
func TestSenderWithholdsInternalBodiesUnderNodeRanges(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "internal secret") })
	node := loopback
	node.WithholdInternalBodies = true
	s := newTestSender(t, SenderConfig{Policy: node})
	out := s.Send(context.Background(), Request{URL: srv.URL})
	if !out.Success || strings.Contains(out.Summary, "secret") || !strings.Contains(out.Summary, "not recorded: 127.0.0.1 is a loopback address") {
		t.Fatalf("node ranges: %+v, want success with the body withheld", out)
	}
	granted := node.ForProject([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	out = s.Send(context.Background(), Request{URL: srv.URL, Policy: &granted})
	if !out.Success || out.Summary != "internal secret" {
		t.Fatalf("project's own ranges: %+v, want the body", out)
	}
	none := node.ForProject(nil)
	out = s.Send(context.Background(), Request{URL: srv.URL, Policy: &none})
	if out.Success || out.Unreachable || !strings.Contains(out.Err, "refused: 127.0.0.1 is a loopback address") {
		t.Fatalf("project with no ranges: %+v, want refused (and not counted as unreachable)", out)
	}
}

// A receiver that echoes its request must not put the target's credentials
// into the attempt's summary, which read tokens see.
func TestSendSummaryMasksEchoedHeaders(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		io.WriteString(w, "you sent Authorization="+r.Header.Get("Authorization")+" X-Api-Key="+r.Header.Get("X-Api-Key")+" attempt="+r.Header.Get("Chime-Attempt"))
	})
	got := newTestSender(t, SenderConfig{}).Send(context.Background(), Request{URL: srv.URL,
		Headers: map[string]string{"Authorization": "Bearer s3cret-token", "X-Api-Key": "k-0123456789", "Chime-Attempt": "2"}})
	if strings.Contains(got.Summary, "s3cret") || strings.Contains(got.Summary, "0123456789") || !strings.Contains(got.Summary, "attempt=2") {
		t.Fatalf("summary %q", got.Summary)
	}
}
