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
		{"no schedule", []string{"preview"}, 2, "", "a schedule is required"},
		// The flags that jobs create takes, read like the sources.
		{"every 2 weeks on Tuesday in Rome", []string{"preview", "--every", "2w", "--on", "tue", "--at", "09:00", "--tz", "Europe/Rome", "--from", "2024-03-09T12:00:00Z", "--count", "3"},
			0, "2024-03-19T08:00:00Z\n2024-04-02T07:00:00Z\n2024-04-16T07:00:00Z\n", ""},
		{"3rd Tuesday monthly in Berlin", []string{"preview", "--monthly", "--nth", "3", "--on", "tue", "--at", "09:00", "--tz", "Europe/Berlin", "--from", "2024-03-09T12:00:00Z", "--count", "3"},
			0, "2024-03-19T08:00:00Z\n2024-04-16T07:00:00Z\n2024-05-21T07:00:00Z\n", ""},
		{"last day monthly", []string{"preview", "--every", "1mo", "--day", "last", "--at", "18:00", "--tz", "Asia/Tokyo", "--from", "2024-01-09T00:00:00Z", "--count", "2"},
			0, "2024-01-31T09:00:00Z\n2024-02-29T09:00:00Z\n", ""},
		{"every 10 days", []string{"preview", "--every", "10d", "--at", "09:00", "--tz", "Europe/Berlin", "--from", "2024-03-09T12:00:00Z", "--count", "2"},
			0, "2024-03-19T08:00:00Z\n2024-03-29T08:00:00Z\n", ""},
		{"calendar days", []string{"preview", "--at", "10:00,15:00", "--on", "mon", "--on", "tuesday", "--tz", "Europe/Rome", "--from", "2024-03-09T12:00:00Z", "--count", "3"},
			0, "2024-03-11T09:00:00Z\n2024-03-11T14:00:00Z\n2024-03-12T09:00:00Z\n", ""},
		{"interval", []string{"preview", "--every", "90m", "--from", "2024-03-09T12:00:00Z", "--count", "2"},
			0, "2024-03-09T13:30:00Z\n2024-03-09T15:00:00Z\n", ""},
		{"interval anchored", []string{"preview", "--every", "24h", "--at-time", "2024-03-09T12:00:00Z", "--from", "2024-03-09T12:00:00Z", "--count", "2"},
			0, "2024-03-09T12:00:00Z\n2024-03-10T12:00:00Z\n", ""},
		{"cron", []string{"preview", "--cron", "0 9 * * 1", "--from", "2024-03-09T12:00:00Z", "--count", "1", "--max-occurrences", "5"},
			0, "2024-03-11T09:00:00Z\n", ""},
		{"in", []string{"preview", "--in", "1h", "--from", "2024-03-09T12:00:00Z"}, 0, "2024-03-09T13:00:00Z\n", ""},
		{"at a time", []string{"preview", "--at-time", "2026-12-01T10:00:00Z", "--from", "2024-03-09T12:00:00Z"}, 0, "2026-12-01T10:00:00Z\n", ""},
		{"bad cron names the flag", []string{"preview", "--cron", "61 * * * *"}, 2, "", "cron (set by --cron)"},
		{"bad zone names the flag", []string{"preview", "--at", "09:00", "--tz", "Mars/Base"}, 2, "", "(set by --tz)"},
		{"weekly needs a weekday", []string{"preview", "--weekly", "--at", "09:00"}, 2, "", "needs --on"},
		{"period needs a time", []string{"preview", "--every", "2w", "--on", "tue"}, 2, "", "needs --at"},
		{"two kinds", []string{"preview", "--cron", "0 9 * * *", "--every", "1h"}, 2, "", "--cron cannot be combined with --every"},
		{"spec and flags", []string{"preview", "--spec", `{"cron":"0 9 * * *"}`, "--tz", "UTC"}, 2, "", "--spec cannot be combined with --tz"},
		{"bad weekday", []string{"preview", "--weekly", "--on", "blursday", "--at", "09:00"}, 2, "", "weekday names"},
		{"nth needs one weekday", []string{"preview", "--monthly", "--nth", "3", "--at", "09:00"}, 2, "", "exactly one --on"},
		{"monthly needs a day", []string{"preview", "--monthly", "--at", "09:00"}, 2, "", "--day"},
		{"bad every", []string{"preview", "--every", "fortnightly"}, 2, "", "--every"},
		{"interval takes no time of day", []string{"preview", "--every", "1h", "--at", "09:00"}, 2, "", "--at does not apply"},
		{"in and at-time", []string{"preview", "--in", "1h", "--at-time", "2026-12-01T10:00:00Z"}, 2, "", "--in cannot be combined with --at-time"},
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
