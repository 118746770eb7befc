//go:build !chime_next

package main

import (
	"log/slog"

	"github.com/chime-sched/chime/cluster"
)

// nextHooks adds nothing in the default build (see next.go).
func nextHooks(*cluster.Cluster, string, *slog.Logger) []cluster.LeaderHook { return nil }
