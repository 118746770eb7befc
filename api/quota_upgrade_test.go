package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
)

// gatedCluster plays a cluster in a rolling upgrade: AllServersAtLeast is
// false until upgraded is set.
type gatedCluster struct {
	*cluster.Cluster
	upgraded atomic.Bool
}

func (g *gatedCluster) AllServersAtLeast(level int) bool {
	return g.upgraded.Load() && g.Cluster.AllServersAtLeast(level)
}

// Issue 12 item 4, upgrade: the leader writes the limits row (which switches
// quota enforcement on in every replica's Apply) only once every server in
// the Raft configuration runs a version that enforces them; until then no
// quota is enforced anywhere and an admin cannot switch them on by hand, so
// an older replica, which ignores the quota tables, applies exactly what the
// newer ones apply.
func TestLimitsRowWaitsForEveryServer(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := newTestCluster(t, logger)
	g := &gatedCluster{Cluster: c}
	if err := c.Start(&BootstrapHook{Cluster: g, Logger: logger, RootToken: testRootToken, LimitsPoll: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(asRoot(New(Config{Cluster: g, Logger: logger, Version: "test", MaxBodyBytes: 4096, MaxDataBytes: 1024}).Handler()))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
	})
	waitFor(t, 10*time.Second, "the default project", func() bool {
		_, err := c.FSM().State().Project(DefaultProject)
		return err == nil
	})
	// An older server is in the configuration: several polls later there is
	// still no row, and nothing is enforced.
	time.Sleep(200 * time.Millisecond)
	if _, err := c.FSM().State().Limits(fsm.ClusterLimitsID); err == nil {
		t.Fatal("limits row written while a server of an older version is in the cluster")
	}
	if l := c.FSM().State().EffectiveLimits(DefaultProject); l.MaxJobs != 0 {
		t.Fatalf("limits in force during the upgrade: %+v", l)
	}
	r := want(t, do(t, srv, "PATCH", "/v1/limits", `{"maxJobs": 5}`), 409)
	if code, _ := errorOf(t, r); code != "upgrade_in_progress" {
		t.Fatalf("code %q", code)
	}
	// A project override may be set meanwhile; it waits for the cluster row.
	want(t, do(t, srv, "PATCH", "/v1/projects/default/limits", `{"maxJobs": 5}`), 200)
	if l := c.FSM().State().EffectiveLimits(DefaultProject); l.MaxJobs != 0 {
		t.Fatalf("a project row enforced without the cluster row: %+v", l)
	}

	// The last server is upgraded: the leader writes the defaults.
	g.upgraded.Store(true)
	waitFor(t, 10*time.Second, "the limits row", func() bool {
		_, err := c.FSM().State().Limits(fsm.ClusterLimitsID)
		return err == nil
	})
	l := c.FSM().State().EffectiveLimits(DefaultProject)
	if l.MaxJobs != 5 || l.MaxUndelivered != fsm.DefaultLimits.MaxUndelivered {
		t.Fatalf("limits after the upgrade: %+v", l)
	}
}

// Issue 12 item 4, review: minIntervalSeconds looked at the next 64 fires
// only; 200 times six minutes apart and then two a minute apart passed.
func TestMinIntervalSeesEveryTimeOfDay(t *testing.T) {
	srv, _ := newNodeWithBody(t, 1<<20)
	want(t, do(t, srv, "PATCH", "/v1/projects/default/limits", `{"minIntervalSeconds":300}`), 200)
	var times []string
	for i := range 200 {
		times = append(times, fmt.Sprintf(`"%02d:%02d"`, i*6/60, i*6%60))
	}
	body := `{"callbackUrl":"https://example.com/cb","scheduleTimes":[` + strings.Join(times, ",") + `]}`
	want(t, do(t, srv, "POST", "/v1/jobs", body), 201)
	body = `{"callbackUrl":"https://example.com/cb","scheduleTimes":[` + strings.Join(times, ",") + `,"21:00","21:01"]}`
	r := want(t, do(t, srv, "POST", "/v1/jobs", body), 400)
	if _, f := errorOf(t, r); f != "scheduleTimes" {
		t.Fatalf("field %q: %s", f, r.raw)
	}
	// The same through a PATCH of the job's schedule.
	r = want(t, do(t, srv, "POST", "/v1/jobs", `{"callbackUrl":"https://example.com/cb","cron":"0 9 * * *"}`), 201)
	r = want(t, do(t, srv, "PATCH", "/v1/jobs/"+str(t, r.body, "id"), `{"cron":"0,1 23 * * *"}`), 400)
	if _, f := errorOf(t, r); f != "cron" {
		t.Fatalf("field %q: %s", f, r.raw)
	}
}

// Issue 12 item 4, review: every keyed request wrote a claim to the Raft log
// (and kept a 4xx answer for a day). A request its route refuses for a quota
// is now refused before the claim, and new claims are rate-limited.
func TestKeyedRequestsAndQuotas(t *testing.T) {
	srv, c := newNode(t)
	want(t, do(t, srv, "PATCH", "/v1/projects/default/limits", `{"maxJobs":1}`), 200)
	job := `{"callbackUrl":"https://example.com/cb","recurrenceSeconds":3600}`
	if code, raw, _ := postWithKey(t, srv.URL+"/v1/jobs", "k-1", job); code != 201 {
		t.Fatalf("first job: %d %s", code, raw)
	}
	before := c.FSM().State().Index()
	code, raw, _ := postWithKey(t, srv.URL+"/v1/jobs", "k-2", job)
	if code != 429 || !strings.Contains(raw, "maxJobs") {
		t.Fatalf("over maxJobs: %d %s", code, raw)
	}
	if after := c.FSM().State().Index(); after != before {
		t.Fatalf("a keyed request refused for a quota wrote %d entries (a claim and its release)", after-before)
	}
	// A replay of the first is still answered.
	if code, raw, h := postWithKey(t, srv.URL+"/v1/jobs", "k-1", job); code != 201 || h.Get(HeaderReplayed) != "true" {
		t.Fatalf("replay: %d %s", code, raw)
	}

	// Claims share createsPerSecond + publishesPerSecond: requests that
	// fail validation still claim keys, and a loop of them is stopped.
	want(t, do(t, srv, "PATCH", "/v1/limits", `{"createsPerSecond":1,"createBurst":1,"publishesPerSecond":1,"publishBurst":1}`), 200)
	var last int
	var lastRaw string
	for i := range 3 {
		last, lastRaw, _ = postWithKey(t, srv.URL+"/v1/jobs/nope/pause", fmt.Sprintf("bad-%d", i), "")
	}
	if last != 429 || !strings.Contains(lastRaw, "Idempotency-Key") {
		t.Fatalf("third keyed request within the burst of 2: %d %s", last, lastRaw)
	}
}
