package api

import (
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

	"github.com/chime-sched/chime/chimetest/loopback"
	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
)

// Three in-process nodes, each serving the API, and every write sent to a
// follower: the follower forwards it to the leader, waits until it has
// applied it itself, and only then answers, so the client reads its write on
// the same node at once; the other nodes have it shortly after.

// apiNode is one node of an in-process cluster with the API in front of it.
type apiNode struct {
	id  string
	c   *cluster.Cluster
	srv *httptest.Server
}

// startAPICluster starts size nodes that bootstrap together (the root token
// is testRootToken), waits until they agree on a leader and every node has
// the default project, and stops them all when the test ends. The Raft
// timeouts are short but not tight: the machine is shared, and a spurious
// election in the middle of a test would only make it flaky.
func startAPICluster(tb testing.TB, size int) []*apiNode {
	tb.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	nodes := make([]*apiNode, size)
	gossip := make([]string, size)
	for i := range nodes {
		nodes[i] = &apiNode{id: fmt.Sprintf("n%d", i+1)}
		gossip[i] = loopback.FreeAddr(tb)
	}
	tb.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			if n.srv != nil {
				n.srv.Close()
			}
			if n.c != nil {
				wg.Add(1)
				go func(c *cluster.Cluster) { defer wg.Done(); c.Kill() }(n.c)
			}
		}
		wg.Wait()
	})
	for i, n := range nodes {
		var join []string
		for j, g := range gossip {
			if j != i {
				join = append(join, g)
			}
		}
		// The listener exists before the node, so that the node can tell the
		// others its API address.
		n.srv = httptest.NewUnstartedServer(nil)
		c, err := cluster.New(cluster.Config{
			NodeID: n.id, DataDir: tb.TempDir(), RaftAddr: loopback.FreeAddr(tb), GossipAddr: gossip[i],
			HTTPAddr: n.srv.Listener.Addr().String(), Join: join, BootstrapExpect: size,
			ClusterName: "test", ClusterKey: "99a271fe24126c162e6375a8ff19a25510b27b69c891dabd68410a5965677624", Version: "test", Logger: logger, FSM: fsm.New(logger),
			ApplyTimeout: 5 * time.Second, ReconcileInterval: 300 * time.Millisecond,
			HeartbeatTimeout: time.Second, ElectionTimeout: time.Second,
			LeaderLeaseTimeout: 500 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
			ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
			GossipInterval: 50 * time.Millisecond, SuspicionMult: 4,
		})
		if err != nil {
			tb.Fatalf("node %s: %v", n.id, err)
		}
		if err := c.Start(&BootstrapHook{Cluster: c, Logger: logger, RootToken: testRootToken}); err != nil {
			c.Kill()
			tb.Fatalf("start %s: %v", n.id, err)
		}
		n.c = c
		n.srv.Config.Handler = New(Config{Cluster: c, Logger: logger, Version: "test"}).Handler()
		n.srv.Start()
	}
	waitFor(tb, 20*time.Second, "a leader and the default project on every node", func() bool {
		leaders := 0
		for _, n := range nodes {
			if n.c.IsLeader() {
				leaders++
			}
			if _, err := n.c.FSM().State().Project(DefaultProject); err != nil {
				return false
			}
			if _, err := n.c.FSM().State().Limits(fsm.ClusterLimitsID); err != nil {
				return false
			}
			if ok, _ := n.c.Readiness(); !ok {
				return false
			}
		}
		return leaders == 1
	})
	return nodes
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func followerOf(tb testing.TB, nodes []*apiNode) *apiNode {
	tb.Helper()
	for _, n := range nodes {
		if !n.c.IsLeader() {
			return n
		}
	}
	tb.Fatal("no follower")
	return nil
}

// clusterClient bounds every call: a node that hangs fails the test instead
// of stalling it.
var clusterClient = &http.Client{Timeout: 10 * time.Second}

// on sends a request to node n with token ("" for the root token).
func on(t *testing.T, n *apiNode, token, method, path, body string) response {
	t.Helper()
	if token == "" {
		token = testRootToken
	}
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, n.srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := clusterClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.id, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Fatalf("%s %s on %s: body is not JSON: %s", method, path, n.id, raw)
		}
	}
	return out
}

// onWant is on that requires the status.
func onWant(t *testing.T, n *apiNode, token, method, path, body string, status int) response {
	t.Helper()
	r := on(t, n, token, method, path, body)
	if r.status != status {
		t.Fatalf("%s %s on %s: status %d, want %d: %s", method, path, n.id, r.status, status, r.raw)
	}
	return r
}

// replicated reads path on the node that took the write (it must answer
// 200 at once: read-your-write) and then waits until every other node
// answers the same body, byte for byte. It returns the body.
func replicated(t *testing.T, nodes []*apiNode, from *apiNode, path string) response {
	t.Helper()
	want := onWant(t, from, "", "GET", path, "", http.StatusOK)
	for _, n := range nodes {
		if n == from {
			continue
		}
		var last response
		waitFor(t, 5*time.Second, fmt.Sprintf("GET %s on %s to match %s", path, n.id, from.id), func() bool {
			last = on(t, n, "", "GET", path, "")
			return last.status == http.StatusOK && last.raw == want.raw
		})
	}
	return want
}

// everywhere waits until every node answers path with status for token.
func everywhere(t *testing.T, nodes []*apiNode, token, method, path, body string, status int) {
	t.Helper()
	for _, n := range nodes {
		var last response
		waitFor(t, 5*time.Second, fmt.Sprintf("%s %s on %s to answer %d", method, path, n.id, status), func() bool {
			last = on(t, n, token, method, path, body)
			return last.status == status
		})
	}
}

func TestWritesThroughAFollower(t *testing.T) {
	nodes := startAPICluster(t, 3)
	f := followerOf(t, nodes)
	var writer, endpoint, job, eventID string
	var occs []string

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"tokens", func(t *testing.T) {
			r := onWant(t, f, "", "POST", "/v1/tokens", `{"name":"ci","scopes":["write"]}`, 201)
			writer = str(t, r.body, "token")
			// The new token works on the node that made it, at once.
			onWant(t, f, writer, "GET", "/v1/jobs", "", 200)
			if !strings.Contains(onWant(t, f, "", "GET", "/v1/tokens", "", 200).raw, str(t, r.body, "id")) {
				t.Fatal("the follower does not list the token it created")
			}
			replicated(t, nodes, f, "/v1/tokens")
			everywhere(t, nodes, writer, "GET", "/v1/jobs", "", 200)
		}},
		{"projects", func(t *testing.T) {
			onWant(t, f, "", "POST", "/v1/projects", `{"name":"billing","description":"invoices"}`, 201)
			replicated(t, nodes, f, "/v1/projects/billing")
		}},
		{"endpoints", func(t *testing.T) {
			r := onWant(t, f, writer, "POST", "/v1/endpoints", `{"url":"https://a.example.com/hook","eventTypes":["invoice.*"]}`, 201)
			endpoint = str(t, r.body, "id")
			first := str(t, r.body, "secret")
			path := "/v1/endpoints/" + endpoint
			replicated(t, nodes, f, path)

			r = onWant(t, f, writer, "POST", path+"/rotate-secret", `{"graceSeconds":60}`, 200)
			second := str(t, r.body, "secret")
			if second == first || r.body["previousSecretExpiresAt"] == nil {
				t.Fatalf("rotate: %s", r.raw)
			}
			// The secret is never shown again; the stores must hold the new one.
			for _, n := range nodes {
				waitFor(t, 5*time.Second, "the new secret on "+n.id, func() bool {
					ep, err := n.c.FSM().State().Endpoint(endpoint)
					return err == nil && ep.Secret == second && ep.PreviousSecret == first
				})
			}
			if ep, _ := f.c.FSM().State().Endpoint(endpoint); ep.Secret != second {
				t.Fatal("the follower answered the rotation before applying it")
			}

			onWant(t, f, writer, "POST", path+"/disable", "", 200)
			if r := replicated(t, nodes, f, path); r.body["enabled"] != false {
				t.Fatalf("disabled: %s", r.raw)
			}
			onWant(t, f, writer, "POST", path+"/enable", "", 200)
			if r := replicated(t, nodes, f, path); r.body["enabled"] != true {
				t.Fatalf("enabled: %s", r.raw)
			}
			onWant(t, f, writer, "PATCH", path, `{"description":"billing hooks","eventTypes":["invoice.*","report.*"]}`, 200)
			if r := replicated(t, nodes, f, path); r.body["description"] != "billing hooks" || fmt.Sprint(r.body["eventTypes"]) != "[invoice.* report.*]" {
				t.Fatalf("patched: %s", r.raw)
			}
			replicated(t, nodes, f, "/v1/endpoints")
		}},
		{"jobs", func(t *testing.T) {
			r := onWant(t, f, writer, "POST", "/v1/jobs", `{"name":"reminder","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h","eventType":"invoice.paid"}`, 201)
			job = str(t, r.body, "id")
			path := "/v1/jobs/" + job
			replicated(t, nodes, f, path)
			for _, c := range []struct{ method, suffix, body, field, value string }{
				{"POST", "/pause", "", "status", "paused"},
				{"POST", "/resume", "", "status", "active"},
				{"PATCH", "", `{"name":"renamed"}`, "name", "renamed"},
			} {
				if r := onWant(t, f, writer, c.method, path+c.suffix, c.body, 200); r.body[c.field] != c.value {
					t.Fatalf("%s %s: %s", c.method, c.suffix, r.raw)
				}
				if r := replicated(t, nodes, f, path); r.body[c.field] != c.value {
					t.Fatalf("after %s %s the follower reads %s", c.method, c.suffix, r.raw)
				}
			}
			replicated(t, nodes, f, "/v1/jobs")
		}},
		{"trigger and occurrences", func(t *testing.T) {
			for range 3 {
				r := onWant(t, f, writer, "POST", "/v1/jobs/"+job+"/trigger", "", 201)
				id := str(t, r.body, "id")
				occs = append(occs, id)
				if r := replicated(t, nodes, f, "/v1/occurrences/"+id); len(listOf(t, r.body["deliveries"])) != 2 {
					t.Fatalf("occurrence with deliveries to the callback and the endpoint: %s", r.raw)
				}
			}
			if r := replicated(t, nodes, f, "/v1/jobs/"+job); r.body["lastOccurrence"].(map[string]any)["id"] != occs[2] {
				t.Fatalf("job after three triggers: %s", r.raw)
			}
			if r := onWant(t, f, writer, "POST", "/v1/occurrences/"+occs[0]+"/complete", "", 200); r.body["status"] != "completed" {
				t.Fatalf("complete: %s", r.raw)
			}
			replicated(t, nodes, f, "/v1/occurrences/"+occs[0])
			if r := onWant(t, f, writer, "POST", "/v1/occurrences/"+occs[1]+"/skip", "", 200); r.body["status"] != "skipped" {
				t.Fatalf("skip: %s", r.raw)
			}
			replicated(t, nodes, f, "/v1/occurrences/"+occs[1])
			replicated(t, nodes, f, "/v1/jobs/"+job+"/occurrences")
		}},
		{"deliveries", func(t *testing.T) {
			r := replicated(t, nodes, f, "/v1/deliveries?jobId="+job)
			if n := len(items(t, r)); n != 6 {
				t.Fatalf("%d deliveries of three occurrences with two destinations each, want 6: %s", n, r.raw)
			}
			replicated(t, nodes, f, "/v1/endpoints/"+endpoint+"/deliveries")
			// A pending delivery of the third occurrence: cancel it, then
			// retry it, each through the follower.
			occ := onWant(t, f, "", "GET", "/v1/occurrences/"+occs[2], "", 200)
			d := str(t, deliveryTo(t, occ.body, endpoint), "id")
			if r := onWant(t, f, writer, "POST", "/v1/deliveries/"+d+"/cancel", "", 200); r.body["status"] != "cancelled" {
				t.Fatalf("cancel: %s", r.raw)
			}
			replicated(t, nodes, f, "/v1/deliveries/"+d)
			if r := onWant(t, f, writer, "POST", "/v1/deliveries/"+d+"/retry", "", 200); r.body["status"] != "pending" {
				t.Fatalf("retry: %s", r.raw)
			}
			replicated(t, nodes, f, "/v1/deliveries/"+d)
			replicated(t, nodes, f, "/v1/deliveries?status=pending")
		}},
		{"events", func(t *testing.T) {
			r := onWant(t, f, writer, "POST", "/v1/events", source003Body("2090-01-01T10:00:00Z"), 202)
			eventID = str(t, r.body, "id")
			if r := replicated(t, nodes, f, "/v1/events/"+eventID); r.body["type"] != "user.signed_up" || r.body["scheduledAt"] != "2090-01-01T10:00:00Z" {
				t.Fatalf("event: %s", r.raw)
			}
			// The idempotency key is checked against the follower's own
			// state: a repeat right after the first is answered with it.
			first := onWant(t, f, writer, "POST", "/v1/events", `{"type":"invoice.paid","idempotencyKey":"k-1"}`, 202)
			again := onWant(t, f, writer, "POST", "/v1/events", `{"type":"invoice.paid","idempotencyKey":"k-1"}`, 200)
			if first.body["id"] != again.body["id"] {
				t.Fatalf("a repeated key made a second event: %s / %s", first.raw, again.raw)
			}
		}},
		{"cancel job and delete endpoint", func(t *testing.T) {
			if r := onWant(t, f, writer, "DELETE", "/v1/jobs/"+job, "", 200); r.body["status"] != "cancelled" {
				t.Fatalf("cancel: %s", r.raw)
			}
			replicated(t, nodes, f, "/v1/jobs/"+job)
			onWant(t, f, writer, "DELETE", "/v1/endpoints/"+endpoint, "", 200)
			onWant(t, f, writer, "GET", "/v1/endpoints/"+endpoint, "", 404)
			everywhere(t, nodes, writer, "GET", "/v1/endpoints/"+endpoint, "", 404)
			replicated(t, nodes, f, "/v1/deliveries?jobId="+job)
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return // later steps build on this one
		}
	}
	if f.c.IsLeader() {
		t.Errorf("%s became the leader during the test: some writes were not forwarded", f.id)
	}
}

func TestAuthRulesThroughAFollower(t *testing.T) {
	nodes := startAPICluster(t, 3)
	f := followerOf(t, nodes)
	token := func(body string) (id, secret string) {
		r := onWant(t, f, "", "POST", "/v1/tokens", body, 201)
		return str(t, r.body, "id"), str(t, r.body, "token")
	}
	onWant(t, f, "", "POST", "/v1/projects", `{"name":"billing"}`, 201)
	_, reader := token(`{"name":"dash","scopes":["read"]}`)
	boundID, bound := token(`{"name":"billing-app","scopes":["write"],"project":"billing"}`)
	defaultJob := str(t, onWant(t, f, "", "POST", "/v1/jobs", futureJob, 201).body, "id")
	billingJob := str(t, onWant(t, f, bound, "POST", "/v1/jobs", futureJob, 201).body, "id")

	t.Run("a read token cannot write", func(t *testing.T) {
		onWant(t, f, reader, "GET", "/v1/jobs/"+defaultJob, "", 200)
		for _, w := range []struct{ method, path, body string }{
			{"POST", "/v1/jobs", futureJob},
			{"POST", "/v1/jobs/" + defaultJob + "/pause", ""},
			{"PATCH", "/v1/jobs/" + defaultJob, `{"name":"x"}`},
			{"DELETE", "/v1/jobs/" + defaultJob, ""},
			{"POST", "/v1/events", `{"type":"a.b"}`},
			{"POST", "/v1/endpoints", `{"url":"https://a.example.com","eventTypes":["*"]}`},
			{"POST", "/v1/tokens", `{"name":"x","scopes":["read"]}`},
		} {
			r := onWant(t, f, reader, w.method, w.path, w.body, 403)
			if code, _ := errorOf(t, r); code != "forbidden" {
				t.Errorf("%s %s: %s", w.method, w.path, r.raw)
			}
			// Every node knows the token and refuses the write alike.
			everywhere(t, nodes, reader, w.method, w.path, w.body, 403)
		}
		if r := onWant(t, f, "", "GET", "/v1/jobs/"+defaultJob, "", 200); r.body["status"] != "active" || r.body["name"] != "reminder" {
			t.Fatalf("a refused write changed the job: %s", r.raw)
		}
		if n := len(items(t, onWant(t, f, "", "GET", "/v1/jobs", "", 200))); n != 1 {
			t.Fatalf("%d jobs in default after refused creates, want 1", n)
		}
	})

	t.Run("a project-bound token sees no other project", func(t *testing.T) {
		everywhere(t, nodes, bound, "GET", "/v1/jobs/"+billingJob, "", 200)
		for _, w := range []struct{ method, path, body string }{
			{"GET", "/v1/jobs/" + defaultJob, ""},
			{"POST", "/v1/jobs/" + defaultJob + "/pause", ""},
			{"PATCH", "/v1/jobs/" + defaultJob, `{"name":"x"}`},
			{"DELETE", "/v1/jobs/" + defaultJob, ""},
			{"POST", "/v1/jobs/" + defaultJob + "/trigger", ""},
			{"GET", "/v1/jobs?project=default", ""},
		} {
			r := onWant(t, f, bound, w.method, w.path, w.body, 404)
			if code, _ := errorOf(t, r); code != "not_found" {
				t.Errorf("%s %s: %s", w.method, w.path, r.raw)
			}
			everywhere(t, nodes, bound, w.method, w.path, w.body, 404)
		}
		if r := onWant(t, f, "", "GET", "/v1/jobs/"+defaultJob, "", 200); r.body["status"] != "active" || r.body["lastOccurrence"] != nil {
			t.Fatalf("the bound token changed another project's job: %s", r.raw)
		}
		if r := onWant(t, f, bound, "GET", "/v1/jobs", "", 200); fmt.Sprint(idsOf(items(t, r))) != "["+billingJob+"]" {
			t.Fatalf("the bound token lists %s", r.raw)
		}
	})

	t.Run("a revoked token is refused everywhere", func(t *testing.T) {
		onWant(t, f, bound, "GET", "/v1/jobs", "", 200)
		if r := onWant(t, f, "", "DELETE", "/v1/tokens/"+boundID, "", 200); r.body["revoked"] != true {
			t.Fatalf("revoke: %s", r.raw)
		}
		r := onWant(t, f, bound, "GET", "/v1/jobs", "", 401) // at once on the node that took the revoke
		if code, _ := errorOf(t, r); code != "unauthorized" || r.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("revoked: %s", r.raw)
		}
		// Each node refuses it as soon as it has applied the revoke (reads
		// first: a node that has not may still let it through until then).
		everywhere(t, nodes, bound, "GET", "/v1/jobs", "", 401)
		for _, n := range nodes {
			for _, w := range []struct{ method, path, body string }{
				{"GET", "/v1/jobs/" + billingJob, ""},
				{"POST", "/v1/jobs", futureJob},
				{"POST", "/v1/jobs/" + billingJob + "/trigger", ""},
				{"POST", "/v1/events", `{"type":"a.b"}`},
				{"POST", "/v1/tokens", `{"name":"x","scopes":["read"],"project":"billing"}`},
			} {
				onWant(t, n, bound, w.method, w.path, w.body, 401)
			}
		}
		if r := onWant(t, f, "", "GET", "/v1/jobs?project=billing", "", 200); len(items(t, r)) != 1 {
			t.Fatalf("a revoked token created a job: %s", r.raw)
		}
		// The other tokens are untouched.
		everywhere(t, nodes, reader, "GET", "/v1/jobs", "", 200)
	})
}
