//go:build !unix

package redistest

import (
	"errors"
	"os"
)

// Stand-ins where there are no POSIX signals: Freeze and Thaw fail, and Stop
// kills the process.
var (
	sigStop os.Signal = stopSignal{}
	sigCont os.Signal = contSignal{}
	sigTerm os.Signal = os.Kill
)

type stopSignal struct{}

func (stopSignal) String() string { return "SIGSTOP" }
func (stopSignal) Signal()        {}

type contSignal struct{}

func (contSignal) String() string { return "SIGCONT" }
func (contSignal) Signal()        {}

func signal(p *os.Process, sig os.Signal) error {
	switch sig.(type) {
	case stopSignal:
		return errors.New("redistest: freezing a server needs POSIX signals")
	case contSignal:
		return nil
	}
	return p.Signal(sig)
}
