package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These vectors come from outside Chime, so the verifier is checked against
// the spec, not against Chime's signer:
//   - spec: the Standard Webhooks reference libraries' test vector
//     (libraries/go/webhook_test.go, TestWebhookSign), also reproduced with
//     `openssl dgst -sha256 -mac HMAC -macopt hexkey:<base64-decoded secret> -binary | base64`.
//   - legacy: `printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"` and
//     001's Node sample (crypto.createHmac('sha256', secret).update(body).digest('hex')).
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specUnix   = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

	legacySecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	legacyBody   = `{"event":"invoice.paid","data":{"id":"inv_1"}}`
	legacySig    = "sha256=8a9300eac98836229762c49359cda3e35ffee661e0f3f8054ca91c93eefa2a44"

	otherSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh4="
)

func specHeader() http.Header {
	h := http.Header{}
	h.Set(HeaderID, specID)
	h.Set(HeaderTimestamp, strconv.Itoa(specUnix))
	h.Set(HeaderSignature, specSig)
	return h
}

func at(unix int64) func() time.Time { return func() time.Time { return time.Unix(unix, 0) } }

func TestVerify(t *testing.T) {
	tests := []struct {
		name    string
		v       Verifier
		edit    func(http.Header)
		body    string
		wantErr error
	}{
		{name: "spec vector", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)}},
		{name: "secret without prefix", v: Verifier{Secrets: []string{specSecret[len("whsec_"):]}, Now: at(specUnix)}},
		{name: "second of two secrets", v: Verifier{Secrets: []string{otherSecret, specSecret}, Now: at(specUnix)}},
		{name: "several signatures, one valid", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) {
				h.Set(HeaderSignature, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1a,abc garbage v1,!!! "+specSig)
			}},
		{name: "header map built by hand with lower-case keys", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) {
				for _, k := range []string{HeaderID, HeaderTimestamp, HeaderSignature} {
					v := h.Get(k)
					h.Del(k)
					h[k] = []string{v}
				}
			}},
		{name: "within tolerance, past", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix + 300)}},
		{name: "within tolerance, future", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix - 300)}},
		{name: "custom tolerance", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix + 3600), Tolerance: time.Hour}},
		{name: "too old", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix + 301)}, wantErr: ErrTimestamp},
		{name: "too new", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix - 301)}, wantErr: ErrTimestamp},
		{name: "default clock: 2021 is too old", v: Verifier{Secrets: []string{specSecret}}, wantErr: ErrTimestamp},
		{name: "timestamp not a number", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) { h.Set(HeaderTimestamp, "1614265330.5") }, wantErr: ErrTimestamp},
		{name: "hostile timestamp", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) { h.Set(HeaderTimestamp, "-9223372036854775808") }, wantErr: ErrTimestamp},
		{name: "wrong secret", v: Verifier{Secrets: []string{otherSecret}, Now: at(specUnix)}, wantErr: ErrSignature},
		{name: "tampered body", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			body: `{"test": 2432232315}`, wantErr: ErrSignature},
		{name: "tampered id", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) { h.Set(HeaderID, specID+"x") }, wantErr: ErrSignature},
		{name: "tampered timestamp", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) { h.Set(HeaderTimestamp, strconv.Itoa(specUnix+1)) }, wantErr: ErrSignature},
		{name: "other version only", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) { h.Set(HeaderSignature, "v2,"+specSig[3:]) }, wantErr: ErrSignature},
		{name: "missing id", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) { h.Del(HeaderID) }, wantErr: ErrMissingHeaders},
		{name: "missing timestamp", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) { h.Del(HeaderTimestamp) }, wantErr: ErrMissingHeaders},
		{name: "missing signature", v: Verifier{Secrets: []string{specSecret}, Now: at(specUnix)},
			edit: func(h http.Header) { h.Del(HeaderSignature) }, wantErr: ErrMissingHeaders},
		{name: "no secrets", v: Verifier{Now: at(specUnix)}, wantErr: ErrSecret},
		{name: "bad secret", v: Verifier{Secrets: []string{"whsec_%%%"}, Now: at(specUnix)}, wantErr: ErrSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := specHeader()
			if tc.edit != nil {
				tc.edit(h)
			}
			body := specBody
			if tc.body != "" {
				body = tc.body
			}
			err := tc.v.Verify(h, []byte(body))
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestVerifyLegacy(t *testing.T) {
	tests := []struct {
		name, header, body string
		secrets            []string
		wantErr            error
	}{
		{"001 vector", legacySig, legacyBody, []string{legacySecret}, nil},
		{"upper-case hex", "sha256=8A9300EAC98836229762C49359CDA3E35FFEE661E0F3F8054CA91C93EEFA2A44", legacyBody, []string{legacySecret}, nil},
		{"second secret", legacySig, legacyBody, []string{otherSecret, legacySecret}, nil},
		{"wrong secret", legacySig, legacyBody, []string{otherSecret}, ErrSignature},
		{"key is the whole string, prefix included", legacySig, legacyBody, []string{legacySecret[len("whsec_"):]}, ErrSignature},
		{"tampered body", legacySig, legacyBody + " ", []string{legacySecret}, ErrSignature},
		{"no sha256= prefix", legacySig[len("sha256="):], legacyBody, []string{legacySecret}, ErrSignature},
		{"not hex", "sha256=zz", legacyBody, []string{legacySecret}, ErrSignature},
		{"missing", "", legacyBody, []string{legacySecret}, ErrMissingHeaders},
		{"no secrets", legacySig, legacyBody, nil, ErrSecret},
		{"lower-case key", "lower:" + legacySig, legacyBody, []string{legacySecret}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if v, ok := strings.CutPrefix(tc.header, "lower:"); ok {
				h["x-webhook-signature"] = []string{v}
			} else if tc.header != "" {
				h.Set(HeaderLegacySignature, tc.header)
			}
			err := Verifier{Secrets: tc.secrets}.VerifyLegacy(h, []byte(tc.body))
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("VerifyLegacy = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
