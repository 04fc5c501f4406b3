package tiercache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tiercache/tiercache/internal/readctx"
)

// GetOrLoad returns the value of key, loading it with load on a miss.
//
// It reads like Get, through the ReadPolicy, except that its L2 reads are
// coalesced: the callers that miss L1 for one key at the same time share one
// L2 read and, if that misses too, one call of load. The shared work runs on
// its own goroutine with the context values of the first caller; it is
// cancelled only when every caller waiting for it has gone (or Close's
// deadline passes), and each caller returns as soon as its own ctx ends, with
// ctx's error. A caller arriving after every waiter has gone starts afresh.
//
// A loaded value is in L1 before GetOrLoad returns; its L2 write goes through
// the Offload, so callers do not wait for L2 (when the Offload refuses, the
// write is skipped and counted in Stats.OffloadRejected). When L2 fails or
// times out, GetOrLoad degrades to load and keeps the value in L1; the
// failure shows in Stats, not to the caller.
//
// load returns ErrNotFound (or an error wrapping it) for "no such thing":
// GetOrLoad then returns an error for which errors.Is(err, ErrNotFound)
// holds, and with NegativeTTL remembers the absence in both layers. Any
// other error of load reaches every caller that waited for it and is not
// cached. A panic in load is returned as a *PanicError.
//
// A stale value (past its Stale, before its Expire) is returned at once and
// refreshed in the background: one refresh per key at a time, none while a
// load of the key is under way, rewriting both layers.
func (c *Cache[T]) GetOrLoad(ctx context.Context, key string, load func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if err := c.check(key); err != nil {
		return zero, err
	}
	if load == nil {
		return zero, fmt.Errorf("tiercache: get or load %q: nil load function", key)
	}
	res, err := c.policy.Read(ctx, key, c.readL1, c.readL2Coal, c.off)
	c.stats.l1.record(res.L1) // the shared L2 reads record themselves
	if res.L2.Err != nil {
		var le *loadError
		if errors.As(res.L2.Err, &le) { // joined someone else's load, which failed
			return zero, le.err
		}
	}
	if v := res.Value; v != nil {
		return c.serve(ctx, key, v, load) // an L2 hit was refilled by its flight
	}
	if err != nil && ctx.Err() != nil {
		return zero, err
	}
	// A miss, or every layer failed: load.
	v, err := c.load(ctx, key, load)
	switch {
	case err != nil:
		return zero, err
	case v.Negative: // L2 answered the flight with a remembered absence
		c.stats.negativeHits.Add(1)
		return zero, fmt.Errorf("tiercache: %q: %w", key, ErrNotFound)
	}
	return c.serve(ctx, key, v, load)
}

// serve turns a found value into GetOrLoad's answer, scheduling a refresh
// when it is stale.
func (c *Cache[T]) serve(ctx context.Context, key string, v *CacheValue[T], load func(context.Context) (T, error)) (T, error) {
	if !v.Stale.IsZero() && v.IsStale(time.Now()) {
		c.stats.staleServed.Add(1)
		c.refresh(ctx, key, load)
	}
	if v.Negative {
		c.stats.negativeHits.Add(1)
		var zero T
		return zero, fmt.Errorf("tiercache: %q: %w", key, ErrNotFound)
	}
	return v.Data, nil
}

// flight is the shared work for one key: an L2 read, then, if the key is
// still missing, one load.
type flight[T any] struct {
	key    string
	ctx    context.Context // the first caller's values; ends when cancel is called
	cancel context.CancelFunc

	// Guarded by flightGroup.mu.
	refs     int  // callers waiting on this flight
	loading  bool // the load has started
	resolved bool // done is closed

	// Written before the channel they belong to is closed.
	l2Done  chan struct{} // closed when the L2 read ends; nil for a flight that only loads
	l2Value *CacheValue[T]
	l2Err   error
	done    chan struct{} // closed when the flight has its answer
	value   *CacheValue[T]
	err     error
}

// flightGroup holds the flights under way, one per key at most.
type flightGroup[T any] struct {
	mu sync.Mutex
	m  map[string]*flight[T]
}

// newFlight makes a flight for key with the values of ctx and registers it.
// Called with g.mu held.
func (c *Cache[T]) newFlight(ctx context.Context, key string) *flight[T] {
	life, cancel := context.WithCancel(c.closeCtx)
	f := &flight[T]{key: key, ctx: readctx.Detached(ctx, life), cancel: cancel, refs: 1, done: make(chan struct{})}
	c.flights.m[key] = f
	return f
}

// resolveLocked gives f its answer and removes it from the group. Called
// with g.mu held.
func (c *Cache[T]) resolveLocked(f *flight[T], v *CacheValue[T], err error) {
	if f.resolved {
		return
	}
	f.value, f.err, f.resolved = v, err, true
	close(f.done)
	if c.flights.m[f.key] == f {
		delete(c.flights.m, f.key)
	}
}

// leave is called by every caller of a flight when it stops waiting. The
// last one to leave an unanswered flight cancels it.
func (c *Cache[T]) leave(f *flight[T]) {
	c.flights.mu.Lock()
	defer c.flights.mu.Unlock()
	f.refs--
	if f.refs > 0 {
		return
	}
	f.cancel()
	if c.flights.m[f.key] == f {
		delete(c.flights.m, f.key)
	}
}

// readL2Flight is GetOrLoad's L2 reader: it joins the key's flight, or
// starts one that reads L2, and answers with the flight's L2 value. When the
// flight is loading, the loaded value (or the load's error, as a *loadError)
// stands in for L2's answer.
func (c *Cache[T]) readL2Flight(ctx context.Context, key string) (*CacheValue[T], error) {
	c.flights.mu.Lock()
	f := c.flights.m[key]
	if f == nil {
		f = c.newFlight(ctx, key)
		f.l2Done = make(chan struct{})
		if c.bg.Add() {
			go c.runL2(f)
		} else {
			close(f.l2Done)
			f.l2Err = ErrClosed
			c.resolveLocked(f, nil, ErrClosed)
		}
	} else {
		f.refs++
		c.stats.coalesced.Add(1)
	}
	c.flights.mu.Unlock()
	defer c.leave(f)

	if f.l2Done != nil {
		select {
		case <-f.l2Done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.l2Value != nil {
			return f.l2Value, nil
		}
		c.flights.mu.Lock()
		loading := f.loading
		c.flights.mu.Unlock()
		if !loading {
			return nil, f.l2Err // a miss, or L2's failure
		}
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, &loadError{f.err}
	}
	return f.value, nil
}

// runL2 is a flight's L2 read. A hit answers the flight and is refilled
// into L1, once for every caller that shared it; a miss leaves the flight
// open for a load.
func (c *Cache[T]) runL2(f *flight[T]) {
	defer c.bg.Done()
	gen := c.guard.Gen(f.key)
	var v *CacheValue[T]
	rep := goexitReport
	defer func() {
		c.stats.l2.record(rep)
		if v != nil {
			c.refill(f.ctx, f.key, v, gen)
		}
		c.flights.mu.Lock()
		defer c.flights.mu.Unlock()
		f.l2Value, f.l2Err = v, rep.Err
		close(f.l2Done)
		if v != nil {
			c.resolveLocked(f, v, nil)
		} else if f.refs == 0 {
			c.resolveLocked(f, nil, context.Canceled)
		}
	}()
	v, rep = readLayer(f.ctx, f.key, c.readL2)
}

// load returns key's value from the key's flight: it waits for the flight's
// L2 read if one is under way, and otherwise makes sure the flight loads.
func (c *Cache[T]) load(ctx context.Context, key string, load func(context.Context) (T, error)) (*CacheValue[T], error) {
	c.flights.mu.Lock()
	f := c.flights.m[key]
	if f == nil {
		f = c.newFlight(ctx, key)
		c.startLoadLocked(f, load, false)
	} else {
		f.refs++
		c.stats.coalesced.Add(1)
	}
	c.flights.mu.Unlock()
	defer c.leave(f)

	if f.l2Done != nil {
		select {
		case <-f.l2Done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.l2Value != nil {
			return f.l2Value, nil
		}
		c.flights.mu.Lock()
		c.startLoadLocked(f, load, false)
		c.flights.mu.Unlock()
	}
	select {
	case <-f.done:
		return f.value, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startLoadLocked starts f's load unless it has started or f is answered.
// Called with g.mu held.
func (c *Cache[T]) startLoadLocked(f *flight[T], load func(context.Context) (T, error), refresh bool) {
	if f.loading || f.resolved {
		return
	}
	f.loading = true
	if !c.bg.Add() {
		c.resolveLocked(f, nil, ErrClosed)
		return
	}
	go c.runLoad(f, load, refresh)
}

// runLoad calls the loader for a flight, stores what it returns and answers
// the flight. A refresh that finds the key gone evicts it.
func (c *Cache[T]) runLoad(f *flight[T], load func(context.Context) (T, error), refresh bool) {
	defer c.bg.Done()
	var (
		v   *CacheValue[T]
		err = errGoexit
	)
	defer func() {
		c.flights.mu.Lock()
		defer c.flights.mu.Unlock()
		c.resolveLocked(f, v, err)
	}()
	gen := c.guard.Gen(f.key)
	c.stats.loads.Add(1)
	data, err := callLoader(f.ctx, load)
	now := time.Now()
	switch {
	case err == nil:
		loaded := c.newValue(data, 0, now)
		v = &loaded
		c.store(f, loaded, gen, now)
	case errors.Is(err, ErrNotFound):
		c.stats.notFound.Add(1)
		if c.opts.NegativeTTL > 0 {
			neg := c.newNegative(now)
			v = &neg
			c.store(f, neg, gen, now)
		} else if refresh {
			c.evict(f, gen)
		}
		err = fmt.Errorf("tiercache: load %q: %w", f.key, err)
	default:
		c.stats.loadErrors.Add(1)
		err = fmt.Errorf("tiercache: load %q: %w", f.key, err)
	}
}

// callLoader calls load, turning a panic into a *PanicError.
func callLoader[T any](ctx context.Context, load func(context.Context) (T, error)) (data T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return load(ctx)
}

// store writes a loaded value: into L1 now, into L2 through the Offload.
// Neither happens if the key was written since gen was taken: that write is
// newer than what the load read.
func (c *Cache[T]) store(f *flight[T], v CacheValue[T], gen uint64, now time.Time) {
	ctx := context.WithoutCancel(f.ctx) // the value is good even if every waiter has gone
	var err error
	if !c.guard.WriteIf(f.key, gen, true, func() { err = c.setL1(ctx, f.key, c.l1Copy(v, now)) }) {
		return
	}
	if err != nil {
		c.stats.writeErrors.Add(1)
	}
	after := c.guard.Gen(f.key)
	c.goBackground(ctx, OffloadKindWriteL2, func(ctx context.Context) {
		var err error
		c.guard.WriteIf(f.key, after, false, func() { err = c.setL2(ctx, f.key, v) })
		if err != nil {
			c.stats.writeErrors.Add(1)
		}
	})
}

// evict removes a key a refresh found gone from both layers, unless it was
// written meanwhile.
func (c *Cache[T]) evict(f *flight[T], gen uint64) {
	ctx := context.WithoutCancel(f.ctx)
	c.guard.WriteIf(f.key, gen, true, func() {
		if err := errors.Join(c.deleteL1(ctx, f.key), c.deleteL2(ctx, f.key)); err != nil {
			c.stats.writeErrors.Add(1)
		}
	})
}

// refreshMarks are the keys with a refresh scheduled; a key leaves the set
// when its refresh ends or is refused.
type refreshMarks struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// mark reports whether key was unmarked, marking it.
func (r *refreshMarks) mark(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[key]; ok {
		return false
	}
	r.m[key] = struct{}{}
	return true
}

func (r *refreshMarks) unmark(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
}

// refresh schedules one background reload of key, unless one is scheduled
// or a flight for the key is under way.
func (c *Cache[T]) refresh(ctx context.Context, key string, load func(context.Context) (T, error)) {
	if !c.refreshes.mark(key) {
		return
	}
	ok := c.goBackground(ctx, OffloadKindRefresh, func(ctx context.Context) {
		defer c.refreshes.unmark(key)
		c.flights.mu.Lock()
		if c.flights.m[key] != nil { // a read or load of the key is under way
			c.flights.mu.Unlock()
			return
		}
		f := c.newFlight(ctx, key)
		c.startLoadLocked(f, load, true)
		c.flights.mu.Unlock()
		defer c.leave(f)
		c.stats.refreshes.Add(1)
		select {
		case <-f.done:
		case <-ctx.Done():
		}
	})
	if !ok {
		c.refreshes.unmark(key)
	}
}
