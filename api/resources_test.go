package api

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
)

// The tests below run without a poller or a dispatcher: they check the
// records the API writes, and write themselves what those two would (attempt
// results, the fan-out of an event).

const futureJob = `{"name":"reminder","fireAtUtc":"2099-01-01T00:00:00Z","callbackUrl":"https://example.com/hook","eventType":"invoice.paid"}`

func want(t *testing.T, r response, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

func str(t *testing.T, m map[string]any, key string) string {
	t.Helper()
	v, ok := m[key].(string)
	if !ok {
		t.Fatalf("%s is %#v, not a string, in %v", key, m[key], m)
	}
	return v
}

func items(t *testing.T, r response) []map[string]any {
	t.Helper()
	raw, ok := r.body["items"].([]any)
	if !ok {
		t.Fatalf("no items: %s", r.raw)
	}
	out := make([]map[string]any, len(raw))
	for i, it := range raw {
		out[i] = it.(map[string]any)
	}
	return out
}

func idsOf(list []map[string]any) []string {
	out := make([]string, len(list))
	for i, m := range list {
		out[i], _ = m["id"].(string)
	}
	return out
}

func listOf(t *testing.T, v any) []map[string]any {
	t.Helper()
	raw, ok := v.([]any)
	if !ok {
		t.Fatalf("%#v is not a list", v)
	}
	out := make([]map[string]any, len(raw))
	for i, it := range raw {
		out[i] = it.(map[string]any)
	}
	return out
}

func applyOK(t *testing.T, c *cluster.Cluster, cmd []byte, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Apply(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.Results {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
	}
}

// finish records one attempt of the delivery with the given outcome, as
// the dispatcher of its node would.
func finish(t *testing.T, c *cluster.Cluster, id, status string, code int) {
	t.Helper()
	d, err := c.FSM().State().Delivery(id)
	if err != nil {
		t.Fatal(err)
	}
	now := fsm.MillisOf(time.Now())
	cmd, err := fsm.Encode(fsm.CmdDeliveryResults, &fsm.DeliveryResults{At: now, Results: []fsm.DeliveryResult{{
		DeliveryID: id, Fence: d.Fence, Status: status,
		Attempt: fsm.Attempt{Node: "n1", StartedAt: now - 20, LatencyMs: 20, StatusCode: code, ResponseSummary: "body " + fmt.Sprint(code), Error: "status " + fmt.Sprint(code)},
	}}})
	applyOK(t, c, cmd, err)
}

// setup: the default project and "other", each with endpoints, and in
// default a job whose eventType is invoice.paid.
type fixture struct {
	srv                                *httptest.Server
	c                                  *cluster.Cluster
	job                                string
	subscribed, disabled, unsubscribed string
	foreign                            string // endpoint of "other" subscribed to everything
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv, c := newNode(t)
	f := &fixture{srv: srv, c: c}
	want(t, do(t, srv, "POST", "/v1/projects", `{"name":"other"}`), 201)
	f.subscribed = str(t, want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://a.example.com/hook","eventTypes":["invoice.*"]}`), 201).body, "id")
	f.disabled = str(t, want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://b.example.com/hook","eventTypes":["*"],"enabled":false}`), 201).body, "id")
	f.unsubscribed = str(t, want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://c.example.com/hook","eventTypes":["job.*","invoice.sent"]}`), 201).body, "id")
	f.foreign = str(t, want(t, do(t, srv, "POST", "/v1/endpoints?project=other", `{"url":"https://d.example.com/hook","eventTypes":["*"]}`), 201).body, "id")
	f.job = str(t, want(t, do(t, srv, "POST", "/v1/jobs", futureJob), 201).body, "id")
	return f
}

// trigger fires the job by hand and returns the occurrence.
func (f *fixture) trigger(t *testing.T) map[string]any {
	t.Helper()
	return want(t, do(t, f.srv, "POST", "/v1/jobs/"+f.job+"/trigger", ""), 201).body
}

// deliveryTo returns the delivery of occ to dest ("callback" or an endpoint id).
func deliveryTo(t *testing.T, occ map[string]any, dest string) map[string]any {
	t.Helper()
	for _, d := range listOf(t, occ["deliveries"]) {
		if d["destination"] == dest {
			return d
		}
	}
	t.Fatalf("occurrence %s has no delivery to %s: %v", occ["id"], dest, occ["deliveries"])
	return nil
}

func TestJobsListGetAndTrigger(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	second := str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"name":"hourly","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`), 201).body, "id")
	want(t, do(t, srv, "POST", "/v1/jobs?project=other", futureJob), 201)

	r := want(t, do(t, srv, "GET", "/v1/jobs", ""), 200)
	if got := idsOf(items(t, r)); !slices.Equal(got, []string{f.job, second}) {
		t.Fatalf("jobs %v, want %v (the other project's job must not show)", got, []string{f.job, second})
	}
	r = want(t, do(t, srv, "GET", "/v1/jobs?limit=1", ""), 200)
	if got := idsOf(items(t, r)); len(got) != 1 || r.body["nextCursor"] == nil {
		t.Fatalf("page of 1: %s", r.raw)
	}
	r = want(t, do(t, srv, "GET", "/v1/jobs?limit=1&cursor="+r.body["nextCursor"].(string), ""), 200)
	if got := idsOf(items(t, r)); !slices.Equal(got, []string{second}) || r.body["nextCursor"] != nil {
		t.Fatalf("page 2: %s", r.raw)
	}
	if n := len(items(t, want(t, do(t, srv, "GET", "/v1/jobs?status=active", ""), 200))); n != 2 {
		t.Fatalf("%d active jobs, want 2", n)
	}
	if n := len(items(t, want(t, do(t, srv, "GET", "/v1/jobs?status=paused", ""), 200))); n != 0 {
		t.Fatalf("%d paused jobs, want 0", n)
	}
	r = want(t, do(t, srv, "GET", "/v1/jobs/"+f.job, ""), 200)
	if r.body["status"] != "active" || r.body["lastOccurrence"] != nil || r.body["nextFireAt"] != "2099-01-01T00:00:00Z" {
		t.Fatalf("job: %s", r.raw)
	}

	// Trigger: occurrence LastNumber+1, a delivery to the callback and one
	// to each subscribed endpoint of the project, held for a disabled one.
	occ := f.trigger(t)
	if occ["number"] != float64(1) || occ["manual"] != true || occ["status"] != "pending" || occ["jobId"] != f.job {
		t.Fatalf("occurrence: %v", occ)
	}
	ds := listOf(t, occ["deliveries"])
	var dests []string
	for _, d := range ds {
		dests = append(dests, d["destination"].(string))
	}
	slices.Sort(dests)
	wantDests := []string{"callback", f.subscribed, f.disabled}
	slices.Sort(wantDests)
	if !slices.Equal(dests, wantDests) {
		t.Fatalf("deliveries to %v, want %v", dests, wantDests)
	}
	cb := deliveryTo(t, occ, "callback")
	if cb["endpointId"] != nil || cb["status"] != "pending" || cb["assignedNode"] != "n1" || cb["maxAttempts"] != float64(5) ||
		cb["occurrenceId"] != occ["id"] || cb["jobId"] != f.job || cb["eventId"] != nil || cb["nextAttemptAt"] == nil {
		t.Fatalf("callback delivery: %v", cb)
	}
	if d := deliveryTo(t, occ, f.subscribed); d["status"] != "pending" || d["endpointId"] != f.subscribed || d["maxAttempts"] != float64(3) {
		t.Fatalf("endpoint delivery: %v", d)
	}
	if d := deliveryTo(t, occ, f.disabled); d["status"] != "held" || d["assignedNode"] != nil || d["nextAttemptAt"] != nil {
		t.Fatalf("delivery to the disabled endpoint: %v", d)
	}
	if occ2 := f.trigger(t); occ2["number"] != float64(2) {
		t.Fatalf("second trigger numbered %v", occ2["number"])
	}
	r = want(t, do(t, srv, "GET", "/v1/jobs/"+f.job, ""), 200)
	last, _ := r.body["lastOccurrence"].(map[string]any)
	if last == nil || last["number"] != float64(2) || r.body["occurrenceCount"] != float64(0) {
		t.Fatalf("job after two manual triggers (which do not count as fires): %s", r.raw)
	}

	// A cancelled job cannot be triggered.
	st := f.c.FSM().State()
	job, _ := st.Job(second)
	cancelled := *job
	cancelled.Status = fsm.JobCancelled
	cmd, err := fsm.PutCommand(fsm.TableJobs, &cancelled, fsm.PutOptions{IfIndex: job.ModifyIndex})
	applyOK(t, f.c, cmd, err)
	r = want(t, do(t, srv, "POST", "/v1/jobs/"+second+"/trigger", ""), 409)
	if code, _ := errorOf(t, r); code != "conflict" {
		t.Fatalf("trigger of a cancelled job: %s", r.raw)
	}
}

func TestEndpointsSecretEnableDisable(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	r := want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://e.example.com/x","description":"billing","eventTypes":["invoice.paid","invoice.paid","job.*"],"headers":{"X-Team":"billing"}}`), 201)
	id, secret := str(t, r.body, "id"), str(t, r.body, "secret")
	if !strings.HasPrefix(secret, "whsec_") || !strings.HasPrefix(id, "ep_") {
		t.Fatalf("create: %s", r.raw)
	}
	if r.body["method"] != "POST" || r.body["timeoutSeconds"] != float64(10) || r.body["enabled"] != true ||
		r.body["consecutiveFailures"] != float64(0) || r.body["disabledReason"] != nil {
		t.Fatalf("defaults: %s", r.raw)
	}
	if rp := r.body["retryPolicy"].(map[string]any); rp["maxAttempts"] != float64(3) || rp["backoff"] != "linear" || rp["initialDelaySeconds"] != float64(10) {
		t.Fatalf("default retry policy: %v", rp)
	}
	if got := fmt.Sprint(r.body["eventTypes"]); got != "[invoice.paid job.*]" {
		t.Fatalf("eventTypes %s, want the duplicate dropped", got)
	}
	// The secret is shown once: never by a read.
	for _, path := range []string{"/v1/endpoints/" + id, "/v1/endpoints", "/v1/endpoints/" + id + "/disable", "/v1/endpoints/" + id + "/enable"} {
		method := "GET"
		if strings.HasSuffix(path, "able") {
			method = "POST"
		}
		r := want(t, do(t, srv, method, path, ""), 200)
		if strings.Contains(r.raw, secret) || strings.Contains(r.raw, `"secret"`) {
			t.Fatalf("%s %s shows the secret: %s", method, path, r.raw)
		}
	}
	stored, _ := f.c.FSM().State().Endpoint(id)
	if stored.Secret != secret {
		t.Fatal("the stored secret is not the one shown")
	}

	r = want(t, do(t, srv, "POST", "/v1/endpoints/"+id+"/disable", ""), 200)
	if r.body["enabled"] != false || r.body["disabledReason"] == nil {
		t.Fatalf("disable: %s", r.raw)
	}
	// Disabling twice keeps the first reason (an auto-deactivation's, say).
	want(t, do(t, srv, "POST", "/v1/endpoints/"+id+"/disable", ""), 200)

	// Enabling does not reset the failure counter (001).
	ep, _ := f.c.FSM().State().Endpoint(id)
	failing := *ep
	failing.ConsecutiveFailures, failing.DisabledReason = fsm.EndpointFailureLimit, "10 consecutive deliveries failed"
	cmd, err := fsm.PutCommand(fsm.TableEndpoints, &failing, fsm.PutOptions{IfIndex: ep.ModifyIndex})
	applyOK(t, f.c, cmd, err)
	r = want(t, do(t, srv, "POST", "/v1/endpoints/"+id+"/enable", ""), 200)
	if r.body["enabled"] != true || r.body["disabledReason"] != nil || r.body["consecutiveFailures"] != float64(10) || r.body["released"] != nil {
		t.Fatalf("enable: %s", r.raw)
	}

	// Held deliveries wait for ?releaseHeld=true.
	occ1, occ2 := f.trigger(t), f.trigger(t)
	held := []string{str(t, deliveryTo(t, occ1, f.disabled), "id"), str(t, deliveryTo(t, occ2, f.disabled), "id")}
	r = want(t, do(t, srv, "GET", "/v1/endpoints/"+f.disabled+"/deliveries?status=held", ""), 200)
	if got := idsOf(items(t, r)); !slices.Equal(got, sorted(held)) {
		t.Fatalf("held deliveries %v, want %v", got, held)
	}
	want(t, do(t, srv, "POST", "/v1/endpoints/"+f.disabled+"/enable", ""), 200)
	if n := len(items(t, want(t, do(t, srv, "GET", "/v1/endpoints/"+f.disabled+"/deliveries?status=held", ""), 200))); n != 2 {
		t.Fatalf("enable without releaseHeld released %d", 2-n)
	}
	r = want(t, do(t, srv, "POST", "/v1/endpoints/"+f.disabled+"/enable?releaseHeld=true", ""), 200)
	if r.body["released"] != float64(2) {
		t.Fatalf("release: %s", r.raw)
	}
	for _, id := range held {
		d := want(t, do(t, srv, "GET", "/v1/deliveries/"+id, ""), 200).body
		if d["status"] != "pending" || d["assignedNode"] != "n1" {
			t.Fatalf("released delivery: %v", d)
		}
	}
	if n := len(items(t, want(t, do(t, srv, "GET", "/v1/endpoints/"+f.disabled+"/deliveries", ""), 200))); n != 2 {
		t.Fatalf("endpoint history has %d deliveries, want 2", n)
	}

	r = want(t, do(t, srv, "GET", "/v1/endpoints", ""), 200)
	if got := idsOf(items(t, r)); len(got) != 4 || slices.Contains(got, f.foreign) {
		t.Fatalf("endpoints of default: %v", got)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestEventsPublishAndGet(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	before := time.Now().Add(-time.Second)
	r := want(t, do(t, srv, "POST", "/v1/events", `{"type":"invoice.paid","data":{"invoice":42},"idempotencyKey":"inv-42"}`), 202)
	id := str(t, r.body, "id")
	at, err := time.Parse(time.RFC3339, str(t, r.body, "scheduledAt"))
	if !strings.HasPrefix(id, "evt_") || r.body["status"] != "scheduled" || err != nil || at.Before(before) || r.body["publishedAt"] != nil {
		t.Fatalf("publish: %s", r.raw)
	}
	if fmt.Sprint(r.body["data"]) != "map[invoice:42]" {
		t.Fatalf("data: %v", r.body["data"])
	}
	// The same key again: the first event, 200, whatever the body says.
	r = want(t, do(t, srv, "POST", "/v1/events", `{"type":"invoice.sent","idempotencyKey":"inv-42"}`), 200)
	if r.body["id"] != id || r.body["type"] != "invoice.paid" {
		t.Fatalf("repeat: %s", r.raw)
	}
	// Keys are per project.
	r = want(t, do(t, srv, "POST", "/v1/events?project=other", `{"type":"invoice.paid","idempotencyKey":"inv-42"}`), 202)
	if r.body["id"] == id || r.body["data"] != nil {
		t.Fatalf("other project's event: %s", r.raw)
	}
	r = want(t, do(t, srv, "POST", "/v1/events", `{"type":"report.due","scheduledAt":"2098-05-01T10:00:00+02:00"}`), 202)
	if r.body["scheduledAt"] != "2098-05-01T08:00:00Z" {
		t.Fatalf("scheduled event: %s", r.raw)
	}

	r = want(t, do(t, srv, "GET", "/v1/events/"+id, ""), 200)
	if ds := listOf(t, r.body["deliveries"]); len(ds) != 0 {
		t.Fatalf("deliveries before the poller published the event: %v", ds)
	}
	// Publish as the poller would, then the event shows its delivery.
	st := f.c.FSM().State()
	ev, _ := st.Event(id)
	now := fsm.MillisOf(time.Now())
	d := fsm.Delivery{ID: "dlv_evt_test", Project: "default", EventID: id, EndpointID: f.subscribed, Status: fsm.DeliveryPending,
		MaxAttempts: 3, NextAttemptAt: now, AssignedNode: "n1", LeaseUntil: now + 60000, ScheduledFor: ev.ScheduledAt, CreatedAt: now, UpdatedAt: now}
	cmd, err := fsm.Encode(fsm.CmdFire, &fsm.Fire{At: now, Events: []fsm.EventFire{{EventID: id, IfIndex: ev.ModifyIndex, Deliveries: []fsm.Delivery{d}}}})
	applyOK(t, f.c, cmd, err)
	r = want(t, do(t, srv, "GET", "/v1/events/"+id, ""), 200)
	ds := listOf(t, r.body["deliveries"])
	if r.body["status"] != "published" || r.body["publishedAt"] == nil || len(ds) != 1 || ds[0]["eventId"] != id ||
		ds[0]["jobId"] != nil || ds[0]["destination"] != f.subscribed {
		t.Fatalf("published event: %s", r.raw)
	}
}

func TestOccurrences(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	o1, o2, o3 := f.trigger(t), f.trigger(t), f.trigger(t)
	base := "/v1/jobs/" + f.job + "/occurrences"

	var numbers []float64
	path := base + "?limit=2"
	for range 3 {
		r := want(t, do(t, srv, "GET", path, ""), 200)
		for _, o := range items(t, r) {
			numbers = append(numbers, o["number"].(float64))
		}
		if r.body["nextCursor"] == nil {
			break
		}
		path = base + "?limit=2&cursor=" + r.body["nextCursor"].(string)
	}
	if fmt.Sprint(numbers) != "[1 2 3]" {
		t.Fatalf("occurrence numbers %v", numbers)
	}

	r := want(t, do(t, srv, "POST", "/v1/occurrences/"+str(t, o1, "id")+"/complete", ""), 200)
	if r.body["status"] != "completed" || r.body["completedAt"] == nil {
		t.Fatalf("complete: %s", r.raw)
	}
	r = want(t, do(t, srv, "POST", "/v1/occurrences/"+str(t, o1, "id")+"/skip", ""), 409)
	if code, field := errorOf(t, r); code != "conflict" || field != "status" {
		t.Fatalf("skip of a completed occurrence: %s", r.raw)
	}
	r = want(t, do(t, srv, "POST", "/v1/occurrences/"+str(t, o2, "id")+"/skip", ""), 200)
	if r.body["status"] != "skipped" {
		t.Fatalf("skip: %s", r.raw)
	}
	for _, d := range listOf(t, r.body["deliveries"]) {
		if d["status"] != "cancelled" {
			t.Fatalf("a skipped occurrence keeps a %s delivery", d["status"])
		}
	}

	r = want(t, do(t, srv, "GET", base+"?status=pending", ""), 200)
	if got := idsOf(items(t, r)); !slices.Equal(got, []string{str(t, o3, "id")}) {
		t.Fatalf("pending occurrences %v", got)
	}
	r = want(t, do(t, srv, "GET", "/v1/occurrences/"+str(t, o3, "id"), ""), 200)
	if len(listOf(t, r.body["deliveries"])) != 3 || r.body["idempotencyKey"] == "" {
		t.Fatalf("occurrence detail: %s", r.raw)
	}
	// A cursor of one list is refused by the other.
	r = want(t, do(t, srv, "GET", base+"?limit=1", ""), 200)
	cursor := r.body["nextCursor"].(string)
	r = want(t, do(t, srv, "GET", base+"?status=pending&cursor="+cursor, ""), 400)
	if _, field := errorOf(t, r); field != "cursor" {
		t.Fatalf("mixed cursor: %s", r.raw)
	}
}

func TestDeliveries(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	occ := f.trigger(t)
	cb := str(t, deliveryTo(t, occ, "callback"), "id")
	ep := str(t, deliveryTo(t, occ, f.subscribed), "id")

	// Only a dead letter (or a cancelled delivery) can be retried.
	r := want(t, do(t, srv, "POST", "/v1/deliveries/"+cb+"/retry", ""), 409)
	if code, _ := errorOf(t, r); code != "conflict" {
		t.Fatalf("retry of a pending delivery: %s", r.raw)
	}
	finish(t, f.c, cb, fsm.DeliveryDeadLetter, 500)
	r = want(t, do(t, srv, "GET", "/v1/deliveries/"+cb, ""), 200)
	hist := listOf(t, r.body["attemptHistory"])
	if r.body["status"] != "dead_letter" || r.body["attempts"] != float64(1) || r.body["lastStatusCode"] != float64(500) ||
		r.body["completedAt"] == nil || r.body["nextAttemptAt"] != nil || len(hist) != 1 {
		t.Fatalf("dead letter: %s", r.raw)
	}
	if a := hist[0]; a["number"] != float64(1) || a["node"] != "n1" || a["latencyMs"] != float64(20) || a["statusCode"] != float64(500) ||
		a["responseSummary"] != "body 500" || a["error"] != "status 500" || a["startedAt"] == nil {
		t.Fatalf("attempt: %v", a)
	}
	r = want(t, do(t, srv, "GET", "/v1/deliveries?status=dead_letter", ""), 200)
	if got := idsOf(items(t, r)); !slices.Equal(got, []string{cb}) {
		t.Fatalf("dead letters %v", got)
	}
	r = want(t, do(t, srv, "POST", "/v1/deliveries/"+cb+"/retry", ""), 200)
	if r.body["status"] != "pending" || r.body["assignedNode"] != "n1" || r.body["maxAttempts"] != float64(6) || r.body["completedAt"] != nil {
		t.Fatalf("retried (1 attempt made + a fresh round of 5): %s", r.raw)
	}

	// Cancel: anything not finished; a succeeded delivery is a 409.
	finish(t, f.c, ep, fsm.DeliverySucceeded, 200)
	want(t, do(t, srv, "POST", "/v1/deliveries/"+ep+"/cancel", ""), 409)
	r = want(t, do(t, srv, "POST", "/v1/deliveries/"+cb+"/cancel", ""), 200)
	if r.body["status"] != "cancelled" {
		t.Fatalf("cancel: %s", r.raw)
	}

	// Filters.
	all := idsOf(items(t, want(t, do(t, srv, "GET", "/v1/deliveries", ""), 200)))
	if len(all) != 3 {
		t.Fatalf("deliveries %v, want 3", all)
	}
	if got := idsOf(items(t, want(t, do(t, srv, "GET", "/v1/deliveries?endpointId="+f.subscribed, ""), 200))); !slices.Equal(got, []string{ep}) {
		t.Fatalf("by endpoint %v", got)
	}
	if got := idsOf(items(t, want(t, do(t, srv, "GET", "/v1/deliveries?jobId="+f.job+"&status=cancelled", ""), 200))); !slices.Equal(got, []string{cb}) {
		t.Fatalf("by job and status %v", got)
	}
	past, future := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if n := len(items(t, want(t, do(t, srv, "GET", "/v1/deliveries?from="+past+"&to="+future, ""), 200))); n != 3 {
		t.Fatalf("%d deliveries in the last hour, want 3", n)
	}
	if n := len(items(t, want(t, do(t, srv, "GET", "/v1/deliveries?from="+future, ""), 200))); n != 0 {
		t.Fatalf("%d deliveries from the future", n)
	}
	if n := len(items(t, want(t, do(t, srv, "GET", "/v1/deliveries?project=other", ""), 200))); n != 0 {
		t.Fatalf("the other project sees %d deliveries", n)
	}
}

func TestReplay(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	// More dead letters than one command holds, written directly.
	now := fsm.MillisOf(time.Now())
	var cmds [][]byte
	var ids []string
	for i := range maxActionsPerCommand + 7 {
		d := &fsm.Delivery{ID: fmt.Sprintf("dlv_%04d", i), Project: "default", JobID: f.job, OccurrenceID: "occ_x",
			Status: fsm.DeliveryDeadLetter, Attempts: 5, MaxAttempts: 5, CreatedAt: now, UpdatedAt: now, CompletedAt: now}
		if i%2 == 1 {
			d.JobID, d.EndpointID = "", f.subscribed
		}
		cmd, err := fsm.PutCommand(fsm.TableDeliveries, d, fsm.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		ids = append(ids, d.ID)
	}
	cmd, err := fsm.BatchCommand(cmds...)
	applyOK(t, f.c, cmd, err)

	r := want(t, do(t, srv, "POST", "/v1/deliveries/replay", `{"endpointId":"`+f.subscribed+`","limit":3}`), 200)
	if r.body["requeued"] != float64(3) || fmt.Sprint(r.body["ids"]) != "[dlv_0001 dlv_0003 dlv_0005]" {
		t.Fatalf("replay by endpoint: %s", r.raw)
	}
	// Default limit 100, then the rest (more than one command's worth).
	r = want(t, do(t, srv, "POST", "/v1/deliveries/replay", `{"status":"dead_letter"}`), 200)
	if r.body["requeued"] != float64(DefaultReplayLimit) {
		t.Fatalf("replay with the default limit: %v", r.body["requeued"])
	}
	r = want(t, do(t, srv, "POST", "/v1/deliveries/replay", `{"limit":1000}`), 200)
	if want := len(ids) - 3 - DefaultReplayLimit; r.body["requeued"] != float64(want) || len(r.body["ids"].([]any)) != want {
		t.Fatalf("replay of the rest: requeued %v, want %d", r.body["requeued"], want)
	}
	st := f.c.FSM().State()
	for _, id := range ids {
		d, _ := st.Delivery(id)
		if d.Status != fsm.DeliveryPending || d.MaxAttempts <= d.Attempts || d.AssignedNode != "n1" {
			t.Fatalf("after replay %s is %s with %d/%d attempts on %q", id, d.Status, d.Attempts, d.MaxAttempts, d.AssignedNode)
		}
	}
	r = want(t, do(t, srv, "POST", "/v1/deliveries/replay", `{}`), 200)
	if r.body["requeued"] != float64(0) || r.raw != `{"ids":[],"requeued":0}` {
		t.Fatalf("nothing left to replay: %s", r.raw)
	}
	// The other project's dead letters are not touched.
	r = want(t, do(t, srv, "POST", "/v1/deliveries/replay?project=other", `{}`), 200)
	if r.body["requeued"] != float64(0) {
		t.Fatalf("replay in other: %s", r.raw)
	}
}

// TestOtherProjectIsNotFound: an object of another project is a 404, for
// every route that names one, reads and writes alike; and nothing changes.
func TestOtherProjectIsNotFound(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	occ := f.trigger(t)
	occID := str(t, occ, "id")
	dlv := str(t, deliveryTo(t, occ, "callback"), "id")
	finish(t, f.c, dlv, fsm.DeliveryDeadLetter, 500)
	evt := str(t, want(t, do(t, srv, "POST", "/v1/events", `{"type":"invoice.paid"}`), 202).body, "id")
	foreignJob := str(t, want(t, do(t, srv, "POST", "/v1/jobs?project=other", futureJob), 201).body, "id")

	cases := []struct{ method, path string }{
		{"GET", "/v1/jobs/" + f.job},
		{"POST", "/v1/jobs/" + f.job + "/trigger"},
		{"GET", "/v1/jobs/" + f.job + "/occurrences"},
		{"GET", "/v1/occurrences/" + occID},
		{"POST", "/v1/occurrences/" + occID + "/complete"},
		{"POST", "/v1/occurrences/" + occID + "/skip"},
		{"GET", "/v1/endpoints/" + f.subscribed},
		{"POST", "/v1/endpoints/" + f.subscribed + "/enable"},
		{"POST", "/v1/endpoints/" + f.disabled + "/enable?releaseHeld=true"},
		{"POST", "/v1/endpoints/" + f.subscribed + "/disable"},
		{"GET", "/v1/endpoints/" + f.subscribed + "/deliveries"},
		{"GET", "/v1/events/" + evt},
		{"GET", "/v1/deliveries/" + dlv},
		{"POST", "/v1/deliveries/" + dlv + "/retry"},
		{"POST", "/v1/deliveries/" + dlv + "/cancel"},
	}
	indexBefore := f.c.FSM().State().Index()
	for _, tt := range cases {
		r := do(t, srv, tt.method, tt.path+sep(tt.path)+"project=other", "")
		if r.status != 404 {
			t.Errorf("%s %s in another project: %d %s", tt.method, tt.path, r.status, r.raw)
			continue
		}
		if code, _ := errorOf(t, r); code != "not_found" || strings.Contains(r.raw, "https://") {
			t.Errorf("%s %s: %s", tt.method, tt.path, r.raw)
		}
	}
	if after := f.c.FSM().State().Index(); after != indexBefore {
		t.Errorf("404s wrote to the log: index %d -> %d", indexBefore, after)
	}
	// And the other way round, for a job of "other" read from default.
	want(t, do(t, srv, "GET", "/v1/jobs/"+foreignJob, ""), 404)
	want(t, do(t, srv, "POST", "/v1/jobs/"+foreignJob+"/trigger", ""), 404)
	// An unknown project is a 404 naming the parameter.
	r := want(t, do(t, srv, "GET", "/v1/jobs?project=ghost", ""), 404)
	if _, field := errorOf(t, r); field != "project" {
		t.Fatalf("unknown project: %s", r.raw)
	}
	// Unknown ids are plain 404s too.
	for _, p := range []string{"/v1/jobs/nope", "/v1/occurrences/nope", "/v1/endpoints/nope", "/v1/events/nope", "/v1/deliveries/nope"} {
		want(t, do(t, srv, "GET", p, ""), 404)
	}
	want(t, do(t, srv, "POST", "/v1/occurrences/nope/complete", ""), 404)
	want(t, do(t, srv, "POST", "/v1/deliveries/nope/retry", ""), 404)
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

func TestResourceBadInput(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	long := strings.Repeat("k", MaxIdempotencyLen+1)
	big := `"` + strings.Repeat("x", 1100) + `"`
	types := make([]string, MaxEventTypes+1)
	for i := range types {
		types[i] = fmt.Sprintf(`"t%d"`, i)
	}
	cases := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		// POST /v1/endpoints
		{"endpoint: unknown field", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"secret":"whsec_x"}`, 400, "secret"},
		{"endpoint: no url", "POST", "/v1/endpoints", `{"eventTypes":["*"]}`, 400, "url"},
		{"endpoint: bad url", "POST", "/v1/endpoints", `{"url":"ftp://x.example.com","eventTypes":["*"]}`, 400, "url"},
		{"endpoint: no eventTypes", "POST", "/v1/endpoints", `{"url":"https://x.example.com"}`, 400, "eventTypes"},
		{"endpoint: empty eventTypes", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":[]}`, 400, "eventTypes"},
		{"endpoint: bad pattern", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["a.b","Invoice.*"]}`, 400, "eventTypes[1]"},
		{"endpoint: inner wildcard", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["a.*.b"]}`, 400, "eventTypes[0]"},
		{"endpoint: too many types", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":[` + strings.Join(types, ",") + `]}`, 400, "eventTypes"},
		{"endpoint: eventTypes not a list", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":"*"}`, 400, "eventTypes"},
		{"endpoint: method", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"method":"TRACE"}`, 400, "method"},
		{"endpoint: reserved header", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"headers":{"webhook-id":"x"}}`, 400, "headers.webhook-id"},
		{"endpoint: timeout too long", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"timeoutSeconds":61}`, 400, "timeoutSeconds"},
		{"endpoint: retry attempts", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"retryPolicy":{"maxAttempts":21}}`, 400, "retryPolicy.maxAttempts"},
		{"endpoint: retry backoff", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"retryPolicy":{"backoff":"random"}}`, 400, "retryPolicy.backoff"},
		{"endpoint: retry unknown field", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"retryPolicy":{"tries":2}}`, 400, "tries"},
		{"endpoint: enabled not bool", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"enabled":"yes"}`, 400, "enabled"},
		{"endpoint: description", "POST", "/v1/endpoints", `{"url":"https://x.example.com","eventTypes":["*"],"description":"` + strings.Repeat("d", MaxDescriptionLen+1) + `"}`, 400, "description"},
		{"endpoint: releaseHeld", "POST", "/v1/endpoints/" + f.disabled + "/enable?releaseHeld=yes", ``, 400, "releaseHeld"},
		{"endpoint deliveries: status", "GET", "/v1/endpoints/" + f.subscribed + "/deliveries?status=failed", ``, 400, "status"},

		// POST /v1/events
		{"event: no type", "POST", "/v1/events", `{"data":{}}`, 400, "type"},
		{"event: bad type", "POST", "/v1/events", `{"type":"Invoice Paid"}`, 400, "type"},
		{"event: wildcard type", "POST", "/v1/events", `{"type":"invoice.*"}`, 400, "type"},
		{"event: lifecycle type", "POST", "/v1/events", `{"type":"endpoint.disabled","data":{"endpoint":{"id":"x"}}}`, 400, "type"},
		{"job: lifecycle eventType", "POST", "/v1/jobs", `{"delaySeconds":5,"eventType":"job.created"}`, 400, "eventType"},
		{"event: data too large", "POST", "/v1/events", `{"type":"a.b","data":` + big + `}`, 413, "data"},
		{"event: bad scheduledAt", "POST", "/v1/events", `{"type":"a.b","scheduledAt":"tomorrow"}`, 400, "scheduledAt"},
		{"event: scheduledAt without zone", "POST", "/v1/events", `{"type":"a.b","scheduledAt":"2030-01-01T00:00:00"}`, 400, "scheduledAt"},
		{"event: scheduledAt too far", "POST", "/v1/events", `{"type":"a.b","scheduledAt":"2999-01-01T00:00:00Z"}`, 400, "scheduledAt"},
		{"event: long key", "POST", "/v1/events", `{"type":"a.b","idempotencyKey":"` + long + `"}`, 400, "idempotencyKey"},
		{"event: unknown field", "POST", "/v1/events", `{"type":"a.b","event_type":"a.b"}`, 400, "event_type"},
		{"event: type not a string", "POST", "/v1/events", `{"type":1}`, 400, "type"},

		// POST /v1/deliveries/replay
		{"replay: status", "POST", "/v1/deliveries/replay", `{"status":"pending"}`, 400, "status"},
		{"replay: limit 0", "POST", "/v1/deliveries/replay", `{"limit":0}`, 400, "limit"},
		{"replay: limit too high", "POST", "/v1/deliveries/replay", `{"limit":1001}`, 400, "limit"},
		{"replay: from", "POST", "/v1/deliveries/replay", `{"from":"yesterday"}`, 400, "from"},
		{"replay: to before from", "POST", "/v1/deliveries/replay", `{"from":"2024-01-02T00:00:00Z","to":"2024-01-01T00:00:00Z"}`, 400, "to"},
		{"replay: long id", "POST", "/v1/deliveries/replay", `{"jobId":"` + strings.Repeat("j", MaxIDLen+1) + `"}`, 400, "jobId"},
		{"replay: unknown field", "POST", "/v1/deliveries/replay", `{"ids":["x"]}`, 400, "ids"},
		{"replay: empty body", "POST", "/v1/deliveries/replay", ``, 400, ""},

		// query parameters
		{"jobs: status", "GET", "/v1/jobs?status=running", ``, 400, "status"},
		{"jobs: limit", "GET", "/v1/jobs?limit=0", ``, 400, "limit"},
		{"occurrences: status", "GET", "/v1/jobs/" + f.job + "/occurrences?status=done", ``, 400, "status"},
		{"occurrences: cursor", "GET", "/v1/jobs/" + f.job + "/occurrences?cursor=eA", ``, 400, "cursor"},
		{"deliveries: status", "GET", "/v1/deliveries?status=failed", ``, 400, "status"},
		{"deliveries: from", "GET", "/v1/deliveries?from=2024-01-01", ``, 400, "from"},
		{"deliveries: to", "GET", "/v1/deliveries?to=now", ``, 400, "to"},
		{"deliveries: range", "GET", "/v1/deliveries?from=2024-01-01T00:00:00Z&to=2024-01-01T00:00:00Z", ``, 400, "to"},
		{"deliveries: endpointId", "GET", "/v1/deliveries?endpointId=" + strings.Repeat("e", MaxIDLen+1), ``, 400, "endpointId"},

		// POST /v1/jobs (the schedule and target checks of buildJob)
		{"job: unknown field", "POST", "/v1/jobs", `{"fireAtUtc":"2099-01-01T00:00:00Z","callbackUrl":"https://x.example.com","colour":1}`, 400, "colour"},
		{"job: bad callbackUrl", "POST", "/v1/jobs", `{"fireAtUtc":"2099-01-01T00:00:00Z","callbackUrl":"not a url"}`, 400, "callbackUrl"},
		{"job: bad eventType", "POST", "/v1/jobs", `{"fireAtUtc":"2099-01-01T00:00:00Z","eventType":"a..b"}`, 400, "eventType"},
		{"job: payload too large", "POST", "/v1/jobs", `{"fireAtUtc":"2099-01-01T00:00:00Z","callbackUrl":"https://x.example.com","payload":` + big + `}`, 413, "payload"},
	}
	indexBefore := f.c.FSM().State().Index()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, srv, tt.method, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			if _, field := errorOf(t, r); field != tt.field {
				t.Fatalf("field %q, want %q: %s", field, tt.field, r.raw)
			}
		})
	}
	if after := f.c.FSM().State().Index(); after != indexBefore {
		t.Errorf("bad requests wrote to the log: index %d -> %d", indexBefore, after)
	}
}

func TestRetryOnConflict(t *testing.T) {
	conflict := &fsm.Error{Kind: fsm.ErrConflict, Code: fsm.CodeConflict, Message: "changed"}
	cases := []struct {
		name      string
		errs      []error // returned by successive runs; the last repeats
		wantRuns  int
		wantError error
	}{
		{"success", []error{nil}, 1, nil},
		{"conflict then success", []error{conflict, conflict, nil}, 3, nil},
		{"conflict every time", []error{conflict}, 1 + maxConflictRetries, fsm.ErrConflict},
		{"other errors are not retried", []error{fsm.ErrNotFound}, 1, fsm.ErrNotFound},
	}
	for _, tt := range cases {
		runs := 0
		err := retryOnConflict(func() error {
			e := tt.errs[min(runs, len(tt.errs)-1)]
			runs++
			return e
		})
		if runs != tt.wantRuns || (tt.wantError == nil) != (err == nil) || (err != nil && !errors.Is(err, tt.wantError)) {
			t.Errorf("%s: %d runs, err %v; want %d runs, err %v", tt.name, runs, err, tt.wantRuns, tt.wantError)
		}
	}
}
