package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/chime-sched/chime/dispatch"
	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// MaxRotationGraceSeconds bounds how long an old endpoint secret keeps
// signing after a rotation (7 days).
const MaxRotationGraceSeconds = 7 * 24 * 3600

// changeEndpoint applies change to the endpoint of the path (CAS, retried on
// a conflict: the state machine changes endpoints too, with the failure
// counter and auto-deactivation, and a blind Put would undo that) and
// returns it after. change returns false when the endpoint is already as
// asked: nothing is written.
func (s *Server) changeEndpoint(c *gin.Context, change func(ep *fsm.Endpoint, now time.Time) (bool, error)) (*fsm.Endpoint, error) {
	project, err := s.project(c)
	if err != nil {
		return nil, err
	}
	id := c.Param("id")
	var out fsm.Endpoint
	err = retryOnConflict(func() error {
		cur, err := inProject(s.cfg.Cluster.FSM().State().Endpoint, endpointProject, "endpoint", id, project)
		if err != nil {
			return err
		}
		ep := *cur
		now := s.cfg.Now()
		out = ep
		if write, err := change(&ep, now); err != nil || !write {
			return err
		}
		ep.UpdatedAt = fsm.MillisOf(now)
		out = ep
		cmd, err := fsm.PutCommand(fsm.TableEndpoints, &ep, fsm.PutOptions{IfIndex: cur.ModifyIndex, Initiator: initiator(c)})
		return s.apply(c, cmd, err)
	})
	return &out, err
}

// patchEndpoint is PATCH /v1/endpoints/{id}: the fields given replace the
// stored ones, with the rules of creation. The secret changes only through
// rotate-secret; enabling here does not release held deliveries (use
// enable?releaseHeld=true).
func (s *Server) patchEndpoint(c *gin.Context) error {
	var patch map[string]json.RawMessage
	if err := s.decodeJSON(c, &patch); err != nil {
		return err
	}
	if len(patch) == 0 {
		return badRequest("", "give at least one field to change")
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, newHeaders := patch["headers"]
	ep, err := s.changeEndpoint(c, func(ep *fsm.Endpoint, _ time.Time) (bool, error) {
		// Copies: decoding into the stored map or slice would change the
		// record in place, outside Raft, even for a patch that is refused.
		rp := retryOut(ep.Retry)
		req := endpointRequest{URL: ep.URL, Description: ep.Description, EventTypes: slices.Clone(ep.EventTypes),
			Method: ep.Method, Headers: maps.Clone(ep.Headers), TimeoutSeconds: float64(ep.TimeoutMs) / 1000, RetryPolicy: &rp}
		if newHeaders {
			req.Headers = nil // given headers replace the stored ones; decoding into a map would merge
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return false, jsonError(err)
		}
		return true, setEndpoint(ep, &req)
	})
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, endpointOut(ep))
	return nil
}

type rotateRequest struct {
	GraceSeconds int64 `json:"graceSeconds"`
}

type rotatedJSON struct {
	endpointJSON
	Secret string `json:"secret"`
	// PreviousSecretExpiresAt is when the old secret stops signing; null when
	// it stopped at once (graceSeconds 0, as in 001).
	PreviousSecretExpiresAt *time.Time `json:"previousSecretExpiresAt"`
}

// rotateSecret is POST /v1/endpoints/{id}/rotate-secret {"graceSeconds"}:
// a new secret, shown in this answer only. During the grace period both
// secrets sign webhook-signature; X-Webhook-Signature uses the new one.
func (s *Server) rotateSecret(c *gin.Context) error {
	var req rotateRequest
	if c.Request.ContentLength != 0 {
		if err := s.decodeJSON(c, &req); err != nil {
			return err
		}
	}
	if req.GraceSeconds < 0 || req.GraceSeconds > MaxRotationGraceSeconds {
		return badRequest("graceSeconds", fmt.Sprintf("graceSeconds must be from 0 to %d", MaxRotationGraceSeconds))
	}
	ep, err := s.changeEndpoint(c, func(ep *fsm.Endpoint, now time.Time) (bool, error) {
		secret, err := dispatch.NewSecret()
		if err != nil {
			return false, err
		}
		ep.PreviousSecret, ep.PreviousSecretUntil = "", 0
		if req.GraceSeconds > 0 {
			ep.PreviousSecret = ep.Secret
			ep.PreviousSecretUntil = fsm.MillisOf(now.Add(time.Duration(req.GraceSeconds) * time.Second))
		}
		ep.Secret = secret
		return true, nil
	})
	if err != nil {
		return err
	}
	withhold(c, "secret")
	c.JSON(http.StatusOK, rotatedJSON{endpointJSON: endpointOut(ep), Secret: ep.Secret, PreviousSecretExpiresAt: timePtr(ep.PreviousSecretUntil)})
	return nil
}

// deleteEndpoint is DELETE /v1/endpoints/{id}: the endpoint and its delivery
// history go (001). The endpoint is deleted first, so no new delivery is
// planned for it; then its unfinished deliveries are cancelled (so their
// occurrences can complete) and every delivery and attempt of it is deleted,
// in commands of at most 500 items. If the node stops half-way, what is left
// is history of a deleted endpoint: it fails as "target gone" if it was
// still due, and retention removes it.
func (s *Server) deleteEndpoint(c *gin.Context) error {
	project, err := s.project(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	cur, err := inProject(s.cfg.Cluster.FSM().State().Endpoint, endpointProject, "endpoint", id, project)
	if err != nil {
		return err
	}
	cmd, err := fsm.DeleteCommand(fsm.TableEndpoints, id, 0)
	if err := s.apply(c, cmd, err); err != nil {
		return err
	}
	f := fsm.DeliveryFilter{Project: cur.Project, EndpointID: id}
	removed := 0
	for {
		st := s.cfg.Cluster.FSM().State()
		ds, _ := st.DeliveriesMatching(f, "", maxActionsPerCommand)
		if len(ds) == 0 {
			break
		}
		var cancel []fsm.DeliveryAction
		var dels [][]byte
		for _, d := range ds {
			if !d.Terminal() {
				cancel = append(cancel, fsm.DeliveryAction{DeliveryID: d.ID, Action: fsm.ActionCancel})
			}
			for _, a := range st.Attempts(d.ID) {
				c, err := fsm.DeleteCommand(fsm.TableAttempts, fsm.AttemptID(a.DeliveryID, a.Number), 0)
				if err != nil {
					return err
				}
				dels = append(dels, c)
			}
			c, err := fsm.DeleteCommand(fsm.TableDeliveries, d.ID, 0)
			if err != nil {
				return err
			}
			dels = append(dels, c)
		}
		if len(cancel) > 0 {
			cmd, err := fsm.DeliveryControlCommand(fsm.DeliveryControl{At: fsm.MillisOf(s.cfg.Now()), Actions: cancel})
			if err := s.apply(c, cmd, err); err != nil {
				return err
			}
		}
		for len(dels) > 0 {
			n := min(len(dels), maxActionsPerCommand)
			cmd, err := fsm.BatchCommand(dels[:n]...)
			if err := s.apply(c, cmd, err); err != nil {
				return err
			}
			dels = dels[n:]
		}
		removed += len(ds)
	}
	c.JSON(http.StatusOK, gin.H{"id": id, "deleted": true, "deliveriesRemoved": removed})
	return nil
}
