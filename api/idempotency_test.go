package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/gin-gonic/gin"
)

func postWithKey(t *testing.T, url, key, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	r := roundTrip(t, req)
	return r.status, r.raw, r.header
}

func TestIdempotencyKeyReplaysTheFirstAnswer(t *testing.T) {
	srv, c := newNode(t)
	body := `{"name":"once","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`
	code, first, _ := postWithKey(t, srv.URL+"/v1/jobs", "create-1", body)
	if code != 201 {
		t.Fatalf("first create: %d %s", code, first)
	}
	code, again, h := postWithKey(t, srv.URL+"/v1/jobs", "create-1", body)
	if code != 201 || again != first || h.Get(HeaderReplayed) != "true" {
		t.Fatalf("repeat: %d replayed=%q\n%s\nwant\n%s", code, h.Get(HeaderReplayed), again, first)
	}
	if n := c.FSM().State().Count(fsm.TableJobs); n != 1 {
		t.Fatalf("%d jobs after a repeated keyed create, want 1", n)
	}
	// The same key with another body is refused; without a key, a new job.
	if code, out, _ := postWithKey(t, srv.URL+"/v1/jobs", "create-1", strings.Replace(body, "once", "twice", 1)); code != 422 || !strings.Contains(out, "idempotency_key_reused") {
		t.Fatalf("reused key: %d %s", code, out)
	}
	if code, _, _ := postWithKey(t, srv.URL+"/v1/jobs", "", body); code != 201 || c.FSM().State().Count(fsm.TableJobs) != 2 {
		t.Fatalf("unkeyed create: %d", code)
	}
	// Keys are per project.
	want(t, do(t, srv, "POST", "/v1/projects", `{"name":"other"}`), 201)
	if code, out, h := postWithKey(t, srv.URL+"/v1/jobs?project=other", "create-1", body); code != 201 || h.Get(HeaderReplayed) != "" {
		t.Fatalf("same key in another project: %d %s", code, out)
	}
	// A 400 is remembered; a bad key is a 400 naming the header.
	bad := `{"callbackUrl":"nope","recurrenceSeconds":3600}`
	code1, out1, _ := postWithKey(t, srv.URL+"/v1/jobs", "bad-1", bad)
	code2, out2, h2 := postWithKey(t, srv.URL+"/v1/jobs", "bad-1", bad)
	if code1 != 400 || code2 != 400 || out1 != out2 || h2.Get(HeaderReplayed) != "true" {
		t.Fatalf("keyed 400: %d %s / %d %s", code1, out1, code2, out2)
	}
	if code, out, _ := postWithKey(t, srv.URL+"/v1/jobs", "has space", body); code != 400 || !strings.Contains(out, HeaderIdempotencyKey) {
		t.Fatalf("bad key: %d %s", code, out)
	}
}

func TestIdempotencyKeyConcurrentRequestsRunOnce(t *testing.T) {
	srv, c := newNode(t)
	body := `{"type":"order.created","data":{"n":1}}`
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() { codes[i], _, _ = postWithKey(t, srv.URL+"/v1/events", "evt-1", body) })
	}
	wg.Wait()
	ok := 0
	for _, code := range codes {
		switch code {
		case 202:
			ok++
		case 409: // in progress: the client retries
		default:
			t.Fatalf("codes %v", codes)
		}
	}
	evs, _ := c.FSM().State().Events(DefaultProject, "", 0)
	if ok == 0 || len(evs) != 1 {
		t.Fatalf("codes %v, %d events; want one event", codes, len(evs))
	}
}

// The first write of a keyed request is guarded by its claim: it marks the
// claim Applied in the same command, a write whose claim is gone applies
// nothing, and a retry after a lost answer is told so instead of running.
func TestIdempotencyGuardedWrite(t *testing.T) {
	srv, c := newNode(t)
	ctx := t.Context()
	body := `{"name":"guarded","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`
	if code, raw, _ := postWithKey(t, srv.URL+"/v1/jobs", "g-1", body); code != 201 {
		t.Fatalf("create: %d %s", code, raw)
	}
	rec, err := c.FSM().State().Idempotency(DefaultProject + "/g-1")
	if err != nil || !rec.Applied || rec.Status != 201 {
		t.Fatalf("record after a keyed create: %+v %v", rec, err)
	}

	// The node died after the write and before storing the answer: the
	// record is Applied without a status and its claim is over.
	lost := *rec
	lost.Status, lost.Body, lost.ClaimUntil = 0, nil, 1
	cmd, err := fsm.PutCommand(fsm.TableIdempotency, &lost, fsm.PutOptions{IfIndex: rec.ModifyIndex})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	code, raw, _ := postWithKey(t, srv.URL+"/v1/jobs", "g-1", body)
	if code != 409 || !strings.Contains(raw, "idempotency_answer_lost") {
		t.Fatalf("retry after a lost answer: %d %s", code, raw)
	}
	if jobs := c.FSM().State().Count(fsm.TableJobs); jobs != 1 {
		t.Fatalf("%d jobs after the retry, want 1: it ran again", jobs)
	}

	// A write whose claim was released (or taken over) before it committed
	// applies nothing.
	s := New(Config{Cluster: c, Version: "test", MaxBodyBytes: 4096})
	claim := &fsm.IdempotencyRecord{ID: DefaultProject + "/g-2", Fingerprint: "x", ClaimUntil: fsm.MillisOf(time.Now().Add(time.Minute)),
		CreatedAt: fsm.MillisOf(time.Now()), ExpiresAt: fsm.MillisOf(time.Now().Add(time.Hour))}
	cmd, _ = fsm.PutCommand(fsm.TableIdempotency, claim, fsm.PutOptions{IfAbsent: true})
	res, err := c.Apply(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	claim.ModifyIndex = res.Index
	release, _ := fsm.DeleteCommand(fsm.TableIdempotency, claim.ID, res.Index)
	if _, err := c.Apply(ctx, release); err != nil {
		t.Fatal(err)
	}
	gc, _ := gin.CreateTestContext(httptest.NewRecorder())
	gc.Request = httptest.NewRequest("POST", "/v1/jobs", nil)
	gc.Set(ctxIdemClaim, &heldClaim{rec: claim})
	job := &fsm.Job{ID: "job_stale", Project: DefaultProject, Name: "stale", Status: fsm.JobActive, CallbackURL: "https://example.com/h"}
	jobCmd, err := fsm.PutCommand(fsm.TableJobs, job, fsm.PutOptions{IfAbsent: true})
	err = s.apply(gc, jobCmd, err)
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != 409 {
		t.Fatalf("write under a released claim: %v", err)
	}
	if _, err := c.FSM().State().Job("job_stale"); err == nil {
		t.Fatal("a write under a released claim was applied")
	}
}

// postKeyedAs is postWithKey with the given token.
func postKeyedAs(t *testing.T, url, token, key, body string) response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderIdempotencyKey, key)
	req.Header.Set("Authorization", "Bearer "+token)
	return roundTrip(t, req)
}

// Issue 12 item 1: a remembered answer belongs to the token that got it. A
// project-bound admin replaying the root's token create, or a write token
// replaying the root's endpoint create, gets 409, never the answer; and no
// record ever holds a secret.
func TestIdempotencyReplayIsBoundToTheCaller(t *testing.T) {
	srv, c := newNode(t)
	u := srv.URL
	mk := func(body string) (string, string) {
		r := want(t, as(t, u, testRootToken, "POST", "/v1/tokens", body), 201)
		return str(t, r.body, "id"), str(t, r.body, "token")
	}
	_, boundAdmin := mk(`{"name":"ops","scopes":["admin"],"project":"default"}`)
	_, writer := mk(`{"name":"ci","scopes":["write"]}`)
	_, reader := mk(`{"name":"dash","scopes":["read"]}`)
	rootTok, err := c.FSM().State().TokenByHash(HashToken(testRootToken))
	if err != nil {
		t.Fatal(err)
	}

	// The root creates an unrestricted admin token under a key.
	tokBody := `{"name":"second-root","scopes":["admin"]}`
	first := postKeyedAs(t, u+"/v1/tokens", testRootToken, "tok-1", tokBody)
	want(t, first, 201)
	secret := str(t, first.body, "token")

	// The bound admin sends the same key and body: 409, no secret.
	r := postKeyedAs(t, u+"/v1/tokens", boundAdmin, "tok-1", tokBody)
	if r.status != 409 || strings.Contains(r.raw, secret) || r.header.Get(HeaderReplayed) != "" {
		t.Fatalf("another caller's replay of POST /v1/tokens: %d %s", r.status, r.raw)
	}
	if code, field := errorOf(t, r); code != "idempotency_key_other_caller" || field != HeaderIdempotencyKey {
		t.Fatalf("another caller's replay: code %q field %q", code, field)
	}
	// So does another caller with another body (no oracle on the body).
	r = postKeyedAs(t, u+"/v1/tokens", boundAdmin, "tok-1", `{"name":"x","scopes":["read"],"project":"default"}`)
	if code, _ := errorOf(t, r); r.status != 409 || code != "idempotency_key_other_caller" {
		t.Fatalf("another caller, another body: %d %s", r.status, r.raw)
	}
	// Scope and project binding are checked before the key: a read token
	// gets 403, a token bound to default asking for another project 404.
	want(t, postKeyedAs(t, u+"/v1/tokens", reader, "tok-1", tokBody), 403)
	want(t, as(t, u, testRootToken, "POST", "/v1/projects", `{"name":"other"}`), 201)
	want(t, postKeyedAs(t, u+"/v1/jobs?project=other", boundAdmin, "tok-1", `{"recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`), 404)

	// The root's own replay: the answer without its secret, and says so.
	r = postKeyedAs(t, u+"/v1/tokens", testRootToken, "tok-1", tokBody)
	if r.status != 201 || r.header.Get(HeaderReplayed) != "true" || r.header.Get(HeaderSecretWithheld) != "token" {
		t.Fatalf("own replay: %d replayed=%q withheld=%q %s", r.status, r.header.Get(HeaderReplayed), r.header.Get(HeaderSecretWithheld), r.raw)
	}
	if strings.Contains(r.raw, secret) || r.body["token"] != nil || r.body["id"] != first.body["id"] {
		t.Fatalf("own replay shows the secret or another token: %s", r.raw)
	}
	rec, err := c.FSM().State().Idempotency(DefaultProject + "/tok-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Caller != rootTok.ID || strings.Contains(string(rec.Body), secret) || strings.Contains(string(rec.Body), testRootToken) {
		t.Fatalf("stored record: caller %q body %s", rec.Caller, rec.Body)
	}

	// A write token replays the root's endpoint create: 409, no signing
	// secret; the stored answer has none either.
	epBody := `{"url":"https://example.com/hook","eventTypes":["*"],"headers":{"Authorization":"Bearer receiver-credential"}}`
	first = postKeyedAs(t, u+"/v1/endpoints", testRootToken, "ep-1", epBody)
	want(t, first, 201)
	signing := str(t, first.body, "secret")
	epID := str(t, first.body, "id")
	r = postKeyedAs(t, u+"/v1/endpoints", writer, "ep-1", epBody)
	if code, _ := errorOf(t, r); r.status != 409 || code != "idempotency_key_other_caller" || strings.Contains(r.raw, signing) {
		t.Fatalf("a write token's replay of POST /v1/endpoints: %d %s", r.status, r.raw)
	}
	r = postKeyedAs(t, u+"/v1/endpoints", testRootToken, "ep-1", epBody)
	if r.status != 201 || strings.Contains(r.raw, signing) || r.header.Get(HeaderSecretWithheld) != "secret" || r.body["id"] != epID {
		t.Fatalf("own replay of POST /v1/endpoints: %d withheld=%q %s", r.status, r.header.Get(HeaderSecretWithheld), r.raw)
	}

	// Rotation: the new secret is not kept either.
	first = postKeyedAs(t, u+"/v1/endpoints/"+epID+"/rotate-secret", writer, "rot-1", `{"graceSeconds":60}`)
	want(t, first, 200)
	rotated := str(t, first.body, "secret")
	r = postKeyedAs(t, u+"/v1/endpoints/"+epID+"/rotate-secret", writer, "rot-1", `{"graceSeconds":60}`)
	if r.status != 200 || strings.Contains(r.raw, rotated) || r.header.Get(HeaderSecretWithheld) != "secret" {
		t.Fatalf("own replay of a rotation: %d %s", r.status, r.raw)
	}

	// No record holds any secret.
	for _, id := range []string{"tok-1", "ep-1", "rot-1"} {
		rec, err := c.FSM().State().Idempotency(DefaultProject + "/" + id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{secret, signing, rotated} {
			if strings.Contains(string(rec.Body), s) {
				t.Fatalf("record %s holds a secret: %s", id, rec.Body)
			}
		}
	}
}

// A record written before records named their caller (by a node of an
// older version, during a rolling upgrade) is replayed to operators only
// (admin tokens bound to no project), without its secrets and with header
// values masked; any other token gets 409.
func TestIdempotencyRecordWithoutCaller(t *testing.T) {
	srv, c := newNode(t)
	u := srv.URL
	writer := str(t, want(t, as(t, u, testRootToken, "POST", "/v1/tokens", `{"name":"w","scopes":["admin"],"project":"default"}`), 201).body, "token")
	reqBody := `{"url":"https://example.com/hook","eventTypes":["*"]}`
	now := time.Now()
	old := &fsm.IdempotencyRecord{ID: DefaultProject + "/old-1", Fingerprint: fingerprint("POST", "/v1/endpoints", "", []byte(reqBody)), Status: 201,
		Body:      []byte(`{"id":"ep_old","secret":"whsec_leaked","headers":{"Authorization":"Bearer old-credential"}}`),
		CreatedAt: fsm.MillisOf(now), ExpiresAt: fsm.MillisOf(now.Add(time.Hour))}
	cmd, err := fsm.PutCommand(fsm.TableIdempotency, old, fsm.PutOptions{IfAbsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(t.Context(), cmd); err != nil {
		t.Fatal(err)
	}
	r := postKeyedAs(t, u+"/v1/endpoints", writer, "old-1", reqBody)
	if code, _ := errorOf(t, r); r.status != 409 || code != "idempotency_key_other_caller" {
		t.Fatalf("a project-bound token and a record without a caller: %d %s", r.status, r.raw)
	}
	r = postKeyedAs(t, u+"/v1/endpoints", testRootToken, "old-1", reqBody)
	if r.status != 201 || r.header.Get(HeaderReplayed) != "true" || r.header.Get(HeaderSecretWithheld) != "secret" || r.body["id"] != "ep_old" {
		t.Fatalf("the root and a record without a caller: %d %v %s", r.status, r.header, r.raw)
	}
	if strings.Contains(r.raw, "whsec_leaked") || strings.Contains(r.raw, "old-credential") || !strings.Contains(r.raw, fsm.MaskedHeaderValue) {
		t.Fatalf("a legacy replay shows a secret: %s", r.raw)
	}
}
