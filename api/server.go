package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
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
	// Restore verifies the backup's signature (see cluster/backup.go) and
	// replaces the whole state with it.
	Restore(ctx context.Context, r io.Reader, opts cluster.RestoreOptions) error
	// WriteBackup streams a signed backup of st.
	WriteBackup(w io.Writer, st *fsm.State) error
	// DeliveryNodes lists the nodes a new or re-queued delivery may be placed
	// on (live followers, else the leader), sorted; the API places the
	// deliveries of a manual trigger, a retry or a release itself, because
	// every decision that is not deterministic is made before Apply.
	DeliveryNodes() []string
	// AllServersAtLeast reports whether every server in the Raft
	// configuration runs at cluster feature level level or above; the
	// limits row (quota enforcement) waits for cluster.LevelQuotas.
	AllServersAtLeast(level int) bool
}

// Config configures the HTTP API.
type Config struct {
	Cluster Cluster
	Logger  *slog.Logger
	Version string
	// MaxBodyBytes bounds JSON request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxDataBytes bounds a job's payload and an event's data (default 256 KiB).
	MaxDataBytes int64
	// BodyReadGrace and MinBodyRate bound how slowly a request body may
	// arrive: it must keep up with MinBodyRate bytes per second after the
	// first BodyReadGrace (defaults 10 s and 16 KiB/s; see timedBody).
	BodyReadGrace time.Duration
	MinBodyRate   int64
	// StreamsPerToken and StreamsPerProject bound the /v1/stream
	// connections one token, and one project, may hold open on this node
	// (defaults 16 and 64, below the node's fsm.MaxSubscribers).
	StreamsPerToken   int
	StreamsPerProject int
	// Schedule configures schedule validation (default time zone, minimum interval).
	Schedule scheduler.Config
	// Now is the clock; tests inject one.
	Now func() time.Time
}

// Server is the public HTTP API of one node.
type Server struct {
	cfg    Config
	logger *slog.Logger
	engine *gin.Engine

	closing   chan struct{} // closed by CloseStreams
	closeOnce sync.Once
	streams   streamSlots
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
	if cfg.MaxDataBytes == 0 {
		cfg.MaxDataBytes = DefaultMaxDataBytes
	}
	if cfg.BodyReadGrace == 0 {
		cfg.BodyReadGrace = DefaultBodyReadGrace
	}
	if cfg.MinBodyRate == 0 {
		cfg.MinBodyRate = DefaultMinBodyRate
	}
	if cfg.StreamsPerToken == 0 {
		cfg.StreamsPerToken = DefaultStreamsPerToken
	}
	if cfg.StreamsPerProject == 0 {
		cfg.StreamsPerProject = DefaultStreamsPerProject
	}
	if cfg.Schedule == (scheduler.Config{}) {
		cfg.Schedule = scheduler.DefaultConfig()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, logger: cfg.Logger, closing: make(chan struct{})}
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.ContextWithFallback = true
	e.Use(s.recover, s.accessLog)
	e.NoRoute(s.handle(func(c *gin.Context) error {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("no route %s %s", c.Request.Method, c.Request.URL.Path)}
	}))
	e.NoMethod(s.handle(func(c *gin.Context) error {
		return &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: fmt.Sprintf("%s is not allowed on %s", c.Request.Method, c.Request.URL.Path)}
	}))
	v1 := e.Group("/v1")
	v1.GET("/health", s.handle(s.health))
	v1.GET("/ready", s.handle(s.ready))
	v1.GET("/openapi.json", s.handle(s.openapi))
	// Cluster status is open like health: it shows node ids, addresses and
	// Raft positions, no data, and it is most needed when a node cannot
	// check tokens (it has not joined, or lost the leader).
	v1.GET("/cluster/status", s.handle(s.clusterStatus))

	// Every route below needs a token; the middleware names the least scope.
	read, write, admin := s.auth(ScopeRead), s.auth(ScopeWrite), s.auth(ScopeAdmin)
	clusterAdmin := s.authClusterWide(ScopeAdmin)
	v1.POST("/cluster/transfer-leadership", clusterAdmin, s.handle(s.transferLeadership))
	v1.DELETE("/cluster/peers/:id", clusterAdmin, s.handle(s.removePeer))
	v1.GET("/cluster/snapshot", clusterAdmin, s.handle(s.snapshot))
	v1.POST("/cluster/restore", clusterAdmin, s.handle(s.restore))

	v1.POST("/tokens", admin, s.idempotent, s.handle(s.createToken))
	v1.GET("/tokens", admin, s.handle(s.listTokens))
	v1.DELETE("/tokens/:id", admin, s.handle(s.revokeToken))

	v1.POST("/projects", clusterAdmin, s.idempotent, s.handle(s.createProject))
	v1.GET("/projects", read, s.handle(s.listProjects))
	v1.GET("/projects/:name", read, s.handle(s.getProject))
	v1.DELETE("/projects/:name", clusterAdmin, s.handle(s.deleteProject))
	v1.GET("/projects/:name/limits", read, s.handle(s.getProjectLimits))
	v1.PATCH("/projects/:name/limits", clusterAdmin, s.handle(s.patchProjectLimits))
	v1.DELETE("/projects/:name/limits", clusterAdmin, s.handle(s.deleteProjectLimits))
	v1.GET("/limits", read, s.handle(s.getClusterLimits))
	v1.PATCH("/limits", clusterAdmin, s.handle(s.patchClusterLimits))
	v1.PUT("/projects/:name/allowed-target-cidrs", clusterAdmin, s.handle(s.putProjectTargets))

	v1.POST("/jobs", write, s.idempotent, s.handle(s.createJob))
	v1.GET("/jobs", read, s.handle(s.listJobs))
	v1.GET("/jobs/:id", read, s.handle(s.getJob))
	v1.POST("/jobs/:id/trigger", write, s.idempotent, s.handle(s.triggerJob))
	v1.POST("/jobs/:id/pause", write, s.idempotent, s.handle(s.pauseJob))
	v1.POST("/jobs/:id/resume", write, s.idempotent, s.handle(s.resumeJob))
	v1.POST("/jobs/:id/archive", write, s.idempotent, s.handle(s.archiveJob))
	v1.DELETE("/jobs/:id", write, s.handle(s.cancelJob))
	v1.PATCH("/jobs/:id", write, s.handle(s.patchJob))
	v1.POST("/schedules/preview", read, s.handle(s.previewSchedule))
	v1.GET("/jobs/:id/occurrences", read, s.handle(s.listJobOccurrences))

	v1.GET("/occurrences/:id", read, s.handle(s.getOccurrence))
	v1.POST("/occurrences/:id/complete", write, s.idempotent, s.handle(s.completeOccurrence))
	v1.POST("/occurrences/:id/skip", write, s.idempotent, s.handle(s.skipOccurrence))

	v1.POST("/endpoints", write, s.idempotent, s.handle(s.createEndpoint))
	v1.GET("/endpoints", read, s.handle(s.listEndpoints))
	v1.GET("/endpoints/:id", read, s.handle(s.getEndpoint))
	v1.POST("/endpoints/:id/enable", write, s.idempotent, s.handle(s.enableEndpoint))
	v1.POST("/endpoints/:id/disable", write, s.idempotent, s.handle(s.disableEndpoint))
	v1.PATCH("/endpoints/:id", write, s.handle(s.patchEndpoint))
	v1.DELETE("/endpoints/:id", write, s.handle(s.deleteEndpoint))
	v1.POST("/endpoints/:id/rotate-secret", write, s.idempotent, s.handle(s.rotateSecret))
	v1.POST("/endpoints/:id/test", write, s.idempotent, s.handle(s.testEndpoint))
	v1.GET("/endpoints/:id/deliveries", read, s.handle(s.listEndpointDeliveries))

	v1.POST("/events", write, s.idempotent, s.handle(s.publishEvent))
	v1.GET("/stream", read, s.handle(s.stream))
	v1.GET("/events/:id", read, s.handle(s.getEvent))

	v1.GET("/deliveries", read, s.handle(s.listDeliveries))
	v1.POST("/deliveries/replay", write, s.idempotent, s.handle(s.replayDeliveries))
	v1.GET("/deliveries/:id", read, s.handle(s.getDelivery))
	v1.POST("/deliveries/:id/retry", write, s.idempotent, s.handle(s.retryDelivery))
	v1.POST("/deliveries/:id/cancel", write, s.idempotent, s.handle(s.cancelDelivery))
	s.engine = e
	return s
}

// handlerFunc is a route's handler: it writes the response itself, or returns
// the error to answer with instead. Once it has written anything, it must
// return nil.
type handlerFunc func(c *gin.Context) error

// handle adapts h to gin. Every error a handler returns is answered by fail,
// so the mapping in errors.go stays the only place errors become responses.
func (s *Server) handle(h handlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			fail(c, s.logger, err)
		}
	}
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
	_, err := s.commit(c, cmd)
	return err
}

// commit is every handler write: guarded by the request's Idempotency-Key
// claim (guardIdempotent) and refused with 503 if a restore overtook it.
func (s *Server) commit(c *gin.Context, cmd []byte) (*fsm.Result, error) {
	cmd, settle, err := s.guardIdempotent(c, cmd)
	if err != nil {
		return nil, err
	}
	restores := s.cfg.Cluster.FSM().Restores()
	res, err := settle(s.cfg.Cluster.Apply(c.Request.Context(), cmd))
	if err != nil {
		return nil, err
	}
	return res, s.notRestored(restores)
}

// notRestored fails with 503 if a snapshot restore has replaced the state
// since restores was read: the handler's read-back would come from the
// restored state (and say "not found" about what it just wrote).
func (s *Server) notRestored(restores uint64) error {
	if s.cfg.Cluster.FSM().Restores() == restores {
		return nil
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: "restored_during_request",
		Message: "the cluster's state was replaced by a snapshot restore while this request ran; check whether the change is in the restored state before sending it again"}
}

// maxConflictRetries bounds how often a read-modify-write is rebuilt from
// fresh state after the leader refused it because the record changed in
// between (a poller tick, a delivery result, another API call). Three is
// plenty: each retry reads the state the conflicting write left behind.
const maxConflictRetries = 3

// retryOnConflict runs write until it succeeds, fails with anything but a
// conflict, or has been retried maxConflictRetries times. write must rebuild
// its command from fresh state on every run.
func retryOnConflict(write func() error) error {
	for retries := 0; ; retries++ {
		err := write()
		if err == nil || !errors.Is(err, fsm.ErrConflict) || retries == maxConflictRetries {
			return err
		}
	}
}

// applyItems commits a command that has one result per item (a fire, a
// delivery or occurrence control) and returns each item's domain error, nil
// where the item succeeded. err is for the command as a whole: the cluster
// could not commit it, or it did not yield want results.
func (s *Server) applyItems(c *gin.Context, cmd []byte, buildErr error, want int) ([]error, error) {
	if buildErr != nil {
		return nil, buildErr
	}
	res, err := s.commit(c, cmd)
	if err != nil {
		return nil, err
	}
	if len(res.Results) != want {
		return nil, fmt.Errorf("command at index %d returned %d results for %d items", res.Index, len(res.Results), want)
	}
	out := make([]error, want)
	for i, r := range res.Results {
		if r != nil && r.Err != nil {
			out[i] = r.Err
		}
	}
	return out, nil
}

// applyOne commits a command of a single item and returns the command's
// error, else the item's.
func (s *Server) applyOne(c *gin.Context, cmd []byte, buildErr error) error {
	errs, err := s.applyItems(c, cmd, buildErr, 1)
	if err != nil {
		return err
	}
	return errs[0]
}

// decodeNew is the first half of a create: the request's project, its body
// decoded into a Req, and the record build makes of them.
func decodeNew[Req, T any](s *Server, c *gin.Context, build func(req *Req, project string, now time.Time) (*T, error)) (string, *T, error) {
	project, err := s.project(c)
	if err != nil {
		return "", nil, err
	}
	var req Req
	if err := s.decodeJSON(c, &req); err != nil {
		return "", nil, err
	}
	rec, err := build(&req, project, s.cfg.Now())
	return project, rec, err
}

// putNew is the second half: it stores rec in table unless a record with its
// id exists, and reads it back from the state the write left, so the answer
// shows what was stored (indexes and all), not what was sent.
func putNew[T any](s *Server, c *gin.Context, table string, rec *T, id string, get func(*fsm.State, string) (*T, error)) (*fsm.State, *T, error) {
	cmd, err := fsm.PutCommand(table, rec, fsm.PutOptions{IfAbsent: true, Initiator: initiator(c)})
	if err := s.apply(c, cmd, err); err != nil {
		return nil, nil, err
	}
	st := s.cfg.Cluster.FSM().State()
	stored, err := get(st, id)
	if err != nil {
		return nil, nil, err
	}
	return st, stored, nil
}

// BootstrapHook is the leader hook that makes the initial state exist: the
// `default` project. It is idempotent and runs on every leadership gain.
type BootstrapHook struct {
	Cluster Cluster
	Now     func() time.Time
	Logger  *slog.Logger
	// RootToken becomes the first admin token when the cluster has none
	// (CHIME_ROOT_TOKEN). Empty: one is generated and logged, this once.
	RootToken string
	// LimitsPoll is how often the leader looks again whether every server
	// enforces quotas, before it writes the limits row (default 1 s).
	LimitsPoll time.Duration

	limits limitsWriter
}

// EstablishLeadership makes the initial state exist: the default project
// and, if the cluster has never had a token, the root token; the limits row
// follows once every server enforces quotas (limitsWriter). Both go in one
// command, so a node never shows one without the other: before, a client of
// a brand-new cluster could authenticate while "default" did not exist yet
// (a 404 for a moment), or see the project while its token was not there
// yet (a 401).
func (h *BootstrapHook) EstablishLeadership(ctx context.Context) error {
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	st := h.Cluster.FSM().State()
	var cmds [][]byte
	_, err := st.Project(DefaultProject)
	newProject := err != nil
	if newProject {
		cmd, err := fsm.BootstrapCommand(fsm.MillisOf(now()))
		if err != nil {
			return err
		}
		cmds = append(cmds, cmd)
	}
	tokenCmd, logToken, err := h.rootToken(st, now())
	if err != nil {
		return err
	}
	if tokenCmd != nil {
		cmds = append(cmds, tokenCmd)
	}
	if len(cmds) == 0 {
		h.limits.start(ctx, h, now)
		return nil
	}
	cmd, err := fsm.BatchCommand(cmds...)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := h.Cluster.Apply(actx, cmd)
	if err != nil {
		return fmt.Errorf("bootstrap state: %w", err)
	}
	for _, r := range res.Results {
		if r.Err != nil && !errors.Is(r.Err, fsm.ErrConflict) { // a conflict: another leader made it first
			return fmt.Errorf("bootstrap state: %w", r.Err)
		}
	}
	if h.Logger != nil {
		if newProject {
			h.Logger.Info("initial state created", "project", DefaultProject)
		}
		if logToken != nil {
			logToken()
		}
	}
	h.limits.start(ctx, h, now)
	return nil
}

// RevokeLeadership stops the wait for the limits row.
func (h *BootstrapHook) RevokeLeadership() { h.limits.stop() }

// rootToken is the command that installs the first admin token if the
// cluster has never had a token, and what to log once it is in. Revoked
// tokens are kept (expired), so this happens once per cluster: revoking the
// root token does not bring it back on the next leader.
func (h *BootstrapHook) rootToken(st *fsm.State, now time.Time) ([]byte, func(), error) {
	if st.Count(fsm.TableTokens) > 0 {
		return nil, nil, nil
	}
	secret, generated := h.RootToken, false
	if secret == "" {
		var err error
		if secret, err = NewToken(); err != nil {
			return nil, nil, err
		}
		generated = true
	}
	tok := &fsm.Token{ID: fsm.NewID("tok", now), Name: "root", Hash: HashToken(secret), Prefix: displayPrefix(secret),
		Scopes: []string{ScopeAdmin}, CreatedAt: fsm.MillisOf(now)}
	cmd, err := fsm.PutCommand(fsm.TableTokens, tok, fsm.PutOptions{IfAbsent: true})
	if err != nil {
		return nil, nil, err
	}
	log := func() {
		if generated {
			// The one and only time this secret is shown; only its hash is stored.
			h.Logger.Warn("root API token generated: keep it, it is not shown again (set CHIME_ROOT_TOKEN to choose it)",
				"token", secret, "token_id", tok.ID)
		} else {
			h.Logger.Info("root API token installed from CHIME_ROOT_TOKEN", "token_id", tok.ID)
		}
	}
	return cmd, log, nil
}
