package api

import (
	"strings"
	"testing"
	"time"
)

func TestPatchEndpointAndRotateSecret(t *testing.T) {
	srv, c := newNode(t)
	r := want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://a.example.com/h","eventTypes":["invoice.*"]}`), 201)
	id, secret := str(t, r.body, "id"), str(t, r.body, "secret")
	path := "/v1/endpoints/" + id

	r = want(t, do(t, srv, "PATCH", path, `{"url":"https://b.example.com/h","eventTypes":["*"],"timeoutSeconds":5}`), 200)
	ep, _ := c.FSM().State().Endpoint(id)
	if ep.URL != "https://b.example.com/h" || len(ep.EventTypes) != 1 || ep.EventTypes[0] != "*" || ep.TimeoutMs != 5000 ||
		ep.Secret != secret || !ep.Enabled || ep.Retry.MaxAttempts != 3 || r.body["secret"] != nil {
		t.Fatalf("after patch: %+v / %s", ep, r.raw)
	}
	r = want(t, do(t, srv, "PATCH", path, `{"enabled":false}`), 200)
	if r.body["enabled"] != false || r.body["disabledReason"] == nil {
		t.Fatalf("disable through patch: %s", r.raw)
	}
	for _, cs := range []struct{ body, field string }{
		{`{"url":"ftp://x"}`, "url"},
		{`{"eventTypes":[]}`, "eventTypes"},
		{`{"secret":"whsec_x"}`, "secret"},
		{`{"timeoutSeconds":61}`, "timeoutSeconds"},
		{`{}`, ""},
	} {
		r := want(t, do(t, srv, "PATCH", path, cs.body), 400)
		if _, f := errorOf(t, r); f != cs.field {
			t.Errorf("%s: field %q, want %q (%s)", cs.body, f, cs.field, r.raw)
		}
	}

	// Rotation with a grace period: both sign until it ends.
	before := time.Now()
	r = want(t, do(t, srv, "POST", path+"/rotate-secret", `{"graceSeconds":3600}`), 200)
	newSecret := str(t, r.body, "secret")
	ep, _ = c.FSM().State().Endpoint(id)
	if newSecret == secret || !strings.HasPrefix(newSecret, "whsec_") || ep.Secret != newSecret || ep.PreviousSecret != secret ||
		ep.PreviousSecretUntil.Time().Sub(before) < 3599*time.Second || r.body["previousSecretExpiresAt"] == nil {
		t.Fatalf("rotation with grace: %s", r.raw)
	}
	if g := want(t, do(t, srv, "GET", path, ""), 200); strings.Contains(g.raw, newSecret) {
		t.Fatal("a read shows the rotated secret")
	}
	// Without grace (001's default) the old one stops at once.
	r = want(t, do(t, srv, "POST", path+"/rotate-secret", ""), 200)
	ep, _ = c.FSM().State().Endpoint(id)
	if ep.PreviousSecret != "" || ep.PreviousSecretUntil != 0 || r.body["previousSecretExpiresAt"] != nil || ep.Secret == newSecret {
		t.Fatalf("rotation without grace: %s", r.raw)
	}
	want(t, do(t, srv, "POST", path+"/rotate-secret", `{"graceSeconds":-1}`), 400)
	want(t, do(t, srv, "POST", path+"/rotate-secret", `{"graceSeconds":604801}`), 400)
	want(t, do(t, srv, "POST", "/v1/endpoints/nope/rotate-secret", ""), 404)
}

func TestDeleteEndpointRemovesItsHistory(t *testing.T) {
	srv, c := newNode(t)
	ep := str(t, want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://a.example.com/h","eventTypes":["report.*"]}`), 201).body, "id")
	keep := str(t, want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://b.example.com/h","eventTypes":["report.*"]}`), 201).body, "id")
	job := str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"delaySeconds":3600,"eventType":"report.ready"}`), 201).body, "id")
	occ := want(t, do(t, srv, "POST", "/v1/jobs/"+job+"/trigger", ""), 201)
	occID := str(t, occ.body, "id")
	st := c.FSM().State()
	var gone, kept string
	for _, d := range st.DeliveriesByOccurrence(occID) {
		if d.EndpointID == ep {
			gone = d.ID
		} else {
			kept = d.ID
		}
	}
	if gone == "" || kept == "" {
		t.Fatalf("trigger made no delivery to each endpoint: %s", occ.raw)
	}
	r := want(t, do(t, srv, "DELETE", "/v1/endpoints/"+ep, ""), 200)
	if r.body["deliveriesRemoved"] != float64(1) {
		t.Fatalf("delete: %s", r.raw)
	}
	st = c.FSM().State()
	if _, err := st.Endpoint(ep); err == nil {
		t.Fatal("endpoint still there")
	}
	if _, err := st.Delivery(gone); err == nil {
		t.Fatal("its delivery is still there")
	}
	if _, err := st.Delivery(kept); err != nil {
		t.Fatal("another endpoint's delivery was removed")
	}
	want(t, do(t, srv, "GET", "/v1/endpoints/"+ep, ""), 404)
	want(t, do(t, srv, "GET", "/v1/endpoints/"+keep, ""), 200)
	want(t, do(t, srv, "DELETE", "/v1/endpoints/"+ep, ""), 404)
}
