package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The subscribing side of an Invalidator. go-redis's PubSub.Channel
// reconnects by itself and resubscribes without a word, so that the
// messages published in between are lost unseen; and its health check only
// notices a PING that cannot be written, not one that is never answered.
// The listener therefore reads with ReceiveTimeout in a loop of its own:
//
//   - after healthInterval without anything to read it sends a PING with a
//     payload of its own, and counts the subscription lost when no answer
//     comes within pongTimeout, which catches a connection gone half-open;
//   - any error of the read or of the PING ends the subscription, even one
//     after which go-redis has reconnected: the PubSub is closed and a new
//     one made;
//   - anything it did not ask for (a subscription confirmed again, a PONG
//     with another payload: a sign that go-redis resubscribed behind its
//     back, or that the reply stream lost its place) ends it too.
//
// Each end is reported to every subscription as SubscriptionLost, at once;
// SubscriptionRestored follows only once Redis has confirmed a new
// SUBSCRIBE. The attempts in between back off exponentially.

// listen subscribes, reads, and resubscribes, until Close.
func (i *Invalidator) listen() {
	defer i.wg.Done()
	failures := 0
	for {
		ps, err := i.connect()
		if err == nil {
			since := time.Now()
			i.setUp(true)
			i.receive(ps)
			i.setUp(false)
			if time.Since(since) >= backoffMax {
				failures = 0 // not a flapping connection: back off afresh
			}
		} else if !i.stopping() {
			i.stats.subscribeFailures.Add(1)
		}
		i.release(ps)
		if i.stopping() {
			return
		}
		failures++
		if !i.sleep(backoff(failures), false) {
			return
		}
	}
}

// connect makes a PubSub, subscribes and waits for Redis to confirm.
func (i *Invalidator) connect() (*redis.PubSub, error) {
	client := i.client
	if ring, ok := client.(*redis.Ring); ok {
		// A Ring panics on a Subscribe without a channel, and sends a
		// PUBLISH to the shard its channel's name hashes to: subscribe
		// on that shard.
		shard, err := ring.GetShardClientForKey(i.channel)
		if err != nil {
			return nil, err
		}
		client = shard
	}
	ps := client.Subscribe(i.ctx) // no channel yet: no I/O
	i.mu.Lock()
	if i.closing {
		i.mu.Unlock()
		_ = ps.Close()
		return nil, errInvalidatorClosed
	}
	i.pubsub = ps
	i.mu.Unlock()
	ctx, cancel := context.WithTimeout(i.ctx, subscribeTimeout)
	defer cancel()
	if err := ps.Subscribe(ctx, i.channel); err != nil {
		return ps, err
	}
	deadline, _ := ctx.Deadline()
	for {
		left := time.Until(deadline)
		if left <= 0 { // a negative timeout would mean none
			return ps, fmt.Errorf("redisstore: SUBSCRIBE not confirmed within %v", subscribeTimeout)
		}
		msg, err := ps.ReceiveTimeout(ctx, left)
		if err != nil {
			return ps, err
		}
		if sub, ok := msg.(*redis.Subscription); ok && sub.Kind == "subscribe" && sub.Channel == i.channel {
			return ps, nil
		}
	}
}

// release closes ps, unless Close has taken it to close it.
func (i *Invalidator) release(ps *redis.PubSub) {
	if ps == nil {
		return
	}
	i.mu.Lock()
	mine := i.pubsub == ps
	if mine {
		i.pubsub = nil
	}
	i.mu.Unlock()
	if mine {
		_ = ps.Close()
	}
}

// receive reads from a confirmed subscription until it fails or Close.
func (i *Invalidator) receive(ps *redis.PubSub) {
	var (
		token  string // the payload of the PING awaiting its answer
		pingAt time.Time
		pings  uint64
	)
	for !i.stopping() {
		timeout := healthInterval
		if token != "" {
			if timeout = pongTimeout - time.Since(pingAt); timeout <= 0 {
				return // no answer to the PING: a half-open connection, a frozen Redis
			}
		}
		// The ctx's deadline is the read's: it also bounds the reconnection
		// go-redis attempts after a failed read, before returning the error.
		ctx, cancel := context.WithTimeout(i.ctx, timeout)
		msg, err := ps.ReceiveTimeout(ctx, timeout)
		cancel()
		if err != nil {
			if !isTimeout(err) || token != "" || i.stopping() {
				return
			}
			pings++
			token = "tiercache:" + strconv.FormatUint(pings, 10)
			ctx, cancel := context.WithTimeout(i.ctx, pongTimeout)
			err := ps.Ping(ctx, token)
			cancel()
			if err != nil {
				return
			}
			pingAt = time.Now()
			continue
		}
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel != i.channel {
				return
			}
			i.handle(m.Payload)
		case *redis.Pong:
			if m.Payload != token || token == "" {
				return // not the answer to our PING: the replies are out of step
			}
			token = ""
		default: // a subscription renewed or ended behind our back
			return
		}
	}
}

// isTimeout reports whether err is a read that timed out, which leaves the
// connection usable.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// handle reads one message of the channel.
func (i *Invalidator) handle(payload string) {
	m, err := decodeMessage(payload)
	switch {
	case errors.Is(err, errNewerVersion):
		// It may carry invalidations this version cannot read.
		i.stats.messagesUnsupported.Add(1)
		i.resync()
	case err != nil:
		i.stats.messagesMalformed.Add(1)
	case m.origin == i.id:
		// This Invalidator's own: its subscriptions had the keys already.
		i.stats.echoesDropped.Add(1)
	case m.flush:
		i.stats.messagesReceived.Add(1)
		i.stats.flushesReceived.Add(1)
		i.resync()
	default:
		keys := m.keys()
		i.stats.messagesReceived.Add(1)
		i.stats.keysReceived.Add(uint64(len(keys)))
		i.deliver(keys)
	}
}
