package e2e

import "syscall"

// sysProcAttr makes the kernel SIGKILL an agent when the thread that started
// it dies, so a crashed or timed-out test binary leaves no agents behind. The
// spawner goroutine keeps that thread alive for the life of the test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
