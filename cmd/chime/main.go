// Command chime is the Chime agent (a cluster node) and its command-line client.
package main

import (
	"fmt"
	"os"

	_ "time/tzdata" // every node evaluates schedules with the same tz database
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `chime: a clustered scheduler for HTTP callbacks and webhooks

Usage:
  chime agent [flags]       run a cluster node (chime agent --help for flags)
  chime schedule preview    print the next fires of a schedule, computed offline
  chime keygen              print a new random cluster key (for --cluster-key)
  chime version             print the version

Client commands (chime <group> --help lists a group's commands):
  chime jobs          create|list|get|update|pause|resume|archive|cancel|trigger
  chime occurrences   list|get|complete|skip
  chime endpoints     create|list|get|update|delete|rotate-secret|test|enable|disable
  chime events        publish|get
  chime deliveries    list|get|retry|cancel|replay
  chime tokens        create|list|revoke
  chime projects      create|list|get|delete|set-target-cidrs
  chime limits        show|get|set|set-project|reset
  chime cluster       status|transfer-leadership|remove-peer|health
  chime snapshot      save|restore

The client commands reach a node at --addr (CHIME_ADDR, default
http://127.0.0.1:8700) with --token (CHIME_TOKEN), act in --project
(CHIME_PROJECT), print tables, or the API's JSON with --json.
Every agent flag also reads CHIME_<FLAG> from the environment
(CHIME_HTTP_ADDR, ...) and a YAML file given with --config.
docs/cli.md has an example of every command.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "agent":
		return runAgent(args[1:])
	case "schedule":
		return runSchedule(args[1:], os.Stdout, os.Stderr)
	case "jobs", "occurrences", "endpoints", "events", "deliveries", "tokens", "projects", "cluster", "snapshot", "limits":
		return runGroup(args[0], args[1:], os.Stdout, os.Stderr)
	case "keygen":
		return runKeygen(args[1:], os.Stdout, os.Stderr)
	case "version", "--version", "-v":
		fmt.Println("chime", version)
		return 0
	case "help", "--help", "-h":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "chime: unknown command %q\n\n%s", args[0], usage)
	return 2
}
