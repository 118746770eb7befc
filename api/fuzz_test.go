package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// The request decoders under arbitrary bodies. Without -fuzz these run over
// the seed corpus below and testdata/fuzz/<name>/ as ordinary tests; with
//
//	go test -fuzz '^FuzzJobRequest$' -fuzztime 60s ./api
//
// they explore. Whatever the body, the real handler of a real single node
// must answer below 500, a 4xx must be the JSON error body with a code, and
// a 2xx must be JSON.

// fuzzTarget is the API of a one-node cluster, called in-process (no
// sockets: the fuzzer makes many calls), with the server's error log kept
// so that a 500 shows the panic or error behind it.
type fuzzTarget struct {
	h   http.Handler
	mu  sync.Mutex
	log bytes.Buffer
}

func (ft *fuzzTarget) Write(p []byte) (int, error) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.log.Len() > 1<<20 {
		ft.log.Reset()
	}
	return ft.log.Write(p)
}

func (ft *fuzzTarget) lastLog() string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	s := ft.log.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// newFuzzTarget starts the node with the limits of newNode (4 KiB bodies,
// 1 KiB data), so that the 413s are reachable by the fuzzer too.
func newFuzzTarget(f *testing.F) *fuzzTarget {
	f.Helper()
	ft := &fuzzTarget{}
	c := startAPICluster(f, 1)[0].c
	logger := slog.New(slog.NewTextHandler(ft, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ft.h = asRoot(New(Config{Cluster: c, Logger: logger, Version: "test", MaxBodyBytes: 4096, MaxDataBytes: 1024}).Handler())
	return ft
}

// call sends body and checks the answer; it returns the status and the
// decoded body of a 2xx.
func (ft *fuzzTarget) call(t *testing.T, method, path string, body []byte) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	ft.h.ServeHTTP(rec, req)
	status, raw := rec.Code, rec.Body.Bytes()
	if status >= 500 {
		t.Fatalf("%s %s answered %d: %s\nbody sent: %q\nserver log: %s", method, path, status, raw, body, ft.lastLog())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s answered %d with Content-Type %q: %s\nbody sent: %q", method, path, status, ct, raw, body)
	}
	if !json.Valid(raw) {
		t.Fatalf("%s %s answered %d with a body that is not JSON: %q\nbody sent: %q", method, path, status, raw, body)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s answered %d with a body that is not a JSON object: %q\nbody sent: %q", method, path, status, raw, body)
	}
	if status >= 400 {
		e, ok := out["error"].(map[string]any)
		if !ok {
			t.Fatalf("%s %s answered %d without an error object: %s\nbody sent: %q", method, path, status, raw, body)
		}
		if code, _ := e["code"].(string); code == "" {
			t.Fatalf("%s %s answered %d without an error code: %s\nbody sent: %q", method, path, status, raw, body)
		}
		if msg, _ := e["message"].(string); msg == "" {
			t.Fatalf("%s %s answered %d without an error message: %s\nbody sent: %q", method, path, status, raw, body)
		}
		return status, nil
	}
	if status < 200 || status > 299 {
		t.Fatalf("%s %s answered %d: %s\nbody sent: %q", method, path, status, raw, body)
	}
	return status, out
}

// create makes an object for a PATCH to work on.
func (ft *fuzzTarget) create(f *testing.F, path, body string) string {
	f.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	ft.h.ServeHTTP(rec, req)
	var out struct {
		ID string `json:"id"`
	}
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.ID == "" {
		f.Fatalf("create %s: %d %s", path, rec.Code, rec.Body)
	}
	return out.ID
}

func addSeeds(f *testing.F, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
}

// Bodies that are not JSON objects, or barely; every decoder gets them.
var fuzzShapes = []string{
	``, ` `, `null`, `{}`, `[]`, `""`, `0`, `true`, `{`, `}`, `{"`, `{"a":}`, `{}{}`, `{} x`, `{"":""}`,
	"{\"name\":\"\xff\xfe\"}", `{"name":"\u0000"}`, `{"name":"\ud800"}`, `[{}]`, `{"a":1e999}`,
	`{"a":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
}

// Job bodies: 002's examples, every kind of schedule, and near misses.
var fuzzJobSeeds = []string{
	source002OrderReminder, source002HourlyPing, source002DailySync, source002MondayTuesday,
	futureJob,
	`{"fireAtUtc":"2020-01-01T00:00:00Z","callbackUrl":"https://example.com/h"}`,
	`{"delaySeconds":0,"eventType":"invoice.paid"}`,
	`{"delaySeconds":-1,"callbackUrl":"https://example.com/h"}`,
	`{"delaySeconds":9223372036854775807,"callbackUrl":"https://example.com/h"}`,
	`{"delaySeconds":1e300,"callbackUrl":"https://example.com/h"}`,
	`{"delaySeconds":1.5,"callbackUrl":"https://example.com/h"}`,
	`{"recurrenceSeconds":1,"callbackUrl":"https://example.com/h","maxOccurrences":0}`,
	`{"recurrenceSeconds":-9223372036854775808,"callbackUrl":"https://example.com/h"}`,
	`{"recurrenceSeconds":60,"startAt":"0001-01-01T00:00:00Z","endAtUtc":"9999-12-31T23:59:59Z","callbackUrl":"https://example.com/h"}`,
	`{"scheduleTimes":["25:00"],"callbackUrl":"https://example.com/h"}`,
	`{"scheduleTimes":["02:30"],"timezone":"America/New_York","scheduleDaysOfWeek":[0,6,7],"callbackUrl":"https://example.com/h"}`,
	`{"scheduleTimes":[],"scheduleDaysOfWeek":[],"callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"monthly","nthWeekday":{"weekday":"TU","nth":3},"times":["09:00"]},"timezone":"Europe/Berlin","eventType":"report.due"}`,
	`{"recurrence":{"frequency":"monthly","nthWeekday":{"weekday":"FR","nth":-1},"times":["17:00"]},"timezone":"Australia/Lord_Howe","callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"monthly","monthDay":-1,"interval":2},"callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"monthly","monthDay":31,"interval":2147483647},"callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"weekly","weekdays":["MO","SU"],"interval":3,"times":["00:00","23:59"]},"callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"daily","interval":0},"callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"yearly"},"callbackUrl":"https://example.com/h"}`,
	`{"rrule":"FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0","timezone":"America/Sao_Paulo","callbackUrl":"https://example.com/h"}`,
	`{"rrule":"FREQ=SECONDLY","callbackUrl":"https://example.com/h"}`,
	`{"rrule":"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30","callbackUrl":"https://example.com/h"}`,
	`{"rrule":"DTSTART:19700101T000000Z\nRRULE:FREQ=DAILY;COUNT=1","callbackUrl":"https://example.com/h"}`,
	`{"cron":"0 9 * * 1-5","timezone":"Asia/Kolkata","cooldownSeconds":21600,"catchUp":"none","callbackUrl":"https://example.com/h"}`,
	`{"cron":"*/0 * * * *","callbackUrl":"https://example.com/h"}`,
	`{"cron":"0 0 30 2 *","callbackUrl":"https://example.com/h"}`,
	`{"cron":"0 9 * * *","recurrenceSeconds":60,"callbackUrl":"https://example.com/h"}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","method":"get","headers":{"X-A":"b"},"timeoutSeconds":0.001}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","headers":{"webhook-id":"x","Bad Name":"y"}}`,
	`{"delaySeconds":60,"callbackUrl":"http://169.254.169.254/latest","payload":null}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","retryPolicy":{"maxAttempts":3,"backoff":"linear","initialDelaySeconds":1e308,"maxDelaySeconds":-1,"jitter":2}}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","maxRetries":3,"retryPolicy":{"maxAttempts":4}}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","signingSecret":"whsec_bm90IGJhc2U2NA"}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","signingSecret":"whsec_!!"}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","manualCompletion":true,"misfireGraceSeconds":0}`,
	`{"delaySeconds":60}`,
	`{"name":null,"delaySeconds":null,"callbackUrl":null}`,
	`{"fireAtUtc":"2099-01-01T00:00:00+14:00","callbackUrl":"https://example.com/h","from":"x","count":3}`,
	`{"scheduleTimes":["10:00"],"timezone":"Local","callbackUrl":"https://example.com/h","count":1000}`,
}

// FuzzJobRequest: POST /v1/jobs, PATCH /v1/jobs/{id} and
// POST /v1/schedules/preview, which share the schedule fields.
func FuzzJobRequest(f *testing.F) {
	ft := newFuzzTarget(f)
	job := ft.create(f, "/v1/jobs", `{"recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`)
	addSeeds(f, fuzzShapes)
	addSeeds(f, fuzzJobSeeds)
	f.Fuzz(func(t *testing.T, body []byte) {
		if status, out := ft.call(t, "POST", "/v1/jobs", body); status == http.StatusCreated && out["id"] == nil {
			t.Fatalf("a created job without an id: %v", out)
		}
		ft.call(t, "PATCH", "/v1/jobs/"+job, body)
		ft.call(t, "POST", "/v1/schedules/preview", body)
	})
}

// FuzzEndpointRequest: POST /v1/endpoints and PATCH /v1/endpoints/{id}.
func FuzzEndpointRequest(f *testing.F) {
	ft := newFuzzTarget(f)
	ep := ft.create(f, "/v1/endpoints", `{"url":"https://example.com/hook","eventTypes":["*"]}`)
	addSeeds(f, fuzzShapes)
	addSeeds(f, []string{
		`{"url":"https://example.com/hook","eventTypes":["invoice.paid","job.*","*"]}`,
		`{"url":"https://example.com/hook","description":"billing","eventTypes":["invoice.*"],"method":"PUT","headers":{"X-Team":"billing"},"timeoutSeconds":10,"retryPolicy":{"maxAttempts":5,"backoff":"exponential","initialDelaySeconds":1,"maxDelaySeconds":60,"jitter":0.1},"enabled":false}`,
		`{"url":"https://example.com/hook","eventTypes":[]}`,
		`{"url":"https://example.com/hook","eventTypes":["a.*.b"]}`,
		`{"url":"https://example.com/hook","eventTypes":[""]}`,
		`{"url":"ftp://example.com","eventTypes":["*"]}`,
		`{"url":"http://[::1]:80/x","eventTypes":["*"]}`,
		`{"url":"https://user:pass@example.com:99999/x","eventTypes":["*"]}`,
		`{"url":"https://example.com/hook","eventTypes":["*"],"timeoutSeconds":-1}`,
		`{"url":"https://example.com/hook","eventTypes":["*"],"timeoutSeconds":1e400}`,
		`{"url":"https://example.com/hook","eventTypes":["*"],"retryPolicy":{"maxAttempts":-1}}`,
		`{"url":"https://example.com/hook","eventTypes":["*"],"retryPolicy":null,"headers":null,"enabled":null}`,
		`{"url":"https://example.com/hook","eventTypes":["*"],"headers":{"Content-Type":"text/plain","X-Webhook-Signature":"x"}}`,
		`{"url":"https://example.com/hook","eventTypes":["*"],"secret":"whsec_x"}`,
		`{"eventTypes":"*"}`,
		`{"enabled":true}`,
		`{"url":""}`,
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		if status, out := ft.call(t, "POST", "/v1/endpoints", body); status == http.StatusCreated {
			if s, _ := out["secret"].(string); !strings.HasPrefix(s, "whsec_") {
				t.Fatalf("a created endpoint without its secret: %v", out)
			}
		}
		ft.call(t, "PATCH", "/v1/endpoints/"+ep, body)
		ft.call(t, "POST", "/v1/endpoints/"+ep+"/rotate-secret", body)
	})
}

// FuzzEventRequest: POST /v1/events, with our names and 003's.
func FuzzEventRequest(f *testing.F) {
	ft := newFuzzTarget(f)
	addSeeds(f, fuzzShapes)
	addSeeds(f, []string{
		source003Body(""), source003Body("2090-01-01T10:00:00Z"), source003Body("YOUR_SCHEDULED_TIME"),
		`{"type":"invoice.paid","data":{"invoice":42},"idempotencyKey":"inv-42"}`,
		`{"type":"invoice.paid","data":{"invoice":42},"idempotencyKey":"inv-42","scheduledAt":"2090-01-01T00:00:00Z"}`,
		`{"type":"report.due","scheduledAt":"2098-05-01T10:00:00+02:00"}`,
		`{"type":"a.b","scheduledAt":"0000-01-01T00:00:00Z"}`,
		`{"type":"a.b","scheduledAt":"9999-12-31T23:59:59.999999999Z"}`,
		`{"type":"a.b","scheduledAt":"2090-01-01T00:00:00+23:59"}`,
		`{"type":"a.b","scheduled_run_time":"2090-01-01T00:00:00Z"}`,
		`{"type":"a.b","event_type":"a.b"}`,
		`{"event_type":null,"type":null}`,
		`{"Event_Type":"a.b","TYPE":"a.b"}`,
		`{"type":"job.created"}`,
		`{"type":"` + strings.Repeat("a", 65) + `"}`,
		`{"type":"a.b","data":"` + strings.Repeat("x", 1100) + `"}`,
		`{"type":"a.b","idempotencyKey":""}`,
		`{"type":"a.b","endpoint_id":null}`,
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		if status, out := ft.call(t, "POST", "/v1/events", body); status/100 == 2 && out["id"] == nil {
			t.Fatalf("a published event without an id: %v", out)
		}
	})
}

// scheduleTemplates are valid job bodies with one value left open: $S is
// replaced by a JSON string, $N by an integer. Random bytes rarely make JSON
// deep enough to reach the schedule maths; these do.
var scheduleTemplates = []string{
	`{"fireAtUtc":$S,"callbackUrl":"https://example.com/h"}`,
	`{"delaySeconds":$N,"callbackUrl":"https://example.com/h"}`,
	`{"recurrenceSeconds":$N,"callbackUrl":"https://example.com/h"}`,
	`{"recurrenceSeconds":60,"startAt":$S,"callbackUrl":"https://example.com/h"}`,
	`{"recurrenceSeconds":60,"endAtUtc":$S,"maxOccurrences":$N,"callbackUrl":"https://example.com/h"}`,
	`{"recurrenceSeconds":86400,"fireAtUtc":"2024-03-09T12:00:00Z","misfireGraceSeconds":$N,"cooldownSeconds":$N,"callbackUrl":"https://example.com/h"}`,
	`{"scheduleTimes":[$S],"timezone":"America/New_York","callbackUrl":"https://example.com/h"}`,
	`{"scheduleTimes":["10:00"],"scheduleDaysOfWeek":[$N],"timezone":"Europe/Rome","callbackUrl":"https://example.com/h"}`,
	`{"scheduleTimes":["02:30"],"timezone":$S,"callbackUrl":"https://example.com/h"}`,
	`{"rrule":$S,"callbackUrl":"https://example.com/h"}`,
	`{"rrule":$S,"timezone":"America/Sao_Paulo","startAt":"2024-10-05T00:00:00Z","callbackUrl":"https://example.com/h"}`,
	`{"cron":$S,"callbackUrl":"https://example.com/h"}`,
	`{"cron":$S,"timezone":"Australia/Lord_Howe","callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":$S,"times":["09:00"]},"callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"daily","interval":$N,"times":[$S]},"timezone":"Europe/London","callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"weekly","weekdays":[$S],"interval":$N,"times":["09:00"]},"callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"monthly","monthDay":$N,"times":["09:00"]},"timezone":"Asia/Kathmandu","callbackUrl":"https://example.com/h"}`,
	`{"recurrence":{"frequency":"monthly","nthWeekday":{"weekday":$S,"nth":$N},"times":["09:00"]},"timezone":"America/Sao_Paulo","callbackUrl":"https://example.com/h"}`,
	`{"cron":"0 9 * * *","catchUp":$S,"callbackUrl":"https://example.com/h"}`,
	`{"delaySeconds":60,"callbackUrl":$S}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","method":$S}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","headers":{"X-A":$S}}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","signingSecret":$S}`,
	`{"delaySeconds":60,"eventType":$S}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","timeoutSeconds":$N,"maxRetries":$N}`,
	`{"delaySeconds":60,"callbackUrl":"https://example.com/h","retryPolicy":{"backoff":$S,"maxAttempts":$N,"initialDelaySeconds":$N,"maxDelaySeconds":$N}}`,
	`{"cron":"*/5 * * * *","from":$S,"count":$N}`,
}

// FuzzScheduleField: one field of a valid job at a time, through
// POST /v1/jobs, PATCH /v1/jobs/{id} and POST /v1/schedules/preview.
func FuzzScheduleField(f *testing.F) {
	ft := newFuzzTarget(f)
	job := ft.create(f, "/v1/jobs", `{"recurrenceSeconds":3600,"callbackUrl":"https://example.com/h"}`)
	for i := range scheduleTemplates {
		for _, v := range []struct {
			s string
			n int64
		}{
			{"2024-03-10T07:30:00Z", 60}, {"FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17", -1}, {"0 9 * * 1-5", 0},
			{"monthly", 5}, {"TU", 3}, {"weekly", -1}, {"02:30", 7}, {"Europe/Rome", 1 << 62}, {"exponential", -1 << 63},
			{"9999-12-31T23:59:59Z", 31}, {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 2}, {"", 1},
		} {
			f.Add(uint8(i), v.s, v.n)
		}
	}
	quote := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	f.Fuzz(func(t *testing.T, which uint8, s string, n int64) {
		tmpl := scheduleTemplates[int(which)%len(scheduleTemplates)]
		body := []byte(strings.NewReplacer("$S", quote(s), "$N", fmt.Sprint(n)).Replace(tmpl))
		if strings.Contains(tmpl, `"count"`) {
			ft.call(t, "POST", "/v1/schedules/preview", body)
			return
		}
		ft.call(t, "POST", "/v1/jobs", body)
		ft.call(t, "PATCH", "/v1/jobs/"+job, body)
		ft.call(t, "POST", "/v1/schedules/preview", bytes.Replace(body, []byte(`,"callbackUrl":"https://example.com/h"`), nil, 1))
	})
}
