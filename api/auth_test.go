package api

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
)

// as sends a request with the given token ("" = none).
func as(t *testing.T, srvURL, token, method, path, body string) response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, srvURL+path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token == "" {
		req.Header.Set("X-Test-Anonymous", "1")
	} else {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return roundTrip(t, req)
}

func TestAuthScopesProjectsAndRevocation(t *testing.T) {
	srv, c := newNode(t)
	u := srv.URL

	// Open routes and the 401s.
	for _, p := range []string{"/v1/health", "/v1/ready", "/v1/openapi.json", "/v1/cluster/status"} {
		want(t, as(t, u, "", "GET", p, ""), 200)
	}
	r := want(t, as(t, u, "", "GET", "/v1/jobs", ""), 401)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("a 401 without WWW-Authenticate")
	}
	want(t, as(t, u, "chime_not-a-real-token", "GET", "/v1/jobs", ""), 401)

	// Tokens: the secret once, never in lists.
	mk := func(body string) (id, secret string) {
		r := want(t, as(t, u, testRootToken, "POST", "/v1/tokens", body), 201)
		return str(t, r.body, "id"), str(t, r.body, "token")
	}
	want(t, as(t, u, testRootToken, "POST", "/v1/projects", `{"name":"billing"}`), 201)
	_, reader := mk(`{"name":"dash","scopes":["read"]}`)
	_, writer := mk(`{"name":"ci","scopes":["write"]}`)
	boundID, bound := mk(`{"name":"billing-app","scopes":["write"],"project":"billing"}`)
	_, shortLived := mk(`{"name":"tmp","scopes":["read"],"expiresAt":"` + time.Now().Add(1500*time.Millisecond).UTC().Format(time.RFC3339Nano) + `"}`)
	list := want(t, as(t, u, testRootToken, "GET", "/v1/tokens", ""), 200)
	if strings.Contains(list.raw, reader) || strings.Contains(list.raw, writer) || strings.Contains(list.raw, `"token"`) {
		t.Fatal("a token list shows secrets")
	}
	if n := len(items(t, list)); n != 5 {
		t.Fatalf("%d tokens listed, want 5 (root and four)", n)
	}

	// Scopes: read < write < admin.
	want(t, as(t, u, reader, "GET", "/v1/jobs", ""), 200)
	r = want(t, as(t, u, reader, "POST", "/v1/jobs", `{"delaySeconds":60}`), 403)
	if code, _ := errorOf(t, r); code != "forbidden" {
		t.Errorf("read token writing: %s", r.raw)
	}
	want(t, as(t, u, writer, "POST", "/v1/jobs", `{"delaySeconds":60}`), 201)
	want(t, as(t, u, writer, "POST", "/v1/tokens", `{"name":"x","scopes":["read"]}`), 403)
	want(t, as(t, u, writer, "POST", "/v1/cluster/transfer-leadership", ""), 403)
	want(t, as(t, u, reader, "GET", "/v1/cluster/snapshot", ""), 403)

	// A project-bound token acts in its project; another one is a 404.
	job := str(t, want(t, as(t, u, bound, "POST", "/v1/jobs", `{"delaySeconds":60}`), 201).body, "id")
	if r := want(t, as(t, u, bound, "GET", "/v1/jobs/"+job, ""), 200); r.body["project"] != "billing" {
		t.Fatalf("bound token's job landed in %v", r.body["project"])
	}
	want(t, as(t, u, bound, "GET", "/v1/jobs?project=default", ""), 404)
	want(t, as(t, u, bound, "GET", "/v1/jobs?project=billing", ""), 200)
	want(t, as(t, u, testRootToken, "GET", "/v1/jobs/"+job, ""), 404) // root acts in default without ?project=
	want(t, as(t, u, testRootToken, "GET", "/v1/jobs/"+job+"?project=billing", ""), 200)
	if ps := items(t, want(t, as(t, u, bound, "GET", "/v1/projects", ""), 200)); len(ps) != 1 || ps[0]["name"] != "billing" {
		t.Fatalf("bound token sees projects %v", ps)
	}
	want(t, as(t, u, bound, "GET", "/v1/projects/default", ""), 404)
	// Even with admin scope, a project-bound token makes no cluster-wide call
	// and learns nothing of other projects.
	_, boundAdmin := mk(`{"name":"billing-admin","scopes":["admin"],"project":"billing"}`)
	want(t, as(t, u, boundAdmin, "GET", "/v1/cluster/snapshot", ""), 403)
	want(t, as(t, u, boundAdmin, "DELETE", "/v1/projects/default", ""), 403)
	want(t, as(t, u, boundAdmin, "POST", "/v1/projects", `{"name":"x"}`), 403)
	want(t, as(t, u, boundAdmin, "POST", "/v1/tokens", `{"name":"x","scopes":["read"],"project":"nope"}`), 403)
	want(t, as(t, u, boundAdmin, "POST", "/v1/tokens", `{"name":"x","scopes":["read"],"project":"default"}`), 403)
	want(t, as(t, u, boundAdmin, "POST", "/v1/tokens", `{"name":"x","scopes":["read"],"project":"billing"}`), 201)

	// Expiry and revocation.
	want(t, as(t, u, shortLived, "GET", "/v1/jobs", ""), 200)
	time.Sleep(1600 * time.Millisecond)
	want(t, as(t, u, shortLived, "GET", "/v1/jobs", ""), 401)
	r = want(t, as(t, u, testRootToken, "DELETE", "/v1/tokens/"+boundID, ""), 200)
	if r.body["revoked"] != true {
		t.Fatalf("revoke: %s", r.raw)
	}
	want(t, as(t, u, bound, "GET", "/v1/jobs", ""), 401)

	// Bad input on token creation names the field.
	for _, cs := range []struct{ body, field string }{
		{`{"scopes":["read"]}`, "name"},
		{`{"name":"x"}`, "scopes"},
		{`{"name":"x","scopes":["read","root"]}`, "scopes[1]"},
		{`{"name":"x","scopes":["read"],"project":"nope"}`, "project"},
		{`{"name":"x","scopes":["read"],"expiresAt":"2001-01-01T00:00:00Z"}`, "expiresAt"},
	} {
		r := want(t, as(t, u, testRootToken, "POST", "/v1/tokens", cs.body), 400)
		if _, f := errorOf(t, r); f != cs.field {
			t.Errorf("%s: field %q, want %q", cs.body, f, cs.field)
		}
	}

	// The root token is installed once: after its revocation a new
	// leadership term does not bring it back.
	root := items(t, want(t, as(t, u, testRootToken, "GET", "/v1/tokens?limit=1", ""), 200))[0]
	hook := &BootstrapHook{Cluster: c, RootToken: testRootToken}
	want(t, as(t, u, testRootToken, "DELETE", "/v1/tokens/"+root["id"].(string), ""), 200)
	if err := hook.EstablishLeadership(t.Context()); err != nil {
		t.Fatal(err)
	}
	want(t, as(t, u, testRootToken, "GET", "/v1/jobs", ""), 401)
}

// Issue 12 item 9: a chosen root token has at least 32 characters, and no
// token's display prefix shows more than 4 characters of its secret part.
func TestTokenLengthAndDisplayPrefix(t *testing.T) {
	if MinTokenLen < 32 {
		t.Fatalf("MinTokenLen is %d; a chosen root token needs at least 32 characters", MinTokenLen)
	}
	if err := ValidateRootToken(strings.Repeat("x", 31)); err == nil {
		t.Fatal("a 31-character root token was accepted")
	}
	if err := ValidateRootToken(strings.Repeat("x", 32)); err != nil {
		t.Fatalf("a 32-character root token: %v", err)
	}
	for _, secret := range []string{
		testRootToken, "chime_" + strings.Repeat("a", 43), strings.Repeat("s", 32), "abc", "chime_ab",
	} {
		p := displayPrefix(secret)
		shown := strings.TrimPrefix(p, TokenPrefix)
		if !strings.HasPrefix(secret, p) || len(shown) > 4 || (len(secret) < 16 && len(shown) > len(secret)/4) {
			t.Errorf("displayPrefix(%q) = %q: more than 4 characters of the secret", secret, p)
		}
	}
	srv := newSingleNode(t)
	r := want(t, as(t, srv.URL, testRootToken, "POST", "/v1/tokens", `{"name":"x","scopes":["read"]}`), 201)
	if p := str(t, r.body, "prefix"); len(strings.TrimPrefix(p, TokenPrefix)) > 4 {
		t.Errorf("a new token's prefix %q", p)
	}
	for _, tok := range items(t, want(t, as(t, srv.URL, testRootToken, "GET", "/v1/tokens", ""), 200)) {
		if p := tok["prefix"].(string); len(strings.TrimPrefix(p, TokenPrefix)) > 4 {
			t.Errorf("token %s shows prefix %q", tok["name"], p)
		}
	}
	// Tokens made before the rule stored longer prefixes (6 characters of a
	// generated secret, half of a short chosen one): lists cut them too.
	for stored, want := range map[string]string{"chime_abcdef": "chime_abcd", "rootroot": "root", "ab": "ab", "chime_": "chime_"} {
		if got := tokenOut(&fsm.Token{Prefix: stored}, time.Now()).Prefix; got != want {
			t.Errorf("stored prefix %q is shown as %q, want %q", stored, got, want)
		}
	}
}
