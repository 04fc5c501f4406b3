package tiercache

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"
)

// Observer receives what happens in a Cache as it happens, for metrics and
// tracing: a read of each layer, the end of each operation, loads, refills,
// refreshes, write failures, offload rejections, invalidations,
// subscription drops and breaker transitions. The tiercacheotel and
// tiercacheprom modules implement it.
//
// Observe is called on the goroutine where the thing happened, with its
// ctx (the caller's, or for background work a ctx carrying the caller's
// values): it must be quick, safe for concurrent use, must not block, and
// must not keep e.Err beyond the call unless it copies what it needs. A
// panic in Observe (or StartOp) is recovered and counted in
// Stats.ObserverPanics; the event is lost, the operation goes on. A
// Cache without an Observer pays one nil check per event and allocates
// nothing for it.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// OpObserver is the optional capability of an Observer to wrap each
// operation, found by type assertion: StartOp is called when a Get,
// GetOrLoad, Set, Delete, GetMany or GetOrLoadMany of the cache named cache
// begins, and the ctx it returns (holding a span, say) is the one the
// operation runs with and the one its events, the EventOpDone last, are
// observed with.
type OpObserver interface {
	Observer
	StartOp(ctx context.Context, op Op, cache string) context.Context
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f.
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

var _ Observer = ObserverFunc(nil)

// Event is one thing that happened in a Cache. Kind says which; the fields
// it uses are listed with each EventKind.
type Event struct {
	Kind EventKind
	// Cache is Options.Name.
	Cache string
	// Op is the operation, for EventOpDone.
	Op Op
	// Layer is the layer read (EventRead), the layer that served the value
	// (EventOpDone; NoLayer when it was loaded or not found), or the layer
	// a write failed on (EventWriteFailed).
	Layer Layer
	// Status is the read's outcome (EventRead), or the operation's
	// (EventOpDone): for reads, StatusHit when a layer served the value,
	// StatusMiss when it was loaded or does not exist (Err then wraps
	// ErrNotFound), StatusFailed on any other error; for Set and Delete,
	// which read nothing, StatusNotRun, or StatusFailed on an error.
	Status ReadStatus
	// Duration is how long the read, operation or load took.
	Duration time.Duration
	// Keys is how many keys the event is about: loaded (EventLoad), copied
	// (EventRefill), refreshed (EventRefresh), announced or received
	// (invalidations), asked for (EventOpDone of a batch operation); 1 for
	// EventRead, a batch read being observed key by key, each with the
	// batch's Duration.
	Keys int
	// Waiters is how many callers waited for a load (EventLoad).
	Waiters int
	// Err is the failure: of a load, a write, or an operation.
	Err error
	// OffloadKind is the kind of the work refused (EventOffloadRejected).
	OffloadKind string
	// From and To are the breaker's states (EventBreakerChanged).
	From, To BreakerState
}

// EventKind says what an Event is about.
type EventKind uint8

const (
	// EventRead: a read of one key in one layer ended. Layer, Status,
	// Duration (for a key of a batch read, the batch's).
	EventRead EventKind = iota
	// EventOpDone: an operation ended. Op, Layer, Status, Duration, Err,
	// and for batch operations Keys.
	EventOpDone
	// EventLoad: a load ended. Duration, Keys, Waiters, Err (wrapping
	// ErrNotFound for "no such thing").
	EventLoad
	// EventRefill: L2 values were copied into L1. Keys.
	EventRefill
	// EventRefresh: a background refresh of stale values started. Keys.
	EventRefresh
	// EventWriteFailed: a background write failed (a refill, the L2 write
	// of a loaded value, an eviction). Layer, Err.
	EventWriteFailed
	// EventOffloadRejected: the Offload refused background work, which was
	// not done. OffloadKind.
	EventOffloadRejected
	// EventInvalidationSent: keys were announced to the other caches. Keys,
	// Err when the Invalidator refused them.
	EventInvalidationSent
	// EventInvalidationReceived: another cache announced keys. Keys.
	EventInvalidationReceived
	// EventSubscriptionLost: invalidations may be lost; L1 was flushed and
	// is read around.
	EventSubscriptionLost
	// EventSubscriptionRestored: invalidations flow again; L1 is used.
	EventSubscriptionRestored
	// EventBreakerChanged: the L2 circuit breaker changed state. From, To.
	EventBreakerChanged
)

var eventKindNames = [...]string{
	EventRead:                 "read",
	EventOpDone:               "op-done",
	EventLoad:                 "load",
	EventRefill:               "refill",
	EventRefresh:              "refresh",
	EventWriteFailed:          "write-failed",
	EventOffloadRejected:      "offload-rejected",
	EventInvalidationSent:     "invalidation-sent",
	EventInvalidationReceived: "invalidation-received",
	EventSubscriptionLost:     "subscription-lost",
	EventSubscriptionRestored: "subscription-restored",
	EventBreakerChanged:       "breaker-changed",
}

// String returns the kind's name, such as "read" or "op-done".
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Op names a Cache operation.
type Op uint8

const (
	OpGet Op = iota
	OpGetOrLoad
	OpSet
	OpDelete
	OpGetMany
	OpGetOrLoadMany
)

var opNames = [...]string{
	OpGet:           "get",
	OpGetOrLoad:     "get_or_load",
	OpSet:           "set",
	OpDelete:        "delete",
	OpGetMany:       "get_many",
	OpGetOrLoadMany: "get_or_load_many",
}

// String returns the operation's name, such as "get_or_load".
func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// observe hands e to the Observer, if there is one.
func (c *Cache[T]) observe(ctx context.Context, e Event) {
	if c.obs == nil {
		return
	}
	e.Cache = c.opts.Name
	observeContained(ctx, c.obs, &e, &c.stats.observerPanics)
}

// observeContained hands *e to o, recovering a panic of o and counting it
// in panics.
func observeContained(ctx context.Context, o Observer, e *Event, panics *atomic.Uint64) {
	defer func() {
		if recover() != nil {
			panics.Add(1)
		}
	}()
	o.Observe(ctx, *e)
}

// recordRead counts a layer's read in Stats and observes it.
//
// A read that failed once ctx had ended (its caller left, or a race was
// decided against it) is recorded abandoned: the layer was not waited for,
// which says nothing of its health. A layer's own timeout ends a ctx
// derived from ctx, not ctx, and stays a failure; a read the breaker
// refused was not run.
func (c *Cache[T]) recordRead(ctx context.Context, l Layer, rep LayerReport) {
	if rep.Status == StatusFailed && rep.Err != ErrBreakerOpen && ctx.Err() != nil {
		rep.Status = StatusAbandoned
	}
	if l == L1 {
		c.stats.l1.record(rep)
	} else {
		c.stats.l2.record(rep)
	}
	if c.obs != nil && rep.Status != StatusNotRun && rep.Err != ErrBreakerOpen {
		c.observe(ctx, Event{Kind: EventRead, Layer: l, Status: rep.Status, Duration: rep.Latency, Err: rep.Err, Keys: 1})
	}
}

// writeFailed counts a failed background write and observes it.
func (c *Cache[T]) writeFailed(ctx context.Context, l Layer, err error) {
	c.stats.writeErrors.Add(1)
	c.observe(ctx, Event{Kind: EventWriteFailed, Layer: l, Err: err})
}

// opInfo is what an observed operation learns about itself on its way.
type opInfo struct {
	src    Layer // the layer that served the value
	loaded bool  // the value was loaded
}

// startOp begins an observed operation.
func (c *Cache[T]) startOp(ctx context.Context, op Op) (context.Context, time.Time) {
	if c.opObs != nil {
		ctx = c.startOpObserved(ctx, op)
	}
	return ctx, time.Now()
}

// startOpObserved lets the OpObserver wrap ctx; when StartOp panics, the
// operation runs with ctx as it was.
func (c *Cache[T]) startOpObserved(ctx context.Context, op Op) (wrapped context.Context) {
	wrapped = ctx
	defer func() {
		if recover() != nil {
			c.stats.observerPanics.Add(1)
		}
	}()
	return c.opObs.StartOp(ctx, op, c.opts.Name)
}

// endOp observes the end of an operation.
func (c *Cache[T]) endOp(ctx context.Context, op Op, start time.Time, info opInfo, found bool, keys int, err error) {
	e := Event{Kind: EventOpDone, Op: op, Duration: time.Since(start), Layer: info.src, Err: err, Keys: keys}
	switch {
	case op == OpSet || op == OpDelete:
		e.Status, e.Layer = StatusNotRun, NoLayer
		if err != nil {
			e.Status = StatusFailed
		}
	case err != nil && !errors.Is(err, ErrNotFound):
		e.Status = StatusFailed
	case found && !info.loaded:
		e.Status = StatusHit
	default:
		e.Status, e.Layer = StatusMiss, NoLayer
	}
	c.observe(ctx, e)
}

// MultiObserver returns an Observer that hands every event to each of obs
// in turn; as an OpObserver it lets each that is one wrap the operation's
// ctx in turn. Nil entries are skipped.
func MultiObserver(obs ...Observer) OpObserver {
	var m multiObserver
	for _, o := range obs {
		if o != nil {
			m = append(m, o)
		}
	}
	return m
}

type multiObserver []Observer

func (m multiObserver) Observe(ctx context.Context, e Event) {
	for _, o := range m {
		o.Observe(ctx, e)
	}
}

func (m multiObserver) StartOp(ctx context.Context, op Op, cache string) context.Context {
	for _, o := range m {
		if so, ok := o.(OpObserver); ok {
			ctx = so.StartOp(ctx, op, cache)
		}
	}
	return ctx
}
