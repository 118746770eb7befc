package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// MaxTargetCIDRs bounds a project's allowedTargetCidrs.
const MaxTargetCIDRs = 64

// putProjectTargets is PUT /v1/projects/{name}/allowed-target-cidrs, for a
// cluster-wide admin token only: {"allowedTargetCidrs": [...]} sets the
// special-purpose ranges (private, loopback, …) this project's deliveries
// may reach, within the nodes' --allowed-target-cidrs (the upper bound; see
// dispatch/targets.go); [] allows none; null returns to the nodes' ranges.
// A project-bound admin is refused: a tenant must not widen its own reach
// into internal networks. The answer is the project.
func (s *Server) putProjectTargets(c *gin.Context) error {
	var body map[string]json.RawMessage
	if err := s.decodeJSON(c, &body); err != nil {
		return err
	}
	raw, ok := body["allowedTargetCidrs"]
	if !ok || len(body) != 1 {
		return badRequest("allowedTargetCidrs", `give exactly {"allowedTargetCidrs": [...]} (null: use the nodes' --allowed-target-cidrs)`)
	}
	var list []string
	set := string(raw) != "null"
	if set {
		if err := json.Unmarshal(raw, &list); err != nil {
			return badRequest("allowedTargetCidrs", "allowedTargetCidrs must be an array of CIDR ranges such as 10.20.0.0/16, or null")
		}
		if len(list) > MaxTargetCIDRs {
			return badRequest("allowedTargetCidrs", fmt.Sprintf("at most %d ranges", MaxTargetCIDRs))
		}
		ps, err := dispatch.ParseTargetCIDRs(list)
		if err != nil {
			return badRequest("allowedTargetCidrs", fmt.Sprintf("not a CIDR range such as 10.20.0.0/16: %v", err))
		}
		list = list[:0]
		for _, p := range ps {
			list = append(list, p.String())
		}
	}
	name := c.Param("name")
	var out *fsm.Project
	err := retryOnConflict(func() error {
		cur, err := s.cfg.Cluster.FSM().State().Project(name)
		if err != nil {
			return err
		}
		p := *cur
		p.AllowedTargetCIDRs, p.TargetCIDRsSet = list, set
		p.UpdatedAt = fsm.MillisOf(s.cfg.Now())
		out = &p
		cmd, err := fsm.PutCommand(fsm.TableProjects, &p, fsm.PutOptions{IfIndex: cur.ModifyIndex})
		return s.apply(c, cmd, err)
	})
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, projectOut(out))
	return nil
}

// targetCIDRsOut is a project's allowedTargetCidrs as shown: null when the
// project uses the nodes' ranges.
func targetCIDRsOut(p *fsm.Project) *[]string {
	if !p.TargetCIDRsSet {
		return nil
	}
	l := append([]string{}, p.AllowedTargetCIDRs...)
	return &l
}
