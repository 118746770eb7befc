package api

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
)

func TestJobLifecycle(t *testing.T) {
	srv, c := newNode(t)
	job := str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`), 201).body, "id")
	path := "/v1/jobs/" + job
	created, _ := c.FSM().State().Job(job)

	r := want(t, do(t, srv, "POST", path+"/pause", ""), 200)
	if r.body["status"] != "paused" {
		t.Fatalf("pause: %s", r.raw)
	}
	want(t, do(t, srv, "POST", path+"/pause", ""), 200) // already paused: unchanged
	if n := len(c.FSM().State().JobsDue(fsm.Millis(1<<62), 0)); n != 0 {
		t.Fatalf("a paused job is still due to fire (%d due)", n)
	}

	// Resume: from the first slot after now, not the slots passed meanwhile.
	before := time.Now()
	r = want(t, do(t, srv, "POST", path+"/resume", ""), 200)
	next, err := time.Parse(time.RFC3339, r.body["nextFireAt"].(string))
	if r.body["status"] != "active" || err != nil || !next.After(before) || next.Sub(before) > time.Hour+2*time.Second {
		t.Fatalf("resume: %s", r.raw)
	}
	if (next.UnixMilli()-int64(created.NextFireAt))%3_600_000 != 0 {
		t.Errorf("resumed next fire %s is off the interval's grid (first slot %s)", next, created.NextFireAt.Time())
	}

	r = want(t, do(t, srv, "POST", path+"/archive", ""), 200)
	if r.body["status"] != "archived" {
		t.Fatalf("archive: %s", r.raw)
	}
	want(t, do(t, srv, "POST", path+"/pause", ""), 409) // only an active job pauses
	want(t, do(t, srv, "POST", path+"/resume", ""), 200)

	r = want(t, do(t, srv, "DELETE", path, ""), 200)
	if r.body["status"] != "cancelled" || r.body["nextFireAt"] != nil {
		t.Fatalf("cancel: %s", r.raw)
	}
	want(t, do(t, srv, "DELETE", path, ""), 200)
	for _, a := range []string{"/pause", "/resume", "/archive"} {
		r := want(t, do(t, srv, "POST", path+a, ""), 409)
		if code, field := errorOf(t, r); code != "conflict" || field != "status" {
			t.Errorf("%s of a cancelled job: %s", a, r.raw)
		}
	}
	want(t, do(t, srv, "POST", "/v1/jobs/nope/pause", ""), 404)
	want(t, do(t, srv, "DELETE", "/v1/jobs/"+job+"?project=nope", ""), 404)

	// A one-shot can be cancelled only while it has not fired (002).
	once := str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"delaySeconds":3600,"callbackUrl":"https://example.com/o"}`), 201).body, "id")
	cur, _ := c.FSM().State().Job(once)
	fired := *cur
	fired.OccurrenceCount, fired.Status, fired.NextFireAt = 1, fsm.JobCompleted, 0
	cmd, err := fsm.PutCommand(fsm.TableJobs, &fired, fsm.PutOptions{IfIndex: cur.ModifyIndex})
	applyOK(t, c, cmd, err)
	r = want(t, do(t, srv, "DELETE", "/v1/jobs/"+once, ""), 409)
	if !strings.Contains(r.raw, "already fired") {
		t.Errorf("cancel of a fired one-shot: %s", r.raw)
	}
}

func TestSchedulePreview(t *testing.T) {
	srv := newSingleNode(t)
	r := want(t, do(t, srv, "POST", "/v1/schedules/preview",
		`{"scheduleTimes":["02:30"],"timezone":"America/New_York","from":"2024-03-09T12:00:00Z","count":3}`), 200)
	var got []string
	for _, f := range r.body["fires"].([]any) {
		got = append(got, f.(string))
	}
	// 02:30 does not exist on 2024-03-10 in New York: read with the offset before the jump.
	if wantFires := []string{"2024-03-10T07:30:00Z", "2024-03-11T06:30:00Z", "2024-03-12T06:30:00Z"}; !slices.Equal(got, wantFires) {
		t.Fatalf("fires %v, want %v", got, wantFires)
	}
	for _, c := range []struct{ body, field string }{
		{`{"cron":"0 9 * * *","count":0}`, "count"},
		{`{"cron":"0 9 * * *","count":1001}`, "count"},
		{`{"cron":"0 9 * * *","from":"yesterday"}`, "from"},
		{`{"cron":"61 9 * * *"}`, "cron"},
		{`{"cron":"0 9 * * *","timezone":"Mars/Olympus"}`, "timezone"},
		{`{"cron":"0 9 * * *","callbackUrl":"https://x"}`, "callbackUrl"},
	} {
		r := want(t, do(t, srv, "POST", "/v1/schedules/preview", c.body), 400)
		if _, field := errorOf(t, r); field != c.field {
			t.Errorf("%s: field %q, want %q (%s)", c.body, field, c.field, r.raw)
		}
	}
}

func TestResumeKeepsAnUnfiredOneShot(t *testing.T) {
	srv, c := newNode(t)
	once := str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"delaySeconds":1,"callbackUrl":"https://example.com/o"}`), 201).body, "id")
	orig, _ := c.FSM().State().Job(once)
	want(t, do(t, srv, "POST", "/v1/jobs/"+once+"/pause", ""), 200)
	time.Sleep(1100 * time.Millisecond) // its time passes while paused
	r := want(t, do(t, srv, "POST", "/v1/jobs/"+once+"/resume", ""), 200)
	if r.body["status"] != "active" || r.body["nextFireAt"] != orig.NextFireAt.Time().Format(time.RFC3339Nano) {
		t.Fatalf("resumed one-shot: %s (want active at %s)", r.raw, orig.NextFireAt.Time())
	}
}

func TestPatchJob(t *testing.T) {
	srv, c := newNode(t)
	job := str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"name":"a","cron":"0 9 * * *","timezone":"Europe/Berlin","callbackUrl":"https://example.com/a","maxRetries":3,"payload":{"x":1}}`), 201).body, "id")
	path := "/v1/jobs/" + job
	before, _ := c.FSM().State().Job(job)

	// Target fields only: the schedule and its next fire stay.
	r := want(t, do(t, srv, "PATCH", path, `{"name":"b","callbackUrl":"https://example.com/b","headers":{"X-Team":"ops"}}`), 200)
	after, _ := c.FSM().State().Job(job)
	if r.body["name"] != "b" || after.CallbackURL != "https://example.com/b" || after.Headers["X-Team"] != "ops" ||
		after.NextFireAt != before.NextFireAt || string(after.Schedule) != string(before.Schedule) ||
		after.Retry.MaxAttempts != 3 || string(after.Payload) != `{"x":1}` {
		t.Fatalf("after a target patch: %s", r.raw)
	}

	// Any schedule field replaces the schedule: the cron and zone go.
	r = want(t, do(t, srv, "PATCH", path, `{"recurrenceSeconds":600,"maxRetries":7}`), 200)
	after, _ = c.FSM().State().Job(job)
	if after.ScheduleKind != "interval" || strings.Contains(string(after.Schedule), "cron") || after.Retry.MaxAttempts != 7 ||
		after.NextFireAt.Time().Sub(time.Now()) > 601*time.Second || after.SeriesID != before.SeriesID || after.CreatedAt != before.CreatedAt {
		t.Fatalf("after a schedule patch: %s", r.raw)
	}

	for _, cs := range []struct{ body, field string }{
		{`{"name":5}`, "name"},
		{`{"colour":"red"}`, "colour"},
		{`{"callbackUrl":"ftp://x"}`, "callbackUrl"},
		{`{"cron":"0 9 * * *","recurrenceSeconds":60}`, "cron"},
		{`{}`, ""},
	} {
		r := want(t, do(t, srv, "PATCH", path, cs.body), 400)
		if _, field := errorOf(t, r); field != cs.field {
			t.Errorf("%s: field %q, want %q (%s)", cs.body, field, cs.field, r.raw)
		}
	}
	if got, _ := c.FSM().State().Job(job); got.ModifyIndex != after.ModifyIndex {
		t.Fatal("a refused patch wrote the job")
	}
	want(t, do(t, srv, "DELETE", path, ""), 200)
	want(t, do(t, srv, "PATCH", path, `{"name":"c"}`), 409)
	want(t, do(t, srv, "PATCH", "/v1/jobs/nope", `{"name":"c"}`), 404)
}

func TestListJobsByNextFire(t *testing.T) {
	srv := newSingleNode(t)
	var ids []string
	for _, at := range []string{"2030-01-01T00:00:00Z", "2030-06-01T00:00:00Z", "2031-01-01T00:00:00Z"} {
		ids = append(ids, str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"fireAtUtc":"`+at+`","callbackUrl":"https://example.com/x"}`), 201).body, "id"))
	}
	r := want(t, do(t, srv, "GET", "/v1/jobs?from=2030-03-01T00:00:00Z&to=2031-01-01T00:00:00Z", ""), 200)
	if got := idsOf(items(t, r)); !slices.Equal(got, ids[1:2]) {
		t.Fatalf("jobs firing in [2030-03, 2031-01): %v, want %v", got, ids[1:2])
	}
	r = want(t, do(t, srv, "GET", "/v1/jobs?from=2030-01-01T00:00:00Z&limit=1", ""), 200)
	if got := idsOf(items(t, r)); !slices.Equal(got, ids[:1]) || r.body["nextCursor"] == nil {
		t.Fatalf("first page: %s", r.raw)
	}
	r = want(t, do(t, srv, "GET", "/v1/jobs?from=2030-01-01T00:00:00Z&limit=5&cursor="+r.body["nextCursor"].(string), ""), 200)
	if got := idsOf(items(t, r)); !slices.Equal(got, ids[1:]) || r.body["nextCursor"] != nil {
		t.Fatalf("second page: %s", r.raw)
	}
	want(t, do(t, srv, "GET", "/v1/jobs?from=soon", ""), 400)
	want(t, do(t, srv, "GET", "/v1/jobs?from=2031-01-01T00:00:00Z&to=2030-01-01T00:00:00Z", ""), 400)
}

// TestLifecycleEventsThroughTheAPI: writes through the API raise 001's
// lifecycle events for subscribed endpoints, with the caller's token id.
func TestLifecycleEventsThroughTheAPI(t *testing.T) {
	srv, c := newNode(t)
	want(t, do(t, srv, "POST", "/v1/endpoints", `{"url":"https://example.com/audit","eventTypes":["job.*","occurrence.created"]}`), 201)
	job := str(t, want(t, do(t, srv, "POST", "/v1/jobs", `{"name":"nightly","recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`), 201).body, "id")
	want(t, do(t, srv, "PATCH", "/v1/jobs/"+job, `{"name":"nightly-2"}`), 200)
	want(t, do(t, srv, "POST", "/v1/jobs/"+job+"/pause", ""), 200)
	want(t, do(t, srv, "POST", "/v1/jobs/"+job+"/trigger", ""), 201)

	root := ""
	for _, tok := range want(t, do(t, srv, "GET", "/v1/tokens", ""), 200).body["items"].([]any) {
		root = tok.(map[string]any)["id"].(string)
	}
	evs, _ := c.FSM().State().Events(DefaultProject, "", 0)
	got := map[string]map[string]any{}
	for _, e := range evs {
		var data map[string]any
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatal(err)
		}
		got[e.Type] = data
	}
	for _, typ := range []string{fsm.EventJobCreated, fsm.EventJobUpdated, fsm.EventJobPaused, fsm.EventOccurrenceCreated} {
		if got[typ] == nil || got[typ]["initiatorId"] != root {
			t.Errorf("%s: %v (want initiatorId %q)", typ, got[typ], root)
		}
	}
	if ch := got[fsm.EventJobUpdated]["changes"]; !reflect.DeepEqual(ch, map[string]any{"name": "nightly-2"}) {
		t.Errorf("job.updated changes %v", ch)
	}
	if len(got) != 4 {
		t.Errorf("raised %d types, want 4: %v", len(got), got)
	}
	// Chime's own types cannot be published.
	if code, field := errorOf(t, do(t, srv, "POST", "/v1/events", `{"type":"job.created","data":{}}`)); code != "invalid_request" || field != "type" {
		t.Errorf("publishing job.created: %s %s", code, field)
	}
}
