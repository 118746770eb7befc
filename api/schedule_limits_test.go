package api

import (
	"strings"
	"testing"
)

// Issue 12 item 16: the free-form schedule fields are limited far below the
// request body, on create, PATCH and preview, with a 400 naming the field.
func TestScheduleFieldLengthLimits(t *testing.T) {
	srv, _ := newNodeWithBody(t, 1<<20)
	long := strings.Repeat("1,", 20_000) + "1"
	times := `["` + strings.Repeat(`09:00","`, 2000) + `09:00"]`
	r := want(t, do(t, srv, "POST", "/v1/jobs", `{"callbackUrl":"https://example.com/h","cron":"0 9 * * *"}`), 201)
	jobID := str(t, r.body, "id")
	for _, c := range []struct{ method, path, body, field string }{
		{"POST", "/v1/jobs", `{"callbackUrl":"https://example.com/h","cron":"` + long + ` * * * *"}`, "cron"},
		{"POST", "/v1/jobs", `{"callbackUrl":"https://example.com/h","rrule":"FREQ=DAILY;BYHOUR=` + long + `"}`, "rrule"},
		{"POST", "/v1/jobs", `{"callbackUrl":"https://example.com/h","recurrence":{"frequency":"daily","times":` + times + `}}`, "recurrence.times"},
		{"PATCH", "/v1/jobs/" + jobID, `{"cron":"` + long + ` * * * *"}`, "cron"},
		{"POST", "/v1/schedules/preview", `{"rrule":"FREQ=DAILY;BYHOUR=` + long + `"}`, "rrule"},
	} {
		r := do(t, srv, c.method, c.path, c.body)
		if r.status != 400 {
			t.Errorf("%s %s (%s): %d %.300s", c.method, c.path, c.field, r.status, r.raw)
			continue
		}
		if _, f := errorOf(t, r); f != c.field || len(r.raw) > 1000 {
			t.Errorf("%s %s: field %q, want %q (%d bytes of answer)", c.method, c.path, f, c.field, len(r.raw))
		}
	}
}
