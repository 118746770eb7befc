package dispatch

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/chime-sched/chime/fsm"
)

func TestCheckRefusesSpecialRanges(t *testing.T) {
	tests := []struct{ ip, reason string }{
		// IPv4
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "this network"},
		{"10.0.0.1", "private"},
		{"10.255.255.255", "private"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.255", "CGNAT"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"169.254.169.254", "metadata"},
		{"169.254.1.1", "link-local"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.0.0.8", "IETF"},
		{"192.0.2.10", "documentation"},
		{"192.88.99.1", "6to4 relay"},
		{"192.168.1.1", "private"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "broadcast"},
		// IPv6
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::7f00:1", "IPv4-compatible"},
		{"fc00::1", "unique local"},
		{"fd12:3456::1", "unique local"},
		{"fd00:ec2::254", "unique local"}, // AWS IPv6 metadata
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"febf::1", "link-local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"100::1", "discard"},
		{"2001::1", "Teredo"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"2001:2::1", "benchmarking"},
		{"2001:10::1", "ORCHID"},
		{"2001:20::1", "ORCHIDv2"},
		{"2001:db8::1", "documentation"},
		{"3fff::1", "documentation"},
		{"64:ff9b:1::1", "local-use NAT64"},
		{"5f00::1", "reserved"},
		{"4000::1", "reserved"},
		// IPv4 embedded in IPv6
		{"::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, a loopback"},
		{"::ffff:10.1.2.3", "IPv4-mapped form of 10.1.2.3, a private"},
		{"::ffff:169.254.169.254", "metadata"},
		{"::ffff:0.0.0.0", "unspecified"},
		{"64:ff9b::7f00:1", "NAT64 form of 127.0.0.1, a loopback"},
		{"64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254"},
		{"64:ff9b::c0a8:101", "NAT64 form of 192.168.1.1, a private"},
		{"2002:7f00:1::1", "6to4 form of 127.0.0.1"},
		{"2002:a00:1::", "6to4 form of 10.0.0.1"},
		{"2002:a9fe:a9fe::1", "6to4 form of 169.254.169.254"},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			err := TargetPolicy{}.Check(netip.MustParseAddr(tc.ip))
			re, ok := errors.AsType[*RefusedError](err)
			if !ok {
				t.Fatalf("allowed, want refused (%s)", tc.reason)
			}
			if !strings.Contains(err.Error(), tc.reason) || !strings.HasPrefix(err.Error(), "refused: ") {
				t.Fatalf("error %q does not say %q", err, tc.reason)
			}
			if re.Addr.Zone() != "" {
				t.Fatalf("zone kept in %v", re.Addr)
			}
			// AllowPrivate lets everything through.
			if err := (TargetPolicy{AllowPrivate: true}).Check(netip.MustParseAddr(tc.ip)); err != nil {
				t.Fatalf("AllowPrivate: %v", err)
			}
		})
	}
	if err := (TargetPolicy{AllowPrivate: true}).Check(netip.Addr{}); err == nil {
		t.Fatal("the zero Addr is allowed")
	}
	want := "refused: 127.0.0.1 is a loopback address"
	if err := (TargetPolicy{}).Check(netip.MustParseAddr("127.0.0.1")); err.Error() != want {
		t.Fatalf("%q, want %q", err, want)
	}
}

func TestCheckAllowsPublic(t *testing.T) {
	for _, ip := range []string{
		"8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.15.255.255",
		"172.32.0.1", "192.167.255.255", "192.169.0.1", "198.17.255.255", "198.20.0.1", "223.255.255.255",
		"2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "2001:4860:4860::8888",
		"::ffff:8.8.8.8",   // mapped public
		"64:ff9b::808:808", // NAT64 of 8.8.8.8
		"2002:808:808::1",  // 6to4 of 8.8.8.8
		"2001:200::1",      // outside 2001::/23 specials
		"2001:4:112::1",    // AS112, globally reachable
	} {
		if err := (TargetPolicy{}).Check(netip.MustParseAddr(ip)); err != nil {
			t.Errorf("%s: %v", ip, err)
		}
	}
}

func TestCheckAllowedPrefixes(t *testing.T) {
	p := TargetPolicy{Allowed: []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("fd00:1::/32"),
		netip.MustParsePrefix("127.0.0.1/32"),
	}}
	tests := []struct {
		ip      string
		allowed bool
	}{
		{"10.1.2.3", true},
		{"::ffff:10.1.2.3", true},
		{"64:ff9b::a01:203", true}, // NAT64 of 10.1.2.3
		{"10.2.0.1", false},
		{"fd00:1::5", true},
		{"fd00:2::5", false},
		{"127.0.0.1", true},
		{"127.0.0.2", false},
		{"::1", false},
		{"169.254.169.254", false},
	}
	for _, tc := range tests {
		err := p.Check(netip.MustParseAddr(tc.ip))
		if (err == nil) != tc.allowed {
			t.Errorf("%s: %v, want allowed=%v", tc.ip, err, tc.allowed)
		}
	}
}

func TestDialContextChecksDialledAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ctx := context.Background()

	for _, target := range []string{addr, net.JoinHostPort("localhost", port)} {
		_, err = TargetPolicy{}.DialContext(nil)(ctx, "tcp", target)
		if _, ok := errors.AsType[*RefusedError](err); !ok {
			t.Fatalf("%s: got %v, want a *RefusedError", target, err)
		}
	}

	// Allowed: connects, and the caller's own Control still runs.
	called := false
	d := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error { called = true; return nil }}
	allow := TargetPolicy{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	c, err := allow.DialContext(d)(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !called {
		t.Fatal("the dialer's own Control was not called")
	}
	if d.ControlContext != nil {
		t.Fatal("the caller's dialer was modified")
	}
}

func TestValidateURL(t *testing.T) {
	good := []string{
		"http://example.com",
		"https://example.com/hook?x=1",
		"HTTPS://Example.COM:8443/a/b",
		"http://127.0.0.1:8080/", // literal IPs are checked at dial time
		"http://[2001:db8::1]:80/",
	}
	for _, raw := range good {
		if _, err := ValidateURL(raw); err != nil {
			t.Errorf("%q: %v", raw, err)
		}
	}
	bad := []string{
		"",
		"example.com/hook",
		"//example.com/hook",
		"ftp://example.com/",
		"file:///etc/passwd",
		"javascript:alert(1)",
		"http:example.com",
		"http://",
		"http:///path",
		"http://:8080/",
		"http://user:pass@example.com/",
		"http://user@example.com/",
		"http://example.com:0/",
		"http://example.com:65536/",
		"http://example.com:/",
		"http://exa mple.com/",
		"http://example.com/\x7f",
		"https://example.com/" + strings.Repeat("a", MaxURLLength),
	}
	for _, raw := range bad {
		u, err := ValidateURL(raw)
		fe, ok := errors.AsType[*fsm.Error](err)
		if u != nil || !ok || fe.Field != "url" || !errors.Is(err, fsm.ErrInvalid) {
			t.Errorf("%q: got %v, %v; want an invalid error on url", raw, u, err)
		}
	}
}
