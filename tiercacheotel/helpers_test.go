package tiercacheotel_test

import (
	"context"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	"github.com/tiercache/tiercache/tiercacheotel"
)

// harness is a Cache named "users" over two in-memory backends, observed by an
// Observer recording on an SDK MeterProvider with a ManualReader and, with
// tracing, on an SDK TracerProvider with a SpanRecorder. Background work
// runs synchronously unless the options say otherwise.
type harness struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	obs    *tiercacheotel.Observer
	l1, l2 *backendtest.Memory[string]
	cache  *tiercache.Cache[string]
}

// syncOffload runs background work at once, on the caller's goroutine.
var syncOffload = tiercache.OffloadFunc(func(_ string, task func(context.Context)) bool {
	task(context.Background())
	return true
})

func newHarness(t *testing.T, tracing bool, configure func(o *tiercache.Options[string])) *harness {
	t.Helper()
	h := &harness{
		reader: sdkmetric.NewManualReader(),
		spans:  tracetest.NewSpanRecorder(),
		l1:     backendtest.NewMemory[string](),
		l2:     backendtest.NewMemory[string](),
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = h.tp.Shutdown(context.Background())
	})
	var err error
	h.obs, err = tiercacheotel.New(&tiercacheotel.Options{MeterProvider: mp, TracerProvider: h.tp, Tracing: tracing})
	if err != nil {
		t.Fatal(err)
	}
	opts := &tiercache.Options[string]{Name: "users", Observer: h.obs, Offload: syncOffload}
	if configure != nil {
		configure(opts)
	}
	h.cache, err = tiercache.New[string](h.l1, h.l2, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.cache.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// collect returns the metrics recorded so far, by name.
func (h *harness) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != tiercacheotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, tiercacheotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// key encodes an attribute set as "k=v,k=v", sorted by key.
func key(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }

// histCounts returns the count of each data point of the histogram name,
// by attributes, after checking its unit.
func histCounts(t *testing.T, ms map[string]metricdata.Metrics, name, unit string) map[string]uint64 {
	t.Helper()
	out := make(map[string]uint64)
	m, ok := ms[name]
	if !ok {
		return out
	}
	if m.Unit != unit {
		t.Errorf("%s: unit %q, want %q", name, m.Unit, unit)
	}
	switch data := m.Data.(type) {
	case metricdata.Histogram[float64]:
		for _, p := range data.DataPoints {
			out[key(p.Attributes)] = p.Count
		}
	case metricdata.Histogram[int64]:
		for _, p := range data.DataPoints {
			out[key(p.Attributes)] = p.Count
		}
	default:
		t.Errorf("%s: %T, want a histogram", name, m.Data)
	}
	return out
}

// sums returns the value of each data point of the counter name, by
// attributes, after checking its unit and that it is monotonic.
func sums(t *testing.T, ms map[string]metricdata.Metrics, name, unit string) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	m, ok := ms[name]
	if !ok {
		return out
	}
	if m.Unit != unit {
		t.Errorf("%s: unit %q, want %q", name, m.Unit, unit)
	}
	data, ok := m.Data.(metricdata.Sum[int64])
	if !ok || !data.IsMonotonic {
		t.Errorf("%s: %T (monotonic: %v), want a monotonic int64 sum", name, m.Data, ok && data.IsMonotonic)
		return out
	}
	for _, p := range data.DataPoints {
		out[key(p.Attributes)] = p.Value
	}
	return out
}

// equal reports a difference between two maps, naming the metric.
func equal[V comparable](t *testing.T, name string, got, want map[string]V) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s{%s} = %v (present: %v), want %v", name, k, g, ok, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s{%s} = %v, not expected", name, k, g)
		}
	}
}

// deferredOffload keeps background work until run is called, so that it
// runs after the operation that started it has ended.
type deferredOffload struct {
	mu    sync.Mutex
	tasks []func(context.Context)
}

func (d *deferredOffload) Go(_ string, task func(context.Context)) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tasks = append(d.tasks, task)
	return true
}

func (d *deferredOffload) run() {
	d.mu.Lock()
	tasks := d.tasks
	d.tasks = nil
	d.mu.Unlock()
	for _, task := range tasks {
		task(context.Background())
	}
}

// fakeInvalidator is a tiercache.Invalidator whose handler the test calls,
// and whose Announce fails with announceErr when it is set.
type fakeInvalidator struct {
	mu          sync.Mutex
	handler     func(tiercache.InvalidationEvent)
	announceErr error
}

func (f *fakeInvalidator) Subscribe(handler func(tiercache.InvalidationEvent)) (tiercache.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handler = handler
	return f, nil
}

func (f *fakeInvalidator) Announce(context.Context, ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.announceErr
}

func (f *fakeInvalidator) Close() error { return nil }

// deliver hands e to the subscribed cache.
func (f *fakeInvalidator) deliver(e tiercache.InvalidationEvent) {
	f.mu.Lock()
	h := f.handler
	f.mu.Unlock()
	h(e)
}
