package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func jobBody(recurrence int) string {
	return fmt.Sprintf(`{"callbackUrl":"https://example.com/cb","recurrenceSeconds":%d}`, recurrence)
}

// Issue 12, item 4: one write token could create jobs without bound. The
// limits are cluster-wide defaults and per-project overrides, set by an
// unrestricted admin; a count answers 429 without Retry-After, the smallest
// interval a 400 naming the schedule's field.
func TestQuotaLimitsThroughTheAPI(t *testing.T) {
	srv := newSingleNode(t)
	r := do(t, srv, "GET", "/v1/limits", "")
	lim, _ := r.body["limits"].(map[string]any)
	if r.status != 200 || lim["maxJobs"] != float64(10000) || lim["minIntervalSeconds"] != float64(1) {
		t.Fatalf("cluster limits after bootstrap: %d %s", r.status, r.raw)
	}

	// A project's own admin must not raise its own limits.
	tok := do(t, srv, "POST", "/v1/tokens", `{"name":"p-admin","scopes":["admin"],"project":"default"}`)
	if tok.status != 201 {
		t.Fatalf("token: %d %s", tok.status, tok.raw)
	}
	req, _ := http.NewRequest("PATCH", srv.URL+"/v1/projects/default/limits", stringsReader(`{"maxJobs":100000}`))
	req.Header.Set("Authorization", "Bearer "+tok.body["token"].(string))
	req.Header.Set("Content-Type", "application/json")
	if r := roundTrip(t, req); r.status != http.StatusForbidden {
		t.Fatalf("a project-bound admin patched its limits: %d %s", r.status, r.raw)
	}

	for body, field := range map[string]string{`{"maxJobs":-1}`: "maxJobs", `{"nope":1}`: "nope", `{"createsPerSecond":"x"}`: "createsPerSecond"} {
		r := do(t, srv, "PATCH", "/v1/projects/default/limits", body)
		if code, f := errorOf(t, r); r.status != 400 || f != field {
			t.Fatalf("PATCH %s: %d %s %s", body, r.status, code, f)
		}
	}
	r = do(t, srv, "PATCH", "/v1/projects/default/limits", `{"maxJobs":2,"minIntervalSeconds":60}`)
	if r.status != 200 || r.body["limits"].(map[string]any)["maxJobs"] != float64(2) {
		t.Fatalf("PATCH: %d %s", r.status, r.raw)
	}

	r = do(t, srv, "POST", "/v1/jobs", jobBody(30))
	if code, f := errorOf(t, r); r.status != 400 || f != "recurrenceSeconds" || code != "invalid_request" {
		t.Fatalf("interval under the minimum: %d %s", r.status, r.raw)
	}
	r = do(t, srv, "POST", "/v1/jobs", `{"callbackUrl":"https://example.com/cb","cron":"*/1 * * * *"}`)
	if r.status != 201 { // every minute is fine with a 60 s minimum
		t.Fatalf("cron every minute: %d %s", r.status, r.raw)
	}
	do(t, srv, "PATCH", "/v1/projects/default/limits", `{"minIntervalSeconds":120}`)
	r = do(t, srv, "POST", "/v1/jobs", `{"callbackUrl":"https://example.com/cb","cron":"*/1 * * * *"}`)
	if _, f := errorOf(t, r); r.status != 400 || f != "cron" {
		t.Fatalf("cron under the minimum: %d %s", r.status, r.raw)
	}

	if r := do(t, srv, "POST", "/v1/jobs", jobBody(3600)); r.status != 201 {
		t.Fatalf("second job: %d %s", r.status, r.raw)
	}
	r = do(t, srv, "POST", "/v1/jobs", jobBody(3600))
	if code, f := errorOf(t, r); r.status != http.StatusTooManyRequests || code != "quota_exceeded" || f != "maxJobs" || r.header.Get("Retry-After") != "" {
		t.Fatalf("third job: %d %s (Retry-After %q)", r.status, r.raw, r.header.Get("Retry-After"))
	}
	r = do(t, srv, "GET", "/v1/projects/default/limits", "")
	if u := r.body["usage"].(map[string]any); u["jobs"] != float64(2) {
		t.Fatalf("usage: %s", r.raw)
	}
	if o := r.body["overrides"].(map[string]any); o["maxJobs"] != float64(2) || len(o) != 2 {
		t.Fatalf("overrides: %s", r.raw)
	}

	// Back to the cluster's limits.
	if r := do(t, srv, "DELETE", "/v1/projects/default/limits", ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, "POST", "/v1/jobs", jobBody(30)); r.status != 201 {
		t.Fatalf("after the override is gone: %d %s", r.status, r.raw)
	}

	// A rate answers 429 with Retry-After, for publishes as for creates.
	do(t, srv, "PATCH", "/v1/limits", `{"publishesPerSecond":1,"publishBurst":1}`)
	if r := do(t, srv, "POST", "/v1/events", `{"type":"a.b"}`); r.status != 202 {
		t.Fatalf("first publish: %d %s", r.status, r.raw)
	}
	r = do(t, srv, "POST", "/v1/events", `{"type":"a.b"}`)
	ra, _ := strconv.Atoi(r.header.Get("Retry-After"))
	if _, f := errorOf(t, r); r.status != http.StatusTooManyRequests || f != "publishesPerSecond" || ra < 1 {
		t.Fatalf("second publish: %d %s (Retry-After %q)", r.status, r.raw, r.header.Get("Retry-After"))
	}
}

// Counts hold cluster-wide whichever nodes take the writes: many creates
// sent at once through all three nodes (each node's pre-check sees a stale
// count) end with exactly the limit stored, on every node.
func TestQuotaConcurrentCreatesThroughSeveralNodes(t *testing.T) {
	nodes := startAPICluster(t, 3)
	leader := nodes[0]
	for _, n := range nodes {
		if n.c.IsLeader() {
			leader = n
		}
	}
	const limit = 10
	onWant(t, leader, "", "PATCH", "/v1/projects/default/limits", fmt.Sprintf(`{"maxJobs":%d,"createsPerSecond":0}`, limit), 200)
	everywhere(t, nodes, "", "GET", "/v1/projects/default/limits", "", 200)
	waitFor(t, 5*time.Second, "the limit on every node", func() bool {
		for _, n := range nodes {
			if n.c.FSM().State().EffectiveLimits(DefaultProject).MaxJobs != limit {
				return false
			}
		}
		return true
	})

	const tries = 60
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range tries {
		wg.Go(func() {
			<-start
			r := on(t, nodes[i%3], "", "POST", "/v1/jobs", jobBody(3600))
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if codes[201] != limit || codes[429] != tries-limit {
		t.Fatalf("answers %v, want %d × 201 and %d × 429", codes, limit, tries-limit)
	}
	waitFor(t, 5*time.Second, "every node to hold exactly the limit", func() bool {
		for _, n := range nodes {
			st := n.c.FSM().State()
			if jobs, _ := st.Jobs(DefaultProject, "", 0); len(jobs) != limit || st.Usage(DefaultProject).Jobs != limit {
				return false
			}
		}
		return true
	})
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
