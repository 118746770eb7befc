package main

import (
	"strings"
	"testing"
)

func TestSchedulePreview(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"spring forward in New York", []string{"preview", "--spec", `{"scheduleTimes":["02:30"],"timezone":"America/New_York"}`, "--from", "2024-03-09T12:00:00Z", "--count", "2"},
			0, "2024-03-10T07:30:00Z\n2024-03-11T06:30:00Z\n", ""},
		{"last Friday", []string{"preview", "--spec", `{"rrule":"FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9;BYMINUTE=0","timezone":"UTC"}`, "--from", "2024-01-01T00:00:00Z", "--count", "2"},
			0, "2024-01-26T09:00:00Z\n2024-02-23T09:00:00Z\n", ""},
		{"bad field", []string{"preview", "--spec", `{"cron":"61 * * * *"}`}, 2, "", "cron"},
		{"conflicting kinds", []string{"preview", "--spec", `{"cron":"0 9 * * *","recurrenceSeconds":60}`}, 2, "", "cannot be combined"},
		{"bad from", []string{"preview", "--spec", `{"cron":"0 9 * * *"}`, "--from", "yesterday"}, 2, "", "RFC 3339"},
		{"count too large", []string{"preview", "--spec", `{"cron":"0 9 * * *"}`, "--count", "100000"}, 2, "", "count"},
		{"no spec", []string{"preview"}, 2, "", "--spec is required"},
		{"no subcommand", nil, 2, "", "usage"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := runSchedule(tt.args, &out, &errOut)
			if code != tt.code || out.String() != tt.stdout || !strings.Contains(errOut.String(), tt.stderr) {
				t.Fatalf("code %d stdout %q stderr %q; want %d %q and stderr containing %q", code, out.String(), errOut.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}
