package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/chime-sched/chime/fsm"
)

// MaxURLLength bounds a target URL.
const MaxURLLength = 2048

// TargetPolicy says which IP addresses deliveries may connect to. The zero
// value refuses every special-purpose range (see Check).
type TargetPolicy struct {
	// AllowPrivate turns the check off: every address is allowed
	// (--allow-private-targets; `make run` uses it for local receivers).
	AllowPrivate bool
	// Allowed lists prefixes that are allowed even though they lie in a
	// refused range (--allowed-target-cidrs), e.g. 10.20.0.0/16 for an
	// internal receiver. An IPv4 prefix also allows that address's
	// IPv4-mapped, NAT64 and 6to4 forms.
	Allowed []netip.Prefix
	// WithholdInternalBodies: the response of a call that reached a
	// special-purpose address (one only Allowed admits) is not summarised
	// into the attempt, so a token that can point a target at an allowed
	// internal range learns status and timing, not content. The node's
	// policy sets it (cmd); a project's own admin-set ranges
	// (ForProject) do not: the admin granted that project those receivers.
	WithholdInternalBodies bool
}

// RefusedError is the error of a refused address. Its text is what an
// attempt records, e.g. "refused: 127.0.0.1 is a loopback address".
type RefusedError struct {
	Addr   netip.Addr
	Reason string // "a loopback address", …
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused: %s is %s", e.Addr, e.Reason)
}

type special struct {
	prefix netip.Prefix
	reason string
}

func ranges(rs ...string) []special {
	out := make([]special, 0, len(rs)/2)
	for i := 0; i < len(rs); i += 2 {
		out = append(out, special{netip.MustParsePrefix(rs[i]), rs[i+1]})
	}
	return out
}

// Refused IPv4 ranges (IANA IPv4 Special-Purpose Address Registry and the
// RFC 1918, 6598, 5737, 2544, 3927 and 1112 ranges), most specific first.
var special4 = ranges(
	"0.0.0.0/32", "an unspecified address",
	"0.0.0.0/8", `a "this network" address`,
	"10.0.0.0/8", "a private address",
	"100.64.0.0/10", "a shared (CGNAT) address",
	"127.0.0.0/8", "a loopback address",
	"169.254.169.254/32", "a link-local cloud metadata address",
	"169.254.0.0/16", "a link-local address",
	"172.16.0.0/12", "a private address",
	"192.0.0.0/24", "an IETF protocol assignment address",
	"192.0.2.0/24", "a documentation address",
	"192.88.99.0/24", "a 6to4 relay anycast address",
	"192.168.0.0/16", "a private address",
	"198.18.0.0/15", "a benchmarking address",
	"198.51.100.0/24", "a documentation address",
	"203.0.113.0/24", "a documentation address",
	"224.0.0.0/4", "a multicast address",
	"255.255.255.255/32", "a broadcast address",
	"240.0.0.0/4", "a reserved address",
)

// Refused IPv6 ranges (IANA IPv6 Special-Purpose Address Registry). The
// IPv4-mapped, NAT64 and 6to4 forms are not here: Check judges the IPv4
// address they embed. Anything outside 2000::/3 (global unicast) that is not
// listed is refused as reserved, so future special ranges fail closed.
var special6 = ranges(
	"::/128", "an unspecified address",
	"::1/128", "a loopback address",
	"::/96", "a deprecated IPv4-compatible address",
	"64:ff9b:1::/48", "a local-use NAT64 address",
	"100::/64", "a discard-only address",
	"2001::/32", "a Teredo address",
	"2001:2::/48", "a benchmarking address",
	"2001:10::/28", "an ORCHID address",
	"2001:20::/28", "an ORCHIDv2 address",
	"2001:db8::/32", "a documentation address",
	"3fff::/20", "a documentation address",
	"fc00::/7", "a unique local address",
	"fe80::/10", "a link-local address",
	"fec0::/10", "a site-local address",
	"ff00::/8", "a multicast address",
)

var (
	nat64Prefix     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFourPrefix = netip.MustParsePrefix("2002::/16")
	globalUnicast6  = netip.MustParsePrefix("2000::/3")
)

// Check returns nil when ip may be dialled and a *RefusedError otherwise. It
// refuses loopback, private (RFC 1918), link-local (the cloud metadata
// address 169.254.169.254 included), CGNAT, multicast, broadcast, unspecified,
// "this network", benchmarking, documentation and reserved IPv4 addresses;
// and the IPv6 unspecified, loopback, IPv4-compatible, unique local,
// link-local, site-local, multicast, discard, Teredo, ORCHID, documentation
// and non-global-unicast addresses. IPv4-mapped (::ffff:0:0/96), NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) addresses are judged by the IPv4
// address they embed. An address inside an Allowed prefix, or any address
// when AllowPrivate is set, is allowed. A zone (fe80::1%eth0) is ignored.
func (p TargetPolicy) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return &RefusedError{Addr: ip, Reason: "not a valid IP address"}
	}
	if p.AllowPrivate {
		return nil
	}
	ip = ip.WithZone("")
	if reason := p.refusal(ip); reason != "" {
		return &RefusedError{Addr: ip, Reason: reason}
	}
	return nil
}

// refusal returns why ip is refused, or "" when it is allowed.
func (p TargetPolicy) refusal(ip netip.Addr) string {
	for _, a := range p.Allowed {
		if a.Contains(ip) {
			return ""
		}
	}
	if ip.Is4() {
		for _, s := range special4 {
			if s.prefix.Contains(ip) {
				return s.reason
			}
		}
		return ""
	}
	if form, v4, ok := embedded4(ip); ok {
		if r := p.refusal(v4); r != "" {
			return fmt.Sprintf("the %s form of %s, %s", form, v4, r)
		}
		return ""
	}
	for _, s := range special6 {
		if s.prefix.Contains(ip) {
			return s.reason
		}
	}
	if !globalUnicast6.Contains(ip) {
		return "a reserved (not global unicast) address"
	}
	return ""
}

// embedded4 returns the IPv4 address carried by an IPv4-mapped, NAT64
// (RFC 6052 well-known prefix) or 6to4 (RFC 3056) address.
func embedded4(ip netip.Addr) (form string, v4 netip.Addr, ok bool) {
	b := ip.As16()
	switch {
	case ip.Is4In6():
		return "IPv4-mapped", ip.Unmap(), true
	case nat64Prefix.Contains(ip):
		return "NAT64", netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFourPrefix.Contains(ip):
		return "6to4", netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return "", netip.Addr{}, false
}

// DialContext returns a DialContext for http.Transport that refuses, at
// connect time, every address Check refuses. dialer is copied, not modified
// (nil means a zero net.Dialer); its own Control or ControlContext still runs
// after the check.
//
// The check is a net.Dialer ControlContext hook rather than "resolve, check,
// then dial": the hook runs after Go's resolver, on the socket about to
// connect, with the literal IP and port the kernel will connect to, for every
// address tried (each A/AAAA record, both Happy Eyeballs races, fallbacks). So
// there is no second lookup an attacker could answer differently (DNS
// rebinding), no host spelling (decimal 2130706433, /etc/hosts names,
// "localhost") that escapes it, and Go keeps its own dual-stack logic. An
// address that is refused makes the dialer move on to the next one; when all
// are refused the error wraps a *RefusedError. An address the hook cannot
// parse is refused (fail closed), and only TCP is dialled.
func (p TargetPolicy) DialContext(dialer *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{}
	if dialer != nil {
		d = *dialer
	}
	inner, innerCtx := d.Control, d.ControlContext
	d.Control = nil
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		switch network {
		case "tcp", "tcp4", "tcp6":
		default:
			return fmt.Errorf("refused: network %q is not TCP", network)
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("refused: cannot parse dialled address %q: %v", address, err)
		}
		if err := p.Check(ap.Addr()); err != nil {
			return err
		}
		switch {
		case innerCtx != nil:
			return innerCtx(ctx, network, address, c)
		case inner != nil:
			return inner(network, address, c)
		}
		return nil
	}
	return d.DialContext
}

// ValidateURL checks a target URL as the API receives it: at most 2048
// bytes, absolute http or https, a host, no user:password@, a valid port if
// any. Errors are *fsm.Error (ErrInvalid) with Field "url". It does not
// resolve the host: the address check happens at dial time, on the IP
// actually dialled.
func ValidateURL(raw string) (*url.URL, error) {
	bad := func(format string, args ...any) (*url.URL, error) {
		return nil, &fsm.Error{Kind: fsm.ErrInvalid, Code: fsm.CodeInvalid, Field: "url",
			Message: "url " + fmt.Sprintf(format, args...)}
	}
	if raw == "" {
		return bad("is required")
	}
	if len(raw) > MaxURLLength {
		return bad("must be at most %d bytes, not %d", MaxURLLength, len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return bad("is malformed: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("must use http or https")
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return bad("must have a host (http://host/…)")
	}
	if u.User != nil {
		return bad("must not contain a user name or password")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("has an invalid port %q", port)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("has an empty port")
	}
	return u, nil
}
