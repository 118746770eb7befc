//go:build unix

package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chime-sched/chime/chimetest/loopback"
	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
)

// TestAgentFilesArePrivate: with the agent's file-mode policy, everything a
// node writes into its data dir, Raft snapshots included (hashicorp/raft asks
// for 0755 and 0644), is 0700 or 0600.
func TestAgentFilesArePrivate(t *testing.T) {
	old := restrictFileModes()
	defer syscall.Umask(old)

	dir := filepath.Join(t.TempDir(), "data")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := cluster.LoadNodeID(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	c, err := cluster.New(cluster.Config{
		NodeID: "n1", DataDir: dir, RaftAddr: loopback.FreeAddr(t), GossipAddr: loopback.FreeAddr(t), HTTPAddr: "127.0.0.1:1",
		BootstrapExpect: 1, Logger: logger, FSM: fsm.New(logger),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		SnapshotThreshold: 2, SnapshotInterval: 50 * time.Millisecond, TrailingLogs: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		cmd, err := fsm.ProjectCreateCommand(fsm.Project{Name: "p" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), CreatedAt: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, cmd); err != nil && !errors.Is(err, cluster.ErrNoLeader) {
			t.Fatal(err)
		}
		states, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
		if len(states) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no Raft snapshot within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var files int
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a snapshot reaped while we walk
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node-id", cluster.KeyFile, "raft/raft.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("expected %s: %v", name, err)
		}
	}
	t.Logf("%d files checked", files)
}

// TestAgentRefusesClusterWithoutKey: an agent that would bootstrap with
// others or join, without a key or with a weak one (or with a bad TLS
// setting), stops before it writes anything.
func TestAgentRefusesClusterWithoutKey(t *testing.T) {
	old := restrictFileModes()
	defer syscall.Umask(old)
	cases := []struct {
		args []string
		want error
	}{
		{[]string{"--bootstrap-expect", "3"}, cluster.ErrNoClusterKey},
		{[]string{"--join", "127.0.0.1:1"}, cluster.ErrNoClusterKey},
		{[]string{"--cluster-key", "test-key"}, cluster.ErrWeakClusterKey},
		{[]string{"--cluster-key", "e2e-key-" + strings.Repeat("z", 12), "--bootstrap-expect", "3"}, cluster.ErrWeakClusterKey},
		{[]string{"--tls-mode", "off"}, cluster.ErrTLSMode},
		{[]string{"--tls-ca-file", "/nonexistent/ca.pem"}, cluster.ErrTLSFiles},
	}
	for _, tt := range cases {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			var f agentFlags
			if err := agentFlagSet(&f).Parse(append([]string{"--data-dir", dir, "--http-addr", loopback.FreeAddr(t)}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			err := runAgentWith(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the data dir was made: %v", err)
			}
		})
	}
}

func TestKeygen(t *testing.T) {
	var out, errOut strings.Builder
	if code := runKeygen(nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	k1 := strings.TrimSpace(out.String())
	if err := cluster.ValidateKey(k1); err != nil {
		t.Fatalf("keygen printed a key the agent refuses: %v", err)
	}
	out.Reset()
	runKeygen(nil, &out, &errOut)
	if strings.TrimSpace(out.String()) == k1 {
		t.Fatal("two keys alike")
	}
	if code := runKeygen([]string{"extra"}, &out, &errOut); code != 2 {
		t.Fatalf("extra argument: exit %d", code)
	}
}

// TestAgentShortRootToken: a root token under 32 characters stops a node that
// would create a cluster, but not one whose cluster exists already (where the
// token no longer counts), so an upgrade of a node set up with a shorter token
// does not keep it down. The second start fails later, on a bad --tls-mode,
// which shows that the token did not stop it.
func TestAgentShortRootToken(t *testing.T) {
	short := strings.Repeat("r", 20)
	start := func(dir string) error {
		var f agentFlags
		if err := agentFlagSet(&f).Parse([]string{"--data-dir", dir, "--http-addr", loopback.FreeAddr(t), "--root-token", short, "--tls-mode", "off"}); err != nil {
			t.Fatal(err)
		}
		return runAgentWith(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	fresh := filepath.Join(t.TempDir(), "data")
	if err := start(fresh); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("a new node with a 20-character root token: %v, want refused", err)
	}
	existing := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(existing, "raft"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(existing, "raft", "raft.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := start(existing); !errors.Is(err, cluster.ErrTLSMode) {
		t.Fatalf("a node with state and a 20-character root token: %v, want it past the token check", err)
	}
}
