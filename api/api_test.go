package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/chimetest/loopback"
	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
)

// newSingleNode starts a one-node cluster with the API in front of it.
func newSingleNode(t *testing.T) *httptest.Server {
	t.Helper()
	srv, _ := newNode(t)
	return srv
}

// newNode is newSingleNode that also returns the cluster, for tests that
// must write what only the poller or the dispatcher writes (attempt results,
// fan-out of events). Data is limited to 1 KiB so that the 413 for data is
// reachable under the 4 KiB body limit.
func newNode(t *testing.T) (*httptest.Server, *cluster.Cluster) {
	t.Helper()
	return newNodeWithBody(t, 4096)
}

// newNodeWithBody is newNode with another request body limit.
func newNodeWithBody(t *testing.T, maxBody int64) (*httptest.Server, *cluster.Cluster) {
	t.Helper()
	return newNodeWith(t, func(cfg *Config) { cfg.MaxBodyBytes = maxBody })
}

// newTestCluster opens (but does not start) a single-node cluster with short
// Raft timeouts in a temporary data dir.
func newTestCluster(t *testing.T, logger *slog.Logger) *cluster.Cluster {
	t.Helper()
	c, err := cluster.New(cluster.Config{
		NodeID: "n1", DataDir: t.TempDir(), RaftAddr: loopback.FreeAddr(t), GossipAddr: loopback.FreeAddr(t), HTTPAddr: "127.0.0.1:1",
		BootstrapExpect: 1, ClusterName: "test", Version: "test", Logger: logger, FSM: fsm.New(logger),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newNodeWith is newNode with the API's configuration changed by set (nil:
// unchanged).
func newNodeWith(t *testing.T, set func(*Config)) (*httptest.Server, *cluster.Cluster) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := newTestCluster(t, logger)
	if err := c.Start(&BootstrapHook{Cluster: c, Logger: logger, RootToken: testRootToken}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Cluster: c, Logger: logger, Version: "test", MaxBodyBytes: 4096, MaxDataBytes: 1024}
	if set != nil {
		set(&cfg)
	}
	srv := httptest.NewServer(asRoot(New(cfg).Handler()))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// The limits row follows the bootstrap (BootstrapHook.limits).
		st := c.FSM().State()
		if _, err := st.Project(DefaultProject); err == nil {
			if _, err := st.Limits(fsm.ClusterLimitsID); err == nil {
				return srv, c
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("default project never appeared")
	return nil, nil
}

// testRootToken is the root token of the test clusters (CHIME_ROOT_TOKEN).
const testRootToken = "chime_test-root-token-0123456789"

// asRoot sends every request with the root token unless it names another
// (Authorization) or none (X-Test-Anonymous), so that tests of other things
// need not repeat it.
func asRoot(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Anonymous") == "" && r.Header.Get("Authorization") == "" {
			r.Header.Set("Authorization", "Bearer "+testRootToken)
		}
		h.ServeHTTP(w, r)
	})
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return roundTrip(t, req)
}

// roundTrip sends req and reads the answer, decoding a JSON body.
func roundTrip(t *testing.T, req *http.Request) response {
	t.Helper()
	method, path := req.Method, req.URL.Path
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %s", method, path, raw)
		}
	}
	return out
}

func errorOf(t *testing.T, r response) (code, field string) {
	t.Helper()
	e, ok := r.body["error"].(map[string]any)
	if !ok {
		t.Fatalf("status %d without an error body: %s", r.status, r.raw)
	}
	if e["message"] == "" {
		t.Fatalf("error without message: %s", r.raw)
	}
	field, _ = e["field"].(string)
	return e["code"].(string), field
}

func TestHealthReadyStatus(t *testing.T) {
	srv := newSingleNode(t)
	if r := do(t, srv, "GET", "/v1/health", ""); r.status != 200 || r.body["nodeId"] != "n1" {
		t.Fatalf("health: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "GET", "/v1/ready", ""); r.status != 200 {
		t.Fatalf("ready: %d %s", r.status, r.raw)
	}
	r := do(t, srv, "GET", "/v1/cluster/status", "")
	if r.status != 200 {
		t.Fatalf("status: %d %s", r.status, r.raw)
	}
	leader := r.body["leader"].(map[string]any)
	nodes := r.body["nodes"].([]any)
	if leader["id"] != "n1" || len(nodes) != 1 || nodes[0].(map[string]any)["raft"] != "leader" || nodes[0].(map[string]any)["gossip"] != "alive" {
		t.Fatalf("status body: %s", r.raw)
	}
	for _, k := range []string{"term", "lastIndex", "commitIndex", "appliedIndex"} {
		if _, ok := r.body["raft"].(map[string]any)[k]; !ok {
			t.Fatalf("status raft lacks %s: %s", k, r.raw)
		}
	}
}

func TestProjectsLifecycle(t *testing.T) {
	srv := newSingleNode(t)
	r := do(t, srv, "POST", "/v1/projects", `{"name":"billing","description":"invoices"}`)
	if r.status != 201 || r.body["name"] != "billing" || r.body["createdAt"] == nil {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "POST", "/v1/projects", `{"name":"billing"}`); r.status != 409 {
		t.Fatalf("duplicate: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "GET", "/v1/projects/billing?consistent=true", ""); r.status != 200 || r.body["description"] != "invoices" {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}
	// Pagination: default + billing + 3 more, two per page.
	for i := range 3 {
		do(t, srv, "POST", "/v1/projects", fmt.Sprintf(`{"name":"p%d"}`, i))
	}
	var names []string
	cursor := ""
	for page := 0; ; page++ {
		path := "/v1/projects?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := do(t, srv, "GET", path, "")
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.raw)
		}
		for _, it := range r.body["items"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		next, _ := r.body["nextCursor"].(string)
		if next == "" {
			if r.body["nextCursor"] != nil {
				t.Fatalf("nextCursor must be null on the last page: %s", r.raw)
			}
			break
		}
		cursor = next
		if page > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if strings.Join(names, ",") != "billing,default,p0,p1,p2" {
		t.Fatalf("listed %v", names)
	}
	if r := do(t, srv, "DELETE", "/v1/projects/billing", ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "GET", "/v1/projects/billing", ""); r.status != 404 {
		t.Fatalf("get deleted: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "DELETE", "/v1/projects/default", ""); r.status != 409 {
		t.Fatalf("delete default: %d %s", r.status, r.raw)
	}
}

func TestBadInputIsA4xxWithTheField(t *testing.T) {
	srv := newSingleNode(t)
	cases := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"malformed JSON", "POST", "/v1/projects", `{"name":`, 400, "invalid_request", ""},
		{"not an object", "POST", "/v1/projects", `[1,2]`, 400, "invalid_request", ""},
		{"unknown field", "POST", "/v1/projects", `{"name":"x","colour":"red"}`, 400, "invalid_request", "colour"},
		{"wrong type", "POST", "/v1/projects", `{"name":42}`, 400, "invalid_request", "name"},
		{"two values", "POST", "/v1/projects", `{"name":"a"}{"name":"b"}`, 400, "invalid_request", ""},
		{"empty body", "POST", "/v1/projects", ``, 400, "invalid_request", ""},
		{"missing name", "POST", "/v1/projects", `{}`, 400, "invalid_request", "name"},
		{"over-long name", "POST", "/v1/projects", `{"name":"` + strings.Repeat("a", 64) + `"}`, 400, "invalid_request", "name"},
		{"bad name", "POST", "/v1/projects", `{"name":"Has Space"}`, 400, "invalid_request", "name"},
		{"over-long description", "POST", "/v1/projects", `{"name":"ok","description":"` + strings.Repeat("d", 2001) + `"}`, 400, "invalid_request", "description"},
		{"body too large", "POST", "/v1/projects", `{"name":"x","description":"` + strings.Repeat("d", 5000) + `"}`, 413, "payload_too_large", ""},
		{"wrong method", "PUT", "/v1/projects", `{}`, 405, "method_not_allowed", ""},
		{"wrong method on item", "PATCH", "/v1/projects/default", `{}`, 405, "method_not_allowed", ""},
		{"unknown route", "GET", "/v1/nope", ``, 404, "not_found", ""},
		{"bad limit", "GET", "/v1/projects?limit=501", ``, 400, "invalid_request", "limit"},
		{"bad cursor", "GET", "/v1/projects?cursor=!!", ``, 400, "invalid_request", "cursor"},
		{"missing project", "GET", "/v1/projects/ghost", ``, 404, "not_found", ""},
		{"transfer unknown field", "POST", "/v1/cluster/transfer-leadership", `{"node":"x"}`, 400, "invalid_request", "node"},
		{"transfer with no other voter", "POST", "/v1/cluster/transfer-leadership", `{}`, 409, "conflict", ""},
		{"remove self", "DELETE", "/v1/cluster/peers/n1", ``, 409, "conflict", ""},
		{"remove unknown peer", "DELETE", "/v1/cluster/peers/zz", ``, 404, "not_found", ""},
		{"restore garbage", "POST", "/v1/cluster/restore", `not a snapshot`, 400, "invalid_snapshot", ""},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, srv, tt.method, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			code, field := errorOf(t, r)
			if code != tt.code || field != tt.field {
				t.Fatalf("code %q field %q, want %q %q: %s", code, field, tt.code, tt.field, r.raw)
			}
		})
	}
	// Nothing above was half-written.
	r := do(t, srv, "GET", "/v1/projects", "")
	if n := len(r.body["items"].([]any)); n != 1 {
		t.Fatalf("bad requests left %d projects, want only default: %s", n, r.raw)
	}
}

func TestSnapshotDownloadAndRestore(t *testing.T) {
	srv := newSingleNode(t)
	do(t, srv, "POST", "/v1/projects", `{"name":"kept"}`)
	resp, err := srv.Client().Get(srv.URL + "/v1/cluster/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(snap, []byte("CHIMESNP")) {
		t.Fatalf("snapshot: %d, %d bytes", resp.StatusCode, len(snap))
	}
	do(t, srv, "DELETE", "/v1/projects/kept", "")
	do(t, srv, "POST", "/v1/projects", `{"name":"later"}`)
	// A truncated file changes nothing.
	if r := do(t, srv, "POST", "/v1/cluster/restore", string(snap[:len(snap)-3])); r.status != 400 {
		t.Fatalf("truncated restore: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "GET", "/v1/projects/later", ""); r.status != 200 {
		t.Fatal("a refused restore changed the state")
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/cluster/restore", bytes.NewReader(snap))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("restore: %d %s", resp.StatusCode, body)
	}
	if r := do(t, srv, "GET", "/v1/projects/kept", ""); r.status != 200 {
		t.Fatalf("restored project missing: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "GET", "/v1/projects/later", ""); r.status != 404 {
		t.Fatalf("project created after the snapshot survived the restore: %d", r.status)
	}
	// Writes go on after a restore.
	if r := do(t, srv, "POST", "/v1/projects", `{"name":"after-restore"}`); r.status != 201 {
		t.Fatalf("write after restore: %d %s", r.status, r.raw)
	}
}

func TestContentTypes(t *testing.T) {
	srv := newSingleNode(t)
	cases := []struct {
		ct     string
		status int
	}{
		{"application/json", 201},
		{"application/json; charset=utf-8", 201},
		{"application/x-www-form-urlencoded", 201}, // curl -d without -H
		{"", 201},
		{"text/xml", 415},
		{"multipart/form-data; boundary=x", 415},
	}
	for i, tt := range cases {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/projects", strings.NewReader(fmt.Sprintf(`{"name":"ct%d"}`, i)))
		if tt.ct != "" {
			req.Header.Set("Content-Type", tt.ct)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("Content-Type %q: status %d, want %d: %s", tt.ct, resp.StatusCode, tt.status, body)
		}
	}
}
