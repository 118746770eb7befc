// Package loopback finds free loopback addresses for tests that run nodes
// in-process. It imports nothing of Chime's, so the internal tests of every
// package (api, cluster, dispatch) can use it without an import cycle.
package loopback

import (
	"net"
	"net/netip"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address whose port is free for both TCP and
// UDP: memberlist gossips over both on one port.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if u, err := net.ListenPacket("udp", addr); err == nil {
			u.Close()
			return addr
		}
	}
	tb.Fatal("no loopback port free for both TCP and UDP")
	return ""
}

// FreePort is FreeAddr's port.
func FreePort(tb testing.TB) int {
	tb.Helper()
	return int(netip.MustParseAddrPort(FreeAddr(tb)).Port())
}
