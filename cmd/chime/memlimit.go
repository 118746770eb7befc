package main

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// The agent runs with GOGC 400 (agent.go), so its heap may grow to five
// times the live data between collections. Finished history is held in
// memory (the FSM's archive), so the live data can be gigabytes; in a
// container with a memory limit that growth would get the process killed
// rather than collected. Unless GOMEMLIMIT is set, the agent therefore sets
// Go's soft memory limit to 90 % of its cgroup's limit: the collector runs
// more often near it, and not at all more often below it.

// memoryLimitShare is the part of the cgroup limit given to Go's heap; the
// rest is for stacks, buffers outside the heap and the kernel's page cache
// of the Raft log.
const memoryLimitShare = 0.9

func applyMemoryLimit(logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, ok := cgroupMemoryLimit("/")
	if !ok {
		return
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	logger.Info("memory limit from the cgroup", "cgroup_limit_bytes", limit, "go_memory_limit_bytes", soft)
}

// cgroupMemoryLimit returns the memory limit of this process's cgroup (v2,
// or v1's memory controller), reading files under root; ok is false when
// there is none or it cannot be read.
func cgroupMemoryLimit(root string) (int64, bool) {
	self, _ := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		// "0::/path" (v2) or "N:controllers:/path" (v1).
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			if n, ok := readLimit(filepath.Join(root, "sys/fs/cgroup", parts[2], "memory.max")); ok {
				return n, true
			}
		case hasController(parts[1], "memory"):
			if n, ok := readLimit(filepath.Join(root, "sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes")); ok {
				return n, true
			}
		}
	}
	// In a container the cgroup namespace often shows the root only.
	for _, p := range []string{"sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if n, ok := readLimit(filepath.Join(root, p)); ok {
			return n, true
		}
	}
	return 0, false
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads a limit file: "max" (v2) or a huge number (v1's way of
// saying none) is no limit.
func readLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(s, 10, 64)
	if s == "max" || err != nil || n <= 0 || n >= 1<<60 {
		return 0, false
	}
	return n, true
}
