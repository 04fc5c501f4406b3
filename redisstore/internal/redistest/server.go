package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// startTimeout bounds how long RunServer waits for a server to answer
// PING.
const startTimeout = 15 * time.Second

// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
const stopTimeout = 10 * time.Second

// Server is a redis-server process started by RunServer.
type Server struct {
	// Addr is the server's address, 127.0.0.1:port.
	Addr string
	// Port is the server's port.
	Port int

	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's error, set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// RunServer starts a redis-server on a free loopback port, with
// persistence off and a temporary directory of its own, and returns once it
// answers PING. extra arguments are appended to its command line (say
// "--cluster-enabled", "yes"). A port taken between choosing and binding is
// retried with another. The caller must Stop it.
func RunServer(extra ...string) (*Server, error) {
	return startServer(false, extra)
}

func startServer(clusterBus bool, extra []string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not in PATH: %s", installHint)
	}
	var lastErr error
	for range 5 {
		port, err := freePort(clusterBus)
		if err != nil {
			return nil, err
		}
		s, err := launch(bin, port, extra)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// launch starts one redis-server on port and waits until it answers PING.
func launch(bin string, port int, extra []string) (*Server, error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	args := append([]string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile // an *os.File: no copying goroutine
	cmd.Stderr = logFile
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		reply, err := Do(s.Addr, time.Second, "PING")
		if err == nil && reply == "PONG" {
			return s, nil
		}
		select {
		case <-s.exited:
			log := s.logTail()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server on port %d exited at start (%v): %s", port, s.err, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log := s.logTail()
			s.Stop()
			return nil, fmt.Errorf("redis-server on port %d did not answer PING within %v (last: %v): %s", port, startTimeout, err, log)
		}
	}
}

// Pid returns the process id of the server.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Freeze stops the server's process with SIGSTOP: it keeps its connections
// and the kernel keeps accepting new ones, but it answers nothing until
// Thaw. Stop thaws a frozen server first.
func (s *Server) Freeze() error { return signal(s.cmd.Process, sigStop) }

// Thaw resumes a frozen server with SIGCONT.
func (s *Server) Thaw() error { return signal(s.cmd.Process, sigCont) }

// Do sends one command to the server with Do and a 5-second timeout.
func (s *Server) Do(args ...string) (string, error) {
	return Do(s.Addr, 5*time.Second, args...)
}

// Stop stops the server (SIGCONT, SIGTERM, then SIGKILL if it has not
// exited within 10 s) and removes its directory. It is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		p := s.cmd.Process
		_ = signal(p, sigCont) // a frozen process acts on SIGTERM only once resumed
		_ = signal(p, sigTerm)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			_ = p.Kill()
			<-s.exited
			s.stopErr = fmt.Errorf("redis-server on %s did not exit within %v of SIGTERM; killed", s.Addr, stopTimeout)
		}
		if err := os.RemoveAll(s.dir); err != nil && s.stopErr == nil {
			s.stopErr = err
		}
	})
	return s.stopErr
}

// logTail returns the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	b = bytes.TrimSpace(b)
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	return string(b)
}

// freePort returns a loopback port nobody listens on; with clusterBus, also
// port+10000 (a cluster node's bus port) is free. The port is released
// before the server binds it, so a race with another process is possible:
// RunServer retries.
func freePort(clusterBus bool) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !clusterBus {
			l.Close()
			return port, nil
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		l.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, errors.New("finding a free port: none with a free cluster bus port (port+10000) in 50 tries")
}

// Do sends one command to the server at addr on a connection of its own,
// within timeout, and returns a simple string, bulk string or integer reply
// as a string (a nil reply as ""), an error reply as an error. Array replies
// are not supported. It is for setting up and checking servers, not for the
// code under test.
func Do(addr string, timeout time.Duration, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	var req strings.Builder
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		if n < 0 { // a nil reply
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}
