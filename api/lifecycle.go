package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
	"github.com/gin-gonic/gin"
)

// Job lifecycle (000, 002): pause, resume, archive and cancel. Each is a
// compare-and-set Put of the job, retried on a conflict with the poller
// (which rewrites a job on every fire).
//
//   - pause: an active job stops firing; its next fire time is kept for show.
//   - resume: a paused or archived job fires again from its next slot after
//     now. Slots that passed while it was paused are not caught up: pausing
//     means "do not fire". A one-shot that never fired keeps its time.
//   - archive: any job but a cancelled one is put away; it never fires.
//   - cancel (DELETE): the job never fires again. A one-shot that has
//     already fired cannot be cancelled (409, as in 002: only while pending).

// errJobState is the conflict of an action the job's status does not allow.
func errJobState(job *fsm.Job, action string) error {
	return &Error{Status: http.StatusConflict, Code: "conflict", Field: "status",
		Message: fmt.Sprintf("job %q is %s; it cannot be %s", job.ID, job.Status, action)}
}

// changeJob applies change to the job of the path (CAS, retried on a
// conflict) and answers with the job after it. change returns false when
// the job is already as asked (nothing is written).
func (s *Server) changeJob(c *gin.Context, change func(j *fsm.Job, now time.Time) (bool, error)) error {
	project, err := s.project(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	err = retryOnConflict(func() error {
		cur, err := inProject(s.cfg.Cluster.FSM().State().Job, jobProject, "job", id, project)
		if err != nil {
			return err
		}
		j := *cur
		now := s.cfg.Now()
		if write, err := change(&j, now); err != nil || !write {
			return err
		}
		j.UpdatedAt = fsm.MillisOf(now)
		cmd, err := fsm.PutCommand(fsm.TableJobs, &j, fsm.PutOptions{IfIndex: cur.ModifyIndex, Initiator: initiator(c)})
		return s.apply(c, cmd, err)
	})
	if err != nil {
		return err
	}
	st := s.cfg.Cluster.FSM().State()
	job, err := st.Job(id)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, jobOut(st, job))
	return nil
}

func (s *Server) pauseJob(c *gin.Context) error {
	return s.changeJob(c, func(j *fsm.Job, _ time.Time) (bool, error) {
		switch j.Status {
		case fsm.JobPaused:
			return false, nil
		case fsm.JobActive:
			j.Status = fsm.JobPaused
			return true, nil
		}
		return false, errJobState(j, "paused")
	})
}

func (s *Server) resumeJob(c *gin.Context) error {
	return s.changeJob(c, func(j *fsm.Job, now time.Time) (bool, error) {
		switch j.Status {
		case fsm.JobActive:
			return false, nil
		case fsm.JobPaused, fsm.JobArchived:
		default:
			return false, errJobState(j, "resumed")
		}
		next, err := s.nextAfter(j, now)
		if err != nil {
			return false, err
		}
		if j.ScheduleKind == scheduler.KindOnce && j.OccurrenceCount == 0 && j.NextFireAt != 0 {
			// A one-shot that never fired keeps its time; if that passed
			// while paused, the catch-up policy decides (by default it fires
			// at once, as a past fireAtUtc does at creation).
			next = j.NextFireAt
		}
		j.Status, j.NextFireAt = fsm.JobActive, next
		if next == 0 {
			j.Status = fsm.JobCompleted // no slot left while it was paused
		}
		return true, nil
	})
}

// nextAfter is the job's first slot strictly after now (0: none left, or
// maxOccurrences used up), from its stored schedule.
func (s *Server) nextAfter(j *fsm.Job, now time.Time) (fsm.Millis, error) {
	spec, err := scheduler.ParseSpec(j.Schedule)
	if err != nil {
		return 0, fmt.Errorf("job %s: stored schedule: %w", j.ID, err)
	}
	sch, err := scheduler.Compile(spec, s.cfg.Schedule, j.ScheduleSetAt.Time())
	if err != nil {
		return 0, fmt.Errorf("job %s: stored schedule: %w", j.ID, err)
	}
	if m := sch.Policy().MaxOccurrences; m > 0 && j.OccurrenceCount >= m {
		return 0, nil
	}
	slot, ok := sch.Next(now)
	if !ok {
		return 0, nil
	}
	return fsm.MillisOf(slot.At), nil
}

func (s *Server) archiveJob(c *gin.Context) error {
	return s.changeJob(c, func(j *fsm.Job, _ time.Time) (bool, error) {
		switch j.Status {
		case fsm.JobArchived:
			return false, nil
		case fsm.JobCancelled:
			return false, errJobState(j, "archived")
		}
		j.Status = fsm.JobArchived
		return true, nil
	})
}

func (s *Server) cancelJob(c *gin.Context) error {
	return s.changeJob(c, func(j *fsm.Job, _ time.Time) (bool, error) {
		switch {
		case j.Status == fsm.JobCancelled:
			return false, nil
		case j.ScheduleKind == scheduler.KindOnce && j.OccurrenceCount > 0:
			return false, &Error{Status: http.StatusConflict, Code: "conflict", Field: "status",
				Message: fmt.Sprintf("job %q has already fired; a one-shot can only be cancelled while it is pending", j.ID)}
		}
		j.Status, j.NextFireAt = fsm.JobCancelled, 0
		return true, nil
	})
}

// previewRequest is POST /v1/schedules/preview: a job's schedule fields
// plus from (the creation time to assume; default now) and count.
type previewRequest struct {
	scheduler.Spec
	From  string `json:"from"`
	Count *int   `json:"count"`
}

// previewSchedule answers the next fires of a schedule with the same maths
// as the poller and `chime schedule preview`.
func (s *Server) previewSchedule(c *gin.Context) error {
	var req previewRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	from := s.cfg.Now()
	if req.From != "" {
		t, err := time.Parse(time.RFC3339Nano, req.From)
		if err != nil {
			return badRequest("from", "from must be an RFC 3339 time such as 2024-03-09T12:00:00Z")
		}
		from = t
	}
	count := 10
	if req.Count != nil {
		count = *req.Count
	}
	spec, err := json.Marshal(req.Spec)
	if err != nil {
		return err
	}
	fires, err := scheduler.Preview(spec, s.cfg.Schedule, from, count)
	if err != nil {
		return scheduleError(err)
	}
	out := make([]string, len(fires))
	for i, f := range fires {
		out[i] = f.UTC().Format(time.RFC3339Nano)
	}
	c.JSON(http.StatusOK, gin.H{"fires": out})
	return nil
}

// scheduleFields are the JSON names of a job's schedule (scheduler.Spec). A
// PATCH that names any of them replaces the whole schedule: merging parts of
// two schedules (a cron with a recurrenceSeconds) would make no sense.
var scheduleFields = jsonFieldNames(reflect.TypeFor[scheduler.Spec]())

// jobFields are every field a job request takes, schedule included.
var jobFields = jsonFieldNames(reflect.TypeFor[jobRequest]())

func jsonFieldNames(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for f := range t.Fields() {
		if f.Anonymous {
			for k := range jsonFieldNames(f.Type) {
				out[k] = true
			}
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

// requestOf is the request that would create the job as it is stored.
func requestOf(j *fsm.Job) (jobRequest, error) {
	spec, err := scheduler.ParseSpec(j.Schedule)
	if err != nil {
		return jobRequest{}, fmt.Errorf("job %s: stored schedule: %w", j.ID, err)
	}
	rp := retryOut(j.Retry)
	// Copies of the map and the bytes: decoding a patch into the stored ones
	// would change the record in place, outside Raft, even when refused.
	return jobRequest{
		Spec: spec, Name: j.Name, Description: j.Description, CallbackURL: j.CallbackURL, Method: j.Method,
		Headers: maps.Clone(j.Headers), Payload: json.RawMessage(bytes.Clone(j.Payload)), EventType: j.EventType, RetryPolicy: &rp,
		TimeoutSeconds: float64(j.TimeoutMs) / 1000, IdempotencyKey: j.IdempotencyKey, CorrelationID: j.CorrelationID,
		SigningSecret: j.SigningSecret, ManualCompletion: j.ManualCompletion,
	}, nil
}

// patchJob is PATCH /v1/jobs/{id}: the fields given replace the stored ones
// (null clears a list, a map or the payload; "" clears a string, and null
// leaves a string or a number as it was); the schedule is replaced as a whole when any of its
// fields is given, and its next fire is then computed from now, as for a new
// job. Counters and the series stay. A completed job whose new schedule has
// slots is active again; a cancelled job cannot be changed.
func (s *Server) patchJob(c *gin.Context) error {
	var patch map[string]json.RawMessage
	if err := s.decodeJSON(c, &patch); err != nil {
		return err
	}
	if len(patch) == 0 {
		return badRequest("", "give at least one field to change")
	}
	newSchedule := false
	for k := range patch {
		if !jobFields[k] {
			return badRequest(k, fmt.Sprintf("unknown field %q", k))
		}
		newSchedule = newSchedule || scheduleFields[k]
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, hasMax := patch["maxRetries"]
	_, newHeaders := patch["headers"]
	return s.changeJob(c, func(j *fsm.Job, now time.Time) (bool, error) {
		if j.Status == fsm.JobCancelled {
			return false, errJobState(j, "changed")
		}
		req, err := requestOf(j)
		if err != nil {
			return false, err
		}
		if newSchedule {
			req.Spec = scheduler.Spec{}
		}
		if hasMax && req.RetryPolicy != nil {
			req.RetryPolicy.MaxAttempts = 0 // maxRetries replaces the stored attempts
		}
		if newHeaders {
			req.Headers = nil // given headers replace the stored ones; decoding into a map would merge
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return false, jsonError(err) // names the field of a wrong type
		}
		if err := validateNaming(&req); err != nil {
			return false, err
		}
		if err := s.setTarget(j, &req); err != nil {
			return false, err
		}
		if newSchedule {
			if err := s.setSchedule(j, req.Spec, now); err != nil {
				return false, err
			}
			if j.Status == fsm.JobCompleted {
				j.Status = fsm.JobActive
			}
		}
		return true, nil
	})
}
