package redistest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyDialTimeout bounds how long the proxy waits to connect to its
// target for each client connection.
const proxyDialTimeout = 2 * time.Second

// Faults are the network faults a Proxy injects. The zero value injects
// none: the proxy forwards bytes as they come.
type Faults struct {
	// Latency delays each chunk of the server's replies by this much
	// before the proxy forwards it. Zero: none.
	Latency time.Duration
	// CutReplies is the fraction, in [0, 1], of reply chunks that are cut:
	// the first half of the chunk is forwarded, then both connections are
	// closed, so that the client reads a reply that stops in the middle.
	CutReplies float64
	// ResetRequests is the fraction, in [0, 1], of request chunks that are
	// answered with a TCP reset of the client's connection (SO_LINGER 0)
	// instead of being forwarded; the server's connection is closed too.
	ResetRequests float64
}

// ProxyStats counts what a Proxy did.
type ProxyStats struct {
	// Accepted counts the client connections accepted.
	Accepted uint64
	// Cut counts the replies cut in the middle.
	Cut uint64
	// Reset counts the client connections reset.
	Reset uint64
	// Open is the number of client connections open now.
	Open int
}

// Proxy is a TCP proxy on a loopback port in front of a server, which
// injects the Faults it is given into the connections that go through it:
// added latency, replies cut in the middle, connections reset. It owns one
// goroutine that accepts connections and two for each connection; Close
// ends them all and waits for them.
type Proxy struct {
	// Addr is the address clients connect to: 127.0.0.1:port.
	Addr string

	target string
	ln     net.Listener
	wg     sync.WaitGroup
	done   chan struct{} // closed by Close

	faults atomic.Pointer[Faults]

	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	closed bool

	accepted, cut, reset atomic.Uint64
}

// proxyConn is one client connection and the proxy's connection to the
// target for it.
type proxyConn struct {
	client, server net.Conn
	once           sync.Once
}

// close closes both connections; with reset, the client's with a TCP reset.
func (c *proxyConn) close(reset bool) {
	c.once.Do(func() {
		if reset {
			if tc, ok := c.client.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
		}
		_ = c.client.Close()
		_ = c.server.Close()
	})
}

// StartProxy starts a Proxy in front of target (host:port) and closes it
// when tb ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p, err := NewProxy(target)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("redistest: %v", err)
		}
	})
	return p
}

// NewProxy starts a Proxy on a free loopback port in front of target
// (host:port), injecting no fault until SetFaults. The caller must Close
// it.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: listening: %w", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, done: make(chan struct{}), conns: map[*proxyConn]struct{}{}}
	p.faults.Store(&Faults{})
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// SetFaults makes the proxy inject f from now on, on the connections open
// and on new ones.
func (p *Proxy) SetFaults(f Faults) { p.faults.Store(&f) }

// Heal stops injecting faults: SetFaults(Faults{}).
func (p *Proxy) Heal() { p.SetFaults(Faults{}) }

// Stats returns what the proxy has done so far.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	open := len(p.conns)
	p.mu.Unlock()
	return ProxyStats{Accepted: p.accepted.Load(), Cut: p.cut.Load(), Reset: p.reset.Load(), Open: open}
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to return. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	close(p.done)
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range conns {
		c.close(false)
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("proxy: closing the listener: %w", err)
	}
	return nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.accepted.Add(1)
		server, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.close(false)
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.requests(c)
		go p.replies(c)
	}
}

// forget removes c from the open connections and closes it.
func (p *Proxy) forget(c *proxyConn, reset bool) {
	c.close(reset)
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// requests forwards what the client sends to the server, resetting the
// client's connection instead when the faults say so.
func (p *Proxy) requests(c *proxyConn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			if f := p.faults.Load(); f.ResetRequests > 0 && rand.Float64() < f.ResetRequests {
				p.reset.Add(1)
				p.forget(c, true)
				return
			}
			if _, werr := c.server.Write(buf[:n]); werr != nil {
				p.forget(c, false)
				return
			}
		}
		if err != nil {
			p.forget(c, false)
			return
		}
	}
}

// replies forwards what the server sends to the client, late or cut when
// the faults say so.
func (p *Proxy) replies(c *proxyConn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.server.Read(buf)
		if n > 0 {
			f := p.faults.Load()
			if f.Latency > 0 && !p.sleep(f.Latency) {
				p.forget(c, false)
				return
			}
			chunk := buf[:n]
			cut := f.CutReplies > 0 && rand.Float64() < f.CutReplies
			if cut {
				chunk = chunk[:n/2]
			}
			if _, werr := c.client.Write(chunk); werr != nil || cut {
				if cut {
					p.cut.Add(1)
				}
				p.forget(c, false)
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.forget(c, true) // pass a failure on as one
				return
			}
			p.forget(c, false)
			return
		}
	}
}

// sleep waits d, or until the proxy is closed, when it returns false.
func (p *Proxy) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}
