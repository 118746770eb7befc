package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chime-sched/chime/client/webhook"
)

// The fault suite's three parts: faultReceiver takes every delivery and
// checks both signatures, workload writes jobs of every schedule kind,
// endpoints and events through random nodes and remembers what was
// acknowledged, and check (in faults_test.go) compares the two with what the
// cluster holds.

// receipt is one request as the receiver saw it.
type receipt struct {
	at    time.Time
	fence uint64
	node  string
}

// faultReceiver records every request by webhook-id (in arrival order, with
// its fence and sending node) and by path + Chime-Idempotency-Key (one per
// occurrence or event and target).
type faultReceiver struct {
	url string

	mu       sync.Mutex
	secrets  map[string]string // path → signing secret
	requests int
	badSig   []string
	byID     map[string][]receipt
	keys     map[string]time.Time // path + " " + idempotency key → first arrival
	byNode   map[string]int
}

func newFaultReceiver(t *testing.T) *faultReceiver { return newFaultReceiverOn(t, "127.0.0.1") }

// newFaultReceiverOn listens on host (an IP address), on a free port.
func newFaultReceiverOn(t *testing.T, host string) *faultReceiver {
	r := &faultReceiver{secrets: map[string]string{}, byID: map[string][]receipt{}, keys: map[string]time.Time{}, byNode: map[string]int{}}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serve)}
	r.url = "http://" + ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return r
}

// newSecret is a Standard Webhooks secret for the job callbacks.
func newSecret() string {
	key := make([]byte, 32)
	rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

func (r *faultReceiver) setSecret(path, secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets[path] = secret
}

func (r *faultReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	now := time.Now()
	id := req.Header.Get("webhook-id")
	fence, _ := strconv.ParseUint(req.Header.Get("Chime-Fence"), 10, 64)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	secret := r.secrets[req.URL.Path]
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if secret == "" || (webhook.Verifier{Secrets: []string{secret}}).Verify(req.Header, body) != nil ||
		req.Header.Get("X-Webhook-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
		r.badSig = append(r.badSig, req.URL.Path+" "+id)
	}
	r.byID[id] = append(r.byID[id], receipt{at: now, fence: fence, node: req.Header.Get("Chime-Node")})
	r.byNode[req.Header.Get("Chime-Node")]++
	key := req.URL.Path + " " + req.Header.Get("Chime-Idempotency-Key")
	if _, seen := r.keys[key]; !seen {
		r.keys[key] = now
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *faultReceiver) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.keys[key]
	return ok
}

// deliveryFigures: requests, distinct webhook-ids, repeated sends, fence
// order violations (a lower fence arriving after a higher one for the same
// webhook-id: a node acting after it lost its lease) and the signature
// failures.
type deliveryFigures struct {
	requests, ids, duplicates int
	fenceViolations           []string
	badSig                    []string
	byNode                    map[string]int
}

func (r *faultReceiver) figures() deliveryFigures {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := deliveryFigures{requests: r.requests, ids: len(r.byID), badSig: slices.Clone(r.badSig), byNode: map[string]int{}}
	for k, v := range r.byNode {
		f.byNode[k] = v
	}
	for id, rs := range r.byID {
		f.duplicates += len(rs) - 1
		var high receipt
		for _, x := range rs {
			if x.fence < high.fence {
				f.fenceViolations = append(f.fenceViolations, fmt.Sprintf("%s: fence %d from %s at %s after fence %d from %s at %s",
					id, x.fence, x.node, x.at.Format("15:04:05.000"), high.fence, high.node, high.at.Format("15:04:05.000")))
			} else {
				high = x
			}
		}
	}
	return f
}

// arrivalsAfter is the first arrival of a new key after t, on any path.
func (r *faultReceiver) firstArrivalAfter(t time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first time.Time
	for _, at := range r.keys {
		if at.After(t) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// ---- the workload -----------------------------------------------------------

// Paths on the receiver: job callbacks, and two endpoints, one subscribed to
// every load.* event, one to load.tick only.
const (
	pathCallback = "/cb"
	pathAll      = "/ep/all"
	pathTick     = "/ep/tick"
)

type ackedJob struct {
	id        string
	recurring bool
	eventType string // "" = callback only
	created   time.Time
	due       time.Time      // one-shots: when it fires (the later of fireAtUtc and created)
	spec      map[string]any // the schedule fields as sent
}

type ackedEvent struct {
	id  string
	typ string
	due time.Time
}

// workload drives a cluster the way users would: recurring jobs of every
// schedule kind made up front, then a steady stream of one-shot jobs and
// scheduled events written through random live nodes, each write retried
// with the same Idempotency-Key until some node acknowledges it.
type workload struct {
	t       *testing.T
	c       *cluster
	rcv     *faultReceiver
	cbSec   string
	start   time.Time // first slot of the recurring jobs
	end     time.Time // no recurring slot after this
	timeout int       // seconds, of every target

	mu         sync.Mutex
	jobs       []ackedJob
	events     []ackedEvent
	retried    int            // writes that needed more than one try
	answerLost int            // writes applied whose answer was lost (409 idempotency_answer_lost)
	errs       map[string]int // failed tries by kind
	lost       []string       // writes no node acknowledged after every retry
}

func newWorkload(t *testing.T, c *cluster, rcv *faultReceiver, start, end time.Time) *workload {
	return &workload{t: t, c: c, rcv: rcv, cbSec: newSecret(), start: start, end: end, timeout: 3, errs: map[string]int{}}
}

// write sends one POST through random live nodes until one answers 2xx,
// with one Idempotency-Key throughout, so a retry after an unanswered try
// can never create a second object. It gives up after 60 s, longer than a
// key's claim (45 s) held by a node that died or was cut off mid-request.
func (w *workload) write(ctx context.Context, path string, body any, out any) bool {
	key := "wl-" + strconv.FormatUint(mrand.Uint64(), 36)
	deadline := time.Now().Add(60 * time.Second)
	for try := 0; time.Now().Before(deadline) && ctx.Err() == nil; try++ {
		p := w.c.randomLive()
		if p == nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		code, b, err := p.doHeaders(rctx, http.MethodPost, path, map[string]string{"Idempotency-Key": key}, body, out)
		cancel()
		if err == nil && code/100 == 2 {
			if try > 0 {
				w.mu.Lock()
				w.retried++
				w.mu.Unlock()
			}
			return true
		}
		if err == nil && code == http.StatusConflict && strings.Contains(string(b), "idempotency_answer_lost") {
			// Applied, but the node died before storing the answer: the
			// object exists and its id is unknown to us; not an acknowledgement.
			w.mu.Lock()
			w.answerLost++
			w.mu.Unlock()
			return false
		}
		if err == nil && code/100 == 4 && code != http.StatusConflict && code != http.StatusTooManyRequests {
			w.t.Errorf("POST %s through %s: %d %s", path, p.id, code, b)
			return false
		}
		w.mu.Lock()
		w.errs[failureKind(code, b, err)]++
		w.mu.Unlock()
		sleepCtx(ctx, 200*time.Millisecond)
	}
	if ctx.Err() == nil {
		w.mu.Lock()
		w.lost = append(w.lost, path)
		w.mu.Unlock()
	}
	return false
}

// setup creates the endpoints and the recurring jobs; it fails the test if
// any of them cannot be written (there are no faults yet).
func (w *workload) setup(ctx context.Context) {
	w.rcv.setSecret(pathCallback, w.cbSec)
	for path, types := range map[string][]string{pathAll: {"load.*"}, pathTick: {"load.tick"}} {
		var ep struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		if !w.write(ctx, "/v1/endpoints", map[string]any{"url": w.rcv.url + path, "eventTypes": types, "timeoutSeconds": w.timeout,
			"retryPolicy": map[string]any{"maxAttempts": 20, "backoff": "fixed", "initialDelaySeconds": 1}}, &ep) {
			w.t.Fatalf("create endpoint %s", path)
		}
		w.rcv.setSecret(path, ep.Secret)
	}
	at := func(d time.Duration) time.Time { return w.start.Add(d) }
	local := func(tz string, ts ...time.Time) []string {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			w.t.Fatal(err)
		}
		var out []string
		for _, x := range ts {
			out = append(out, x.In(loc).Format("15:04:05"))
		}
		return out
	}
	run := w.end.Sub(w.start)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		w.t.Fatal(err)
	}
	endAt := w.end.UTC().Format(time.RFC3339)
	specs := []map[string]any{}
	for i := range 8 { // the heartbeat of the run: every second
		s := map[string]any{"recurrenceSeconds": 1, "fireAtUtc": w.start.UTC().Format(time.RFC3339), "endAtUtc": endAt}
		if i < 2 {
			s["eventType"] = "load.tick"
		}
		specs = append(specs, s)
	}
	specs = append(specs,
		map[string]any{"rrule": rruleAt(at(2 * run / 5).In(berlin)), "timezone": "Europe/Berlin", "endAtUtc": endAt},
		map[string]any{"scheduleTimes": local("America/New_York", at(run/4), at(run/2), at(3*run/4)), "timezone": "America/New_York", "endAtUtc": endAt},
		map[string]any{"recurrence": map[string]any{"frequency": "daily", "times": local("Asia/Kolkata", at(run/3), at(2*run/3))},
			"timezone": "Asia/Kolkata", "endAtUtc": endAt, "eventType": "load.daily"},
	)
	if w.end.Truncate(time.Minute).After(w.start) { // cron has minutes: only when the run holds one
		specs = append(specs, map[string]any{"cron": "* * * * *", "endAtUtc": endAt, "eventType": "load.cron"})
	}
	for i, s := range specs {
		body := map[string]any{"name": fmt.Sprintf("recurring-%02d", i), "callbackUrl": w.rcv.url + pathCallback,
			"signingSecret": w.cbSec, "timeoutSeconds": w.timeout, "payload": map[string]any{"job": i},
			"retryPolicy": map[string]any{"maxAttempts": 20, "backoff": "fixed", "initialDelaySeconds": 1}}
		for k, v := range s {
			body[k] = v
		}
		var out struct {
			ID        string    `json:"id"`
			CreatedAt time.Time `json:"createdAt"`
		}
		if !w.write(ctx, "/v1/jobs", body, &out) {
			w.t.Fatalf("create recurring job %d", i)
		}
		et, _ := s["eventType"].(string)
		delete(s, "eventType")
		delete(s, "endAtUtc") // the checker stops at w.end itself
		w.jobs = append(w.jobs, ackedJob{id: out.ID, recurring: true, eventType: et, created: out.CreatedAt, spec: s})
	}
}

// rruleAt is a daily RRULE that fires at t's local time of day.
func rruleAt(t time.Time) string {
	return fmt.Sprintf("FREQ=DAILY;BYHOUR=%d;BYMINUTE=%d;BYSECOND=%d", t.Hour(), t.Minute(), t.Second())
}

// stream writes a one-shot job or a scheduled event every interval until
// ctx ends or until; each is due 1 to 6 s after it is written.
func (w *workload) stream(ctx context.Context, interval time.Duration, until time.Time) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Now().After(until) {
			return
		}
		due := time.Now().Add(time.Second + time.Duration(mrand.IntN(5000))*time.Millisecond).UTC()
		wg.Go(func() { // writes overlap, as many clients' would
			if n%2 == 0 {
				var out struct {
					ID        string    `json:"id"`
					CreatedAt time.Time `json:"createdAt"`
				}
				if w.write(ctx, "/v1/jobs", map[string]any{"name": fmt.Sprintf("once-%05d", n), "callbackUrl": w.rcv.url + pathCallback,
					"signingSecret": w.cbSec, "timeoutSeconds": w.timeout, "fireAtUtc": due.Format(time.RFC3339Nano), "payload": map[string]any{"n": n},
					"retryPolicy": map[string]any{"maxAttempts": 20, "backoff": "fixed", "initialDelaySeconds": 1}}, &out) {
					w.mu.Lock()
					w.jobs = append(w.jobs, ackedJob{id: out.ID, created: out.CreatedAt, due: later(due, out.CreatedAt)})
					w.mu.Unlock()
				}
				return
			}
			var out struct {
				ID string `json:"id"`
			}
			if w.write(ctx, "/v1/events", map[string]any{"type": "load.tick", "scheduledAt": due.Format(time.RFC3339Nano), "data": map[string]any{"n": n}}, &out) {
				w.mu.Lock()
				w.events = append(w.events, ackedEvent{id: out.ID, typ: "load.tick", due: due})
				w.mu.Unlock()
			}
		})
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// lastDue is when the last acknowledged one-shot or event falls due.
func (w *workload) lastDue() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var last time.Time
	for _, j := range w.jobs {
		last = later(last, j.due)
	}
	for _, e := range w.events {
		last = later(last, e.due)
	}
	return last
}

// subscribers are the endpoint paths an event type reaches.
func subscribers(eventType string) []string {
	switch {
	case eventType == "load.tick":
		return []string{pathAll, pathTick}
	case strings.HasPrefix(eventType, "load."):
		return []string{pathAll}
	}
	return nil
}

// ---- reading the cluster back ----------------------------------------------

type occurrenceJSON struct {
	ID             string    `json:"id"`
	Status         string    `json:"status"`
	ScheduledFor   time.Time `json:"scheduledFor"`
	FiredAt        time.Time `json:"firedAt"`
	IdempotencyKey string    `json:"idempotencyKey"`
	Manual         bool      `json:"manual"`
}

// listAll pages through a list route and decodes every item.
func listAll[T any](ctx context.Context, p *proc, path string) ([]T, error) {
	var all []T
	cursor := ""
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for range 1000 {
		var page struct {
			Items      []T     `json:"items"`
			NextCursor *string `json:"nextCursor"`
		}
		u := path + sep + "limit=500"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		code, b, err := p.do(ctx, http.MethodGet, u, nil, &page)
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("GET %s: HTTP %d %s", u, code, b)
		}
		all = append(all, page.Items...)
		if page.NextCursor == nil || *page.NextCursor == "" {
			return all, nil
		}
		cursor = *page.NextCursor
	}
	return nil, fmt.Errorf("GET %s: more than 1000 pages", path)
}

// expectedFires is what the schedule maths says job should have fired from
// its creation to the end of the run (the same maths the poller uses, through
// POST /v1/schedules/preview).
func (w *workload) expectedFires(ctx context.Context, p *proc, j ackedJob) ([]time.Time, error) {
	body := map[string]any{"from": j.created.Format(time.RFC3339Nano), "count": 1000}
	for k, v := range j.spec {
		body[k] = v
	}
	var out struct {
		Fires []time.Time `json:"fires"`
	}
	code, b, err := p.do(ctx, http.MethodPost, "/v1/schedules/preview", body, &out)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("preview %s: %d %v %s", j.id, code, err, b)
	}
	var fires []time.Time
	for _, f := range out.Fires {
		if !f.After(w.end) {
			fires = append(fires, f)
		}
	}
	return fires, nil
}

// sortedKeys is for stable reports.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ackedIDs is every acknowledged job and event id.
func (w *workload) acked() ([]ackedJob, []ackedEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.jobs), slices.Clone(w.events)
}
