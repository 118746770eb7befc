package dispatch_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
)

// callAs is node.call with another token.
func (n *node) callAs(t *testing.T, token, method, path string, body any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, n.http.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAllowedTargetRangesArePerProject: the node allows 127.0.0.0/8 (as
// --allowed-target-cidrs would). Before, that range was open to every
// project, and the receiver's answer was readable in the attempt (and the
// test call's answer) by any write token: a readable SSRF. Now a cluster
// admin sets ranges per project; a project that sets none keeps the
// node's ranges but its internal responses are not recorded.
func TestAllowedTargetRangesArePerProject(t *testing.T) {
	rcv := newReceiver(t, func(string, int) int { return 200 })
	node := dispatch.TargetPolicy{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, WithholdInternalBodies: true}
	n := startNodeWith(t, dispatch.DispatcherConfig{Workers: 8, Sender: dispatch.NewSender(dispatch.SenderConfig{Policy: node})})
	for _, p := range []string{"locked", "granted", "elsewhere"} {
		n.call(t, "POST", "/v1/projects", map[string]any{"name": p}, 201)
	}
	// Only a cluster-wide admin sets them: not a write token, not the
	// project's own admin.
	write := n.call(t, "POST", "/v1/tokens", map[string]any{"name": "w", "scopes": []string{"write"}}, 201)["token"].(string)
	ownAdmin := n.call(t, "POST", "/v1/tokens", map[string]any{"name": "a", "scopes": []string{"admin"}, "project": "locked"}, 201)["token"].(string)
	for _, tok := range []string{write, ownAdmin} {
		if code := n.callAs(t, tok, "PUT", "/v1/projects/locked/allowed-target-cidrs", map[string]any{"allowedTargetCidrs": []string{"127.0.0.0/8"}}); code != http.StatusForbidden {
			t.Errorf("a non-cluster admin set a project's ranges: %d", code)
		}
	}
	n.call(t, "PUT", "/v1/projects/locked/allowed-target-cidrs", map[string]any{"allowedTargetCidrs": []string{}}, 200)
	got := n.call(t, "PUT", "/v1/projects/granted/allowed-target-cidrs", map[string]any{"allowedTargetCidrs": []string{"127.0.0.1/32"}}, 200)
	if l, _ := got["allowedTargetCidrs"].([]any); len(l) != 1 || l[0] != "127.0.0.1/32" {
		t.Errorf("project after PUT: %v", got)
	}
	n.call(t, "PUT", "/v1/projects/elsewhere/allowed-target-cidrs", map[string]any{"allowedTargetCidrs": []string{"10.0.0.0/8"}}, 200)
	n.call(t, "PUT", "/v1/projects/elsewhere/allowed-target-cidrs", map[string]any{"allowedTargetCidrs": []string{"10.0.0.300/8"}}, 400)
	n.call(t, "PUT", "/v1/projects/elsewhere/allowed-target-cidrs", map[string]any{"ranges": []string{}}, 400)
	if p := n.call(t, "GET", "/v1/projects/default", nil, 200); p["allowedTargetCidrs"] != nil {
		t.Errorf("default project: allowedTargetCidrs %v, want null (the nodes' ranges)", p["allowedTargetCidrs"])
	}

	jobs := map[string]string{}
	for _, p := range []string{"default", "locked", "granted", "elsewhere"} {
		j := n.call(t, "POST", "/v1/jobs?project="+p, map[string]any{"delaySeconds": 0, "callbackUrl": rcv.url("/" + p), "retryPolicy": fastRetry(1)}, 201)
		jobs[p] = j["id"].(string)
	}
	summary := func(p string) (*fsm.Delivery, string) {
		ds := n.settled(t, jobs[p], 1, 10*time.Second)
		as := n.c.FSM().State().Attempts(ds[0].ID)
		if len(as) != 1 {
			t.Fatalf("%s: %d attempts", p, len(as))
		}
		return ds[0], as[0].ResponseSummary
	}
	for _, p := range []string{"locked", "elsewhere"} {
		d, _ := summary(p)
		if d.Status != fsm.DeliveryDeadLetter || !strings.Contains(d.LastError, "refused: 127.0.0.1 is a loopback address") || len(rcv.on("/"+p)) != 0 {
			t.Errorf("%s: %s %q, %d calls; want refused, never called", p, d.Status, d.LastError, len(rcv.on("/"+p)))
		}
	}
	if d, s := summary("granted"); d.Status != fsm.DeliverySucceeded || s != "answer 200" {
		t.Errorf("granted: %s, summary %q; want delivered with the body recorded", d.Status, s)
	}
	if d, s := summary("default"); d.Status != fsm.DeliverySucceeded || strings.Contains(s, "answer") || !strings.Contains(s, "not recorded") {
		t.Errorf("default (node ranges): %s, summary %q; want delivered with the body withheld", d.Status, s)
	}
}
