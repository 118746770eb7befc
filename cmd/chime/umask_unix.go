//go:build unix

package main

import "syscall"

// restrictFileModes sets the process umask to 077, so that every file and
// directory the agent creates is 0600/0700. hashicorp/raft makes its snapshot
// directories 0755 and files 0644, and other libraries may ask for more than
// the node needs; the data dir holds the cluster's state and key.
func restrictFileModes() int { return syscall.Umask(0o077) }
