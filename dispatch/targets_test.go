package dispatch

import (
	"net/netip"
	"slices"
	"testing"
)

func TestForProjectCutsRangesToTheNodes(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix {
		out := []netip.Prefix{}
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	node := TargetPolicy{Allowed: pfx("10.20.0.0/16", "192.168.1.0/24"), WithholdInternalBodies: true}
	for _, tc := range []struct {
		name    string
		node    TargetPolicy
		project []netip.Prefix
		want    []netip.Prefix
	}{
		{"none", node, pfx(), pfx()},
		{"inside", node, pfx("10.20.3.0/24"), pfx("10.20.3.0/24")},
		{"wider is cut to the node's", node, pfx("10.0.0.0/8"), pfx("10.20.0.0/16")},
		{"outside is dropped", node, pfx("172.16.0.0/12", "10.21.0.0/16"), pfx()},
		{"several", node, pfx("0.0.0.0/0"), pfx("10.20.0.0/16", "192.168.1.0/24")},
		{"other family", node, pfx("fd00::/8"), pfx()},
		{"node allows everything", TargetPolicy{AllowPrivate: true}, pfx("fd00::/8"), pfx("fd00::/8")},
	} {
		got := tc.node.ForProject(tc.project)
		if !slices.Equal(got.Allowed, tc.want) && !(len(got.Allowed) == 0 && len(tc.want) == 0) {
			t.Errorf("%s: %v, want %v", tc.name, got.Allowed, tc.want)
		}
		if got.AllowPrivate || got.WithholdInternalBodies {
			t.Errorf("%s: %+v: a project policy never turns the check off and keeps bodies", tc.name, got)
		}
	}
	// The cut policy refuses what the project was not given.
	p := node.ForProject(pfx("10.20.3.0/24"))
	if p.Check(netip.MustParseAddr("10.20.3.9")) != nil || p.Check(netip.MustParseAddr("10.20.4.9")) == nil ||
		p.Check(netip.MustParseAddr("192.168.1.5")) == nil || p.Check(netip.MustParseAddr("8.8.8.8")) != nil {
		t.Error("the project policy does not check what it says")
	}
}
