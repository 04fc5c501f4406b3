package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// slowProxy is a loopback TCP proxy that delays every reply: bytes from the
// client go to the upstream at once, and each chunk the upstream sends back
// reaches the client delay after it arrived. Chunks are delayed
// independently, so pipelined replies overlap instead of queueing behind
// each other: the proxy adds latency, not a throughput limit.
//
// It owns an accept goroutine and three per connection; Close ends them all
// and waits for them.
type slowProxy struct {
	Addr     string
	upstream string
	delay    time.Duration
	ln       net.Listener
	bufs     sync.Pool // *[]byte of proxyChunkSize
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// proxyChunkSize is the size of one read from the upstream.
const proxyChunkSize = 16 << 10

// delayedChunk is a chunk of reply bytes and when to pass it on.
type delayedChunk struct {
	buf *[]byte
	n   int
	due time.Time
}

// startSlowProxy listens on a free loopback port and forwards every
// connection to upstream, each reply delayed by delay.
func startSlowProxy(upstream string, delay time.Duration) (*slowProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: proxy: %w", err)
	}
	p := &slowProxy{Addr: ln.Addr().String(), upstream: upstream, delay: delay, ln: ln, conns: make(map[net.Conn]struct{})}
	p.bufs.New = func() any {
		b := make([]byte, proxyChunkSize)
		return &b
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *slowProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, u) {
			return
		}
		p.wg.Add(1)
		go p.serve(c, u)
	}
}

// track registers the pair, or closes it and reports false after Close.
func (p *slowProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *slowProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
		c.Close()
	}
}

// serve relays one connection until either side closes it.
func (p *slowProxy) serve(client, upstream net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client, upstream)
	chunks := make(chan delayedChunk, 1024)
	var relays sync.WaitGroup
	relays.Add(3)
	go func() { // requests: straight through
		defer relays.Done()
		_, _ = io.Copy(upstream, client)
		upstream.Close()
		client.Close()
	}()
	go func() { // replies: stamped on arrival
		defer relays.Done()
		defer close(chunks)
		for {
			buf := p.bufs.Get().(*[]byte)
			n, err := upstream.Read(*buf)
			if n > 0 {
				chunks <- delayedChunk{buf: buf, n: n, due: time.Now().Add(p.delay)}
			} else {
				p.bufs.Put(buf)
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // replies: passed on when due
		defer relays.Done()
		failed := false
		for c := range chunks {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if !failed {
				if _, err := client.Write((*c.buf)[:c.n]); err != nil {
					failed = true // keep draining so that the reader can end
					client.Close()
					upstream.Close()
				}
			}
			p.bufs.Put(c.buf)
		}
		client.Close() // the upstream has gone: ends the request relay too
	}()
	relays.Wait()
}

// Close stops accepting, closes every connection and waits for every
// goroutine of the proxy to return.
func (p *slowProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("bench: proxy: close: %w", err)
	}
	return nil
}
