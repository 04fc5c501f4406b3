// Package breaker is the circuit breaker a cache puts in front of L2.
//
// Closed, it lets every call through and counts consecutive failures; at
// the threshold it opens. Open, it refuses every call until its cool-down
// has passed; then it is half-open and lets a few probe calls through at
// once: the first probe that succeeds closes it, one that fails opens it
// again for another cool-down. On the closed path, asking costs one atomic
// load and reporting a success one more.
package breaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is a breaker's state.
type State uint32

const (
	Closed   State = iota // calls go through
	Open                  // calls are refused until the cool-down has passed
	HalfOpen              // a few probe calls go through
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Breaker is a circuit breaker. Use New.
type Breaker struct {
	threshold int64
	coolDown  time.Duration
	probes    int
	now       func() time.Time
	onChange  func(from, to State)

	state    atomic.Uint32 // a State
	epoch    atomic.Uint64 // advanced each time it opens
	failures atomic.Int64  // consecutive failures while closed

	mu       sync.Mutex
	openedAt time.Time // when it last opened
	inFlight int       // probes let through and not yet reported

	opens, rejected atomic.Uint64
}

// Permit is a call let through; report its outcome with Done.
type Permit struct {
	b     *Breaker
	probe bool
	epoch uint64
}

// New returns a closed breaker that opens after threshold consecutive
// failures, stays open for coolDown, then lets up to probes calls through
// at once. onChange, when set, is called on every transition, under the
// breaker's lock: it must be quick and must not call the breaker. now is
// the clock (nil: time.Now).
func New(threshold int, coolDown time.Duration, probes int, now func() time.Time, onChange func(from, to State)) *Breaker {
	if now == nil {
		now = time.Now
	}
	return &Breaker{threshold: int64(threshold), coolDown: coolDown, probes: probes, now: now, onChange: onChange}
}

// Allow lets a call through, or refuses it (false). A call let through must
// report its outcome with the Permit's Done.
func (b *Breaker) Allow() (Permit, bool) {
	if State(b.state.Load()) == Closed {
		return Permit{b: b, epoch: b.epoch.Load()}, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch State(b.state.Load()) {
	case Closed:
		return Permit{b: b, epoch: b.epoch.Load()}, true
	case Open:
		if b.now().Sub(b.openedAt) < b.coolDown {
			b.rejected.Add(1)
			return Permit{}, false
		}
		b.setLocked(HalfOpen)
	}
	if b.inFlight >= b.probes {
		b.rejected.Add(1)
		return Permit{}, false
	}
	b.inFlight++
	return Permit{b: b, probe: true, epoch: b.epoch.Load()}, true
}

// Done reports the outcome of the call: failed says the backend failed or
// timed out (a miss is a success).
func (p Permit) Done(failed bool) {
	b := p.b
	if b == nil {
		return
	}
	if !p.probe {
		if !failed {
			if b.failures.Load() != 0 {
				b.failures.Store(0)
			}
			return
		}
		if b.failures.Add(1) < b.threshold {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if State(b.state.Load()) == Closed && b.epoch.Load() == p.epoch {
			b.openLocked()
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight--
	if State(b.state.Load()) != HalfOpen || b.epoch.Load() != p.epoch {
		return // decided by another probe already
	}
	if failed {
		b.openLocked()
		return
	}
	b.failures.Store(0)
	b.setLocked(Closed)
}

// Abandon reports a call whose caller gave up before the backend answered:
// it says nothing about the backend. A probe gives its place back without
// closing or opening the breaker; any other call counts as Done(false).
func (p Permit) Abandon() {
	b := p.b
	if b == nil {
		return
	}
	if !p.probe {
		p.Done(false)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight--
}

func (b *Breaker) openLocked() {
	b.openedAt = b.now()
	b.failures.Store(0)
	b.epoch.Add(1)
	b.opens.Add(1)
	b.setLocked(Open)
}

func (b *Breaker) setLocked(to State) {
	from := State(b.state.Swap(uint32(to)))
	if from != to && b.onChange != nil {
		b.onChange(from, to)
	}
}

// Refusing reports whether Allow would refuse a call now, without taking a
// probe's place: the breaker is open and cooling down, or half-open with
// every probe's place taken.
func (b *Breaker) Refusing() bool {
	if State(b.state.Load()) == Closed {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch State(b.state.Load()) {
	case Open:
		return b.now().Sub(b.openedAt) < b.coolDown
	case HalfOpen:
		return b.inFlight >= b.probes
	}
	return false
}

// Refuse is Refusing for a call that is not made when it reports true: the
// refusal is counted in Rejected.
func (b *Breaker) Refuse() bool {
	if !b.Refusing() {
		return false
	}
	b.rejected.Add(1)
	return true
}

// State returns the current state.
func (b *Breaker) State() State { return State(b.state.Load()) }

// Opens counts the times the breaker opened.
func (b *Breaker) Opens() uint64 { return b.opens.Load() }

// Rejected counts the calls refused.
func (b *Breaker) Rejected() uint64 { return b.rejected.Load() }
