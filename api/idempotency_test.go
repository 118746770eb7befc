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
	claim := &fsm.IdempotencyRecord{ID: DefaultProject + "/g-2", Fingerprint: "x", ClaimUntil: fsm.MillisOf(time.Now().Add(time.Minute)), ExpiresAt: fsm.MillisOf(time.Now().Add(time.Hour))}
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
