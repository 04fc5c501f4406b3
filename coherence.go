package tiercache

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// flushTimeout bounds the L1 flush a lost or restored subscription causes.
const flushTimeout = 5 * time.Second

// coherence is a Cache's side of cross-instance invalidation: its
// subscription, and whether L1 can be trusted.
type coherence struct {
	sub     Subscription
	flusher Flusher
	// distrusted is set while invalidations may be missed (and before the
	// first SubscriptionRestored): reads go around L1 and nothing is
	// written into it.
	distrusted atomic.Bool

	mu      sync.Mutex    // guards lostAt and offline, read together
	lostAt  time.Time     // the last SubscriptionLost, by the monotonic clock; zero when subscribed
	offline time.Duration // spent without a subscription, closed periods
}

// markLost starts a period without a subscription, unless one is under way.
func (co *coherence) markLost() {
	co.mu.Lock()
	defer co.mu.Unlock()
	if co.lostAt.IsZero() {
		co.lostAt = time.Now()
	}
}

// markRestored ends the period without a subscription under way, if any.
func (co *coherence) markRestored() {
	co.mu.Lock()
	defer co.mu.Unlock()
	if !co.lostAt.IsZero() {
		co.offline += time.Since(co.lostAt)
		co.lostAt = time.Time{}
	}
}

// subscribe joins inv. L1 is distrusted until inv says invalidations flow.
func (c *Cache[T]) subscribe(inv Invalidator) error {
	flusher, ok := c.l1.(Flusher)
	if !ok {
		return fmt.Errorf("tiercache: New: an Invalidator needs an L1 that implements Flusher; %T does not", c.l1)
	}
	c.coherence.flusher = flusher
	c.coherence.distrusted.Store(true)
	c.coherence.markLost()
	sub, err := inv.Subscribe(c.onInvalidation)
	if err != nil {
		return fmt.Errorf("tiercache: New: subscribing to the Invalidator: %w", err)
	}
	c.coherence.sub = sub
	return nil
}

// onInvalidation handles what the Invalidator reports.
func (c *Cache[T]) onInvalidation(e InvalidationEvent) {
	switch e.Kind {
	case KeysChanged:
		c.stats.invalidationsReceived.Add(uint64(len(e.Keys)))
		ctx, cancel := withTimeout(context.Background(), flushTimeout)
		defer cancel()
		c.observe(ctx, Event{Kind: EventInvalidationReceived, Keys: len(e.Keys)})
		for _, key := range e.Keys {
			c.guard.Invalidate(key, func() {
				if err := c.deleteL1(ctx, key); err != nil {
					c.writeFailed(ctx, L1, err)
					return
				}
				c.stats.invalidationEvictions.Add(1)
			})
		}
	case SubscriptionLost:
		if c.coherence.distrusted.Swap(true) {
			return // lost already
		}
		c.coherence.markLost()
		c.stats.subscriptionDrops.Add(1)
		c.flushL1()
		c.observe(context.Background(), Event{Kind: EventSubscriptionLost})
	case SubscriptionRestored:
		if !c.coherence.distrusted.Load() {
			return
		}
		c.flushL1() // whatever L1 holds may have changed meanwhile
		c.coherence.markRestored()
		c.coherence.distrusted.Store(false)
		c.observe(context.Background(), Event{Kind: EventSubscriptionRestored})
	}
}

// flushL1 empties L1, voiding every copy into it read before.
func (c *Cache[T]) flushL1() {
	c.guard.InvalidateAll()
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := contained(func() error { return c.coherence.flusher.Flush(ctx) }); err != nil {
		c.writeFailed(ctx, L1, err)
	}
}

// announce tells the other caches that key has changed.
func (c *Cache[T]) announce(ctx context.Context, keys ...string) {
	sub := c.coherence.sub
	if sub == nil {
		return
	}
	err := contained(func() error { return sub.Announce(ctx, keys...) })
	c.observe(ctx, Event{Kind: EventInvalidationSent, Keys: len(keys), Err: err})
	if err != nil {
		c.stats.invalidationErrors.Add(1)
		return
	}
	c.stats.invalidationsSent.Add(uint64(len(keys)))
}

// l2Untouched reports whether err, the error of an L2 write of n keys,
// says that none of them reached L2: the breaker refused the write, or
// each of its keys. Any other failure, a timeout, may have landed, so the
// keys are announced all the same.
func l2Untouched(err error, n int) bool {
	refused := func(err error) bool {
		le, ok := err.(*layerError)
		return ok && le.layer == L2 && le.err == ErrBreakerOpen
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok { // written key by key
		errs := j.Unwrap()
		return len(errs) == n && !slices.ContainsFunc(errs, func(err error) bool { return !refused(err) })
	}
	return refused(err)
}

// l1Trusted reports whether L1 may be read and written: always without an
// Invalidator; with one, while invalidations flow.
func (c *Cache[T]) l1Trusted() bool { return !c.coherence.distrusted.Load() }

// setL1IfTrusted writes L1 unless it is distrusted, when the write is
// skipped: the key is then simply absent from L1.
func (c *Cache[T]) setL1IfTrusted(ctx context.Context, key string, v CacheValue[T]) error {
	if !c.l1Trusted() {
		return nil
	}
	return c.setL1(ctx, key, v)
}

// readL1Distrusted is the L1 reader while L1 is distrusted: always a miss.
func readL1Distrusted[T any](context.Context, string) (*CacheValue[T], error) { return nil, nil }

// l1Reader is the L1 reader a read uses now, and whether it reads L1: a
// distrusted L1 is not read, and its always-missing reader's report is not
// counted as a read (Stats, latency, Observer), as batch reads do not
// count it.
func (c *Cache[T]) l1Reader() (read ReadFunc[T], reads bool) {
	if c.l1Trusted() {
		return c.readL1, true
	}
	return c.readL1None, false
}

// recordL1 records the report of a read of L1 that read reports on: not
// when L1 was distrusted and not read.
func (c *Cache[T]) recordL1(ctx context.Context, read bool, rep LayerReport) {
	if read {
		c.recordRead(ctx, L1, rep)
	}
}

// offlineFor returns the time spent without a subscription, the current
// period included. It never decreases: both parts are read under one lock
// and measured by the monotonic clock, which a change of the wall clock
// does not move.
func (c *Cache[T]) offlineFor() time.Duration {
	co := &c.coherence
	co.mu.Lock()
	defer co.mu.Unlock()
	d := co.offline
	if !co.lostAt.IsZero() && co.sub != nil {
		d += time.Since(co.lostAt)
	}
	return d
}
