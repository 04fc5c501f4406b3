package tiercacheprom_test

import (
	"context"
	"sync"
	"time"

	"github.com/tiercache/tiercache"
)

// mapBackend is an in-memory tiercache.Backend[string] for the tests, with
// Flush so that it can be the L1 of a cache with an Invalidator. Its Get,
// Set and Delete fail with getErr, setErr and delErr when those are set.
type mapBackend struct {
	mu                     sync.Mutex
	m                      map[string]tiercache.CacheValue[string]
	getErr, setErr, delErr error
}

var (
	_ tiercache.Backend[string] = (*mapBackend)(nil)
	_ tiercache.Flusher         = (*mapBackend)(nil)
)

func newMapBackend() *mapBackend {
	return &mapBackend{m: make(map[string]tiercache.CacheValue[string])}
}

func (b *mapBackend) Get(ctx context.Context, key string) (*tiercache.CacheValue[string], error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.getErr != nil {
		return nil, b.getErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, ok := b.m[key]
	if !ok || v.Expired(time.Now()) {
		return nil, nil
	}
	return &v, nil
}

func (b *mapBackend) Set(ctx context.Context, key string, v tiercache.CacheValue[string]) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.setErr != nil {
		return b.setErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.m[key] = v
	return nil
}

func (b *mapBackend) Delete(ctx context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.delErr != nil {
		return b.delErr
	}
	delete(b.m, key)
	return nil
}

func (b *mapBackend) Flush(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.m)
	return nil
}

// put stores data for key, without expiry.
func (b *mapBackend) put(key, data string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = tiercache.CacheValue[string]{Data: data}
}

// configure changes the backend under its lock.
func (b *mapBackend) configure(f func(b *mapBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}
