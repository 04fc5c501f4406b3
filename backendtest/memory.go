package backendtest

import (
	"context"
	"sync"
	"time"

	"github.com/tiercache/tiercache"
)

// Memory is an in-memory tiercache.Backend and tiercache.Flusher that
// passes the suite: a stand-in for a real layer in the tests of code built
// on a Cache, where a test needs to put values in a layer, look at what the
// cache wrote, or make a layer fail. It is safe for concurrent use; the
// zero value is not, use NewMemory.
type Memory[T any] struct {
	mu                     sync.Mutex
	m                      map[string]tiercache.CacheValue[T]
	getErr, setErr, delErr error
}

var (
	_ tiercache.Backend[string] = (*Memory[string])(nil)
	_ tiercache.Flusher         = (*Memory[string])(nil)
)

// NewMemory returns an empty Memory.
func NewMemory[T any]() *Memory[T] {
	return &Memory[T]{m: make(map[string]tiercache.CacheValue[T])}
}

// Get returns the value of key, or (nil, nil) when there is none or it has
// expired. It fails with ctx's error when ctx has ended, and with the error
// given to FailGet when one is set.
func (b *Memory[T]) Get(ctx context.Context, key string) (*tiercache.CacheValue[T], error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.getErr != nil {
		return nil, b.getErr
	}
	v, ok := b.m[key]
	if !ok || v.Expired(time.Now()) {
		return nil, nil
	}
	return &v, nil
}

// Set stores v under key as given. It fails with ctx's error when ctx has
// ended, and with the error given to FailSet when one is set.
func (b *Memory[T]) Set(ctx context.Context, key string, v tiercache.CacheValue[T]) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.setErr != nil {
		return b.setErr
	}
	b.m[key] = v
	return nil
}

// Delete removes key; a missing key is not an error. It fails with ctx's
// error when ctx has ended, and with the error given to FailDelete when one
// is set.
func (b *Memory[T]) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.delErr != nil {
		return b.delErr
	}
	delete(b.m, key)
	return nil
}

// Flush removes every entry.
func (b *Memory[T]) Flush(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.m)
	return nil
}

// Put stores v under key directly, whatever FailSet says: a value already
// in the layer when the test begins.
func (b *Memory[T]) Put(key string, v tiercache.CacheValue[T]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = v
}

// Peek returns what is stored under key, expired or not, without counting
// as a read.
func (b *Memory[T]) Peek(key string) (tiercache.CacheValue[T], bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[key]
	return v, ok
}

// FailGet makes every later Get return err; nil makes Get work again.
func (b *Memory[T]) FailGet(err error) { b.lock(func() { b.getErr = err }) }

// FailSet makes every later Set return err; nil makes Set work again.
func (b *Memory[T]) FailSet(err error) { b.lock(func() { b.setErr = err }) }

// FailDelete makes every later Delete return err; nil makes Delete work
// again.
func (b *Memory[T]) FailDelete(err error) { b.lock(func() { b.delErr = err }) }

func (b *Memory[T]) lock(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f()
}
