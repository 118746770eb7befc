//go:build unix

package cluster

import "golang.org/x/sys/unix"

// freeSpace is the space available to this (unprivileged) process on dir's
// file system: what a write may still use.
func freeSpace(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
