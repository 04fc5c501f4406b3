//go:build unix

package redistest

import (
	"os"
	"syscall"
)

var (
	sigStop os.Signal = syscall.SIGSTOP
	sigCont os.Signal = syscall.SIGCONT
	sigTerm os.Signal = syscall.SIGTERM
)

func signal(p *os.Process, sig os.Signal) error { return p.Signal(sig) }
