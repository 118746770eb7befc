package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

// Authentication (001): every call but health, readiness and the OpenAPI
// document carries "Authorization: Bearer <token>". Tokens are stored as a
// SHA-256 hash only and checked against this node's replicated state, so a
// revocation takes effect on every node as soon as Raft has replicated it.

// Token scopes; each includes the ones before it.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

var scopeRank = map[string]int{ScopeRead: 1, ScopeWrite: 2, ScopeAdmin: 3}

// TokenPrefix starts every token Chime generates, so that a leaked one is
// easy to recognise (secret scanners, logs).
const TokenPrefix = "chime_"

// MinTokenLen bounds a root token given in CHIME_ROOT_TOKEN from below:
// as long as the random part of a generated one (32 characters), so that a
// chosen token is no easier to guess or to recover from its hash.
const MinTokenLen = 32

// displayPrefixSecretChars is how many characters of a token's secret part
// (after "chime_") its display prefix shows: enough to tell tokens apart in
// a list, too few to help a search for the rest.
const displayPrefixSecretChars = 4

// ValidateRootToken checks a token chosen by the operator
// (CHIME_ROOT_TOKEN / --root-token).
func ValidateRootToken(secret string) error {
	if len(secret) < MinTokenLen {
		return fmt.Errorf("CHIME_ROOT_TOKEN / --root-token: use at least %d characters (it has %d); a generated one is \"chime_\" and 43 random characters", MinTokenLen, len(secret))
	}
	return nil
}

const callerKey = "chime.token"

// NewToken returns a fresh secret: "chime_" and 32 random bytes, base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken is the stored form of a token secret.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// displayPrefix is the part of a secret shown in lists: "chime_" (when the
// secret has it) and at most displayPrefixSecretChars characters after it,
// fewer for a short secret (a quarter of it), which only a token older than
// MinTokenLen can be.
func displayPrefix(secret string) string {
	lead := 0
	if strings.HasPrefix(secret, TokenPrefix) {
		lead = len(TokenPrefix)
	}
	n := min(displayPrefixSecretChars, len(secret)/4, len(secret)-lead)
	return secret[:lead+n]
}

// shownPrefix cuts a stored display prefix to what lists may show: tokens
// made before the 4-character rule stored up to 12 characters of their
// secret (half of a short chosen root token), and those must not be shown
// either.
func shownPrefix(stored string) string {
	lead := 0
	if strings.HasPrefix(stored, TokenPrefix) {
		lead = len(TokenPrefix)
	}
	return stored[:lead+min(displayPrefixSecretChars, len(stored)-lead)]
}

func unauthorized(msg string) error {
	return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: msg}
}

// auth is the middleware of every protected route: a valid, unexpired token
// with at least the scope need.
func (s *Server) auth(need string) gin.HandlerFunc { return s.authorize(need, false) }

// authClusterWide is auth for calls that reach beyond any one project
// (cluster operations, snapshots, creating and deleting projects): a token
// restricted to a project may not make them, whatever its scope.
func (s *Server) authClusterWide(need string) gin.HandlerFunc { return s.authorize(need, true) }

func (s *Server) authorize(need string, clusterWide bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		tok, err := s.authenticate(c, need)
		if err == nil && clusterWide && tok.Project != "" {
			err = &Error{Status: http.StatusForbidden, Code: "forbidden",
				Message: fmt.Sprintf("a token restricted to project %q cannot make cluster-wide calls", tok.Project)}
		}
		if err != nil {
			if e, ok := err.(*Error); ok && e.Status == http.StatusUnauthorized {
				c.Header("WWW-Authenticate", `Bearer realm="chime"`)
			}
			fail(c, s.logger, err)
			c.Abort()
			return
		}
		c.Set(callerKey, tok)
		c.Next()
	}
}

// tokenCatchUp is how long a node that is not ready waits to catch up
// before it gives up checking an unknown token (503).
const tokenCatchUp = 2 * time.Second

func (s *Server) authenticate(c *gin.Context, need string) (*fsm.Token, error) {
	h := c.GetHeader("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if h == "" {
		return nil, unauthorized("send Authorization: Bearer <token>")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return nil, unauthorized("the Authorization header must be: Bearer <token>")
	}
	hash := HashToken(strings.TrimSpace(secret))
	tok, err := s.cfg.Cluster.FSM().State().TokenByHash(hash)
	// A node that has not caught up (just restarted, cut off, or a moment
	// behind its own commit index) may simply not have the token yet: it
	// waits up to tokenCatchUp for readiness, and only a ready node that
	// still does not know the token says 401; otherwise 503, to retry.
	for deadline := time.Now().Add(tokenCatchUp); err != nil; {
		ok, reason := s.cfg.Cluster.Readiness()
		if ok {
			if tok, err = s.cfg.Cluster.FSM().State().TokenByHash(hash); err != nil {
				return nil, unauthorized("unknown or revoked token")
			}
			break
		}
		if time.Now().After(deadline) || c.Request.Context().Err() != nil {
			return nil, fmt.Errorf("%w: %s; cannot check the token yet", errNotReady, reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tok.ExpiresAt != 0 && fsm.MillisOf(s.cfg.Now()) >= tok.ExpiresAt {
		return nil, unauthorized("the token has expired or was revoked")
	}
	if !hasScope(tok, need) {
		return nil, &Error{Status: http.StatusForbidden, Code: "forbidden",
			Message: fmt.Sprintf("this call needs a token with the %q scope", need)}
	}
	return tok, nil
}

func hasScope(tok *fsm.Token, need string) bool {
	for _, s := range tok.Scopes {
		if scopeRank[s] >= scopeRank[need] {
			return true
		}
	}
	return false
}

// caller is the token of the request (nil on unprotected routes).
func caller(c *gin.Context) *fsm.Token {
	if v, ok := c.Get(callerKey); ok {
		return v.(*fsm.Token)
	}
	return nil
}

// initiator is the id of the request's token: the initiatorId of the
// lifecycle events its writes raise.
func initiator(c *gin.Context) string {
	if tok := caller(c); tok != nil {
		return tok.ID
	}
	return ""
}

// tokenJSON is a token as listed: never its secret.
type tokenJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Scopes    []string   `json:"scopes"`
	Project   *string    `json:"project"`
	ExpiresAt *time.Time `json:"expiresAt"`
	Revoked   bool       `json:"revoked"`
	CreatedAt time.Time  `json:"createdAt"`
	CreatedBy string     `json:"createdBy,omitempty"`
}

type tokenCreatedJSON struct {
	tokenJSON
	Token string `json:"token"`
}

func tokenOut(t *fsm.Token, now time.Time) tokenJSON {
	out := tokenJSON{ID: t.ID, Name: t.Name, Prefix: shownPrefix(t.Prefix), Scopes: t.Scopes, ExpiresAt: timePtr(t.ExpiresAt),
		CreatedAt: t.CreatedAt.Time(), CreatedBy: t.CreatedBy}
	if t.Project != "" {
		p := t.Project
		out.Project = &p
	}
	out.Revoked = t.ExpiresAt != 0 && fsm.MillisOf(now) >= t.ExpiresAt
	return out
}

type tokenRequest struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Project   string   `json:"project"`
	ExpiresAt string   `json:"expiresAt"`
}

// createToken is POST /v1/tokens (admin): the secret is in the answer, once.
func (s *Server) createToken(c *gin.Context) error {
	var req tokenRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	now := s.cfg.Now()
	if req.Name == "" || utf8.RuneCountInString(req.Name) > MaxNameLen {
		return badRequest("name", fmt.Sprintf("name is required, at most %d characters", MaxNameLen))
	}
	if len(req.Scopes) == 0 {
		return badRequest("scopes", "give one or more of read, write, admin")
	}
	for i, sc := range req.Scopes {
		if scopeRank[sc] == 0 {
			return badRequest(fmt.Sprintf("scopes[%d]", i), fmt.Sprintf("unknown scope %q: use read, write or admin", sc))
		}
	}
	scopes := slices.Compact(slices.Sorted(slices.Values(req.Scopes)))
	// Before the existence check, so that a bound token learns nothing of
	// other projects from the answer.
	if by := caller(c); by != nil && by.Project != "" && by.Project != req.Project {
		return &Error{Status: http.StatusForbidden, Code: "forbidden",
			Message: fmt.Sprintf("a token restricted to project %q can only create tokens for it", by.Project)}
	}
	if req.Project != "" {
		if _, err := s.cfg.Cluster.FSM().State().Project(req.Project); err != nil {
			return badRequest("project", fmt.Sprintf("project %q does not exist", req.Project))
		}
	}
	var exp fsm.Millis
	if req.ExpiresAt != "" {
		t, err := parseTime("expiresAt", req.ExpiresAt)
		if err != nil {
			return err
		}
		if !t.After(now) {
			return badRequest("expiresAt", "expiresAt must be in the future")
		}
		exp = fsm.MillisOf(t)
	}
	secret, err := NewToken()
	if err != nil {
		return err
	}
	tok := &fsm.Token{ID: fsm.NewID("tok", now), Name: req.Name, Hash: HashToken(secret), Prefix: displayPrefix(secret),
		Scopes: scopes, Project: req.Project, ExpiresAt: exp, CreatedAt: fsm.MillisOf(now)}
	if by := caller(c); by != nil {
		tok.CreatedBy = by.ID
	}
	cmd, err := fsm.PutCommand(fsm.TableTokens, tok, fsm.PutOptions{IfAbsent: true})
	if err := s.apply(c, cmd, err); err != nil {
		return err
	}
	withhold(c, "token")
	c.JSON(http.StatusCreated, tokenCreatedJSON{tokenJSON: tokenOut(tok, now), Token: secret})
	return nil
}

// listTokens is GET /v1/tokens (admin), by id, without secrets.
func (s *Server) listTokens(c *gin.Context) error {
	st, err := s.state(c)
	if err != nil {
		return err
	}
	limit, after, err := listParams(c)
	if err != nil {
		return err
	}
	project := ""
	if by := caller(c); by != nil {
		project = by.Project // a project-bound admin sees its project's tokens only
	}
	toks, next := st.Tokens(project, after, limit)
	now := s.cfg.Now()
	items := make([]tokenJSON, 0, len(toks))
	for _, t := range toks {
		items = append(items, tokenOut(t, now))
	}
	c.JSON(http.StatusOK, listBody(items, next))
	return nil
}

// revokeToken is DELETE /v1/tokens/{id} (admin). The token is kept,
// expired now, so that the record says what was revoked and when, and a
// bootstrap never mistakes an empty table for a fresh cluster.
func (s *Server) revokeToken(c *gin.Context) error {
	id := c.Param("id")
	var out *fsm.Token
	err := retryOnConflict(func() error {
		cur, err := s.cfg.Cluster.FSM().State().Token(id)
		by := caller(c)
		if err != nil || (by != nil && by.Project != "" && cur.Project != by.Project) {
			return &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("token %q not found", id)}
		}
		now := fsm.MillisOf(s.cfg.Now())
		t := *cur
		if t.ExpiresAt == 0 || t.ExpiresAt > now {
			t.ExpiresAt = now
		}
		out = &t
		cmd, err := fsm.PutCommand(fsm.TableTokens, &t, fsm.PutOptions{IfIndex: cur.ModifyIndex})
		return s.apply(c, cmd, err)
	})
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, tokenOut(out, s.cfg.Now()))
	return nil
}
