//go:build !chime_next

package fsm

// ext is empty in the default build: see extensions.
var ext extensions
