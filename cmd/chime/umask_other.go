//go:build !unix

package main

// restrictFileModes: there is no umask here; the agent relies on the
// permissions of the data dir (made 0700).
func restrictFileModes() int { return 0 }
