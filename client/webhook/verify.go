// Package webhook verifies the signatures Chime puts on the webhooks it
// delivers. Receivers written in Go import it; it depends on the standard
// library only.
//
// Chime signs every attempt twice:
//
//   - Standard Webhooks (https://www.standardwebhooks.com): headers
//     webhook-id, webhook-timestamp (Unix seconds) and webhook-signature, a
//     space-separated list of "v1,<base64 HMAC-SHA256>" entries computed over
//     "<webhook-id>.<webhook-timestamp>.<body>" with the key obtained by
//     base64-decoding the secret after its "whsec_" prefix. Verify checks
//     these, the timestamp included, so a captured request cannot be replayed
//     later. Prefer it.
//   - X-Webhook-Signature: "sha256=<hex HMAC-SHA256 of the body>" keyed with
//     the secret string exactly as shown ("whsec_…"), for receivers written
//     against that simpler scheme. VerifyLegacy checks it. It signs neither id
//     nor time: it does not protect against replay.
//
// Always verify the raw body as received, before parsing it: re-encoded JSON
// does not verify. Use webhook-id to deduplicate: delivery is at least once.
//
//	v := webhook.Verifier{Secrets: []string{os.Getenv("CHIME_WEBHOOK_SECRET")}}
//	http.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
//		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
//		if err != nil || v.Verify(r.Header, body) != nil {
//			http.Error(w, "bad signature", http.StatusUnauthorized)
//			return
//		}
//		// handle body; deduplicate on r.Header.Get("webhook-id")
//	})
//
// During a secret rotation Chime signs with both the new and the previous
// secret, so a Verifier holding either one accepts; list both in Secrets while
// you switch over.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names.
const (
	HeaderID              = "webhook-id"
	HeaderTimestamp       = "webhook-timestamp"
	HeaderSignature       = "webhook-signature"
	HeaderLegacySignature = "X-Webhook-Signature"
)

// DefaultTolerance is how far webhook-timestamp may be from the receiver's
// clock, in either direction, when Verifier.Tolerance is 0.
const DefaultTolerance = 5 * time.Minute

const secretPrefix = "whsec_"

// Errors returned by Verify and VerifyLegacy; match them with errors.Is.
var (
	ErrMissingHeaders = errors.New("webhook: missing signature headers")
	ErrTimestamp      = errors.New("webhook: timestamp invalid or outside the tolerance")
	ErrSignature      = errors.New("webhook: no valid signature")
	ErrSecret         = errors.New("webhook: invalid secret")
)

// Verifier checks the signatures of incoming webhooks. The zero Tolerance
// means DefaultTolerance; a nil Now means time.Now. A Verifier is a value and
// safe for concurrent use.
type Verifier struct {
	// Secrets are the endpoint's signing secrets ("whsec_…"); a signature by
	// any of them is accepted. For Verify the "whsec_" prefix is optional.
	Secrets   []string
	Tolerance time.Duration
	Now       func() time.Time
}

// Verify checks the Standard Webhooks headers of a request with the raw body:
// webhook-id, webhook-timestamp and webhook-signature must be present, the
// timestamp within the tolerance of now (past or future), and at least one v1
// signature must match one secret. Other signature versions are ignored.
func (v Verifier) Verify(h http.Header, body []byte) error {
	id, ts, sigs := get(h, HeaderID), get(h, HeaderTimestamp), get(h, HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("%w: need %s, %s and %s", ErrMissingHeaders, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	keys := make([][]byte, 0, len(v.Secrets))
	for i, s := range v.Secrets {
		key, err := decodeSecret(s)
		if err != nil {
			return fmt.Errorf("%w: secret %d: %v", ErrSecret, i, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: no secret configured", ErrSecret)
	}

	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not Unix seconds", ErrTimestamp, HeaderTimestamp, ts)
	}
	tolerance := v.Tolerance
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	// Compare in seconds: converting a hostile timestamp to a time.Duration
	// could overflow.
	skew := now().Unix() - sec
	if limit := int64(tolerance / time.Second); skew > limit || skew < -limit {
		return fmt.Errorf("%w: %s is %d s from now", ErrTimestamp, HeaderTimestamp, skew)
	}

	expected := make([][]byte, len(keys))
	for i, key := range keys {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(ts))
		m.Write([]byte{'.'})
		m.Write(body)
		expected[i] = m.Sum(nil)
	}
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		for _, want := range expected {
			if hmac.Equal(got, want) { // constant time
				return nil
			}
		}
	}
	return ErrSignature
}

// VerifyLegacy checks X-Webhook-Signature ("sha256=<hex>") against the raw
// body, with each secret string used as the HMAC key exactly as written
// ("whsec_" included). Chime puts the newest secret's signature there only:
// during a rotation, a receiver using this header needs the new secret.
func (v Verifier) VerifyLegacy(h http.Header, body []byte) error {
	header := get(h, HeaderLegacySignature)
	if header == "" {
		return fmt.Errorf("%w: need %s", ErrMissingHeaders, HeaderLegacySignature)
	}
	if len(v.Secrets) == 0 {
		return fmt.Errorf("%w: no secret configured", ErrSecret)
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return ErrSignature
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return ErrSignature
	}
	for _, s := range v.Secrets {
		if s == "" {
			continue
		}
		m := hmac.New(sha256.New, []byte(s))
		m.Write(body)
		if hmac.Equal(got, m.Sum(nil)) { // constant time
			return nil
		}
	}
	return ErrSignature
}

// get reads a header from a canonical http.Header (as net/http builds it) or
// from one filled by hand with lower-case keys.
func get(h http.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	if v := h[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// decodeSecret returns the HMAC key of a Standard Webhooks secret.
func decodeSecret(s string) ([]byte, error) {
	s = strings.TrimPrefix(s, secretPrefix)
	if s == "" {
		return nil, errors.New("empty")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64 after " + secretPrefix)
	}
	return key, nil
}
