package dispatch_test

// In-process pipeline tests: one real node (Raft, FSM, API, poller,
// reassigner, dispatcher) and a local receiver. They drive the node through
// its HTTP API and check what the receiver got and what the FSM recorded.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chime-sched/chime/api"
	"github.com/chime-sched/chime/chimetest/loopback"
	"github.com/chime-sched/chime/client/webhook"
	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
)

type received struct {
	At     time.Time
	Path   string
	Header http.Header
	Body   []byte
}

// receiver records every request; answer decides the status per path and
// per call number (1-based) on that path.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	calls  map[string]int
	answer func(path string, n int) int
}

func newReceiver(t *testing.T, answer func(path string, n int) int) *receiver {
	r := &receiver{calls: map[string]int{}, answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.calls[req.URL.Path]++
		n := r.calls[req.URL.Path]
		r.got = append(r.got, received{At: time.Now(), Path: req.URL.Path, Header: req.Header.Clone(), Body: body})
		r.mu.Unlock()
		code := r.answer(req.URL.Path, n)
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "answer %d", code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) on(path string) []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, g := range r.got {
		if g.Path == path {
			out = append(out, g)
		}
	}
	return out
}

func (r *receiver) url(path string) string { return r.srv.URL + path }

// rootToken is the test cluster's admin token (CHIME_ROOT_TOKEN).
const rootToken = "chime_pipeline-test-root-token"

type node struct {
	c    *cluster.Cluster
	http *httptest.Server
}

// startNode runs a single-node cluster with the whole pipeline; targets is
// the dispatcher's outbound address policy.
func startNode(t *testing.T, targets dispatch.TargetPolicy) *node {
	t.Helper()
	return startNodeWith(t, dispatch.DispatcherConfig{Workers: 8,
		Sender: dispatch.NewSender(dispatch.SenderConfig{Policy: targets, UserAgent: "Chime/test"})})
}

// startNodeWith is startNode with the dispatcher's configuration given.
func startNodeWith(t *testing.T, dcfg dispatch.DispatcherConfig) *node {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := cluster.New(cluster.Config{
		NodeID: "n1", DataDir: t.TempDir(), RaftAddr: loopback.FreeAddr(t), GossipAddr: loopback.FreeAddr(t), HTTPAddr: "127.0.0.1:1",
		BootstrapExpect: 1, ClusterName: "test", Version: "test", Logger: logger, FSM: fsm.New(logger),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	poller := scheduler.NewPoller(c, scheduler.PollerConfig{Logger: logger})
	reassigner := dispatch.NewReassigner(c, nil, logger)
	dcfg.Logger = logger
	d := dispatch.NewDispatcher(c, dcfg)
	if err := c.Start(&api.BootstrapHook{Cluster: c, Logger: logger, RootToken: rootToken}, reassigner, poller); err != nil {
		t.Fatal(err)
	}
	d.Start()
	srv := httptest.NewServer(api.New(api.Config{Cluster: c, Logger: logger, Version: "test"}).Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Stop(ctx)
		_ = c.Shutdown(ctx)
	})
	n := &node{c: c, http: srv}
	n.eventually(t, 10*time.Second, "default project", func() (bool, string) {
		_, err := c.FSM().State().Project(api.DefaultProject)
		return err == nil, fmt.Sprint(err)
	})
	return n
}

func (n *node) eventually(t *testing.T, limit time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		var done bool
		if done, last = ok(); done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("after %s: no %s (%s)", limit, what, last)
}

func (n *node) call(t *testing.T, method, path string, body any, want int) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.http.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+rootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return out
}

func (n *node) deliveries(jobID string) []*fsm.Delivery {
	ds, _ := n.c.FSM().State().DeliveriesByJob(jobID, "", 0)
	return ds
}

// settled waits until the job's deliveries are all finished and returns them.
func (n *node) settled(t *testing.T, jobID string, count int, limit time.Duration) []*fsm.Delivery {
	t.Helper()
	var ds []*fsm.Delivery
	n.eventually(t, limit, fmt.Sprintf("%d finished deliveries of %s", count, jobID), func() (bool, string) {
		ds = n.deliveries(jobID)
		done := 0
		var states []string
		for _, d := range ds {
			states = append(states, d.Status)
			if d.Terminal() {
				done++
			}
		}
		return done >= count, strings.Join(states, ",")
	})
	return ds
}

func verify001(secret string, r received) bool {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(r.Body)
	return hmac.Equal([]byte(r.Header.Get("X-Webhook-Signature")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))
}

func fastRetry(max int) map[string]any {
	return map[string]any{"maxAttempts": max, "backoff": "fixed", "initialDelaySeconds": 1}
}

func TestJobsFireOnTimeWithSignedCallbacks(t *testing.T) {
	rcv := newReceiver(t, func(string, int) int { return 200 })
	n := startNode(t, dispatch.TargetPolicy{AllowPrivate: true})
	secret, _ := dispatch.NewSecret()
	start := time.Now().Add(1500 * time.Millisecond).UTC().Truncate(time.Second).Add(time.Second)

	once := n.call(t, "POST", "/v1/jobs", map[string]any{"name": "once", "callbackUrl": rcv.url("/once"),
		"fireAtUtc": start.Format(time.RFC3339), "payload": map[string]any{"hello": "world"},
		"signingSecret": secret, "idempotencyKey": "order-42", "correlationId": "corr-1"}, 201)
	interval := n.call(t, "POST", "/v1/jobs", map[string]any{"name": "every2s", "callbackUrl": rcv.url("/interval"),
		"recurrenceSeconds": 2, "fireAtUtc": start.Format(time.RFC3339), "maxOccurrences": 3}, 201)
	// A calendar slot two seconds into the next minute is too slow for a
	// test; cron with seconds does not exist, so take the calendar time of
	// the next whole minute only when it is close, else a daily time in UTC
	// that the test clock reaches: use the minute that starts soonest.
	calAt := time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	if time.Until(calAt) > 45*time.Second {
		t.Logf("next calendar minute is %s away; the calendar case waits for it", time.Until(calAt).Round(time.Second))
	}
	cal := n.call(t, "POST", "/v1/jobs", map[string]any{"name": "calendar", "callbackUrl": rcv.url("/calendar"),
		"scheduleTimes": []string{calAt.Format("15:04")}, "timezone": "UTC", "maxOccurrences": 1}, 201)

	ds := n.settled(t, once["id"].(string), 1, 10*time.Second)
	if ds[0].Status != fsm.DeliverySucceeded || ds[0].Attempts != 1 {
		t.Fatalf("one-shot delivery: %+v", ds[0])
	}
	got := rcv.on("/once")
	if len(got) != 1 {
		t.Fatalf("one-shot received %d times", len(got))
	}
	r := got[0]
	if late := r.At.Sub(start); late < 0 || late > 1500*time.Millisecond {
		t.Errorf("one-shot arrived %s after its time", late)
	}
	if string(r.Body) != `{"hello":"world"}` {
		t.Errorf("callback body %s, want the job's payload", r.Body)
	}
	if err := (webhook.Verifier{Secrets: []string{secret}}).Verify(r.Header, r.Body); err != nil {
		t.Errorf("standard webhooks signature: %v", err)
	}
	if !verify001(secret, r) {
		t.Errorf("X-Webhook-Signature %q does not match 001's formula", r.Header.Get("X-Webhook-Signature"))
	}
	for h, want := range map[string]string{
		"Chime-Idempotency-Key": "order-42", "Chime-Correlation-Id": "corr-1", "Chime-Attempt": "1",
		"Chime-Delivery-Id": ds[0].ID, "Webhook-Id": ds[0].ID, "Chime-Scheduled-For": start.Format(time.RFC3339Nano),
		"User-Agent": "Chime/test", "Content-Type": "application/json",
	} {
		if g := r.Header.Get(h); g != want {
			t.Errorf("header %s = %q, want %q", h, g, want)
		}
	}

	ids := n.settled(t, interval["id"].(string), 3, 15*time.Second)
	hits := rcv.on("/interval")
	if len(hits) != 3 || len(ids) != 3 {
		t.Fatalf("interval job: %d requests, %d deliveries, want 3 (maxOccurrences)", len(hits), len(ids))
	}
	for i, h := range hits {
		want := start.Add(time.Duration(i) * 2 * time.Second)
		if h.Header.Get("Chime-Scheduled-For") != want.Format(time.RFC3339Nano) {
			t.Errorf("interval fire %d scheduled for %s, want %s", i, h.Header.Get("Chime-Scheduled-For"), want)
		}
		if late := h.At.Sub(want); late < 0 || late > 1500*time.Millisecond {
			t.Errorf("interval fire %d arrived %s after its slot", i, late)
		}
		if h.Header.Get("Webhook-Signature") != "" {
			t.Errorf("an unsigned job's callback carries a signature")
		}
	}
	job, _ := n.c.FSM().State().Job(interval["id"].(string))
	if job.Status != fsm.JobCompleted || job.OccurrenceCount != 3 {
		t.Errorf("interval job after maxOccurrences: status %s, %d occurrences", job.Status, job.OccurrenceCount)
	}

	n.settled(t, cal["id"].(string), 1, time.Until(calAt)+10*time.Second)
	ch := rcv.on("/calendar")
	if len(ch) != 1 {
		t.Fatalf("calendar job received %d times", len(ch))
	}
	if late := ch[0].At.Sub(calAt); late < 0 || late > 1500*time.Millisecond {
		t.Errorf("calendar fire arrived %s after %s", late, calAt)
	}
}

func TestRetryThenSuccessAndDeadLetter(t *testing.T) {
	rcv := newReceiver(t, func(path string, n int) int {
		switch path {
		case "/flaky":
			if n == 1 {
				return 500
			}
			return 200
		case "/redirect":
			return 302
		}
		return 500
	})
	n := startNode(t, dispatch.TargetPolicy{AllowPrivate: true})
	flaky := n.call(t, "POST", "/v1/jobs", map[string]any{"delaySeconds": 0, "callbackUrl": rcv.url("/flaky"), "retryPolicy": fastRetry(3)}, 201)
	dead := n.call(t, "POST", "/v1/jobs", map[string]any{"delaySeconds": 0, "callbackUrl": rcv.url("/down"), "retryPolicy": fastRetry(3)}, 201)
	redirect := n.call(t, "POST", "/v1/jobs", map[string]any{"delaySeconds": 0, "callbackUrl": rcv.url("/redirect"), "retryPolicy": fastRetry(1)}, 201)

	ds := n.settled(t, flaky["id"].(string), 1, 10*time.Second)
	if ds[0].Status != fsm.DeliverySucceeded || ds[0].Attempts != 2 {
		t.Fatalf("flaky: %s after %d attempts, want succeeded after 2", ds[0].Status, ds[0].Attempts)
	}
	hits := rcv.on("/flaky")
	if gap := hits[1].At.Sub(hits[0].At); gap < 900*time.Millisecond || gap > 2500*time.Millisecond {
		t.Errorf("second attempt %s after the first, want the policy's 1 s", gap)
	}
	if hits[0].Header.Get("Webhook-Id") != hits[1].Header.Get("Webhook-Id") ||
		hits[0].Header.Get("Chime-Idempotency-Key") != hits[1].Header.Get("Chime-Idempotency-Key") ||
		hits[0].Header.Get("Chime-Idempotency-Key") == "" {
		t.Errorf("webhook-id or idempotency key changed between attempts: %v / %v", hits[0].Header, hits[1].Header)
	}
	if hits[1].Header.Get("Chime-Attempt") != "2" {
		t.Errorf("Chime-Attempt on the retry = %q", hits[1].Header.Get("Chime-Attempt"))
	}
	atts := n.c.FSM().State().Attempts(ds[0].ID)
	if len(atts) != 2 || atts[0].StatusCode != 500 || atts[1].StatusCode != 200 || atts[0].Node != "n1" || atts[0].ResponseSummary != "answer 500" {
		t.Errorf("recorded attempts: %+v", atts)
	}

	ds = n.settled(t, dead["id"].(string), 1, 15*time.Second)
	if ds[0].Status != fsm.DeliveryDeadLetter || ds[0].Attempts != 3 || len(rcv.on("/down")) != 3 {
		t.Fatalf("always 500: %s after %d attempts (%d requests), want dead_letter after 3", ds[0].Status, ds[0].Attempts, len(rcv.on("/down")))
	}
	ds = n.settled(t, redirect["id"].(string), 1, 10*time.Second)
	if ds[0].Status != fsm.DeliveryDeadLetter || !strings.Contains(ds[0].LastError, "redirect") {
		t.Fatalf("redirect: %s, error %q; want a failed attempt", ds[0].Status, ds[0].LastError)
	}
	if len(rcv.on("/elsewhere")) != 0 {
		t.Fatal("the redirect was followed")
	}

	// Retry the dead letter by hand: one more attempt.
	n.call(t, "POST", "/v1/deliveries/"+n.deliveries(dead["id"].(string))[0].ID+"/retry", nil, 200)
	n.eventually(t, 10*time.Second, "a fourth request after a manual retry", func() (bool, string) {
		return len(rcv.on("/down")) == 4, fmt.Sprint(len(rcv.on("/down")))
	})
}

func TestEndpointDisabledHeldAndReleased(t *testing.T) {
	var mu sync.Mutex
	healthy := false
	rcv := newReceiver(t, func(path string, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		if path == "/gone" {
			return 410
		}
		if healthy {
			return 200
		}
		return 500
	})
	n := startNode(t, dispatch.TargetPolicy{AllowPrivate: true})
	ep := n.call(t, "POST", "/v1/endpoints", map[string]any{"url": rcv.url("/ep"), "eventTypes": []string{"order.*"}, "retryPolicy": fastRetry(1)}, 201)
	watcher := n.call(t, "POST", "/v1/endpoints", map[string]any{"url": rcv.url("/watch"), "eventTypes": []string{"endpoint.disabled"}}, 201)
	secret, _ := ep["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("endpoint secret %q", secret)
	}
	if again := n.call(t, "GET", "/v1/endpoints/"+ep["id"].(string), nil, 200); again["secret"] != nil {
		t.Fatal("the secret is shown again after creation")
	}
	epID := ep["id"].(string)
	for i := range fsm.EndpointFailureLimit {
		n.call(t, "POST", "/v1/events", map[string]any{"type": "order.created", "data": map[string]any{"n": i}}, 202)
	}
	n.eventually(t, 20*time.Second, "endpoint disabled after 10 dead letters", func() (bool, string) {
		e, _ := n.c.FSM().State().Endpoint(epID)
		return !e.Enabled, fmt.Sprintf("enabled=%v failures=%d", e.Enabled, e.ConsecutiveFailures)
	})
	n.eventually(t, 10*time.Second, "endpoint.disabled delivered to the other endpoint", func() (bool, string) {
		return len(rcv.on("/watch")) == 1, fmt.Sprint(len(rcv.on("/watch")))
	})
	w := rcv.on("/watch")[0]
	var env map[string]any
	_ = json.Unmarshal(w.Body, &env)
	if env["event"] != "endpoint.disabled" || !strings.Contains(string(w.Body), epID) {
		t.Errorf("endpoint.disabled envelope: %s", w.Body)
	}
	if err := (webhook.Verifier{Secrets: []string{watcher["secret"].(string)}}).Verify(w.Header, w.Body); err != nil {
		t.Errorf("endpoint delivery signature: %v", err)
	}
	if !verify001(watcher["secret"].(string), w) {
		t.Error("endpoint delivery fails 001's signature formula")
	}

	// While disabled, new deliveries are held; enabling with releaseHeld sends them.
	before := len(rcv.on("/ep"))
	ev := n.call(t, "POST", "/v1/events", map[string]any{"type": "order.paid", "data": map[string]any{"id": 7}}, 202)
	var held *fsm.Delivery
	n.eventually(t, 5*time.Second, "a held delivery", func() (bool, string) {
		ds, _ := n.c.FSM().State().DeliveriesByEvent(ev["id"].(string), "", 0)
		if len(ds) == 1 && ds[0].Status == fsm.DeliveryHeld {
			held = ds[0]
			return true, ""
		}
		return false, fmt.Sprint(len(ds))
	})
	time.Sleep(300 * time.Millisecond)
	if len(rcv.on("/ep")) != before {
		t.Fatal("a disabled endpoint received a delivery")
	}
	mu.Lock()
	healthy = true
	mu.Unlock()
	n.call(t, "POST", "/v1/endpoints/"+epID+"/enable?releaseHeld=true", nil, 200)
	n.eventually(t, 10*time.Second, "the held delivery sent after enable", func() (bool, string) {
		d, _ := n.c.FSM().State().Delivery(held.ID)
		return d.Status == fsm.DeliverySucceeded, d.Status
	})
	last := rcv.on("/ep")[len(rcv.on("/ep"))-1]
	_ = json.Unmarshal(last.Body, &env)
	if env["event"] != "order.paid" || env["eventId"] != ev["id"] || env["job"] != nil {
		t.Errorf("event envelope: %s", last.Body)
	}
	if e, _ := n.c.FSM().State().Endpoint(epID); e.ConsecutiveFailures != 0 {
		t.Errorf("a success did not reset the failure counter: %d", e.ConsecutiveFailures)
	}

	// 410 disables at once.
	gone := n.call(t, "POST", "/v1/endpoints", map[string]any{"url": rcv.url("/gone"), "eventTypes": []string{"bye"}}, 201)
	n.call(t, "POST", "/v1/events", map[string]any{"type": "bye"}, 202)
	n.eventually(t, 10*time.Second, "410 disables the endpoint", func() (bool, string) {
		e, _ := n.c.FSM().State().Endpoint(gone["id"].(string))
		return !e.Enabled && strings.Contains(e.DisabledReason, "410"), e.DisabledReason
	})
	if hits := len(rcv.on("/gone")); hits != 1 {
		t.Errorf("a 410 was retried: %d requests", hits)
	}
}

func TestLoopbackRefusedUnlessAllowed(t *testing.T) {
	rcv := newReceiver(t, func(string, int) int { return 200 })
	n := startNode(t, dispatch.TargetPolicy{})
	job := n.call(t, "POST", "/v1/jobs", map[string]any{"delaySeconds": 0, "callbackUrl": rcv.url("/private"), "retryPolicy": fastRetry(1)}, 201)
	ds := n.settled(t, job["id"].(string), 1, 10*time.Second)
	if ds[0].Status != fsm.DeliveryDeadLetter || !strings.Contains(ds[0].LastError, "loopback") {
		t.Fatalf("loopback target: %s, %q; want refused", ds[0].Status, ds[0].LastError)
	}
	if len(rcv.on("/private")) != 0 {
		t.Fatal("the loopback receiver was reached")
	}
}
