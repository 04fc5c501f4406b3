// Package track counts the background work a cache has under way, so that
// Close can wait for it.
package track

import (
	"context"
	"sync"
)

// Group counts work under way. The zero value is ready to use.
type Group struct {
	mu       sync.Mutex
	n        int
	finished bool          // Close has returned: no more work is taken
	idle     chan struct{} // made by a waiter; closed when n reaches zero
}

// Add counts one more piece of work and reports whether it may start: once
// Close has returned, it may not. Every Add that returned true needs a Done.
func (g *Group) Add() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.finished {
		return false
	}
	g.n++
	return true
}

// Done counts one piece of work as over.
func (g *Group) Done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// Running returns the number of pieces of work under way.
func (g *Group) Running() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// Close waits until no work is under way, or until ctx ends, in which case
// it returns ctx's error. Work already under way may still Add follow-up
// work while Close waits; once Close returns, Add refuses. Close may be
// called again.
func (g *Group) Close(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.n == 0 { // checked under the lock: work added as n reached zero is waited for too
			g.finished = true
			g.mu.Unlock()
			return nil
		}
		if g.idle == nil {
			g.idle = make(chan struct{})
		}
		idle := g.idle
		g.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			g.mu.Lock()
			g.finished = true
			g.mu.Unlock()
			return ctx.Err()
		}
	}
}
