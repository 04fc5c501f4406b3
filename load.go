package tiercache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/keyguard"
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
// The first caller runs the shared L2 read itself (on its own goroutine
// under SequentialReadPolicy, on the one its policy reads L2 on otherwise),
// with its own ctx, when that ctx has no deadline or one that leaves room
// for the whole L2Timeout (the read then ends before the caller's deadline
// can cut it short for the others), which spares two goroutine hand-offs
// per read; otherwise the read runs on the flight's goroutine. If that
// caller's ctx is cancelled during the read, it returns, the read is
// counted abandoned, and the callers still waiting get a fresh read on a
// goroutine of their own. Like every read of a layer, this relies on L2
// honouring ctx.
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
	if c.obs == nil {
		return c.getOrLoad(ctx, key, load, nil)
	}
	ctx, start := c.startOp(ctx, OpGetOrLoad)
	var info opInfo
	v, err := c.getOrLoad(ctx, key, load, &info)
	c.endOp(ctx, OpGetOrLoad, start, info, err == nil, 1, err)
	return v, err
}

func (c *Cache[T]) getOrLoad(ctx context.Context, key string, load func(ctx context.Context) (T, error), info *opInfo) (T, error) {
	var zero T
	if err := c.check(key); err != nil {
		return zero, err
	}
	if load == nil {
		return zero, fmt.Errorf("tiercache: get or load %q: nil load function", key)
	}
	if c.sequential {
		return c.getOrLoadSequential(ctx, key, load, info)
	}
	call := &loadCall[T]{c: c}
	defer call.finish()
	l1, readsL1 := c.l1Reader()
	res, err := c.policy.Read(ctx, key, l1, call.readL2, c.policyOff)
	c.recordL1(ctx, readsL1, res.L1) // the shared L2 reads record themselves
	if res.Value == nil && res.L2.Err != nil {
		var le *loadError
		if errors.As(res.L2.Err, &le) { // joined someone else's load, which failed
			return zero, le.err
		}
	}
	if v := res.Value; v != nil {
		if info != nil {
			if f := call.held(); res.Source == L2 && f != nil {
				// The flight's L2 value, or the load its reader joined.
				return c.loaded(ctx, key, v, nil, load, f, info)
			}
			info.src = res.Source
		}
		return c.serve(ctx, key, v, load) // an L2 hit was refilled by its flight
	}
	if err != nil && ctx.Err() != nil {
		return zero, err
	}
	// A miss, or every layer failed: load, on the flight whose L2 read
	// missed when this call still holds it.
	f := call.held()
	if f == nil {
		f = c.joinLoad(ctx, key, call.joined.Load())
		defer c.leave(f)
	}
	v, err := c.await(ctx, f, load)
	return c.loaded(ctx, key, v, err, load, f, info)
}

// getOrLoadSequential is GetOrLoad under SequentialReadPolicy, the default:
// L1, then the key's flight, which reads L2 and on a miss loads. It reads
// exactly as the policy does, without the closure a policy's L2 reader would
// cost on every call.
func (c *Cache[T]) getOrLoadSequential(ctx context.Context, key string, load func(context.Context) (T, error), info *opInfo) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, readCanceled(key, err)
	}
	l1, readsL1 := c.l1Reader()
	v, rep := readLayer(ctx, key, l1)
	c.recordL1(ctx, readsL1, rep)
	if v != nil {
		if info != nil {
			info.src = L1
		}
		return c.serve(ctx, key, v, load)
	}
	if err := ctx.Err(); err != nil {
		return zero, readCanceled(key, err)
	}
	inline := c.canReadInline(ctx)
	f, joined := c.joinRead(ctx, key, load, inline)
	if f == nil { // a refresh is loading the key: L2 likely holds the stale value
		if v, err := c.readL2Direct(ctx, key); err == nil && v != nil {
			if info != nil {
				info.src = L2
			}
			return c.serve(ctx, key, v, load)
		}
		f, joined = c.joinLoad(ctx, key, false), true
	}
	if joined {
		defer c.leave(f)
	} else {
		defer c.leaveLoader(f)
		if inline {
			c.readInline(ctx, f)
		}
	}
	v, err := c.await(ctx, f, load)
	return c.loaded(ctx, key, v, err, load, f, info)
}

// canReadInline reports whether the caller that starts a flight with ctx
// runs its L2 read itself rather than on a goroutine of the flight's: when
// ctx has no deadline, or one that leaves room for the whole L2Timeout, so
// that the read ends (found, missed, failed or timed out) before the
// caller's deadline can cut it short for the others waiting. That saves two
// goroutine hand-offs a read. If the caller's ctx is cancelled during the
// read, the caller returns and, when others wait, the read starts over on
// a goroutine (see readInline).
func (c *Cache[T]) canReadInline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	if !ok {
		return true
	}
	return c.opts.L2Timeout > 0 && time.Until(d) >= c.opts.L2Timeout
}

// readInline runs the L2 read of flight f, which its caller has just
// started, on the caller's goroutine and with the caller's ctx, and answers
// f as runL2 does; the refill of a hit is written first under RefillInline,
// handed to the Offload otherwise. When ctx ends
// before the read does, the read is reported abandoned and, if other
// callers wait for f, handed over to a goroutine of f's own that reads
// again; if none waits, f ends with ctx's error.
func (c *Cache[T]) readInline(ctx context.Context, f *flight[T]) {
	gen := c.guard.Ticket(f.key)
	f.since, f.hasSince = gen, true
	v, rep := (*CacheValue[T])(nil), goexitReport
	answered := false // false in the deferred call only after runtime.Goexit
	defer func() {
		if !answered { // v is nil unless the Goexit came from L1's Set in an inline refill
			c.answerL2(ctx, f, v, rep)
		}
	}()
	v, rep = readLayer(ctx, f.key, c.readL2)
	if rep.Status == StatusFailed && ctx.Err() != nil {
		answered = true
		c.abandonInline(ctx, f, rep)
		return
	}
	if v != nil { // written or handed over before the waiting callers wake, as runL2 does
		c.refill(ctx, f.key, v, gen)
	}
	answered = true
	c.answerL2(ctx, f, v, rep)
}

// answerL2 records the outcome of f's inline L2 read and wakes the callers
// waiting for it.
func (c *Cache[T]) answerL2(ctx context.Context, f *flight[T], v *CacheValue[T], rep LayerReport) {
	c.recordRead(ctx, L2, rep)
	c.flights.mu.Lock()
	defer c.flights.mu.Unlock()
	c.settleL2Locked(f, v, rep.Err)
}

// settleL2Locked gives f's L2 read its outcome and wakes the callers
// waiting for it; a hit answers f. Called with the group's lock held.
func (c *Cache[T]) settleL2Locked(f *flight[T], v *CacheValue[T], err error) {
	f.l2Value, f.l2Err = v, err
	close(f.l2Done)
	if v != nil {
		c.resolveLocked(f, v, nil)
	}
}

// abandonInline ends f's inline L2 read, cut short by its caller's ctx: the
// read is reported abandoned and starts over on a goroutine of f's own when
// other callers wait for f; otherwise f ends with the caller's error (or
// ErrClosed, when the cache no longer starts work for the others).
func (c *Cache[T]) abandonInline(ctx context.Context, f *flight[T], rep LayerReport) {
	rep.Status = StatusAbandoned // the caller left: cancelled, not failed
	c.recordRead(ctx, L2, rep)
	c.flights.mu.Lock()
	defer c.flights.mu.Unlock()
	others := f.refs > 1 && !f.resolved
	if others && c.bg.Add() {
		c.flightCtxLocked(f)
		c.workers.Go(func() { c.runL2(f) })
		return
	}
	c.settleL2Locked(f, nil, rep.Err)
	err := ctx.Err()
	if others {
		err = ErrClosed
	}
	c.resolveLocked(f, nil, err)
}

// loaded turns what flight f answered into GetOrLoad's answer.
func (c *Cache[T]) loaded(ctx context.Context, key string, v *CacheValue[T], err error, load func(context.Context) (T, error), f *flight[T], info *opInfo) (T, error) {
	if err != nil {
		if cerr := ctx.Err(); err == cerr {
			err = readCanceled(key, err) // the caller's ctx ended while it waited
		}
		var zero T
		return zero, err
	}
	if info != nil {
		if v == f.l2Value {
			info.src = L2
		} else {
			info.loaded = true
		}
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
	values context.Context // the first caller's ctx, for its values
	// ctx has the first caller's values and ends when cancel is called: when
	// every caller has left, or Close's deadline passes. A flight whose L2
	// read its first caller runs itself (see canReadInline) gets it, under
	// the group's lock, only when work of its own starts on a goroutine: a
	// load, or the L2 read handed over when that caller left.
	ctx     context.Context
	cancel  context.CancelFunc
	ctxMem  readctx.Pair // what ctx points to, allocated with the flight
	bg      readctx.Pair // what background returns
	refresh bool         // a background refresh: readers do not wait for it
	// since, when hasSince, is the key's ticket taken before the reads that
	// found the key missing (the flight's L2 read, or a batch's reads of
	// both layers): the load's writes are checked against it, so that a
	// Set landing after those reads is not overwritten by a value loaded
	// on their word. Written before the flight's load starts.
	since    keyguard.Ticket
	hasSince bool
	// load, set by a Sequential GetOrLoad that started the flight after
	// missing L1, is the loader the flight's goroutine goes on with when L2
	// misses or fails, rather than waking the callers for one of them to
	// start the load on another goroutine.
	load func(context.Context) (T, error)

	// Guarded by flightGroup.mu.
	refs      int  // callers holding the flight
	loading   bool // the load has started
	resolved  bool // done is closed
	pendingL2 bool // answered, its value still on its way to L2: it stays joinable until it lands
	// successor, set when a refresh took the key over while this flight
	// was reading L2, is the refresh's flight: should the read miss, this
	// flight answers with the successor's load rather than loading the key
	// a second time.
	successor *flight[T]
	// answered is the ticket the value of a flight that stays joinable was
	// stored under (the load's own, taken before its reads): once a write,
	// a delete or an invalidation of the key voids it, even one that landed
	// before the flight was answered, the flight's value is older than the
	// cache's and nobody joins it. Set with pendingL2.
	answered keyguard.Ticket

	// abandoned is set when every caller left the flight before it was
	// answered: a later caller starts a fresh flight of the key, whose
	// writes are newer, so this one's writes, checked under the key's
	// stripe lock, do not happen.
	abandoned atomic.Bool

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

// newFlight makes a flight for key with the values of ctx and registers it,
// replacing any other. Called with the group's lock held.
func (c *Cache[T]) newFlight(ctx context.Context, key string) *flight[T] {
	f := c.registerFlight(ctx, key)
	c.flightCtxLocked(f)
	return f
}

// registerFlight makes a flight for key, without a ctx yet, and registers
// it, replacing any other. Called with the group's lock held.
func (c *Cache[T]) registerFlight(ctx context.Context, key string) *flight[T] {
	f := &flight[T]{key: key, values: ctx, refs: 1, done: make(chan struct{})}
	c.flights.m[key] = f
	return f
}

// background returns the ctx of the writes f's load leaves behind (a
// store, an eviction), which go on after every caller has left: the values
// of f's ctx, without its lifetime. Only f's load calls it, once, before
// those writes start.
func (f *flight[T]) background() context.Context {
	f.bg.Set(f.ctx, context.Background())
	return &f.bg
}

// flightCtxLocked gives f its ctx unless it has one: the values of the
// caller that started it, ended when every caller has left (see leave) or
// by Close's deadline. It is called for a flight some caller still holds.
// Called with the group's lock held.
func (c *Cache[T]) flightCtxLocked(f *flight[T]) {
	if f.ctx != nil {
		return
	}
	life, cancel := context.WithCancel(c.closeCtx)
	f.ctxMem.Set(f.values, life)
	f.ctx, f.cancel = &f.ctxMem, cancel
}

// resolveLocked gives f its answer and removes it from the group. Called
// with the group's lock held.
func (c *Cache[T]) resolveLocked(f *flight[T], v *CacheValue[T], err error) {
	if f.resolved {
		return
	}
	f.value, f.err, f.resolved = v, err, true
	close(f.done)
	if c.flights.m[f.key] == f && !f.pendingL2 {
		delete(c.flights.m, f.key)
	}
}

// joinableLocked reports whether a caller may join f, the key's flight in
// the group. A flight under way may be joined; an answered one, still in
// the group while its value is on its way to L2, only while that value has
// not expired and the key has not been written, deleted or invalidated
// since. Called with the group's lock held.
func (c *Cache[T]) joinableLocked(f *flight[T]) bool {
	if !f.resolved {
		return true
	}
	if f.value != nil && f.value.Expired(time.Now()) {
		return false
	}
	return c.guard.Holds(f.key, f.answered, keyguard.Store)
}

// flightLocked returns the key's flight a caller may join, or nil. Called
// with the group's lock held.
func (c *Cache[T]) flightLocked(key string) *flight[T] {
	if f := c.flights.m[key]; f != nil && c.joinableLocked(f) {
		return f
	}
	return nil
}

// landed removes answered flights whose values have reached L2 (or never
// will) from the group: until then a caller that misses L1 joins them and
// takes their value, instead of reading L2 before the value is there and
// loading it again.
func (c *Cache[T]) landed(fs ...*flight[T]) {
	c.flights.mu.Lock()
	defer c.flights.mu.Unlock()
	for _, f := range fs {
		f.pendingL2 = false
		if f.resolved && c.flights.m[f.key] == f {
			delete(c.flights.m, f.key)
		}
	}
}

// leaveLoader is leave for the caller that started f with its loader: the
// flight no longer goes on with that loader, which may need what its
// caller owned; a caller still waiting starts the load with its own.
func (c *Cache[T]) leaveLoader(f *flight[T]) {
	c.flights.mu.Lock()
	f.load = nil
	c.flights.mu.Unlock()
	c.leave(f)
}

// leave gives up a hold on f. The last holder of an unanswered flight
// cancels it.
func (c *Cache[T]) leave(f *flight[T]) {
	c.flights.mu.Lock()
	defer c.flights.mu.Unlock()
	f.refs--
	if f.refs > 0 {
		return
	}
	if f.cancel != nil {
		f.cancel()
		f.cancel = nil // once: a flight joined again after its answer has nothing more to end (see batch.release)
	}
	if !f.resolved {
		f.abandoned.Store(true)
	}
	if c.flights.m[f.key] == f && !(f.resolved && f.pendingL2) {
		delete(c.flights.m, f.key)
	}
}

// joinRead holds the key's flight, starting one that reads L2 when there is
// none, and reports whether it joined one someone else started (counted in
// Stats.Coalesced). A flight it starts with a non-nil load goes on to load
// with it when L2 misses. With inline, a flight it starts reads nothing:
// the caller runs its L2 read with readInline. It returns nil when the
// flight under way is a background refresh, which a read does not wait for.
func (c *Cache[T]) joinRead(ctx context.Context, key string, load func(context.Context) (T, error), inline bool) (f *flight[T], joined bool) {
	c.flights.mu.Lock()
	defer c.flights.mu.Unlock()
	f = c.flightLocked(key)
	switch {
	case f == nil && inline:
		f = c.registerFlight(ctx, key)
		f.l2Done = make(chan struct{})
		return f, false
	case f == nil:
		f = c.newFlight(ctx, key)
		f.l2Done = make(chan struct{})
		f.load = load
		if c.bg.Add() {
			c.workers.Go(func() { c.runL2(f) })
		} else {
			f.l2Err = ErrClosed
			close(f.l2Done)
			c.resolveLocked(f, nil, ErrClosed)
		}
		return f, false
	case f.refresh:
		return nil, false
	}
	f.refs++
	c.stats.coalesced.Add(1)
	return f, true
}

// joinLoad holds the key's flight for a load, making one that only loads
// when there is none. counted says the caller has been counted as coalesced
// already.
func (c *Cache[T]) joinLoad(ctx context.Context, key string, counted bool) *flight[T] {
	c.flights.mu.Lock()
	defer c.flights.mu.Unlock()
	f := c.flightLocked(key)
	if f == nil {
		return c.newFlight(ctx, key)
	}
	f.refs++
	if !counted {
		c.stats.coalesced.Add(1)
	}
	return f
}

// await waits for f's L2 read, if it has one, and when that misses makes
// sure f loads with load, then waits for f's answer. It returns ctx's error
// as soon as ctx ends.
func (c *Cache[T]) await(ctx context.Context, f *flight[T], load func(context.Context) (T, error)) (*CacheValue[T], error) {
	if f.l2Done != nil {
		if v, err, answered := waitL2(ctx, f); answered {
			return v, err
		}
	}
	c.flights.mu.Lock()
	c.startLoadLocked(f, load, false)
	c.flights.mu.Unlock()
	return waitDone(ctx, f)
}

// waitL2 waits for f's L2 read. It has an answer when L2 hit or ctx ended;
// otherwise L2 missed or failed, with that failure.
func waitL2[T any](ctx context.Context, f *flight[T]) (v *CacheValue[T], err error, answered bool) {
	select {
	case <-f.l2Done:
	case <-ctx.Done():
		return nil, ctx.Err(), true
	}
	if f.l2Value != nil {
		return f.l2Value, nil, true
	}
	return nil, f.l2Err, false
}

// waitDone waits for f's answer, or for ctx to end.
func waitDone[T any](ctx context.Context, f *flight[T]) (*CacheValue[T], error) {
	select {
	case <-f.done:
		return f.value, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readL2Direct reads L2 outside any flight, counting the read.
func (c *Cache[T]) readL2Direct(ctx context.Context, key string) (*CacheValue[T], error) {
	v, rep := readLayer(ctx, key, c.readL2)
	c.recordRead(ctx, L2, rep)
	return v, rep.Err
}

// loadCall is one GetOrLoad under a policy other than Sequential. Its L2
// reader holds the key's flight and keeps the hold for the call's load, so
// that a miss loads on the very flight whose L2 read missed: no second L2
// read, no second count. The hold is given up by whichever of the reader
// and the call ends last: a losing race read may outlive the call.
type loadCall[T any] struct {
	c      *Cache[T]
	joined atomic.Bool // the reader joined a flight someone else started

	mu       sync.Mutex
	f        *flight[T] // held by the reader, for the load
	finished bool       // GetOrLoad has returned
}

// readL2 is the call's L2 reader: it answers with the flight's L2 value,
// or, when the flight is loading, with the loaded value (or the load's
// error, as a *loadError).
func (lc *loadCall[T]) readL2(ctx context.Context, key string) (*CacheValue[T], error) {
	c := lc.c
	inline := c.canReadInline(ctx)
	f, joined := c.joinRead(ctx, key, nil, inline) // the policy decides whether to load
	if f == nil {
		return c.readL2Direct(ctx, key)
	}
	lc.joined.Store(joined)
	defer lc.keep(f)
	if !joined && inline {
		c.readInline(ctx, f) // on the goroutine the policy reads L2 on
	}
	var v *CacheValue[T]
	var err error
	if f.l2Done != nil { // a flight that loads only has no L2 read to wait for
		var answered bool
		if v, err, answered = waitL2(ctx, f); answered {
			return v, err
		}
		c.flights.mu.Lock()
		loading := f.loading
		c.flights.mu.Unlock()
		if !loading {
			return nil, err // a miss, or L2's failure
		}
	}
	if v, err = waitDone(ctx, f); err != nil && ctx.Err() == nil {
		return nil, &loadError{err}
	}
	return v, err
}

// keep hands the reader's hold on f to the call, or gives it up when the
// call has already returned.
func (lc *loadCall[T]) keep(f *flight[T]) {
	lc.mu.Lock()
	if lc.finished {
		lc.mu.Unlock()
		lc.c.leave(f)
		return
	}
	lc.f = f
	lc.mu.Unlock()
}

// held returns the flight the call holds, or nil.
func (lc *loadCall[T]) held() *flight[T] {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.f
}

// finish gives up the call's hold when GetOrLoad returns.
func (lc *loadCall[T]) finish() {
	lc.mu.Lock()
	f := lc.f
	lc.f, lc.finished = nil, true
	lc.mu.Unlock()
	if f != nil {
		lc.c.leave(f)
	}
}

// runL2 is a flight's L2 read. A hit answers the flight and is refilled
// into L1, once for every caller that shared it (under RefillInline before
// they have the value, otherwise after); a miss leaves the flight
// open for a load, which the same goroutine then runs when the flight has
// a loader of its own (see flight.load).
func (c *Cache[T]) runL2(f *flight[T]) {
	defer c.bg.Done()
	gen := c.guard.Ticket(f.key)
	f.since, f.hasSince = gen, true
	var v *CacheValue[T]
	rep := goexitReport
	returned := false // readLayer returned: the reader did not call runtime.Goexit
	refilled := false // the hit's inline refill was written, or called runtime.Goexit
	defer func() {
		// Abandoned rather than failed when every caller left.
		c.recordRead(f.ctx, L2, rep)
		var refill func() // the refill of a hit, once the callers have it
		if v != nil && !refilled {
			if j := c.newRefill(f.ctx, f.key, v, gen); j != nil {
				refill = c.followUp(f.ctx, OffloadKindRefill, j.write, nil)
			}
		}
		c.flights.mu.Lock()
		c.settleL2Locked(f, v, rep.Err)
		var load func(context.Context) (T, error)
		switch {
		case v != nil: // answered by settleL2Locked
		case f.refs == 0:
			c.resolveLocked(f, nil, context.Canceled)
		case returned && f.load != nil && !f.loading && !f.resolved && f.successor == nil:
			f.loading = true
			load = f.load
		}
		f.load = nil
		if load != nil && !c.bg.Add() {
			c.resolveLocked(f, nil, ErrClosed)
			load = nil
		}
		c.flights.mu.Unlock()
		switch {
		case load != nil:
			c.runLoad(f, load, false)
		case refill != nil:
			refill()
		}
	}()
	v, rep = readLayer(f.ctx, f.key, c.readL2)
	returned = true
	// Under RefillInline, before the callers have the value; here rather
	// than in the deferred call, so that a Goexit in L1's Set still lets
	// that call answer them.
	if v != nil && c.refillsInline(f.ctx) {
		refilled = true
		c.writeRefill(f.ctx, f.key, c.l1Copy(*v, time.Now()), gen)
	}
}

// startLoadLocked starts f's load unless it has started or f is answered;
// a flight with a successor follows it instead. Called with g.mu held.
func (c *Cache[T]) startLoadLocked(f *flight[T], load func(context.Context) (T, error), refresh bool) {
	if f.loading || f.resolved {
		return
	}
	f.loading = true
	if !c.bg.Add() {
		c.resolveLocked(f, nil, ErrClosed)
		return
	}
	c.flightCtxLocked(f)
	if s := f.successor; s != nil {
		s.refs++ // its refresh may end before f's callers have their answer
		c.workers.Go(func() { c.follow(f, s) })
		return
	}
	c.workers.Go(func() { c.runLoad(f, load, refresh) })
}

// follow answers f with what s, the refresh that took f's key over, loads,
// or with f's ctx's error when every caller of f leaves first; then it
// gives up the hold on s that startLoadLocked took.
func (c *Cache[T]) follow(f, s *flight[T]) {
	defer c.bg.Done()
	defer c.leave(s)
	var v *CacheValue[T]
	var err error
	select {
	case <-s.done:
		v, err = s.value, s.err
	case <-f.ctx.Done():
		err = f.ctx.Err()
	}
	c.flights.mu.Lock()
	defer c.flights.mu.Unlock()
	c.resolveLocked(f, v, err)
}

// runLoad calls the loader for a flight, stores what it returns and answers
// the flight. A refresh that finds the key gone evicts it.
func (c *Cache[T]) runLoad(f *flight[T], load func(context.Context) (T, error), refresh bool) {
	defer c.bg.Done()
	var (
		v    *CacheValue[T]
		err  = errGoexit
		toL2 func() // the L2 write of what was loaded, once the callers have it
	)
	defer func() {
		c.flights.mu.Lock()
		c.resolveLocked(f, v, err)
		c.flights.mu.Unlock()
		if toL2 != nil {
			toL2()
		}
	}()
	gen := f.since // see flight.since
	if !f.hasSince {
		gen = c.guard.Ticket(f.key)
	}
	c.stats.loads.Add(1)
	start := time.Now()
	if c.obs != nil {
		defer func() { c.observeLoad(f.ctx, start, 1, err, f) }()
	}
	data, err := callLoader(f.ctx, load)
	now := time.Now()
	switch {
	case err == nil:
		loaded := c.newValue(data, 0, now)
		v = &loaded
		toL2 = c.store(f, loaded, gen, now)
	case errors.Is(err, ErrNotFound):
		c.stats.notFound.Add(1)
		if c.opts.NegativeTTL > 0 {
			neg := c.newNegative(now)
			v = &neg
			toL2 = c.store(f, neg, gen, now)
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

// store writes a loaded value into L1 now, and hands its L2 write (which
// also announces the key to the other caches) to the Offload through
// followUp, returning what the flight runs once its callers have their
// answer (nil when there is nothing left to run). Neither write happens if
// the key was written or invalidated since gen was taken (that write is
// newer than what the load read), nor once f is abandoned (a fresh flight
// of the key may have written a newer value).
func (c *Cache[T]) store(f *flight[T], v CacheValue[T], gen keyguard.Ticket, now time.Time) (toL2 func()) {
	ctx := f.background()
	var err error
	wrote := false
	c.guard.WriteIf(f.key, gen, keyguard.Store, func() {
		if wrote = !f.abandoned.Load(); wrote {
			err = c.setL1IfTrusted(ctx, f.key, c.l1Copy(v, now))
		}
	})
	if !wrote {
		return
	}
	if err != nil {
		c.writeFailed(ctx, L1, err)
	}
	// The L2 write is checked against the load's own ticket: a Store does
	// not void it, and a Set of the key since the load began does, even one
	// that ended before this line.
	c.flights.mu.Lock()
	f.pendingL2, f.answered = true, gen
	c.flights.mu.Unlock()
	return c.followUp(ctx, OffloadKindWriteL2, func(ctx context.Context) {
		defer c.landed(f)
		c.copyOneToL2(ctx, f, v, gen)
	}, func() { c.landed(f) })
}

// copyOneToL2 is copyToL2 for the value v of one flight f: it writes v
// into L2 unless f's key was written or invalidated since gen was taken, or
// f is abandoned, and announces the key, also when the write failed unless
// the breaker refused it.
func (c *Cache[T]) copyOneToL2(ctx context.Context, f *flight[T], v CacheValue[T], gen keyguard.Ticket) {
	var err error
	wrote := false
	c.guard.WriteIf(f.key, gen, keyguard.StoreL2, func() {
		if wrote = !f.abandoned.Load(); wrote {
			err = c.setL2(ctx, f.key, v)
		}
	})
	if err != nil {
		c.writeFailed(ctx, L2, err)
	}
	if wrote && !l2Untouched(err, 1) { // a failed write may have landed, as a Set's
		c.announce(ctx, f.key)
	}
}

// copyToL2 writes loaded values into L2, the keys whose ticket still holds
// and whose flight (flights[i], of keys[i]) is not abandoned, and announces
// them, also when the write failed, unless the breaker refused every one.
// It writes under the keys' stripe L2 locks: a Set of one of them that
// begins meanwhile waits for this write (at most until the Set's deadline)
// and lands after it, while the stripes' L1 writes go on.
func (c *Cache[T]) copyToL2(ctx context.Context, keys []string, vals []CacheValue[T], tickets []keyguard.Ticket, flights []*flight[T]) {
	var err error
	var ok []int
	c.guard.WriteManyIf(keys, tickets, keyguard.StoreL2, func(held []int) {
		if ok = notAbandoned(held, flights); len(ok) == 0 {
			return
		}
		k, v := pickValues(keys, vals, ok)
		if len(k) == 1 {
			err = c.setL2(ctx, k[0], v[0])
		} else {
			err = c.writeLayerMany(ctx, L2, k, v)
		}
	})
	if err != nil {
		c.writeFailed(ctx, L2, err)
	}
	if len(ok) > 0 && !l2Untouched(err, len(ok)) { // a failed write may have landed, as a Set's
		k, _ := pickValues(keys, vals, ok)
		c.announce(ctx, k...)
	}
}

// evict removes a key a refresh found gone from both layers, unless it was
// written meanwhile or f is abandoned, and announces it.
func (c *Cache[T]) evict(f *flight[T], gen keyguard.Ticket) {
	ctx := f.background()
	evicted := false
	var err error
	c.guard.WriteIf(f.key, gen, keyguard.StoreL2, func() {
		if evicted = !f.abandoned.Load(); evicted {
			err = c.deleteL2(ctx, f.key)
		}
	})
	if !evicted {
		return
	}
	// L1 after L2, under the stripe's L1 lock: a refill under way, which
	// read the value before L2 lost it, lands first and is evicted.
	c.guard.WriteIf(f.key, gen, keyguard.Store, func() { err = errors.Join(c.deleteL1(ctx, f.key), err) })
	if err != nil {
		c.writeFailed(ctx, NoLayer, err)
	}
	c.announce(ctx, f.key)
}

// notAbandoned returns the indexes in idx whose flight, in flights, is not
// abandoned.
func notAbandoned[T any](idx []int, flights []*flight[T]) []int {
	out := idx[:0:0]
	for _, i := range idx {
		if !flights[i].abandoned.Load() {
			out = append(out, i)
		}
	}
	return out
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
// or a load of the key is under way. A flight still reading L2 (such as a
// race's losing read) is taken over: should its read miss, it answers with
// the refresh's load instead of loading the key a second time. GetOrLoad
// and GetOrLoadMany calls that miss L1 meanwhile read L2, which likely
// still holds the stale value, and wait for the refresh's load only when L2
// misses too; reads do not wait.
func (c *Cache[T]) refresh(ctx context.Context, key string, load func(context.Context) (T, error)) {
	if !c.refreshes.mark(key) {
		return
	}
	unmark := func() { c.refreshes.unmark(key) }
	ok := c.goBackgroundOrDrop(ctx, OffloadKindRefresh, func(ctx context.Context) {
		defer unmark()
		c.flights.mu.Lock()
		old := c.flightLocked(key)
		if old != nil && old.loading { // a load of the key is under way
			c.flights.mu.Unlock()
			return
		}
		f := c.newFlight(ctx, key)
		if old != nil && !old.resolved {
			old.successor = f // its L2 read is under way: should it miss, old answers with f's load
		}
		f.refresh = true
		c.startLoadLocked(f, load, true)
		c.flights.mu.Unlock()
		defer c.leave(f)
		c.stats.refreshes.Add(1)
		c.observe(ctx, Event{Kind: EventRefresh, Keys: 1})
		select {
		case <-f.done:
		case <-ctx.Done():
		}
	}, unmark)
	if !ok {
		unmark()
	}
}

// observeLoad observes the end of a load of keys that began at start, for
// flight f (nil for a batch), with the callers then waiting for it.
func (c *Cache[T]) observeLoad(ctx context.Context, start time.Time, keys int, err error, f *flight[T]) {
	waiters := 0
	if f != nil {
		c.flights.mu.Lock()
		waiters = f.refs
		c.flights.mu.Unlock()
	}
	c.observe(ctx, Event{Kind: EventLoad, Duration: time.Since(start), Keys: keys, Waiters: waiters, Err: err})
}
