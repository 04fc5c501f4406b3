package tiercache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/keyguard"
	"github.com/tiercache/tiercache/internal/readctx"
	"github.com/tiercache/tiercache/internal/track"
	"github.com/tiercache/tiercache/internal/workers"
)

// flightIdleTimeout is how long a flight's goroutine waits for the next
// flight before it exits.
const flightIdleTimeout = time.Second

// The kinds of background work a Cache hands to its Offload.
const (
	// OffloadKindRefill copies an L2 hit into L1.
	OffloadKindRefill = "tiercache.refill"
	// OffloadKindRefresh reloads a stale value.
	OffloadKindRefresh = "tiercache.refresh"
	// OffloadKindWriteL2 writes a loaded value (or a remembered absence)
	// into L2.
	OffloadKindWriteL2 = "tiercache.write-l2"
)

// Cache is a two-tier cache: Backends l1 and l2 composed by the policies in
// Options. It is safe for concurrent use. Create it with New and release it
// with Close.
//
// Reads go through the ReadPolicy; an L2 hit is copied into L1, in the
// background or before the read returns (see RefillPolicy). Writes go through the WritePolicy. GetOrLoad
// adds the origin behind both layers, with one load per key at a time. When
// L2 is slow or down, reads and loads degrade to L1 and the origin, and the
// failures are counted in Stats instead of failing the caller.
type Cache[T any] struct {
	l1, l2      Backend[T]
	opts        Options[T] // a copy, never written after New
	policy      ReadPolicy[T]
	sequential  bool // policy is SequentialReadPolicy: GetOrLoad reads without a per-call reader
	write       WritePolicy
	off         Offload      // background work, counted by goBackground
	policyOff   Offload      // what the policies get: off, counted the same way
	ownPool     *OffloadPool // closed by Close; nil with Options.Offload
	readL1      ReadFunc[T]  // c.getL1, bound once so that reads allocate nothing
	readL2      ReadFunc[T]  // c.getL2
	guard       *keyguard.Guard
	workers     *workers.Pool // the goroutines of flights and batches, reused
	flights     flightGroup[T]
	refreshes   refreshMarks
	stats       counters
	bg          track.Group // flights and offloaded tasks under way
	bgDone      func()      // c.bg.Done, bound once: releases a dropped task's count
	coherence   coherence
	breaker     *breaker.Breaker // nil: none
	obs         Observer         // nil: none
	opObs       OpObserver       // obs, when it is one
	readL1None  ReadFunc[T]      // readL1Distrusted, bound once
	closed      atomic.Bool
	closedSub   atomic.Bool        // the subscription has been closed
	closeCancel context.CancelFunc // cancels every flight's ctx
	closeCtx    context.Context    // parent of every flight's ctx
}

// New returns a Cache over l1 and l2 configured by opts; nil opts means the
// defaults. It validates opts, returning an error prefixed "tiercache:", and
// never modifies *opts.
func New[T any](l1, l2 Backend[T], opts *Options[T]) (*Cache[T], error) {
	if l1 == nil || l2 == nil {
		return nil, errors.New("tiercache: New: nil Backend")
	}
	var o Options[T]
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	c := &Cache[T]{l1: l1, l2: l2, opts: o, policy: o.ReadPolicy, write: o.WritePolicy, off: o.Offload, guard: keyguard.New()}
	if c.policy == nil {
		c.policy = SequentialReadPolicy[T]{}
	}
	if c.write == nil {
		c.write = SequentialWritePolicy{}
	}
	if c.off == nil {
		c.ownPool = NewOffloadPool(OffloadOptions{})
		c.off = c.ownPool
		c.policyOff = c.ownPool // Close closes it, which waits for losing reads
	} else {
		c.policyOff = trackedOffload[T]{c} // Close must wait for losing reads too
	}
	c.readL1, c.readL2, c.readL1None = c.getL1, c.getL2, readL1Distrusted[T]
	c.bgDone = c.bg.Done
	c.obs = o.Observer
	c.opObs, _ = o.Observer.(OpObserver)
	c.breaker = c.newBreaker(o.Breaker)
	_, c.sequential = c.policy.(SequentialReadPolicy[T])
	c.flights.m = make(map[string]*flight[T])
	c.workers = workers.New(flightIdleTimeout)
	c.refreshes.m = make(map[string]struct{})
	c.closeCtx, c.closeCancel = context.WithCancel(context.Background())
	if o.Invalidator != nil {
		if err := c.subscribe(o.Invalidator); err != nil {
			if c.ownPool != nil {
				_ = c.ownPool.Close(context.Background())
			}
			c.closeCancel()
			return nil, err
		}
	}
	return c, nil
}

// Get returns the value of key. A miss, and a remembered absence, is
// (zero, false, nil); the error is non-nil only when every layer failed or
// ctx ended. An L2 hit is copied into L1 in the background.
func (c *Cache[T]) Get(ctx context.Context, key string) (T, bool, error) {
	if c.obs == nil {
		return c.get(ctx, key, nil)
	}
	ctx, start := c.startOp(ctx, OpGet)
	var info opInfo
	v, ok, err := c.get(ctx, key, &info)
	c.endOp(ctx, OpGet, start, info, ok, 1, err)
	return v, ok, err
}

func (c *Cache[T]) get(ctx context.Context, key string, info *opInfo) (T, bool, error) {
	var zero T
	if err := c.check(key); err != nil {
		return zero, false, err
	}
	var v *CacheValue[T]
	var src Layer
	if c.sequential {
		var err error
		if v, src, err = c.getSequential(ctx, key); err != nil {
			return zero, false, err
		}
	} else {
		gen := c.guard.Ticket(key)
		l1, readsL1 := c.l1Reader()
		res, err := c.policy.Read(ctx, key, l1, c.readL2, c.policyOff)
		c.recordL1(ctx, readsL1, res.L1)
		c.recordRead(ctx, L2, res.L2)
		if err != nil {
			return zero, false, err
		}
		if v, src = res.Value, res.Source; v != nil && src == L2 {
			c.refill(ctx, key, v, gen)
		}
	}
	if info != nil {
		info.src = src
	}
	if v == nil {
		return zero, false, nil
	}
	if v.Negative {
		c.stats.negativeHits.Add(1)
		return zero, false, nil
	}
	return v.Data, true, nil
}

// getSequential is Get's read under SequentialReadPolicy, the default: the
// policy's reads, in line, so that an L1 hit costs no interface call and the
// refill guard is consulted only when L2 is read.
func (c *Cache[T]) getSequential(ctx context.Context, key string) (*CacheValue[T], Layer, error) {
	if err := ctx.Err(); err != nil {
		return nil, NoLayer, readCanceled(key, err)
	}
	var res ReadResult[T]
	l1, readsL1 := c.l1Reader()
	v, rep := readLayer(ctx, key, l1)
	c.recordL1(ctx, readsL1, rep)
	if v != nil {
		return v, L1, nil
	}
	res.L1 = rep
	if err := ctx.Err(); err != nil {
		return nil, NoLayer, readCanceled(key, err)
	}
	gen := c.guard.Ticket(key)
	v, res.L2 = readLayer(ctx, key, c.readL2)
	c.recordRead(ctx, L2, res.L2)
	if v != nil {
		c.refill(ctx, key, v, gen)
		return v, L2, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, NoLayer, readCanceled(key, err)
	}
	return nil, NoLayer, missOrFailure(key, &res)
}

// Set stores value under key in both layers through the WritePolicy. ttl 0
// means Options.DefaultTTL; the time to live is shortened by TTLJitter, and
// the value goes stale after StaleAfter. A negative ttl is an error.
func (c *Cache[T]) Set(ctx context.Context, key string, value T, ttl time.Duration) error {
	if c.obs == nil {
		return c.set(ctx, key, value, ttl)
	}
	ctx, start := c.startOp(ctx, OpSet)
	err := c.set(ctx, key, value, ttl)
	c.endOp(ctx, OpSet, start, opInfo{}, false, 1, err)
	return err
}

func (c *Cache[T]) set(ctx context.Context, key string, value T, ttl time.Duration) error {
	if err := c.check(key); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("tiercache: set %q: negative ttl %v", key, ttl)
	}
	now := time.Now()
	v := c.newValue(value, ttl, now)
	ticket, err := c.guard.Begin(ctx, key)
	if err != nil { // a background copy of the key outlasted ctx: nothing written
		return fmt.Errorf("tiercache: set %q: %w", key, err)
	}
	defer c.guard.End(key)
	w := &layerWrite[T]{c: c, key: key, v: v, l1v: c.l1Copy(v, now), ticket: ticket}
	if c.l2Open() {
		// L2 is not called while the breaker is open: the value goes to L1
		// only, and the caller is told that L2 lacks it.
		c.stats.writesSkipped.Add(1)
		err := w.l1Writer().Set(ctx)
		return fmt.Errorf("tiercache: set %q: L2 not written: %w", key, errors.Join(ErrBreakerOpen, err))
	}
	err = c.write.Write(ctx, key, w.l1Writer(), w.l2Writer(), c.policyOff)
	// Announced whatever the outcome: a failed L2 write may have landed.
	c.announce(context.WithoutCancel(ctx), key)
	if err != nil {
		return fmt.Errorf("tiercache: set %q: %w", key, err)
	}
	return nil
}

// Delete removes key from both layers and returns their joined errors. L1 is
// cleared even when L2 fails.
func (c *Cache[T]) Delete(ctx context.Context, key string) error {
	if c.obs == nil {
		return c.delete(ctx, key)
	}
	ctx, start := c.startOp(ctx, OpDelete)
	err := c.delete(ctx, key)
	c.endOp(ctx, OpDelete, start, opInfo{}, false, 1, err)
	return err
}

func (c *Cache[T]) delete(ctx context.Context, key string) error {
	if err := c.check(key); err != nil {
		return err
	}
	if _, err := c.guard.Begin(ctx, key); err != nil { // nothing deleted
		return fmt.Errorf("tiercache: delete %q: %w", key, err)
	}
	defer c.guard.End(key)
	err2 := c.deleteL2(ctx, key)
	// L1 is cleared even when L2 failed because ctx ended: L2 may have
	// deleted the key all the same.
	err1 := c.deleteL1(context.WithoutCancel(ctx), key)
	c.announce(context.WithoutCancel(ctx), key)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("tiercache: delete %q: %w", key, err)
	}
	return nil
}

// Stats returns a snapshot of the cache's counters. It takes no lock that a
// read or write takes.
func (c *Cache[T]) Stats() Stats {
	s := c.stats.snapshot()
	s.Unsubscribed = c.offlineFor()
	s.Breaker = c.breakerStats()
	return s
}

// Close stops the cache: every later call returns ErrClosed. It waits for
// the background work under way (refills, refreshes, loads, offloaded
// writes) until ctx ends; then it cancels what is left and returns ctx's
// error. A cache's own OffloadPool is closed too; a shared Offload is not,
// and this cache's tasks it starts after Close has given up return at once,
// without touching the layers. Close may be called again.
func (c *Cache[T]) Close(ctx context.Context) error {
	c.closed.Store(true)
	err := c.bg.Close(ctx)
	c.closeCancel() // ends the ctx of every flight still under way
	if err == nil {
		c.workers.Close()
	} else {
		c.workers.Stop()
	}
	if c.coherence.sub != nil {
		if c.closedSub.CompareAndSwap(false, true) {
			err = errors.Join(err, c.coherence.sub.Close())
		}
	}
	if c.ownPool != nil {
		err = errors.Join(err, c.ownPool.Close(ctx))
	}
	if err != nil {
		return fmt.Errorf("tiercache: close: %w", err)
	}
	return nil
}

// check rejects calls after Close and the empty key.
func (c *Cache[T]) check(key string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if key == "" {
		return errEmptyKey
	}
	return nil
}

// newValue builds the value a write stores: Expire from ttl (0: DefaultTTL)
// shortened by the jitter, Stale from StaleAfter.
func (c *Cache[T]) newValue(data T, ttl time.Duration, now time.Time) CacheValue[T] {
	if ttl == 0 {
		ttl = c.opts.DefaultTTL
	}
	v := CacheValue[T]{Data: data}
	if ttl > 0 {
		v.Expire = now.Add(c.jitter(ttl))
	}
	if c.opts.StaleAfter > 0 {
		v.Stale = now.Add(c.opts.StaleAfter)
	}
	return v
}

// newNegative builds a remembered absence that lives NegativeTTL.
func (c *Cache[T]) newNegative(now time.Time) CacheValue[T] {
	return CacheValue[T]{Negative: true, Expire: now.Add(c.jitter(c.opts.NegativeTTL))}
}

// jitter shortens ttl by a random part of up to TTLJitter of it, keeping at
// least a nanosecond.
func (c *Cache[T]) jitter(ttl time.Duration) time.Duration {
	if c.opts.TTLJitter == 0 {
		return ttl
	}
	cut := time.Duration(rand.Float64() * c.opts.TTLJitter * float64(ttl))
	return max(ttl-cut, 1)
}

// l1Copy is v as L1 stores it: its Expire capped at now+L1MaxTTL.
func (c *Cache[T]) l1Copy(v CacheValue[T], now time.Time) CacheValue[T] {
	if c.opts.L1MaxTTL > 0 {
		if limit := now.Add(c.opts.L1MaxTTL); v.Expire.IsZero() || v.Expire.After(limit) {
			v.Expire = limit
		}
	}
	return v
}

// refill copies v, read from L2, into L1, unless the key was written since
// gen was taken: under RefillInline now, on the caller's goroutine, while
// ctx lasts; otherwise in the background.
func (c *Cache[T]) refill(ctx context.Context, key string, v *CacheValue[T], gen keyguard.Ticket) {
	if c.refillsInline(ctx) {
		c.writeRefill(ctx, key, c.l1Copy(*v, time.Now()), gen)
		return
	}
	j := c.newRefill(ctx, key, v, gen)
	if j == nil {
		return
	}
	if !c.bg.Add() {
		c.rejected(OffloadKindRefill)
		return
	}
	if !offloadGo(c.off, OffloadKindRefill, j.run, c.bgDone) { // dropped unrun: Close need not wait for it
		c.bg.Done()
		c.rejected(OffloadKindRefill)
	}
}

// refillsInline reports whether a refill for a reader with ctx is written
// on the reader's goroutine: under RefillInline while ctx lasts.
func (c *Cache[T]) refillsInline(ctx context.Context) bool {
	return c.opts.Refill == RefillInline && ctx.Err() == nil
}

// refillJob is one refill: the L1 copy of a value read from L2, the ticket
// it is checked against, and, in the same allocation, the ctx its task
// runs with.
type refillJob[T any] struct {
	c      *Cache[T]
	key    string
	v      CacheValue[T]
	gen    keyguard.Ticket
	values context.Context // the reader's, for its values (trace IDs)
	ctx    readctx.Pair    // values' values, the task's lifetime
}

// newRefill returns the refill of key with v, read by a reader with ctx and
// checked against gen; nil when the cache does not refill.
func (c *Cache[T]) newRefill(ctx context.Context, key string, v *CacheValue[T], gen keyguard.Ticket) *refillJob[T] {
	if c.opts.Refill == RefillNever {
		return nil
	}
	return &refillJob[T]{c: c, key: key, v: c.l1Copy(*v, time.Now()), gen: gen, values: ctx}
}

// run is the refill as a task of the cache's Offload, counted by refill.
func (j *refillJob[T]) run(taskCtx context.Context) {
	defer j.c.bg.Done()
	if j.c.closeCtx.Err() != nil {
		return // Close gave up waiting before a shared Offload ran it
	}
	j.ctx.Set(j.values, taskCtx)
	j.write(&j.ctx)
}

// write is the refill's writeRefill.
func (j *refillJob[T]) write(ctx context.Context) { j.c.writeRefill(ctx, j.key, j.v, j.gen) }

// writeRefill copies v, the L1 copy of a value read from L2, into L1 unless
// key was written since gen was taken, and counts what it did.
func (c *Cache[T]) writeRefill(ctx context.Context, key string, v CacheValue[T], gen keyguard.Ticket) {
	var err error
	if !c.guard.WriteIf(key, gen, keyguard.Copy, func() { err = c.setL1IfTrusted(ctx, key, v) }) {
		c.stats.refillsSkipped.Add(1)
		return
	}
	if err != nil {
		c.writeFailed(ctx, L1, err)
		return
	}
	c.stats.refills.Add(1)
	c.observe(ctx, Event{Kind: EventRefill, Keys: 1})
}

// goBackground hands task to the Offload, counted so that Close waits for
// it. The task's ctx has the values of ctx (trace IDs) and the lifetime the
// Offload gives it. It reports whether the Offload took the task; a refusal
// is counted.
func (c *Cache[T]) goBackground(ctx context.Context, kind string, task func(ctx context.Context)) bool {
	return c.goBackgroundOrDrop(ctx, kind, task, nil)
}

// goBackgroundOrDrop is goBackground, with dropped (when not nil) called
// instead of task if the Offload takes the task but never runs it (a
// shared OffloadPool's Close dropped it, or this cache's Close had given up
// by the time it started): the cleanup the task would have done.
func (c *Cache[T]) goBackgroundOrDrop(ctx context.Context, kind string, task func(ctx context.Context), dropped func()) bool {
	return trackedOffload[T]{c}.goOrDrop(kind, func(taskCtx context.Context) {
		task(readctx.Detached(ctx, taskCtx))
	}, dropped)
}

// followUp hands task, background work of kind that a flight leaves
// behind (a refill, an L2 write), to the Offload; refused, when not nil,
// runs if the Offload refuses it. With an OffloadPool, the task is kept for
// the flight's goroutine to run itself, in a free slot of the pool, once the
// flight's callers have their answer: followUp returns that run, which the
// flight calls last (see OffloadPool.runHere); without a free slot it goes
// to the pool as goBackground sends it. With any other Offload the task is
// handed over now, before the callers are woken, so that they return with
// it handed over, and followUp returns nil. The flight's hold on the
// cache's background work covers the task while it runs on the flight.
func (c *Cache[T]) followUp(ctx context.Context, kind string, task func(ctx context.Context), refused func()) (run func()) {
	p, ok := c.off.(*OffloadPool)
	if !ok || p == nil { // a nil *OffloadPool rejects every task, as Go does
		if !c.goBackgroundOrDrop(ctx, kind, task, refused) && refused != nil {
			refused()
		}
		return nil
	}
	return func() {
		if p.runHere(kind, func(taskCtx context.Context) { task(readctx.Detached(ctx, taskCtx)) }) {
			return
		}
		if !c.goBackgroundOrDrop(ctx, kind, task, refused) && refused != nil {
			refused()
		}
	}
}

// trackedOffload is the cache's Offload with its tasks counted, so that
// Close waits for them. A refused task is counted in Stats.OffloadRejected.
type trackedOffload[T any] struct{ c *Cache[T] }

// Go hands task to the cache's Offload, counted.
func (t trackedOffload[T]) Go(kind string, task func(ctx context.Context)) bool {
	return t.goOrDrop(kind, task, nil)
}

// goOrDrop is Go, with dropped called if the Offload drops the task unrun.
// The count is released either way, so that Close does not wait for a task
// an OffloadPool's Close discarded.
func (t trackedOffload[T]) goOrDrop(kind string, task func(ctx context.Context), dropped func()) bool {
	c := t.c
	if !c.bg.Add() {
		c.rejected(kind)
		return false
	}
	release := c.bgDone
	if dropped != nil {
		release = func() {
			c.bg.Done()
			dropped()
		}
	}
	ok := offloadGo(c.off, kind, func(ctx context.Context) {
		defer c.bg.Done()
		if c.closeCtx.Err() != nil { // Close gave up waiting before a shared Offload ran it
			if dropped != nil {
				dropped()
			}
			return
		}
		task(ctx)
	}, release)
	if !ok {
		c.bg.Done()
		c.rejected(kind)
	}
	return ok
}

// rejected counts background work the Offload refused and observes it.
func (c *Cache[T]) rejected(kind string) {
	c.stats.offloadRejected.Add(1)
	c.observe(context.Background(), Event{Kind: EventOffloadRejected, OffloadKind: kind})
}

// withTimeout gives ctx the deadline d from now, when d is set and ctx's
// own deadline is later: a ctx that ends first already bounds the
// operation, and is used as it is, without the timer and the allocations
// of a derived ctx.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, noCancel
	}
	if end, ok := ctx.Deadline(); ok && time.Until(end) <= d {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, d)
}

// noCancel is the CancelFunc of a ctx withTimeout did not derive.
func noCancel() {}

// getL1 and getL2 are the layers' readers: the backend's Get under the
// layer's timeout.
func (c *Cache[T]) getL1(ctx context.Context, key string) (*CacheValue[T], error) {
	return getWithin(ctx, c.l1, key, c.opts.L1Timeout)
}

func (c *Cache[T]) getL2(ctx context.Context, key string) (v *CacheValue[T], err error) {
	p, ok := c.l2Allow()
	if !ok {
		return nil, ErrBreakerOpen
	}
	done := false
	defer func() {
		if !done { // the backend panicked: a failure, and the panic goes on
			p.Done(true)
		}
	}()
	v, err = getWithin(ctx, c.l2, key, c.opts.L2Timeout)
	done = true
	l2Done(p, ctx, err)
	return v, err
}

// getWithin is b's Get of key under timeout (see withTimeout).
func getWithin[T any](ctx context.Context, b Backend[T], key string, timeout time.Duration) (*CacheValue[T], error) {
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	return b.Get(ctx, key)
}

// setL1, setL2, deleteL1 and deleteL2 are the layers' writes: under the
// layer's timeout, a panic contained, the error naming the layer.
func (c *Cache[T]) setL1(ctx context.Context, key string, v CacheValue[T]) error {
	return layerOp(ctx, L1, c.opts.L1Timeout, func(ctx context.Context) error { return c.l1.Set(ctx, key, v) })
}

func (c *Cache[T]) setL2(ctx context.Context, key string, v CacheValue[T]) error {
	p, ok := c.l2Allow()
	if !ok {
		c.stats.writesSkipped.Add(1)
		return &layerError{L2, ErrBreakerOpen}
	}
	err := layerOp(ctx, L2, c.opts.L2Timeout, func(ctx context.Context) error { return c.l2.Set(ctx, key, v) })
	l2Done(p, ctx, err)
	return err
}

func (c *Cache[T]) deleteL1(ctx context.Context, key string) error {
	return layerOp(ctx, L1, c.opts.L1Timeout, func(ctx context.Context) error { return c.l1.Delete(ctx, key) })
}

func (c *Cache[T]) deleteL2(ctx context.Context, key string) error {
	p, ok := c.l2Allow()
	if !ok {
		return &layerError{L2, ErrBreakerOpen}
	}
	err := layerOp(ctx, L2, c.opts.L2Timeout, func(ctx context.Context) error { return c.l2.Delete(ctx, key) })
	l2Done(p, ctx, err)
	return err
}

// layerOp runs one backend write of layer l under timeout, containing a
// panic, and names the layer in its error.
func layerOp(ctx context.Context, l Layer, timeout time.Duration, op func(ctx context.Context) error) (err error) {
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
		if err != nil {
			err = &layerError{l, err}
		}
	}()
	return op(ctx)
}

// layerWrite is one Set in progress: the LayerWriters a WritePolicy gets.
type layerWrite[T any] struct {
	c      *Cache[T]
	key    string
	v, l1v CacheValue[T]
	ticket keyguard.WriteTicket
}

func (w *layerWrite[T]) l1Writer() LayerWriter {
	return LayerWriter{
		Set: func(ctx context.Context) error {
			// Skipped when another process invalidated the key since the
			// write began: which of the two landed last in L2 is unknown,
			// and an L1 without the key is always right.
			var err error
			if _, lockErr := w.c.guard.WriteUnlessInvalidated(ctx, w.key, w.ticket, func() { err = w.c.setL1IfTrusted(ctx, w.key, w.l1v) }); lockErr != nil {
				return &layerError{L1, lockErr}
			}
			return err
		},
		Evict: func(ctx context.Context) error { return w.c.deleteL1(ctx, w.key) },
	}
}

func (w *layerWrite[T]) l2Writer() LayerWriter {
	return LayerWriter{
		Set:   func(ctx context.Context) error { return w.c.setL2(ctx, w.key, w.v) },
		Evict: func(ctx context.Context) error { return w.c.deleteL2(ctx, w.key) },
	}
}
