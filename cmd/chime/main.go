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
  chime version             print the version

Every flag also reads CHIME_<FLAG> from the environment (CHIME_HTTP_ADDR, ...)
and, for the agent, a YAML file given with --config.
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
