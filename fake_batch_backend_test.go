package tiercache_test

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/tiercache/tiercache"
)

// fakeBatchBackend is a fakeBackend that is also a BatchBackend, for the
// GetMany and GetOrLoadMany tests. GetMany and SetMany read and write the
// fake's map; like its single operations they honour its delay, gate,
// panic, getErr and setErr, and ctx. They are counted with the keys of each
// call. GetMany can fail for some keys only (a full slice with nil for
// them, and an error, as the BatchBackend contract says) or answer a
// broken slice; a gate of their own holds the batch calls alone.
type fakeBatchBackend struct {
	*fakeBackend

	bmu         sync.Mutex
	getManyLog  [][]string
	setManyLog  [][]string
	failKeys    map[string]bool // GetMany answers nil for them, with failErr
	failErr     error
	shortAnswer bool // GetMany answers one entry too few, with shortErr (nil: no error)
	shortErr    error
	getManyGate chan struct{} // when set, GetMany waits for it to close (or ctx)
	setManyGate chan struct{} // when set, SetMany waits for it to close (or ctx)
}

var (
	_ tiercache.Backend[string]      = (*fakeBatchBackend)(nil)
	_ tiercache.BatchBackend[string] = (*fakeBatchBackend)(nil)
	_ tiercache.Flusher              = (*fakeBatchBackend)(nil)
)

func newFakeBatchBackend() *fakeBatchBackend {
	return &fakeBatchBackend{fakeBackend: newFakeBackend()}
}

func (b *fakeBatchBackend) GetMany(ctx context.Context, keys []string) ([]*tiercache.CacheValue[string], error) {
	b.bmu.Lock()
	b.getManyLog = append(b.getManyLog, slices.Clone(keys))
	gate, failKeys, failErr := b.getManyGate, b.failKeys, b.failErr
	short, shortErr := b.shortAnswer, b.shortErr
	b.bmu.Unlock()
	if err := b.fakeBackend.wait(ctx); err != nil {
		return nil, err
	}
	if gate != nil {
		if err := waitFor(ctx, gate); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	out := make([]*tiercache.CacheValue[string], len(keys))
	failed := false
	b.fakeBackend.mu.Lock()
	getErr := b.fakeBackend.getErr
	for i, key := range keys {
		if failKeys[key] {
			failed = true
			continue
		}
		if v, ok := b.fakeBackend.m[key]; ok && !v.Expired(now) {
			out[i] = &v
		}
	}
	b.fakeBackend.mu.Unlock()
	switch {
	case getErr != nil:
		return nil, getErr
	case short:
		return out[:len(out)-1], shortErr
	case failed:
		return out, failErr
	}
	return out, nil
}

func (b *fakeBatchBackend) SetMany(ctx context.Context, keys []string, values []tiercache.CacheValue[string]) error {
	b.bmu.Lock()
	b.setManyLog = append(b.setManyLog, slices.Clone(keys))
	gate := b.setManyGate
	b.bmu.Unlock()
	if err := b.fakeBackend.wait(ctx); err != nil {
		return err
	}
	if gate != nil {
		if err := waitFor(ctx, gate); err != nil {
			return err
		}
	}
	b.fakeBackend.mu.Lock()
	defer b.fakeBackend.mu.Unlock()
	if b.fakeBackend.setErr != nil {
		return b.fakeBackend.setErr
	}
	for i, key := range keys {
		b.fakeBackend.m[key] = values[i]
		b.fakeBackend.setLog = append(b.fakeBackend.setLog, values[i])
	}
	return nil
}

// Flush empties the fake, so that it can be the L1 of a cache with an
// Invalidator.
func (b *fakeBatchBackend) Flush(context.Context) error {
	b.fakeBackend.configure(func(fb *fakeBackend) { clear(fb.m) })
	return nil
}

// configureBatch changes the batch behaviour under the fake's lock.
func (b *fakeBatchBackend) configureBatch(f func(b *fakeBatchBackend)) {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	f(b)
}

// getManyCalls returns the keys of each GetMany call, in order.
func (b *fakeBatchBackend) getManyCalls() [][]string {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	return slices.Clone(b.getManyLog)
}

// setManyCalls returns the keys of each SetMany call, in order.
func (b *fakeBatchBackend) setManyCalls() [][]string {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	return slices.Clone(b.setManyLog)
}
