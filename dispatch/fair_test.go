package dispatch_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
)

// lateReceiver records, per path, how late each call arrived (arrival minus
// Chime-Scheduled-For); paths under /hang answer after hang (or when the
// caller gives up), the others at once.
type lateReceiver struct {
	srv  *httptest.Server
	hang time.Duration
	stop chan struct{}
	mu   sync.Mutex
	late map[string][]time.Duration
}

func newLateReceiver(t *testing.T, hang time.Duration) *lateReceiver {
	r := &lateReceiver{hang: hang, stop: make(chan struct{}), late: map[string][]time.Duration{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if at, err := time.Parse(time.RFC3339Nano, req.Header.Get(dispatch.HeaderScheduledFor)); err == nil {
			r.mu.Lock()
			r.late[req.URL.Path] = append(r.late[req.URL.Path], time.Since(at))
			r.mu.Unlock()
		}
		if req.URL.Path == "/hang" {
			select {
			case <-time.After(r.hang):
			case <-req.Context().Done():
			case <-r.stop:
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() { close(r.stop); r.srv.Close() })
	return r
}

func (r *lateReceiver) lateness(path string) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.late[path])
	slices.Sort(out)
	return out
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestFairDeliveryUnderAHangingTenant: project "hog" has a heavy backlog to
// an endpoint that holds every call until (or past) its 1 s timeout, on a
// node with 8 workers; project "default" publishes an event every 150 ms to
// a fast receiver. Its p99 lateness at the receiver must stay under 1 s.
// Before per-project queues and fair shares, the backlog (120 calls of ~1 s
// on 8 workers, about 15 s) sat ahead of every default delivery in the
// node's due order. "slow" answers just within the timeout, so only fair
// sharing helps (no breaker opens); "hanging" sleeps past the timeout, so
// the breaker opens too, and the held-back deliveries must be neither
// attempted nor failed.
func TestFairDeliveryUnderAHangingTenant(t *testing.T) {
	for _, tc := range []struct {
		name string
		hang time.Duration
	}{{"slow", 900 * time.Millisecond}, {"hanging", 5 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newLateReceiver(t, tc.hang)
			n := startNodeWith(t, dispatch.DispatcherConfig{Workers: 8,
				Sender: dispatch.NewSender(dispatch.SenderConfig{Policy: dispatch.TargetPolicy{AllowPrivate: true}})})
			n.call(t, "POST", "/v1/projects", map[string]any{"name": "hog"}, 201)
			hogEP := n.call(t, "POST", "/v1/endpoints?project=hog", map[string]any{"url": rcv.srv.URL + "/hang",
				"eventTypes": []string{"hog.work"}, "timeoutSeconds": 1, "retryPolicy": fastRetry(1)}, 201)
			n.call(t, "POST", "/v1/endpoints", map[string]any{"url": rcv.srv.URL + "/fast",
				"eventTypes": []string{"calm.tick"}, "timeoutSeconds": 1}, 201)

			const backlog, ticks = 120, 40
			for i := range backlog {
				n.call(t, "POST", "/v1/events?project=hog", map[string]any{"type": "hog.work", "data": map[string]any{"i": i}}, 202)
			}
			for i := range ticks {
				n.call(t, "POST", "/v1/events", map[string]any{"type": "calm.tick", "data": map[string]any{"i": i}}, 202)
				time.Sleep(150 * time.Millisecond)
			}
			n.eventually(t, 10*time.Second, "every calm delivery", func() (bool, string) {
				got := len(rcv.lateness("/fast"))
				return got >= ticks, fmt.Sprintf("%d of %d", got, ticks)
			})
			late := rcv.lateness("/fast")
			p50, p99 := pct(late, 0.50), pct(late, 0.99)
			hog := rcv.lateness("/hang")
			t.Logf("default project: %d deliveries, lateness p50 %s p99 %s max %s; hog calls made meanwhile: %d",
				len(late), p50.Round(time.Millisecond), p99.Round(time.Millisecond), late[len(late)-1].Round(time.Millisecond), len(hog))
			if p99 >= time.Second {
				t.Errorf("default project's p99 lateness %s, want < 1s while hog's endpoint hangs", p99)
			}
			if len(hog) == 0 {
				t.Errorf("hog got no call at all: fair, not starved")
			}
			if tc.name != "hanging" {
				return
			}
			// The breaker is open, shown on the endpoint, and the held-back
			// deliveries are still pending with no attempt used up.
			ep := n.call(t, "GET", "/v1/endpoints/"+hogEP["id"].(string)+"?project=hog", nil, 200)
			br, _ := ep["breaker"].(map[string]any)
			if br == nil || br["state"] != fsm.BreakerOpen || br["since"] == nil || br["until"] == nil {
				t.Errorf("hog endpoint breaker = %v, want open with since and until", ep["breaker"])
			}
			var ds []*fsm.Delivery
			n.eventually(t, 10*time.Second, "every hog delivery fanned out", func() (bool, string) {
				ds, _ = n.c.FSM().State().DeliveriesByEndpoint(hogEP["id"].(string), "", 0)
				return len(ds) == backlog, fmt.Sprint(len(ds))
			})
			attempted, waiting := 0, 0
			for _, d := range ds {
				switch {
				case d.Attempts > 0:
					attempted++
				case d.Active():
					waiting++
				default:
					t.Errorf("delivery %s is %s with no attempt", d.ID, d.Status)
				}
			}
			t.Logf("hog: %d deliveries attempted (timed out), %d waiting for the breaker", attempted, waiting)
			if attempted != len(hog) || waiting == 0 || attempted+waiting != backlog {
				t.Errorf("hog: %d attempted, %d waiting, %d calls received; want attempts = calls and the rest waiting of %d", attempted, waiting, len(hog), backlog)
			}
		})
	}
}

// slowReceiver answers 204 after delay and records arrivals and the highest
// number of calls it had at once.
type slowReceiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	arrivals []time.Time
	now, max int
}

func newSlowReceiver(t *testing.T, delay time.Duration) *slowReceiver {
	r := &slowReceiver{}
	stop := make(chan struct{})
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.arrivals = append(r.arrivals, time.Now())
		r.now++
		r.max = max(r.max, r.now)
		r.mu.Unlock()
		select {
		case <-time.After(delay):
		case <-stop:
		}
		r.mu.Lock()
		r.now--
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() { close(stop); r.srv.Close() })
	return r
}

func (r *slowReceiver) stats() ([]time.Time, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.arrivals), r.max
}

func publish(t *testing.T, n *node, typ string, count int) {
	for i := range count {
		n.call(t, "POST", "/v1/events", map[string]any{"type": typ, "data": map[string]any{"i": i}}, 202)
	}
}

func TestConcurrentCallsPerTargetAreCapped(t *testing.T) {
	rcv := newSlowReceiver(t, 300*time.Millisecond)
	n := startNodeWith(t, dispatch.DispatcherConfig{Workers: 8, MaxPerTarget: 2,
		Sender: dispatch.NewSender(dispatch.SenderConfig{Policy: dispatch.TargetPolicy{AllowPrivate: true}})})
	n.call(t, "POST", "/v1/endpoints", map[string]any{"url": rcv.srv.URL + "/capped", "eventTypes": []string{"x"}, "timeoutSeconds": 2}, 201)
	publish(t, n, "x", 8)
	n.eventually(t, 10*time.Second, "8 calls", func() (bool, string) {
		got, _ := rcv.stats()
		return len(got) == 8, fmt.Sprint(len(got))
	})
	if _, most := rcv.stats(); most != 2 {
		t.Errorf("the endpoint had up to %d calls at once, want the cap, 2", most)
	}
}

// An open breaker holds deliveries back until its end, deferring them
// (same node, no attempt used, next try at its end); then one probe goes
// alone, its answer closes the breaker, and the rest follow.
func TestOpenBreakerHoldsDeliveriesThenSendsOneProbe(t *testing.T) {
	rcv := newSlowReceiver(t, 300*time.Millisecond)
	n := startNodeWith(t, dispatch.DispatcherConfig{Workers: 8,
		Sender: dispatch.NewSender(dispatch.SenderConfig{Policy: dispatch.TargetPolicy{AllowPrivate: true}})})
	ep := n.call(t, "POST", "/v1/endpoints", map[string]any{"url": rcv.srv.URL + "/flaky", "eventTypes": []string{"x"}, "timeoutSeconds": 2}, 201)
	id := ep["id"].(string)
	now := time.Now()
	until := now.Add(1500 * time.Millisecond)
	// As if five attempts had timed out just now (fsm's tests cover that).
	cmd, err := fsm.PutCommand(fsm.TableBreakers, &fsm.Breaker{Key: fsm.BreakerKeyEndpoint(id), Project: "default", EndpointID: id,
		Failures: fsm.BreakerThreshold, Opens: 1, OpenedAt: fsm.MillisOf(now), Until: fsm.MillisOf(until), UpdatedAt: fsm.MillisOf(now)},
		fsm.PutOptions{IfAbsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	publish(t, n, "x", 6)
	time.Sleep(time.Until(until) - 300*time.Millisecond)
	if got, _ := rcv.stats(); len(got) != 0 {
		t.Fatalf("%d calls while the breaker was open", len(got))
	}
	// Deferred: still here, no attempt used, next try at the breaker's end
	// with a lease from then.
	ds, _ := n.c.FSM().State().DeliveriesByEndpoint(id, "", 0)
	if len(ds) != 6 {
		t.Fatalf("%d deliveries, want 6", len(ds))
	}
	for _, d := range ds {
		if d.Attempts != 0 || !d.Active() || d.AssignedNode != "n1" || d.NextAttemptAt != fsm.MillisOf(until) ||
			d.LeaseUntil != fsm.LeaseUntil(fsm.MillisOf(until), 2*time.Second) {
			t.Errorf("held delivery %s: %s after %d attempts on %s, next %v lease %v; want deferred to %v",
				d.ID, d.Status, d.Attempts, d.AssignedNode, d.NextAttemptAt.Time(), d.LeaseUntil.Time(), until)
		}
	}
	if br := n.call(t, "GET", "/v1/endpoints/"+id, nil, 200)["breaker"].(map[string]any); br["state"] != fsm.BreakerOpen {
		t.Errorf("breaker shown as %v, want open", br)
	}
	n.eventually(t, 10*time.Second, "6 succeeded deliveries", func() (bool, string) {
		ds, _ := n.c.FSM().State().DeliveriesByEndpoint(id, "", 0)
		ok := 0
		for _, d := range ds {
			if d.Status == fsm.DeliverySucceeded && d.Attempts == 1 {
				ok++
			}
		}
		return ok == 6, fmt.Sprint(ok)
	})
	got, _ := rcv.stats()
	if len(got) != 6 || got[0].Before(until.Add(-50*time.Millisecond)) {
		t.Fatalf("calls at %v; want 6, the first after %v", got, until)
	}
	if gap := got[1].Sub(got[0]); gap < 250*time.Millisecond {
		t.Errorf("the second call came %s after the probe, before the probe's answer (300 ms)", gap)
	}
	if b := n.c.FSM().State().Breaker(fsm.BreakerKeyEndpoint(id)); b != nil {
		t.Errorf("breaker after the probe's answer: %+v, want closed (gone)", b)
	}
}

// POST /v1/endpoints/{id}/test goes through an open breaker: it is asked
// for, tried once, and counts neither for nor against the endpoint.
func TestTestCallPassesAnOpenBreaker(t *testing.T) {
	rcv := newSlowReceiver(t, 0)
	n := startNodeWith(t, dispatch.DispatcherConfig{Workers: 8,
		Sender: dispatch.NewSender(dispatch.SenderConfig{Policy: dispatch.TargetPolicy{AllowPrivate: true}})})
	id := n.call(t, "POST", "/v1/endpoints", map[string]any{"url": rcv.srv.URL + "/t", "eventTypes": []string{"x"}, "timeoutSeconds": 2}, 201)["id"].(string)
	now := time.Now()
	b := &fsm.Breaker{Key: fsm.BreakerKeyEndpoint(id), Project: "default", EndpointID: id, Failures: 5, Opens: 1,
		OpenedAt: fsm.MillisOf(now), Until: fsm.MillisOf(now.Add(time.Hour)), UpdatedAt: fsm.MillisOf(now)}
	cmd, err := fsm.PutCommand(fsm.TableBreakers, b, fsm.PutOptions{IfAbsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	n.call(t, "POST", "/v1/endpoints/"+id+"/test", nil, 200)
	if got, _ := rcv.stats(); len(got) != 1 {
		t.Fatalf("%d calls, want the test call", len(got))
	}
	if got := n.c.FSM().State().Breaker(fsm.BreakerKeyEndpoint(id)); got == nil || got.Until != b.Until {
		t.Errorf("the test call's answer changed the breaker: %+v", got)
	}
}
