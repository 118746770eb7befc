package cluster

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/chimetest/loopback"
	"github.com/chime-sched/chime/fsm"
)

func TestValidateKey(t *testing.T) {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	gen := testKey(t)
	cases := []struct {
		name, key string
		ok        bool
	}{
		{"keygen", gen, true},
		{"hex 32 bytes", hex.EncodeToString(raw), true},
		{"base64 std", base64.StdEncoding.EncodeToString(raw), true},
		{"base64 url unpadded", base64.RawURLEncoding.EncodeToString(raw), true},
		{"base64 of 48 bytes", base64.StdEncoding.EncodeToString(append(raw, raw[:16]...)), true},
		{"empty", "", false},
		{"short phrase", "test-key", false},
		{"hex 31 bytes", hex.EncodeToString(raw[:31]), false},
		{"not an encoding", "this is my cluster key, surely long enough!!", false},
		{"repeated byte", strings.Repeat("00", 32), false},
		{"few distinct bytes", hex.EncodeToString([]byte(strings.Repeat("abcd", 10))), false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateKey(tt.key)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok {
				if !errors.Is(err, ErrWeakClusterKey) {
					t.Fatalf("got %v, want ErrWeakClusterKey", err)
				}
				if !strings.Contains(err.Error(), "chime keygen") {
					t.Fatalf("message does not say how to make a key: %v", err)
				}
			}
		})
	}
}

func newConfig(t *testing.T, dir string) Config {
	logger := testLogger(t)
	return Config{
		NodeID: "solo", DataDir: dir, RaftAddr: loopback.FreeAddr(t), GossipAddr: loopback.FreeAddr(t),
		HTTPAddr: "127.0.0.1:1", BootstrapExpect: 1, ClusterName: "chime", Logger: logger, FSM: fsm.New(logger),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
	}
}

// TestKeylessSingleNode is `make run`: one node without --cluster-key. It
// makes a random key, keeps it in its data dir (0600) and reuses it on
// restart; a client that proves the empty key (what every node used when
// none was given) cannot complete the handshake, in TLS or in plaintext.
func TestKeylessSingleNode(t *testing.T) {
	dir := t.TempDir()
	cfg := newConfig(t, dir)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Kill()
	path := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no key file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o, want 600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	key := strings.TrimSpace(string(b))
	if err := ValidateKey(key); err != nil {
		t.Fatalf("stored key: %v", err)
	}
	if c.cfg.ClusterKey != key {
		t.Fatal("the node does not run with the stored key")
	}

	addr := c.RaftAddr()
	for _, legacy := range []bool{false, true} {
		cli := clientTransport(t, transportConfig{ClusterKey: "", ClusterName: "chime", NodeID: "attacker", Legacy: legacy})
		if _, err := ping(t, cli, addr); !errors.Is(err, ErrAuth) {
			t.Fatalf("client with the empty key (plaintext %v): got %v, want ErrAuth", legacy, err)
		}
	}
	// The stored key does work (the test proves its own setup).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "chime", NodeID: "friend"})
	conn, err := cli.dial(ctx, addr, purposeForward)
	if err != nil {
		t.Fatalf("client with the stored key: %v", err)
	}
	conn.Close()

	c.Kill()
	cfg2 := newConfig(t, dir)
	cfg2.RaftAddr, cfg2.GossipAddr = cfg.RaftAddr, cfg.GossipAddr
	c2, err := New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Kill()
	if c2.cfg.ClusterKey != key {
		t.Fatal("restart made a new key instead of reusing the stored one")
	}
}

// TestKeyRequiredWithPeers: a node that bootstraps with others or joins
// refuses to start without a key, and every node refuses a weak key.
func TestKeyRequiredWithPeers(t *testing.T) {
	cases := []struct {
		name string
		set  func(*Config)
		want error
	}{
		{"bootstrap-expect 3 without key", func(c *Config) { c.BootstrapExpect = 3 }, ErrNoClusterKey},
		{"join without key", func(c *Config) { c.BootstrapExpect = 0; c.Join = []string{"127.0.0.1:1"} }, ErrNoClusterKey},
		{"short key", func(c *Config) { c.ClusterKey = "test-key" }, ErrWeakClusterKey},
		{"short key on a cluster", func(c *Config) { c.BootstrapExpect = 3; c.ClusterKey = "abc" }, ErrWeakClusterKey},
		{"bad tls mode", func(c *Config) { c.ClusterKey = testKey(t); c.TLSMode = "off" }, ErrTLSMode},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := newConfig(t, dir)
			tt.set(&cfg)
			c, err := New(cfg)
			if err == nil {
				c.Kill()
				t.Fatal("started")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, KeyFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a key file was written: %v", err)
			}
		})
	}
}

// TestStoredKeyNotReplaced: a stored key that is not valid stops the node
// rather than being silently replaced (peers may know the old one).
func TestStoredKeyNotReplaced(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := LoadOrCreateKey(dir); !errors.Is(err, ErrWeakClusterKey) {
		t.Fatalf("got %v, want ErrWeakClusterKey", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, KeyFile)); string(b) != "short\n" {
		t.Fatalf("stored key replaced: %q", b)
	}
}
