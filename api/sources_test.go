package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/fsm"
	"github.com/chime-sched/chime/scheduler"
)

// The example requests of the source pages (../shared/seeds), sent as they
// are written there, adapted only in URL and auth: the API promises that a
// reader of 002 or 003 can use it without translating field names.

// sourceRequest posts body as the page's curl command does
// (-H "Content-Type: application/json" -d '<body>').
func sourceRequest(t *testing.T, srv *httptest.Server, path, body string) response {
	t.Helper()
	req, err := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return roundTrip(t, req)
}

// jsonEqual reports whether two JSON documents hold the same value.
func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func timeField(t *testing.T, m map[string]any, key string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, str(t, m, key))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return at
}

// Source 002, "Creating a job": the curl body verbatim. "Response: the
// created job, with id and status" — 002's status is "Pending"; ours is the
// job's status, "active" (the occurrence, not the job, is pending).
const source002OrderReminder = `{
"name": "Order reminder",
"delaySeconds": 3600,
"callbackUrl": "https://example.com/hooks/reminder",
"method": "POST",
"headers": { "X-Source": "contit" },
"payload": { "orderId": "abc123" },
"maxRetries": 5
}`

// Source 002, "Recurrence": the three example bodies verbatim (the
// "// Every day ..." lines of the page are captions outside the JSON).
const (
	source002HourlyPing = `{
"name": "Hourly ping",
"callbackUrl": "https://example.com/ping",
"recurrenceSeconds": 3600
}`
	source002DailySync = `{
"name": "Daily sync",
"callbackUrl": "https://example.com/sync",
"scheduleTimes": ["10:00", "15:00"]
}`
	source002MondayTuesday = `{
"callbackUrl": "https://example.com/report",
"scheduleTimes": ["11:00"],
"scheduleDaysOfWeek": [1, 2],
"maxOccurrences": 10
}`
)

// newRomeServer serves the API of c with Europe/Rome as the default time
// zone (--default-timezone Europe/Rome): 002 evaluates calendar times in
// Italian wall-clock time and its bodies name no zone.
func newRomeServer(t *testing.T, c Cluster) *httptest.Server {
	t.Helper()
	cfg := scheduler.DefaultConfig()
	cfg.DefaultTimezone = "Europe/Rome"
	srv := httptest.NewServer(asRoot(New(Config{Cluster: c, Version: "test", Schedule: cfg}).Handler()))
	t.Cleanup(srv.Close)
	return srv
}

func TestSource002Examples(t *testing.T) {
	_, c := newNode(t)
	srv := newRomeServer(t, c)
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("order reminder", func(t *testing.T) {
		before := time.Now().Truncate(time.Millisecond)
		r := want(t, sourceRequest(t, srv, "/v1/jobs", source002OrderReminder), 201)
		after := time.Now()
		if !strings.HasPrefix(str(t, r.body, "id"), "job_") || r.body["status"] != "active" {
			t.Fatalf("the created job, with id and status: %s", r.raw)
		}
		b := r.body
		if b["name"] != "Order reminder" || b["callbackUrl"] != "https://example.com/hooks/reminder" || b["method"] != "POST" {
			t.Errorf("name, callbackUrl, method: %s", r.raw)
		}
		// Header values are receiver credentials: shown masked (issue 12), not as 002 echoes them.
		if !jsonEqual(t, asJSON(t, b["headers"]), `{"X-Source":"`+fsm.MaskedHeaderValue+`"}`) || !jsonEqual(t, asJSON(t, b["payload"]), `{"orderId":"abc123"}`) {
			t.Errorf("headers, payload: %s", r.raw)
		}
		// maxRetries is 002's "max attempts before dead-letter".
		if rp, _ := b["retryPolicy"].(map[string]any); rp["maxAttempts"] != float64(5) || rp["backoff"] != "exponential" {
			t.Errorf("maxRetries 5 as the retry policy: %v", b["retryPolicy"])
		}
		// Times derived from the creation time round up to a whole second.
		if next := timeField(t, b, "nextFireAt"); next.Before(before.Add(time.Hour)) || next.After(after.Add(time.Hour+time.Second)) || !next.Equal(next.Truncate(time.Second)) {
			t.Errorf("delaySeconds 3600: fires at %s, want an hour after %s, on a whole second", next, before)
		}
		if b["kind"] != "once" || b["seriesId"] != b["id"] {
			t.Errorf("kind, seriesId: %s", r.raw)
		}
		// The SDK part of 002: list the pending ones, then cancel.
		id := str(t, b, "id")
		list := items(t, want(t, do(t, srv, "GET", "/v1/jobs?status=active", ""), 200))
		if !strings.Contains(fmt.Sprint(idsOf(list)), id) {
			t.Errorf("job %s not listed among the active ones: %v", id, idsOf(list))
		}
		if r := want(t, do(t, srv, "DELETE", "/v1/jobs/"+id, ""), 200); r.body["status"] != "cancelled" || r.body["nextFireAt"] != nil {
			t.Errorf("cancel (002: while pending): %s", r.raw)
		}
	})

	t.Run("hourly ping", func(t *testing.T) {
		before := time.Now().Truncate(time.Millisecond)
		r := want(t, sourceRequest(t, srv, "/v1/jobs", source002HourlyPing), 201)
		if r.body["status"] != "active" || r.body["kind"] != "interval" || r.body["name"] != "Hourly ping" {
			t.Fatalf("hourly ping: %s", r.raw)
		}
		// 002: "the next occurrence fires at a fixed cadence"; the first slot
		// is one interval after the creation (docs/schedules.md).
		if next := timeField(t, r.body, "nextFireAt"); next.Before(before.Add(time.Hour)) || next.After(time.Now().Add(time.Hour+time.Second)) {
			t.Errorf("first fire at %s, want an hour after %s", next, before)
		}
		if rp, _ := r.body["retryPolicy"].(map[string]any); rp["maxAttempts"] != float64(5) {
			t.Errorf("002's default maxRetries is 5: %v", r.body["retryPolicy"])
		}
	})

	t.Run("daily sync", func(t *testing.T) {
		now := time.Now()
		r := want(t, sourceRequest(t, srv, "/v1/jobs", source002DailySync), 201)
		if r.body["status"] != "active" || r.body["name"] != "Daily sync" {
			t.Fatalf("daily sync: %s", r.raw)
		}
		next := timeField(t, r.body, "nextFireAt").In(rome)
		if hm := next.Format("15:04"); (hm != "10:00" && hm != "15:00") || !next.After(now) || next.Sub(now) > 24*time.Hour {
			t.Errorf("the first run is the next 10:00 or 15:00 in Rome: got %s", next)
		}
		if !strings.Contains(asJSON(t, r.body["schedule"]), `"Europe/Rome"`) {
			t.Errorf("schedule without the zone it was evaluated in: %v", r.body["schedule"])
		}
	})

	t.Run("monday and tuesday", func(t *testing.T) {
		now := time.Now()
		r := want(t, sourceRequest(t, srv, "/v1/jobs", source002MondayTuesday), 201)
		if r.body["status"] != "active" || r.body["kind"] != "calendar" {
			t.Fatalf("monday and tuesday: %s", r.raw)
		}
		next := timeField(t, r.body, "nextFireAt").In(rome)
		if wd := next.Weekday(); (wd != time.Monday && wd != time.Tuesday) || next.Format("15:04") != "11:00" || !next.After(now) || next.Sub(now) > 7*24*time.Hour {
			t.Errorf("the first run is the next Monday or Tuesday at 11:00 in Rome: got %s", next)
		}
		var sched map[string]any
		if err := json.Unmarshal([]byte(asJSON(t, r.body["schedule"])), &sched); err != nil || sched["maxOccurrences"] != float64(10) {
			t.Errorf("maxOccurrences 10 kept in the schedule: %v", r.body["schedule"])
		}
		// 002's fields come back: a reader can check what the job will do.
		prev := want(t, do(t, srv, "POST", "/v1/schedules/preview", `{"scheduleTimes":["11:00"],"scheduleDaysOfWeek":[1,2],"maxOccurrences":10,"count":20}`), 200)
		if fires := prev.body["fires"].([]any); len(fires) != 10 {
			t.Errorf("maxOccurrences 10: the preview shows %d fires", len(fires))
		}
	})
}

// Source 003, "Step 3": the curl template with its placeholders filled in.
// The template is not JSON as printed (its "// Optional" comments, and the
// closing brace of the object is missing); those are the only changes.
func source003Body(scheduled string) string {
	at := ""
	if scheduled != "" {
		at = `
    "scheduled_run_time": "` + scheduled + `",`
	}
	return `{
    "event_type": "user.signed_up",` + at + `
    "data": {
      "first_name": "Ada",
      "email": "ada@example.com"
  }}`
}

func TestSource003Examples(t *testing.T) {
	srv := newSingleNode(t)
	data := `{"first_name":"Ada","email":"ada@example.com"}`

	// The answer has a counterpart of each field of 003's example response
	// (id, event_type, status, scheduled_run_time, created_at, data), in
	// our camelCase; 003's endpoint_id has none on the event, which fans out
	// to every subscribed endpoint: GET /v1/events/{id} lists a delivery
	// per endpoint, each with its endpointId.
	check := func(t *testing.T, r response, scheduled time.Time) {
		t.Helper()
		b := r.body
		if !strings.HasPrefix(str(t, b, "id"), "evt_") || b["type"] != "user.signed_up" || b["status"] != "scheduled" {
			t.Fatalf("id, type, status: %s", r.raw)
		}
		at := timeField(t, b, "scheduledAt")
		if scheduled.IsZero() { // at once: scheduledAt is the time of the request
			if d := time.Since(at); d < 0 || d > 10*time.Second {
				t.Errorf("scheduledAt %s for an event published now", at)
			}
		} else if !at.Equal(scheduled) {
			t.Errorf("scheduledAt %s, want %s", at, scheduled)
		}
		if created := timeField(t, b, "createdAt"); time.Since(created) > 10*time.Second {
			t.Errorf("createdAt %s", created)
		}
		if !jsonEqual(t, asJSON(t, b["data"]), data) {
			t.Errorf("data %v, want %s", b["data"], data)
		}
		got := want(t, do(t, srv, "GET", "/v1/events/"+str(t, b, "id"), ""), 200)
		if got.body["type"] != "user.signed_up" || !jsonEqual(t, asJSON(t, got.body["data"]), data) {
			t.Errorf("GET the event: %s", got.raw)
		}
	}

	t.Run("scheduled", func(t *testing.T) {
		at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
		r := want(t, sourceRequest(t, srv, "/v1/events", source003Body(at.Format(time.RFC3339))), 202)
		check(t, r, at)
	})
	t.Run("scheduled with milliseconds and an offset", func(t *testing.T) {
		at := time.Now().Add(3 * time.Hour).Truncate(time.Millisecond)
		r := want(t, sourceRequest(t, srv, "/v1/events", source003Body(at.In(time.FixedZone("", 2*3600)).Format("2006-01-02T15:04:05.000-07:00"))), 202)
		check(t, r, at)
	})
	t.Run("now, scheduled_run_time left out", func(t *testing.T) {
		check(t, want(t, sourceRequest(t, srv, "/v1/events", source003Body("")), 202), time.Time{})
	})
	t.Run("now, scheduled_run_time left blank", func(t *testing.T) {
		body := `{"event_type": "user.signed_up", "scheduled_run_time": "", "data": ` + data + `}`
		check(t, want(t, sourceRequest(t, srv, "/v1/events", body), 202), time.Time{})
	})
}

// TestEventAliases: 003's names are aliases, not a second API: each field
// under one name only, errors name the field as sent, and every other
// unknown field is still refused.
func TestEventAliases(t *testing.T) {
	srv, c := newNode(t)
	for _, tt := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"type and event_type", `{"type":"a.b","event_type":"a.b"}`, 400, "event_type"},
		{"type and event_type, one empty", `{"type":"","event_type":"a.b"}`, 400, "event_type"},
		{"scheduledAt and scheduled_run_time", `{"type":"a.b","scheduledAt":"2090-01-01T00:00:00Z","scheduled_run_time":"2090-01-01T00:00:00Z"}`, 400, "scheduled_run_time"},
		{"mixed: event_type with scheduledAt", `{"event_type":"a.b","scheduledAt":"2090-01-01T00:00:00Z","scheduled_run_time":"2091-01-01T00:00:00Z"}`, 400, "scheduled_run_time"},
		{"bad event_type", `{"event_type":"Not A Type"}`, 400, "event_type"},
		{"empty event_type", `{"event_type":"","data":{}}`, 400, "event_type"},
		{"event_type not a string", `{"event_type":7}`, 400, "event_type"},
		{"lifecycle event_type", `{"event_type":"job.created"}`, 400, "event_type"},
		{"bad scheduled_run_time", `{"event_type":"a.b","scheduled_run_time":"YOUR_SCHEDULED_TIME"}`, 400, "scheduled_run_time"},
		{"scheduled_run_time too far", `{"event_type":"a.b","scheduled_run_time":"2999-01-01T00:00:00Z"}`, 400, "scheduled_run_time"},
		{"003's response field endpoint_id", `{"event_type":"a.b","endpoint_id":null}`, 400, "endpoint_id"},
		{"003's response field created_at", `{"event_type":"a.b","created_at":"2090-01-01T00:00:00Z"}`, 400, "created_at"},
		{"a camelCase alias we do not have", `{"eventType":"a.b"}`, 400, "eventType"},
		{"no type at all", `{"data":{}}`, 400, "type"},
		{"not an object", `["event_type"]`, 400, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := c.FSM().State().Index()
			r := want(t, do(t, srv, "POST", "/v1/events", tt.body), tt.status)
			if _, field := errorOf(t, r); field != tt.field {
				t.Errorf("field %q, want %q: %s", field, tt.field, r.raw)
			}
			if after := c.FSM().State().Index(); after != before {
				t.Errorf("a refused publish wrote to the log")
			}
		})
	}
	// A null alias is an absent one, as null is for every other field.
	r := want(t, do(t, srv, "POST", "/v1/events", `{"type":"a.b","event_type":null,"scheduled_run_time":null}`), 202)
	if r.body["type"] != "a.b" {
		t.Fatalf("null aliases: %s", r.raw)
	}
	// The answer keeps our names only.
	for _, k := range []string{"event_type", "scheduled_run_time", "created_at"} {
		if _, ok := r.body[k]; ok {
			t.Errorf("the answer carries 003's %s: %s", k, r.raw)
		}
	}
	// The aliases reach the idempotency key like our names do.
	first := want(t, do(t, srv, "POST", "/v1/events", `{"event_type":"a.b","idempotencyKey":"k1","scheduled_run_time":"2090-01-01T00:00:00Z"}`), 202)
	again := want(t, do(t, srv, "POST", "/v1/events", `{"type":"a.b","idempotencyKey":"k1","scheduledAt":"2090-01-01T00:00:00Z"}`), 200)
	if first.body["id"] != again.body["id"] || again.body["scheduledAt"] != "2090-01-01T00:00:00Z" {
		t.Fatalf("the same event under both names: %s / %s", first.raw, again.raw)
	}
}
