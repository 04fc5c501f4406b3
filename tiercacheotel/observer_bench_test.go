package tiercacheotel_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/tiercacheotel"
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
// with one that does nothing (the cost of the events themselves),
// with one recording metrics on the SDK, and with one recording spans too,
// in one run.
func BenchmarkCacheGet(b *testing.B) {
	ctx := context.Background()
	l1 := readOnlyBackend{"key": {Data: "value", Expire: time.Now().Add(time.Hour)}}
	l2 := readOnlyBackend{}

	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() {
		_ = mp.Shutdown(ctx)
		_ = tp.Shutdown(ctx)
	})
	metricsOnly, err := tiercacheotel.New(&tiercacheotel.Options{MeterProvider: mp})
	if err != nil {
		b.Fatal(err)
	}
	withTracing, err := tiercacheotel.New(&tiercacheotel.Options{MeterProvider: mp, TracerProvider: tp, Tracing: true})
	if err != nil {
		b.Fatal(err)
	}

	for _, bm := range []struct {
		name string
		obs  tiercache.Observer
	}{
		{"impl=cache-get/l1=hit", nil},
		{"impl=cache-get-noop-observer/l1=hit", tiercache.ObserverFunc(func(context.Context, tiercache.Event) {})},
		{"impl=cache-get-otel-metrics/l1=hit", metricsOnly},
		{"impl=cache-get-otel-metrics-tracing/l1=hit", withTracing},
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
