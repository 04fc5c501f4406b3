package tiercache

import (
	"context"
	"time"
)

// ParallelReadPolicy reads both layers at once and waits for both.
//
// L1 is read on the calling goroutine and L2 on one new goroutine. When both
// hit, the value that expires later wins, compared as exact instants; a value
// that never expires beats one that does, and a tie goes to L1. When only one
// layer hits, its value wins whatever the other did; an L1 value that expires
// while L2 is waited for is a miss.
//
// Choose it when freshness matters more than latency: every read costs an L2
// round trip, but a value refreshed in L2 by another process is seen at once.
// The zero value is ready to use.
type ParallelReadPolicy[T any] struct{}

// parallelL2 is the state shared with the goroutine that reads L2.
type parallelL2[T any] struct {
	v    *CacheValue[T]
	rep  LayerReport
	done chan struct{}
}

// Read reads key from both layers concurrently. See ReadPolicy for the error
// contract. When ctx ends first, Read returns at once; the L2 goroutine ends
// when its reader, which sees the same cancelled ctx, returns.
func (ParallelReadPolicy[T]) Read(ctx context.Context, key string, l1, l2 ReadFunc[T], _ Offload) (ReadResult[T], error) {
	var res ReadResult[T]
	if err := checkRead(ctx, key, l1, l2); err != nil {
		return res, err
	}
	p := &parallelL2[T]{done: make(chan struct{})}
	go func() {
		defer close(p.done) // deferred: a reader calling runtime.Goexit still reports
		p.rep = goexitReport
		p.v, p.rep = readLayer(ctx, key, l2)
	}()
	v1, rep1 := readLayer(ctx, key, l1)
	res.L1 = rep1
	select {
	case <-p.done: // finished already: its result counts, even if ctx has ended since
	default:
		select {
		case <-p.done:
		case <-ctx.Done():
			res.L2.Status = StatusAbandoned
			return res, readCanceled(key, ctx.Err())
		}
	}
	res.L2 = p.rep
	if v1 != nil && !v1.Expire.IsZero() && v1.Expired(time.Now()) { // expired while L2 was waited for
		v1, res.L1.Status = nil, StatusMiss
	}
	switch {
	case v1 != nil && (p.v == nil || !expiresBefore(v1, p.v)):
		res.Value, res.Source = v1, L1
	case p.v != nil:
		res.Value, res.Source = p.v, L2
	case ctx.Err() != nil:
		return res, readCanceled(key, ctx.Err())
	default:
		return res, missOrFailure(key, &res)
	}
	return res, nil
}

// expiresBefore reports whether a stops existing strictly before b. A value
// that never expires outlives every other.
func expiresBefore[T any](a, b *CacheValue[T]) bool {
	switch {
	case a.Expire.IsZero():
		return false
	case b.Expire.IsZero():
		return true
	}
	return a.Expire.Before(b.Expire)
}
