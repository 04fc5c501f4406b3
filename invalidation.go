package tiercache

import (
	"context"
	"strconv"
)

// Invalidator carries invalidations between caches that share L2 data but
// each have an L1 of their own: the replicas of a service, or several caches
// in one process. When one cache writes a key, every other cache subscribed
// evicts the key from its L1, so that it reads the new value from L2.
//
// Subscribe registers one cache. The Invalidator calls handler with the
// events meant for it, one at a time, in order, on a goroutine of its own;
// never with the keys the cache announced itself. Right after Subscribe it
// reports the state of its transport: SubscriptionRestored when
// invalidations flow, SubscriptionLost when they may not.
type Invalidator interface {
	Subscribe(handler func(InvalidationEvent)) (Subscription, error)
}

// Subscription is one cache's membership of an Invalidator.
type Subscription interface {
	// Announce tells every other subscribed cache that keys have changed. It
	// may batch keys and return before they are delivered; it must not
	// block on the network for long.
	Announce(ctx context.Context, keys ...string) error
	// Close ends the subscription; no event is delivered after it returns.
	// It waits for a handler call in progress, so it must not be called
	// from the handler.
	Close() error
}

// InvalidationEvent is what an Invalidator tells a subscribed cache.
type InvalidationEvent struct {
	// Kind says what happened.
	Kind InvalidationKind
	// Keys are the keys another cache changed, with KeysChanged.
	Keys []string
}

// InvalidationKind is the kind of an InvalidationEvent.
type InvalidationKind uint8

const (
	// KeysChanged: another cache wrote or deleted Keys; evict them from L1.
	KeysChanged InvalidationKind = iota
	// SubscriptionLost: invalidations may have been missed (the connection
	// dropped) and keep being missed until SubscriptionRestored: L1 can no
	// longer be trusted. The cache flushes it and reads around it.
	SubscriptionLost
	// SubscriptionRestored: invalidations flow again. The cache flushes L1
	// once more, since anything it held may have changed meanwhile, and
	// uses it again.
	SubscriptionRestored
)

// String returns "keys-changed", "subscription-lost" or
// "subscription-restored".
func (k InvalidationKind) String() string {
	switch k {
	case KeysChanged:
		return "keys-changed"
	case SubscriptionLost:
		return "subscription-lost"
	case SubscriptionRestored:
		return "subscription-restored"
	}
	return "InvalidationKind(" + strconv.Itoa(int(k)) + ")"
}

// InvalidatorFunc adapts a function to the Invalidator interface.
type InvalidatorFunc func(handler func(InvalidationEvent)) (Subscription, error)

// Subscribe calls f.
func (f InvalidatorFunc) Subscribe(handler func(InvalidationEvent)) (Subscription, error) {
	return f(handler)
}

var _ Invalidator = InvalidatorFunc(nil)

// Flusher is the optional capability of a Backend to remove every entry at
// once. A Cache with an Invalidator needs its L1 to be a Flusher, to empty
// it when invalidations may have been lost.
type Flusher interface {
	Flush(ctx context.Context) error
}
