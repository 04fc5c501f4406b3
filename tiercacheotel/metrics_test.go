package tiercacheotel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	tco "github.com/tiercache/tiercache/tiercacheotel"
)

var (
	users = tco.CacheNameKey.String("users")
	l1    = tco.LayerKey.String("l1")
	l2    = tco.LayerKey.String("l2")
	errDB = errors.New("database down")
)

func status(s string) attribute.KeyValue { return tco.StatusKey.String(s) }
func op(s string) attribute.KeyValue     { return tco.OperationKey.String(s) }

// attrs encodes attributes as the helpers' maps are keyed.
func attrs(kvs ...attribute.KeyValue) string { return key(attribute.NewSet(kvs...)) }

func TestGetMetrics(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	h.l1.Put("a", tiercache.CacheValue[string]{Data: "in L1"})
	h.l2.Put("c", tiercache.CacheValue[string]{Data: "in L2"})
	for _, k := range []string{"a", "b", "c"} { // L1 hit; miss in both; L2 hit, refilled
		if _, _, err := h.cache.Get(ctx, k); err != nil {
			t.Fatalf("Get(%q): %v", k, err)
		}
	}

	ms := h.collect(t)
	equal(t, tco.MetricLayerReadDuration, histCounts(t, ms, tco.MetricLayerReadDuration, "s"), map[string]uint64{
		attrs(users, l1, status("hit")):  1,
		attrs(users, l1, status("miss")): 2,
		attrs(users, l2, status("miss")): 1,
		attrs(users, l2, status("hit")):  1,
	})
	equal(t, tco.MetricOperationDuration, histCounts(t, ms, tco.MetricOperationDuration, "s"), map[string]uint64{
		attrs(users, op("get"), status("hit"), l1): 1,
		attrs(users, op("get"), status("hit"), l2): 1,
		attrs(users, op("get"), status("miss")):    1,
	})
	equal(t, tco.MetricRefills, sums(t, ms, tco.MetricRefills, "{key}"), map[string]int64{
		attrs(users): 1,
	})

	hist := ms[tco.MetricLayerReadDuration].Data.(metricdata.Histogram[float64])
	if b := hist.DataPoints[0].Bounds; len(b) != 16 || b[0] != 0.00001 || b[len(b)-1] != 1 {
		t.Errorf("bounds %v, want 16 from 10µs to 1s", b)
	}
	for _, p := range hist.DataPoints {
		if p.Sum <= 0 || p.Sum > 1 {
			t.Errorf("%s: sum %vs, want a read's duration in seconds", key(p.Attributes), p.Sum)
		}
	}
}

func TestGetOrLoadMetrics(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	loads := map[string]func(context.Context) (string, error){
		"loaded":  func(context.Context) (string, error) { return "v", nil },
		"absent":  func(context.Context) (string, error) { return "", tiercache.ErrNotFound },
		"failing": func(context.Context) (string, error) { return "", errDB },
	}
	for _, k := range []string{"loaded", "loaded", "absent", "failing"} {
		_, err := h.cache.GetOrLoad(ctx, k, loads[k])
		if k == "failing" && !errors.Is(err, errDB) || k == "absent" && !errors.Is(err, tiercache.ErrNotFound) ||
			k == "loaded" && err != nil {
			t.Fatalf("GetOrLoad(%q): %v", k, err)
		}
	}

	ms := h.collect(t)
	equal(t, tco.MetricOperationDuration, histCounts(t, ms, tco.MetricOperationDuration, "s"), map[string]uint64{
		attrs(users, op("get_or_load"), status("miss")):    2, // loaded; not found is a miss, not a failure
		attrs(users, op("get_or_load"), status("hit"), l1): 1,
		attrs(users, op("get_or_load"), status("failed")):  1,
	})
	equal(t, tco.MetricLoadDuration, histCounts(t, ms, tco.MetricLoadDuration, "s"), map[string]uint64{
		attrs(users, status("ok")):        1,
		attrs(users, status("not_found")): 1,
		attrs(users, status("failed")):    1,
	})
	equal(t, tco.MetricLoadKeys, sums(t, ms, tco.MetricLoadKeys, "{key}"), map[string]int64{
		attrs(users, status("ok")):        1,
		attrs(users, status("not_found")): 1,
		attrs(users, status("failed")):    1,
	})
	equal(t, tco.MetricLoadWaiters, histCounts(t, ms, tco.MetricLoadWaiters, "{waiter}"), map[string]uint64{
		attrs(users): 3,
	})
	waiters := ms[tco.MetricLoadWaiters].Data.(metricdata.Histogram[int64]).DataPoints[0]
	if waiters.Sum != 3 {
		t.Errorf("waiters: sum %d, want 3 (one caller for each load)", waiters.Sum)
	}
}

func TestWriteMetrics(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	if err := h.cache.Set(ctx, "k", "v", 0); err != nil {
		t.Fatal(err)
	}
	if err := h.cache.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	h.l2.FailSet(errDB)
	if err := h.cache.Set(ctx, "k", "v", 0); !errors.Is(err, errDB) {
		t.Fatalf("Set with L2 failing: %v, want %v", err, errDB)
	}

	ms := h.collect(t)
	equal(t, tco.MetricOperationDuration, histCounts(t, ms, tco.MetricOperationDuration, "s"), map[string]uint64{
		attrs(users, op("set"), status("ok")):     1,
		attrs(users, op("delete"), status("ok")):  1,
		attrs(users, op("set"), status("failed")): 1,
	})
}

func TestBackgroundFailureMetrics(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		configure func(o *tiercache.Options[string])
		run       func(h *harness)
		metric    string
		unit      string
		want      map[string]int64
	}{
		{
			name: "L2 write of a loaded value",
			run: func(h *harness) {
				h.l2.FailSet(errDB)
				_, _ = h.cache.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
			},
			metric: tco.MetricWriteFailures, unit: "{write}",
			want: map[string]int64{attrs(users, l2): 1},
		},
		{
			name: "refill",
			run: func(h *harness) {
				h.l2.Put("k", tiercache.CacheValue[string]{Data: "v"})
				h.l1.FailSet(errDB)
				_, _, _ = h.cache.Get(ctx, "k")
			},
			metric: tco.MetricWriteFailures, unit: "{write}",
			want: map[string]int64{attrs(users, l1): 1},
		},
		{
			name: "offload refusing a refill",
			configure: func(o *tiercache.Options[string]) {
				o.Offload = tiercache.OffloadFunc(func(string, func(context.Context)) bool { return false })
			},
			run: func(h *harness) {
				h.l2.Put("k", tiercache.CacheValue[string]{Data: "v"})
				_, _, _ = h.cache.Get(ctx, "k")
			},
			metric: tco.MetricOffloadRejectedTasks, unit: "{task}",
			want: map[string]int64{attrs(users, tco.OffloadKindKey.String(tiercache.OffloadKindRefill)): 1},
		},
		{
			name: "breaker opening",
			configure: func(o *tiercache.Options[string]) {
				o.Breaker = tiercache.BreakerOptions{Failures: 1, CoolDown: time.Hour}
			},
			run: func(h *harness) {
				h.l2.FailGet(errDB)
				_, _, _ = h.cache.Get(ctx, "k") // opens it
				_, _, _ = h.cache.Get(ctx, "k") // goes around L2
			},
			metric: tco.MetricBreakerTransitions, unit: "{transition}",
			want: map[string]int64{
				attrs(users, tco.BreakerFromKey.String("closed"), tco.BreakerToKey.String("open")): 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, false, tt.configure)
			tt.run(h)
			equal(t, tt.metric, sums(t, h.collect(t), tt.metric, tt.unit), tt.want)
		})
	}
}

func TestBreakerReadMetrics(t *testing.T) {
	h := newHarness(t, false, func(o *tiercache.Options[string]) {
		o.Breaker = tiercache.BreakerOptions{Failures: 1, CoolDown: time.Hour}
	})
	h.l2.FailGet(errDB)
	ctx := context.Background()
	for range 3 {
		if _, _, err := h.cache.Get(ctx, "k"); err != nil {
			t.Fatalf("Get: %v, want a miss", err)
		}
	}
	// One L2 read failed and opened the breaker; the reads it refused are
	// not reads of L2.
	equal(t, tco.MetricLayerReadDuration, histCounts(t, h.collect(t), tco.MetricLayerReadDuration, "s"), map[string]uint64{
		attrs(users, l1, status("miss")):   3,
		attrs(users, l2, status("failed")): 1,
	})
}

func TestInvalidationMetrics(t *testing.T) {
	inv := &fakeInvalidator{}
	h := newHarness(t, false, func(o *tiercache.Options[string]) { o.Invalidator = inv })
	ctx := context.Background()
	inv.deliver(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionRestored})
	if err := h.cache.Set(ctx, "x", "v", 0); err != nil {
		t.Fatal(err)
	}
	inv.mu.Lock()
	inv.announceErr = errDB
	inv.mu.Unlock()
	if err := h.cache.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	inv.deliver(tiercache.InvalidationEvent{Kind: tiercache.KeysChanged, Keys: []string{"x", "y"}})
	inv.deliver(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionLost})
	inv.deliver(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionRestored})
	inv.deliver(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionLost})

	ms := h.collect(t)
	sent := tco.InvalidationDirectionKey.String("sent")
	equal(t, tco.MetricInvalidationKeys, sums(t, ms, tco.MetricInvalidationKeys, "{key}"), map[string]int64{
		attrs(users, sent, status("ok")):                              1,
		attrs(users, sent, status("failed")):                          1,
		attrs(users, tco.InvalidationDirectionKey.String("received")): 2,
	})
	equal(t, tco.MetricSubscriptionDrops, sums(t, ms, tco.MetricSubscriptionDrops, "{drop}"), map[string]int64{
		attrs(users): 2,
	})
}

func TestSeveralCaches(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	for _, name := range []string{"orders", ""} {
		c, err := tiercache.New[string](backendtest.NewMemory[string](), backendtest.NewMemory[string](), &tiercache.Options[string]{Name: name, Observer: h.obs})
		if err != nil {
			t.Fatal(err)
		}
		_, _, _ = c.Get(ctx, "k")
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, _, _ = h.cache.Get(ctx, "k")

	equal(t, tco.MetricOperationDuration, histCounts(t, h.collect(t), tco.MetricOperationDuration, "s"), map[string]uint64{
		attrs(users, op("get"), status("miss")):                             1,
		attrs(tco.CacheNameKey.String("orders"), op("get"), status("miss")): 1,
		attrs(op("get"), status("miss")):                                    1, // an unnamed cache has no name attribute
	})
}

// TestConcurrentCaches records events of many cache names at once, for the
// race detector.
func TestConcurrentCaches(t *testing.T) {
	h := newHarness(t, false, nil)
	ctx := context.Background()
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 100 {
				h.obs.Observe(ctx, tiercache.Event{Kind: tiercache.EventRefill, Cache: fmt.Sprint("c", (i+j)%5), Keys: 1})
			}
		}()
	}
	for range 8 {
		<-done
	}
	var total int64
	for _, v := range sums(t, h.collect(t), tco.MetricRefills, "{key}") {
		total += v
	}
	if total != 800 {
		t.Errorf("refills: %d, want 800", total)
	}
}

func TestNewDefaults(t *testing.T) {
	obs, err := tco.New(nil) // the global providers: no-ops here
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := obs.StartOp(ctx, tiercache.OpGet, ""); got != ctx {
		t.Error("StartOp without tracing returned another ctx")
	}
	c, err := tiercache.New[string](backendtest.NewMemory[string](), backendtest.NewMemory[string](), &tiercache.Options[string]{Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
}
