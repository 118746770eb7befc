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
		SeriesID: j.SeriesID, CallbackURL: j.CallbackURL, Method: j.Method, Headers: j.Headers,
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
	if utf8.RuneCountInString(req.Name) > MaxNameLen {
		return nil, badRequest("name", fmt.Sprintf("name is longer than %d characters", MaxNameLen))
	}
	if err := validateDescription("description", req.Description); err != nil {
		return nil, err
	}
	spec := req.Spec.WithDefaults(s.cfg.Schedule)
	if err := spec.Validate(s.cfg.Schedule, now); err != nil {
		return nil, scheduleError(err)
	}
	sch, err := scheduler.Compile(spec, s.cfg.Schedule, now)
	if err != nil {
		return nil, scheduleError(err)
	}
	state, ok := sch.InitialState()
	if !ok {
		return nil, badRequest("", "the schedule has no slot in the future")
	}
	canonical, err := spec.Canonical()
	if err != nil {
		return nil, scheduleError(err)
	}
	if req.CallbackURL != "" {
		if err := validateURL("callbackUrl", req.CallbackURL); err != nil {
			return nil, err
		}
	}
	if req.EventType != "" {
		if err := validateEventType("eventType", req.EventType); err != nil {
			return nil, err
		}
	}
	method, err := normalizeMethod("method", req.Method)
	if err != nil {
		return nil, err
	}
	if err := validateHeaders("headers", req.Headers); err != nil {
		return nil, err
	}
	if err := s.validateData("payload", req.Payload); err != nil {
		return nil, err
	}
	def := dispatch.CallbackDefaultPolicy()
	if req.MaxRetries != 0 {
		if req.RetryPolicy != nil && req.RetryPolicy.MaxAttempts != 0 && req.RetryPolicy.MaxAttempts != req.MaxRetries {
			return nil, badRequest("maxRetries", "maxRetries and retryPolicy.maxAttempts disagree; give one of them")
		}
		def.MaxAttempts = req.MaxRetries
	}
	retry, err := retryIn("retryPolicy", req.RetryPolicy, def)
	if err != nil {
		return nil, err
	}
	tmo, err := timeoutMs("timeoutSeconds", req.TimeoutSeconds, dispatch.DefaultTimeout.Milliseconds())
	if err != nil {
		return nil, err
	}
	if len(req.IdempotencyKey) > MaxIdempotencyLen {
		return nil, badRequest("idempotencyKey", fmt.Sprintf("at most %d characters", MaxIdempotencyLen))
	}
	if len(req.CorrelationID) > MaxIdempotencyLen {
		return nil, badRequest("correlationId", fmt.Sprintf("at most %d characters", MaxIdempotencyLen))
	}
	if req.SigningSecret != "" {
		if err := dispatch.ValidateSecret(req.SigningSecret); err != nil {
			return nil, badRequest("signingSecret", err.Error())
		}
	}
	at := fsm.MillisOf(now)
	id := fsm.NewID("job", now)
	policy := sch.Policy()
	return &fsm.Job{
		ID: id, Project: project, Name: req.Name, Description: req.Description, Status: fsm.JobActive,
		ScheduleKind: sch.Kind(), Schedule: canonical, ScheduleSetAt: at,
		CallbackURL: req.CallbackURL, Method: method, Headers: req.Headers, Payload: []byte(req.Payload),
		EventType: req.EventType, SigningSecret: req.SigningSecret, IdempotencyKey: req.IdempotencyKey,
		CorrelationID: req.CorrelationID, Retry: retry, TimeoutMs: tmo,
		CooldownMs: policy.Cooldown.Milliseconds(), MisfireGraceMs: policy.MisfireGrace.Milliseconds(), CatchUp: policy.CatchUp,
		ManualCompletion: req.ManualCompletion,
		NextFireAt:       fsm.MillisOf(state.NextFireAt), SeriesID: id, CreatedAt: at, UpdatedAt: at,
	}, nil
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

// listJobs is GET /v1/jobs, by id (ids sort by creation time), optionally
// only the jobs with ?status=.
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
	var jobs []*fsm.Job
	var next string
	if status != "" {
		jobs, next = st.JobsByStatus(project, status, after, limit)
	} else {
		jobs, next = st.Jobs(project, after, limit)
	}
	items := make([]jobJSON, 0, len(jobs))
	for _, j := range jobs {
		items = append(items, jobOut(st, j))
	}
	c.JSON(http.StatusOK, listBody(items, next))
	return nil
}

// project returns the project a request acts in: ?project=, else default.
func (s *Server) project(c *gin.Context) (string, error) {
	name := c.Query("project")
	if name == "" {
		name = DefaultProject
	}
	if _, err := s.cfg.Cluster.FSM().State().Project(name); err != nil {
		return "", &Error{Status: http.StatusNotFound, Code: "not_found", Field: "project", Message: fmt.Sprintf("project %q not found", name)}
	}
	return name, nil
}
