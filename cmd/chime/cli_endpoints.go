package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/chime-sched/chime/client"
)

func init() {
	registerGroup("endpoints", "webhook destinations subscribed to event types",
		command{name: "create", summary: "create an endpoint (--url, --event-types); prints its signing secret, once", setup: endpointsCreate},
		command{name: "list", summary: "list endpoints", setup: endpointsList},
		command{name: "get", args: []string{"ENDPOINT_ID"}, summary: "show an endpoint", setup: endpointAction("get")},
		command{name: "update", args: []string{"ENDPOINT_ID"}, summary: "change the fields given", setup: endpointsUpdate},
		command{name: "delete", args: []string{"ENDPOINT_ID"}, summary: "delete the endpoint and its delivery history", setup: endpointsDelete},
		command{name: "rotate-secret", args: []string{"ENDPOINT_ID"}, summary: "new signing secret; --grace keeps the old one signing too", setup: endpointsRotate},
		command{name: "test", args: []string{"ENDPOINT_ID"}, summary: "send a webhook.test event to this endpoint now and show the attempt", setup: endpointsTest},
		command{name: "enable", args: []string{"ENDPOINT_ID"}, summary: "enable; --release-held re-queues what was held while disabled", setup: endpointsEnable},
		command{name: "disable", args: []string{"ENDPOINT_ID"}, summary: "disable: new deliveries are held", setup: endpointAction("disable")},
	)
	registerGroup("events", "business events fanned out to subscribed endpoints",
		command{name: "publish", summary: "publish an event (--type, --data), now or --at-time", setup: eventsPublish},
		command{name: "get", args: []string{"EVENT_ID"}, summary: "show an event and its deliveries", setup: eventsGet},
	)
	registerGroup("deliveries", "messages to destinations and their attempts",
		command{name: "list", summary: "list deliveries (--status, --endpoint, --job, --from, --to)", setup: deliveriesList},
		command{name: "get", args: []string{"DELIVERY_ID"}, summary: "show a delivery and its attempts", setup: deliveryAction("get")},
		command{name: "retry", args: []string{"DELIVERY_ID"}, summary: "queue a dead-lettered or cancelled delivery again", setup: deliveryAction("retry")},
		command{name: "cancel", args: []string{"DELIVERY_ID"}, summary: "cancel an unfinished delivery", setup: deliveryAction("cancel")},
		command{name: "replay", summary: "queue dead letters again in bulk (--endpoint, --job, --from, --to, --max)", setup: deliveriesReplay,
			fields: map[string]string{"limit": "--max"}},
	)
}

// endpointFlags are the fields of an endpoint.
type endpointFlags struct {
	url, description, method string
	eventTypes               listFlag
	headers                  headerFlag
	attemptTimeout           time.Duration
	maxAttempts              int
	retry                    retryFlags
}

func (f *endpointFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "url", "", "where to send the webhooks")
	fs.StringVar(&f.description, "description", "", "a description for people")
	fs.Var(&f.eventTypes, "event-types", "subscribed event `types`: invoice.paid, invoice.* or * (comma-separated or repeated)")
	fs.StringVar(&f.method, "method", "", "HTTP method (default POST)")
	fs.Var(&f.headers, "header", "a header to send, `Name=Value` (repeatable)")
	fs.DurationVar(&f.attemptTimeout, "attempt-timeout", 0, "timeout of one attempt, 1s to 60s (default 10s)")
	fs.IntVar(&f.maxAttempts, "max-attempts", 0, "attempts before a delivery is a dead letter (default 3)")
	f.retry.register(fs)
}

func endpointsCreate(fs *flag.FlagSet) func(*cliEnv, []string) error {
	var f endpointFlags
	f.register(fs)
	disabled := fs.Bool("disabled", false, "create it disabled (deliveries are held until it is enabled)")
	return func(e *cliEnv, _ []string) error {
		if f.url == "" {
			return usagef("--url is required: where to send the webhooks")
		}
		if len(f.eventTypes) == 0 {
			return usagef("--event-types is required: the event types to subscribe to, e.g. invoice.paid,invoice.* or *")
		}
		req := client.EndpointRequest{URL: f.url, Description: f.description, EventTypes: f.eventTypes, Method: f.method,
			Headers: f.headers, TimeoutSeconds: f.attemptTimeout.Seconds(), RetryPolicy: f.retry.policy(e.set, f.maxAttempts)}
		if *disabled {
			req.Enabled = client.Ptr(false)
		}
		ep, err := e.c.CreateEndpoint(e.ctx, req)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) {
			endpointDetail(w, &ep.Endpoint)
			kv(w, "secret", ep.Secret+"   (shown once: keep it to verify signatures)")
		})
	}
}

func endpointsUpdate(fs *flag.FlagSet) func(*cliEnv, []string) error {
	var f endpointFlags
	f.register(fs)
	enabled := fs.Bool("enabled", true, "enable (--enabled) or disable (--enabled=false); enable --release-held also releases held deliveries")
	return func(e *cliEnv, args []string) error {
		var p client.EndpointPatch
		str := func(name, v string) *string {
			if e.set[name] {
				return &v
			}
			return nil
		}
		p.URL, p.Description, p.Method = str("url", f.url), str("description", f.description), str("method", f.method)
		if e.set["event-types"] {
			types := []string(f.eventTypes)
			p.EventTypes = &types
		}
		if e.set["header"] {
			h := map[string]string(f.headers)
			p.Headers = &h
		}
		if e.set["attempt-timeout"] {
			p.TimeoutSeconds = client.Ptr(f.attemptTimeout.Seconds())
		}
		p.RetryPolicy = f.retry.policy(e.set, f.maxAttempts)
		if e.set["enabled"] {
			p.Enabled = enabled
		}
		if p == (client.EndpointPatch{}) {
			return usagef("nothing to change: give the flags of the fields to change (--url, --event-types, ... see --help)")
		}
		ep, err := e.c.UpdateEndpoint(e.ctx, args[0], p)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { endpointDetail(w, ep) })
	}
}

func endpointsList(fs *flag.FlagSet) func(*cliEnv, []string) error {
	lo := listOpts(fs)
	return func(e *cliEnv, _ []string) error {
		page, err := e.c.ListEndpoints(e.ctx, *lo)
		if err != nil {
			return err
		}
		return e.printPage("chime endpoints list", page.NextCursor, func(w io.Writer) {
			row(w, "ID", "URL", "EVENT TYPES", "ENABLED", "FAILURES")
			for _, ep := range page.Items {
				row(w, ep.ID, ep.URL, strings.Join(ep.EventTypes, ","), strconv.FormatBool(ep.Enabled), strconv.Itoa(ep.ConsecutiveFailures))
			}
		})
	}
}

func endpointAction(action string) func(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(fs *flag.FlagSet) func(*cliEnv, []string) error {
		return func(e *cliEnv, args []string) error {
			var ep *client.Endpoint
			var err error
			switch action {
			case "get":
				ep, err = e.c.GetEndpoint(e.ctx, args[0])
			case "disable":
				ep, err = e.c.DisableEndpoint(e.ctx, args[0])
			}
			if err != nil {
				return err
			}
			return e.print(func(w io.Writer) { endpointDetail(w, ep) })
		}
	}
}

func endpointsEnable(fs *flag.FlagSet) func(*cliEnv, []string) error {
	release := fs.Bool("release-held", false, "also re-queue the deliveries held while it was disabled")
	return func(e *cliEnv, args []string) error {
		ep, err := e.c.EnableEndpoint(e.ctx, args[0], *release)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) {
			endpointDetail(w, &ep.Endpoint)
			if ep.Released != nil {
				kv(w, "released", strconv.Itoa(*ep.Released))
			}
		})
	}
}

func endpointsDelete(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		d, err := e.c.DeleteEndpoint(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) {
			fmt.Fprintf(w, "deleted endpoint %s and %d deliveries\n", d.ID, d.DeliveriesRemoved)
		})
	}
}

func endpointsRotate(fs *flag.FlagSet) func(*cliEnv, []string) error {
	grace := fs.Duration("grace", 0, "how long the old secret keeps signing too, up to 168h (default: it stops at once)")
	return func(e *cliEnv, args []string) error {
		if *grace < 0 || *grace%time.Second != 0 {
			return usagef("--grace %s: use whole seconds, e.g. 24h", *grace)
		}
		r, err := e.c.RotateSecret(e.ctx, args[0], int64(*grace/time.Second))
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) {
			kv(w, "id", r.ID, "secret", r.Secret+"   (shown once)", "previous secret until", fmtTime(r.PreviousSecretExpiresAt))
		})
	}
}

func endpointsTest(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		d, err := e.c.TestEndpoint(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { deliveryDetail(w, d) })
	}
}

func endpointDetail(w io.Writer, ep *client.Endpoint) {
	kv(w, "id", ep.ID, "project", ep.Project, "url", ep.Method+" "+ep.URL, "event types", strings.Join(ep.EventTypes, ","),
		"enabled", strconv.FormatBool(ep.Enabled), "disabled reason", deref(ep.DisabledReason),
		"consecutive failures", strconv.Itoa(ep.ConsecutiveFailures), "headers", fmtMap(ep.Headers),
		"retry", retryText(ep.RetryPolicy), "attempt timeout", fmt.Sprintf("%gs", ep.TimeoutSeconds),
		"description", ep.Description, "created", fmtTime(ep.CreatedAt), "updated", fmtTime(ep.UpdatedAt))
}

func eventsPublish(fs *flag.FlagSet) func(*cliEnv, []string) error {
	typ := fs.String("type", "", "the event type, e.g. invoice.paid")
	data := fs.String("data", "", "the event's data: inline JSON, @file or @- (stdin)")
	at := fs.String("at-time", "", "publish at this RFC 3339 time instead of now")
	key := fs.String("idempotency-key", "", "a repeated publish with this key answers the first event")
	return func(e *cliEnv, _ []string) error {
		if *typ == "" {
			return usagef("--type is required, e.g. --type invoice.paid")
		}
		if _, err := parseInstant("--at-time", *at); err != nil {
			return err
		}
		req := client.EventRequest{Type: *typ, ScheduledAt: *at, IdempotencyKey: *key}
		if *data != "" {
			raw, err := e.readJSONArg("--data", *data)
			if err != nil {
				return err
			}
			req.Data = raw
		}
		ev, err := e.c.PublishEvent(e.ctx, req)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { eventDetail(w, ev) })
	}
}

func eventsGet(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		ev, err := e.c.GetEvent(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) {
			eventDetail(w, &ev.Event)
			if len(ev.Deliveries) > 0 {
				fmt.Fprintln(w)
				deliveryTable(w, ev.Deliveries)
			}
		})
	}
}

func eventDetail(w io.Writer, ev *client.Event) {
	kv(w, "id", ev.ID, "project", ev.Project, "type", ev.Type, "status", ev.Status, "data", string(ev.Data),
		"scheduled at", fmtTime(ev.ScheduledAt), "published at", fmtTime(ev.PublishedAt),
		"idempotency key", deref(ev.IdempotencyKey), "created", fmtTime(ev.CreatedAt))
}

func deliveriesList(fs *flag.FlagSet) func(*cliEnv, []string) error {
	lo := listOpts(fs)
	status := fs.String("status", "", "only deliveries in this status: pending, in_flight, retry_scheduled, succeeded, dead_letter, cancelled, held")
	endpoint := fs.String("endpoint", "", "only deliveries to this endpoint id")
	job := fs.String("job", "", "only deliveries of this job id")
	from := fs.String("from", "", "only deliveries created at or after this RFC 3339 time")
	to := fs.String("to", "", "only deliveries created before this RFC 3339 time")
	return func(e *cliEnv, _ []string) error {
		o := client.DeliveryListOptions{ListOptions: *lo, Status: *status, EndpointID: *endpoint, JobID: *job}
		var err error
		if o.From, err = parseInstant("--from", *from); err != nil {
			return err
		}
		if o.To, err = parseInstant("--to", *to); err != nil {
			return err
		}
		page, err := e.c.ListDeliveries(e.ctx, o)
		if err != nil {
			return err
		}
		return e.printPage("chime deliveries list", page.NextCursor, func(w io.Writer) { deliveryTable(w, page.Items) })
	}
}

func deliveryAction(action string) func(fs *flag.FlagSet) func(*cliEnv, []string) error {
	return func(fs *flag.FlagSet) func(*cliEnv, []string) error {
		return func(e *cliEnv, args []string) error {
			var d *client.DeliveryDetail
			var err error
			switch action {
			case "get":
				d, err = e.c.GetDelivery(e.ctx, args[0])
			case "retry":
				d, err = e.c.RetryDelivery(e.ctx, args[0])
			case "cancel":
				d, err = e.c.CancelDelivery(e.ctx, args[0])
			}
			if err != nil {
				return err
			}
			return e.print(func(w io.Writer) { deliveryDetail(w, d) })
		}
	}
}

func deliveriesReplay(fs *flag.FlagSet) func(*cliEnv, []string) error {
	endpoint := fs.String("endpoint", "", "only dead letters to this endpoint id")
	job := fs.String("job", "", "only dead letters of this job id")
	from := fs.String("from", "", "only dead letters created at or after this RFC 3339 time")
	to := fs.String("to", "", "only dead letters created before this RFC 3339 time")
	maxN := fs.Int("max", 0, "re-queue at most this many, 1 to 1000 (default 100)")
	return func(e *cliEnv, _ []string) error {
		for _, t := range [][2]string{{"--from", *from}, {"--to", *to}} {
			if _, err := parseInstant(t[0], t[1]); err != nil {
				return err
			}
		}
		req := client.ReplayRequest{EndpointID: *endpoint, JobID: *job, From: *from, To: *to}
		if e.set["max"] {
			req.Limit = maxN
		}
		r, err := e.c.ReplayDeliveries(e.ctx, req)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) {
			fmt.Fprintf(w, "re-queued %d dead letters\n", r.Requeued)
			for _, id := range r.IDs {
				fmt.Fprintln(w, id)
			}
		})
	}
}

func deliveryTable(w io.Writer, ds []client.Delivery) {
	row(w, "ID", "STATUS", "DESTINATION", "ATTEMPTS", "LAST", "NEXT ATTEMPT", "SOURCE")
	for _, d := range ds {
		row(w, d.ID, d.Status, d.Destination, fmt.Sprintf("%d/%d", d.Attempts, d.MaxAttempts), lastOutcome(&d),
			fmtTime(d.NextAttemptAt), deliverySource(&d))
	}
}

func lastOutcome(d *client.Delivery) string {
	switch {
	case d.LastStatusCode != nil:
		return strconv.Itoa(*d.LastStatusCode)
	case d.LastError != nil:
		return "error"
	}
	return "-"
}

func deliverySource(d *client.Delivery) string {
	switch {
	case d.OccurrenceID != nil:
		return "occurrence " + *d.OccurrenceID
	case d.EventID != nil:
		return "event " + *d.EventID
	}
	return "-"
}

func deliveryDetail(w io.Writer, d *client.DeliveryDetail) {
	code := ""
	if d.LastStatusCode != nil {
		code = strconv.Itoa(*d.LastStatusCode)
	}
	kv(w, "id", d.ID, "project", d.Project, "status", d.Status, "destination", d.Destination,
		"source", deliverySource(&d.Delivery), "job", deref(d.JobID),
		"attempts", fmt.Sprintf("%d of %d", d.Attempts, d.MaxAttempts), "next attempt", fmtTime(d.NextAttemptAt),
		"assigned node", deref(d.AssignedNode), "scheduled for", fmtTime(d.ScheduledFor),
		"last status code", code, "last error", deref(d.LastError),
		"created", fmtTime(d.CreatedAt), "completed", fmtTime(d.CompletedAt))
	if len(d.AttemptHistory) == 0 {
		return
	}
	fmt.Fprintln(w)
	row(w, "ATTEMPT", "NODE", "STARTED", "LATENCY", "STATUS", "ERROR", "RESPONSE")
	for _, a := range d.AttemptHistory {
		status := "-"
		if a.StatusCode != nil {
			status = strconv.Itoa(*a.StatusCode)
		}
		row(w, strconv.Itoa(a.Number), a.Node, fmtTime(a.StartedAt), fmt.Sprintf("%dms", a.LatencyMs), status,
			orDash(oneLine(deref(a.Error), 50)), orDash(oneLine(a.ResponseSummary, 50)))
	}
}

// oneLine keeps a response summary to one table cell.
func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > limit {
		return string(r[:limit]) + "…"
	}
	return s
}
