package dispatch

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Signature headers put on every attempt.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
	// HeaderLegacySignature is the header of source 001: "sha256=<hex>".
	HeaderLegacySignature = "X-Webhook-Signature"
)

// SecretPrefix starts every signing secret (Standard Webhooks "whsec_").
const SecretPrefix = "whsec_"

// Secret key sizes. NewSecret makes 32 bytes; the Standard Webhooks spec
// allows 24 to 64 (192 to 512 bits), so secrets from elsewhere within that
// range are accepted too.
const (
	secretBytes    = 32
	minSecretBytes = 24
	maxSecretBytes = 64
)

// Signatures are the header values that sign one attempt.
type Signatures struct {
	ID        string // webhook-id: the delivery id, the same on every attempt
	Timestamp string // webhook-timestamp: Unix seconds of this attempt
	Signature string // webhook-signature: "v1,<base64>", space-separated when several secrets sign
	Legacy    string // X-Webhook-Signature: "sha256=<hex>" (source 001)
}

// Apply sets the four signature headers in h, replacing any value there.
func (s Signatures) Apply(h map[string]string) {
	h[HeaderWebhookID] = s.ID
	h[HeaderWebhookTimestamp] = s.Timestamp
	h[HeaderWebhookSignature] = s.Signature
	h[HeaderLegacySignature] = s.Legacy
}

// NewSecret returns a fresh signing secret: "whsec_" followed by the standard
// base64 encoding of 32 random bytes.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate signing secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// ValidateSecret reports whether secret has the form Sign accepts: "whsec_"
// then standard base64 (with padding) of 24 to 64 bytes.
func ValidateSecret(secret string) error {
	_, err := secretKey(secret)
	return err
}

// secretKey returns the HMAC key of a Standard Webhooks secret: the
// base64-decoded part after the prefix.
func secretKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, errors.New("signing secret must start with " + SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, errors.New("signing secret is not valid base64 after " + SecretPrefix)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("signing secret must encode %d to %d bytes, not %d", minSecretBytes, maxSecretBytes, len(key))
	}
	return key, nil
}

// Sign signs one attempt with one secret. See SignAll.
func Sign(secret, msgID string, ts time.Time, body []byte) (Signatures, error) {
	return SignAll([]string{secret}, msgID, ts, body)
}

// SignAll signs one attempt with every secret, newest first: during a
// rotation grace period the caller passes {current, previous}. Empty strings
// are skipped and duplicates sign once; at least one secret is required.
//
// webhook-signature holds one "v1,<base64 HMAC-SHA256(key, id.ts.body)>"
// entry per secret, space-separated as the Standard Webhooks spec allows, so
// a receiver holding either secret verifies. X-Webhook-Signature carries the
// newest secret's "sha256=<hex HMAC-SHA256(secret string, body)>" only: 001's
// receiver compares the header with one expected value as a whole string
// (signature === expected), so a list there would fail for everyone. A 001
// receiver therefore needs the new secret as soon as rotation starts, exactly
// as with 001's own rotation ("the old one stops working immediately").
//
// The legacy HMAC is keyed with the secret string exactly as shown to the user,
// "whsec_" included, because 001's sample passes that string to createHmac. It
// signs neither id nor timestamp, so it does not protect against replay.
//
// msgID must be non-empty and contain no '.', space or control character (the
// spec forbids '.' so that id.ts.body cannot be split two ways). ts is sent in
// whole seconds.
func SignAll(secrets []string, msgID string, ts time.Time, body []byte) (Signatures, error) {
	if msgID == "" {
		return Signatures{}, errors.New("sign: message id is empty")
	}
	for _, r := range msgID {
		if r == '.' || r <= ' ' || r == 0x7f {
			return Signatures{}, fmt.Errorf("sign: message id %q contains %q", msgID, r)
		}
	}
	unix := strconv.FormatInt(ts.Unix(), 10)
	sig := Signatures{ID: msgID, Timestamp: unix}
	var entries []string
	seen := make(map[string]bool, len(secrets))
	for i, secret := range secrets {
		if secret == "" || seen[secret] {
			continue
		}
		seen[secret] = true
		key, err := secretKey(secret)
		if err != nil {
			return Signatures{}, fmt.Errorf("sign: secret %d: %w", i, err)
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msgID))
		m.Write([]byte{'.'})
		m.Write([]byte(unix))
		m.Write([]byte{'.'})
		m.Write(body)
		entries = append(entries, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
		if sig.Legacy == "" {
			sig.Legacy = legacySignature(secret, body)
		}
	}
	if len(entries) == 0 {
		return Signatures{}, errors.New("sign: no signing secret")
	}
	sig.Signature = strings.Join(entries, " ")
	return sig, nil
}

// legacySignature is 001's X-Webhook-Signature value.
func legacySignature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
