package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
	"github.com/gin-gonic/gin"
)

// jobRequest is POST /v1/jobs: 002's fields at the top level, with the
// schedule fields of scheduler.Spec embedded among them.
type jobRequest struct {
	scheduler.Spec
	Name             string            `json:"name"`
	Description      string            `json:"description"`
	CallbackURL      string            `json:"callbackUrl"`
	Method           string            `json:"method"`
	Headers          map[string]string `json:"headers"`
	Payload          json.RawMessage   `json:"payload"`
	EventType        string            `json:"eventType"`
	MaxRetries       int               `json:"maxRetries"`
	RetryPolicy      *retryPolicyJSON  `json:"retryPolicy"`
	TimeoutSeconds   float64           `json:"timeoutSeconds"`
	IdempotencyKey   string            `json:"idempotencyKey"`
	CorrelationID    string            `json:"correlationId"`
	SigningSecret    string            `json:"signingSecret"`
	ManualCompletion bool              `json:"manualCompletion"`
}

type occurrenceRef struct {
	ID           string    `json:"id"`
	Number       int64     `json:"number"`
	ScheduledFor time.Time `json:"scheduledFor"`
	Status       string    `json:"status"`
}

type jobJSON struct {
	ID               string            `json:"id"`
	Project          string            `json:"project"`
	Name             string            `json:"name,omitempty"`
	Description      string            `json:"description,omitempty"`
	Status           string            `json:"status"`
	Kind             string            `json:"kind"`
	Schedule         json.RawMessage   `json:"schedule"`
	NextFireAt       *time.Time        `json:"nextFireAt"`
	OccurrenceCount  int64             `json:"occurrenceCount"`
	SeriesID         string            `json:"seriesId"`
	LastOccurrence   *occurrenceRef    `json:"lastOccurrence"`
	CallbackURL      string            `json:"callbackUrl,omitempty"`
	Method           string            `json:"method,omitempty"`
	Headers          map[string]string `json:"headers,omitempty"`
	Payload          json.RawMessage   `json:"payload,omitempty"`
	EventType        string            `json:"eventType,omitempty"`
	RetryPolicy      retryPolicyJSON   `json:"retryPolicy"`
	TimeoutSeconds   float64           `json:"timeoutSeconds"`
	IdempotencyKey   string            `json:"idempotencyKey,omitempty"`
	CorrelationID    string            `json:"correlationId,omitempty"`
	Signed           bool              `json:"signed"`
	ManualCompletion bool              `json:"manualCompletion"`
	CreatedAt        time.Time         `json:"createdAt"`
	UpdatedAt        time.Time         `json:"updatedAt"`
}

func timePtr(m fsm.Millis) *time.Time {
	if m == 0 {
		return nil
	}
	t := m.Time()
	return &t
}

func jobOut(st *fsm.State, j *fsm.Job) jobJSON {
	out := jobJSON{
		ID: j.ID, Project: j.Project, Name: j.Name, Description: j.Description, Status: j.Status, Kind: j.ScheduleKind,
		Schedule: json.RawMessage(j.Schedule), NextFireAt: timePtr(j.NextFireAt), OccurrenceCount: j.OccurrenceCount,
		SeriesID: j.SeriesID, CallbackURL: j.CallbackURL, Method: j.Method, Headers: fsm.MaskHeaders(j.Headers),
		Payload: json.RawMessage(j.Payload), EventType: j.EventType, RetryPolicy: retryOut(j.Retry),
		TimeoutSeconds: float64(j.TimeoutMs) / 1000, IdempotencyKey: j.IdempotencyKey, CorrelationID: j.CorrelationID,
		Signed: j.SigningSecret != "", ManualCompletion: j.ManualCompletion,
		CreatedAt: j.CreatedAt.Time(), UpdatedAt: j.UpdatedAt.Time(),
	}
	if j.LastOccurrenceID != "" {
		if o, err := st.Occurrence(j.LastOccurrenceID); err == nil {
			out.LastOccurrence = &occurrenceRef{ID: o.ID, Number: o.Number, ScheduledFor: o.ScheduledFor.Time(), Status: o.Status}
		}
	}
	return out
}

// buildJob validates a job request and turns it into the record to store.
func (s *Server) buildJob(req *jobRequest, project string, now time.Time) (*fsm.Job, error) {
	at := fsm.MillisOf(now)
	id := fsm.NewID("job", now)
	j := &fsm.Job{ID: id, Project: project, Status: fsm.JobActive, SeriesID: id, CreatedAt: at, UpdatedAt: at}
	if err := validateNaming(req); err != nil {
		return nil, err
	}
	if err := s.setSchedule(j, req.Spec, now); err != nil {
		return nil, err
	}
	if err := s.setTarget(j, req); err != nil {
		return nil, err
	}
	return j, nil
}

func validateNaming(req *jobRequest) error {
	if utf8.RuneCountInString(req.Name) > MaxNameLen {
		return badRequest("name", fmt.Sprintf("name is longer than %d characters", MaxNameLen))
	}
	return validateDescription("description", req.Description)
}

// setSchedule validates spec as of now (the schedule's creation time: the
// origin of delaySeconds and of the default start) and sets the job's
// schedule fields and first fire.
func (s *Server) setSchedule(j *fsm.Job, spec scheduler.Spec, now time.Time) error {
	spec = spec.WithDefaults(s.cfg.Schedule)
	if err := spec.Validate(s.cfg.Schedule, now); err != nil {
		return scheduleError(err)
	}
	sch, err := scheduler.Compile(spec, s.cfg.Schedule, now)
	if err != nil {
		return scheduleError(err)
	}
	state, ok := sch.InitialState()
	if !ok {
		return badRequest("", "the schedule has no slot in the future")
	}
	canonical, err := spec.Canonical()
	if err != nil {
		return scheduleError(err)
	}
	if err := s.checkMinInterval(j.Project, spec, canonical, sch.Kind(), now); err != nil {
		return err
	}
	policy := sch.Policy()
	j.ScheduleKind, j.Schedule, j.ScheduleSetAt = sch.Kind(), canonical, fsm.MillisOf(now)
	j.CooldownMs, j.MisfireGraceMs, j.CatchUp = policy.Cooldown.Milliseconds(), policy.MisfireGrace.Milliseconds(), policy.CatchUp
	j.NextFireAt = fsm.MillisOf(state.NextFireAt)
	return nil
}

// setTarget validates the request's descriptive fields, target and delivery
// policy and sets them on the job.
func (s *Server) setTarget(j *fsm.Job, req *jobRequest) error {
	if req.CallbackURL != "" {
		if err := validateURL("callbackUrl", req.CallbackURL); err != nil {
			return err
		}
	}
	if req.EventType != "" {
		if err := validateEventType("eventType", req.EventType); err != nil {
			return err
		}
	}
	method, tmo, err := callShape(req.Method, req.Headers, req.TimeoutSeconds)
	if err != nil {
		return err
	}
	if err := s.validateData("payload", req.Payload); err != nil {
		return err
	}
	def := dispatch.CallbackDefaultPolicy()
	if req.MaxRetries != 0 {
		if req.RetryPolicy != nil && req.RetryPolicy.MaxAttempts != 0 && req.RetryPolicy.MaxAttempts != req.MaxRetries {
			return badRequest("maxRetries", "maxRetries and retryPolicy.maxAttempts disagree; give one of them")
		}
		def.MaxAttempts = req.MaxRetries
	}
	retry, err := retryIn("retryPolicy", req.RetryPolicy, def)
	if err != nil {
		return err
	}
	if len(req.IdempotencyKey) > MaxIdempotencyLen {
		return badRequest("idempotencyKey", fmt.Sprintf("at most %d characters", MaxIdempotencyLen))
	}
	if len(req.CorrelationID) > MaxIdempotencyLen {
		return badRequest("correlationId", fmt.Sprintf("at most %d characters", MaxIdempotencyLen))
	}
	if req.SigningSecret != "" {
		if err := dispatch.ValidateSecret(req.SigningSecret); err != nil {
			return badRequest("signingSecret", err.Error())
		}
	}
	j.Name, j.Description = req.Name, req.Description
	j.CallbackURL, j.Method, j.Headers, j.Payload = req.CallbackURL, method, req.Headers, []byte(req.Payload)
	j.EventType, j.SigningSecret, j.IdempotencyKey, j.CorrelationID = req.EventType, req.SigningSecret, req.IdempotencyKey, req.CorrelationID
	j.Retry, j.TimeoutMs, j.ManualCompletion = retry, tmo, req.ManualCompletion
	return nil
}

// scheduleError maps the scheduler's field errors to a 400 naming the field.
func scheduleError(err error) error {
	var fe *scheduler.FieldError
	if errors.As(err, &fe) {
		return badRequest(fe.Field, fe.Message)
	}
	return badRequest("", err.Error())
}

func (s *Server) createJob(c *gin.Context) error {
	_, job, err := decodeNew(s, c, s.buildJob)
	if err != nil {
		return err
	}
	if err := s.checkQuota(job.Project, fsm.QuotaCreateJob); err != nil {
		return err
	}
	st, stored, err := putNew(s, c, fsm.TableJobs, job, job.ID, (*fsm.State).Job)
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, jobOut(st, stored))
	return nil
}

func (s *Server) getJob(c *gin.Context) error {
	st, job, err := s.loadJob(c)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, jobOut(st, job))
	return nil
}

// loadJob reads the job of the path inside the request's project; a job of
// another project is reported as not found.
func (s *Server) loadJob(c *gin.Context) (*fsm.State, *fsm.Job, error) {
	return load(s, c, (*fsm.State).Job, jobProject, "job")
}

// filterJobs pages through page (by id) keeping the jobs keep accepts, until
// limit are found; the cursor is the last id read when the list goes on.
// (002's next-fire filter: jobs are listed by id, so the filter reads on.)
func filterJobs(page func(after string, limit int) ([]*fsm.Job, string), after string, limit int, keep func(*fsm.Job) bool) ([]*fsm.Job, string) {
	var out []*fsm.Job
	for {
		batch, next := page(after, 500)
		for i, j := range batch {
			if !keep(j) {
				continue
			}
			out = append(out, j)
			if limit > 0 && len(out) == limit {
				if i < len(batch)-1 || next != "" {
					return out, j.ID
				}
				return out, ""
			}
		}
		if next == "" {
			return out, ""
		}
		after = next
	}
}

// listJobs is GET /v1/jobs, by id (ids sort by creation time), optionally
// only the jobs with ?status= and those whose next fire is in [from, to).
func (s *Server) listJobs(c *gin.Context) error {
	project, st, err := s.scope(c)
	if err != nil {
		return err
	}
	limit, after, err := listParams(c)
	if err != nil {
		return err
	}
	status, err := statusParam(c, jobStatuses)
	if err != nil {
		return err
	}
	from, to, err := timeRange(c.Query("from"), c.Query("to"))
	if err != nil {
		return err
	}
	page := func(after string, limit int) ([]*fsm.Job, string) {
		if status != "" {
			return st.JobsByStatus(project, status, after, limit)
		}
		return st.Jobs(project, after, limit)
	}
	var jobs []*fsm.Job
	var next string
	if from == 0 && to == 0 {
		jobs, next = page(after, limit)
	} else {
		jobs, next = filterJobs(page, after, limit, func(j *fsm.Job) bool {
			return j.NextFireAt != 0 && j.NextFireAt >= from && (to == 0 || j.NextFireAt < to)
		})
	}
	items := make([]jobJSON, 0, len(jobs))
	for _, j := range jobs {
		items = append(items, jobOut(st, j))
	}
	c.JSON(http.StatusOK, listBody(items, next))
	return nil
}

// project returns the project a request acts in: ?project=, else default.
//
// A token restricted to a project acts in that project: without ?project=
// it is the default, and any other name is reported as not found, exactly as
// a project that does not exist, so a token learns nothing of other projects.
func (s *Server) project(c *gin.Context) (string, error) {
	name := c.Query("project")
	if tok := caller(c); tok != nil && tok.Project != "" {
		if name == "" {
			name = tok.Project
		} else if name != tok.Project {
			return "", &Error{Status: http.StatusNotFound, Code: "not_found", Field: "project", Message: fmt.Sprintf("project %q not found", name)}
		}
	}
	if name == "" {
		name = DefaultProject
	}
	if _, err := s.cfg.Cluster.FSM().State().Project(name); err != nil {
		return "", &Error{Status: http.StatusNotFound, Code: "not_found", Field: "project", Message: fmt.Sprintf("project %q not found", name)}
	}
	return name, nil
}
