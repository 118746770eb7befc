package api

import (
	"fmt"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// DefaultProject exists from bootstrap and cannot be deleted.
const DefaultProject = "default"

// Limits on names and descriptions, shared by every resource.
const (
	MaxNameLen        = 200
	MaxDescriptionLen = 2000
	maxProjectNameLen = 63
)

// Project names appear in URLs and in ?project=, so they are URL-safe slugs.
var projectNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

type projectJSON struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// AllowedTargetCidrs: null = the nodes' --allowed-target-cidrs
	// (project_targets.go).
	AllowedTargetCIDRs *[]string `json:"allowedTargetCidrs"`
	CreatedAt          time.Time `json:"createdAt"`
	UpdatedAt          time.Time `json:"updatedAt"`
}

func projectOut(p *fsm.Project) projectJSON {
	return projectJSON{Name: p.Name, Description: p.Description, AllowedTargetCIDRs: targetCIDRsOut(p),
		CreatedAt: p.CreatedAt.Time(), UpdatedAt: p.UpdatedAt.Time()}
}

type createProjectRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

func validateProjectName(field, name string) error {
	switch {
	case name == "":
		return badRequest(field, "name is required")
	case len(name) > maxProjectNameLen:
		return badRequest(field, fmt.Sprintf("name is longer than %d characters", maxProjectNameLen))
	case !projectNamePattern.MatchString(name):
		return badRequest(field, "name must be lowercase letters, digits and '-', starting and ending with a letter or digit")
	}
	return nil
}

func validateDescription(field, d string) error {
	if utf8.RuneCountInString(d) > MaxDescriptionLen {
		return badRequest(field, fmt.Sprintf("description is longer than %d characters", MaxDescriptionLen))
	}
	return nil
}

func (s *Server) createProject(c *gin.Context) error {
	var req createProjectRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if err := validateProjectName("name", req.Name); err != nil {
		return err
	}
	if err := validateDescription("description", req.Description); err != nil {
		return err
	}
	now := fsm.MillisOf(s.cfg.Now())
	cmd, err := fsm.ProjectCreateCommand(fsm.Project{Name: req.Name, Description: req.Description, CreatedAt: now, UpdatedAt: now})
	if err := s.apply(c, cmd, err); err != nil {
		return err
	}
	p, err := s.cfg.Cluster.FSM().State().Project(req.Name)
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, projectOut(p))
	return nil
}

func (s *Server) listProjects(c *gin.Context) error {
	limit, after, err := listParams(c)
	if err != nil {
		return err
	}
	st, err := s.state(c)
	if err != nil {
		return err
	}
	ps, next := st.Projects(after, limit)
	if tok := caller(c); tok != nil && tok.Project != "" {
		// A project-bound token sees its own project only.
		ps, next = nil, ""
		if p, err := st.Project(tok.Project); err == nil && after == "" {
			ps = []*fsm.Project{p}
		}
	}
	items := make([]projectJSON, 0, len(ps))
	for _, p := range ps {
		items = append(items, projectOut(p))
	}
	c.JSON(http.StatusOK, listBody(items, next))
	return nil
}

func (s *Server) getProject(c *gin.Context) error {
	st, err := s.state(c)
	if err != nil {
		return err
	}
	p, err := st.Project(c.Param("name"))
	if tok := caller(c); err == nil && tok != nil && tok.Project != "" && tok.Project != p.Name {
		err = &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("project %q not found", p.Name)}
	}
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, projectOut(p))
	return nil
}

func (s *Server) deleteProject(c *gin.Context) error {
	cmd, err := fsm.ProjectDeleteCommand(c.Param("name"))
	if err := s.apply(c, cmd, err); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}
