package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"
)

// echoServer starts a transport that echoes every forwarding stream, and
// returns it (closed when the test ends).
func echoServer(t *testing.T, cfg transportConfig) *muxTransport {
	t.Helper()
	cfg.Bind = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := newMuxTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		for {
			c, err := srv.accept(srv.fwdCh, nil)
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	return srv
}

func clientTransport(t *testing.T, cfg transportConfig) *muxTransport {
	t.Helper()
	cfg.Bind = "127.0.0.1:0"
	cfg.Logger = testLogger(t)
	cli, err := newMuxTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// ping dials addr and checks the stream echoes; it returns the connection
// (closed when the test ends) or the dial error.
func ping(t *testing.T, cli *muxTransport, addr string) (io.ReadWriteCloser, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := cli.dial(ctx, addr, purposeForward)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return nil, err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		return nil, errors.New("no echo: " + string(buf))
	}
	return conn, nil
}

func TestTransportRefusesOtherKeyOrName(t *testing.T) {
	key := testKey(t)
	srv := echoServer(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "srv"})
	addr := srv.advertise.String()
	cases := []struct {
		name, key, cluster string
		legacy             bool
		ok                 bool
	}{
		{"same key and name", key, "prod", false, true},
		{"other key", testKey(t), "prod", false, false},
		{"other cluster name", key, "staging", false, false},
		{"empty key", "", "prod", false, false},
		// The right key, but plaintext: an `on` node speaks TLS only.
		{"plaintext with the right key", key, "prod", true, false},
		{"plaintext with the empty key", "", "prod", true, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			cli := clientTransport(t, transportConfig{ClusterKey: tt.key, ClusterName: tt.cluster, NodeID: "cli", Legacy: tt.legacy})
			conn, err := ping(t, cli, addr)
			if !tt.ok {
				if !errors.Is(err, ErrAuth) {
					t.Fatalf("dial: got %v, want ErrAuth", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if _, ok := conn.(*tls.Conn); !ok {
				t.Fatalf("stream is %T, want TLS", conn)
			}
		})
	}
}

// TestTransportRefusesCertificateOfAnotherCA: a peer that knows the cluster
// key for the inner handshake but presents a certificate of another key's CA
// is refused, on either side of the connection. This is what the TLS layer
// adds over the handshake alone.
func TestTransportRefusesCertificateOfAnotherCA(t *testing.T) {
	key, other := testKey(t), testKey(t)
	foreignServer, foreignClient, err := transportTLS(other, "prod", "mallory", TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("client with a foreign certificate", func(t *testing.T) {
		srv := echoServer(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "srv"})
		cli := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "cli"})
		cli.clientTLS = cli.clientTLS.Clone()
		cli.clientTLS.Certificates = foreignClient.Certificates
		if _, err := ping(t, cli, srv.advertise.String()); !errors.Is(err, ErrAuth) {
			t.Fatalf("dial: got %v, want ErrAuth", err)
		}
	})
	t.Run("server with a foreign certificate", func(t *testing.T) {
		srv := echoServer(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "srv"})
		srv.serverTLS = srv.serverTLS.Clone()
		srv.serverTLS.Certificates = foreignServer.Certificates
		cli := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "cli"})
		if _, err := ping(t, cli, srv.advertise.String()); !errors.Is(err, ErrAuth) {
			t.Fatalf("dial: got %v, want ErrAuth", err)
		}
	})
}

// TestTransportUpgradeMode: an upgrade node accepts both the TLS and the
// plaintext handshake, and dials a node of the version before TLS in
// plaintext after it closes on the TLS hello; an `on` node does not.
func TestTransportUpgradeMode(t *testing.T) {
	key := testKey(t)
	upgrade := echoServer(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "up", Mode: TLSUpgrade})
	legacy := echoServer(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "old", Legacy: true})

	oldCli := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "c1", Legacy: true})
	if conn, err := ping(t, oldCli, upgrade.advertise.String()); err != nil {
		t.Fatalf("old node to upgrade node: %v", err)
	} else if _, ok := conn.(*tls.Conn); ok {
		t.Fatal("old node to upgrade node: TLS?")
	}
	upCli := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "c2", Mode: TLSUpgrade})
	if conn, err := ping(t, upCli, upgrade.advertise.String()); err != nil {
		t.Fatalf("upgrade node to upgrade node: %v", err)
	} else if _, ok := conn.(*tls.Conn); !ok {
		t.Fatalf("upgrade node to upgrade node: stream is %T, want TLS", conn)
	}
	for i := range 2 { // the second dial goes plaintext first (plainPeers)
		if conn, err := ping(t, upCli, legacy.advertise.String()); err != nil {
			t.Fatalf("upgrade node to old node (dial %d): %v", i+1, err)
		} else if _, ok := conn.(*tls.Conn); ok {
			t.Fatal("upgrade node to old node: TLS?")
		}
	}
	onCli := clientTransport(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "c3"})
	if _, err := ping(t, onCli, legacy.advertise.String()); !errors.Is(err, errClosedOnTLSHello) {
		t.Fatalf("on node to old node: got %v, want errClosedOnTLSHello", err)
	}

	// An old node rolled to `on` (a new address here, remembered as the old
	// one was): the upgrade client
	// that remembered it as plaintext switches to TLS at once.
	legacy.Close()
	on := echoServer(t, transportConfig{ClusterKey: key, ClusterName: "prod", NodeID: "old"})
	upCli.setPlainPeer(on.advertise.String(), true)
	if conn, err := ping(t, upCli, on.advertise.String()); err != nil {
		t.Fatalf("upgrade node to a peer remembered as plaintext, now on: %v", err)
	} else if _, ok := conn.(*tls.Conn); !ok {
		t.Fatalf("stream is %T, want TLS", conn)
	}
}

// TestDerivedCAIsDeterministic: every node derives the same CA from the key
// and name, and another key or name gives another one.
func TestDerivedCAIsDeterministic(t *testing.T) {
	key := testKey(t)
	a, _, err := clusterCA(key, "prod")
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := clusterCA(key, "prod")
	if string(a.Raw) != string(b.Raw) {
		t.Fatal("two derivations of the CA differ")
	}
	c, _, _ := clusterCA(testKey(t), "prod")
	d, _, _ := clusterCA(key, "staging")
	if string(a.RawSubjectPublicKeyInfo) == string(c.RawSubjectPublicKeyInfo) || string(a.RawSubjectPublicKeyInfo) == string(d.RawSubjectPublicKeyInfo) {
		t.Fatal("another key or cluster name derived the same CA key")
	}
}
