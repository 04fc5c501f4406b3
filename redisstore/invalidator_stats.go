package redisstore

import (
	"sync/atomic"
	"time"
)

// InvalidatorStats is a snapshot of an Invalidator's counters since
// NewInvalidator. Every count is cumulative; subtract two snapshots for a
// rate. The caches count their own side too (tiercache.Stats).
type InvalidatorStats struct {
	// KeysAnnounced counts the keys the subscribed caches announced.
	KeysAnnounced uint64
	// MessagesPublished counts the PUBLISH commands that succeeded, flush
	// messages included.
	MessagesPublished uint64
	// KeysPublished counts the keys in them: fewer than KeysAnnounced when
	// a key was announced twice within a window.
	KeysPublished uint64
	// FlushesPublished counts the flush messages sent because the keys
	// waiting to be published outgrew MaxPendingKeys.
	FlushesPublished uint64
	// PublishErrors counts the PUBLISH commands that failed. Their keys were
	// kept, and published again after a backoff.
	PublishErrors uint64
	// QueueOverflows counts the times the keys waiting to be published
	// outgrew MaxPendingKeys and were replaced by a flush message.
	QueueOverflows uint64
	// KeysDropped counts the keys (a pending flush counting as one) that
	// Close could not publish before its deadline.
	KeysDropped uint64

	// MessagesReceived counts the messages of other Invalidators read from
	// the channel, flush messages included.
	MessagesReceived uint64
	// KeysReceived counts the keys in them.
	KeysReceived uint64
	// FlushesReceived counts the flush messages among them; each made every
	// subscribed cache flush its L1.
	FlushesReceived uint64
	// EchoesDropped counts this Invalidator's own messages read back from
	// the channel: their keys went to its other caches directly.
	EchoesDropped uint64
	// MessagesMalformed counts the messages on the channel that are not
	// invalidation messages (foreign, truncated, corrupt). They were
	// ignored.
	MessagesMalformed uint64
	// MessagesUnsupported counts the messages of a newer format version,
	// which this version cannot read: each made every subscribed cache
	// flush its L1, since it may have carried invalidations.
	MessagesUnsupported uint64

	// DeliveryOverflows counts the times the keys waiting for a
	// subscribed cache's handler outgrew MaxPendingKeys and were replaced by
	// SubscriptionLost then SubscriptionRestored, a flush of its L1.
	DeliveryOverflows uint64
	// HandlerPanics counts the handler calls that panicked. One that
	// panicked on keys was then told to flush.
	HandlerPanics uint64

	// Subscribed reports whether the subscription is confirmed now:
	// invalidations from other processes flow.
	Subscribed bool
	// SubscriptionDrops counts the times a confirmed subscription was lost
	// (an error, a PING unanswered, a resubscription go-redis made behind
	// the Invalidator's back), each reported to every subscribed cache as
	// SubscriptionLost.
	SubscriptionDrops uint64
	// SubscribeFailures counts the attempts to subscribe that failed.
	SubscribeFailures uint64
	// Unsubscribed is the time spent without a confirmed subscription since
	// NewInvalidator, the current period included.
	Unsubscribed time.Duration
}

// invalidatorCounters are the live counters behind InvalidatorStats.
type invalidatorCounters struct {
	keysAnnounced, messagesPublished, keysPublished, flushesPublished atomic.Uint64
	publishErrors, queueOverflows, keysDropped                        atomic.Uint64
	messagesReceived, keysReceived, flushesReceived, echoesDropped    atomic.Uint64
	messagesMalformed, messagesUnsupported                            atomic.Uint64
	deliveryOverflows, handlerPanics                                  atomic.Uint64
	subscriptionDrops, subscribeFailures                              atomic.Uint64
}

// Stats returns a snapshot of the Invalidator's counters.
func (i *Invalidator) Stats() InvalidatorStats {
	c := &i.stats
	s := InvalidatorStats{
		KeysAnnounced:       c.keysAnnounced.Load(),
		MessagesPublished:   c.messagesPublished.Load(),
		KeysPublished:       c.keysPublished.Load(),
		FlushesPublished:    c.flushesPublished.Load(),
		PublishErrors:       c.publishErrors.Load(),
		QueueOverflows:      c.queueOverflows.Load(),
		KeysDropped:         c.keysDropped.Load(),
		MessagesReceived:    c.messagesReceived.Load(),
		KeysReceived:        c.keysReceived.Load(),
		FlushesReceived:     c.flushesReceived.Load(),
		EchoesDropped:       c.echoesDropped.Load(),
		MessagesMalformed:   c.messagesMalformed.Load(),
		MessagesUnsupported: c.messagesUnsupported.Load(),
		DeliveryOverflows:   c.deliveryOverflows.Load(),
		HandlerPanics:       c.handlerPanics.Load(),
		SubscribeFailures:   c.subscribeFailures.Load(),
	}
	i.mu.Lock()
	s.Subscribed = i.up
	s.SubscriptionDrops = c.subscriptionDrops.Load()
	s.Unsubscribed = i.offline
	if !i.up {
		s.Unsubscribed += time.Since(i.downSince)
	}
	i.mu.Unlock()
	return s
}
