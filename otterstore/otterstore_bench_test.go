package otterstore_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
)

// benchKeys is the working set the read benchmarks cycle through, a power
// of two.
const benchKeys = 1 << 10

// getHit reads key on a hit; the benchmarks compare its two implementations.
type getHit func(key string) *tiercache.CacheValue[string]

// newGetHits returns, filled with benchKeys values that expire at expire,
// Store.Get and otter's own GetIfPresent on an otter cache configured as a
// Store configures its own: bounded to DefaultMaximumSize entries, with an
// expiry computed from each value's Expire.
func newGetHits(b *testing.B, expire time.Time) (keys []string, store, raw getHit) {
	keys = make([]string, benchKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
	}
	v := tiercache.CacheValue[string]{Data: "Ada Lovelace", Expire: expire}
	ctx := context.Background()

	s, err := otterstore.New[string](nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })

	c := otter.Must(&otter.Options[string, *tiercache.CacheValue[string]]{
		MaximumSize: otterstore.DefaultMaximumSize,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *tiercache.CacheValue[string]]) time.Duration {
			if e.Value.Expire.IsZero() {
				return time.Duration(math.MaxInt64)
			}
			return max(time.Until(e.Value.Expire), time.Nanosecond)
		}),
	})
	b.Cleanup(func() { c.StopAllGoroutines() })

	for _, k := range keys {
		if err := s.Set(ctx, k, v); err != nil {
			b.Fatal(err)
		}
		stored := v
		c.Set(k, &stored)
	}
	s.CleanUp()
	c.CleanUp()

	store = func(key string) *tiercache.CacheValue[string] {
		got, _ := s.Get(ctx, key)
		return got
	}
	raw = func(key string) *tiercache.CacheValue[string] {
		got, _ := c.GetIfPresent(key)
		return got
	}
	return keys, store, raw
}

// BenchmarkGetHit is Store.Get on a hit beside otter's GetIfPresent on an
// equivalent otter cache: what the Store adds to a read. Compare with
// benchstat -col /impl.
func BenchmarkGetHit(b *testing.B) {
	expires := []struct {
		name   string
		expire time.Time
	}{
		{"none", time.Time{}},
		{"set", time.Now().Add(time.Hour)},
	}
	for _, e := range expires {
		keys, store, raw := newGetHits(b, e.expire)
		impls := []struct {
			name string
			get  getHit
		}{
			{"otter-GetIfPresent", raw},
			{"Store-Get", store},
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("expire=%s/impl=%s", e.name, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if impl.get(keys[i&(benchKeys-1)]) == nil {
						b.Fatal("miss")
					}
					i++
				}
			})
		}
	}
}

// BenchmarkGetHitParallel is BenchmarkGetHit with every P reading.
func BenchmarkGetHitParallel(b *testing.B) {
	keys, store, raw := newGetHits(b, time.Now().Add(time.Hour))
	impls := []struct {
		name string
		get  getHit
	}{
		{"otter-GetIfPresent", raw},
		{"Store-Get", store},
	}
	for _, impl := range impls {
		b.Run("expire=set/impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if impl.get(keys[i&(benchKeys-1)]) == nil {
						b.Error("miss")
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkSet is Store.Set overwriting values that expire in an hour,
// cycling over benchKeys keys: with an Expire read from the clock (set),
// with one as decoded from L2, which has no monotonic reading (wall), and
// without one (none).
func BenchmarkSet(b *testing.B) {
	now := time.Now()
	for _, e := range []struct {
		name   string
		expire time.Time
	}{
		{"none", time.Time{}},
		{"set", now.Add(time.Hour)},
		{"wall", now.Add(time.Hour).Round(0)},
	} {
		b.Run("expire="+e.name, func(b *testing.B) {
			s, err := otterstore.New[string](nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			ctx := context.Background()
			keys := make([]string, benchKeys)
			for i := range keys {
				keys[i] = fmt.Sprintf("user:%d", i)
			}
			v := tiercache.CacheValue[string]{Data: "Ada Lovelace", Expire: e.expire}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := s.Set(ctx, keys[i&(benchKeys-1)], v); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
