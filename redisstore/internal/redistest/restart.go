package redistest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// restartTimeout bounds how long Restart keeps trying to bind the port
// again.
const restartTimeout = 10 * time.Second

// Kill kills the server's process with SIGKILL, as a crash would, and waits
// for it to exit: its clients see their connections reset, and the data is
// gone (persistence is off). Restart starts it again on the same port.
// Kill, Restart and the other methods must not be called concurrently.
func (s *Server) Kill() error {
	_ = signal(s.cmd.Process, sigCont) // SIGKILL works on a frozen process, but be plain
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing redis-server on %s: %w", s.Addr, err)
	}
	<-s.exited
	return nil
}

// Restart starts a killed server again, empty, on the same port and with
// the default arguments (a server RunServer started with extra ones comes
// back without them), and returns once it answers PING. It retries while
// the port is still taken, for up to 10 s. Stop stops the new process.
func (s *Server) Restart() error {
	select {
	case <-s.exited:
	default:
		return fmt.Errorf("restarting redis-server on %s: it is still running; Kill it first", s.Addr)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not in PATH: %s", installHint)
	}
	deadline := time.Now().Add(restartTimeout)
	for {
		n, err := launch(bin, s.Port, nil)
		if err == nil {
			_ = os.RemoveAll(s.dir)
			s.dir, s.cmd, s.exited = n.dir, n.cmd, n.exited
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restarting redis-server on %s: %w", s.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
