package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/chime-sched/chime/client/webhook"
)

// eventReceiver records the JSON bodies it gets by their "event" field and
// counts requests whose Standard Webhooks signature does not verify with the
// endpoint's secret (set once the endpoint exists).
type eventReceiver struct {
	url string

	mu     sync.Mutex
	secret string
	bodies map[string][]map[string]any
	badSig int
}

func newEventReceiver(t *testing.T) *eventReceiver {
	r := &eventReceiver{bodies: map[string][]map[string]any{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, _ := io.ReadAll(req.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if (webhook.Verifier{Secrets: []string{r.secret}}).Verify(req.Header, raw) != nil {
			r.badSig++
		}
		typ, _ := body["event"].(string)
		r.bodies[typ] = append(r.bodies[typ], body)
		w.WriteHeader(http.StatusNoContent)
	})}
	r.url = "http://" + ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return r
}

func (r *eventReceiver) got(typ string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.bodies[typ]...)
}

// TestLifecycleEventsAndTestCall: on a 3-node cluster, an endpoint created
// through a follower is tested (POST /v1/endpoints/{id}/test answers with the
// attempt), then receives the lifecycle events of a job written through
// another node, signed, with the caller's token id and only the changed
// fields. A test call to a dead receiver reports the failure and leaves the
// endpoint's health alone.
func TestLifecycleEventsAndTestCall(t *testing.T) {
	rcv := newEventReceiver(t)
	c := startCluster(t, 3, "--allow-private-targets")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	waitReady(ctx, t, 30*time.Second, c.procs...)
	leader, _ := waitLeader(ctx, t, 10*time.Second, c.procs, "")
	follower := c.others(leader)[0]

	var ep struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if code, body, err := follower.do(ctx, "POST", "/v1/endpoints", map[string]any{
		"url": rcv.url + "/events", "eventTypes": []string{"job.*", "occurrence.created"},
	}, &ep); err != nil || code != 201 {
		t.Fatalf("create endpoint: %d %v %s", code, err, body)
	}
	rcv.mu.Lock()
	rcv.secret = ep.Secret
	rcv.mu.Unlock()

	type attempt struct {
		StatusCode *int    `json:"statusCode"`
		Error      *string `json:"error"`
	}
	var tested struct {
		Status   string    `json:"status"`
		Attempts []attempt `json:"attemptHistory"`
	}
	code, body, err := follower.do(ctx, "POST", "/v1/endpoints/"+ep.ID+"/test", nil, &tested)
	if err != nil || code != 200 || tested.Status != "succeeded" || len(tested.Attempts) != 1 ||
		tested.Attempts[0].StatusCode == nil || *tested.Attempts[0].StatusCode != 204 {
		t.Fatalf("test call: %d %v %s", code, err, body)
	}
	if got := rcv.got("webhook.test"); len(got) != 1 || got[0]["endpoint"].(map[string]any)["id"] != ep.ID {
		t.Fatalf("receiver got webhook.test %v", got)
	}

	// A job written through the leader: created, renamed, fired once.
	var job struct {
		ID string `json:"id"`
	}
	p := c.byID(leader)
	if code, body, err := p.do(ctx, "POST", "/v1/jobs", map[string]any{
		"name": "audit-me", "delaySeconds": 1, "eventType": "report.ready",
	}, &job); err != nil || code != 201 {
		t.Fatalf("create job: %d %v %s", code, err, body)
	}
	if code, body, err := p.do(ctx, "PATCH", "/v1/jobs/"+job.ID, map[string]any{"description": "renamed"}, nil); err != nil || code != 200 {
		t.Fatalf("patch job: %d %v %s", code, err, body)
	}
	waitFor(ctx, t, 30*time.Second, "lifecycle events at the receiver", func(context.Context) (bool, string) {
		n := fmt.Sprintf("created %d updated %d occurrence.created %d", len(rcv.got("job.created")), len(rcv.got("job.updated")), len(rcv.got("occurrence.created")))
		return len(rcv.got("job.created")) == 1 && len(rcv.got("job.updated")) == 1 && len(rcv.got("occurrence.created")) == 1, n
	})
	created := rcv.got("job.created")[0]
	if created["jobId"] != job.ID || created["job"].(map[string]any)["name"] != "audit-me" || created["initiatorId"] == nil {
		t.Errorf("job.created body %v", created)
	}
	updated := rcv.got("job.updated")[0]
	if ch, _ := updated["changes"].(map[string]any); len(ch) != 1 || ch["description"] != "renamed" {
		t.Errorf("job.updated changes %v; want description only", updated["changes"])
	}
	if occ := rcv.got("occurrence.created")[0]; occ["jobId"] != job.ID || occ["initiatorId"] != nil {
		t.Errorf("occurrence.created body %v (the scheduler fired it: initiatorId null)", occ)
	}
	rcv.mu.Lock()
	bad := rcv.badSig
	rcv.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d requests with a bad signature", bad)
	}

	// A test call to a receiver that is gone: the answer carries the error,
	// and the endpoint's health is untouched.
	dead := freePort(t)
	var ep2 struct {
		ID string `json:"id"`
	}
	if code, body, err := follower.do(ctx, "POST", "/v1/endpoints", map[string]any{
		"url": fmt.Sprintf("http://127.0.0.1:%d/gone", dead), "eventTypes": []string{"nothing.here"}, "timeoutSeconds": 2,
	}, &ep2); err != nil || code != 201 {
		t.Fatalf("create endpoint 2: %d %v %s", code, err, body)
	}
	code, body, err = follower.do(ctx, "POST", "/v1/endpoints/"+ep2.ID+"/test", nil, &tested)
	if err != nil || code != 200 || tested.Status != "dead_letter" || len(tested.Attempts) != 1 || tested.Attempts[0].Error == nil {
		t.Fatalf("test call to a dead receiver: %d %v %s", code, err, body)
	}
	var health struct {
		Enabled             bool `json:"enabled"`
		ConsecutiveFailures int  `json:"consecutiveFailures"`
	}
	if _, body, _ := follower.do(ctx, "GET", "/v1/endpoints/"+ep2.ID, nil, &health); !health.Enabled || health.ConsecutiveFailures != 0 {
		t.Errorf("a failed test call changed the endpoint's health: %s", body)
	}
}
