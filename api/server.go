package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// Cluster is what the API needs from the replicated core.
type Cluster interface {
	NodeID() string
	FSM() *fsm.FSM
	Apply(ctx context.Context, cmd []byte) (*fsm.Result, error)
	ReadBarrier(ctx context.Context) error
	Readiness() (bool, string)
	Status() cluster.Status
	TransferLeadership(ctx context.Context, to string) error
	RemovePeer(ctx context.Context, id string) error
	Restore(ctx context.Context, r io.Reader) error
}

// Config configures the HTTP API.
type Config struct {
	Cluster Cluster
	Logger  *slog.Logger
	Version string
	// MaxBodyBytes bounds JSON request bodies (default 1 MiB).
	MaxBodyBytes int64
	// Now is the clock; tests inject one.
	Now func() time.Time
}

// Server is the public HTTP API of one node.
type Server struct {
	cfg    Config
	logger *slog.Logger
	engine *gin.Engine
}

func init() { gin.SetMode(gin.ReleaseMode) }

// New builds the API with every route registered.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, logger: cfg.Logger}
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.ContextWithFallback = true
	e.Use(s.recover, s.accessLog)
	e.NoRoute(func(c *gin.Context) {
		fail(c, s.logger, &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("no route %s %s", c.Request.Method, c.Request.URL.Path)})
	})
	e.NoMethod(func(c *gin.Context) {
		fail(c, s.logger, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: fmt.Sprintf("%s is not allowed on %s", c.Request.Method, c.Request.URL.Path)})
	})
	v1 := e.Group("/v1")
	v1.GET("/health", s.health)
	v1.GET("/ready", s.ready)
	v1.GET("/openapi.json", s.openapi)

	v1.GET("/cluster/status", s.clusterStatus)
	v1.POST("/cluster/transfer-leadership", s.transferLeadership)
	v1.DELETE("/cluster/peers/:id", s.removePeer)
	v1.GET("/cluster/snapshot", s.snapshot)
	v1.POST("/cluster/restore", s.restore)

	v1.POST("/projects", s.createProject)
	v1.GET("/projects", s.listProjects)
	v1.GET("/projects/:name", s.getProject)
	v1.DELETE("/projects/:name", s.deleteProject)
	s.engine = e
	return s
}

// Handler is the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.engine }

// Routes lists every registered route as "METHOD /path" (for the OpenAPI
// coverage test).
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.engine.Routes() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("handler panic", "method", c.Request.Method, "path", c.Request.URL.Path, "panic", fmt.Sprint(v))
			if !c.Writer.Written() {
				fail(c, s.logger, &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"})
			}
		}
	}()
	c.Next()
}

func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.logger.Debug("http request", "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "duration_ms", time.Since(start).Milliseconds())
}

// state returns the local state to read from; with ?consistent=true it
// first catches up with the leader's commit index.
func (s *Server) state(c *gin.Context) (*fsm.State, error) {
	if c.Query("consistent") == "true" {
		if err := s.cfg.Cluster.ReadBarrier(c.Request.Context()); err != nil {
			return nil, err
		}
	}
	return s.cfg.Cluster.FSM().State(), nil
}

// apply commits one command and returns its domain error, if any.
func (s *Server) apply(c *gin.Context, cmd []byte, buildErr error) error {
	if buildErr != nil {
		return buildErr
	}
	_, err := s.cfg.Cluster.Apply(c.Request.Context(), cmd)
	return err
}

// BootstrapHook is the leader hook that makes the initial state exist: the
// `default` project. It is idempotent and runs on every leadership gain.
type BootstrapHook struct {
	Cluster Cluster
	Now     func() time.Time
	Logger  *slog.Logger
}

// EstablishLeadership applies the bootstrap command unless the state already
// has what it creates.
func (h *BootstrapHook) EstablishLeadership(ctx context.Context) error {
	if _, err := h.Cluster.FSM().State().Project(DefaultProject); err == nil {
		return nil
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	cmd, err := fsm.Encode(fsm.CmdBootstrap, fsm.Bootstrap{At: fsm.MillisOf(now())})
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := h.Cluster.Apply(actx, cmd); err != nil {
		return fmt.Errorf("bootstrap state: %w", err)
	}
	if h.Logger != nil {
		h.Logger.Info("initial state created", "project", DefaultProject)
	}
	return nil
}

// RevokeLeadership has nothing to stop.
func (h *BootstrapHook) RevokeLeadership() {}
