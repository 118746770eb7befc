package main

import (
	"testing"

	"github.com/chime-sched/chime/chimetest"
)

// testRootToken is the admin token of the test node (CHIME_ROOT_TOKEN).
const testRootToken = "chime_cli-test-root-0123456789abcd"

// startNode runs the in-process test node and returns its API's base URL.
func startNode(t *testing.T) string { return chimetest.StartNode(t, testRootToken) }
