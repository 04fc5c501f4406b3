package tiercache_test

import (
	"context"
	"sync"
	"time"

	"github.com/tiercache/tiercache"
)

// fakeBackend is a hand-written in-memory Backend for the Cache tests. It
// honours expiry and ctx, and its behaviour can be changed while it runs:
// an error or a panic for every operation, a delay before each operation,
// or a gate that holds operations until it is closed. It counts calls.
type fakeBackend struct {
	mu      sync.Mutex
	m       map[string]tiercache.CacheValue[string]
	getErr  error
	setErr  error
	delErr  error
	panics  any           // every operation panics with it when set
	delay   time.Duration // every operation takes this long (ends early when ctx ends)
	gate    chan struct{} // when set, every operation waits for it to close (or ctx)
	gets    int
	sets    int
	deletes int
	setLog  []tiercache.CacheValue[string]
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{m: make(map[string]tiercache.CacheValue[string])}
}

var _ tiercache.Backend[string] = (*fakeBackend)(nil)

// wait applies the delay and the gate, honouring ctx.
func (b *fakeBackend) wait(ctx context.Context) error {
	b.mu.Lock()
	delay, gate, p := b.delay, b.gate, b.panics
	b.mu.Unlock()
	if p != nil {
		panic(p)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ctx.Err()
}

func (b *fakeBackend) Get(ctx context.Context, key string) (*tiercache.CacheValue[string], error) {
	b.mu.Lock()
	b.gets++
	b.mu.Unlock()
	if err := b.wait(ctx); err != nil {
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

func (b *fakeBackend) Set(ctx context.Context, key string, v tiercache.CacheValue[string]) error {
	b.mu.Lock()
	b.sets++
	b.mu.Unlock()
	if err := b.wait(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.setErr != nil {
		return b.setErr
	}
	b.m[key] = v
	b.setLog = append(b.setLog, v)
	return nil
}

func (b *fakeBackend) Delete(ctx context.Context, key string) error {
	b.mu.Lock()
	b.deletes++
	b.mu.Unlock()
	if err := b.wait(ctx); err != nil {
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

// put stores v directly, bypassing the counters.
func (b *fakeBackend) put(key string, v tiercache.CacheValue[string]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = v
}

// peek returns what the backend holds for key, bypassing the counters.
func (b *fakeBackend) peek(key string) (tiercache.CacheValue[string], bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[key]
	return v, ok
}

// configure changes the backend's behaviour under its lock.
func (b *fakeBackend) configure(f func(b *fakeBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

type backendCalls struct{ gets, sets, deletes int }

func (b *fakeBackend) calls() backendCalls {
	b.mu.Lock()
	defer b.mu.Unlock()
	return backendCalls{b.gets, b.sets, b.deletes}
}
