// Package e2e holds Chime's real-process end-to-end tests: TestMain builds
// the chime binary once, and each test starts its own cluster of `chime
// agent` processes on free loopback ports with their own data dirs, injects
// faults (SIGKILL, SIGTERM, restarts, a node with the wrong cluster key) and
// checks invariants over the public HTTP API: nothing acknowledged is lost,
// every node converges, the cluster keeps a single agreed leader.
//
// The package has no non-test code besides this file. The tests are skipped
// under -short; `make e2e` runs only them. Every test bounds its own time
// and kills every process it started, and prints the tail of each node's log
// when it fails.
package e2e
