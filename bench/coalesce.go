package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tiercache/tiercache"
)

// coalescingL2 is a prototype of auto-pipelining for tiercache's L2, built
// on tiercache's public API only, to measure what the change to redisstore
// proposed for workload d would do. It is a tiercache.Backend over a
// tiercache.BatchBackend (redisstore's Store): concurrent Gets are
// gathered into one GetMany, which redisstore sends as one MGET, one round
// trip for the whole batch.
//
// Batching window: none. A fixed set of dispatcher goroutines (owned by the
// backend, ended by Close) each takes the first waiting Get, adds every Get
// queued behind it, up to maxBatch, and sends the batch; Gets arriving
// while every dispatcher waits for Redis form the next batches. An idle
// backend sends a lone Get at once (one channel hand-off more than a direct
// GET); a busy one sends batches as large as the queue that built up during
// one round trip.
//
// Deadlines: a caller waits for its answer or for its ctx, whichever comes
// first, so a Get returns by its deadline however slow Redis is; the batch
// itself runs under timeout, detached from the callers, and its answers to
// callers that have left are dropped. Set and Delete go straight to the
// store.
type coalescingL2[T any] struct {
	tiercache.Backend[T]
	batch    tiercache.BatchBackend[T]
	queue    chan *coalescedGet[T]
	timeout  time.Duration
	maxBatch int
	stop     chan struct{}
	wg       sync.WaitGroup
}

var _ tiercache.Backend[string] = (*coalescingL2[string])(nil)

// coalescedGet is one Get waiting for its batch.
type coalescedGet[T any] struct {
	ctx  context.Context
	key  string
	v    *tiercache.CacheValue[T]
	err  error
	done chan struct{}
}

// newCoalescingL2 returns the prototype over store, which must also be a
// tiercache.BatchBackend, with dispatchers goroutines sending batches of up
// to maxBatch keys, each batch under timeout.
func newCoalescingL2[T any](store tiercache.Backend[T], dispatchers, maxBatch int, timeout time.Duration) (*coalescingL2[T], error) {
	batch, ok := store.(tiercache.BatchBackend[T])
	if !ok {
		return nil, fmt.Errorf("bench: %T is not a tiercache.BatchBackend", store)
	}
	c := &coalescingL2[T]{
		Backend:  store,
		batch:    batch,
		queue:    make(chan *coalescedGet[T], 4*maxBatch),
		timeout:  timeout,
		maxBatch: maxBatch,
		stop:     make(chan struct{}),
	}
	for range dispatchers {
		c.wg.Go(c.dispatch)
	}
	return c, nil
}

// Get queues the read for the next batch and waits for its answer.
func (c *coalescingL2[T]) Get(ctx context.Context, key string) (*tiercache.CacheValue[T], error) {
	g := &coalescedGet[T]{ctx: ctx, key: key, done: make(chan struct{})}
	select {
	case c.queue <- g:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.stop:
		return nil, tiercache.ErrClosed
	}
	select {
	case <-g.done:
		return g.v, g.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.stop:
		return nil, tiercache.ErrClosed
	}
}

// dispatch sends batches until Close.
func (c *coalescingL2[T]) dispatch() {
	gets := make([]*coalescedGet[T], 0, c.maxBatch)
	keys := make([]string, 0, c.maxBatch)
	for {
		select {
		case g := <-c.queue:
			gets = append(gets[:0], g)
		case <-c.stop:
			return
		}
	fill:
		for len(gets) < c.maxBatch {
			select {
			case g := <-c.queue:
				gets = append(gets, g)
			default:
				break fill
			}
		}
		keys = keys[:0]
		live := gets[:0]
		for _, g := range gets {
			if g.ctx.Err() == nil { // its caller has not left
				live = append(live, g)
				keys = append(keys, g.key)
			}
		}
		if len(live) > 0 {
			c.send(live, keys)
		}
	}
}

// send reads keys in one GetMany and answers gets.
func (c *coalescingL2[T]) send(gets []*coalescedGet[T], keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	vals, err := c.batch.GetMany(ctx, keys)
	for i, g := range gets {
		switch {
		case len(vals) != len(keys):
			g.err = err
		case vals[i] != nil:
			g.v = vals[i]
		case err != nil: // a nil entry of a call that failed in part: a failure, to be safe
			g.err = err
		}
		close(g.done)
	}
}

// Close stops the dispatchers and waits for them. Gets still waiting
// return ErrClosed. The store belongs to the caller and stays open.
func (c *coalescingL2[T]) Close() {
	close(c.stop)
	c.wg.Wait()
}
