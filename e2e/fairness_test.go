package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestFairDeliveryAcrossProjects runs three real nodes with 4 workers each.
// Project "hog" has six endpoints on a receiver that holds every call past
// their 1 s timeout, and a backlog of 300 deliveries to them; the default
// project publishes an event every 100 ms to a fast receiver. The default
// project's lateness at the receiver (arrival minus Chime-Scheduled-For)
// must stay under 1 s at p99, and at the end every node's API shows the
// hog endpoints' breakers open (replicated state), with every hog delivery
// either attempted once or still waiting, none lost.
func TestFairDeliveryAcrossProjects(t *testing.T) {
	var mu sync.Mutex
	var late []time.Duration
	hung := 0
	stop := make(chan struct{})
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			mu.Lock()
			hung++
			mu.Unlock()
			select {
			case <-r.Context().Done():
			case <-stop:
			case <-time.After(5 * time.Second):
			}
			return
		}
		if at, err := time.Parse(time.RFC3339Nano, r.Header.Get("Chime-Scheduled-For")); err == nil {
			mu.Lock()
			late = append(late, time.Since(at))
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	defer close(stop)

	c := startCluster(t, 3, "--allow-private-targets", "--workers", "4", "--log-level", "warn")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	waitReady(ctx, t, 30*time.Second, c.procs...)
	waitLeader(ctx, t, 10*time.Second, c.procs, "")
	p := c.procs[0]
	must := func(code int, body []byte, err error, want int, what string) {
		t.Helper()
		if err != nil || code != want {
			t.Fatalf("%s: %d %v %s", what, code, err, body)
		}
	}
	code, err := p.createProject(ctx, "hog")
	must(code, nil, err, 201, "create project hog")
	var hogEPs []string
	for i := range 6 {
		var ep struct{ ID string }
		code, body, err := p.do(ctx, "POST", "/v1/endpoints?project=hog", map[string]any{"url": rcv.URL + "/hang",
			"eventTypes": []string{"hog.work"}, "timeoutSeconds": 1, "retryPolicy": map[string]any{"maxAttempts": 1},
			"description": fmt.Sprint("hanging ", i)}, &ep)
		must(code, body, err, 201, "create hog endpoint")
		hogEPs = append(hogEPs, ep.ID)
	}
	code, body, err := p.do(ctx, "POST", "/v1/endpoints", map[string]any{"url": rcv.URL + "/fast", "eventTypes": []string{"calm.tick"}, "timeoutSeconds": 1}, nil)
	must(code, body, err, 201, "create default endpoint")
	time.Sleep(time.Second) // every node has the endpoints

	const backlog, ticks = 50, 80 // 50 events × 6 endpoints = 300 hog deliveries
	for i := range backlog {
		code, body, err := c.procs[i%3].do(ctx, "POST", "/v1/events?project=hog", map[string]any{"type": "hog.work", "data": map[string]any{"i": i}}, nil)
		must(code, body, err, 202, "publish hog event")
	}
	for i := range ticks {
		code, body, err := c.procs[i%3].do(ctx, "POST", "/v1/events", map[string]any{"type": "calm.tick", "data": map[string]any{"i": i}}, nil)
		must(code, body, err, 202, "publish calm event")
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(ctx, t, 15*time.Second, "every calm delivery", func(context.Context) (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(late) >= ticks, fmt.Sprintf("%d of %d", len(late), ticks)
	})
	mu.Lock()
	ls := slices.Clone(late)
	calls := hung
	mu.Unlock()
	slices.Sort(ls)
	p99 := ls[min(len(ls)-1, len(ls)*99/100)]
	t.Logf("default project: %d deliveries, lateness p50 %s p99 %s max %s; hanging calls made: %d",
		len(ls), ls[len(ls)/2].Round(time.Millisecond), p99.Round(time.Millisecond), ls[len(ls)-1].Round(time.Millisecond), calls)
	if p99 >= time.Second {
		t.Errorf("default project's p99 lateness %s, want < 1s while hog's endpoints hang", p99)
	}

	// Every node shows every hog breaker open: the state is replicated.
	for _, n := range c.procs {
		for _, id := range hogEPs {
			var ep struct {
				Breaker struct{ State string }
			}
			code, body, err := n.do(ctx, "GET", "/v1/endpoints/"+id+"?project=hog", nil, &ep)
			must(code, body, err, 200, "get hog endpoint")
			if ep.Breaker.State != "open" {
				t.Errorf("%s: endpoint %s breaker %q, want open", n.id, id, ep.Breaker.State)
			}
		}
	}
	// No hog delivery lost: dead letters (attempted once) plus the waiting.
	count := func(status string) int {
		var page struct{ Items []map[string]any }
		code, body, err := p.do(ctx, "GET", "/v1/deliveries?project=hog&limit=500&status="+status, nil, &page)
		must(code, body, err, 200, "list hog deliveries")
		return len(page.Items)
	}
	dead, pending := count("dead_letter"), count("pending")
	t.Logf("hog: %d dead-lettered after one timed-out attempt, %d waiting for their breaker", dead, pending)
	if dead+pending != backlog*6 || dead > calls {
		t.Errorf("hog: %d dead + %d pending, want %d; %d calls made", dead, pending, backlog*6, calls)
	}
}
