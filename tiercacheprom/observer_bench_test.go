package tiercacheprom_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/tiercacheprom"
)

// readOnlyBackend serves a fixed map without locking, so that the benchmark
// measures the cache and the Observer, not the backend.
type readOnlyBackend map[string]*tiercache.CacheValue[string]

func (b readOnlyBackend) Get(_ context.Context, key string) (*tiercache.CacheValue[string], error) {
	return b[key], nil
}
func (readOnlyBackend) Set(context.Context, string, tiercache.CacheValue[string]) error { return nil }
func (readOnlyBackend) Delete(context.Context, string) error                            { return nil }

// BenchmarkCacheGet compares Cache.Get on an L1 hit without an Observer,
// with one that does nothing (the cost of the events themselves) and with
// the Prometheus one, in one run.
func BenchmarkCacheGet(b *testing.B) {
	ctx := context.Background()
	l1 := readOnlyBackend{"key": {Data: "value", Expire: time.Now().Add(time.Hour)}}
	l2 := readOnlyBackend{}
	obs, err := tiercacheprom.NewObserver(nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name string
		obs  tiercache.Observer
	}{
		{"impl=cache-get/l1=hit", nil},
		{"impl=cache-get-noop-observer/l1=hit", tiercache.ObserverFunc(func(context.Context, tiercache.Event) {})},
		{"impl=cache-get-prom-observer/l1=hit", obs},
	} {
		c, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{Name: "users", Observer: bm.obs})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			var sink string
			for b.Loop() {
				sink, _, _ = c.Get(ctx, "key")
			}
			_ = sink
		})
		if err := c.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCollect measures a scrape of a Collector: one Stats snapshot and
// 37 series.
func BenchmarkCollect(b *testing.B) {
	c, _, _ := newCache(b, nil)
	col := tiercacheprom.NewCollector("users", c)
	ch := make(chan prometheus.Metric, 64)
	b.ReportAllocs()
	for b.Loop() {
		col.Collect(ch)
		for len(ch) > 0 {
			<-ch
		}
	}
}
