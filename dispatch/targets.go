package dispatch

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/chime-sched/chime/fsm"
)

// Per-project target ranges. The node's policy (--allow-private-targets,
// --allowed-target-cidrs) is the upper bound set by whoever runs the
// machines and knows the network; an admin narrows it per project
// (fsm.Project.AllowedTargetCIDRs), so that a tenant's write token cannot
// reach an internal range granted for another tenant's receivers. A project
// that sets no ranges keeps the node's policy, so existing deployments keep
// delivering after an upgrade; docs/operations.md says to set ranges (or an
// empty list) on every project of a shared cluster.

// ForProject returns the policy of a project whose admin-set ranges are
// ranges: each range cut to what p allows (every range when p.AllowPrivate),
// and nothing else special-purpose. An empty ranges allows no special range.
func (p TargetPolicy) ForProject(ranges []netip.Prefix) TargetPolicy {
	out := TargetPolicy{}
	for _, q := range ranges {
		if p.AllowPrivate {
			out.Allowed = append(out.Allowed, q)
			continue
		}
		for _, n := range p.Allowed {
			switch {
			case n.Bits() <= q.Bits() && n.Contains(q.Addr()):
				out.Allowed = append(out.Allowed, q)
			case q.Bits() < n.Bits() && q.Contains(n.Addr()):
				out.Allowed = append(out.Allowed, n)
			}
		}
	}
	return out
}

// key identifies the policy, for the Sender's per-policy transports.
func (p TargetPolicy) key() string {
	if p.AllowPrivate {
		return "*"
	}
	parts := make([]string, len(p.Allowed))
	for i, a := range p.Allowed {
		parts[i] = a.String()
	}
	slices.Sort(parts)
	return strings.Join(slices.Compact(parts), ",")
}

// ParseTargetCIDRs parses a project's stored ranges; it is also what the
// API validates them with. Each must be a CIDR prefix (masked on output).
func ParseTargetCIDRs(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// projectPolicy is a project's policy as last computed, with the project
// version it was computed from.
type projectPolicy struct {
	modify uint64
	policy *TargetPolicy
}

// policyFor returns the policy of project's deliveries: nil for the
// sender's own (the project sets no ranges, or is gone). Ranges that do not
// parse are left out (fail closed; the API refuses them). Called with w.mu
// held.
func (w *Dispatcher) policyFor(st *fsm.State, project string) *TargetPolicy {
	pr, err := st.Project(project)
	if err != nil || !pr.TargetCIDRsSet {
		return nil
	}
	if c, ok := w.policies[project]; ok && c.modify == pr.ModifyIndex {
		return c.policy
	}
	var ranges []netip.Prefix
	for _, s := range pr.AllowedTargetCIDRs {
		if p, err := ParseTargetCIDRs([]string{s}); err == nil {
			ranges = append(ranges, p...)
		}
	}
	pol := w.cfg.Sender.policy.ForProject(ranges)
	if len(w.policies) > 4096 {
		clear(w.policies)
	}
	w.policies[project] = projectPolicy{modify: pr.ModifyIndex, policy: &pol}
	return &pol
}
