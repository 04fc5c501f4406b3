package redistest

import "syscall"

// procAttr makes the kernel kill a server when the test binary that started
// it dies, so that a test that panics or times out leaves no server behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
