package main

import (
	"fmt"
	"io"

	"github.com/chime-sched/chime/cluster"
)

// runKeygen prints a fresh cluster key: 32 random bytes, base64, like
// `consul keygen`. Give the same string to every node (--cluster-key or
// CHIME_CLUSTER_KEY).
func runKeygen(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if args[0] == "--help" || args[0] == "-h" {
			fmt.Fprintln(stdout, "usage: chime keygen\n\nPrints a new random cluster key (32 bytes, base64) for --cluster-key / CHIME_CLUSTER_KEY.\nGive the same key to every node of the cluster.")
			return 0
		}
		fmt.Fprintf(stderr, "chime keygen: takes no arguments (got %q)\n", args[0])
		return 2
	}
	k, err := cluster.KeyGen()
	if err != nil {
		fmt.Fprintln(stderr, "chime keygen:", err)
		return 1
	}
	fmt.Fprintln(stdout, k)
	return 0
}
