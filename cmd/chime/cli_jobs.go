package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/chime-sched/chime/client"
)

func init() {
	registerGroup("jobs", "schedule HTTP callbacks and events",
		command{name: "create", summary: "create a job: a schedule (--every, --at, --cron, --in, ...) and a target (--url and/or --event-type)", setup: jobsCreate, fields: jobFields},
		command{name: "list", summary: "list jobs, by creation", setup: jobsList},
		command{name: "get", args: []string{"JOB_ID"}, summary: "show a job", setup: jobAction("get")},
		command{name: "update", args: []string{"JOB_ID"}, summary: "change the fields given (any schedule flag replaces the whole schedule)", setup: jobsUpdate, fields: jobFields},
		command{name: "pause", args: []string{"JOB_ID"}, summary: "stop firing until resumed", setup: jobAction("pause")},
		command{name: "resume", args: []string{"JOB_ID"}, summary: "fire again from the next slot after now", setup: jobAction("resume")},
		command{name: "archive", args: []string{"JOB_ID"}, summary: "put the job away: it never fires (resume brings it back)", setup: jobAction("archive")},
		command{name: "cancel", args: []string{"JOB_ID"}, summary: "cancel for good (a one-shot only before it fired)", setup: jobAction("cancel")},
		command{name: "trigger", args: []string{"JOB_ID"}, summary: "fire now, whatever the schedule", setup: jobsTrigger},
	)
	registerGroup("occurrences", "the firings of a job",
		command{name: "list", args: []string{"JOB_ID"}, summary: "list a job's occurrences, by number", setup: occurrencesList},
		command{name: "get", args: []string{"OCCURRENCE_ID"}, summary: "show an occurrence and its deliveries", setup: occurrenceAction("get")},
		command{name: "complete", args: []string{"OCCURRENCE_ID"}, summary: "mark a pending occurrence completed", setup: occurrenceAction("complete")},
		command{name: "skip", args: []string{"OCCURRENCE_ID"}, summary: "mark a pending occurrence skipped", setup: occurrenceAction("skip")},
	)
}

// jobFields are the flags of a job's fields that other commands name
// differently.
var jobFields = map[string]string{"retryPolicy.maxAttempts": "--max-retries"}

// targetFlags are a job's target and delivery flags.
type targetFlags struct {
	name, description, url, method string
	headers                        headerFlag
	payload, eventType             string
	maxRetries                     int
	retry                          retryFlags
	attemptTimeout                 time.Duration
	idempotencyKey, correlationID  string
	signingSecret                  string
	manualCompletion               bool
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.name, "name", "", "a name for people")
	fs.StringVar(&t.description, "description", "", "a longer description")
	fs.StringVar(&t.url, "url", "", "callback URL called on every fire")
	fs.StringVar(&t.method, "method", "", "HTTP method of the callback (default POST)")
	fs.Var(&t.headers, "header", "a header of the callback, `Name=Value` (repeatable)")
	fs.StringVar(&t.payload, "payload", "", "the callback's JSON body: inline JSON, @file or @- (stdin)")
	fs.StringVar(&t.eventType, "event-type", "", "also publish an event of this type to subscribed endpoints on every fire")
	fs.IntVar(&t.maxRetries, "max-retries", 0, "attempts of the callback before it is a dead letter (default 5)")
	t.retry.register(fs)
	fs.DurationVar(&t.attemptTimeout, "attempt-timeout", 0, "timeout of one callback attempt, 1s to 60s (default 10s)")
	fs.StringVar(&t.idempotencyKey, "idempotency-key", "", "sent as Chime-Idempotency-Key")
	fs.StringVar(&t.correlationID, "correlation-id", "", "sent as Chime-Correlation-Id")
	fs.StringVar(&t.signingSecret, "signing-secret", "", "sign the callback with this whsec_ secret")
	fs.BoolVar(&t.manualCompletion, "manual-completion", false, "occurrences stay pending until completed by hand (occurrences complete)")
}

// retryFlags are a retry policy's flags, shared by jobs and endpoints.
type retryFlags struct {
	backoff                string
	initialDelay, maxDelay time.Duration
}

func (r *retryFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.backoff, "backoff", "", "retry backoff: fixed, linear or exponential")
	fs.DurationVar(&r.initialDelay, "initial-delay", 0, "delay before the first retry")
	fs.DurationVar(&r.maxDelay, "max-delay", 0, "longest delay between retries")
}

// policy is the retry policy the flags give (nil: none given).
func (r *retryFlags) policy(set map[string]bool, maxAttempts int) *client.RetryPolicy {
	if !set["backoff"] && !set["initial-delay"] && !set["max-delay"] && maxAttempts == 0 {
		return nil
	}
	return &client.RetryPolicy{MaxAttempts: maxAttempts, Backoff: r.backoff,
		InitialDelaySeconds: r.initialDelay.Seconds(), MaxDelaySeconds: r.maxDelay.Seconds()}
}

func jobsCreate(fs *flag.FlagSet) func(*cliEnv, []string) error {
	var sf scheduleFlags
	var tf targetFlags
	sf.register(fs)
	tf.register(fs)
	return func(e *cliEnv, _ []string) error {
		sf.parsed(fs)
		sch, err := sf.build()
		if err != nil {
			return err
		}
		if tf.url == "" && tf.eventType == "" {
			return usagef("a job needs a target: --url (a callback) and/or --event-type (an event for subscribed endpoints)")
		}
		req := client.JobRequest{Schedule: sch, Name: tf.name, Description: tf.description, CallbackURL: tf.url,
			Method: tf.method, Headers: tf.headers, EventType: tf.eventType, MaxRetries: tf.maxRetries,
			RetryPolicy: tf.retry.policy(e.set, 0), TimeoutSeconds: tf.attemptTimeout.Seconds(),
			IdempotencyKey: tf.idempotencyKey, CorrelationID: tf.correlationID, SigningSecret: tf.signingSecret,
			ManualCompletion: tf.manualCompletion}
		if tf.payload != "" {
			if req.Payload, err = e.readJSONArg("--payload", tf.payload); err != nil {
				return err
			}
		}
		job, err := e.c.CreateJob(e.ctx, req)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { jobDetail(w, job) })
	}
}

func jobsUpdate(fs *flag.FlagSet) func(*cliEnv, []string) error {
	var sf scheduleFlags
	var tf targetFlags
	sf.register(fs)
	tf.register(fs)
	return func(e *cliEnv, args []string) error {
		sf.parsed(fs)
		var p client.JobPatch
		if sf.any() {
			sch, err := sf.build()
			if err != nil {
				return err
			}
			p.Schedule = &sch
		}
		str := func(name, v string) *string {
			if e.set[name] {
				return &v
			}
			return nil
		}
		p.Name, p.Description, p.CallbackURL = str("name", tf.name), str("description", tf.description), str("url", tf.url)
		p.Method, p.EventType = str("method", tf.method), str("event-type", tf.eventType)
		p.IdempotencyKey, p.CorrelationID = str("idempotency-key", tf.idempotencyKey), str("correlation-id", tf.correlationID)
		p.SigningSecret = str("signing-secret", tf.signingSecret)
		if e.set["header"] {
			h := map[string]string(tf.headers)
			p.Headers = &h
		}
		if e.set["payload"] {
			raw, err := e.readJSONArg("--payload", tf.payload)
			if err != nil {
				return err
			}
			p.Payload = raw
		}
		if e.set["max-retries"] {
			p.MaxRetries = &tf.maxRetries
		}
		p.RetryPolicy = tf.retry.policy(e.set, 0)
		if e.set["attempt-timeout"] {
			p.TimeoutSeconds = client.Ptr(tf.attemptTimeout.Seconds())
		}
		if e.set["manual-completion"] {
			p.ManualCompletion = &tf.manualCompletion
		}
		if b, _ := json.Marshal(p); string(b) == "{}" {
			return usagef("nothing to change: give the flags of the fields to change (--name, --url, --every, ... see --help)")
		}
		job, err := e.c.UpdateJob(e.ctx, args[0], p)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { jobDetail(w, job) })
	}
}

func jobsList(fs *flag.FlagSet) func(*cliEnv, []string) error {
	lo := listOpts(fs)
	status := fs.String("status", "", "only jobs in this status: active, paused, archived, completed, cancelled")
	from := fs.String("from", "", "only jobs whose next fire is at or after this RFC 3339 time")
	to := fs.String("to", "", "only jobs whose next fire is before this RFC 3339 time")
	return func(e *cliEnv, _ []string) error {
		o := client.JobListOptions{ListOptions: *lo, Status: *status}
		var err error
		if o.From, err = parseInstant("--from", *from); err != nil {
			return err
		}
		if o.To, err = parseInstant("--to", *to); err != nil {
			return err
		}
		page, err := e.c.ListJobs(e.ctx, o)
		if err != nil {
			return err
		}
		return e.printPage("chime jobs list", page.NextCursor, func(w io.Writer) {
			row(w, "ID", "NAME", "STATUS", "KIND", "NEXT FIRE", "TARGET")
			for _, j := range page.Items {
				row(w, j.ID, orDash(j.Name), j.Status, j.Kind, fmtTime(j.NextFireAt), jobTarget(&j))
			}
		})
	}
}

// jobAction is a command that names a job and answers with it.
func jobAction(action string) func(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(fs *flag.FlagSet) func(*cliEnv, []string) error {
		return func(e *cliEnv, args []string) error {
			var job *client.Job
			var err error
			switch id := args[0]; action {
			case "get":
				job, err = e.c.GetJob(e.ctx, id)
			case "pause":
				job, err = e.c.PauseJob(e.ctx, id)
			case "resume":
				job, err = e.c.ResumeJob(e.ctx, id)
			case "archive":
				job, err = e.c.ArchiveJob(e.ctx, id)
			case "cancel":
				job, err = e.c.CancelJob(e.ctx, id)
			}
			if err != nil {
				return err
			}
			return e.print(func(w io.Writer) { jobDetail(w, job) })
		}
	}
}

func jobsTrigger(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		o, err := e.c.TriggerJob(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { occurrenceDetail(w, o) })
	}
}

func jobTarget(j *client.Job) string {
	var parts []string
	if j.CallbackURL != "" {
		parts = append(parts, j.Method+" "+j.CallbackURL)
	}
	if j.EventType != "" {
		parts = append(parts, "event "+j.EventType)
	}
	return strings.Join(parts, " + ")
}

func jobDetail(w io.Writer, j *client.Job) {
	sched, _ := json.Marshal(j.Schedule)
	last := ""
	if o := j.LastOccurrence; o != nil {
		last = fmt.Sprintf("#%d %s %s (%s)", o.Number, o.ID, o.Status, fmtTime(&o.ScheduledFor))
	}
	kv(w, "id", j.ID, "name", j.Name, "project", j.Project, "status", j.Status, "kind", j.Kind,
		"schedule", string(sched), "next fire", fmtTime(j.NextFireAt),
		"occurrences", strconv.FormatInt(j.OccurrenceCount, 10), "last occurrence", last,
		"target", jobTarget(j), "headers", fmtMap(j.Headers), "payload", string(j.Payload),
		"retry", retryText(j.RetryPolicy), "attempt timeout", fmt.Sprintf("%gs", j.TimeoutSeconds),
		"manual completion", strconv.FormatBool(j.ManualCompletion), "signed", strconv.FormatBool(j.Signed),
		"description", j.Description, "created", fmtTime(&j.CreatedAt), "updated", fmtTime(&j.UpdatedAt))
}

func retryText(p client.RetryPolicy) string {
	return fmt.Sprintf("%d attempts, %s backoff from %gs to %gs", p.MaxAttempts, p.Backoff, p.InitialDelaySeconds, p.MaxDelaySeconds)
}

func occurrencesList(fs *flag.FlagSet) func(*cliEnv, []string) error {
	lo := listOpts(fs)
	status := fs.String("status", "", "only occurrences in this status: pending, completed, skipped, missed, cooldown")
	return func(e *cliEnv, args []string) error {
		page, err := e.c.ListOccurrences(e.ctx, args[0], client.OccurrenceListOptions{ListOptions: *lo, Status: *status})
		if err != nil {
			return err
		}
		return e.printPage("chime occurrences list "+args[0], page.NextCursor, func(w io.Writer) {
			row(w, "ID", "#", "STATUS", "SCHEDULED FOR", "FIRED AT", "MANUAL")
			for _, o := range page.Items {
				row(w, o.ID, strconv.FormatInt(o.Number, 10), o.Status, fmtTime(o.ScheduledFor), fmtTime(o.FiredAt), strconv.FormatBool(o.Manual))
			}
		})
	}
}

func occurrenceAction(action string) func(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(fs *flag.FlagSet) func(*cliEnv, []string) error {
		return func(e *cliEnv, args []string) error {
			var o *client.OccurrenceDetail
			var err error
			switch id := args[0]; action {
			case "get":
				o, err = e.c.GetOccurrence(e.ctx, id)
			case "complete":
				o, err = e.c.CompleteOccurrence(e.ctx, id)
			case "skip":
				o, err = e.c.SkipOccurrence(e.ctx, id)
			}
			if err != nil {
				return err
			}
			return e.print(func(w io.Writer) { occurrenceDetail(w, o) })
		}
	}
}

func occurrenceDetail(w io.Writer, o *client.OccurrenceDetail) {
	missed := ""
	if o.MissedCount > 0 {
		missed = strconv.FormatInt(o.MissedCount, 10)
	}
	kv(w, "id", o.ID, "job", o.JobID, "number", strconv.FormatInt(o.Number, 10), "status", o.Status,
		"scheduled for", fmtTime(o.ScheduledFor), "fired at", fmtTime(o.FiredAt), "completed at", fmtTime(o.CompletedAt),
		"missed slots", missed, "manual", strconv.FormatBool(o.Manual), "idempotency key", o.IdempotencyKey)
	if len(o.Deliveries) > 0 {
		fmt.Fprintln(w)
		deliveryTable(w, o.Deliveries)
	}
}
