//go:build !(linux || darwin || freebsd)

package cluster

import "errors"

// statfsFree is unknown here: the disk guard never refuses writes.
func statfsFree(string) (uint64, error) {
	return 0, errors.New("free space unknown on this platform")
}
