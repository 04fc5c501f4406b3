package tiercache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/keyguard"
	"github.com/tiercache/tiercache/internal/readctx"
)

// BatchBackend is the optional capability of a Backend to read and write
// many keys in one round trip, found by type assertion. A Backend without it
// is read and written key by key, concurrently (at most
// BatchConcurrency keys at once), so batching works with any Backend.
type BatchBackend[T any] interface {
	// GetMany returns one entry per key, in the order of keys: the value,
	// or nil for a miss; never an expired value. An error with a full slice
	// (len(keys) entries) means that the nil entries failed and the others
	// are good, unless the error, or one it wraps, has a method
	// FailedKeys() []string: then exactly those keys failed and the other
	// nil entries are misses. An error with any other slice means the whole
	// call failed.
	GetMany(ctx context.Context, keys []string) ([]*CacheValue[T], error)
	// SetMany stores values[i] under keys[i], as Set does.
	SetMany(ctx context.Context, keys []string, values []CacheValue[T]) error
}

// BatchConcurrency bounds the operations a batch runs at once on a Backend
// that is not a BatchBackend.
const BatchConcurrency = 16

// GetMany returns the values of keys: a map holding the keys that have a
// value (a miss, or a remembered absence, is absent). Keys are deduplicated.
//
// L1 is read in one batch, and L2 in one batch, by the ReadPolicy's rules
// applied per key: SequentialReadPolicy reads L2 for L1's misses only;
// ParallelReadPolicy and RaceReadPolicy read both layers concurrently and
// choose per key as they do for one key. L2 hits are copied into L1 in one
// batch, in the background. The error is non-nil when ctx ended, or when
// every layer failed for some keys, which it names; the values found are
// returned with it.
func (c *Cache[T]) GetMany(ctx context.Context, keys []string) (map[string]T, error) {
	if c.obs == nil {
		return c.getMany(ctx, keys)
	}
	ctx, start := c.startOp(ctx, OpGetMany)
	out, err := c.getMany(ctx, keys)
	c.endOp(ctx, OpGetMany, start, opInfo{}, len(out) > 0, len(keys), err)
	return out, err
}

func (c *Cache[T]) getMany(ctx context.Context, keys []string) (map[string]T, error) {
	uniq, err := c.checkKeys(keys)
	if err != nil {
		return nil, err
	}
	c.stats.batchCalls.Add(1)
	c.stats.batchKeys.Add(uint64(len(uniq)))
	if len(uniq) == 0 {
		return map[string]T{}, nil
	}
	r := c.readBatch(ctx, uniq)
	out := make(map[string]T, len(uniq))
	var failed []string
	for i, key := range uniq {
		switch v := r.vals[i]; {
		case v == nil:
			if r.failed[i] != nil {
				failed = append(failed, key)
			}
		case v.Negative:
			c.stats.negativeHits.Add(1)
		default:
			out[key] = v.Data
		}
	}
	if err := ctx.Err(); err != nil && len(out) < len(uniq) {
		return out, fmt.Errorf("tiercache: get many: %w", err)
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("tiercache: get many: every layer failed for %s: %w", keyList(failed), joinKeyErrors(uniq, r.failed))
	}
	return out, nil
}

// GetOrLoadMany returns the values of keys, loading the missing ones with
// one call of load. Keys are deduplicated; the result holds the keys that
// have values (a remembered absence, or a key load did not return, is
// absent).
//
// Keys are read as GetMany reads them; the keys still missing go to load in
// one call with only those keys. Under SequentialReadPolicy (the default)
// the keys L1 missed are read from L2 by the batch itself, in one round
// trip, shared with every GetOrLoad and GetOrLoadMany of those keys: a key
// another caller is already reading or loading is awaited, not read or
// loaded again, and concurrent calls with overlapping keys load each key
// once. The batch's load runs with the first caller's context values and is
// cancelled only when every caller waiting for any of its keys has gone.
//
// load returns the values of the keys that exist. A key it omits does not
// exist, as when GetOrLoad's loader returns ErrNotFound: it counts once in
// Stats.NotFound, is absent from the result without an error, and with
// NegativeTTL is remembered (a refresh without it removes the key). An
// error of load wrapping ErrNotFound says that none of the keys it was
// asked for exists: it is taken as a map without any of them, and the map
// returned with it is ignored. Any other error fails those keys: it counts
// in Stats.LoadErrors, nothing is cached, and the values already found are
// returned with an error naming the keys.
//
// Loaded values, and with NegativeTTL the keys load omitted, are in L1
// before GetOrLoadMany returns; their L2 write goes through the Offload in
// one batch. Stale values are served and refreshed in the background, in
// one batch. An L2 failure degrades to load.
func (c *Cache[T]) GetOrLoadMany(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error)) (map[string]T, error) {
	if c.obs == nil {
		return c.getOrLoadMany(ctx, keys, load, nil)
	}
	ctx, start := c.startOp(ctx, OpGetOrLoadMany)
	var info opInfo
	out, err := c.getOrLoadMany(ctx, keys, load, &info)
	c.endOp(ctx, OpGetOrLoadMany, start, info, len(out) > 0, len(keys), err)
	return out, err
}

// getOrLoadMany is GetOrLoadMany; info, when not nil, learns whether every
// value it returns was loaded, no layer serving one.
func (c *Cache[T]) getOrLoadMany(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]T, error), info *opInfo) (map[string]T, error) {
	uniq, err := c.checkKeys(keys)
	if err != nil {
		return nil, err
	}
	if load == nil {
		return nil, errors.New("tiercache: get or load many: nil load function")
	}
	c.stats.batchCalls.Add(1)
	c.stats.batchKeys.Add(uint64(len(uniq)))
	if len(uniq) == 0 {
		return map[string]T{}, nil
	}

	vals := make([]*CacheValue[T], len(uniq))
	var pending []int // indexes of the keys to take from flights
	withL2 := c.sequential
	var before []keyguard.Ticket // see flight.since
	if withL2 {
		l1 := c.readLayerMany(ctx, L1, uniq)
		copy(vals, l1.vals)
	} else {
		before = make([]keyguard.Ticket, len(uniq))
		for i, key := range uniq {
			before[i] = c.guard.Ticket(key)
		}
		copy(vals, c.readBatch(ctx, uniq).vals)
	}
	for i, v := range vals {
		if v == nil {
			pending = append(pending, i)
		}
	}
	if withL2 && len(pending) > 0 {
		pending = c.readRefreshing(ctx, uniq, pending, vals)
	}
	if info != nil {
		info.loaded = !anyServed(vals, nil, nil)
	}
	var errs []error
	if len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return c.batchAnswer(ctx, uniq, vals, load, fmt.Errorf("tiercache: get or load many: %w", err))
		}
		flights := c.joinMany(ctx, uniq, pending, withL2, load, before)
		defer func() {
			for _, f := range flights {
				c.leave(f)
			}
		}()
		errs = c.awaitMany(ctx, uniq, pending, flights, vals, load)
		if info != nil && info.loaded {
			info.loaded = !anyServed(vals, pending, flights)
		}
		// A value read before those waits may have expired during them: it
		// is a miss now, read from L2 and loaded as the others were.
		if again := expiredSince(vals, pending); len(again) > 0 && ctx.Err() == nil {
			for _, i := range again {
				vals[i] = nil
			}
			flights := c.joinMany(ctx, uniq, again, true, load, nil)
			defer func() {
				for _, f := range flights {
					c.leave(f)
				}
			}()
			errs = append(errs, c.awaitMany(ctx, uniq, again, flights, vals, load)...)
		}
	}
	var err2 error
	if len(errs) > 0 {
		err2 = errors.Join(errs...)
	}
	return c.batchAnswer(ctx, uniq, vals, load, err2)
}

// expiredSince returns the indexes of vals, other than those at pending,
// whose values have expired by now.
func expiredSince[T any](vals []*CacheValue[T], pending []int) []int {
	var out []int
	now := time.Now()
	for i, v := range vals {
		if v != nil && v.Expired(now) {
			out = append(out, i)
		}
	}
	if len(out) == 0 {
		return nil
	}
	waited := make(map[int]bool, len(pending))
	for _, i := range pending {
		waited[i] = true
	}
	return slices.DeleteFunc(out, func(i int) bool { return waited[i] })
}

// anyServed reports whether a layer served one of vals that is not a
// remembered absence: any of them, or with flights, those of the keys at
// pending that are their flight's L2 value rather than a loaded one.
func anyServed[T any](vals []*CacheValue[T], pending []int, flights []*flight[T]) bool {
	if flights == nil {
		for _, v := range vals {
			if v != nil && !v.Negative {
				return true
			}
		}
		return false
	}
	for j, f := range flights {
		if v := vals[pending[j]]; v != nil && !v.Negative && v == f.l2Value {
			return true
		}
	}
	return false
}

// readRefreshing reads from L2 the keys of pending that a background
// refresh is loading, as GetOrLoad does: L2 likely holds their stale values,
// which are served without waiting for the refresh. It fills vals with the
// hits and returns the keys still pending, which join the refreshes' loads.
func (c *Cache[T]) readRefreshing(ctx context.Context, keys []string, pending []int, vals []*CacheValue[T]) []int {
	var refreshing []int
	c.flights.mu.Lock()
	for _, i := range pending {
		if f := c.flightLocked(keys[i]); f != nil && f.refresh {
			refreshing = append(refreshing, i)
		}
	}
	c.flights.mu.Unlock()
	if len(refreshing) == 0 {
		return pending
	}
	rk := make([]string, len(refreshing))
	for j, i := range refreshing {
		rk[j] = keys[i]
	}
	r := c.readLayerMany(ctx, L2, rk)
	for j, i := range refreshing {
		vals[i] = r.vals[j]
	}
	still := pending[:0]
	for _, i := range pending {
		if vals[i] == nil {
			still = append(still, i)
		}
	}
	return still
}

// batchAnswer turns the values found for keys into GetOrLoadMany's answer,
// scheduling one refresh for the stale ones.
func (c *Cache[T]) batchAnswer(ctx context.Context, keys []string, vals []*CacheValue[T], load func(context.Context, []string) (map[string]T, error), err error) (map[string]T, error) {
	out := make(map[string]T, len(keys))
	var stale []string
	var now time.Time
	for i, v := range vals {
		if v == nil {
			continue
		}
		if !v.Stale.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			if v.IsStale(now) {
				c.stats.staleServed.Add(1)
				stale = append(stale, keys[i])
			}
		}
		if v.Negative {
			c.stats.negativeHits.Add(1)
			continue
		}
		out[keys[i]] = v.Data
	}
	if len(stale) > 0 {
		c.refreshMany(ctx, stale, load)
	}
	return out, err
}

// checkKeys rejects calls after Close and empty keys, and returns keys
// deduplicated, in their first order.
func (c *Cache[T]) checkKeys(keys []string) ([]string, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	seen := make(map[string]struct{}, len(keys))
	uniq := make([]string, 0, len(keys))
	for i, key := range keys {
		if key == "" {
			return nil, fmt.Errorf("tiercache: key %d of %d: empty key", i, len(keys))
		}
		if _, dup := seen[key]; !dup {
			seen[key] = struct{}{}
			uniq = append(uniq, key)
		}
	}
	return uniq, nil
}

// layerBatch is what reading keys from one layer came to.
type layerBatch[T any] struct {
	vals []*CacheValue[T] // per key: the value; nil for a miss or a failure
	errs []error          // per key: the failure; nil for a hit or a miss
}

// readLayerMany reads keys from layer l: one GetMany on a BatchBackend, or
// concurrent Gets. Each key is counted in the layer's stats, with the
// batch's latency. A distrusted L1 is not read: every key misses.
func (c *Cache[T]) readLayerMany(ctx context.Context, l Layer, keys []string) layerBatch[T] {
	out := layerBatch[T]{vals: make([]*CacheValue[T], len(keys)), errs: make([]error, len(keys))}
	backend, read, timeout := c.l2, c.readL2, c.opts.L2Timeout
	if l == L1 {
		if !c.l1Trusted() {
			return out
		}
		backend, read, timeout = c.l1, c.readL1, c.opts.L1Timeout
	}
	bb, batch := backend.(BatchBackend[T])
	if !batch {
		var g errgroup.Group
		g.SetLimit(BatchConcurrency)
		for i, key := range keys {
			g.Go(func() error {
				v, rep := readLayer(ctx, key, read)
				c.recordRead(ctx, l, rep)
				out.vals[i], out.errs[i] = v, rep.Err
				return nil
			})
		}
		_ = g.Wait()
		return out
	}
	permit, allowed := breaker.Permit{}, true
	if l == L2 {
		if permit, allowed = c.l2Allow(); !allowed {
			for i := range keys {
				out.errs[i] = ErrBreakerOpen
			}
			return out
		}
	}
	start := time.Now()
	vals, err := getMany(ctx, bb, keys, timeout)
	now := time.Now()
	if l == L2 {
		l2Done(permit, ctx, err)
	}
	latency := now.Sub(start)
	whole := len(vals) != len(keys) // a short answer is a failed call, whatever err says
	if whole && err == nil {
		err = fmt.Errorf("tiercache: %v GetMany returned %d values for %d keys", l, len(vals), len(keys))
	}
	var failedOnly map[string]bool // when the error names the keys that failed
	var fk interface{ FailedKeys() []string }
	if err != nil && !whole && errors.As(err, &fk) {
		failedOnly = make(map[string]bool)
		for _, k := range fk.FailedKeys() {
			failedOnly[k] = true
		}
	}
	for i := range keys {
		rep := LayerReport{Latency: latency}
		switch {
		case whole:
			out.errs[i] = err
			rep.Status, rep.Err = StatusFailed, err
		case vals[i] == nil && err != nil && (failedOnly == nil || failedOnly[keys[i]]):
			out.errs[i] = err
			rep.Status, rep.Err = StatusFailed, err
		case vals[i] == nil || vals[i].Expired(now):
			rep.Status = StatusMiss
		default:
			out.vals[i] = vals[i]
			rep.Status = StatusHit
		}
		c.recordRead(ctx, l, rep)
	}
	return out
}

// getMany calls a BatchBackend's GetMany under timeout, containing a panic.
func getMany[T any](ctx context.Context, bb BatchBackend[T], keys []string, timeout time.Duration) (vals []*CacheValue[T], err error) {
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			vals, err = nil, newPanicError(p)
		}
	}()
	return bb.GetMany(ctx, keys)
}

// writeLayerMany writes vals[i] under keys[i] into layer l: one SetMany on
// a BatchBackend, otherwise key by key, concurrently. A distrusted L1 is not
// written. While the breaker is open, L2 is not called: every key is
// counted as a skipped write and the error wraps ErrBreakerOpen, as setL2's
// does for one key.
func (c *Cache[T]) writeLayerMany(ctx context.Context, l Layer, keys []string, vals []CacheValue[T]) error {
	backend, timeout, set := c.l2, c.opts.L2Timeout, c.setL2
	if l == L1 {
		if !c.l1Trusted() {
			return nil
		}
		backend, timeout, set = c.l1, c.opts.L1Timeout, c.setL1
	}
	if bb, ok := backend.(BatchBackend[T]); ok {
		if l == L1 {
			return layerOp(ctx, l, timeout, func(ctx context.Context) error { return bb.SetMany(ctx, keys, vals) })
		}
		p, ok := c.l2Allow()
		if !ok {
			// As setL2 refuses one key: the keys are not in L2, so the
			// write failed (and copyToL2 does not announce them).
			c.stats.writesSkipped.Add(uint64(len(keys)))
			return &layerError{L2, ErrBreakerOpen}
		}
		err := layerOp(ctx, l, timeout, func(ctx context.Context) error { return bb.SetMany(ctx, keys, vals) })
		l2Done(p, ctx, err)
		return err
	}
	errs := make([]error, len(keys))
	var g errgroup.Group
	g.SetLimit(BatchConcurrency)
	for i, key := range keys {
		g.Go(func() error {
			errs[i] = set(ctx, key, vals[i])
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// batchRead is what reading keys from both layers came to.
type batchRead[T any] struct {
	vals   []*CacheValue[T] // per key: the chosen value, nil when none
	failed []error          // per key without a value: the failure when every layer failed
}

// readBatch reads keys from both layers by the ReadPolicy's rules, per key,
// and copies the L2 hits it chose into L1 in one batch.
func (c *Cache[T]) readBatch(ctx context.Context, keys []string) batchRead[T] {
	r := batchRead[T]{vals: make([]*CacheValue[T], len(keys)), failed: make([]error, len(keys))}
	tickets := make([]keyguard.Ticket, len(keys))
	for i, key := range keys {
		tickets[i] = c.guard.Ticket(key)
	}
	fromL2 := make([]bool, len(keys))
	switch p := c.policy.(type) {
	case SequentialReadPolicy[T]:
		l1 := c.readLayerMany(ctx, L1, keys)
		var missed []int
		for i, v := range l1.vals {
			if v == nil {
				missed = append(missed, i)
			}
			r.vals[i] = v
		}
		if len(missed) > 0 && ctx.Err() == nil {
			l2 := c.readLayerMany(ctx, L2, pick(keys, missed))
			for j, i := range missed {
				r.vals[i], fromL2[i] = l2.vals[j], l2.vals[j] != nil
				r.failed[i] = bothFailed(l1.errs[i], l2.errs[j])
			}
		}
	case ParallelReadPolicy[T]:
		l1, l2, _ := c.readBothMany(ctx, keys, nil)
		for i := range keys {
			v1, v2 := l1.vals[i], l2.vals[i]
			switch {
			case v1 != nil && (v2 == nil || !expiresBefore(v1, v2)):
				r.vals[i] = v1
			case v2 != nil:
				r.vals[i], fromL2[i] = v2, true
			default:
				r.failed[i] = bothFailed(l1.errs[i], l2.errs[i])
			}
		}
	case RaceReadPolicy[T]:
		l1, l2, l2First := c.readBothMany(ctx, keys, &p)
		for i := range keys {
			var v1, v2 *CacheValue[T]
			var e2 error
			v1 = l1.vals[i]
			if l2.vals != nil {
				v2, e2 = l2.vals[i], l2.errs[i]
			}
			switch {
			case v2 != nil && (v1 == nil || l2First):
				r.vals[i], fromL2[i] = v2, true
			case v1 != nil:
				r.vals[i] = v1
			default:
				r.failed[i] = bothFailed(l1.errs[i], e2)
			}
		}
	default: // a policy of the caller's own: applied key by key
		var g errgroup.Group
		g.SetLimit(BatchConcurrency)
		for i, key := range keys {
			g.Go(func() error {
				l1, readsL1 := c.l1Reader()
				res, err := c.policy.Read(ctx, key, l1, c.readL2, c.policyOff)
				c.recordL1(ctx, readsL1, res.L1)
				c.recordRead(ctx, L2, res.L2)
				r.vals[i], fromL2[i] = res.Value, res.Source == L2
				if err != nil && ctx.Err() == nil {
					r.failed[i] = err
				}
				return nil
			})
		}
		_ = g.Wait()
	}
	now := time.Now()
	for i, v := range r.vals {
		if v != nil && v.Expired(now) { // expired while another layer or key was read
			r.vals[i] = nil
		}
	}
	var refill []int
	for i, v := range r.vals {
		if fromL2[i] && v != nil {
			refill = append(refill, i)
		}
	}
	c.refillMany(ctx, keys, r.vals, tickets, refill)
	return r
}

// readBothMany reads keys from both layers at once. Under
// ParallelReadPolicy (p nil) L1 is read on the caller's goroutine and L2 on
// another, and both are waited for. Under a race each layer is read on a
// goroutine of its own: the first batch to hit every key answers at once;
// otherwise both are waited for, and l2First says L2's batch answered
// first. L2 starts only after HedgeAfter unless L1 missed keys before. The
// losing read is cancelled (LoserCancel) or left to finish, counted, so that
// Close waits for it (LoserOffload). A layer not waited for comes back with
// every key missing.
func (c *Cache[T]) readBothMany(ctx context.Context, keys []string, p *RaceReadPolicy[T]) (l1, l2 layerBatch[T], l2First bool) {
	if p != nil {
		return c.raceMany(ctx, keys, p)
	}
	if !c.bg.Add() {
		return c.readLayerMany(ctx, L1, keys), emptyBatch[T](len(keys), ErrClosed), false
	}
	l2ctx, cancel := context.WithCancel(ctx)
	done := make(chan layerBatch[T], 1)
	go func() {
		defer c.bg.Done()
		defer cancel()
		done <- c.readLayerMany(l2ctx, L2, keys)
	}()
	l1 = c.readLayerMany(ctx, L1, keys)
	select {
	case l2 = <-done: // finished already: its hits count, even if ctx has ended since
	default:
		select {
		case l2 = <-done:
		case <-ctx.Done():
			cancel()
			l2 = emptyBatch[T](len(keys), ctx.Err())
		}
	}
	return l1, l2, false
}

// raceMany is readBothMany under a race: L1 on the caller's goroutine, L2
// on another. An L2 batch that answers every key first cancels the L1 read
// (L1 is in the process: cancelling it costs nothing) and wins; an L1 batch
// that answers every key first wins and leaves L2 to the Loser policy.
func (c *Cache[T]) raceMany(ctx context.Context, keys []string, p *RaceReadPolicy[T]) (l1, l2 layerBatch[T], l2First bool) {
	l1ctx, cancel1 := context.WithCancel(ctx)
	defer cancel1()
	l2ctx, cancel2 := context.WithCancel(ctx)
	if p.Loser == LoserOffload { // a losing L2 read finishes, by the caller's deadline or Close's
		l2ctx, cancel2 = c.detachForBackground(ctx)
	}
	if !c.bg.Add() {
		cancel2()
		return emptyBatch[T](len(keys), ErrClosed), emptyBatch[T](len(keys), ErrClosed), false
	}
	l1Missed := make(chan struct{}) // closed when L1 answered with misses: start L2 now
	decided := make(chan struct{})  // closed when L1 decided the race: L2 need not start
	l2Done := make(chan struct{})   // closed when l2res and l2At are set
	l1Finished := make(chan struct{})
	var l2res layerBatch[T]
	var l2At time.Time
	go func() {
		defer c.bg.Done()
		defer cancel2()
		defer close(l2Done)
		if p.HedgeAfter > 0 {
			t := time.NewTimer(p.HedgeAfter)
			defer t.Stop()
			select {
			case <-t.C:
			case <-l1Missed:
			case <-decided:
			}
		}
		select {
		case <-decided:
			l2res, l2At = emptyBatch[T](len(keys), nil), time.Now()
			return
		default:
		}
		l2res = c.readLayerMany(l2ctx, L2, keys)
		l2At = time.Now()
		if allHit(l2res) {
			// L2 answered every key: L1 need not finish. A microsecond's
			// grace lets an L1 answering at the same instant count as a tie,
			// which L1 wins.
			t := time.NewTimer(time.Microsecond)
			defer t.Stop()
			select {
			case <-l1Finished:
			case <-t.C:
				cancel1()
			}
		}
	}()
	l1 = c.readLayerMany(l1ctx, L1, keys)
	l1At := time.Now()
	close(l1Finished)
	if allHit(l1) {
		select {
		case <-l2Done:
			if l2At.Before(l1At) { // L2 answered first after all
				return l1, l2res, true
			}
		default:
		}
		close(decided)
		if p.Loser == LoserCancel {
			cancel2()
		}
		return l1, emptyBatch[T](len(keys), nil), false
	}
	close(l1Missed)
	select {
	case <-l2Done: // finished already: its hits count, even if ctx has ended since
	default:
		select {
		case <-l2Done:
		case <-ctx.Done():
			close(decided)
			cancel2()
			return l1, emptyBatch[T](len(keys), ctx.Err()), false
		}
	}
	close(decided)
	return l1, l2res, l2At.Before(l1At) // at the same instant, L1 wins
}

// allHit reports whether a batch has a value for every key.
func allHit[T any](b layerBatch[T]) bool {
	for _, v := range b.vals {
		if v == nil {
			return false
		}
	}
	return len(b.vals) > 0
}

// emptyBatch is a batch of n keys that all missed, or all failed with err.
func emptyBatch[T any](n int, err error) layerBatch[T] {
	b := layerBatch[T]{vals: make([]*CacheValue[T], n), errs: make([]error, n)}
	if err != nil {
		for i := range b.errs {
			b.errs[i] = err
		}
	}
	return b
}

// detachForBackground returns a ctx with ctx's values and deadline but not
// its cancellation, for a losing read that must finish; Close's deadline
// ends it too.
func (c *Cache[T]) detachForBackground(ctx context.Context) (context.Context, context.CancelFunc) {
	life, cancel := context.WithCancel(c.closeCtx)
	if d, ok := ctx.Deadline(); ok {
		var stop context.CancelFunc
		life, stop = context.WithDeadline(life, d)
		return readctx.Detached(ctx, life), func() { stop(); cancel() }
	}
	return readctx.Detached(ctx, life), cancel
}

// bothFailed returns the joined failures of a key whose every layer failed,
// or nil when one of them only missed.
func bothFailed(e1, e2 error) error {
	if e1 == nil || e2 == nil {
		return nil
	}
	return errors.Join(&layerError{L1, e1}, &layerError{L2, e2})
}

// pick returns keys[i] for each index.
func pick(keys []string, idx []int) []string {
	out := make([]string, len(idx))
	for j, i := range idx {
		out[j] = keys[i]
	}
	return out
}

// refillMany copies vals[i], read from L2, for each index in idx into L1 in
// one batch, skipping the keys written or invalidated since their ticket
// was taken: under RefillInline now, on the caller's goroutine, while ctx
// lasts; otherwise in the background.
func (c *Cache[T]) refillMany(ctx context.Context, keys []string, vals []*CacheValue[T], tickets []keyguard.Ticket, idx []int) {
	if c.opts.Refill == RefillNever || len(idx) == 0 {
		return
	}
	now := time.Now()
	rk := pick(keys, idx)
	rv := make([]CacheValue[T], len(idx))
	rt := make([]keyguard.Ticket, len(idx))
	for j, i := range idx {
		rv[j], rt[j] = c.l1Copy(*vals[i], now), tickets[i]
	}
	write := func(ctx context.Context) {
		var err error
		ok := c.guard.WriteManyIf(rk, rt, keyguard.Copy, func(ok []int) {
			k, v := pickValues(rk, rv, ok)
			err = c.writeLayerMany(ctx, L1, k, v)
		})
		c.stats.refillsSkipped.Add(uint64(len(rk) - len(ok)))
		if err != nil {
			c.writeFailed(ctx, L1, err)
			return
		}
		c.stats.refills.Add(uint64(len(ok)))
		if len(ok) > 0 {
			c.observe(ctx, Event{Kind: EventRefill, Keys: len(ok)})
		}
	}
	if c.refillsInline(ctx) {
		write(ctx)
		return
	}
	c.goBackground(ctx, OffloadKindRefill, write)
}

func pickValues[T any](keys []string, vals []CacheValue[T], idx []int) ([]string, []CacheValue[T]) {
	k := make([]string, len(idx))
	v := make([]CacheValue[T], len(idx))
	for j, i := range idx {
		k[j], v[j] = keys[i], vals[i]
	}
	return k, v
}

// batch is the shared state of the flights one batch load owns: their
// context, cancelled when every caller of every one of them has gone.
type batch struct {
	ctx    context.Context
	cancel context.CancelFunc
	active int // owned flights with a caller; guarded by the flight group's lock
}

// release is each owned flight's cancel: called under the flight group's
// lock when the flight's callers have all gone, once per flight (leave
// drops the cancel it called), though a flight that stays in the group
// after its answer may be joined and left again: counted again, it would
// end the ctx that a flight of the batch still following a refresh (see
// follow) waits with. The batch's ctx is cancelled when no owned flight
// has a caller left.
func (b *batch) release() {
	if b.active > 0 {
		if b.active--; b.active == 0 {
			b.cancel()
		}
	}
}

// joinMany holds a flight for each key of keys at the indexes pending:
// joining the flights under way, and making the others flights owned by one
// new batch, which it starts. withL2 says whether the batch reads L2 before
// loading. before, when not nil, holds the tickets of keys taken before the
// caller read them (see flight.since).
func (c *Cache[T]) joinMany(ctx context.Context, keys []string, pending []int, withL2 bool, load func(context.Context, []string) (map[string]T, error), before []keyguard.Ticket) []*flight[T] {
	flights := make([]*flight[T], len(pending))
	var owned []*flight[T]
	b := &batch{}
	life, cancel := context.WithCancel(c.closeCtx)
	b.ctx, b.cancel = readctx.Detached(ctx, life), cancel

	c.flights.mu.Lock()
	for j, i := range pending {
		key := keys[i]
		if f := c.flightLocked(key); f != nil {
			f.refs++
			c.stats.batchKeysCoalesced.Add(1)
			flights[j] = f
			continue
		}
		f := &flight[T]{key: key, ctx: b.ctx, refs: 1, done: make(chan struct{})}
		f.cancel = b.release // under the group's lock, when the flight's last caller leaves
		if before != nil {
			f.since, f.hasSince = before[i], true
		}
		if withL2 {
			f.l2Done = make(chan struct{})
		} else {
			f.loading = true
		}
		c.flights.m[key] = f
		flights[j] = f
		owned = append(owned, f)
	}
	b.active = len(owned)
	if len(owned) == 0 {
		cancel()
	} else if c.bg.Add() {
		c.workers.Go(func() {
			defer c.bg.Done()
			c.runBatch(b, owned, withL2, load, false)
		})
	} else {
		for _, f := range owned {
			if f.l2Done != nil {
				f.l2Err = ErrClosed
				close(f.l2Done)
			}
			c.resolveLocked(f, nil, ErrClosed)
		}
	}
	c.flights.mu.Unlock()
	return flights
}

// awaitMany waits for the flights of the keys at pending, storing their
// values in vals, and returns their errors. A flight of another caller that
// is still reading L2 is made to load its key, when L2 misses, with load
// asked for that key alone.
func (c *Cache[T]) awaitMany(ctx context.Context, keys []string, pending []int, flights []*flight[T], vals []*CacheValue[T], load func(context.Context, []string) (map[string]T, error)) []error {
	// First every L2 read, so that the loads they lead to run together.
	for _, f := range flights {
		if f.l2Done == nil {
			continue
		}
		if _, _, answered := waitL2(ctx, f); answered {
			continue
		}
		c.flights.mu.Lock()
		c.startLoadLocked(f, oneKey(f.key, load), false)
		c.flights.mu.Unlock()
	}
	var errs []error
	for j, f := range flights {
		v, err := waitDone(ctx, f)
		switch {
		case ctx.Err() != nil:
			return append(errs, fmt.Errorf("tiercache: get or load many: %w", ctx.Err()))
		case errors.Is(err, ErrNotFound):
			// Loaded just now and absent: not a remembered absence served.
		case err != nil:
			errs = append(errs, err)
		case v != nil:
			vals[pending[j]] = v
		}
	}
	return dedupErrors(errs)
}

// oneKey adapts a batch loader to one key, for a flight of that key alone.
func oneKey[T any](key string, load func(context.Context, []string) (map[string]T, error)) func(context.Context) (T, error) {
	return func(ctx context.Context) (T, error) {
		m, err := load(ctx, []string{key})
		if err != nil {
			var zero T
			return zero, err
		}
		v, ok := m[key]
		if !ok {
			return v, ErrNotFound
		}
		return v, nil
	}
}

// runBatch is a batch's work: read L2 for its keys (withL2), load the keys
// still missing with one call of load, store what it returns, and answer
// every owned flight.
func (c *Cache[T]) runBatch(b *batch, owned []*flight[T], withL2 bool, load func(context.Context, []string) (map[string]T, error), refresh bool) {
	defer func() { // whatever happened, no owned flight is left unanswered
		c.flights.mu.Lock()
		defer c.flights.mu.Unlock()
		for _, f := range owned {
			if f.l2Done != nil && !isClosed(f.l2Done) {
				f.l2Err = errGoexit
				close(f.l2Done)
			}
			if f.successor != nil && f.loading {
				continue // answered by its successor's load (see follow)
			}
			c.resolveLocked(f, nil, errGoexit)
		}
	}()
	keys := make([]string, len(owned))
	tickets := make([]keyguard.Ticket, len(owned))
	for i, f := range owned {
		keys[i], tickets[i] = f.key, f.since // see flight.since
		if !f.hasSince {
			tickets[i] = c.guard.Ticket(f.key)
		}
	}
	// The load's writes are checked against the tickets taken before the
	// L2 read: a Set that lands after that read is newer than what the
	// load was started on.
	missing, missingTickets := owned, tickets
	if withL2 {
		l2 := c.readLayerMany(b.ctx, L2, keys)
		var hits []int
		for i, v := range l2.vals {
			if v != nil {
				hits = append(hits, i)
			}
		}
		// Before the callers wake: under RefillInline, L1 holds the hits
		// when they return.
		c.refillMany(b.ctx, keys, l2.vals, tickets, hits)
		missing, missingTickets = nil, nil
		c.flights.mu.Lock()
		for i, f := range owned {
			f.l2Value, f.l2Err = l2.vals[i], l2.errs[i]
			close(f.l2Done)
			switch v := l2.vals[i]; {
			case v != nil:
				c.resolveLocked(f, v, nil)
			case f.refs == 0: // every caller left during the read, as in runL2
				c.resolveLocked(f, nil, context.Canceled)
			case f.successor != nil:
				// A refresh took the key over during the read (see
				// refresh): f answers with its load.
				c.startLoadLocked(f, nil, false)
			default:
				f.loading = true
				missing = append(missing, f)
				missingTickets = append(missingTickets, tickets[i])
			}
		}
		c.flights.mu.Unlock()
	}
	if len(missing) == 0 {
		return
	}
	missingKeys := make([]string, len(missing))
	for i, f := range missing {
		missingKeys[i] = f.key
	}
	c.stats.loads.Add(1)
	c.stats.batchKeysLoaded.Add(uint64(len(missing)))
	start := time.Now()
	data, err := callBatchLoader(b.ctx, load, missingKeys)
	now := time.Now()
	if c.obs != nil {
		c.observeLoad(b.ctx, start, len(missingKeys), err, nil)
	}
	if errors.Is(err, ErrNotFound) {
		// None of the keys exists: as if load had omitted every one (its
		// map, if any, is ignored with the error).
		data, err = nil, nil
	}
	if err != nil {
		c.stats.loadErrors.Add(1)
		err = fmt.Errorf("tiercache: load %s: %w", keyList(missingKeys), err)
		c.flights.mu.Lock()
		for _, f := range missing {
			c.resolveLocked(f, nil, err)
		}
		c.flights.mu.Unlock()
		return
	}
	results := make([]*CacheValue[T], len(missing))
	var store, gone []int
	for i, key := range missingKeys {
		if d, ok := data[key]; ok {
			v := c.newValue(d, 0, now)
			results[i] = &v
			store = append(store, i)
			continue
		}
		c.stats.notFound.Add(1)
		if c.opts.NegativeTTL > 0 {
			v := c.newNegative(now)
			results[i] = &v
			store = append(store, i)
		} else if refresh {
			gone = append(gone, i)
		}
	}
	c.storeMany(b.ctx, missingKeys, results, missingTickets, store, now, missing)
	c.evictMany(b.ctx, missingKeys, missingTickets, gone, missing)
	c.flights.mu.Lock()
	for i, f := range missing {
		if results[i] == nil || results[i].Negative {
			c.resolveLocked(f, results[i], fmt.Errorf("tiercache: load %q: %w", f.key, ErrNotFound))
			continue
		}
		c.resolveLocked(f, results[i], nil)
	}
	c.flights.mu.Unlock()
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// callBatchLoader calls load, turning a panic into a *PanicError.
func callBatchLoader[T any](ctx context.Context, load func(context.Context, []string) (map[string]T, error), keys []string) (data map[string]T, err error) {
	defer func() {
		if p := recover(); p != nil {
			data, err = nil, newPanicError(p)
		}
	}()
	return load(ctx, keys)
}

// storeMany writes loaded values (the indexes in idx of keys and vals):
// into L1 now, in one batch, into L2 through the Offload in one batch, then
// announces them in one call. A key written or invalidated since its ticket
// was taken is left alone.
func (c *Cache[T]) storeMany(ctx context.Context, keys []string, vals []*CacheValue[T], tickets []keyguard.Ticket, idx []int, now time.Time, flights []*flight[T]) {
	if len(idx) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx) // the values are good even if every waiter has gone
	sk := pick(keys, idx)
	sv := make([]CacheValue[T], len(idx))
	st := make([]keyguard.Ticket, len(idx))
	for j, i := range idx {
		sv[j], st[j] = *vals[i], tickets[i]
	}
	sf := make([]*flight[T], len(idx))
	for j, i := range idx {
		sf[j] = flights[i]
	}
	var err error
	var ok []int
	c.guard.WriteManyIf(sk, st, keyguard.Store, func(held []int) {
		if ok = notAbandoned(held, sf); len(ok) == 0 {
			return
		}
		k, v := pickValues(sk, sv, ok)
		for i := range v {
			v[i] = c.l1Copy(v[i], now)
		}
		err = c.writeLayerMany(ctx, L1, k, v)
	})
	if err != nil {
		c.writeFailed(ctx, L1, err)
	}
	if len(ok) == 0 {
		return
	}
	// The L2 writes are checked against the loads' own tickets: a Store
	// does not void them, and a Set since the load began does, even one
	// that ended before this line.
	k, v := pickValues(sk, sv, ok)
	after := make([]keyguard.Ticket, len(ok))
	for j, i := range ok {
		after[j] = st[i]
	}
	pending := pickFlights(flights, idx, ok)
	c.flights.mu.Lock()
	for j, f := range pending {
		f.pendingL2, f.answered = true, after[j]
	}
	c.flights.mu.Unlock()
	landed := func() { c.landed(pending...) }
	if !c.goBackgroundOrDrop(ctx, OffloadKindWriteL2, func(ctx context.Context) {
		defer landed()
		c.copyToL2(ctx, k, v, after, pending)
	}, landed) {
		landed()
	}
}

// evictMany removes keys a refresh found gone (the indexes in idx) from
// both layers, unless written meanwhile or their flight (in flights, as
// keys) is abandoned, and announces them.
func (c *Cache[T]) evictMany(ctx context.Context, keys []string, tickets []keyguard.Ticket, idx []int, flights []*flight[T]) {
	if len(idx) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	ek := pick(keys, idx)
	et := make([]keyguard.Ticket, len(idx))
	ef := make([]*flight[T], len(idx))
	for j, i := range idx {
		et[j], ef[j] = tickets[i], flights[i]
	}
	var held []int
	errs := make([]error, len(ek))
	c.guard.WriteManyIf(ek, et, keyguard.StoreL2, func(ok []int) {
		held = notAbandoned(ok, ef)
		for _, i := range held {
			errs[i] = c.deleteL2(ctx, ek[i])
		}
	})
	if len(held) == 0 {
		return
	}
	// L1 after L2, under the stripes' L1 locks: a refill under way, which
	// read a value before L2 lost it, lands first and is evicted.
	evicted := pick(ek, held)
	ht := make([]keyguard.Ticket, len(held))
	for j, i := range held {
		ht[j] = et[i]
	}
	c.guard.WriteManyIf(evicted, ht, keyguard.Store, func(ok []int) {
		for _, j := range ok {
			errs[held[j]] = errors.Join(c.deleteL1(ctx, evicted[j]), errs[held[j]])
		}
	})
	for _, err := range errs {
		if err != nil {
			c.writeFailed(ctx, NoLayer, err)
		}
	}
	c.announce(ctx, evicted...)
}

// refreshMany schedules one background reload of the stale keys, in one
// batch, skipping keys with a refresh scheduled or a load under way.
func (c *Cache[T]) refreshMany(ctx context.Context, keys []string, load func(context.Context, []string) (map[string]T, error)) {
	var marked []string
	for _, key := range keys {
		if c.refreshes.mark(key) {
			marked = append(marked, key)
		}
	}
	if len(marked) == 0 {
		return
	}
	unmark := func() {
		for _, key := range marked {
			c.refreshes.unmark(key)
		}
	}
	ok := c.goBackgroundOrDrop(ctx, OffloadKindRefresh, func(ctx context.Context) {
		defer unmark()
		b := &batch{}
		life, cancel := context.WithCancel(c.closeCtx)
		b.ctx, b.cancel = readctx.Detached(ctx, life), cancel
		var owned []*flight[T]
		c.flights.mu.Lock()
		for _, key := range marked {
			old := c.flightLocked(key)
			if old != nil && old.loading {
				continue // a load of the key is under way
			}
			f := &flight[T]{key: key, ctx: b.ctx, refs: 1, done: make(chan struct{}), refresh: true, loading: true}
			f.cancel = b.release
			if old != nil && !old.resolved {
				old.successor = f // see refresh
			}
			c.flights.m[key] = f
			owned = append(owned, f)
		}
		b.active = len(owned)
		c.flights.mu.Unlock()
		if len(owned) == 0 {
			cancel()
			return
		}
		leave := func() {
			for _, f := range owned {
				c.leave(f)
			}
		}
		// As a single key's refresh, the task holds its flights until
		// they answer or its ctx ends (TaskTimeout, a shared pool's
		// Close): past that the load goes on only for callers that joined.
		stop := context.AfterFunc(ctx, leave)
		defer func() {
			if stop() {
				leave()
			}
		}()
		c.stats.refreshes.Add(uint64(len(owned)))
		c.observe(ctx, Event{Kind: EventRefresh, Keys: len(owned)})
		c.runBatch(b, owned, false, load, true)
	}, unmark)
	if !ok {
		unmark()
	}
}

// keyList names keys in an error: all of them, or the first few and a
// count.
func keyList(keys []string) string {
	const shown = 5
	quoted := make([]string, 0, min(len(keys), shown))
	for _, k := range keys[:min(len(keys), shown)] {
		quoted = append(quoted, fmt.Sprintf("%q", k))
	}
	s := strings.Join(quoted, ", ")
	if len(keys) > shown {
		s += fmt.Sprintf(" and %d more", len(keys)-shown)
	}
	if len(keys) == 1 {
		return "key " + s
	}
	return fmt.Sprintf("%d keys (%s)", len(keys), s)
}

// joinKeyErrors joins the distinct errors of the keys that have one.
func joinKeyErrors(_ []string, errs []error) error {
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return errors.Join(dedupErrors(out)...)
}

// dedupErrors drops repeated errors (the same message), which a batch
// failure gives every key of the batch.
func dedupErrors(errs []error) []error {
	out := errs[:0:0]
	seen := make(map[string]bool, len(errs))
	for _, err := range errs {
		if msg := err.Error(); !seen[msg] {
			seen[msg] = true
			out = append(out, err)
		}
	}
	return out
}

// pickFlights returns the flights of the keys written: ok indexes idx,
// which indexes flights.
func pickFlights[T any](flights []*flight[T], idx, ok []int) []*flight[T] {
	out := make([]*flight[T], len(ok))
	for j, i := range ok {
		out[j] = flights[idx[i]]
	}
	return out
}
