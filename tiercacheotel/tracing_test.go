package tiercacheotel_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	tco "github.com/tiercache/tiercache/tiercacheotel"
)

// ended returns the ended spans named name.
func (h *harness) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// only returns the one ended span named name.
func (h *harness) only(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	spans := h.ended(name)
	if len(spans) != 1 {
		t.Fatalf("%d spans %q ended, want 1", len(spans), name)
	}
	return spans[0]
}

// checkAttrs checks that every attribute of want is among got, and that
// none of absent is.
func checkAttrs(t *testing.T, what string, got []attribute.KeyValue, want []attribute.KeyValue, absent ...attribute.Key) {
	t.Helper()
	set := attribute.NewSet(got...)
	for _, w := range want {
		if v, ok := set.Value(w.Key); !ok || v != w.Value {
			t.Errorf("%s: %s = %v (present: %v), want %v", what, w.Key, v.String(), ok, w.Value.String())
		}
	}
	for _, k := range absent {
		if v, ok := set.Value(k); ok {
			t.Errorf("%s: %s = %v, want none", what, k, v.String())
		}
	}
}

// event returns the span's one event named name.
func event(t *testing.T, s sdktrace.ReadOnlySpan, name string) sdktrace.Event {
	t.Helper()
	var found []sdktrace.Event
	for _, e := range s.Events() {
		if e.Name == name {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("span %s: %d events %q, want 1 (events: %v)", s.Name(), len(found), name, s.Events())
	}
	return found[0]
}

// parent starts the span of a request calling the cache.
func (h *harness) parent(ctx context.Context) (context.Context, trace.Span) {
	return h.tp.Tracer("test").Start(ctx, "request")
}

func TestSpanOfAGet(t *testing.T) {
	h := newHarness(t, true, nil)
	h.l1.Put("a", tiercache.CacheValue[string]{Data: "in L1"})
	h.l2.Put("c", tiercache.CacheValue[string]{Data: "in L2"})
	ctx, req := h.parent(context.Background())
	for _, k := range []string{"a", "c"} {
		if _, _, err := h.cache.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	req.End()

	spans := h.ended("tiercache.get")
	if len(spans) != 2 {
		t.Fatalf("%d spans tiercache.get, want 2", len(spans))
	}
	for i, layer := range []string{"l1", "l2"} {
		s := spans[i]
		if s.Parent().SpanID() != req.SpanContext().SpanID() || s.SpanContext().TraceID() != req.SpanContext().TraceID() {
			t.Errorf("span %d: parent %v, want the request's span %v", i, s.Parent().SpanID(), req.SpanContext().SpanID())
		}
		if s.SpanKind() != trace.SpanKindInternal {
			t.Errorf("span %d: kind %v, want internal", i, s.SpanKind())
		}
		checkAttrs(t, "span "+layer, s.Attributes(), []attribute.KeyValue{
			users, op("get"), status("hit"), tco.LayerKey.String(layer),
		})
		if s.Status().Code != codes.Unset {
			t.Errorf("span %d: status %v, want unset", i, s.Status())
		}
	}
	if len(spans[0].Events()) != 0 {
		t.Errorf("L1 hit: events %v, want none", spans[0].Events())
	}
	refill := event(t, spans[1], "tiercache.refill") // synchronous Offload: within the Get
	checkAttrs(t, "refill", refill.Attributes, []attribute.KeyValue{tco.KeysKey.Int(1)})
}

func TestSpanOfALoad(t *testing.T) {
	h := newHarness(t, true, nil)
	ctx, req := h.parent(context.Background())
	if _, err := h.cache.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	req.End()

	s := h.only(t, "tiercache.get_or_load")
	if s.Parent().SpanID() != req.SpanContext().SpanID() {
		t.Errorf("parent %v, want the request's span", s.Parent().SpanID())
	}
	checkAttrs(t, "span", s.Attributes(), []attribute.KeyValue{users, op("get_or_load"), status("miss")}, tco.LayerKey)
	load := event(t, s, "tiercache.load")
	checkAttrs(t, "load", load.Attributes, []attribute.KeyValue{
		status("ok"), tco.KeysKey.Int(1), tco.WaitersKey.Int(1),
	}, "exception.message")
	loadAttrs := attribute.NewSet(load.Attributes...)
	d, ok := loadAttrs.Value(tco.DurationKey)
	if !ok || d.AsFloat64() <= 0 || d.AsFloat64() > s.EndTime().Sub(s.StartTime()).Seconds() {
		t.Errorf("load: %s = %v, want the load's duration in seconds, within the span's", tco.DurationKey, d.String())
	}
}

func TestSpanOfAFailure(t *testing.T) {
	h := newHarness(t, true, nil)
	errDB := errors.New("database down")
	_, err := h.cache.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "", errDB })
	if !errors.Is(err, errDB) {
		t.Fatalf("GetOrLoad: %v, want %v", err, errDB)
	}

	s := h.only(t, "tiercache.get_or_load")
	if s.Parent().IsValid() {
		t.Errorf("parent %v, want a root span (no span in the caller's ctx)", s.Parent())
	}
	checkAttrs(t, "span", s.Attributes(), []attribute.KeyValue{users, status("failed")})
	if s.Status().Code != codes.Error || !strings.Contains(s.Status().Description, "database down") {
		t.Errorf("status %+v, want an error with the loader's message", s.Status())
	}
	exc := event(t, s, "exception")
	checkAttrs(t, "exception", exc.Attributes, []attribute.KeyValue{attribute.String("exception.message", err.Error())})
	load := event(t, s, "tiercache.load")
	checkAttrs(t, "load", load.Attributes, []attribute.KeyValue{status("failed")})
	loadAttrs := attribute.NewSet(load.Attributes...)
	if msg, _ := loadAttrs.Value("exception.message"); !strings.Contains(msg.AsString(), errDB.Error()) {
		t.Errorf("load: exception.message %q, want the loader's error", msg.AsString())
	}
}

func TestSpanOfANotFound(t *testing.T) {
	h := newHarness(t, true, nil)
	_, err := h.cache.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "", tiercache.ErrNotFound })
	if !errors.Is(err, tiercache.ErrNotFound) {
		t.Fatal(err)
	}
	s := h.only(t, "tiercache.get_or_load")
	checkAttrs(t, "span", s.Attributes(), []attribute.KeyValue{status("miss")})
	if s.Status().Code != codes.Unset {
		t.Errorf("status %+v: a thing that does not exist is not an error", s.Status())
	}
	checkAttrs(t, "load", event(t, s, "tiercache.load").Attributes, []attribute.KeyValue{status("not_found")})
}

// A refill through a real Offload usually ends after the Get's span: it
// becomes a span of its own, child of the Get's.
func TestSpanOfABackgroundRefill(t *testing.T) {
	off := &deferredOffload{}
	h := newHarness(t, true, func(o *tiercache.Options[string]) { o.Offload = off })
	h.l2.Put("c", tiercache.CacheValue[string]{Data: "in L2"})
	if _, _, err := h.cache.Get(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	get := h.only(t, "tiercache.get")
	if len(get.Events()) != 0 {
		t.Errorf("get: events %v before the refill ran", get.Events())
	}
	off.run()

	refill := h.only(t, "tiercache.refill")
	if refill.Parent().SpanID() != get.SpanContext().SpanID() {
		t.Errorf("refill's parent %v, want the get's span %v", refill.Parent().SpanID(), get.SpanContext().SpanID())
	}
	checkAttrs(t, "refill", refill.Attributes(), []attribute.KeyValue{users, tco.KeysKey.Int(1)})
}

func TestSpansOfEveryOperation(t *testing.T) {
	h := newHarness(t, true, nil)
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		out := make(map[string]string, len(keys))
		for _, k := range keys {
			out[k] = "v"
		}
		return out, nil
	}
	_ = h.cache.Set(ctx, "a", "v", 0)
	_, _, _ = h.cache.Get(ctx, "a")
	_, _ = h.cache.GetOrLoad(ctx, "b", load)
	_, _ = h.cache.GetMany(ctx, []string{"a", "b", "c"})
	_, _ = h.cache.GetOrLoadMany(ctx, []string{"c", "d"}, loadMany)
	_ = h.cache.Delete(ctx, "a")

	for _, tt := range []struct {
		name string
		want []attribute.KeyValue
	}{
		{"tiercache.set", []attribute.KeyValue{op("set"), status("ok")}},
		{"tiercache.get", []attribute.KeyValue{op("get"), status("hit"), l1}},
		{"tiercache.get_or_load", []attribute.KeyValue{op("get_or_load"), status("miss")}},
		{"tiercache.get_many", []attribute.KeyValue{op("get_many"), status("hit"), tco.KeysKey.Int(3)}},
		{"tiercache.get_or_load_many", []attribute.KeyValue{op("get_or_load_many"), tco.KeysKey.Int(2)}},
		{"tiercache.delete", []attribute.KeyValue{op("delete"), status("ok")}},
	} {
		checkAttrs(t, tt.name, h.only(t, tt.name).Attributes(), append(tt.want, users))
	}
}

type callerKey struct{}

func TestNoTracing(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.WithValue(context.Background(), callerKey{}, "caller's")
	if got := h.obs.StartOp(ctx, tiercache.OpGet, ""); got != ctx {
		t.Error("StartOp returned another ctx without tracing")
	}
	ctx, req := h.parent(ctx)
	_, _ = h.cache.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	req.End()
	if spans := h.spans.Ended(); len(spans) != 1 || len(spans[0].Events()) != 0 {
		t.Errorf("spans %v, want the request's alone, without events", spans)
	}
}

// An Observer wrapped by one that does not forward StartOp sees
// EventOpDone without its span: it must not end the caller's.
func TestOpDoneWithoutStartOp(t *testing.T) {
	h := newHarness(t, true, nil)
	ctx, req := h.parent(context.Background())
	h.obs.Observe(ctx, tiercache.Event{Kind: tiercache.EventOpDone, Op: tiercache.OpGet, Status: tiercache.StatusHit, Layer: tiercache.L1})
	if !req.IsRecording() {
		t.Error("EventOpDone ended the caller's span")
	}
	req.End()
}

func TestUnsampledOperation(t *testing.T) {
	h := newHarness(t, true, nil)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(h.spans))
	defer tp.Shutdown(context.Background())
	obs, err := tco.New(&tco.Options{Tracing: true, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	off := &deferredOffload{}
	c, err := tiercache.New[string](backendtest.NewMemory[string](), h.l2, &tiercache.Options[string]{Observer: obs, Offload: off})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	h.l2.Put("k", tiercache.CacheValue[string]{Data: "v"})
	_, _, _ = c.Get(context.Background(), "k")
	off.run()
	if spans := h.spans.Ended(); len(spans) != 0 {
		t.Errorf("%d spans recorded, want none", len(spans))
	}
}

// Two tracing Observers behind a MultiObserver, exporting to two
// TracerProviders, each end the span they started and no other, put their
// events on it, and parent their background spans on it.
func TestTwoTracingObservers(t *testing.T) {
	var recorders [2]*tracetest.SpanRecorder
	var obs [2]tiercache.Observer
	for i := range obs {
		recorders[i] = tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorders[i]))
		defer tp.Shutdown(context.Background())
		o, err := tco.New(&tco.Options{Tracing: true, TracerProvider: tp, MeterProvider: noop.NewMeterProvider()})
		if err != nil {
			t.Fatal(err)
		}
		obs[i] = o
	}
	off := &deferredOffload{}
	l2 := backendtest.NewMemory[string]()
	c, err := tiercache.New[string](backendtest.NewMemory[string](), l2,
		&tiercache.Options[string]{Name: "users", Observer: tiercache.MultiObserver(obs[0], obs[1]), Offload: off})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	l2.Put("c", tiercache.CacheValue[string]{Data: "in L2"})
	if _, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	off.run() // the refill of "c", after the Get's span ended
	for i, r := range recorders {
		if started, ended := len(r.Started()), len(r.Ended()); started != 3 || ended != 3 {
			t.Fatalf("Observer %d: %d spans started, %d ended; want 3 and 3 (get_or_load, get, refill)", i, started, ended)
		}
		spans := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range r.Ended() {
			spans[s.Name()] = s
		}
		event(t, spans["tiercache.get_or_load"], "tiercache.load")
		if got, want := spans["tiercache.refill"].Parent().SpanID(), spans["tiercache.get"].SpanContext().SpanID(); got != want {
			t.Errorf("Observer %d: refill's parent %v, want its get's span %v", i, got, want)
		}
	}
}
