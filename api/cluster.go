package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/chime-sched/chime/cluster"
	"github.com/gin-gonic/gin"
)

func (s *Server) health(c *gin.Context) error {
	c.JSON(http.StatusOK, gin.H{"status": "ok", "nodeId": s.cfg.Cluster.NodeID(), "version": s.cfg.Version})
	return nil
}

func (s *Server) ready(c *gin.Context) error {
	ok, reason := s.cfg.Cluster.Readiness()
	if !ok {
		return fmt.Errorf("%w: %s", errNotReady, reason)
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "nodeId": s.cfg.Cluster.NodeID()})
	return nil
}

func (s *Server) clusterStatus(c *gin.Context) error {
	c.JSON(http.StatusOK, s.cfg.Cluster.Status())
	return nil
}

type transferRequest struct {
	To string `json:"to"`
}

func (s *Server) transferLeadership(c *gin.Context) error {
	var req transferRequest
	if c.Request.ContentLength != 0 {
		if err := s.decodeJSON(c, &req); err != nil {
			return err
		}
	}
	if err := s.cfg.Cluster.TransferLeadership(c.Request.Context(), req.To); err != nil {
		return err
	}
	c.JSON(http.StatusOK, s.cfg.Cluster.Status())
	return nil
}

func (s *Server) removePeer(c *gin.Context) error {
	if err := s.cfg.Cluster.RemovePeer(c.Request.Context(), c.Param("id")); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// snapshot streams a consistent snapshot of the whole state: the node first
// catches up with the leader's commit index, then writes its own state.
func (s *Server) snapshot(c *gin.Context) error {
	if err := s.cfg.Cluster.ReadBarrier(c.Request.Context()); err != nil {
		return err
	}
	st := s.cfg.Cluster.FSM().State()
	name := fmt.Sprintf("chime-%s-%d-%s.snap", s.cfg.Cluster.NodeID(), st.Index(), s.cfg.Now().UTC().Format("20060102T150405Z"))
	c.Header("Content-Type", "application/octet-stream")
	c.Header("Content-Disposition", `attachment; filename="`+name+`"`)
	c.Status(http.StatusOK)
	if err := s.cfg.Cluster.WriteBackup(c.Writer, st); err != nil {
		// The status line is gone; a truncated stream fails the restore's
		// end-marker check, so a partial download can never be restored.
		s.logger.Error("snapshot download failed", "error", err)
	}
	return nil
}

// restore replaces the cluster's state with an uploaded backup. One this
// cluster did not sign (another cluster's, or an older release's) needs
// ?foreign=true.
func (s *Server) restore(c *gin.Context) error {
	start := time.Now()
	foreign, err := boolParam(c, "foreign")
	if err != nil {
		return err
	}
	// The upload is read under the same minimum rate as every body (it
	// is spooled to a file before anything is checked or changed), so a
	// trickling upload cannot hold the restore path for good.
	done := s.timedBody(c)
	err = s.cfg.Cluster.Restore(c.Request.Context(), c.Request.Body, cluster.RestoreOptions{Foreign: foreign})
	done()
	if err != nil {
		return err
	}
	// Through a follower the restore ran on the leader: catch up first, so
	// the answer (and the caller's next read here) shows the restored state.
	if err := s.cfg.Cluster.ReadBarrier(c.Request.Context()); err != nil {
		return err
	}
	st := s.cfg.Cluster.FSM().State()
	c.JSON(http.StatusOK, gin.H{"restored": true, "appliedIndex": st.Index(), "durationMs": time.Since(start).Milliseconds()})
	return nil
}
