package tiercache

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// RefillPolicy says whether, and where, a value found in L2 is copied into
// L1.
type RefillPolicy uint8

const (
	// RefillAlways copies every L2 hit into L1, in the background through
	// the Offload, so the read does not wait for it.
	RefillAlways RefillPolicy = iota
	// RefillNever leaves L1 alone on an L2 hit; L1 then holds only what this
	// process wrote or loaded.
	RefillNever
	// RefillInline copies every L2 hit into L1 before the read returns, on
	// the goroutine that read L2 (the caller's, or the goroutine of the
	// flight its callers share), within L1Timeout and the caller's ctx. It
	// suits an in-process L1 such as otterstore, whose Set costs about a
	// microsecond: it saves a hand-off to the Offload on every L2 hit, and
	// the next read of the key in this process finds it in L1. With an L1
	// whose writes are slow, every L2 hit waits for one; keep RefillAlways
	// there. A read whose ctx has ended by the time it has the value leaves
	// the copy to the Offload, as RefillAlways does.
	RefillInline
)

// String returns "always", "never" or "inline".
func (p RefillPolicy) String() string {
	switch p {
	case RefillAlways:
		return "always"
	case RefillNever:
		return "never"
	case RefillInline:
		return "inline"
	}
	return "RefillPolicy(" + strconv.Itoa(int(p)) + ")"
}

// Options configures a Cache. The zero value is a valid configuration; New
// copies it and never modifies it.
type Options[T any] struct {
	// ReadPolicy decides how the layers are read. Nil:
	// SequentialReadPolicy.
	ReadPolicy ReadPolicy[T]
	// WritePolicy decides how Set reaches the layers. Nil:
	// SequentialWritePolicy.
	WritePolicy WritePolicy
	// Refill says whether an L2 hit is copied into L1, and whether the read
	// waits for the copy. Zero: RefillAlways, in the background.
	Refill RefillPolicy
	// Offload runs background work: refills, refreshes, the L2 write of a
	// loaded value, losing race reads. Nil: the cache makes its own
	// OffloadPool with default options and closes it in Close. A shared
	// Offload is not closed by the cache, but Close waits for the tasks this
	// cache gave it.
	Offload Offload
	// DefaultTTL is the time to live of a Set with ttl 0 and of loaded
	// values. Zero: they never expire.
	DefaultTTL time.Duration
	// StaleAfter makes written values go stale this long after they are
	// written: GetOrLoad still serves a stale value, and refreshes it in the
	// background. Zero: values never go stale.
	StaleAfter time.Duration
	// L1MaxTTL caps a value's life in L1, whatever its Expire, so that L1
	// copies of long-lived values are re-read from L2 now and then. Zero: no
	// cap.
	L1MaxTTL time.Duration
	// NegativeTTL is how long a loader's ErrNotFound is remembered, in both
	// layers, so that neither this process nor others sharing L2 ask the
	// origin again meanwhile. Zero: absences are not remembered.
	NegativeTTL time.Duration
	// TTLJitter, in [0, 1), shortens each written time to live by a random
	// part of up to this fraction, so that keys written together do not
	// expire together. Zero: no jitter.
	TTLJitter float64
	// L1Timeout is the deadline of each L1 operation. Zero: none beyond the
	// caller's ctx.
	L1Timeout time.Duration
	// L2Timeout is the deadline of each L2 operation. Zero: none beyond the
	// caller's ctx. It also decides where GetOrLoad's shared L2 read runs:
	// on the goroutine of the caller that starts it when that caller's ctx
	// has no deadline or one at least L2Timeout away, on a goroutine of its
	// own otherwise (see GetOrLoad).
	L2Timeout time.Duration
	// Invalidator keeps the L1s of caches sharing L2 data coherent: every
	// Set, Delete, load and refresh of this cache is announced, and the keys
	// other caches announce are evicted from this cache's L1. While the
	// Invalidator reports its subscription lost, and until it first reports
	// it restored, L1 is flushed and read and written around. L1 must
	// implement Flusher. Nil: no cross-instance invalidation.
	Invalidator Invalidator
	// Breaker is the circuit breaker in front of L2; see BreakerOptions.
	// Zero: no breaker.
	Breaker BreakerOptions
	// Observer receives the cache's events as they happen, for metrics and
	// tracing. Nil: none, at no cost.
	Observer Observer
	// Name names the cache in the events an Observer receives (and so in
	// metrics and traces). Empty: unnamed.
	Name string
}

// validate checks o and returns the first problem found.
func (o *Options[T]) validate() error {
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"DefaultTTL", o.DefaultTTL},
		{"StaleAfter", o.StaleAfter},
		{"L1MaxTTL", o.L1MaxTTL},
		{"NegativeTTL", o.NegativeTTL},
		{"L1Timeout", o.L1Timeout},
		{"L2Timeout", o.L2Timeout},
	}
	for _, d := range durations {
		if d.d < 0 {
			return fmt.Errorf("tiercache: Options.%s is negative (%v)", d.name, d.d)
		}
	}
	if math.IsNaN(o.TTLJitter) || o.TTLJitter < 0 || o.TTLJitter >= 1 {
		return fmt.Errorf("tiercache: Options.TTLJitter must be in [0, 1), got %v", o.TTLJitter)
	}
	if err := o.Breaker.validate(); err != nil {
		return err
	}
	if o.Refill > RefillInline {
		return fmt.Errorf("tiercache: Options.Refill: unknown %v", o.Refill)
	}
	switch p := o.ReadPolicy.(type) {
	case RaceReadPolicy[T]:
		if err := p.validate(); err != nil {
			return fmt.Errorf("tiercache: Options.ReadPolicy: %w", err)
		}
	case *RaceReadPolicy[T]:
		if p == nil {
			return errors.New("tiercache: Options.ReadPolicy: nil *RaceReadPolicy")
		}
		if err := p.validate(); err != nil {
			return fmt.Errorf("tiercache: Options.ReadPolicy: %w", err)
		}
	}
	return nil
}
