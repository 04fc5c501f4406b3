package redisstore

import (
	"context"
	"slices"
	"sync"

	"github.com/tiercache/tiercache"
)

// linkState is what a subscription's handler has been told of the link to
// Redis.
type linkState uint8

const (
	linkUnknown linkState = iota // nothing yet
	linkLost                     // SubscriptionLost
	linkUp                       // SubscriptionRestored
)

// subscription is one cache's membership of an Invalidator: the events
// queued for its handler, and the goroutine that calls it.
//
// The queue is kept short by what the events mean to a cache. A
// SubscriptionLost makes the cache flush its L1, which evicts every key a
// KeysChanged queued before it would have: it replaces the whole queue.
// Keys that arrive while the cache has been (or will have been) told Lost
// are dropped: the SubscriptionRestored to come flushes L1 again. And when
// the keys queued would exceed MaxPendingKeys, they are replaced by Lost
// then Restored, a flush.
type subscription struct {
	inv     *Invalidator
	id      uint64
	handler func(tiercache.InvalidationEvent)
	wake    chan struct{} // capacity 1: the queue has events, or shutdown
	done    chan struct{} // closed when deliver has returned

	mu        sync.Mutex
	queue     []tiercache.InvalidationEvent
	keys      int       // keys in queue
	delivered linkState // the state the handler was last handed
	closed    bool
}

var _ tiercache.Subscription = (*subscription)(nil)

func newSubscription(i *Invalidator, id uint64, handler func(tiercache.InvalidationEvent)) *subscription {
	return &subscription{inv: i, id: id, handler: handler, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Announce hands keys to the other subscriptions of the Invalidator at
// once, and queues them to be published to the other processes within the
// BatchWindow. It never waits for the network, and never fails but after
// Close (of the subscription or of the Invalidator), with an error wrapping
// tiercache.ErrClosed. ctx is not used.
func (s *subscription) Announce(_ context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	i := s.inv
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closing || i.subs[s.id] != s {
		return errInvalidatorClosed
	}
	keys = slices.Clone(keys) // the caller may reuse its slice; the handlers share this one
	for _, o := range i.subs {
		if o != s {
			o.mu.Lock()
			o.pushKeys(keys)
			o.mu.Unlock()
		}
	}
	i.stats.keysAnnounced.Add(uint64(len(keys)))
	i.enqueue(s.id, keys)
	return nil
}

// Close ends the subscription: it returns once the handler is no longer
// running and will not be called again, so it must not be called from the
// handler. It is idempotent and returns nil.
func (s *subscription) Close() error {
	i := s.inv
	i.mu.Lock()
	if i.subs[s.id] == s {
		delete(i.subs, s.id)
	}
	i.mu.Unlock()
	s.shutdown()
	return nil
}

// shutdown stops deliver and waits for it.
func (s *subscription) shutdown() {
	s.mu.Lock()
	s.closed = true
	s.queue, s.keys = nil, 0
	s.mu.Unlock()
	s.signal()
	<-s.done
}

func (s *subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// deliver calls the handler with the queued events, one at a time, until
// shutdown.
func (s *subscription) deliver() {
	defer s.inv.wg.Done()
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closed {
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		e := s.queue[0]
		s.queue[0] = tiercache.InvalidationEvent{}
		s.queue = s.queue[1:]
		s.keys -= len(e.Keys)
		switch e.Kind {
		case tiercache.SubscriptionLost:
			s.delivered = linkLost
		case tiercache.SubscriptionRestored:
			s.delivered = linkUp
		}
		s.mu.Unlock()
		s.call(e)
	}
}

// call runs the handler, containing a panic. A handler that panicked on
// keys may not have evicted them: it is told to flush (Lost, then Restored
// if the link is up), once.
func (s *subscription) call(e tiercache.InvalidationEvent) {
	defer func() {
		if recover() == nil {
			return
		}
		i := s.inv
		i.stats.handlerPanics.Add(1)
		if e.Kind != tiercache.KeysChanged {
			return
		}
		i.mu.Lock()
		defer i.mu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.pushResync(i.up)
	}()
	s.handler(e)
}

// queued returns the state the handler will have been told once the queue
// is delivered. Called with s.mu held, as are the push methods.
func (s *subscription) queued() linkState {
	for j := len(s.queue) - 1; j >= 0; j-- {
		switch s.queue[j].Kind {
		case tiercache.SubscriptionLost:
			return linkLost
		case tiercache.SubscriptionRestored:
			return linkUp
		}
	}
	return s.delivered
}

// pushState queues the state of the link: SubscriptionRestored (up) or
// SubscriptionLost.
func (s *subscription) pushState(up bool) {
	if s.closed {
		return
	}
	if !up {
		// The flush that Lost makes evicts whatever the queue would have.
		clear(s.queue)
		s.queue, s.keys = s.queue[:0], 0
		if s.delivered != linkLost {
			s.push(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionLost})
		}
		return
	}
	if s.queued() != linkUp {
		s.push(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionRestored})
	}
}

// pushKeys queues keys, unless the handler will have been told Lost (the
// Restored to come flushes), or turns the queue into a flush when it would
// grow past MaxPendingKeys.
func (s *subscription) pushKeys(keys []string) {
	if s.closed || s.queued() != linkUp {
		return
	}
	if s.keys+len(keys) > s.inv.maxPending {
		s.inv.stats.deliveryOverflows.Add(1)
		s.pushResync(true)
		return
	}
	s.keys += len(keys)
	s.push(tiercache.InvalidationEvent{Kind: tiercache.KeysChanged, Keys: keys})
}

// pushResync makes the handler flush: Lost, then Restored if the link is up.
func (s *subscription) pushResync(up bool) {
	s.pushState(false)
	if up {
		s.pushState(true)
	}
}

func (s *subscription) push(e tiercache.InvalidationEvent) {
	s.queue = append(s.queue, e)
	s.signal()
}
