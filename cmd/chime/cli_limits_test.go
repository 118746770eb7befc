package main

import (
	"testing"
)

func TestCLILimits(t *testing.T) {
	addr := startNode(t)
	t.Setenv("CHIME_ADDR", addr)
	t.Setenv("CHIME_TOKEN", testRootToken)
	t.Setenv("CHIME_PROJECT", "")

	has(t, ok(t, "limits", "show"), "maxJobs", "10000", "minIntervalSeconds")
	has(t, fails(t, 2, "limits", "set"), "at least one limit")
	has(t, ok(t, "limits", "set", "--max-endpoints", "0"), "maxEndpoints")
	if v := okJSON(t, "limits", "show")["limits"].(map[string]any)["maxEndpoints"]; v != float64(0) {
		t.Fatalf("maxEndpoints after --max-endpoints 0: %v", v)
	}
	out := ok(t, "limits", "set-project", "default", "--max-jobs", "1")
	has(t, out, "maxJobs", "project", "usage:")
	ok(t, "jobs", "create", "--in", "1h", "--url", "https://example.com/cb")
	has(t, fails(t, 1, "jobs", "create", "--in", "1h", "--url", "https://example.com/cb"),
		"quota_exceeded (HTTP 429)", "maxJobs", "chime limits get")
	has(t, ok(t, "limits", "get", "default"), "jobs 1")
	has(t, ok(t, "limits", "set-project", "default", "--unset", "maxJobs"), "10000")
	has(t, ok(t, "limits", "reset", "default"), "inherits every cluster-wide limit")
	has(t, fails(t, 1, "limits", "set-project", "default", "--max-jobs", "-2"), "maxJobs", "--max-jobs")
}
