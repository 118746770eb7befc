package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chime-sched/chime/client"
)

// receiver is a webhook receiver: /ok answers 200, /fail 500.
func receiver(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if strings.HasSuffix(r.URL.Path, "/fail") {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &hits
}

// eventually polls cond until it holds or 10 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apiError asserts err is a *client.Error with this status and code.
func apiError(t *testing.T, err error, status int, code, field string) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *client.Error %d %s, got %v", status, code, err)
	}
	if e.Status != status || e.Code != code || (field != "" && e.Field != field) || e.Message == "" {
		t.Fatalf("want %d %s field %q, got %+v", status, code, field, e)
	}
	return e
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestAgainstNode runs every method against one real node; the steps share
// it (starting a node per step would dominate the run time) and go in order.
func TestAgainstNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	addr := startNode(t)
	hook, hits := receiver(t)
	// A bare host:port works like a URL.
	c := client.New(strings.TrimPrefix(addr, "http://"), rootToken)

	t.Run("open routes", func(t *testing.T) {
		h, err := c.Health(ctx)
		noErr(t, err)
		if h.Status != "ok" || h.NodeID != "n1" || h.Version != "test" {
			t.Fatalf("health: %+v", h)
		}
		r, err := c.Ready(ctx)
		noErr(t, err)
		if r.Status != "ready" {
			t.Fatalf("ready: %+v", r)
		}
		doc, err := c.OpenAPI(ctx)
		noErr(t, err)
		if !json.Valid(doc) || !bytes.Contains(doc, []byte(`"/v1/jobs"`)) {
			t.Fatalf("openapi: %.200s", doc)
		}
		st, err := client.New(addr, "").ClusterStatus(ctx)
		noErr(t, err)
		if st.NodeID != "n1" || st.Leader == nil || st.Leader.ID != "n1" || len(st.Nodes) != 1 || st.Nodes[0].Raft != "leader" || st.Raft.AppliedIndex == 0 {
			t.Fatalf("status: %+v", st)
		}
	})

	t.Run("auth errors", func(t *testing.T) {
		_, err := client.New(addr, "").ListJobs(ctx, client.JobListOptions{})
		apiError(t, err, 401, "unauthorized", "")
		_, err = client.New(addr, "chime_wrong-token-0000000000").ListJobs(ctx, client.JobListOptions{})
		apiError(t, err, 401, "unauthorized", "")
	})

	t.Run("projects", func(t *testing.T) {
		p, err := c.CreateProject(ctx, client.ProjectRequest{Name: "billing", Description: "invoices"})
		noErr(t, err)
		if p.Name != "billing" || p.Description != "invoices" || p.CreatedAt.IsZero() {
			t.Fatalf("create: %+v", p)
		}
		_, err = c.CreateProject(ctx, client.ProjectRequest{Name: "billing"})
		apiError(t, err, 409, "conflict", "")
		_, err = c.CreateProject(ctx, client.ProjectRequest{Name: "Bad Name"})
		apiError(t, err, 400, "invalid_request", "name")
		if _, err := c.CreateProject(ctx, client.ProjectRequest{Name: "scratch"}); err != nil {
			t.Fatal(err)
		}
		g, err := c.GetProject(ctx, "billing")
		noErr(t, err)
		if g.Description != "invoices" {
			t.Fatalf("get: %+v", g)
		}
		// Pages of one, walked by All: default, billing, scratch.
		var names []string
		for p, err := range client.All(ctx, func(ctx context.Context, cursor string) (*client.Page[client.Project], error) {
			return c.ListProjects(ctx, client.ListOptions{Limit: 1, Cursor: cursor})
		}) {
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, p.Name)
		}
		if strings.Join(names, ",") != "billing,default,scratch" {
			t.Fatalf("all projects: %v", names)
		}
		first, err := c.ListProjects(ctx, client.ListOptions{Limit: 2})
		noErr(t, err)
		if len(first.Items) != 2 || first.NextCursor == "" {
			t.Fatalf("page: %+v", first)
		}
		// The same key twice: the second call gets the first answer, not a 409.
		kctx := client.WithIdempotencyKey(ctx, "create-keyed")
		keyed, err := c.CreateProject(kctx, client.ProjectRequest{Name: "keyed"})
		noErr(t, err)
		again, err := c.CreateProject(kctx, client.ProjectRequest{Name: "keyed"})
		noErr(t, err)
		if !again.CreatedAt.Equal(keyed.CreatedAt) {
			t.Fatalf("replayed answer differs: %+v %+v", keyed, again)
		}
		_, err = c.CreateProject(kctx, client.ProjectRequest{Name: "other"})
		apiError(t, err, 422, "idempotency_key_reused", "")
		noErr(t, c.DeleteProject(ctx, "keyed"))
		if err := c.DeleteProject(ctx, "scratch"); err != nil {
			t.Fatal(err)
		}
		_, err = c.GetProject(ctx, "scratch")
		apiError(t, err, 404, "not_found", "")
	})

	t.Run("tokens", func(t *testing.T) {
		tok, err := c.CreateToken(ctx, client.TokenRequest{Name: "reader", Scopes: []string{client.ScopeRead}, Project: "billing"})
		noErr(t, err)
		if !strings.HasPrefix(tok.Secret, "chime_") || tok.ID == "" || tok.Project == nil || *tok.Project != "billing" {
			t.Fatalf("create: %+v", tok)
		}
		_, err = c.CreateToken(ctx, client.TokenRequest{Name: "x", Scopes: []string{"superuser"}})
		apiError(t, err, 400, "invalid_request", "scopes[0]")
		reader := client.New(addr, tok.Secret)
		if _, err := reader.ListJobs(ctx, client.JobListOptions{}); err != nil {
			t.Fatalf("a read token cannot read: %v", err)
		}
		_, err = reader.CreateJob(ctx, client.JobRequest{CallbackURL: hook, Schedule: client.Schedule{DelaySeconds: client.Ptr(int64(60))}})
		apiError(t, err, 403, "forbidden", "")
		found := false
		for tk, err := range client.All(ctx, func(ctx context.Context, cursor string) (*client.Page[client.Token], error) {
			return c.ListTokens(ctx, client.ListOptions{Cursor: cursor})
		}) {
			if err != nil {
				t.Fatal(err)
			}
			found = found || (tk.ID == tok.ID && tk.Name == "reader" && !tk.Revoked)
		}
		if !found {
			t.Fatal("the new token is not listed")
		}
		r, err := c.RevokeToken(ctx, tok.ID)
		noErr(t, err)
		if !r.Revoked {
			t.Fatalf("revoke: %+v", r)
		}
		_, err = reader.ListJobs(ctx, client.JobListOptions{})
		apiError(t, err, 401, "unauthorized", "")
	})

	t.Run("stream", func(t *testing.T) {
		billing := c.InProject("billing")
		err := billing.Stream(ctx, client.StreamOptions{Resources: []string{"planets"}}, func(client.StreamEvent) error { return nil })
		apiError(t, err, 400, "invalid_request", "resources")

		sctx, stop := context.WithCancel(ctx)
		defer stop()
		events := make(chan client.StreamEvent)
		done := make(chan error, 1)
		go func() {
			done <- billing.Stream(sctx, client.StreamOptions{Resources: []string{"jobs"}}, func(e client.StreamEvent) error {
				select {
				case events <- e:
					return nil
				case <-sctx.Done():
					return sctx.Err()
				}
			})
		}()
		next := func() client.StreamEvent {
			t.Helper()
			select {
			case e := <-events:
				return e
			case err := <-done:
				t.Fatalf("the stream ended: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("no stream event in 10 s")
			}
			return client.StreamEvent{}
		}
		if e := next(); e.Type != "ready" || !bytes.Contains(e.Data, []byte(`"project":"billing"`)) {
			t.Fatalf("first event: %+v", e)
		}
		j, err := billing.CreateJob(ctx, client.JobRequest{Name: "streamed", CallbackURL: hook + "/ok",
			Schedule: client.Schedule{DelaySeconds: client.Ptr(int64(3600))}})
		noErr(t, err)
		e := next()
		ch, err := e.Change()
		noErr(t, err)
		var got client.Job
		noErr(t, json.Unmarshal(ch.Object, &got))
		if e.Type != "job.created" || e.ID == "" || ch.Resource != "job" || ch.Op != "created" || ch.ID != j.ID || got.Name != "streamed" {
			t.Fatalf("change: %+v %+v %+v", e, ch, got)
		}
		stop()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("stream after cancel: %v", err)
		}
	})

	var jobID string
	t.Run("jobs", func(t *testing.T) {
		j, err := c.CreateJob(ctx, client.JobRequest{
			Name: "weekly", CallbackURL: hook + "/ok", Headers: map[string]string{"X-Team": "ops"},
			Payload: json.RawMessage(`{"order":42}`), MaxRetries: 2,
			Schedule: client.Schedule{Timezone: "Europe/Rome", Recurrence: &client.Recurrence{
				Frequency: "weekly", Interval: client.Ptr(2), Weekdays: []string{"TU"}, Times: []string{"09:00"}}},
		})
		noErr(t, err)
		jobID = j.ID
		if j.Status != client.JobActive || j.Kind != "recurrence" || j.NextFireAt == nil || j.Project != "default" ||
			j.Schedule.Recurrence == nil || j.Schedule.Timezone != "Europe/Rome" || j.RetryPolicy.MaxAttempts != 2 ||
			string(j.Payload) != `{"order":42}` || j.Headers["X-Team"] != client.MaskedHeaderValue {
			t.Fatalf("create: %+v", j)
		}
		_, err = c.CreateJob(ctx, client.JobRequest{CallbackURL: hook, Schedule: client.Schedule{Cron: "61 * * * *"}})
		apiError(t, err, 400, "invalid_request", "cron")

		got, err := c.GetJob(ctx, jobID)

		noErr(t, err)
		if got.ID != jobID || got.Name != "weekly" {
			t.Fatalf("get: %+v", got)
		}
		_, err = c.GetJob(ctx, "job_missing")
		apiError(t, err, 404, "not_found", "")

		// A second job, in another project, is invisible from default.
		other, err := c.InProject("billing").CreateJob(ctx, client.JobRequest{CallbackURL: hook + "/ok",
			Schedule: client.Schedule{DelaySeconds: client.Ptr(int64(3600))}})
		noErr(t, err)
		if other.Project != "billing" {
			t.Fatalf("project option ignored: %+v", other)
		}
		_, err = c.GetJob(ctx, other.ID)
		apiError(t, err, 404, "not_found", "")
		if _, err := client.New(addr, rootToken, client.WithProject("billing")).GetJob(ctx, other.ID); err != nil {
			t.Fatal(err)
		}

		upd, err := c.UpdateJob(ctx, jobID, client.JobPatch{Name: client.Ptr("hourly"),
			Schedule: &client.Schedule{RecurrenceSeconds: client.Ptr(int64(3600))}, ManualCompletion: client.Ptr(true)})
		noErr(t, err)
		if upd.Name != "hourly" || upd.Kind != "interval" || !upd.ManualCompletion || upd.Headers["X-Team"] != client.MaskedHeaderValue {
			t.Fatalf("update: %+v", upd)
		}
		_, err = c.UpdateJob(ctx, jobID, client.JobPatch{Method: client.Ptr("BREW")})
		apiError(t, err, 400, "invalid_request", "method")

		p, err := c.PauseJob(ctx, jobID)

		noErr(t, err)

		if p.Status != client.JobPaused {
			t.Fatalf("pause: %+v", p)
		}
		page, err := c.ListJobs(ctx, client.JobListOptions{Status: client.JobPaused})
		noErr(t, err)
		if len(page.Items) != 1 || page.Items[0].ID != jobID {
			t.Fatalf("list paused: %+v", page)
		}
		r, err := c.ResumeJob(ctx, jobID)
		noErr(t, err)
		if r.Status != client.JobActive {
			t.Fatalf("resume: %+v", r)
		}
		// Next fire within the hour: the interval job; the weekly one was
		// changed into it, so the window holds exactly one.
		now := time.Now()
		win, err := c.ListJobs(ctx, client.JobListOptions{From: now, To: now.Add(61 * time.Minute), ListOptions: client.ListOptions{Limit: 10}})
		noErr(t, err)
		if len(win.Items) != 1 || win.Items[0].ID != jobID {
			t.Fatalf("list from/to: %+v", win)
		}
		_, err = c.ListJobs(ctx, client.JobListOptions{Status: "sleeping"})
		apiError(t, err, 400, "invalid_request", "status")

		fires, err := c.PreviewSchedule(ctx, client.PreviewRequest{From: "2024-03-09T12:00:00Z", Count: 2,
			Schedule: client.Schedule{ScheduleTimes: []string{"02:30"}, Timezone: "America/New_York"}})
		noErr(t, err)
		if len(fires) != 2 || !fires[0].Equal(time.Date(2024, 3, 10, 7, 30, 0, 0, time.UTC)) {
			t.Fatalf("preview: %v", fires)
		}
	})

	t.Run("occurrences", func(t *testing.T) {
		occ, err := c.TriggerJob(ctx, jobID)
		noErr(t, err)
		if occ.JobID != jobID || !occ.Manual || occ.Status != client.OccurrencePending || len(occ.Deliveries) != 1 {
			t.Fatalf("trigger: %+v", occ)
		}
		eventually(t, "the callback", func() bool { return hits.Load() > 0 })
		done, err := c.CompleteOccurrence(ctx, occ.ID)
		noErr(t, err)
		if done.Status != client.OccurrenceCompleted || done.CompletedAt == nil {
			t.Fatalf("complete: %+v", done)
		}
		second, err := c.TriggerJob(ctx, jobID)
		noErr(t, err)
		s, err := c.SkipOccurrence(ctx, second.ID)
		noErr(t, err)
		if s.Status != client.OccurrenceSkipped {
			t.Fatalf("skip: %+v", s)
		}
		_, err = c.SkipOccurrence(ctx, second.ID)
		apiError(t, err, 409, "conflict", "")
		g, err := c.GetOccurrence(ctx, occ.ID)
		noErr(t, err)
		if g.Number != occ.Number || len(g.Deliveries) != 1 {
			t.Fatalf("get: %+v", g)
		}
		all, err := c.ListOccurrences(ctx, jobID, client.OccurrenceListOptions{})
		noErr(t, err)
		if len(all.Items) != 2 {
			t.Fatalf("list: %+v", all)
		}
		skipped, err := c.ListOccurrences(ctx, jobID, client.OccurrenceListOptions{Status: client.OccurrenceSkipped})
		noErr(t, err)
		if len(skipped.Items) != 1 || skipped.Items[0].ID != second.ID {
			t.Fatalf("list skipped: %+v", skipped)
		}
		one, err := c.ListOccurrences(ctx, jobID, client.OccurrenceListOptions{ListOptions: client.ListOptions{Limit: 1}})
		noErr(t, err)
		rest, err := c.ListOccurrences(ctx, jobID, client.OccurrenceListOptions{ListOptions: client.ListOptions{Limit: 1, Cursor: one.NextCursor}})
		noErr(t, err)
		if len(one.Items) != 1 || len(rest.Items) != 1 || one.Items[0].Number >= rest.Items[0].Number {
			t.Fatalf("pages: %+v %+v", one, rest)
		}
	})

	var epID string
	t.Run("endpoints and events", func(t *testing.T) {
		ep, err := c.CreateEndpoint(ctx, client.EndpointRequest{URL: hook + "/fail", EventTypes: []string{"invoice.*"},
			RetryPolicy: &client.RetryPolicy{MaxAttempts: 1}, Description: "always fails"})
		noErr(t, err)
		epID = ep.ID
		if !strings.HasPrefix(ep.Secret, "whsec_") || !ep.Enabled || ep.RetryPolicy.MaxAttempts != 1 {
			t.Fatalf("create: %+v", ep)
		}
		_, err = c.CreateEndpoint(ctx, client.EndpointRequest{URL: "ftp://x", EventTypes: []string{"a"}})
		apiError(t, err, 400, "invalid_request", "url")
		g, err := c.GetEndpoint(ctx, epID)
		noErr(t, err)
		if g.Description != "always fails" {
			t.Fatalf("get: %+v", g)
		}
		l, err := c.ListEndpoints(ctx, client.ListOptions{})
		noErr(t, err)
		if len(l.Items) != 1 || l.Items[0].ID != epID {
			t.Fatalf("list: %+v", l)
		}
		u, err := c.UpdateEndpoint(ctx, epID, client.EndpointPatch{Description: client.Ptr("fails"), TimeoutSeconds: client.Ptr(5.0)})
		noErr(t, err)
		if u.Description != "fails" || u.TimeoutSeconds != 5 || u.URL != hook+"/fail" {
			t.Fatalf("update: %+v", u)
		}
		rot, err := c.RotateSecret(ctx, epID, 60)
		noErr(t, err)
		if rot.Secret == ep.Secret || rot.PreviousSecretExpiresAt == nil {
			t.Fatalf("rotate: %+v", rot)
		}

		// A failing delivery becomes a dead letter, is retried and replayed.
		ev, err := c.PublishEvent(ctx, client.EventRequest{Type: "invoice.paid", Data: json.RawMessage(`{"id":"inv_1"}`), IdempotencyKey: "k1"})
		noErr(t, err)
		if ev.Type != "invoice.paid" || ev.ID == "" {
			t.Fatalf("publish: %+v", ev)
		}
		again, err := c.PublishEvent(ctx, client.EventRequest{Type: "invoice.paid", IdempotencyKey: "k1"})
		noErr(t, err)
		if again.ID != ev.ID {
			t.Fatalf("idempotent publish made %s, want %s", again.ID, ev.ID)
		}
		var dID string
		eventually(t, "a dead letter", func() bool {
			d, err := c.GetEvent(ctx, ev.ID)
			noErr(t, err)
			if len(d.Deliveries) == 1 && d.Deliveries[0].Status == client.DeliveryDeadLetter {
				dID = d.Deliveries[0].ID
				return true
			}
			return false
		})
		dd, err := c.GetDelivery(ctx, dID)
		noErr(t, err)
		if len(dd.AttemptHistory) != 1 || dd.AttemptHistory[0].StatusCode == nil || *dd.AttemptHistory[0].StatusCode != 500 {
			t.Fatalf("get delivery: %+v", dd)
		}
		dl, err := c.ListDeliveries(ctx, client.DeliveryListOptions{Status: client.DeliveryDeadLetter, EndpointID: epID})
		noErr(t, err)
		if len(dl.Items) != 1 || dl.Items[0].ID != dID {
			t.Fatalf("list dead letters: %+v", dl)
		}
		byJob, err := c.ListDeliveries(ctx, client.DeliveryListOptions{JobID: jobID})
		noErr(t, err)
		if len(byJob.Items) != 2 {
			t.Fatalf("list by job: %+v", byJob)
		}
		none, err := c.ListDeliveries(ctx, client.DeliveryListOptions{From: time.Now().Add(time.Hour)})
		noErr(t, err)
		if len(none.Items) != 0 {
			t.Fatalf("list from the future: %+v", none)
		}
		h, err := c.ListEndpointDeliveries(ctx, epID, client.DeliveryListOptions{Status: client.DeliveryDeadLetter})
		noErr(t, err)
		if len(h.Items) != 1 {
			t.Fatalf("endpoint history: %+v", h)
		}
		r, err := c.RetryDelivery(ctx, dID)
		noErr(t, err)
		if r.Status == client.DeliveryDeadLetter && r.Attempts == 1 {
			t.Fatalf("retry did not re-queue: %+v", r)
		}
		eventually(t, "the retried delivery to fail again", func() bool {
			d, err := c.GetDelivery(ctx, dID)
			noErr(t, err)
			return d.Status == client.DeliveryDeadLetter
		})
		rep, err := c.ReplayDeliveries(ctx, client.ReplayRequest{EndpointID: epID, Limit: client.Ptr(10)})
		noErr(t, err)
		if rep.Requeued != 1 || len(rep.IDs) != 1 || rep.IDs[0] != dID {
			t.Fatalf("replay: %+v", rep)
		}
		_, err = c.ReplayDeliveries(ctx, client.ReplayRequest{Status: client.DeliverySucceeded})
		apiError(t, err, 400, "invalid_request", "status")

		// Disabled: new deliveries are held; one is cancelled, the other
		// released by enable.
		d, err := c.DisableEndpoint(ctx, epID)
		noErr(t, err)
		if d.Enabled || d.DisabledReason == nil {
			t.Fatalf("disable: %+v", d)
		}
		var held []string
		for i := range 2 {
			e, err := c.PublishEvent(ctx, client.EventRequest{Type: "invoice.sent", Data: json.RawMessage(fmt.Sprint(i))})
			noErr(t, err)
			eventually(t, "a held delivery", func() bool {
				d, err := c.GetEvent(ctx, e.ID)
				noErr(t, err)
				if len(d.Deliveries) == 1 && d.Deliveries[0].Status == client.DeliveryHeld {
					held = append(held, d.Deliveries[0].ID)
					return true
				}
				return false
			})
		}
		cd, err := c.CancelDelivery(ctx, held[0])
		noErr(t, err)
		if cd.Status != client.DeliveryCancelled {
			t.Fatalf("cancel: %+v", cd)
		}
		_, err = c.CancelDelivery(ctx, held[0])
		apiError(t, err, 409, "conflict", "")
		en, err := c.EnableEndpoint(ctx, epID, true)
		noErr(t, err)
		if !en.Enabled || en.Released == nil || *en.Released != 1 {
			t.Fatalf("enable: %+v", en)
		}
	})

	t.Run("endpoint test", func(t *testing.T) {
		before := hits.Load()
		d, err := c.TestEndpoint(ctx, epID)
		noErr(t, err)
		// The endpoint answers 500: the one attempt is recorded with it.
		if d.ID == "" || d.EndpointID == nil || *d.EndpointID != epID || len(d.AttemptHistory) != 1 ||
			d.AttemptHistory[0].StatusCode == nil || *d.AttemptHistory[0].StatusCode != 500 || hits.Load() == before {
			t.Fatalf("test: %+v", d)
		}
		_, err = c.TestEndpoint(ctx, "ep_missing")
		apiError(t, err, 404, "not_found", "")
	})

	t.Run("delete endpoint", func(t *testing.T) {
		del, err := c.DeleteEndpoint(ctx, epID)
		noErr(t, err)
		if !del.Deleted || del.ID != epID || del.DeliveriesRemoved < 3 {
			t.Fatalf("delete: %+v", del)
		}
		_, err = c.GetEndpoint(ctx, epID)
		apiError(t, err, 404, "not_found", "")
	})

	t.Run("job end of life", func(t *testing.T) {
		a, err := c.ArchiveJob(ctx, jobID)
		noErr(t, err)
		if a.Status != client.JobArchived {
			t.Fatalf("archive: %+v", a)
		}
		x, err := c.CancelJob(ctx, jobID)
		noErr(t, err)
		if x.Status != client.JobCancelled || x.NextFireAt != nil {
			t.Fatalf("cancel: %+v", x)
		}
		_, err = c.UpdateJob(ctx, jobID, client.JobPatch{Name: client.Ptr("again")})
		apiError(t, err, 409, "conflict", "status")
	})

	t.Run("cluster operations", func(t *testing.T) {
		// One node: there is nobody to hand leadership to, and no dead peer.
		_, err := c.TransferLeadership(ctx, "")
		apiError(t, err, 409, "conflict", "")
		_, err = c.TransferLeadership(ctx, "n7")
		apiError(t, err, 404, "not_found", "to")
		apiError(t, c.RemovePeer(ctx, "n9"), 404, "not_found", "")
	})

	t.Run("snapshot", func(t *testing.T) {
		var snap bytes.Buffer
		n, err := c.SaveSnapshot(ctx, &snap)
		if err != nil || n == 0 || int64(snap.Len()) != n {
			t.Fatalf("save: %d bytes, %v", n, err)
		}
		if _, err := c.CreateProject(ctx, client.ProjectRequest{Name: "later"}); err != nil {
			t.Fatal(err)
		}
		_, err = c.RestoreSnapshot(ctx, bytes.NewReader(snap.Bytes()[:snap.Len()-3]))
		apiError(t, err, 400, "invalid_snapshot", "")
		res, err := c.RestoreSnapshot(ctx, bytes.NewReader(snap.Bytes()))
		noErr(t, err)
		if !res.Restored || res.AppliedIndex == 0 {
			t.Fatalf("restore: %+v", res)
		}
		_, err = c.GetProject(ctx, "later")
		apiError(t, err, 404, "not_found", "")
		if _, err := c.GetProject(ctx, "billing"); err != nil {
			t.Fatalf("a project of the snapshot is gone: %v", err)
		}
	})
}

func TestRawBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"name":"default","createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z","future":1}`)
	}))
	defer srv.Close()
	var raw []byte
	p, err := client.New(srv.URL, "t").GetProject(client.WithRawBody(context.Background(), &raw), "default")
	if err != nil || p.Name != "default" {
		t.Fatalf("%+v %v", p, err)
	}
	if !bytes.Contains(raw, []byte(`"future":1`)) {
		t.Fatalf("raw body: %s", raw)
	}
}

// seen is what a fake server received, handed over through a channel so
// that the race detector sees the ordering.
type seen struct {
	method string
	url    *url.URL
	header http.Header
	body   string
}

func TestRequests(t *testing.T) {
	reqs := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs <- seen{r.Method, r.URL, r.Header, string(b)}
		fmt.Fprint(w, `{"items":[],"nextCursor":null}`)
	}))
	defer srv.Close()
	ctx := context.Background()
	c := client.New(srv.URL+"/", "tok", client.WithProject("billing"), client.WithUserAgent("ua/1"))
	from := time.Date(2024, 3, 9, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	page, err := c.ListDeliveries(ctx, client.DeliveryListOptions{Status: "dead_letter", EndpointID: "ep/1",
		From: from, ListOptions: client.ListOptions{Limit: 5, Cursor: "abc"}})
	if err != nil || page.NextCursor != "" || page.Items == nil {
		t.Fatalf("%+v %v", page, err)
	}
	got := <-reqs
	q := got.url.Query()
	if got.url.Path != "/v1/deliveries" || q.Get("project") != "billing" || q.Get("status") != "dead_letter" ||
		q.Get("endpointId") != "ep/1" || q.Get("from") != "2024-03-09T11:00:00Z" || q.Get("limit") != "5" ||
		q.Get("cursor") != "abc" || q.Has("to") || q.Has("jobId") {
		t.Fatalf("request: %s", got.url)
	}
	if got.header.Get("Authorization") != "Bearer tok" || got.header.Get("User-Agent") != "ua/1" {
		t.Fatalf("headers: %v", got.header)
	}
	// Ids are escaped into one path segment; cluster-wide calls carry no project.
	if _, err := c.GetJob(ctx, "a/b?c"); err != nil {
		t.Fatal(err)
	}
	if got = <-reqs; got.url.EscapedPath() != "/v1/jobs/a%2Fb%3Fc" {
		t.Fatalf("escaped path: %s", got.url.EscapedPath())
	}
	if _, err := c.ListTokens(ctx, client.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if got = <-reqs; got.url.Query().Has("project") {
		t.Fatalf("tokens: %s", got.url)
	}
	// A patch sends exactly the fields set.
	if _, err := c.UpdateJob(ctx, "j", client.JobPatch{ManualCompletion: client.Ptr(false), Description: client.Ptr(""),
		Schedule: &client.Schedule{Cron: "0 9 * * *"}}); err != nil {
		t.Fatal(err)
	}
	got = <-reqs
	if got.method != http.MethodPatch || got.body != `{"cron":"0 9 * * *","description":"","manualCompletion":false}` ||
		got.header.Get("Content-Type") != "application/json" {
		t.Fatalf("patch: %s %s", got.method, got.body)
	}
	// An idempotency key goes on POSTs only.
	kctx := client.WithIdempotencyKey(ctx, "k-1")
	if _, err := c.PauseJob(kctx, "j"); err != nil {
		t.Fatal(err)
	}
	if got = <-reqs; got.header.Get("Idempotency-Key") != "k-1" {
		t.Fatalf("POST without the key: %v", got.header)
	}
	if _, err := c.GetJob(kctx, "j"); err != nil {
		t.Fatal(err)
	}
	if got = <-reqs; got.header.Get("Idempotency-Key") != "" {
		t.Fatalf("GET with a key: %v", got.header)
	}
}

func TestErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/jobs/busy":
			w.Header().Set("Retry-After", "2")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"code":"no_leader","message":"no leader"}}`)
		case "/v1/jobs/proxy":
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html>bad gateway</html>")
		default:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"code":"invalid_request","field":"cron","message":"cron: bad"}}`)
		}
	}))
	defer srv.Close()
	c := client.New(srv.URL, "t")
	ctx := context.Background()
	_, err := c.GetJob(ctx, "x")
	e := apiError(t, err, 400, "invalid_request", "cron")
	if e.Error() != "chime: 400 invalid_request (field cron): cron: bad" {
		t.Fatalf("message: %q", e.Error())
	}
	_, err = c.GetJob(ctx, "busy")
	if e := apiError(t, err, 503, "no_leader", ""); e.RetryAfter != 2*time.Second {
		t.Fatalf("retry after: %v", e.RetryAfter)
	}
	_, err = c.GetJob(ctx, "proxy")
	var pe *client.Error
	if !errors.As(err, &pe) || pe.Status != 502 || pe.Code != "" || pe.Message != "<html>bad gateway</html>" {
		t.Fatalf("proxy error: %#v", err)
	}
	for _, bad := range []string{"", "ftp://x", "http://", "http://h/?q=1"} {
		if _, err := client.New(bad, "t").Health(ctx); err == nil {
			t.Fatalf("address %q accepted", bad)
		}
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	_, err := client.New(srv.URL, "t", client.WithTimeout(100*time.Millisecond)).Health(context.Background())
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("timeout not applied: %v after %s", err, time.Since(start))
	}
}
