package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
)

// Timings of an Invalidator.
const (
	// healthInterval is how long the subscription may stay silent before
	// the Invalidator sends a PING on it.
	healthInterval = 500 * time.Millisecond
	// pongTimeout is how long the answer to that PING may take before the
	// subscription counts as lost: a connection that went half-open is seen
	// within healthInterval + pongTimeout.
	pongTimeout = time.Second
	// subscribeTimeout bounds one attempt to (re)subscribe: the dial, the
	// SUBSCRIBE and its confirmation.
	subscribeTimeout = 5 * time.Second
	// publishTimeout is the deadline of each PUBLISH.
	publishTimeout = time.Second
	// closeTimeout bounds how long Close tries to publish the keys still
	// waiting.
	closeTimeout = time.Second
	// backoffBase and backoffMax shape the waits between attempts to
	// resubscribe, and between attempts to publish.
	backoffBase = 50 * time.Millisecond
	backoffMax  = 5 * time.Second
)

// Invalidator carries a tiercache.Cache's invalidations to the other caches
// that share its L2 data, over Redis pub/sub: it implements
// tiercache.Invalidator. One Invalidator may serve several caches of one
// process (each calls Subscribe); each replica of a service has its own.
// Create it with NewInvalidator and release it with Close, after the caches
// that use it.
//
// Keys a cache announces reach the other caches of the process directly,
// and the other processes through one PUBLISH per BatchWindow. The
// Invalidator watches its subscription and tells every cache when
// invalidations may have been missed (SubscriptionLost) and when they flow
// again (SubscriptionRestored). See the package documentation for the
// message format, what it guarantees, and what it does not.
type Invalidator struct {
	client     redis.UniversalClient
	channel    string
	window     time.Duration // <= 0: none
	maxPending int
	id         uint64 // in every message this Invalidator sends

	ctx    context.Context // ends when Close gives up on the last PUBLISH; parent of every command's ctx
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close
	wake   chan struct{} // capacity 1: the publisher has work, or may retry at once
	pubbed chan struct{} // closed when the publisher has returned
	wg     sync.WaitGroup

	mu            sync.Mutex
	closing       bool
	closeDeadline time.Time // when Close stops trying to publish
	subs          map[uint64]*subscription
	lastSub       uint64
	up            bool          // SUBSCRIBE confirmed, and the connection healthy since
	downSince     time.Time     // start of the current period without a subscription
	offline       time.Duration // the periods without one that have ended
	pubsub        *redis.PubSub // the listener's; Close closes it
	pending       []pendingKey  // keys to publish, each once
	pendingSet    map[string]struct{}
	flushAll      bool // publish a flush instead of pending, which overflowed

	stats invalidatorCounters
}

var _ tiercache.Invalidator = (*Invalidator)(nil)

// NewInvalidator returns an Invalidator over client configured by opts; nil
// opts means the defaults. client may be any redis.UniversalClient: classic
// pub/sub reaches every node of a Cluster, so a *redis.ClusterClient works
// as a *redis.Client does; over a *redis.Ring it subscribes on the shard
// that the Ring sends the channel's PUBLISH to, which replicas whose Rings
// disagree on which shards are up do not share (see the package doc:
// prefer a *redis.Client of one node). NewInvalidator validates
// opts, returning an error prefixed "redisstore:", and never modifies *opts.
//
// It returns at once and subscribes in the background, retrying with
// backoff while Redis cannot be reached: the caches that subscribe are told
// SubscriptionLost until the subscription is confirmed. The Invalidator does
// not own client; close the client after Close.
//
// Build the client with ContextTimeoutEnabled: every command the
// Invalidator sends has a deadline, which go-redis enforces on the socket
// only then (otherwise a PUBLISH to a Redis that stopped answering lasts the
// client's ReadTimeout, and so may Close).
func NewInvalidator(client redis.UniversalClient, opts *InvalidatorOptions) (*Invalidator, error) {
	if isNilClient(client) {
		return nil, errors.New("redisstore: NewInvalidator: nil client")
	}
	var o InvalidatorOptions
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	i := &Invalidator{
		client:     client,
		channel:    o.Channel,
		window:     o.BatchWindow,
		maxPending: o.MaxPendingKeys,
		id:         newInstanceID(),
		stop:       make(chan struct{}),
		wake:       make(chan struct{}, 1),
		pubbed:     make(chan struct{}),
		subs:       make(map[uint64]*subscription),
		downSince:  time.Now(),
		pendingSet: make(map[string]struct{}),
	}
	if i.channel == "" {
		i.channel = DefaultChannel
	}
	if i.window == 0 {
		i.window = DefaultBatchWindow
	}
	if i.maxPending == 0 {
		i.maxPending = DefaultMaxPendingKeys
	}
	i.ctx, i.cancel = context.WithCancel(context.Background())
	i.wg.Add(2)
	go i.listen()
	go i.publisher()
	return i, nil
}

// newInstanceID returns a random non-zero id. Two Invalidators on one
// channel with the same id would ignore each other's messages: with 64
// random bits, the odds for ten thousand of them are below 1 in 10^11.
func newInstanceID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// Subscribe registers a cache: handler is called with the invalidations of
// the other caches, on a goroutine of the subscription's own, one event at
// a time and in order, never with the keys this subscription announced.
// The first event tells the state of the subscription to Redis:
// SubscriptionRestored if invalidations flow, SubscriptionLost if not (yet).
// The Keys of an event are shared with the other subscriptions: handler
// must not modify them. A panic in handler is recovered and counted in
// InvalidatorStats.HandlerPanics; after one on KeysChanged, which may have
// left keys unevicted, the subscription is told SubscriptionLost then
// SubscriptionRestored, to flush.
//
// Subscribe fails after Close, with an error wrapping tiercache.ErrClosed.
func (i *Invalidator) Subscribe(handler func(tiercache.InvalidationEvent)) (tiercache.Subscription, error) {
	if handler == nil {
		return nil, errors.New("redisstore: Invalidator.Subscribe: nil handler")
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closing {
		return nil, errInvalidatorClosed
	}
	i.lastSub++
	s := newSubscription(i, i.lastSub, handler)
	i.subs[s.id] = s
	s.mu.Lock()
	s.pushState(i.up)
	s.mu.Unlock()
	i.wg.Add(1)
	go s.deliver()
	return s, nil
}

// errInvalidatorClosed is the error of Subscribe and Announce after Close.
var errInvalidatorClosed = fmt.Errorf("redisstore: invalidator closed: %w", tiercache.ErrClosed)

// Close stops the Invalidator. It publishes the keys still waiting (for at
// most a second; the keys it cannot publish are counted in
// InvalidatorStats.KeysDropped), unsubscribes, ends every subscription
// without calling its handler again, and returns once every goroutine of the
// Invalidator has returned. It waits for a handler call under way, so it
// must not be called from a handler. A PUBLISH under way ends at its
// deadline with a client built with ContextTimeoutEnabled, otherwise at the
// client's ReadTimeout. Close does not close the client. It is idempotent
// and returns nil.
func (i *Invalidator) Close() error {
	i.mu.Lock()
	if i.closing {
		i.mu.Unlock()
		i.wg.Wait()
		return nil
	}
	i.closing = true
	i.closeDeadline = time.Now().Add(closeTimeout)
	subs := make([]*subscription, 0, len(i.subs))
	for _, s := range i.subs {
		subs = append(subs, s)
	}
	i.mu.Unlock()
	close(i.stop)

	// The publisher sends what is waiting, with closeDeadline, and returns.
	t := time.NewTimer(closeTimeout)
	select {
	case <-i.pubbed:
	case <-t.C:
	}
	t.Stop()
	i.cancel()

	i.mu.Lock()
	ps, up := i.pubsub, i.up
	i.pubsub = nil
	i.mu.Unlock()
	if ps != nil {
		// The listener's read fails once ps is closed; an UNSUBSCRIBE
		// first, when subscribed, tells Redis at once.
		if up {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			_ = ps.Unsubscribe(ctx, i.channel)
			cancel()
		}
		_ = ps.Close()
	}
	for _, s := range subs {
		s.shutdown()
	}
	i.wg.Wait()
	return nil
}

// stopping reports whether Close has begun.
func (i *Invalidator) stopping() bool {
	select {
	case <-i.stop:
		return true
	default:
		return false
	}
}

// sleep waits d, or until Close begins or the publisher is woken (wake
// true), and reports whether Close has not begun.
func (i *Invalidator) sleep(d time.Duration, wake bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var woken <-chan struct{}
	if wake {
		woken = i.wake
	}
	select {
	case <-t.C:
	case <-woken:
	case <-i.stop:
		return false
	}
	return true
}

// setUp records that the subscription is confirmed (up) or lost, and tells
// every subscription. Nothing is told after Close has begun.
func (i *Invalidator) setUp(up bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closing || i.up == up {
		return
	}
	i.up = up
	now := time.Now()
	if up {
		i.offline += now.Sub(i.downSince)
		i.downSince = time.Time{}
	} else {
		i.downSince = now
		i.stats.subscriptionDrops.Add(1)
	}
	for _, s := range i.subs {
		s.mu.Lock()
		s.pushState(up)
		s.mu.Unlock()
	}
	if up {
		i.signal() // a publisher waiting to retry may try at once
	}
}

// deliver hands keys, from another process, to every subscription.
func (i *Invalidator) deliver(keys []string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closing {
		return
	}
	for _, s := range i.subs {
		s.mu.Lock()
		s.pushKeys(keys)
		s.mu.Unlock()
	}
}

// resync tells every subscription that any key may have changed: a flush
// message, or one this version cannot read.
func (i *Invalidator) resync() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closing {
		return
	}
	for _, s := range i.subs {
		s.mu.Lock()
		s.pushResync(i.up)
		s.mu.Unlock()
	}
}

// backoff returns the wait before the nth retry (n >= 1): backoffBase
// doubled each time up to backoffMax, of which a random half ("equal
// jitter"), so that replicas that lost Redis together do not come back in
// step.
func backoff(n int) time.Duration {
	d := backoffMax
	if n < 20 {
		d = min(backoffBase<<(n-1), backoffMax)
	}
	return d/2 + rand.N(d/2+1)
}
