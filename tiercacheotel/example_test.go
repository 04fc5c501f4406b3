package tiercacheotel_test

import (
	"context"
	"fmt"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	"github.com/tiercache/tiercache/tiercacheotel"
)

// A service gives the cache an Observer and a name. Here the metrics go to
// a ManualReader, to be printed; a service's MeterProvider exports them.
func Example() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(ctx)

	obs, err := tiercacheotel.New(&tiercacheotel.Options{MeterProvider: provider})
	if err != nil {
		panic(err)
	}
	cache, err := tiercache.New[string](backendtest.NewMemory[string](), backendtest.NewMemory[string](), &tiercache.Options[string]{
		Name:     "users",
		Observer: obs,
	})
	if err != nil {
		panic(err)
	}
	defer cache.Close(ctx)

	load := func(context.Context) (string, error) { return "Ada Lovelace", nil }
	for range 3 {
		if _, err := cache.GetOrLoad(ctx, "user:42", load); err != nil {
			panic(err)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		panic(err)
	}
	var lines []string
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if h, ok := m.Data.(metricdata.Histogram[float64]); ok {
			for _, p := range h.DataPoints {
				lines = append(lines, fmt.Sprintf("%s (%s) {%s} count=%d", m.Name, m.Unit, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Count))
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// tiercache.layer.read.duration (s) {tiercache.cache.name=users,tiercache.layer=l1,tiercache.status=hit} count=2
	// tiercache.layer.read.duration (s) {tiercache.cache.name=users,tiercache.layer=l1,tiercache.status=miss} count=1
	// tiercache.layer.read.duration (s) {tiercache.cache.name=users,tiercache.layer=l2,tiercache.status=miss} count=1
	// tiercache.load.duration (s) {tiercache.cache.name=users,tiercache.status=ok} count=1
	// tiercache.operation.duration (s) {tiercache.cache.name=users,tiercache.layer=l1,tiercache.operation=get_or_load,tiercache.status=hit} count=2
	// tiercache.operation.duration (s) {tiercache.cache.name=users,tiercache.operation=get_or_load,tiercache.status=miss} count=1
}
