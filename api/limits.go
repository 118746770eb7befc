package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
	"github.com/gin-gonic/gin"
)

// Per-project quotas: the API side. The rules live in fsm (quota.go), where
// Apply enforces them for the whole cluster; here a write is checked first
// against this node's state, so that one refused there usually never reaches
// the log, and the smallest interval, which is about a schedule the FSM never
// interprets, is checked for good.

// Bounds on what an admin may set (a limit above them is a typo).
const (
	maxCountLimit    = 1_000_000_000
	maxRateLimit     = 1_000_000 // per second: the bucket counts whole microseconds
	maxIntervalLimit = 366 * 24 * 3600
)

// limitFields maps each JSON name to its field of fsm.Limits and its bound.
var limitFields = []struct {
	name string
	ptr  func(*fsm.Limits) *int64
	max  int64
}{
	{"maxJobs", func(l *fsm.Limits) *int64 { return &l.MaxJobs }, maxCountLimit},
	{"maxEndpoints", func(l *fsm.Limits) *int64 { return &l.MaxEndpoints }, maxCountLimit},
	{"maxUndelivered", func(l *fsm.Limits) *int64 { return &l.MaxUndelivered }, maxCountLimit},
	{"createsPerSecond", func(l *fsm.Limits) *int64 { return &l.CreatesPerSecond }, maxRateLimit},
	{"createBurst", func(l *fsm.Limits) *int64 { return &l.CreateBurst }, maxRateLimit},
	{"publishesPerSecond", func(l *fsm.Limits) *int64 { return &l.PublishesPerSecond }, maxRateLimit},
	{"publishBurst", func(l *fsm.Limits) *int64 { return &l.PublishBurst }, maxRateLimit},
	{"minIntervalSeconds", func(l *fsm.Limits) *int64 { return &l.MinIntervalSeconds }, maxIntervalLimit},
	{"maxScheduledEvents", func(l *fsm.Limits) *int64 { return &l.MaxScheduledEvents }, maxCountLimit},
}

// limitsOut shows limits as the API speaks of them: 0 is "no limit".
func limitsOut(l *fsm.Limits) map[string]int64 {
	out := make(map[string]int64, len(limitFields))
	for _, f := range limitFields {
		out[f.name] = max(*f.ptr(l), 0)
	}
	return out
}

// overridesOut lists only the fields a row sets (0: no limit).
func overridesOut(l *fsm.Limits) map[string]int64 {
	out := map[string]int64{}
	if l == nil {
		return out
	}
	for _, f := range limitFields {
		if v := *f.ptr(l); v != 0 {
			out[f.name] = max(v, 0)
		}
	}
	return out
}

// applyLimitsPatch merges a PATCH body into row: a number sets the limit (0:
// no limit), null unsets it (a project inherits the cluster's; the cluster's
// is then no limit), an absent field is left as it is.
func applyLimitsPatch(body map[string]json.RawMessage, row *fsm.Limits) error {
	known := map[string]bool{}
	for _, f := range limitFields {
		known[f.name] = true
	}
	for name := range body {
		if !known[name] {
			return badRequest(name, fmt.Sprintf("unknown field %q", name))
		}
	}
	for _, f := range limitFields {
		raw, ok := body[f.name]
		if !ok {
			continue
		}
		if string(raw) == "null" {
			*f.ptr(row) = 0
			continue
		}
		var v int64
		if err := json.Unmarshal(raw, &v); err != nil {
			return badRequest(f.name, f.name+" must be a whole number (0: no limit) or null (inherit)")
		}
		if v < 0 || v > f.max {
			return badRequest(f.name, fmt.Sprintf("%s must be between 0 (no limit) and %d", f.name, f.max))
		}
		if v == 0 {
			v = fsm.Unlimited
		}
		*f.ptr(row) = v
	}
	return nil
}

// getClusterLimits is GET /v1/limits: the cluster-wide limits every project
// inherits, and the built-in defaults a new cluster starts with.
func (s *Server) getClusterLimits(c *gin.Context) error {
	st, err := s.state(c)
	if err != nil {
		return err
	}
	row, _ := st.Limits(fsm.ClusterLimitsID)
	eff := fsm.Effective(row, nil)
	def := fsm.DefaultLimits
	c.JSON(http.StatusOK, gin.H{"limits": limitsOut(&eff), "defaults": limitsOut(&def)})
	return nil
}

// patchClusterLimits is PATCH /v1/limits (an unrestricted admin).
func (s *Server) patchClusterLimits(c *gin.Context) error {
	if err := s.patchLimits(c, fsm.ClusterLimitsID); err != nil {
		return err
	}
	return s.getClusterLimits(c)
}

// limitsProject is the project of a /v1/projects/:name/limits route, which a
// project-bound token may only name for its own project.
func (s *Server) limitsProject(c *gin.Context, st *fsm.State) (string, error) {
	name := c.Param("name")
	_, err := st.Project(name)
	if tok := caller(c); err == nil && tok != nil && tok.Project != "" && tok.Project != name {
		err = fsm.ErrNotFound
	}
	if err != nil {
		return "", &Error{Status: http.StatusNotFound, Code: "not_found", Field: "name", Message: fmt.Sprintf("project %q not found", name)}
	}
	return name, nil
}

// getProjectLimits is GET /v1/projects/:name/limits: the limits in force,
// the project's own overrides and what it uses.
func (s *Server) getProjectLimits(c *gin.Context) error {
	st, err := s.state(c)
	if err != nil {
		return err
	}
	name, err := s.limitsProject(c, st)
	if err != nil {
		return err
	}
	eff := st.EffectiveLimits(name)
	own, _ := st.Limits(name)
	u := st.Usage(name)
	c.JSON(http.StatusOK, gin.H{"project": name, "limits": limitsOut(&eff), "overrides": overridesOut(own),
		"usage": gin.H{"jobs": u.Jobs, "endpoints": u.Endpoints, "undelivered": u.Undelivered, "scheduledEvents": u.Scheduled}})
	return nil
}

// patchProjectLimits is PATCH /v1/projects/:name/limits (an unrestricted
// admin: a project's own admin must not raise its own limits).
func (s *Server) patchProjectLimits(c *gin.Context) error {
	name, err := s.limitsProject(c, s.cfg.Cluster.FSM().State())
	if err != nil {
		return err
	}
	if err := s.patchLimits(c, name); err != nil {
		return err
	}
	return s.getProjectLimits(c)
}

// deleteProjectLimits is DELETE /v1/projects/:name/limits: the project
// inherits every cluster-wide limit again.
func (s *Server) deleteProjectLimits(c *gin.Context) error {
	st := s.cfg.Cluster.FSM().State()
	name, err := s.limitsProject(c, st)
	if err != nil {
		return err
	}
	if _, err := st.Limits(name); err == nil {
		cmd, err := fsm.DeleteCommand(fsm.TableLimits, name, 0)
		if err := s.apply(c, cmd, err); err != nil && !errors.Is(err, fsm.ErrNotFound) {
			return err
		}
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (s *Server) patchLimits(c *gin.Context, id string) error {
	var body map[string]json.RawMessage
	if err := s.decodeJSON(c, &body); err != nil {
		return err
	}
	return retryOnConflict(func() error {
		row := fsm.Limits{ID: id}
		opts := fsm.PutOptions{IfAbsent: true}
		if cur, err := s.cfg.Cluster.FSM().State().Limits(id); err == nil {
			row, opts = *cur, fsm.PutOptions{IfIndex: cur.ModifyIndex}
		} else if id == fsm.ClusterLimitsID && !s.cfg.Cluster.AllServersAtLeast(cluster.LevelQuotas) {
			// The cluster row switches enforcement on: not while a server
			// that would ignore it is in the cluster (limitsWriter).
			return &Error{Status: http.StatusConflict, Code: "upgrade_in_progress", RetryAfter: 30,
				Message: "quotas cannot be switched on while a server of an older version is in the cluster: finish the rolling upgrade (or remove servers that are gone) and try again"}
		}
		if err := applyLimitsPatch(body, &row); err != nil {
			return err
		}
		row.UpdatedAt = fsm.MillisOf(s.cfg.Now())
		cmd, err := fsm.PutCommand(fsm.TableLimits, &row, opts)
		return s.apply(c, cmd, err)
	})
}

// checkQuota is the pre-check of a create or publish in project.
func (s *Server) checkQuota(project string, op fsm.QuotaOp) error {
	return s.cfg.Cluster.FSM().State().CheckQuota(project, op, fsm.MillisOf(s.cfg.Now()))
}

// checkMinInterval refuses a schedule whose fires can come closer together
// than the project's minIntervalSeconds: a 400 naming the schedule's field,
// not a 429, because sending it again will never help. An interval is
// checked exactly; other kinds by every fire where two can come closest.
func (s *Server) checkMinInterval(project string, spec scheduler.Spec, canonical []byte, kind string, now time.Time) error {
	limit := s.cfg.Cluster.FSM().State().EffectiveLimits(project).MinIntervalSeconds
	if limit <= 1 { // the scheduler's own floor is a second
		return nil
	}
	field := map[string]string{scheduler.KindInterval: "recurrenceSeconds", scheduler.KindCalendar: "scheduleTimes",
		scheduler.KindRecurrence: "recurrence", scheduler.KindRRule: "rrule", scheduler.KindCron: "cron"}[kind]
	if field == "" {
		return nil // once: a single fire
	}
	msg := fmt.Sprintf("fires more often than every %d s, the smallest interval project %q allows (minIntervalSeconds)", limit, project)
	if kind == scheduler.KindInterval {
		if spec.RecurrenceSeconds != nil && *spec.RecurrenceSeconds < limit {
			return badRequest(field, fmt.Sprintf("recurrenceSeconds %d %s", *spec.RecurrenceSeconds, msg))
		}
		return nil
	}
	// Every fire of the windows where two can come closest, not only the
	// next few: see scheduler.(*Schedule).MinGap.
	sp, err := scheduler.ParseSpec(canonical)
	if err != nil {
		return scheduleError(err)
	}
	sch, err := scheduler.Compile(sp, s.cfg.Schedule, now)
	if err != nil {
		return scheduleError(err)
	}
	if g, found := sch.MinGap(now, time.Duration(limit)*time.Second); found {
		return badRequest(field, fmt.Sprintf("the schedule has fires %s apart (%s and %s): it %s",
			g.Len(), g.From.UTC().Format(time.RFC3339), g.To.UTC().Format(time.RFC3339), msg))
	}
	return nil
}

// limitsWriter writes the cluster-wide limits row (fsm.DefaultLimits) when
// the cluster has none: a new cluster, or one upgraded from a build without
// quotas. The row switches enforcement on in every replica's Apply, so it is
// written only once every server in the Raft configuration gossips
// cluster.LevelQuotas: an older replica ignores the quota tables and would
// go on applying the creates, fires and triggers the newer ones refuse, and
// the replicas' jobs and deliveries would differ. It waits in its own
// goroutine, so that the poller and the other leader hooks start at once.
type limitsWriter struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *limitsWriter) start(ctx context.Context, h *BootstrapHook, now func() time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done != nil {
		return // already waiting in this term
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		h.writeLimits(ctx, now)
	}(w.done)
}

func (w *limitsWriter) stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.cancel, w.done = nil, nil
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// writeLimits waits until the row exists or may be written, and writes it.
func (h *BootstrapHook) writeLimits(ctx context.Context, now func() time.Time) {
	poll := h.LimitsPoll
	if poll <= 0 {
		poll = time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	logged := false
	for {
		if _, err := h.Cluster.FSM().State().Limits(fsm.ClusterLimitsID); err == nil {
			return
		}
		if h.Cluster.AllServersAtLeast(cluster.LevelQuotas) {
			l := fsm.DefaultLimits
			l.UpdatedAt = fsm.MillisOf(now())
			cmd, err := fsm.PutCommand(fsm.TableLimits, &l, fsm.PutOptions{IfAbsent: true})
			if err == nil {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				var res *fsm.Result
				res, err = h.Cluster.Apply(actx, cmd)
				cancel()
				if err == nil && (res.Err == nil || errors.Is(res.Err, fsm.ErrConflict)) {
					if h.Logger != nil {
						h.Logger.Info("cluster limits written: quotas are enforced from now on")
					}
					return
				}
				if err == nil {
					err = res.Err
				}
			}
			if h.Logger != nil && ctx.Err() == nil {
				h.Logger.Warn("writing the cluster limits failed; will retry", "error", err)
			}
		} else if !logged && h.Logger != nil {
			logged = true
			h.Logger.Warn("quotas are not enforced yet: waiting until every server in the Raft configuration runs a version that enforces them (finish the rolling upgrade, or remove servers that are gone)")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// claimQuota is the quota a keyed route's request would be refused for,
// checked before its Idempotency-Key is claimed.
var claimQuota = map[string]fsm.QuotaOp{
	"/v1/jobs":               fsm.QuotaCreateJob,
	"/v1/endpoints":          fsm.QuotaCreateEndpoint,
	"/v1/events":             fsm.QuotaPublishEvent,
	"/v1/jobs/:id/trigger":   fsm.QuotaPublish,
	"/v1/endpoints/:id/test": fsm.QuotaPublishEvent,
}

// preClaimQuota runs before a keyed request claims its key (a Raft write,
// and a record kept for IdempotencyWindow with whatever answer follows): a
// request its route would refuse for a quota is refused before anything is
// written, and new claims take from the project's claim bucket (fsm
// QuotaClaim), which Apply charges as well. A key that has a live record is
// left to claimKey: a replay is answered whatever the quotas say now.
func (s *Server) preClaimQuota(c *gin.Context, project, id string) error {
	st := s.cfg.Cluster.FSM().State()
	now := fsm.MillisOf(s.cfg.Now())
	if rec, err := st.Idempotency(id); err == nil && rec.ExpiresAt > now {
		return nil
	}
	if op, ok := claimQuota[c.FullPath()]; ok {
		if err := st.CheckQuota(project, op, now); err != nil {
			return err
		}
	}
	return st.CheckQuota(project, fsm.QuotaClaim, now)
}
