package tiercache

import (
	"context"
	"errors"
	"time"

	"github.com/tiercache/tiercache/internal/breaker"
)

// BreakerOptions configures the circuit breaker in front of L2. The zero
// value turns it off.
//
// After Failures consecutive L2 failures (errors or timeouts; misses, bad
// entries (ErrBadEntry) and the caller's own cancellations do not count)
// the breaker opens: for CoolDown the cache does not call L2 at all. Reads
// go to L1 and the loader; the L2 writes of loaded values are skipped and
// counted; a Set writes L1 only, counts its L2 write as skipped and returns
// an error wrapping ErrBreakerOpen (the value is not in L2, so it is not
// acknowledged); a Delete clears L1 and returns an error wrapping
// ErrBreakerOpen, since L2 still holds the key. Then up to Probes
// operations are let through (while they all run, others are treated as
// while open); the first that succeeds closes the breaker, one that fails
// opens it for another CoolDown. A slow or dead Redis then costs the
// callers nothing beyond the first few timeouts, instead of an L2Timeout
// each.
type BreakerOptions struct {
	// Failures is the run of consecutive L2 failures that opens the
	// breaker. Zero: no breaker.
	Failures int
	// CoolDown is how long the breaker stays open before it lets probes
	// through. Zero: DefaultBreakerCoolDown.
	CoolDown time.Duration
	// Probes is how many operations the half-open breaker lets through at
	// once. Zero: 1.
	Probes int
}

// DefaultBreakerCoolDown is BreakerOptions.CoolDown when zero.
const DefaultBreakerCoolDown = time.Second

// ErrBreakerOpen is returned, wrapped, by a Set or Delete that could not
// reach L2 because the circuit breaker was open: the Set's value is in L1
// only, the Delete cleared L1 only.
var ErrBreakerOpen = errors.New("tiercache: L2 circuit breaker open")

// BreakerState is the state of the circuit breaker in front of L2.
type BreakerState uint8

const (
	// BreakerClosed: L2 is called. The state without a breaker too.
	BreakerClosed BreakerState = iota
	// BreakerOpen: L2 is not called until the cool-down has passed.
	BreakerOpen
	// BreakerHalfOpen: a few probe operations are let through.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string { return breaker.State(s).String() }

// BreakerStats is a snapshot of the circuit breaker.
type BreakerStats struct {
	// State is the breaker's state now.
	State BreakerState
	// Opens counts the times it opened.
	Opens uint64
	// Closes counts the times a probe closed it again.
	Closes uint64
	// Rejected counts the L2 operations it refused.
	Rejected uint64
	// WritesSkipped counts the L2 writes not made while it was open.
	WritesSkipped uint64
}

func (o BreakerOptions) validate() error {
	switch {
	case o.Failures < 0:
		return errors.New("tiercache: Options.Breaker.Failures is negative")
	case o.CoolDown < 0:
		return errors.New("tiercache: Options.Breaker.CoolDown is negative")
	case o.Probes < 0:
		return errors.New("tiercache: Options.Breaker.Probes is negative")
	}
	return nil
}

// newBreaker returns the breaker o describes, or nil when it is off.
func (c *Cache[T]) newBreaker(o BreakerOptions) *breaker.Breaker {
	if o.Failures == 0 {
		return nil
	}
	coolDown, probes := o.CoolDown, o.Probes
	if coolDown == 0 {
		coolDown = DefaultBreakerCoolDown
	}
	if probes == 0 {
		probes = 1
	}
	return breaker.New(o.Failures, coolDown, probes, nil, func(from, to breaker.State) {
		if from == breaker.HalfOpen && to == breaker.Closed {
			c.stats.breakerCloses.Add(1)
		}
		c.observe(context.Background(), Event{Kind: EventBreakerChanged, From: BreakerState(from), To: BreakerState(to)})
	})
}

// l2Open reports whether the breaker refuses L2 now, without taking a
// probe's place; a refusal is counted in Stats.Breaker.Rejected, as the
// L2 operation not made.
func (c *Cache[T]) l2Open() bool { return c.breaker != nil && c.breaker.Refuse() }

// l2Allow asks the breaker whether L2 may be called; without a breaker it
// always may.
func (c *Cache[T]) l2Allow() (breaker.Permit, bool) {
	if c.breaker == nil {
		return breaker.Permit{}, true
	}
	return c.breaker.Allow()
}

// l2Done reports an allowed L2 operation's outcome to the breaker: err
// counts as a failure unless it is a bad entry (L2 answered) or a batch
// error naming the keys that failed (L2 answered the call). When the
// caller's ctx ended first, the operation is abandoned: a probe then
// neither closes nor opens the breaker.
func l2Done(p breaker.Permit, caller context.Context, err error) {
	failed := err != nil && !answered(err)
	if failed && caller.Err() != nil {
		p.Abandon()
		return
	}
	p.Done(failed)
}

// answered reports whether err says L2 answered: a bad entry, or some keys
// of a batch.
func answered(err error) bool {
	if errors.Is(err, ErrBadEntry) {
		return true
	}
	var fk interface{ FailedKeys() []string }
	return errors.As(err, &fk)
}

func (c *Cache[T]) breakerStats() BreakerStats {
	if c.breaker == nil {
		return BreakerStats{}
	}
	return BreakerStats{
		State:         BreakerState(c.breaker.State()),
		Opens:         c.breaker.Opens(),
		Closes:        c.stats.breakerCloses.Load(),
		Rejected:      c.breaker.Rejected(),
		WritesSkipped: c.stats.writesSkipped.Load(),
	}
}
