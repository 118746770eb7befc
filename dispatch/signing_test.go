package dispatch

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/client/webhook"
)

// Fixed vector. The secret is "whsec_" + base64 of the bytes 0x00..0x1f. The
// expected values were computed once, independently of this code:
//
//	KEYHEX=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
//	BODY='{"event":"invoice.paid","data":{"id":"inv_1"}}'
//	printf '%s' "dlv_01HZX3.1700000000.$BODY" |
//	  openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEYHEX -binary | base64
//	printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"   # the whsec_ string
//
// and the legacy value again with 001's Node sample,
// crypto.createHmac('sha256', SECRET).update(body).digest('hex'): same result.
const (
	vecSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	vecID     = "dlv_01HZX3"
	vecUnix   = 1700000000
	vecBody   = `{"event":"invoice.paid","data":{"id":"inv_1"}}`
	vecStd    = "v1,7NoItBIxbDqeOKrhI81SPHju04/qqOZKGIbTewEtBkU="
	vecLegacy = "sha256=8a9300eac98836229762c49359cda3e35ffee661e0f3f8054ca91c93eefa2a44"
)

func TestSignFixedVectors(t *testing.T) {
	tests := []struct {
		name, secret, id string
		unix             int64
		body             string
		std, legacy      string
	}{
		{"openssl vector", vecSecret, vecID, vecUnix, vecBody, vecStd, vecLegacy},
		// The Standard Webhooks reference libraries' own test vector
		// (libraries/go/webhook_test.go, TestWebhookSign); the legacy value is
		// `printf '%s' '{"test": 2432232314}' | openssl dgst -sha256 -hmac whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`.
		{"spec vector", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
			`{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
			"sha256=80ec8a89ce3cd22133a1066caecb4d04fea7467657c8514d717ec42c38a5c94c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Sub-second parts of the time are dropped: the header is whole seconds.
			s, err := Sign(tc.secret, tc.id, time.Unix(tc.unix, 999_000_000), []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			want := Signatures{ID: tc.id, Timestamp: strconv.FormatInt(tc.unix, 10), Signature: tc.std, Legacy: tc.legacy}
			if s != want {
				t.Fatalf("got  %+v\nwant %+v", s, want)
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	enc, ok := strings.CutPrefix(a, "whsec_")
	if !ok {
		t.Fatalf("%q lacks whsec_", a)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(key) != 32 {
		t.Fatalf("%q: %d bytes, %v", a, len(key), err)
	}
	if err := ValidateSecret(a); err != nil {
		t.Fatal(err)
	}
}

func TestSignRejectsBadInput(t *testing.T) {
	b64 := func(n int) string { return "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name    string
		secrets []string
		id      string
	}{
		{"empty secret", []string{""}, "m"},
		{"no secrets", nil, "m"},
		{"no prefix", []string{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, "m"},
		{"prefix only", []string{"whsec_"}, "m"},
		{"not base64", []string{"whsec_!!!!"}, "m"},
		{"unpadded", []string{strings.TrimRight(vecSecret, "=")}, "m"},
		{"too short", []string{b64(16)}, "m"},
		{"too long", []string{b64(65)}, "m"},
		{"one bad of two", []string{vecSecret, "whsec_x"}, "m"},
		{"empty id", []string{vecSecret}, ""},
		{"dot in id", []string{vecSecret}, "a.b"},
		{"space in id", []string{vecSecret}, "a b"},
		{"newline in id", []string{vecSecret}, "a\nb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SignAll(tc.secrets, tc.id, time.Now(), nil); err == nil {
				t.Fatal("no error")
			}
		})
	}
	for _, ok := range []string{b64(24), b64(64)} {
		if err := ValidateSecret(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// header turns signatures into the http.Header a receiver would see.
func header(s Signatures) http.Header {
	m := map[string]string{}
	s.Apply(m)
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

func TestSignVerifyRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"event":"x","data":{"n":1}}`)
	other, _ := NewSecret()
	tests := []struct {
		name    string
		signAt  time.Time
		secrets []string
		tamper  func(h http.Header, body []byte) []byte
		want    error
	}{
		{name: "now", signAt: now, want: nil},
		{name: "4m59s old", signAt: now.Add(-299 * time.Second), want: nil},
		{name: "5m old (edge)", signAt: now.Add(-5 * time.Minute), want: nil},
		{name: "5m ahead (edge)", signAt: now.Add(5 * time.Minute), want: nil},
		{name: "5m01s old", signAt: now.Add(-301 * time.Second), want: webhook.ErrTimestamp},
		{name: "6m ahead", signAt: now.Add(6 * time.Minute), want: webhook.ErrTimestamp},
		{name: "wrong secret", signAt: now, secrets: []string{other}, want: webhook.ErrSignature},
		{name: "tampered body", signAt: now, want: webhook.ErrSignature,
			tamper: func(h http.Header, b []byte) []byte { return append([]byte{' '}, b...) }},
		{name: "tampered id", signAt: now, want: webhook.ErrSignature,
			tamper: func(h http.Header, b []byte) []byte { h.Set("webhook-id", "dlv_other"); return b }},
		{name: "tampered timestamp", signAt: now, want: webhook.ErrSignature,
			tamper: func(h http.Header, b []byte) []byte {
				h.Set("webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10))
				return b
			}},
		{name: "v2 only", signAt: now, want: webhook.ErrSignature,
			tamper: func(h http.Header, b []byte) []byte {
				h.Set("webhook-signature", "v2,"+strings.TrimPrefix(h.Get("webhook-signature"), "v1,"))
				return b
			}},
		{name: "missing id", signAt: now, want: webhook.ErrMissingHeaders,
			tamper: func(h http.Header, b []byte) []byte { h.Del("webhook-id"); return b }},
		{name: "missing signature", signAt: now, want: webhook.ErrMissingHeaders,
			tamper: func(h http.Header, b []byte) []byte { h.Del("webhook-signature"); return b }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Sign(vecSecret, "dlv_1", tc.signAt, body)
			if err != nil {
				t.Fatal(err)
			}
			h, b := header(s), body
			if tc.tamper != nil {
				b = tc.tamper(h, append([]byte(nil), body...))
			}
			secrets := tc.secrets
			if secrets == nil {
				secrets = []string{vecSecret}
			}
			v := webhook.Verifier{Secrets: secrets, Now: func() time.Time { return now }}
			if err := v.Verify(h, b); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignLegacyRoundTrip(t *testing.T) {
	body := []byte(vecBody)
	s, err := Sign(vecSecret, vecID, time.Now(), body)
	if err != nil {
		t.Fatal(err)
	}
	v := webhook.Verifier{Secrets: []string{vecSecret}}
	if err := v.VerifyLegacy(header(s), body); err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyLegacy(header(s), append(body, '\n')); !errors.Is(err, webhook.ErrSignature) {
		t.Fatalf("tampered: %v", err)
	}
}

func TestSignRotation(t *testing.T) {
	oldSecret, newSecret := vecSecret, mustSecret(t)
	now := time.Now()
	body := []byte(vecBody)
	s, err := SignAll([]string{newSecret, "", oldSecret, newSecret}, vecID, now, body)
	if err != nil {
		t.Fatal(err)
	}
	sNew, _ := Sign(newSecret, vecID, now, body)
	sOld, _ := Sign(oldSecret, vecID, now, body)
	if want := sNew.Signature + " " + sOld.Signature; s.Signature != want {
		t.Fatalf("webhook-signature %q, want %q", s.Signature, want)
	}
	if s.Legacy != sNew.Legacy {
		t.Fatalf("legacy %q, want the newest secret's %q", s.Legacy, sNew.Legacy)
	}
	h := header(s)
	for _, secret := range []string{oldSecret, newSecret} {
		if err := (webhook.Verifier{Secrets: []string{secret}}).Verify(h, body); err != nil {
			t.Errorf("Standard Webhooks with one of the two secrets: %v", err)
		}
	}
	if err := (webhook.Verifier{Secrets: []string{newSecret}}).VerifyLegacy(h, body); err != nil {
		t.Errorf("legacy with the new secret: %v", err)
	}
	if err := (webhook.Verifier{Secrets: []string{oldSecret}}).VerifyLegacy(h, body); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("legacy with the old secret only = %v, want ErrSignature (newest secret only)", err)
	}
}

func mustSecret(t *testing.T) string {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
