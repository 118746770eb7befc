// Package chimetest runs an in-process Chime node for the tests of the
// packages that use the API from outside (client, the CLI): a real cluster of
// one with the API, poller, reassigner and dispatcher wired as the agent
// wires them. Like cmd, it may import every package; nothing but tests may
// import it.
package chimetest

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chime-sched/chime/api"
	"github.com/chime-sched/chime/chimetest/loopback"
	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
)

// StartNode runs a one-node cluster with everything an agent wires (API,
// poller, reassigner, dispatcher allowed to reach loopback receivers), so
// that deliveries really happen, and returns the API's base URL. rootToken
// is its first admin token (CHIME_ROOT_TOKEN). It is shut down when the test
// ends.
func StartNode(t testing.TB, rootToken string) string {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := cluster.New(cluster.Config{
		NodeID: "n1", DataDir: t.TempDir(), RaftAddr: loopback.FreeAddr(t), GossipAddr: loopback.FreeAddr(t), HTTPAddr: "127.0.0.1:1",
		BootstrapExpect: 1, ClusterName: "test", Version: "test", Logger: logger, FSM: fsm.New(logger),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	sched := scheduler.DefaultConfig()
	poller := scheduler.NewPoller(c, scheduler.PollerConfig{Interval: 100 * time.Millisecond, Retention: -1, Schedule: sched, Logger: logger})
	dispatcher := dispatch.NewDispatcher(c, dispatch.DispatcherConfig{Workers: 4, Logger: logger,
		Sender: dispatch.NewSender(dispatch.SenderConfig{Policy: dispatch.TargetPolicy{AllowPrivate: true}})})
	if err := c.Start(&api.BootstrapHook{Cluster: c, Logger: logger, RootToken: rootToken},
		dispatch.NewReassigner(c, nil, logger), poller); err != nil {
		t.Fatal(err)
	}
	dispatcher.Start()
	srv := httptest.NewServer(api.New(api.Config{Cluster: c, Logger: logger, Version: "test", Schedule: sched}).Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dispatcher.Stop(ctx)
		_ = c.Shutdown(ctx)
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// The limits row follows the bootstrap (api.BootstrapHook).
		st := c.FSM().State()
		if _, err := st.Project(api.DefaultProject); err == nil {
			if _, err := st.Limits(fsm.ClusterLimitsID); err == nil {
				return srv.URL
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the node never created the default project")
	return ""
}
