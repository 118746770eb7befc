package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
	"github.com/gin-gonic/gin"
)

type occurrenceJSON struct {
	ID             string     `json:"id"`
	Project        string     `json:"project"`
	JobID          string     `json:"jobId"`
	Number         int64      `json:"number"`
	Status         string     `json:"status"`
	ScheduledFor   *time.Time `json:"scheduledFor"`
	FiredAt        *time.Time `json:"firedAt"`
	CompletedAt    *time.Time `json:"completedAt"`
	MissedCount    int64      `json:"missedCount"`
	Manual         bool       `json:"manual"`
	IdempotencyKey string     `json:"idempotencyKey"`
	// SkipReason: why Chime skipped it (quota_exceeded: …), if it did.
	SkipReason string `json:"skipReason,omitempty"`
}

type occurrenceDetailJSON struct {
	occurrenceJSON
	Deliveries []deliveryJSON `json:"deliveries"`
}

func occurrenceOut(o *fsm.Occurrence) occurrenceJSON {
	return occurrenceJSON{
		ID: o.ID, Project: o.Project, JobID: o.JobID, Number: o.Number, Status: o.Status,
		ScheduledFor: timePtr(o.ScheduledFor), FiredAt: timePtr(o.FiredAt), CompletedAt: timePtr(o.CompletedAt),
		MissedCount: o.MissedCount, Manual: o.Manual, IdempotencyKey: o.IdempotencyKey, SkipReason: o.SkipReason,
	}
}

// occurrenceDetailOut adds the occurrence's deliveries: one per destination
// of its job, so the list is short.
func occurrenceDetailOut(st *fsm.State, o *fsm.Occurrence) occurrenceDetailJSON {
	return occurrenceDetailJSON{occurrenceJSON: occurrenceOut(o), Deliveries: deliveriesOut(st.DeliveriesByOccurrence(o.ID))}
}

// numberCursor marks a cursor that is an occurrence number (the unfiltered
// list runs by number, the filtered one by id), so that a cursor from one
// list is refused by the other instead of silently restarting it.
const numberCursor = "#"

// listJobOccurrences is GET /v1/jobs/{id}/occurrences: by number, or by id
// with ?status=.
func (s *Server) listJobOccurrences(c *gin.Context) error {
	st, job, err := s.loadJob(c)
	if err != nil {
		return err
	}
	limit, after, err := listParams(c)
	if err != nil {
		return err
	}
	status, err := statusParam(c, occurrenceStatuses)
	if err != nil {
		return err
	}
	badCursor := badRequest("cursor", "cursor is not one this list issued; pass nextCursor from the previous page of the same query")
	var os []*fsm.Occurrence
	next := ""
	if status != "" {
		if strings.HasPrefix(after, numberCursor) {
			return badCursor
		}
		os, next = st.OccurrencesByStatus(job.ID, status, after, limit)
	} else {
		var afterNumber int64
		if after != "" {
			n, perr := strconv.ParseInt(strings.TrimPrefix(after, numberCursor), 10, 64)
			if perr != nil || !strings.HasPrefix(after, numberCursor) || n < 1 {
				return badCursor
			}
			afterNumber = n
		}
		var nextNumber int64
		os, nextNumber = st.OccurrencesByJob(job.ID, afterNumber, limit)
		if nextNumber != 0 {
			next = numberCursor + strconv.FormatInt(nextNumber, 10)
		}
	}
	items := make([]occurrenceJSON, 0, len(os))
	for _, o := range os {
		items = append(items, occurrenceOut(o))
	}
	c.JSON(http.StatusOK, listBody(items, next))
	return nil
}

func (s *Server) loadOccurrence(c *gin.Context) (*fsm.State, *fsm.Occurrence, error) {
	return load(s, c, (*fsm.State).Occurrence, occurrenceProject, "occurrence")
}

func (s *Server) getOccurrence(c *gin.Context) error {
	st, o, err := s.loadOccurrence(c)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, occurrenceDetailOut(st, o))
	return nil
}

func (s *Server) completeOccurrence(c *gin.Context) error {
	return s.controlOccurrence(c, fsm.ActionComplete)
}

func (s *Server) skipOccurrence(c *gin.Context) error {
	return s.controlOccurrence(c, fsm.ActionSkip)
}

// controlOccurrence completes or skips a pending occurrence (000). The state
// machine checks the project and the status again, in the same transaction
// as the change, so a concurrent fire cannot slip in between; the local
// check first only spares the log a command that can only fail.
func (s *Server) controlOccurrence(c *gin.Context, action string) error {
	_, o, err := s.loadOccurrence(c)
	if err != nil {
		return err
	}
	cmd, err := fsm.OccurrenceControlCommand(fsm.OccurrenceControl{
		At: fsm.MillisOf(s.cfg.Now()), Action: action, IDs: []string{o.ID}, Project: o.Project, Initiator: initiator(c),
	})
	if err := s.applyOne(c, cmd, err); err != nil {
		return err
	}
	return s.writeOccurrence(c, http.StatusOK, o.ID)
}

// writeOccurrence answers with the occurrence id as the last write left it.
func (s *Server) writeOccurrence(c *gin.Context, status int, id string) error {
	st := s.cfg.Cluster.FSM().State()
	o, err := st.Occurrence(id)
	if err != nil {
		return err
	}
	c.JSON(status, occurrenceDetailOut(st, o))
	return nil
}

// triggerJob creates an occurrence now, whatever the schedule or status
// (000), delivered like a scheduled one. The fire is checked against the
// job's ModifyIndex, so a concurrent change (a poller tick above all) makes
// it a conflict; it is then rebuilt from the new state.
func (s *Server) triggerJob(c *gin.Context) error {
	project, err := s.project(c)
	if err != nil {
		return err
	}
	if err := s.checkQuota(project, fsm.QuotaPublish); err != nil {
		return err
	}
	id := c.Param("id")
	var occID string
	err = retryOnConflict(func() error {
		st := s.cfg.Cluster.FSM().State()
		job, err := inProject(st.Job, jobProject, "job", id, project)
		if err != nil {
			return err
		}
		now := s.cfg.Now()
		jf, err := scheduler.TriggerFire(st, job, s.cfg.Cluster.DeliveryNodes(), now)
		if err != nil {
			return err
		}
		cmd, err := fsm.Encode(fsm.CmdFire, &fsm.Fire{At: fsm.MillisOf(now), Initiator: initiator(c), Jobs: []fsm.JobFire{jf}})
		occID = jf.Occurrence.ID
		return s.applyOne(c, cmd, err)
	})
	if err != nil {
		return err
	}
	return s.writeOccurrence(c, http.StatusCreated, occID)
}
