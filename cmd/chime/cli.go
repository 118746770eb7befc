package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chime-sched/chime/client"
)

// The client commands (chime jobs, chime endpoints, ...) talk to a node
// through the client package. Each is a command in a group; runGroup gives
// every one the connection flags, parses flags wherever they stand among the
// arguments, runs it, prints a table or (--json) the API's own JSON, and
// turns errors into a message that names what to fix and an exit code:
// 2 for a mistake on the command line, 1 for anything the node refused or
// could not do.

// defaultAddr is where a node listens with the agent's default --http-addr.
const defaultAddr = "http://127.0.0.1:8700"

// command is one client command.
type command struct {
	name    string
	args    []string // positional arguments, e.g. {"JOB_ID"}
	summary string
	// fields maps the API's request fields to this command's flags where
	// they differ from fieldFlags (tokens create sets "project" with
	// --bind-project, as --project means the project acted in).
	fields map[string]string
	// setup registers the command's own flags and returns what runs once
	// they are parsed.
	setup func(fs *flag.FlagSet) func(e *cliEnv, args []string) error
}

// cliEnv is what a running command works with.
type cliEnv struct {
	ctx    context.Context
	c      *client.Client
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
	json   bool
	// raw is the body of the last call (client.WithRawBody), what --json
	// prints.
	raw []byte
	// set holds the flags given on the command line: an update sends only
	// those.
	set map[string]bool
}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// groups are the client command groups, by name.
var groups = map[string][]command{}

// groupSummaries describe the groups in `chime <group> --help`.
var groupSummaries = map[string]string{}

func registerGroup(name, summary string, cmds ...command) {
	groups[name] = cmds
	groupSummaries[name] = summary
}

// runGroup runs `chime <group> <command> [args] [flags]`.
func runGroup(group string, args []string, stdout, stderr io.Writer) int {
	cmds := groups[group]
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		w := stderr
		code := 2
		if len(args) > 0 {
			w, code = stdout, 0
		}
		fmt.Fprintf(w, "chime %s: %s\n\nUsage:\n", group, groupSummaries[group])
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, c := range cmds {
			fmt.Fprintf(tw, "  chime %s %s\t%s\n", group, strings.TrimSpace(c.name+" "+strings.Join(c.args, " ")), c.summary)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nchime %s <command> --help lists a command's flags.\n", group)
		return code
	}
	var cmd *command
	for i := range cmds {
		if cmds[i].name == args[0] {
			cmd = &cmds[i]
		}
	}
	name := "chime " + group + " " + args[0]
	if cmd == nil {
		fmt.Fprintf(stderr, "chime %s: unknown command %q (chime %s --help lists them)\n", group, args[0], group)
		return 2
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "the node's API address (env CHIME_ADDR; default "+defaultAddr+")")
	token := fs.String("token", "", "API token (env CHIME_TOKEN)")
	project := fs.String("project", "", "act in this project (env CHIME_PROJECT; default: the token's, else default)")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	timeout := fs.Duration("timeout", client.DefaultTimeout, "bound on each API call")
	run := cmd.setup(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n\n%s\n\nFlags:\n", strings.Join(append([]string{name}, cmd.args...), " "), cmd.summary)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the error and the usage
	}
	if len(pos) != len(cmd.args) {
		want := "no arguments"
		if len(cmd.args) > 0 {
			want = strings.Join(cmd.args, " ")
		}
		fmt.Fprintf(stderr, "%s: takes %s, got %d argument(s) (%s --help)\n", name, want, len(pos), name)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fromEnv(set, addr, "addr", defaultAddr)
	fromEnv(set, token, "token", "")
	fromEnv(set, project, "project", "")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := []client.Option{client.WithTimeout(*timeout), client.WithUserAgent("chime-cli/" + version)}
	if *project != "" {
		opts = append(opts, client.WithProject(*project))
	}
	e := &cliEnv{c: client.New(*addr, *token, opts...), stdout: stdout, stderr: stderr, stdin: os.Stdin, json: *asJSON, set: set}
	e.ctx = client.WithRawBody(ctx, &e.raw)
	if err := run(e, pos); err != nil {
		return report(stderr, name, *addr, cmd.fields, err)
	}
	return 0
}

// fromEnv fills a connection flag not given on the command line from
// CHIME_<NAME>, else def.
func fromEnv(set map[string]bool, p *string, name, def string) {
	if set[name] {
		return
	}
	if v, ok := os.LookupEnv(envName(name)); ok && v != "" {
		*p = v
		return
	}
	*p = def
}

// parseInterspersed parses flags wherever they stand, so that
// `chime jobs get JOB_ID --json` works like `chime jobs get --json JOB_ID`;
// the flag package alone stops at the first argument. After "--" everything
// is an argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		consumed := args[:len(args)-len(rest)]
		if len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// report prints err for the user and returns the exit code.
func report(stderr io.Writer, name, addr string, fields map[string]string, err error) int {
	var usage *usageError
	var ae *client.Error
	var ne net.Error
	var urlErr *url.Error
	switch {
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%s: %s\n", name, usage.msg)
		return 2
	case errors.As(err, &ae):
		fmt.Fprintf(stderr, "%s: the node refused the request: %s (HTTP %d)\n", name, orDash(ae.Code), ae.Status)
		if ae.Field != "" {
			hint := ""
			if f := flagForField(ae.Field, fields); f != "" {
				hint = " (set by " + f + ")"
			}
			fmt.Fprintf(stderr, "  field:   %s%s\n", ae.Field, hint)
		}
		fmt.Fprintf(stderr, "  message: %s\n", ae.Message)
		switch {
		case ae.Status == 401:
			fmt.Fprintln(stderr, "  give a valid token with --token or CHIME_TOKEN")
		case ae.Status == 403:
			fmt.Fprintln(stderr, "  this token lacks the scope or the reach for the call: use one that has it")
		case ae.Code == "unverified_snapshot":
			fmt.Fprintln(stderr, "  only if you trust this file (e.g. a backup of another cluster of yours), restore it with --foreign")
		case ae.Status == 429 && ae.RetryAfter > 0:
			fmt.Fprintf(stderr, "  a limit of the project (chime limits get): retry in %s\n", ae.RetryAfter)
		case ae.Status == 429:
			fmt.Fprintln(stderr, "  a limit of the project (chime limits get): delete something, or ask an admin to raise it")
		case ae.RetryAfter > 0:
			fmt.Fprintf(stderr, "  the node is busy (an election, a catch-up, a shutdown): retry in %s\n", ae.RetryAfter)
		}
		return 1
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "%s: interrupted\n", name)
		return 1
	case errors.As(err, &ne) && ne.Timeout():
		fmt.Fprintf(stderr, "%s: no answer from %s in time (raise --timeout, or check the node): %v\n", name, addr, err)
		return 1
	case errors.As(err, &urlErr):
		fmt.Fprintf(stderr, "%s: cannot reach the node at %s (set --addr or CHIME_ADDR): %v\n", name, addr, urlErr.Err)
		return 1
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// fieldFlags name the flag that sets each field of the API's requests, so
// that an error about a field tells the user which flag to fix. Keys are
// JSON paths without indexes; the longest dotted prefix wins.
var fieldFlags = map[string]string{
	"fireAtUtc": "--at-time", "delaySeconds": "--in", "recurrenceSeconds": "--every",
	"scheduleTimes": "--at", "scheduleDaysOfWeek": "--on", "recurrence": "--every/--daily/--weekly/--monthly",
	"recurrence.interval": "--every", "recurrence.weekdays": "--on", "recurrence.times": "--at",
	"recurrence.monthDay": "--day", "recurrence.nthWeekday": "--nth/--on", "recurrence.nthWeekday.nth": "--nth",
	"recurrence.nthWeekday.weekday": "--on", "rrule": "--rrule", "cron": "--cron", "timezone": "--tz",
	"startAt": "--start", "endAtUtc": "--end", "maxOccurrences": "--max-occurrences", "catchUp": "--catch-up",
	"misfireGraceSeconds": "--misfire-grace", "cooldownSeconds": "--cooldown",
	"name": "--name", "description": "--description", "callbackUrl": "--url", "url": "--url", "method": "--method",
	"headers": "--header", "payload": "--payload", "eventType": "--event-type", "maxRetries": "--max-retries",
	"retryPolicy.maxAttempts": "--max-attempts", "retryPolicy.backoff": "--backoff",
	"retryPolicy.initialDelaySeconds": "--initial-delay", "retryPolicy.maxDelaySeconds": "--max-delay",
	"retryPolicy":    "--backoff/--initial-delay/--max-delay",
	"timeoutSeconds": "--attempt-timeout", "idempotencyKey": "--idempotency-key", "correlationId": "--correlation-id",
	"signingSecret": "--signing-secret", "eventTypes": "--event-types", "graceSeconds": "--grace",
	"type": "--type", "data": "--data", "scheduledAt": "--at-time", "scopes": "--scopes", "expiresAt": "--expires",
	"project": "--project", "status": "--status", "limit": "--limit", "cursor": "--cursor", "from": "--from", "to": "--to",
	"endpointId": "--endpoint", "jobId": "--job", "count": "--count",
}

func flagForField(field string, overrides map[string]string) string {
	var b strings.Builder
	depth := 0
	for _, r := range field { // drop indexes: scopes[0] -> scopes
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	for f := b.String(); f != ""; {
		if flag, ok := overrides[f]; ok {
			return flag
		}
		if flag, ok := fieldFlags[f]; ok {
			return flag
		}
		i := strings.LastIndexByte(f, '.')
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return ""
}

// print writes the answer: the API's JSON with --json, else what human
// writes through a tabwriter (columns separated by tabs).
func (e *cliEnv) print(human func(w io.Writer)) error {
	if e.json {
		if len(e.raw) == 0 {
			return nil
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, e.raw, "", "  "); err != nil {
			buf.Reset()
			buf.Write(e.raw)
		}
		buf.WriteByte('\n')
		_, err := e.stdout.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

// printPage prints a list page and, under a table, how to get the next one
// (--json readers have nextCursor in the JSON).
func (e *cliEnv) printPage(cmdLine, cursor string, human func(w io.Writer)) error {
	if err := e.print(human); err != nil {
		return err
	}
	if cursor != "" && !e.json {
		fmt.Fprintf(e.stderr, "more: %s --cursor %s\n", cmdLine, cursor)
	}
	return nil
}

// row writes one tab-separated line.
func row(w io.Writer, cols ...string) { fmt.Fprintln(w, strings.Join(cols, "\t")) }

// kv writes "key:\tvalue" lines, skipping empty values.
func kv(w io.Writer, pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			fmt.Fprintf(w, "%s:\t%s\n", pairs[i], pairs[i+1])
		}
	}
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func fmtMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

// parseInstant reads an RFC 3339 time given to flagName; "" stays "".
func parseInstant(flagName, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usagef("%s %q: use an RFC 3339 time such as 2026-12-01T10:00:00Z", flagName, v)
	}
	return t, nil
}

// readJSONArg reads a flag that takes JSON inline, @file, or @- (stdin).
func (e *cliEnv) readJSONArg(flagName, v string) (json.RawMessage, error) {
	var b []byte
	switch {
	case v == "@-":
		var err error
		if b, err = io.ReadAll(e.stdin); err != nil {
			return nil, fmt.Errorf("%s @-: read stdin: %w", flagName, err)
		}
	case strings.HasPrefix(v, "@"):
		var err error
		if b, err = os.ReadFile(v[1:]); err != nil {
			return nil, usagef("%s: %v", flagName, err)
		}
	default:
		b = []byte(v)
	}
	b = bytes.TrimSpace(b)
	if !json.Valid(b) {
		return nil, usagef("%s: not valid JSON (give JSON inline, @file or @- for stdin): %.60s", flagName, b)
	}
	return b, nil
}

// headerFlag is a repeatable --header Name=Value; values may hold commas.
type headerFlag map[string]string

func (h *headerFlag) String() string { return fmtMap(*h) }
func (h *headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q: use Name=Value", v)
	}
	if *h == nil {
		*h = headerFlag{}
	}
	(*h)[strings.TrimSpace(name)] = value
	return nil
}

// listOpts registers --limit and --cursor.
func listOpts(fs *flag.FlagSet) *client.ListOptions {
	o := &client.ListOptions{}
	fs.IntVar(&o.Limit, "limit", 0, "page size, 1 to 500 (default 100)")
	fs.StringVar(&o.Cursor, "cursor", "", "the page after this cursor (printed after a page that has more)")
	return o
}
