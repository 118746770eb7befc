package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chime-sched/chime/client"
)

// cliRun runs one client command in-process, as main would.
func cliRun(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = runGroup(args[0], args[1:], &out, &errOut)
	return out.String(), errOut.String(), code
}

// ok runs a command that must succeed and returns its output.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cliRun(args...)
	if code != 0 {
		t.Fatalf("chime %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// okJSON runs a command with --json and decodes its output.
func okJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out := ok(t, append(args, "--json")...)
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("chime %s --json: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// fails runs a command that must exit with code and returns its stderr.
func fails(t *testing.T, code int, args ...string) string {
	t.Helper()
	out, errOut, got := cliRun(args...)
	if got != code {
		t.Fatalf("chime %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errOut)
	}
	if errOut == "" {
		t.Fatalf("chime %s: exit %d without a message", strings.Join(args, " "), got)
	}
	return errOut
}

// has fails unless s contains every want.
func has(t *testing.T, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Fatalf("output lacks %q:\n%s", w, s)
		}
	}
}

// value is the value of "key:" in a key/value table.
func value(t *testing.T, out, key string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, found := strings.CutPrefix(line, key+":"); found {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("no %q in:\n%s", key, out)
	return ""
}

// wait polls cond for up to 10 s.
func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCLI round-trips every client command against a real single node,
// in tables and in JSON. The steps share the node and go in order.
func TestCLI(t *testing.T) {
	addr := startNode(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/fail") {
			http.Error(w, "receiver says no", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hook.Close)
	t.Setenv("CHIME_ADDR", addr)
	t.Setenv("CHIME_TOKEN", testRootToken)
	t.Setenv("CHIME_PROJECT", "")
	// The test polls the node directly; the CLI is what is under test.
	api := client.New(addr, testRootToken)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	t.Run("usage and connection errors", func(t *testing.T) {
		has(t, fails(t, 2, "jobs"), "chime jobs create", "chime jobs trigger JOB_ID")
		out, _, code := cliRun("endpoints", "--help")
		if code != 0 || !strings.Contains(out, "chime endpoints rotate-secret ENDPOINT_ID") {
			t.Fatalf("help: %d %s", code, out)
		}
		has(t, fails(t, 2, "jobs", "explode"), `unknown command "explode"`)
		has(t, fails(t, 2, "jobs", "get"), "takes JOB_ID, got 0")
		has(t, fails(t, 2, "jobs", "list", "--bogus"), "flag provided but not defined: -bogus")
		has(t, fails(t, 1, "jobs", "list", "--addr", "127.0.0.1:1"), "cannot reach the node at 127.0.0.1:1", "--addr")
		// The flag wins over CHIME_TOKEN; a bad token says how to fix it.
		has(t, fails(t, 1, "jobs", "list", "--token", "chime_nope-nope-nope-nope"), "unauthorized (HTTP 401)", "--token or CHIME_TOKEN")
		t.Setenv("CHIME_ADDR", "127.0.0.1:1")
		ok(t, "cluster", "status", "--addr", addr)
		t.Setenv("CHIME_ADDR", addr)
	})

	t.Run("projects", func(t *testing.T) {
		out := ok(t, "projects", "create", "billing", "--description", "invoices")
		has(t, out, "name:", "billing", "invoices")
		if p := okJSON(t, "projects", "create", "scratch"); p["name"] != "scratch" {
			t.Fatalf("create --json: %v", p)
		}
		has(t, ok(t, "projects", "list"), "NAME", "billing", "default", "scratch")
		page := okJSON(t, "projects", "list", "--limit", "1")
		if len(page["items"].([]any)) != 1 || page["nextCursor"] == nil {
			t.Fatalf("list --limit 1 --json: %v", page)
		}
		_, errOut, _ := cliRun("projects", "list", "--limit", "1")
		has(t, errOut, "more: chime projects list --cursor "+page["nextCursor"].(string))
		has(t, ok(t, "projects", "list", "--cursor", page["nextCursor"].(string)), "default", "scratch")
		has(t, ok(t, "projects", "get", "billing"), "invoices")
		if p := okJSON(t, "projects", "get", "billing"); p["description"] != "invoices" {
			t.Fatalf("get --json: %v", p)
		}
		has(t, ok(t, "projects", "delete", "scratch"), "deleted project scratch")
		has(t, fails(t, 1, "projects", "get", "scratch"), "not_found (HTTP 404)", `project "scratch" not found`)
		has(t, fails(t, 1, "projects", "create", "Bad_Name"), "invalid_request (HTTP 400)", "field:   name (set by --name)")
	})

	t.Run("tokens", func(t *testing.T) {
		out := ok(t, "tokens", "create", "--name", "ci", "--scopes", "read,write", "--bind-project", "billing", "--expires", "720h")
		secret := strings.Fields(value(t, out, "token"))[0]
		id := value(t, out, "id")
		if !strings.HasPrefix(secret, "chime_") || value(t, out, "project") != "billing" || value(t, out, "scopes") != "read,write" {
			t.Fatalf("create: %s", out)
		}
		tok := okJSON(t, "tokens", "create", "--name", "reader", "--scopes", "read")
		if !strings.HasPrefix(tok["token"].(string), "chime_") || tok["scopes"].([]any)[0] != "read" {
			t.Fatalf("create --json: %v", tok)
		}
		has(t, fails(t, 2, "tokens", "create", "--scopes", "read"), "--name is required")
		has(t, fails(t, 1, "tokens", "create", "--name", "x", "--scopes", "root"), "field:   scopes[0] (set by --scopes)")
		has(t, fails(t, 1, "tokens", "create", "--name", "x", "--scopes", "read", "--bind-project", "nowhere"), "field:   project (set by --bind-project)")
		has(t, ok(t, "tokens", "list"), "PREFIX", "ci", "reader", "billing")
		if l := okJSON(t, "tokens", "list"); len(l["items"].([]any)) != 3 {
			t.Fatalf("list --json: %v", l)
		}
		// The new token works for its project, and cannot write elsewhere.
		has(t, ok(t, "jobs", "list", "--token", secret), "ID", "NAME")
		has(t, fails(t, 1, "projects", "create", "more", "--token", secret), "forbidden (HTTP 403)")
		has(t, ok(t, "tokens", "revoke", id), "revoked:", "true")
		if r := okJSON(t, "tokens", "revoke", tok["id"].(string)); r["revoked"] != true {
			t.Fatalf("revoke --json: %v", r)
		}
		has(t, fails(t, 1, "jobs", "list", "--token", secret), "unauthorized")
	})

	var weekly, hourly string
	t.Run("jobs create", func(t *testing.T) {
		out := ok(t, "jobs", "create", "--name", "weekly report", "--url", hook.URL+"/ok", "--every", "2w", "--on", "tue",
			"--at", "09:00", "--tz", "Europe/Rome", "--header", "X-Team=ops", "--header", "X-Note=a,b", "--payload", `{"order":42}`,
			"--max-retries", "2")
		weekly = value(t, out, "id")
		has(t, out, "weekly report", "recurrence", `"frequency":"weekly"`, `"weekdays":["TU"]`, "Europe/Rome",
			"X-Note=******** X-Team=********", `{"order":42}`, "2 attempts", "POST "+hook.URL+"/ok")
		payload := filepath.Join(t.TempDir(), "payload.json")
		if err := os.WriteFile(payload, []byte(`{"from":"file"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		j := okJSON(t, "jobs", "create", "--url", hook.URL+"/ok", "--every", "1h", "--payload", "@"+payload, "--name", "hourly")
		hourly = j["id"].(string)
		if j["kind"] != "interval" || j["payload"].(map[string]any)["from"] != "file" {
			t.Fatalf("create --json: %v", j)
		}
		for _, c := range []struct {
			args []string
			kind string
			want string
		}{
			{[]string{"--monthly", "--nth", "3", "--on", "tue", "--at", "09:00"}, "recurrence", `"nthWeekday":{"weekday":"TU","nth":3}`},
			{[]string{"--cron", "0 9 * * 1", "--tz", "America/New_York"}, "cron", `"cron":"0 9 * * 1"`},
			{[]string{"--in", "1h"}, "once", `"delaySeconds":3600`},
			{[]string{"--at-time", "2030-12-01T10:00:00Z"}, "once", `"fireAtUtc":"2030-12-01T10:00:00Z"`},
			{[]string{"--at", "10:00,15:00", "--on", "mon,tue"}, "calendar", `"scheduleDaysOfWeek":[1,2]`},
			{[]string{"--spec", `{"rrule":"FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9;BYMINUTE=0"}`}, "rrule", "BYDAY=-1FR"},
		} {
			out := ok(t, append([]string{"jobs", "create", "--event-type", "report.due"}, c.args...)...)
			if value(t, out, "kind") != c.kind || value(t, out, "target") != "event report.due" {
				t.Fatalf("%v: %s", c.args, out)
			}
			has(t, out, c.want)
		}
		has(t, fails(t, 1, "jobs", "create", "--url", hook.URL, "--cron", "61 * * * *"),
			"invalid_request (HTTP 400)", "field:   cron (set by --cron)", "61 is out of range")
		has(t, fails(t, 1, "jobs", "create", "--url", hook.URL, "--at", "25:00"), "(set by --at)")
		has(t, fails(t, 2, "jobs", "create", "--every", "1h"), "needs a target: --url")
		has(t, fails(t, 2, "jobs", "create", "--url", hook.URL), "a schedule is required")
		has(t, fails(t, 2, "jobs", "create", "--url", hook.URL, "--in", "1h", "--payload", "{nope"), "--payload: not valid JSON")
		has(t, fails(t, 2, "jobs", "create", "--url", hook.URL, "--in", "1h", "--header", "novalue"), "use Name=Value")
	})

	t.Run("jobs read and change", func(t *testing.T) {
		out := ok(t, "jobs", "list")
		has(t, out, "NEXT FIRE", weekly, hourly, "weekly report")
		page := okJSON(t, "jobs", "list", "--limit", "2")
		if len(page["items"].([]any)) != 2 || page["nextCursor"] == nil {
			t.Fatalf("list --json: %v", page)
		}
		// Next fire within 61 minutes: the hourly job and the --in 1h one.
		now := time.Now().UTC()
		win := okJSON(t, "jobs", "list", "--from", now.Format(time.RFC3339), "--to", now.Add(61*time.Minute).Format(time.RFC3339))
		if n := len(win["items"].([]any)); n != 2 {
			t.Fatalf("list --from --to: %d jobs: %v", n, win)
		}
		has(t, fails(t, 2, "jobs", "list", "--from", "yesterday"), "--from \"yesterday\": use an RFC 3339 time")
		has(t, fails(t, 1, "jobs", "list", "--status", "sleeping"), "field:   status (set by --status)")

		has(t, ok(t, "jobs", "get", weekly), "weekly report", "status:", "active")
		// Flags may follow the argument.
		if j := okJSON(t, "jobs", "get", weekly); j["id"] != weekly || j["name"] != "weekly report" {
			t.Fatalf("get --json: %v", j)
		}
		has(t, fails(t, 1, "jobs", "get", "job_missing"), "not_found (HTTP 404)")

		out = ok(t, "jobs", "update", weekly, "--name", "hourly report", "--every", "1h", "--manual-completion")
		has(t, out, "hourly report", "interval", `"recurrenceSeconds":3600`, "X-Team=********")
		if value(t, out, "manual completion") != "true" {
			t.Fatalf("update: %s", out)
		}
		if j := okJSON(t, "jobs", "update", weekly, "--description", "every hour", "--header", "X-Only=1"); j["description"] != "every hour" ||
			len(j["headers"].(map[string]any)) != 1 || j["manualCompletion"] != true {
			t.Fatalf("update --json: %v", j)
		}
		has(t, fails(t, 2, "jobs", "update", weekly), "nothing to change")
		has(t, fails(t, 1, "jobs", "update", weekly, "--method", "BREW"), "field:   method (set by --method)")
		has(t, fails(t, 1, "jobs", "update", weekly, "--backoff", "sideways"), "(set by --backoff)")

		has(t, ok(t, "jobs", "pause", weekly), "paused")
		if j := okJSON(t, "jobs", "pause", weekly); j["status"] != "paused" {
			t.Fatalf("pause --json: %v", j)
		}
		has(t, ok(t, "jobs", "list", "--status", "paused"), weekly)
		has(t, ok(t, "jobs", "resume", weekly), "active")
		if j := okJSON(t, "jobs", "resume", weekly); j["status"] != "active" {
			t.Fatalf("resume --json: %v", j)
		}
		has(t, ok(t, "jobs", "archive", hourly), "archived")
		if j := okJSON(t, "jobs", "cancel", hourly); j["status"] != "cancelled" {
			t.Fatalf("cancel --json: %v", j)
		}
		has(t, ok(t, "jobs", "cancel", hourly), "cancelled")
		has(t, fails(t, 1, "jobs", "resume", hourly), "conflict (HTTP 409)", "field:   status")
	})

	var occ1, occ2 string
	t.Run("occurrences", func(t *testing.T) {
		out := ok(t, "jobs", "trigger", weekly)
		occ1 = value(t, out, "id")
		has(t, out, "manual:", "true", "DESTINATION", "callback")
		o := okJSON(t, "jobs", "trigger", weekly)
		occ2 = o["id"].(string)
		if o["manual"] != true || len(o["deliveries"].([]any)) != 1 {
			t.Fatalf("trigger --json: %v", o)
		}
		wait(t, "the callback", func() bool {
			o, err := api.GetOccurrence(ctx, occ1)
			return err == nil && len(o.Deliveries) == 1 && o.Deliveries[0].Status == client.DeliverySucceeded
		})
		has(t, ok(t, "occurrences", "list", weekly), "SCHEDULED FOR", occ1, occ2)
		if l := okJSON(t, "occurrences", "list", weekly, "--limit", "1"); len(l["items"].([]any)) != 1 || l["nextCursor"] == nil {
			t.Fatalf("list --json: %v", l)
		}
		has(t, ok(t, "occurrences", "get", occ1), "number:", "succeeded")
		has(t, ok(t, "occurrences", "complete", occ1), "completed")
		if s := okJSON(t, "occurrences", "skip", occ2); s["status"] != "skipped" {
			t.Fatalf("skip --json: %v", s)
		}
		if l := okJSON(t, "occurrences", "list", weekly, "--status", "skipped"); len(l["items"].([]any)) != 1 {
			t.Fatalf("list --status: %v", l)
		}
		has(t, fails(t, 1, "occurrences", "complete", occ2), "conflict (HTTP 409)")
		if g := okJSON(t, "occurrences", "get", occ1); g["status"] != "completed" {
			t.Fatalf("get --json: %v", g)
		}
	})

	var failing, good string
	t.Run("endpoints", func(t *testing.T) {
		out := ok(t, "endpoints", "create", "--url", hook.URL+"/fail", "--event-types", "invoice.*", "--max-attempts", "1",
			"--description", "always fails")
		failing = value(t, out, "id")
		has(t, out, "invoice.*", "always fails", "1 attempts", "secret:", "whsec_", "shown once")
		ep := okJSON(t, "endpoints", "create", "--url", hook.URL+"/ok", "--event-types", "order.*,invoice.sent", "--disabled")
		good = ep["id"].(string)
		if !strings.HasPrefix(ep["secret"].(string), "whsec_") || ep["enabled"] != false {
			t.Fatalf("create --json: %v", ep)
		}
		has(t, fails(t, 2, "endpoints", "create", "--url", hook.URL), "--event-types is required")
		has(t, fails(t, 1, "endpoints", "create", "--url", "ftp://x", "--event-types", "a"), "field:   url (set by --url)")
		has(t, ok(t, "endpoints", "list"), "EVENT TYPES", failing, good, "order.*,invoice.sent")
		if l := okJSON(t, "endpoints", "list"); len(l["items"].([]any)) != 2 {
			t.Fatalf("list --json: %v", l)
		}
		has(t, ok(t, "endpoints", "get", failing), "always fails")
		if g := okJSON(t, "endpoints", "get", good); g["url"] != hook.URL+"/ok" {
			t.Fatalf("get --json: %v", g)
		}
		out = ok(t, "endpoints", "update", failing, "--description", "fails", "--attempt-timeout", "5s")
		if value(t, out, "description") != "fails" || value(t, out, "attempt timeout") != "5s" {
			t.Fatalf("update: %s", out)
		}
		if u := okJSON(t, "endpoints", "update", good, "--enabled"); u["enabled"] != true {
			t.Fatalf("update --json: %v", u)
		}
		has(t, fails(t, 2, "endpoints", "update", good), "nothing to change")
		out = ok(t, "endpoints", "rotate-secret", failing, "--grace", "1h")
		if !strings.HasPrefix(value(t, out, "secret"), "whsec_") || value(t, out, "previous secret until") == "-" {
			t.Fatalf("rotate: %s", out)
		}
		if r := okJSON(t, "endpoints", "rotate-secret", good); r["previousSecretExpiresAt"] != nil || r["secret"] == "" {
			t.Fatalf("rotate --json: %v", r)
		}
		out = ok(t, "endpoints", "test", failing)
		has(t, out, "ATTEMPT", "500", "receiver says no")
		if d := okJSON(t, "endpoints", "test", good); d["status"] != "succeeded" || len(d["attemptHistory"].([]any)) != 1 {
			t.Fatalf("test --json: %v", d)
		}
		has(t, ok(t, "endpoints", "disable", good), "enabled:", "false", "disabled through the API")
		if d := okJSON(t, "endpoints", "disable", failing); d["enabled"] != false {
			t.Fatalf("disable --json: %v", d)
		}
		has(t, ok(t, "endpoints", "enable", failing), "enabled:", "true")
		if e := okJSON(t, "endpoints", "enable", good, "--release-held"); e["enabled"] != true || e["released"] != float64(0) {
			t.Fatalf("enable --json: %v", e)
		}
	})

	var dead string
	t.Run("events and deliveries", func(t *testing.T) {
		ev := okJSON(t, "events", "publish", "--type", "invoice.paid", "--data", `{"id":"inv_1"}`, "--idempotency-key", "k1")
		evID := ev["id"].(string)
		wait(t, "a dead letter", func() bool {
			d, err := api.GetEvent(ctx, evID)
			if err == nil && len(d.Deliveries) == 1 && d.Deliveries[0].Status == client.DeliveryDeadLetter {
				dead = d.Deliveries[0].ID
				return true
			}
			return false
		})
		out := ok(t, "events", "get", evID)
		has(t, out, "invoice.paid", `{"id":"inv_1"}`, "k1", dead, "dead_letter")
		later := ok(t, "events", "publish", "--type", "order.placed", "--at-time", "2030-01-01T00:00:00Z")
		has(t, later, "order.placed", "2030-01-01T00:00:00Z", "scheduled")
		has(t, fails(t, 2, "events", "publish", "--data", "{}"), "--type is required")
		has(t, fails(t, 1, "events", "publish", "--type", "Not A Type"), "field:   type (set by --type)")

		has(t, ok(t, "deliveries", "list", "--status", "dead_letter"), dead, "1/1", "500")
		if l := okJSON(t, "deliveries", "list", "--endpoint", failing, "--status", "dead_letter"); len(l["items"].([]any)) < 1 {
			t.Fatalf("list --json: %v", l)
		}
		if l := okJSON(t, "deliveries", "list", "--job", weekly, "--from", "2020-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z"); len(l["items"].([]any)) != 2 {
			t.Fatalf("list --job: %v", l)
		}
		out = ok(t, "deliveries", "get", dead)
		has(t, out, "status:", "dead_letter", "ATTEMPT", "receiver says no")
		if g := okJSON(t, "deliveries", "get", dead); g["id"] != dead || len(g["attemptHistory"].([]any)) != 1 {
			t.Fatalf("get --json: %v", g)
		}
		has(t, ok(t, "deliveries", "retry", dead), dead)
		wait(t, "the retry to fail again", func() bool {
			d, err := api.GetDelivery(ctx, dead)
			return err == nil && d.Status == client.DeliveryDeadLetter && d.Attempts == 2
		})
		if r := okJSON(t, "deliveries", "retry", dead); r["id"] != dead {
			t.Fatalf("retry --json: %v", r)
		}
		wait(t, "the second retry to fail", func() bool {
			d, err := api.GetDelivery(ctx, dead)
			return err == nil && d.Status == client.DeliveryDeadLetter && d.Attempts == 3
		})
		// Two dead letters to that endpoint: the event's and the test call's.
		has(t, ok(t, "deliveries", "replay", "--endpoint", failing, "--max", "10"), "re-queued 2 dead letters", dead)
		wait(t, "the replay to fail", func() bool {
			d, err := api.GetDelivery(ctx, dead)
			return err == nil && d.Status == client.DeliveryDeadLetter && d.Attempts == 4
		})
		if r := okJSON(t, "deliveries", "replay", "--job", "job_none"); r["requeued"] != float64(0) {
			t.Fatalf("replay --json: %v", r)
		}
		has(t, fails(t, 1, "deliveries", "replay", "--max", "5000"), "field:   limit (set by --max)")

		// Held while disabled: cancel them.
		ok(t, "endpoints", "disable", failing)
		var held []string
		for range 2 {
			e, err := api.PublishEvent(ctx, client.EventRequest{Type: "invoice.sent"})
			if err != nil {
				t.Fatal(err)
			}
			wait(t, "a held delivery", func() bool {
				d, err := api.GetEvent(ctx, e.ID)
				for _, dl := range deliveriesOf(d, err) {
					if dl.Status == client.DeliveryHeld && dl.Destination == failing {
						held = append(held, dl.ID)
						return true
					}
				}
				return false
			})
		}
		has(t, ok(t, "deliveries", "cancel", held[0]), "cancelled")
		if c := okJSON(t, "deliveries", "cancel", held[1]); c["status"] != "cancelled" {
			t.Fatalf("cancel --json: %v", c)
		}
		has(t, fails(t, 1, "deliveries", "cancel", held[1]), "conflict (HTTP 409)")
	})

	t.Run("endpoints delete", func(t *testing.T) {
		has(t, ok(t, "endpoints", "delete", failing), "deleted endpoint "+failing)
		if d := okJSON(t, "endpoints", "delete", good); d["deleted"] != true || d["id"] != good {
			t.Fatalf("delete --json: %v", d)
		}
		has(t, fails(t, 1, "endpoints", "get", good), "not_found")
	})

	t.Run("cluster", func(t *testing.T) {
		out := ok(t, "cluster", "status")
		has(t, out, "leader:", "n1", "RAFT", "alive")
		if s := okJSON(t, "cluster", "status"); s["nodeId"] != "n1" {
			t.Fatalf("status --json: %v", s)
		}
		// One node: nobody to hand leadership to, no such peer.
		has(t, fails(t, 1, "cluster", "transfer-leadership"), "conflict (HTTP 409)", "no other voter")
		has(t, fails(t, 1, "cluster", "transfer-leadership", "--to", "n7"), "not_found (HTTP 404)", "field:   to (set by --to)")
		has(t, fails(t, 1, "cluster", "remove-peer", "n9"), "not_found (HTTP 404)")
		has(t, ok(t, "cluster", "health"), "n1 is up")
		has(t, ok(t, "cluster", "health", "--ready"), "n1 is ready")
		// A node that is up but not ready: exit 1 with its reason.
		notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Path == "/v1/ready" {
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte(`{"error":{"code":"not_ready","message":"no leader known"}}`))
				return
			}
			w.Write([]byte(`{"status":"ok","nodeId":"n5"}`))
		}))
		defer notReady.Close()
		has(t, ok(t, "cluster", "health", "--addr", notReady.URL), "n5 is up")
		has(t, fails(t, 1, "cluster", "health", "--ready", "--addr", notReady.URL), "not_ready", "no leader known")
	})

	t.Run("snapshot", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "chime.snap")
		has(t, ok(t, "snapshot", "save", file), "saved snapshot to "+file)
		snap, err := os.ReadFile(file)
		if err != nil || !bytes.HasPrefix(snap, []byte("CHIMESNP")) {
			t.Fatalf("snapshot file: %d bytes, %v", len(snap), err)
		}
		if s := okJSON(t, "snapshot", "save", filepath.Join(dir, "second.snap")); s["bytes"].(float64) < 8 {
			t.Fatalf("save --json: %v", s)
		}
		if out := ok(t, "snapshot", "save", "-"); !strings.HasPrefix(out, "CHIMESNP") {
			t.Fatalf("save to stdout: %.20q", out)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 2 {
			t.Fatalf("a partial file was left behind: %v", entries)
		}
		ok(t, "projects", "create", "after-snapshot")
		has(t, fails(t, 2, "snapshot", "restore", file), "--yes")
		has(t, fails(t, 2, "snapshot", "restore", filepath.Join(dir, "missing.snap"), "--yes"), "does not exist")
		broken := filepath.Join(dir, "broken.snap")
		if err := os.WriteFile(broken, snap[:len(snap)-3], 0o600); err != nil {
			t.Fatal(err)
		}
		has(t, fails(t, 1, "snapshot", "restore", broken, "--yes"), "invalid_snapshot (HTTP 400)")
		has(t, ok(t, "snapshot", "restore", file, "--yes"), "restored "+file)
		has(t, fails(t, 1, "projects", "get", "after-snapshot"), "not_found")
		if r := okJSON(t, "snapshot", "restore", file, "--yes"); r["restored"] != true {
			t.Fatalf("restore --json: %v", r)
		}
		has(t, ok(t, "jobs", "get", weekly), "hourly report")
	})

	t.Run("project flag", func(t *testing.T) {
		j := okJSON(t, "jobs", "create", "--project", "billing", "--in", "1h", "--url", hook.URL+"/ok")
		if j["project"] != "billing" {
			t.Fatalf("--project ignored: %v", j)
		}
		has(t, fails(t, 1, "jobs", "get", j["id"].(string)), "not_found")
		t.Setenv("CHIME_PROJECT", "billing")
		has(t, ok(t, "jobs", "get", j["id"].(string)), "billing")
	})

	t.Run("project target ranges", func(t *testing.T) {
		has(t, ok(t, "projects", "get", "billing"), "the nodes' --allowed-target-cidrs")
		has(t, ok(t, "projects", "set-target-cidrs", "billing", "--cidrs", "10.20.3.0/24,10.20.4.9/24"), "10.20.3.0/24,10.20.4.0/24")
		if p := okJSON(t, "projects", "set-target-cidrs", "billing", "--cidrs", "none"); p["allowedTargetCidrs"] == nil {
			t.Fatalf("none: %v, want []", p)
		}
		has(t, ok(t, "projects", "set-target-cidrs", "billing", "--cidrs", "inherit"), "the nodes' --allowed-target-cidrs")
		has(t, fails(t, 1, "projects", "set-target-cidrs", "billing", "--cidrs", "10.20.3.0"), "--cidrs")
		has(t, fails(t, 2, "projects", "set-target-cidrs", "billing"), "--cidrs is required")
	})
}

func deliveriesOf(d *client.EventDetail, err error) []client.Delivery {
	if err != nil {
		return nil
	}
	return d.Deliveries
}

// TestUsageAndDocsListEveryCommand keeps `chime --help` and docs/cli.md in
// step with the registered commands.
func TestUsageAndDocsListEveryCommand(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	for g, cmds := range groups {
		var listed []string
		for _, line := range strings.Split(usage, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "chime" && f[1] == g {
				listed = strings.Split(f[2], "|")
			}
		}
		for _, c := range cmds {
			if !slices.Contains(listed, c.name) {
				t.Errorf("chime --help does not list chime %s %s", g, c.name)
			}
			if !bytes.Contains(doc, []byte("chime "+g+" "+c.name)) {
				t.Errorf("docs/cli.md has no example of chime %s %s", g, c.name)
			}
		}
	}
}

// Every command the usage lists is one run dispatches: "chime limits" was
// listed and tested through runGroup, yet answered "unknown command".
func TestUsageCommandsAreDispatched(t *testing.T) {
	for _, line := range strings.Split(usage, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "chime" || strings.HasPrefix(f[1], "-") || f[1] == "agent" {
			continue
		}
		if code := run([]string{f[1], "--help"}); code != 0 {
			t.Errorf("chime %s --help exits %d: the usage lists a command run does not dispatch", f[1], code)
		}
	}
}
