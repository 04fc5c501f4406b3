// Package readctx provides the context a read policy hands to the readers it
// runs concurrently.
//
// A Ctx carries the values and the deadline of a parent context (so readers
// see the caller's trace IDs and deadline), is cancelled by its owner, and
// either follows the parent's cancellation or is detached from it. A detached
// Ctx still ends at the parent's deadline: it enforces that deadline itself.
//
// A Ctx is meant to be embedded by value in the policy's per-read state, so
// that it costs no allocation of its own; the Done channel and any timer are
// only made when a reader asks for Done.
package readctx

import (
	"context"
	"sync"
	"time"
)

// Ctx is a context.Context owned by a read policy. Call Init before use; the
// zero value is not usable. A Ctx must not be copied after Init.
type Ctx struct {
	parent context.Context
	follow bool // the parent's cancellation propagates

	mu     sync.Mutex
	done   chan struct{} // made by Done; closed by Cancel
	err    error
	stop   func() bool  // removes the registration on the parent (follow)
	timer  *time.Timer  // enforces the parent's deadline (detached)
	afters []*afterFunc // registered through AfterFunc
}

type afterFunc struct{ f func() }

var _ context.Context = (*Ctx)(nil)

// Init sets the parent. With follow, cancelling the parent cancels c; without
// it, only Cancel and the parent's deadline end c.
func (c *Ctx) Init(parent context.Context, follow bool) {
	c.parent = parent
	c.follow = follow
}

// Deadline returns the parent's deadline.
func (c *Ctx) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// Value returns the parent's value for key, except for the context
// package's own key for finding a cancellable parent: a Ctx is cancelled on
// its own terms, so context.Cause of a Ctx, or of a context derived from
// one, must not report the parent's cause.
func (c *Ctx) Value(key any) any {
	if key == cancelCtxKey {
		return nil
	}
	return c.parent.Value(key)
}

// cancelCtxKey is the key the context package asks a context's Value for
// when it looks for a cancellable parent (context.Cause does, and so does
// deriving a context). It is unexported there, so it is learnt once by
// asking context.Cause about a probe; should the context package stop asking,
// it stays nil, which no real key equals.
var cancelCtxKey = func() any {
	var p causeProbe
	_ = context.Cause(&p)
	return p.key
}()

// causeProbe is an ended context that records the first key asked of it.
type causeProbe struct {
	context.Context
	key any
}

func (p *causeProbe) Err() error { return context.Canceled }

func (p *causeProbe) Value(key any) any {
	if p.key == nil {
		p.key = key
	}
	return nil
}

// Done returns a channel closed when c ends. The first call arms the
// propagation from the parent (follow) or the deadline timer (detached).
func (c *Ctx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	if c.err != nil {
		close(c.done)
		return c.done
	}
	if c.follow {
		if c.parent.Done() != nil {
			parent := c.parent
			c.stop = context.AfterFunc(parent, func() { c.Cancel(parent.Err()) })
		}
	} else if d, ok := c.parent.Deadline(); ok {
		c.timer = time.AfterFunc(time.Until(d), func() { c.Cancel(context.DeadlineExceeded) })
	}
	return c.done
}

// Err returns why c ended, or nil. It observes the parent's cancellation
// (follow) or deadline (detached) even before Done has been called.
func (c *Ctx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if c.follow {
		if perr := c.parent.Err(); perr != nil {
			return c.Cancel(perr)
		}
	} else if d, ok := c.parent.Deadline(); ok && !time.Now().Before(d) {
		return c.Cancel(context.DeadlineExceeded)
	}
	return nil
}

// Cancel ends c with err unless it has ended already, releases what c holds
// on the parent, and returns the error c ended with. err should be
// context.Canceled or context.DeadlineExceeded, the errors a Context's Err
// may return; nil means context.Canceled.
func (c *Ctx) Cancel(err error) error {
	if err == nil {
		err = context.Canceled
	}
	c.mu.Lock()
	if c.err != nil {
		err = c.err
		c.mu.Unlock()
		return err
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	stop, timer, afters := c.stop, c.timer, c.afters
	c.stop, c.timer, c.afters = nil, nil, nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	if timer != nil {
		timer.Stop()
	}
	for _, a := range afters {
		go a.f()
	}
	return err
}

// AfterFunc arranges for f to run in its own goroutine once c ends, as
// context.AfterFunc does. Contexts derived from c (context.WithTimeout, say)
// use it, so deriving from a Ctx starts no goroutine of its own.
func (c *Ctx) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.afters = append(c.afters, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.afters {
			if x == a {
				c.afters = append(c.afters[:i], c.afters[i+1:]...)
				return true
			}
		}
		return false
	}
}
