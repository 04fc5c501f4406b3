package otterstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
)

// An otterstore as the L1 of a tiercache.Cache. A second otterstore stands
// in for the shared L2, which is usually Redis.
func Example() {
	ctx := context.Background()
	l1, err := otterstore.New(&otterstore.Options[string]{MaximumSize: 10_000})
	if err != nil {
		panic(err)
	}
	defer l1.Close() // after the cache: deferred calls run last first
	l2, err := otterstore.New[string](nil)
	if err != nil {
		panic(err)
	}
	defer l2.Close()

	cache, err := tiercache.New(l1, l2, &tiercache.Options[string]{DefaultTTL: 10 * time.Minute})
	if err != nil {
		panic(err)
	}
	defer cache.Close(ctx) // Close may be called again

	loads := 0
	loadUser := func(ctx context.Context) (string, error) {
		loads++
		return "Ada Lovelace", nil
	}
	for range 3 {
		name, err := cache.GetOrLoad(ctx, "user:42", loadUser)
		fmt.Println(name, err)
	}
	fmt.Println("loads:", loads)

	// The loaded value is in L1 when GetOrLoad returns; its L2 write runs in
	// the background, and Close waits for it.
	v, err := l1.Get(ctx, "user:42")
	fmt.Println("L1:", v.Data, err)
	if err := cache.Close(ctx); err != nil {
		panic(err)
	}
	v, err = l2.Get(ctx, "user:42")
	fmt.Println("L2:", v.Data, err)
	// Output:
	// Ada Lovelace <nil>
	// Ada Lovelace <nil>
	// Ada Lovelace <nil>
	// loads: 1
	// L1: Ada Lovelace <nil>
	// L2: Ada Lovelace <nil>
}

// A Store bounded by the bytes of its values rather than by entry count.
func ExampleNew_maximumWeight() {
	ctx := context.Background()
	s, err := otterstore.New(&otterstore.Options[[]byte]{
		MaximumWeight: 64 << 20, // 64 MiB of data
		Weigher: func(key string, v tiercache.CacheValue[[]byte]) uint32 {
			return uint32(len(key) + len(v.Data))
		},
	})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	if err := s.Set(ctx, "page:/", tiercache.CacheValue[[]byte]{Data: []byte("<html>…</html>"), Expire: time.Now().Add(time.Minute)}); err != nil {
		panic(err)
	}
	v, err := s.Get(ctx, "page:/")
	fmt.Println(string(v.Data), err)
	// Output:
	// <html>…</html> <nil>
}
