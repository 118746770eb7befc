package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// Idempotency-Key (as Stripe and the IETF draft use it): a POST sent again
// with the same key within IdempotencyWindow gets the first answer back
// (same status and body, plus Idempotent-Replayed: true) instead of doing
// the work twice. Keys are scoped to the request's project.
//
// A key belongs to the token that sent it first (the record keeps that
// token's id, never the token): another token with the same key gets 409
// idempotency_key_other_caller, whatever its body, and never the answer.
// The route's authorisation runs first (the scope middleware precedes this
// one, and the request's project is resolved against the token's binding
// before the key is looked up); checks that depend on the body cannot
// differ for the same token and the same body. An answer that carries a
// secret (a new token, an endpoint's signing secret) is stored without it:
// the handler names the fields (withhold), and a replay answers without
// them and with Chime-Secret-Withheld naming them, because a secret is
// shown once and the record sits in the Raft log and snapshots.
//
// The first request claims the key in the replicated state before it runs
// (a CAS on the record), so two concurrent requests with one key cannot both
// run: the second gets 409 idempotency_in_progress and should retry. When the
// first finishes its answer replaces the claim. A key sent again with another
// method, path, query or body is a client bug: 422 idempotency_key_reused.
//
// Answers are remembered when they say what happened for good: 2xx and 4xx
// but 409 and 429. For a 409, a 429 or a 5xx (above all 503
// outcome_unknown) the claim is released so that a retry runs afresh; if the
// node dies between claim and answer, the claim lapses after
// idempotencyClaim (claimFor) and a retry takes it over.
//
// Neither can make a request run twice: the request's first write is
// guarded by its claim (one Raft command holds the write and a mark on the
// claim, and applies only while the claim is unchanged, see
// guardIdempotent). A release or takeover that commits first makes the old
// write a no-op; a write that commits first marks the claim Applied, so the
// release no longer matches and a retry learns that the request was applied
// but its answer lost (409 idempotency_answer_lost), instead of running it
// again.

// IdempotencyWindow is how long an answer is remembered.
const IdempotencyWindow = 24 * time.Hour

// MaxIdempotencyKeyLen bounds the Idempotency-Key header.
const MaxIdempotencyKeyLen = 255

// idempotencyClaim is how long a first request holds its key: about as long
// as a write may take (its claim, its write and its answer are Raft commands
// of at most 10 s each, retried while there is no leader). The test call
// waits for its attempt, up to the endpoint's timeout (60 s at most) + 10 s,
// so it holds its key longer. A request that outlives its claim is still
// safe (its guarded write fails once a retry has taken the key over); a
// shorter claim means that a key whose node died or was cut off mid-request
// is usable again sooner.
const (
	idempotencyClaim     = 45 * time.Second
	idempotencyClaimTest = 90 * time.Second
)

// claimFor is the claim of a request on route (gin's full path).
func claimFor(route string) time.Duration {
	if route == "/v1/endpoints/:id/test" {
		return idempotencyClaimTest
	}
	return idempotencyClaim
}

// HeaderIdempotencyKey and HeaderReplayed are the request and answer headers.
// HeaderSecretWithheld on a replay names (comma-separated) the answer's
// fields that held a secret and were left out: the secret was shown once,
// in the first answer.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
	HeaderSecretWithheld = "Chime-Secret-Withheld"
)

// ctxWithheld holds the answer fields a handler marked as secret.
const ctxWithheld = "chime.idempotency.withheld"

// withhold marks fields of the answer c is about to write as secret: a
// remembered answer is stored without them.
func withhold(c *gin.Context, fields ...string) { c.Set(ctxWithheld, fields) }

// stripSecrets returns body without the top-level fields named, or ok
// false when body is not a JSON object that can be rewritten (then the
// answer must not be stored at all).
func stripSecrets(body []byte, fields []string) (out []byte, ok bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, false
	}
	for _, f := range fields {
		delete(m, f)
	}
	out, err := json.Marshal(m)
	return out, err == nil
}

// idempotent is the middleware of the POST routes that change state.
func (s *Server) idempotent(c *gin.Context) {
	key := c.GetHeader(HeaderIdempotencyKey)
	if key == "" {
		c.Next()
		return
	}
	if err := s.runIdempotent(c, key); err != nil {
		fail(c, s.logger, err)
	}
	// runIdempotent ran the handler itself (c.Next) or answered instead of
	// it (a replay, an error): either way the chain is done.
	c.Abort()
}

func (s *Server) runIdempotent(c *gin.Context, key string) error {
	if len(key) > MaxIdempotencyKeyLen {
		return badRequest(HeaderIdempotencyKey, fmt.Sprintf("the key is %d bytes; the limit is %d", len(key), MaxIdempotencyKeyLen))
	}
	for _, r := range key {
		if r < 0x21 || r > 0x7e {
			return badRequest(HeaderIdempotencyKey, "use printable ASCII without spaces (a UUID, say)")
		}
	}
	// The project is resolved (and checked against the token's binding)
	// before the key is looked up: a replay never skips authorisation.
	project, err := s.project(c)
	if err != nil {
		return err
	}
	tok := caller(c)
	if tok == nil {
		// Every keyed route is authenticated; without a caller there is
		// no one to bind the key to, so it is not remembered.
		c.Next()
		return nil
	}
	// The body is read here to fingerprint it, and handed on unchanged; one
	// too large is left for the handler to refuse (413), unremembered.
	done := s.timedBody(c)
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, s.cfg.MaxBodyBytes+1))
	done()
	if err != nil {
		return bodyError(err)
	}
	c.Request.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), c.Request.Body))
	if int64(len(body)) > s.cfg.MaxBodyBytes {
		c.Next()
		return nil
	}
	fp := fingerprint(c.Request.Method, c.Request.URL.Path, c.Request.URL.RawQuery, body)
	id := project + "/" + key

	if err := s.preClaimQuota(c, project, id); err != nil {
		return err
	}
	claim, replay, err := s.claimKey(c, id, fp, tok)
	if err != nil || replay != nil {
		if replay != nil {
			body, withheld := replay.Body, replay.Withheld
			if replay.Caller == "" {
				body, withheld = scrubLegacy(body)
			}
			c.Header(HeaderReplayed, "true")
			if len(withheld) > 0 {
				c.Header(HeaderSecretWithheld, strings.Join(withheld, ","))
			}
			c.Data(replay.Status, "application/json; charset=utf-8", body)
		}
		return err
	}

	held := &heldClaim{rec: claim}
	c.Set(ctxIdemClaim, held)
	w := &capturingWriter{ResponseWriter: c.Writer, limit: int(s.cfg.MaxBodyBytes)}
	c.Writer = w
	c.Next()
	c.Writer = w.ResponseWriter
	claim = held.rec // the guarded write may have marked it

	// The answer is stored even if the client has gone: a retry must find it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), 10*time.Second)
	defer cancel()
	status := w.Status()
	var cmd []byte
	final := status < 500 && status != http.StatusConflict && status != http.StatusTooManyRequests
	body, storable := w.body.Bytes(), !w.overflow
	var withheld []string
	if v, ok := c.Get(ctxWithheld); ok && storable {
		withheld = v.([]string)
		body, storable = stripSecrets(body, withheld)
	}
	switch {
	case final && storable:
		done := *claim
		done.Status, done.Body, done.ClaimUntil, done.Withheld = status, body, 0, withheld
		cmd, err = fsm.PutCommand(fsm.TableIdempotency, &done, fsm.PutOptions{IfIndex: claim.ModifyIndex})
	case claim.Applied:
		// The write is in (an answer too large to keep, or a 5xx after the
		// write): end the claim now, so a retry hears at once that the
		// answer is lost rather than waiting for the claim to lapse.
		cmd, err = s.endClaim(claim)
	default:
		cmd, err = fsm.Encode(fsm.CmdDelete, &fsm.Delete{Table: fsm.TableIdempotency, ID: id, IfIndex: claim.ModifyIndex})
	}
	if err == nil {
		_, err = s.cfg.Cluster.Apply(ctx, cmd)
	}
	if errors.Is(err, fsm.ErrConflict) && !claim.Applied {
		// The release lost to the guarded write, which committed after all
		// (its outcome was unknown here): end the claim as above.
		if rec, rerr := s.cfg.Cluster.FSM().State().Idempotency(id); rerr == nil && rec.Applied && rec.Status == 0 {
			if cmd, err = s.endClaim(rec); err == nil {
				_, err = s.cfg.Cluster.Apply(ctx, cmd)
			}
		}
	}
	if err != nil {
		s.logger.Warn("idempotency key not settled; it lapses on its own", "key_id", id, "status", status, "error", err)
	}
	return nil
}

// fingerprint identifies a request under a key: its method, path, query and
// body (not its caller: that is compared on its own, see claimKey).
func fingerprint(method, path, query string, body []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", method, path, query)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// endClaim is the command that ends rec's claim now, keeping the rest.
func (s *Server) endClaim(rec *fsm.IdempotencyRecord) ([]byte, error) {
	done := *rec
	done.ClaimUntil = fsm.MillisOf(s.cfg.Now())
	return fsm.PutCommand(fsm.TableIdempotency, &done, fsm.PutOptions{IfIndex: rec.ModifyIndex})
}

// ctxIdemClaim holds the *heldClaim of a keyed request while it runs.
const ctxIdemClaim = "chime.idempotency.claim"

// heldClaim is a keyed request's claim; guarded says its write has been
// wrapped (only the first write is: the claim's index moves with it).
type heldClaim struct {
	rec     *fsm.IdempotencyRecord
	guarded bool
}

// errClaimLost: the claim was released or taken over before the write
// committed, so the write was not applied.
func errClaimLost() error {
	return &Error{Status: http.StatusConflict, Code: "idempotency_in_progress", Field: HeaderIdempotencyKey,
		Message: "another request with this Idempotency-Key took it over; nothing was changed by this one; retry to get its answer"}
}

// guardIdempotent wraps the first write of a keyed request into one batch
// with a mark on its claim, applied only while the claim is unchanged (see
// the package comment above). settle unwraps the result: the write's own
// result and domain error, or errClaimLost. Requests without a key, later
// writes of the same request, and batches (which cannot nest) pass as they
// are.
func (s *Server) guardIdempotent(c *gin.Context, cmd []byte) ([]byte, func(*fsm.Result, error) (*fsm.Result, error), error) {
	plain := func(res *fsm.Result, err error) (*fsm.Result, error) { return res, err }
	v, ok := c.Get(ctxIdemClaim)
	held, _ := v.(*heldClaim)
	if !ok || held == nil || held.guarded {
		return cmd, plain, nil
	}
	if t, err := fsm.TypeOf(cmd); err != nil || t == fsm.CmdBatch {
		return cmd, plain, nil
	}
	held.guarded = true
	claim := held.rec
	marked := *claim
	marked.Applied = true
	mark, err := fsm.PutCommand(fsm.TableIdempotency, &marked, fsm.PutOptions{IfIndex: claim.ModifyIndex})
	if err != nil {
		return nil, nil, err
	}
	batch, err := fsm.Encode(fsm.CmdBatch, &fsm.Batch{
		Guard:       &fsm.Guard{Table: fsm.TableIdempotency, ID: claim.ID, IfIndex: claim.ModifyIndex},
		StopOnError: true,
		Commands:    [][]byte{cmd, mark},
	})
	if err != nil {
		return nil, nil, err
	}
	settle := func(res *fsm.Result, err error) (*fsm.Result, error) {
		switch {
		case res == nil:
			return nil, err // not committed, or not known to be
		case res.Err != nil:
			return nil, errClaimLost() // the guard failed: nothing applied
		case len(res.Results) != 2:
			return nil, fmt.Errorf("guarded write at index %d returned %d results", res.Index, len(res.Results))
		}
		if res.Results[1].Err == nil {
			marked.ModifyIndex = res.Index
			held.rec = &marked
		}
		inner := res.Results[0]
		if err != nil {
			return inner, err // committed, but e.g. not yet applied on this node
		}
		return inner, inner.Err
	}
	return batch, settle, nil
}

// claimKey claims id for this request, or returns the remembered answer to
// replay, or the error to answer with.
//
// The caller check comes first, before the fingerprint's: another token
// learns nothing of the first request, not even whether its body matched.
//
// A record without a caller was stored by a node of an older version (during
// a rolling upgrade, and for IdempotencyWindow after it): it is answered to
// operators only (admin tokens bound to no project, who may do anything its
// request did), scrubbed of secrets (scrubLegacy), and is another caller's
// for everyone else.
func (s *Server) claimKey(c *gin.Context, id, fp string, tok *fsm.Token) (claim, replay *fsm.IdempotencyRecord, err error) {
	callerID, operator := tok.ID, tok.Project == "" && hasScope(tok, ScopeAdmin)
	for range maxConflictRetries + 1 {
		now := fsm.MillisOf(s.cfg.Now())
		opts := fsm.PutOptions{IfAbsent: true}
		if rec, err := s.cfg.Cluster.FSM().State().Idempotency(id); err == nil {
			switch {
			case rec.ExpiresAt <= now:
				opts = fsm.PutOptions{IfIndex: rec.ModifyIndex} // expired, not yet pruned: take it over
			case rec.Caller != callerID && (rec.Caller != "" || !operator):
				return nil, nil, &Error{Status: http.StatusConflict, Code: "idempotency_key_other_caller", Field: HeaderIdempotencyKey,
					Message: "this Idempotency-Key is in use by another token in this project (or by a node of an older version); use a new key"}
			case rec.Fingerprint != fp:
				return nil, nil, &Error{Status: http.StatusUnprocessableEntity, Code: "idempotency_key_reused", Field: HeaderIdempotencyKey,
					Message: "this Idempotency-Key was used with another request (method, path, query or body); use a new key for a new request"}
			case rec.Status != 0:
				return nil, rec, nil
			case rec.ClaimUntil > now:
				return nil, nil, errKeyInProgress()
			case rec.Applied:
				return nil, nil, &Error{Status: http.StatusConflict, Code: "idempotency_answer_lost", Field: HeaderIdempotencyKey,
					Message: "a request with this Idempotency-Key was applied, but the node handling it failed before its answer was stored; do not send it again: read the result instead (GET)"}
			default:
				opts = fsm.PutOptions{IfIndex: rec.ModifyIndex} // its first request died: take over
			}
		}
		rec := &fsm.IdempotencyRecord{ID: id, Fingerprint: fp, Caller: callerID, ClaimUntil: now + fsm.Millis(claimFor(c.FullPath()).Milliseconds()),
			CreatedAt: now, ExpiresAt: now + fsm.Millis(IdempotencyWindow.Milliseconds())}
		cmd, err := fsm.PutCommand(fsm.TableIdempotency, rec, opts)
		if err := s.apply(c, cmd, err); err != nil {
			if errors.Is(err, fsm.ErrConflict) || errors.Is(err, fsm.ErrNotFound) {
				// Someone moved first; read what they left (Apply has
				// waited for this node to apply the refusing command, so
				// the local state shows it).
				continue
			}
			return nil, nil, err
		}
		stored, err := s.cfg.Cluster.FSM().State().Idempotency(id)
		if err != nil {
			return nil, nil, err
		}
		return stored, nil, nil
	}
	return nil, nil, errKeyInProgress()
}

func errKeyInProgress() error {
	return &Error{Status: http.StatusConflict, Code: "idempotency_in_progress", Field: HeaderIdempotencyKey, RetryAfter: 1,
		Message: "a request with this Idempotency-Key is still running; retry in a moment to get its answer"}
}

// legacySecretFields are the answer fields that carried a secret before
// answers were stored without them (withhold): a token's "token", an
// endpoint's "secret" (create and rotation).
var legacySecretFields = []string{"token", "secret"}

// scrubLegacy is a record body of an older version as it may be replayed:
// without the secret fields it has, header values masked. A body that is
// not a JSON object is replaced by an empty one rather than risk a secret.
func scrubLegacy(body []byte) ([]byte, []string) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return []byte("{}"), nil
	}
	var withheld []string
	for _, f := range legacySecretFields {
		if _, ok := m[f]; ok {
			delete(m, f)
			withheld = append(withheld, f)
		}
	}
	if raw, ok := m["headers"]; ok {
		var h map[string]string
		if json.Unmarshal(raw, &h) != nil {
			delete(m, "headers")
		} else if len(h) > 0 {
			masked, _ := json.Marshal(fsm.MaskHeaders(h))
			m["headers"] = masked
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return []byte("{}"), withheld
	}
	return out, withheld
}

// capturingWriter keeps a copy of the answer's body, up to limit bytes.
type capturingWriter struct {
	gin.ResponseWriter
	body     bytes.Buffer
	limit    int
	overflow bool
}

func (w *capturingWriter) keep(p []byte) {
	if w.body.Len()+len(p) > w.limit {
		w.overflow = true
		return
	}
	w.body.Write(p)
}

func (w *capturingWriter) Write(p []byte) (int, error) {
	w.keep(p)
	return w.ResponseWriter.Write(p)
}

func (w *capturingWriter) WriteString(s string) (int, error) {
	w.keep([]byte(s))
	return w.ResponseWriter.WriteString(s)
}
