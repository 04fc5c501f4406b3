package redisstore

import (
	"context"
	"time"
)

// The publishing side of an Invalidator: announced keys wait in pending,
// each once, and the publisher goroutine sends them at most once per
// BatchWindow. A key announced when no message went out within the last
// window is sent at once; the keys announced after it wait for the window
// to end and go out together. Sparse writes are thus not delayed at all,
// and under write load each key waits at most one window, for one message
// per window. A PUBLISH that fails keeps its keys for the next attempt,
// after a backoff. When pending would exceed MaxPendingKeys, its keys are
// replaced by one flush message, which makes every other Invalidator's
// caches flush their L1s: it covers every key, at a price paid once.

// enqueue adds keys, announced by subscription sub, to pending. Called with
// i.mu held.
func (i *Invalidator) enqueue(sub uint64, keys []string) {
	if i.flushAll {
		return // the flush to be sent covers them
	}
	wasEmpty := len(i.pending) == 0
	for _, k := range keys {
		if _, dup := i.pendingSet[k]; dup {
			continue
		}
		if len(i.pending) >= i.maxPending {
			i.overflow()
			return
		}
		i.pendingSet[k] = struct{}{}
		i.pending = append(i.pending, pendingKey{sub: sub, key: k})
	}
	if wasEmpty && len(i.pending) > 0 {
		i.signal()
	}
}

// overflow replaces pending by a flush. Called with i.mu held.
func (i *Invalidator) overflow() {
	i.stats.queueOverflows.Add(1)
	i.flushAll = true
	i.pending = nil
	clear(i.pendingSet)
	i.signal()
}

// signal wakes the publisher. Called with i.mu held, or not.
func (i *Invalidator) signal() {
	select {
	case i.wake <- struct{}{}:
	default:
	}
}

// batch is what the publisher takes from pending at once.
type batch struct {
	flush bool
	keys  []pendingKey
}

// take empties pending into a batch; ok is false when there is nothing.
func (i *Invalidator) take() (b batch, ok bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch {
	case i.flushAll:
		i.flushAll = false
		return batch{flush: true}, true
	case len(i.pending) > 0:
		b.keys = i.pending
		i.pending = nil
		clear(i.pendingSet)
		return b, true
	}
	return b, false
}

// requeue puts back what could not be published.
func (i *Invalidator) requeue(flush bool, keys []pendingKey) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if flush {
		if !i.flushAll {
			i.overflowToFlush()
		}
		return
	}
	if i.flushAll {
		return
	}
	for _, k := range keys {
		if _, dup := i.pendingSet[k.key]; dup {
			continue
		}
		if len(i.pending) >= i.maxPending {
			i.overflow()
			return
		}
		i.pendingSet[k.key] = struct{}{}
		i.pending = append(i.pending, k)
	}
}

// overflowToFlush turns pending back into the flush that failed: not a new
// overflow. Called with i.mu held.
func (i *Invalidator) overflowToFlush() {
	i.flushAll = true
	i.pending = nil
	clear(i.pendingSet)
}

// publisher sends pending, until Close, and then once more within Close's
// deadline.
func (i *Invalidator) publisher() {
	defer i.wg.Done()
	defer close(i.pubbed)
	var (
		failures int
		last     time.Time // when the last batch was taken
	)
	for {
		select {
		case <-i.wake:
		case <-i.stop:
		}
		closing := i.stopping()
		if wait := time.Until(last.Add(i.window)); !closing && failures == 0 && wait > 0 {
			// A message went out within the window: what arrives until
			// it ends goes in the next one.
			closing = !i.sleep(wait, false)
		}
		b, ok := i.take()
		if !ok {
			if closing {
				return
			}
			continue
		}
		last = time.Now()
		if i.send(b, closing) {
			// Keys announced since take have signalled wake themselves.
			failures = 0
			continue
		}
		if closing {
			i.drop()
			return
		}
		failures++
		// Retry after a backoff, or at once when the subscription comes
		// back: Redis is reachable again.
		i.sleep(backoff(failures), true)
		i.signal() // retry at once; in Close, one last time
	}
}

// send publishes b, and reports whether all of it went out. What did not is
// put back in pending.
func (i *Invalidator) send(b batch, closing bool) bool {
	if b.flush {
		if err := i.publish(encodeFlush(i.id), closing); err != nil {
			i.requeue(true, nil)
			return false
		}
		i.stats.messagesPublished.Add(1)
		i.stats.flushesPublished.Add(1)
		return true
	}
	sent := 0
	for _, m := range encodeKeys(i.id, b.keys) {
		if err := i.publish(m.payload, closing); err != nil {
			i.requeue(false, b.keys[sent:])
			return false
		}
		sent += m.n
		i.stats.messagesPublished.Add(1)
		i.stats.keysPublished.Add(uint64(m.n))
	}
	return true
}

// publish sends one PUBLISH, under publishTimeout, or Close's deadline.
func (i *Invalidator) publish(payload []byte, closing bool) error {
	deadline := time.Now().Add(publishTimeout)
	if closing {
		i.mu.Lock()
		deadline = i.closeDeadline
		i.mu.Unlock()
	}
	ctx, cancel := context.WithDeadline(i.ctx, deadline)
	defer cancel()
	if err := i.client.Publish(ctx, i.channel, payload).Err(); err != nil {
		i.stats.publishErrors.Add(1)
		return err
	}
	return nil
}

// drop gives up on pending, in Close.
func (i *Invalidator) drop() {
	i.mu.Lock()
	defer i.mu.Unlock()
	n := len(i.pending)
	if i.flushAll {
		n++
	}
	i.stats.keysDropped.Add(uint64(n))
	i.pending, i.flushAll = nil, false
	clear(i.pendingSet)
}
