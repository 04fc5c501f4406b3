package tiercache

import (
	"context"
	"errors"
)

// LayerWriter is what a WritePolicy can do to one layer for the key being
// written. The Cache builds both writers for each write: they apply the
// layer's timeout, contain a panicking backend and name the layer in their
// errors.
type LayerWriter struct {
	// Set writes the value into this layer.
	Set func(ctx context.Context) error
	// Evict removes the key from this layer.
	Evict func(ctx context.Context) error
}

// WritePolicy decides how a value reaches the two layers.
//
// Write returns nil only when both layers hold the value. When a layer
// fails, the policy must leave no stale copy in L1 behind (evicting the key
// there when in doubt) and return the failure; errors.Is finds each layer's
// error in it. off may be nil.
type WritePolicy interface {
	Write(ctx context.Context, key string, l1, l2 LayerWriter, off Offload) error
}

// WritePolicyFunc adapts a function to the WritePolicy interface.
type WritePolicyFunc func(ctx context.Context, key string, l1, l2 LayerWriter, off Offload) error

// Write calls f.
func (f WritePolicyFunc) Write(ctx context.Context, key string, l1, l2 LayerWriter, off Offload) error {
	return f(ctx, key, l1, l2, off)
}

var (
	_ WritePolicy = WritePolicyFunc(nil)
	_ WritePolicy = SequentialWritePolicy{}
	_ WritePolicy = ParallelWritePolicy{}
)

// SequentialWritePolicy writes L2, then L1: the default.
//
// When L2 fails it evicts the key from L1, since a timed-out L2 write may
// still have landed and L1 must not keep the old value beside it, and
// returns the error without writing L1. When L1 fails after L2 succeeded it
// evicts the key from L1 and returns the error. The zero value is ready to
// use.
type SequentialWritePolicy struct{}

// Write writes L2, then L1.
func (SequentialWritePolicy) Write(ctx context.Context, _ string, l1, l2 LayerWriter, _ Offload) error {
	if err := l2.Set(ctx); err != nil {
		return errors.Join(err, l1.Evict(context.WithoutCancel(ctx)))
	}
	if err := l1.Set(ctx); err != nil {
		return errors.Join(err, l1.Evict(context.WithoutCancel(ctx)))
	}
	return nil
}

// ParallelWritePolicy writes both layers at once: L1 on the calling goroutine
// and L2 on one new goroutine, so a write costs the slower layer's latency
// rather than the sum. On any failure it evicts the key from each layer that
// failed and returns the joined errors. The zero value is ready to use.
type ParallelWritePolicy struct{}

// Write writes both layers concurrently.
func (ParallelWritePolicy) Write(ctx context.Context, _ string, l1, l2 LayerWriter, _ Offload) error {
	l2Err := make(chan error, 1)
	go func() {
		var err error = errGoexit
		defer func() { l2Err <- err }() // deferred: reports even if the writer calls runtime.Goexit
		err = l2.Set(ctx)
	}()
	err1 := l1.Set(ctx)
	err2 := <-l2Err
	evictCtx := context.WithoutCancel(ctx)
	if err1 != nil {
		err1 = errors.Join(err1, l1.Evict(evictCtx))
	}
	if err2 != nil {
		err2 = errors.Join(err2, l2.Evict(evictCtx))
	}
	return errors.Join(err1, err2)
}
