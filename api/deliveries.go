package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
	"github.com/gin-gonic/gin"
)

// Limits of the dead-letter replay (004).
const (
	DefaultReplayLimit = 100
	MaxReplayLimit     = 1000
	// maxActionsPerCommand bounds one DeliveryControl command, so that a
	// large replay or release is several modest Raft entries rather than one
	// that holds up every other write while it applies.
	maxActionsPerCommand = 500
)

type deliveryJSON struct {
	ID           string  `json:"id"`
	Project      string  `json:"project"`
	Status       string  `json:"status"`
	JobID        *string `json:"jobId"`
	OccurrenceID *string `json:"occurrenceId"`
	EventID      *string `json:"eventId"`
	EndpointID   *string `json:"endpointId"`
	// Destination is "callback" for a job's inline callback, else the
	// endpoint id: one field to group a history by, whatever the source.
	Destination    string     `json:"destination"`
	Attempts       int        `json:"attempts"`
	MaxAttempts    int        `json:"maxAttempts"`
	NextAttemptAt  *time.Time `json:"nextAttemptAt"`
	AssignedNode   *string    `json:"assignedNode"`
	ScheduledFor   *time.Time `json:"scheduledFor"`
	LastStatusCode *int       `json:"lastStatusCode"`
	LastError      *string    `json:"lastError"`
	CreatedAt      *time.Time `json:"createdAt"`
	UpdatedAt      *time.Time `json:"updatedAt"`
	CompletedAt    *time.Time `json:"completedAt"`
}

type attemptJSON struct {
	Number          int        `json:"number"`
	Node            string     `json:"node"`
	StartedAt       *time.Time `json:"startedAt"`
	LatencyMs       int64      `json:"latencyMs"`
	StatusCode      *int       `json:"statusCode"`
	ResponseSummary string     `json:"responseSummary"`
	Error           *string    `json:"error"`
}

type deliveryDetailJSON struct {
	deliveryJSON
	// AttemptHistory lists every recorded HTTP call, oldest first; the
	// name differs from the count in "attempts", which lists keep.
	AttemptHistory []attemptJSON `json:"attemptHistory"`
}

func intPtr(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}

func deliveryOut(d *fsm.Delivery) deliveryJSON {
	dest := scheduler.CallbackDestination
	if d.EndpointID != "" {
		dest = d.EndpointID
	}
	out := deliveryJSON{
		ID: d.ID, Project: d.Project, Status: d.Status, JobID: strPtr(d.JobID), OccurrenceID: strPtr(d.OccurrenceID),
		EventID: strPtr(d.EventID), EndpointID: strPtr(d.EndpointID), Destination: dest,
		Attempts: d.Attempts, MaxAttempts: d.MaxAttempts, NextAttemptAt: timePtr(d.NextAttemptAt),
		AssignedNode: strPtr(d.AssignedNode), ScheduledFor: timePtr(d.ScheduledFor),
		LastStatusCode: intPtr(d.LastStatusCode), LastError: strPtr(d.LastError),
		CreatedAt: timePtr(d.CreatedAt), UpdatedAt: timePtr(d.UpdatedAt), CompletedAt: timePtr(d.CompletedAt),
	}
	if !d.Active() {
		// A due time means something only while an attempt is still to
		// come; the stored one of a finished or held delivery is stale.
		out.NextAttemptAt = nil
	}
	return out
}

func deliveriesOut(ds []*fsm.Delivery) []deliveryJSON {
	out := make([]deliveryJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, deliveryOut(d))
	}
	return out
}

func deliveryDetailOut(st *fsm.State, d *fsm.Delivery) deliveryDetailJSON {
	out := deliveryDetailJSON{deliveryJSON: deliveryOut(d), AttemptHistory: []attemptJSON{}}
	for _, a := range st.Attempts(d.ID) {
		out.AttemptHistory = append(out.AttemptHistory, attemptJSON{
			Number: a.Number, Node: a.Node, StartedAt: timePtr(a.StartedAt), LatencyMs: a.LatencyMs,
			StatusCode: intPtr(a.StatusCode), ResponseSummary: a.ResponseSummary, Error: strPtr(a.Error),
		})
	}
	return out
}

// listDeliveries is GET /v1/deliveries?status=&endpointId=&jobId=&from=&to=.
func (s *Server) listDeliveries(c *gin.Context) error {
	project, st, err := s.scope(c)
	if err != nil {
		return err
	}
	f, err := deliveryFilterParams(c, project)
	if err != nil {
		return err
	}
	return s.writeDeliveryPage(c, st, f)
}

func deliveryFilterParams(c *gin.Context, project string) (fsm.DeliveryFilter, error) {
	f := fsm.DeliveryFilter{Project: project}
	var err error
	if f.Status, err = statusParam(c, deliveryStatuses); err != nil {
		return f, err
	}
	if f.EndpointID, err = idParam(c, "endpointId"); err != nil {
		return f, err
	}
	if f.JobID, err = idParam(c, "jobId"); err != nil {
		return f, err
	}
	f.CreatedFrom, f.CreatedTo, err = timeRange(c.Query("from"), c.Query("to"))
	return f, err
}

// writeDeliveryPage answers one page of the deliveries f selects.
func (s *Server) writeDeliveryPage(c *gin.Context, st *fsm.State, f fsm.DeliveryFilter) error {
	limit, after, err := listParams(c)
	if err != nil {
		return err
	}
	ds, next := st.DeliveriesMatching(f, after, limit)
	c.JSON(http.StatusOK, listBody(deliveriesOut(ds), next))
	return nil
}

func (s *Server) loadDelivery(c *gin.Context) (*fsm.State, *fsm.Delivery, error) {
	return load(s, c, (*fsm.State).Delivery, deliveryProject, "delivery")
}

func (s *Server) getDelivery(c *gin.Context) error {
	st, d, err := s.loadDelivery(c)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, deliveryDetailOut(st, d))
	return nil
}

// retryBudget is how many more attempts a re-queued delivery gets: a fresh
// round of its target's retry policy, as if it were new, so a replayed dead
// letter is retried with the same patience as the original.
func retryBudget(st *fsm.State, d *fsm.Delivery) int {
	n := 0
	if d.EndpointID != "" {
		if ep, err := st.Endpoint(d.EndpointID); err == nil {
			n = ep.Retry.MaxAttempts
		}
	} else if job, err := st.Job(d.JobID); err == nil {
		n = job.Retry.MaxAttempts
	}
	return max(n, 1)
}

// requeueAction is the retry or release of d, placed now like a new
// delivery.
func (s *Server) requeueAction(st *fsm.State, d *fsm.Delivery, action string, nodes []string, now time.Time) fsm.DeliveryAction {
	node, lease := scheduler.RequeueLease(st, d, nodes, now)
	a := fsm.DeliveryAction{DeliveryID: d.ID, Action: action, Node: node, LeaseUntil: lease}
	if action == fsm.ActionRetry {
		a.MoreAttempts = retryBudget(st, d)
	}
	return a
}

// controlOne applies one delivery action built from fresh state and answers
// with the delivery after it.
func (s *Server) controlOne(c *gin.Context, build func(st *fsm.State, d *fsm.Delivery, now time.Time) fsm.DeliveryAction) error {
	st, d, err := s.loadDelivery(c)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	cmd, err := fsm.DeliveryControlCommand(fsm.DeliveryControl{At: fsm.MillisOf(now), Actions: []fsm.DeliveryAction{build(st, d, now)}})
	if err := s.applyOne(c, cmd, err); err != nil {
		return err
	}
	st = s.cfg.Cluster.FSM().State()
	after, err := st.Delivery(d.ID)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, deliveryDetailOut(st, after))
	return nil
}

// retryDelivery re-queues one dead-lettered or cancelled delivery (001);
// any other status is a 409 from the state machine. A cancelled one counts
// as undelivered again, so it is a publish for the quotas (a dead letter is
// already counted).
func (s *Server) retryDelivery(c *gin.Context) error {
	if _, d, err := s.loadDelivery(c); err != nil {
		return err
	} else if d.Status == fsm.DeliveryCancelled {
		if err := s.checkQuota(d.Project, fsm.QuotaPublish); err != nil {
			return err
		}
	}
	return s.controlOne(c, func(st *fsm.State, d *fsm.Delivery, now time.Time) fsm.DeliveryAction {
		return s.requeueAction(st, d, fsm.ActionRetry, s.cfg.Cluster.DeliveryNodes(), now)
	})
}

// cancelDelivery cancels a delivery that is not finished yet (004).
func (s *Server) cancelDelivery(c *gin.Context) error {
	return s.controlOne(c, func(_ *fsm.State, d *fsm.Delivery, _ time.Time) fsm.DeliveryAction {
		return fsm.DeliveryAction{DeliveryID: d.ID, Action: fsm.ActionCancel}
	})
}

type replayRequest struct {
	Status     string `json:"status"`
	EndpointID string `json:"endpointId"`
	JobID      string `json:"jobId"`
	From       string `json:"from"`
	To         string `json:"to"`
	Limit      *int   `json:"limit"`
}

// replayDeliveries re-queues the dead letters a filter selects (004), oldest
// id first, at most limit of them.
func (s *Server) replayDeliveries(c *gin.Context) error {
	project, err := s.project(c)
	if err != nil {
		return err
	}
	var req replayRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	f, limit, err := req.filter(project)
	if err != nil {
		return err
	}
	st := s.cfg.Cluster.FSM().State()
	ds, _ := st.DeliveriesMatching(f, "", limit)
	ids, err := s.requeue(c, st, ds, fsm.ActionRetry)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"requeued": len(ids), "ids": ids})
	return nil
}

func (r *replayRequest) filter(project string) (fsm.DeliveryFilter, int, error) {
	f := fsm.DeliveryFilter{Project: project, Status: fsm.DeliveryDeadLetter, EndpointID: r.EndpointID, JobID: r.JobID}
	if r.Status != "" && r.Status != fsm.DeliveryDeadLetter {
		// Only dead letters are replayed in bulk: a cancelled delivery was
		// stopped on purpose, and is retried one by one if at all.
		return f, 0, badRequest("status", fmt.Sprintf("status must be %s, not %q", fsm.DeliveryDeadLetter, r.Status))
	}
	if err := checkID("endpointId", r.EndpointID); err != nil {
		return f, 0, err
	}
	if err := checkID("jobId", r.JobID); err != nil {
		return f, 0, err
	}
	var err error
	if f.CreatedFrom, f.CreatedTo, err = timeRange(r.From, r.To); err != nil {
		return f, 0, err
	}
	limit := DefaultReplayLimit
	if r.Limit != nil {
		if *r.Limit < 1 || *r.Limit > MaxReplayLimit {
			return f, 0, badRequest("limit", fmt.Sprintf("limit must be from 1 to %d", MaxReplayLimit))
		}
		limit = *r.Limit
	}
	return f, limit, nil
}

// requeue retries or releases ds in commands of at most
// maxActionsPerCommand actions and returns the ids it re-queued. A delivery
// that changed meanwhile (retried by someone else, removed by retention) is
// left out rather than failing the others; a cluster error stops the run,
// and what was re-queued before it stays re-queued, so the caller can simply
// repeat the request.
func (s *Server) requeue(c *gin.Context, st *fsm.State, ds []*fsm.Delivery, action string) ([]string, error) {
	ids := []string{}
	nodes := s.cfg.Cluster.DeliveryNodes()
	for start := 0; start < len(ds); start += maxActionsPerCommand {
		chunk := ds[start:min(start+maxActionsPerCommand, len(ds))]
		now := s.cfg.Now()
		acts := make([]fsm.DeliveryAction, len(chunk))
		for i, d := range chunk {
			acts[i] = s.requeueAction(st, d, action, nodes, now)
		}
		cmd, err := fsm.DeliveryControlCommand(fsm.DeliveryControl{At: fsm.MillisOf(now), Actions: acts})
		errs, err := s.applyItems(c, cmd, err, len(acts))
		if err != nil {
			return ids, err
		}
		for i, e := range errs {
			switch {
			case e == nil:
				ids = append(ids, chunk[i].ID)
			case errors.Is(e, fsm.ErrConflict), errors.Is(e, fsm.ErrNotFound):
			default:
				return ids, e
			}
		}
	}
	return ids, nil
}
