package tiercache_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

// readOnlyBackend serves a fixed map without locking: the cheapest Backend
// there is, so that the benchmarks measure the cache, not the fake.
type readOnlyBackend map[string]*tiercache.CacheValue[string]

func (b readOnlyBackend) Get(_ context.Context, key string) (*tiercache.CacheValue[string], error) {
	return b[key], nil
}
func (readOnlyBackend) Set(context.Context, string, tiercache.CacheValue[string]) error { return nil }
func (readOnlyBackend) Delete(context.Context, string) error                            { return nil }

// BenchmarkCacheGet compares Cache.Get and GetOrLoad on an L1 hit with
// SequentialReadPolicy reading the same backend directly, in one run.
func BenchmarkCacheGet(b *testing.B) {
	ctx := context.Background()
	v := &tiercache.CacheValue[string]{Data: "value", Expire: time.Now().Add(time.Hour)}
	l1 := readOnlyBackend{"key": v}
	l2 := readOnlyBackend{}
	c, err := tiercache.New[string](l1, l2, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(ctx) })
	var sinkData string

	b.Run("impl=policy-direct/l1=hit", func(b *testing.B) {
		var p tiercache.SequentialReadPolicy[string]
		b.ReportAllocs()
		for b.Loop() {
			res, _ := p.Read(ctx, "key", l1.Get, l2.Get, nil)
			sinkData = res.Value.Data
		}
	})
	b.Run("impl=cache-get/l1=hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkData, _, _ = c.Get(ctx, "key")
		}
	})
	observed, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{
		Observer: tiercache.ObserverFunc(func(context.Context, tiercache.Event) {}),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = observed.Close(ctx) })
	b.Run("impl=cache-get-noop-observer/l1=hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkData, _, _ = observed.Get(ctx, "key")
		}
	})
	load := func(context.Context) (string, error) { return "loaded", nil }
	b.Run("impl=cache-getorload/l1=hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkData, _ = c.GetOrLoad(ctx, "key", load)
		}
	})
	_ = sinkData
}

// missBackend misses every key and accepts every write at once.
type missBackend struct{}

func (missBackend) Get(context.Context, string) (*tiercache.CacheValue[string], error) {
	return nil, nil
}
func (missBackend) Set(context.Context, string, tiercache.CacheValue[string]) error { return nil }
func (missBackend) Delete(context.Context, string) error                            { return nil }

// BenchmarkCacheGetOrLoadMiss measures the cache's own cost of a
// GetOrLoad that misses both layers: the flight, the L2 read, the load, the
// L1 write and the L2 write through the Offload, with layers and a loader
// that answer at once.
func BenchmarkCacheGetOrLoadMiss(b *testing.B) {
	ctx := context.Background()
	c, err := tiercache.New[string](missBackend{}, missBackend{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(ctx) })
	load := func(context.Context) (string, error) { return "loaded", nil }
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := c.GetOrLoad(ctx, keys[i&(len(keys)-1)], load); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCacheGetOrLoadL2Hit measures the cache's own cost of a
// GetOrLoad that misses L1 and hits L2: the flight, the L2 read and the
// refill of L1, with layers that answer at once; refill=always hands the
// refill to the Offload, refill=inline writes it before returning.
func BenchmarkCacheGetOrLoadL2Hit(b *testing.B) {
	for _, refill := range []tiercache.RefillPolicy{tiercache.RefillAlways, tiercache.RefillInline} {
		b.Run("refill="+refill.String(), func(b *testing.B) {
			ctx := context.Background()
			l2 := readOnlyBackend{"key": {Data: "value", Expire: time.Now().Add(time.Hour)}}
			c, err := tiercache.New[string](missBackend{}, l2, &tiercache.Options[string]{Refill: refill})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close(ctx) })
			load := func(context.Context) (string, error) { return "loaded", nil }
			b.ReportAllocs()
			for b.Loop() {
				if v, err := c.GetOrLoad(ctx, "key", load); err != nil || v != "value" {
					b.Fatal(v, err)
				}
			}
		})
	}
}

// BenchmarkCacheL2Timeout measures what L2Timeout costs a Get that misses
// L1 and hits L2: deadline=none and deadline=later derive the read's ctx
// from the caller's (a timer and its allocations); deadline=nearer, a
// caller whose own deadline comes first, reads with the caller's ctx.
func BenchmarkCacheL2Timeout(b *testing.B) {
	const l2Timeout = time.Hour
	for _, tt := range []struct {
		name     string
		deadline time.Duration // from now; 0: none
	}{{"none", 0}, {"later", 2 * l2Timeout}, {"nearer", l2Timeout / 2}} {
		b.Run("deadline="+tt.name, func(b *testing.B) {
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				b.Cleanup(cancel)
			}
			l2 := readOnlyBackend{"key": {Data: "value", Expire: time.Now().Add(24 * time.Hour)}}
			c, err := tiercache.New[string](missBackend{}, l2, &tiercache.Options[string]{L2Timeout: l2Timeout, Refill: tiercache.RefillInline})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close(context.Background()) })
			b.ReportAllocs()
			for b.Loop() {
				if v, ok, err := c.Get(ctx, "key"); err != nil || !ok || v != "value" {
					b.Fatal(v, ok, err)
				}
			}
		})
	}
}
