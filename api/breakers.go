package api

import (
	"time"

	"github.com/chime-sched/chime/fsm"
)

// breakerJSON is an endpoint's circuit breaker (fsm/breaker.go) as GET
// /v1/endpoints/{id} and the endpoint list show it. The state is replicated,
// so every node shows what every dispatcher acts on; only the passage from
// open to half_open is read with this node's clock.
type breakerJSON struct {
	// State: closed (calls go), open (no call until `until`), half_open (one
	// probe call at a time; its answer closes the breaker, its failure
	// reopens it for twice as long).
	State string `json:"state"`
	// Since: when it opened (open), or when it became half-open; null when
	// closed.
	Since *time.Time `json:"since"`
	// Until: when an open breaker becomes half-open; null otherwise.
	Until *time.Time `json:"until"`
	// ConsecutiveUnreachable counts attempts in a row with no HTTP answer
	// (timeout, connection error); BreakerThreshold of them open it.
	ConsecutiveUnreachable int    `json:"consecutiveUnreachable"`
	LastError              string `json:"lastError,omitempty"`
}

func (s *Server) withBreaker(st *fsm.State, out endpointJSON) endpointJSON {
	b := st.Breaker(fsm.BreakerKeyEndpoint(out.ID))
	bj := &breakerJSON{State: b.StateAt(fsm.MillisOf(s.cfg.Now()))}
	if b != nil {
		bj.ConsecutiveUnreachable, bj.LastError = b.Failures, b.LastError
		switch bj.State {
		case fsm.BreakerOpen:
			bj.Since, bj.Until = timePtr(b.OpenedAt), timePtr(b.Until)
		case fsm.BreakerHalfOpen:
			bj.Since = timePtr(b.Until)
		}
	}
	out.Breaker = bj
	return out
}
