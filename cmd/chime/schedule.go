package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/chime-sched/chime/scheduler"
)

// runSchedule is `chime schedule preview`: the next fires of a schedule,
// computed offline by the same code the poller uses. The schedule is given
// with the same flags as `chime jobs create` (or --spec), so what is
// previewed is what a job gets.
func runSchedule(args []string, stdout, stderr io.Writer) int {
	const usageLine = "usage: chime schedule preview (--spec '<json>' | --every/--at/--on/--cron/--in ...) [--from RFC3339] [--count N] [--default-timezone ZONE]"
	if len(args) == 0 || args[0] != "preview" {
		fmt.Fprintln(stderr, usageLine)
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
			return 0 // asked for: not a mistake
		}
		return 2
	}
	fs := flag.NewFlagSet("chime schedule preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf scheduleFlags
	sf.register(fs)
	from := fs.String("from", "", "the creation time the schedule is evaluated from (RFC 3339; default now)")
	count := fs.Int("count", 10, fmt.Sprintf("how many fires to print (1 to %d)", scheduler.MaxPreviewCount))
	tz := fs.String("default-timezone", "UTC", "zone of civil schedules that name none (the agents' default)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nFlags:\n", usageLine)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chime schedule preview: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	sf.parsed(fs)
	sch, err := sf.build()
	if err != nil {
		fmt.Fprintf(stderr, "chime schedule preview: %v\n", err)
		return 2
	}
	spec, err := sf.specJSON(sch)
	if err != nil {
		fmt.Fprintf(stderr, "chime schedule preview: %v\n", err)
		return 2
	}
	start := time.Now().UTC()
	if *from != "" {
		t, err := time.Parse(time.RFC3339, *from)
		if err != nil {
			fmt.Fprintf(stderr, "chime schedule preview: --from %q: use RFC 3339, e.g. 2024-03-09T12:00:00Z\n", *from)
			return 2
		}
		start = t
	}
	cfg := scheduler.DefaultConfig()
	cfg.DefaultTimezone = *tz
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "chime schedule preview: --default-timezone: %v\n", err)
		return 2
	}
	fires, err := scheduler.Preview(spec, cfg, start, *count)
	if err != nil {
		var fe *scheduler.FieldError
		if errors.As(err, &fe) && fe.Field != "" {
			hint := ""
			if f := flagForField(fe.Field, nil); f != "" && !sf.given["spec"] {
				hint = " (set by " + f + ")"
			}
			fmt.Fprintf(stderr, "chime schedule preview: %s%s: %s\n", fe.Field, hint, fe.Message)
		} else {
			fmt.Fprintf(stderr, "chime schedule preview: %v\n", err)
		}
		return 2
	}
	for _, f := range fires {
		fmt.Fprintln(stdout, f.UTC().Format(time.RFC3339))
	}
	return 0
}
