package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/chime-sched/chime/client"
)

func init() {
	registerGroup("limits", "per-project quotas: cluster-wide limits and per-project overrides (admin)",
		command{name: "show", summary: "the cluster-wide limits and the built-in defaults", setup: limitsShow},
		command{name: "get", args: []string{"PROJECT"}, summary: "a project's limits in force, its overrides and its usage", setup: limitsGet},
		command{name: "set", summary: "change cluster-wide limits (0 = no limit; --unset clears)", setup: limitsSet(false), fields: limitFields()},
		command{name: "set-project", args: []string{"PROJECT"}, summary: "override limits for one project (0 = no limit; --unset inherits again)",
			setup: limitsSet(true), fields: limitFields()},
		command{name: "reset", args: []string{"PROJECT"}, summary: "drop every override of a project", setup: limitsReset},
	)
}

// limitFlags are the flags of limits set, by the API's field names.
var limitFlags = []struct{ flag, field, usage string }{
	{"max-jobs", "maxJobs", "live (active or paused) jobs"},
	{"max-endpoints", "maxEndpoints", "endpoints"},
	{"max-undelivered", "maxUndelivered", "deliveries pending, in flight, retrying, held or dead-lettered"},
	{"creates-per-second", "createsPerSecond", "job and endpoint creates per second"},
	{"create-burst", "createBurst", "creates allowed at once"},
	{"publishes-per-second", "publishesPerSecond", "events, manual triggers and endpoint tests per second"},
	{"publish-burst", "publishBurst", "publishes allowed at once"},
	{"min-interval", "minIntervalSeconds", "smallest gap between two fires of a job, in seconds"},
	{"max-scheduled-events", "maxScheduledEvents", "events waiting for their scheduledAt"},
}

// limitFields maps the API's limit names to their flags, for error hints.
func limitFields() map[string]string {
	m := map[string]string{}
	for _, f := range limitFlags {
		m[f.field] = "--" + f.flag
	}
	return m
}

func limitsTable(w io.Writer, l client.Limits, overrides map[string]int64) {
	show := func(v int64) string {
		if v == 0 {
			return "no limit"
		}
		return strconv.FormatInt(v, 10)
	}
	vals := map[string]int64{"maxJobs": l.MaxJobs, "maxEndpoints": l.MaxEndpoints, "maxUndelivered": l.MaxUndelivered,
		"createsPerSecond": l.CreatesPerSecond, "createBurst": l.CreateBurst, "publishesPerSecond": l.PublishesPerSecond,
		"publishBurst": l.PublishBurst, "minIntervalSeconds": l.MinIntervalSeconds, "maxScheduledEvents": l.MaxScheduledEvents}
	if overrides == nil {
		row(w, "LIMIT", "VALUE")
	} else {
		row(w, "LIMIT", "VALUE", "FROM")
	}
	for _, f := range limitFlags {
		if overrides == nil {
			row(w, f.field, show(vals[f.field]))
			continue
		}
		from := "cluster"
		if _, ok := overrides[f.field]; ok {
			from = "project"
		}
		row(w, f.field, show(vals[f.field]), from)
	}
}

func limitsShow(*flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, _ []string) error {
		l, err := e.c.GetClusterLimits(e.ctx)
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { limitsTable(w, l.Limits, nil) })
	}
}

func limitsGet(*flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		l, err := e.c.GetProjectLimits(e.ctx, args[0])
		if err != nil {
			return err
		}
		return e.print(func(w io.Writer) { projectLimits(w, l) })
	}
}

func projectLimits(w io.Writer, l *client.ProjectLimits) {
	limitsTable(w, l.Limits, l.Overrides)
	fmt.Fprintf(w, "\nusage:\tjobs %d, endpoints %d, undelivered %d, scheduled events %d\n", l.Usage.Jobs, l.Usage.Endpoints, l.Usage.Undelivered, l.Usage.ScheduledEvents)
}

func limitsSet(project bool) func(*flag.FlagSet) func(*cliEnv, []string) error {
	return func(fs *flag.FlagSet) func(*cliEnv, []string) error {
		vals := map[string]*int64{}
		for _, f := range limitFlags {
			vals[f.field] = fs.Int64(f.flag, 0, f.usage+" (0: no limit)")
		}
		var unset listFlag
		fs.Var(&unset, "unset", "`limits` to clear, by API name (maxJobs, …), comma-separated")
		return func(e *cliEnv, args []string) error {
			var p client.LimitsPatch
			ptrs := map[string]**int64{"maxJobs": &p.MaxJobs, "maxEndpoints": &p.MaxEndpoints, "maxUndelivered": &p.MaxUndelivered,
				"createsPerSecond": &p.CreatesPerSecond, "createBurst": &p.CreateBurst, "publishesPerSecond": &p.PublishesPerSecond,
				"publishBurst": &p.PublishBurst, "minIntervalSeconds": &p.MinIntervalSeconds, "maxScheduledEvents": &p.MaxScheduledEvents}
			n := 0
			for _, f := range limitFlags {
				if e.set[f.flag] {
					*ptrs[f.field] = vals[f.field]
					n++
				}
			}
			p.Unset = unset
			if n == 0 && len(unset) == 0 {
				return usagef("give at least one limit to set (--max-jobs, …) or --unset")
			}
			if !project {
				l, err := e.c.SetClusterLimits(e.ctx, p)
				if err != nil {
					return err
				}
				return e.print(func(w io.Writer) { limitsTable(w, l.Limits, nil) })
			}
			l, err := e.c.SetProjectLimits(e.ctx, args[0], p)
			if err != nil {
				return err
			}
			return e.print(func(w io.Writer) { projectLimits(w, l) })
		}
	}
}

func limitsReset(*flag.FlagSet) func(*cliEnv, []string) error {
	return func(e *cliEnv, args []string) error {
		if err := e.c.ResetProjectLimits(e.ctx, args[0]); err != nil {
			return err
		}
		if !e.json {
			fmt.Fprintf(e.stdout, "project %s inherits every cluster-wide limit\n", args[0])
		}
		return nil
	}
}
