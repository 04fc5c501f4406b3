package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tiercache/tiercache"
)

// mapBackend is a minimal Backend over a map, standing in for otter (L1) or
// Redis (L2) in the examples.
type mapBackend[T any] struct {
	mu sync.Mutex
	m  map[string]tiercache.CacheValue[T]
}

func newMapBackend[T any]() *mapBackend[T] {
	return &mapBackend[T]{m: make(map[string]tiercache.CacheValue[T])}
}

func (b *mapBackend[T]) Get(_ context.Context, key string) (*tiercache.CacheValue[T], error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[key]
	if !ok || v.Expired(time.Now()) {
		return nil, nil
	}
	return &v, nil
}

func (b *mapBackend[T]) Set(_ context.Context, key string, v tiercache.CacheValue[T]) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = v
	return nil
}

func (b *mapBackend[T]) Delete(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
	return nil
}

// A cache over two backends: GetOrLoad asks the origin only on a miss, and
// remembers that a user does not exist.
func ExampleCache() {
	ctx := context.Background()
	cache, err := tiercache.New(newMapBackend[string](), newMapBackend[string](), &tiercache.Options[string]{
		DefaultTTL:  10 * time.Minute,
		NegativeTTL: time.Minute,
	})
	if err != nil {
		panic(err)
	}
	defer cache.Close(ctx)

	loads := 0
	loadUser := func(id string) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) {
			loads++
			if id == "42" {
				return "Ada Lovelace", nil
			}
			return "", tiercache.ErrNotFound
		}
	}
	for range 3 {
		name, err := cache.GetOrLoad(ctx, "user:42", loadUser("42"))
		fmt.Println(name, err)
	}
	_, err = cache.GetOrLoad(ctx, "user:7", loadUser("7"))
	fmt.Println(errors.Is(err, tiercache.ErrNotFound))
	_, err = cache.GetOrLoad(ctx, "user:7", loadUser("7"))
	fmt.Println(errors.Is(err, tiercache.ErrNotFound), "loads:", loads)
	// Output:
	// Ada Lovelace <nil>
	// Ada Lovelace <nil>
	// Ada Lovelace <nil>
	// true
	// true loads: 2
}

// Set writes both layers; Get reads them through the read policy.
func ExampleCache_Set() {
	ctx := context.Background()
	cache, err := tiercache.New(newMapBackend[int](), newMapBackend[int](), nil)
	if err != nil {
		panic(err)
	}
	defer cache.Close(ctx)

	if err := cache.Set(ctx, "answer", 42, time.Hour); err != nil {
		panic(err)
	}
	v, ok, err := cache.Get(ctx, "answer")
	fmt.Println(v, ok, err)
	_ = cache.Delete(ctx, "answer")
	v, ok, err = cache.Get(ctx, "answer")
	fmt.Println(v, ok, err)
	// Output:
	// 42 true <nil>
	// 0 false <nil>
}
