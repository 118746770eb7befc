package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// GET /v1/stream: Server-Sent Events of every change to the caller's
// project's jobs, occurrences, deliveries, endpoints and events, on any node,
// as this node applies them (fsm/feed.go). Each change is one SSE event:
//
//	id: <raft index>
//	event: job.updated            (<resource>.<created|updated|deleted>)
//	data: {"resource":"job","op":"updated","id":"job_…","index":1234,"object":{…}}
//
// object is what GET of that resource answers (for a deletion: the object
// as it was). The stream opens with a "ready" event carrying the node's
// applied index, sends a comment every StreamHeartbeat so proxies keep it
// open, and ends with a "reset" event when the node drops it (the client was
// too slow, or the state was restored): the client should then re-read what
// it shows and reconnect. A stream cannot resume from Last-Event-ID: the feed
// is not a log. ?resources=jobs,deliveries narrows it.

// StreamHeartbeat is the interval of the keep-alive comment.
const StreamHeartbeat = 15 * time.Second

// Stream limits on one node (the node as a whole serves fsm.MaxSubscribers,
// 256): one token may hold DefaultStreamsPerToken, one project
// DefaultStreamsPerProject (Config overrides both), and the last
// StreamsReserved places are kept for tokens that are admin and bound to no
// project, so that no tenant, nor a few together, can lock the operators
// out. Beyond a token's or a project's limit: 429 with Retry-After.
const (
	DefaultStreamsPerToken   = 16
	DefaultStreamsPerProject = 64
	StreamsReserved          = 16
	streamRetryAfter         = 5 // seconds
)

// streamSlots counts this node's open streams by token and project.
type streamSlots struct {
	mu        sync.Mutex
	total     int
	byToken   map[string]int
	byProject map[string]int
}

// acquireStream takes a place for a stream of tok in project, or says why
// not; release gives it back. A cluster-wide admin token (the root) is held
// to its own per-token limit only, and may use the reserved places.
func (s *Server) acquireStream(c *gin.Context, tok *fsm.Token, project string) (release func(), err error) {
	operator := tok.Project == "" && hasScope(tok, ScopeAdmin)
	sl := &s.streams
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.byToken == nil {
		sl.byToken, sl.byProject = map[string]int{}, map[string]int{}
	}
	tooMany := func(msg string) error {
		return &Error{Status: http.StatusTooManyRequests, Code: "too_many_streams", Message: msg, RetryAfter: streamRetryAfter}
	}
	switch {
	case sl.byToken[tok.ID] >= s.cfg.StreamsPerToken:
		return nil, tooMany(fmt.Sprintf("this token holds %d streams on this node, its limit; close one first", s.cfg.StreamsPerToken))
	case !operator && sl.byProject[project] >= s.cfg.StreamsPerProject:
		return nil, tooMany(fmt.Sprintf("project %q holds %d streams on this node, its limit; close one first or use another node", project, s.cfg.StreamsPerProject))
	case !operator && sl.total >= fsm.MaxSubscribers-StreamsReserved:
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: "too_many_streams", RetryAfter: streamRetryAfter,
			Message: fmt.Sprintf("this node serves %d streams already (the rest are kept for operators); use another node or try later", sl.total)}
	}
	sl.total++
	sl.byToken[tok.ID]++
	if !operator {
		sl.byProject[project]++
	}
	return func() {
		sl.mu.Lock()
		defer sl.mu.Unlock()
		sl.total--
		if sl.byToken[tok.ID]--; sl.byToken[tok.ID] == 0 {
			delete(sl.byToken, tok.ID)
		}
		if !operator {
			if sl.byProject[project]--; sl.byProject[project] == 0 {
				delete(sl.byProject, project)
			}
		}
	}, nil
}

// streamBuffer is how many applied batches a stream may fall behind before it
// is reset.
const streamBuffer = 1024

// streamResources maps ?resources= names (plural or singular) to tables.
var streamResources = map[string]string{
	"jobs": fsm.TableJobs, "job": fsm.TableJobs,
	"occurrences": fsm.TableOccurrences, "occurrence": fsm.TableOccurrences,
	"deliveries": fsm.TableDeliveries, "delivery": fsm.TableDeliveries,
	"endpoints": fsm.TableEndpoints, "endpoint": fsm.TableEndpoints,
	"events": fsm.TableEvents, "event": fsm.TableEvents,
}

// streamChange is the data of one stream event.
type streamChange struct {
	Resource string `json:"resource"`
	Op       string `json:"op"`
	ID       string `json:"id"`
	Index    uint64 `json:"index"`
	Object   any    `json:"object"`
}

func (s *Server) stream(c *gin.Context) error {
	project, err := s.project(c)
	if err != nil {
		return err
	}
	tables := map[string]bool{}
	if v := c.Query("resources"); v != "" {
		for _, r := range strings.Split(v, ",") {
			t, ok := streamResources[strings.TrimSpace(r)]
			if !ok {
				return badRequest("resources", fmt.Sprintf("unknown resource %q: use jobs, occurrences, deliveries, endpoints or events", r))
			}
			tables[t] = true
		}
	}
	tok := caller(c)
	if tok == nil {
		return unauthorized("a stream needs a token")
	}
	release, err := s.acquireStream(c, tok, project)
	if err != nil {
		return err
	}
	defer release()
	sub, err := s.cfg.Cluster.FSM().Subscribe(streamBuffer)
	if errors.Is(err, fsm.ErrTooManySubscribers) {
		return &Error{Status: http.StatusServiceUnavailable, Code: "too_many_streams",
			Message: fmt.Sprintf("this node serves %d streams already; use another node or try later", fsm.MaxSubscribers)}
	}
	if err != nil {
		return err
	}
	defer sub.Close()

	w := c.Writer
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives any write timeout

	send := func(id uint64, event string, data any) error {
		b, err := json.Marshal(data)
		if err != nil {
			return err
		}
		if id != 0 {
			fmt.Fprintf(w, "id: %d\n", id)
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	applied := s.cfg.Cluster.FSM().AppliedIndex()
	if err := send(applied, "ready", map[string]any{"node": s.cfg.Cluster.NodeID(), "index": applied, "project": project}); err != nil {
		return nil // the client is gone
	}
	beat := time.NewTicker(StreamHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-c.Request.Context().Done():
			return nil
		case <-s.closing:
			_ = send(0, "reset", map[string]string{"reason": "the node is shutting down"})
			return nil
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return nil
			}
		case b, ok := <-sub.C:
			if !ok {
				_ = send(0, "reset", map[string]string{"reason": sub.Reset()})
				return nil
			}
			st := s.cfg.Cluster.FSM().State()
			for _, ch := range b.Changes {
				if ch.Project != project || (len(tables) > 0 && !tables[ch.Table]) {
					continue
				}
				out := streamOut(st, ch)
				out.Index = b.Index
				if err := send(b.Index, out.Resource+"."+ch.Op, out); err != nil {
					return nil
				}
			}
		}
	}
}

// streamOut renders a change as the API shows its object.
func streamOut(st *fsm.State, ch fsm.Change) streamChange {
	out := streamChange{Op: ch.Op, ID: ch.ID}
	switch o := ch.Object.(type) {
	case *fsm.Job:
		out.Resource, out.Object = "job", jobOut(st, o)
	case *fsm.Occurrence:
		out.Resource, out.Object = "occurrence", occurrenceOut(o)
	case *fsm.Delivery:
		out.Resource, out.Object = "delivery", deliveryOut(o)
	case *fsm.Endpoint:
		out.Resource, out.Object = "endpoint", endpointOut(o)
	case *fsm.Event:
		out.Resource, out.Object = "event", eventOut(o)
	default:
		out.Resource = ch.Table
	}
	return out
}

// CloseStreams ends every open stream with a "reset" event; the agent calls
// it when its HTTP server shuts down (which otherwise waits for streams, as
// they are never idle).
func (s *Server) CloseStreams() {
	s.closeOnce.Do(func() { close(s.closing) })
}
