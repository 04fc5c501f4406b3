package tiercacheprom_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/tiercacheprom"
)

// The Observer's histograms, fed events of known durations.
func TestObserverExposition(t *testing.T) {
	obs, err := tiercacheprom.NewObserver(&tiercacheprom.ObserverOptions{Buckets: []float64{0.001, 0.01}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	notFound := fmt.Errorf("tiercache: load %q: %w", "k", tiercache.ErrNotFound)
	for _, e := range []tiercache.Event{
		{Kind: tiercache.EventRead, Layer: tiercache.L1, Status: tiercache.StatusHit, Duration: 100 * time.Microsecond},
		{Kind: tiercache.EventRead, Layer: tiercache.L1, Status: tiercache.StatusHit, Duration: 100 * time.Microsecond},
		{Kind: tiercache.EventRead, Layer: tiercache.L2, Status: tiercache.StatusMiss, Duration: 5 * time.Millisecond},
		{Kind: tiercache.EventRead, Layer: tiercache.L2, Status: tiercache.StatusFailed, Duration: 20 * time.Millisecond, Err: errDB},
		{Kind: tiercache.EventRead, Layer: tiercache.L2, Status: tiercache.StatusAbandoned}, // no duration: not recorded
		{Kind: tiercache.EventOpDone, Op: tiercache.OpGet, Layer: tiercache.L1, Status: tiercache.StatusHit, Duration: 200 * time.Microsecond},
		{Kind: tiercache.EventOpDone, Op: tiercache.OpGetOrLoad, Status: tiercache.StatusFailed, Err: notFound, Duration: 2 * time.Millisecond},
		{Kind: tiercache.EventOpDone, Op: tiercache.OpSet, Status: tiercache.StatusMiss, Duration: 3 * time.Millisecond},
		{Kind: tiercache.EventOpDone, Op: tiercache.OpDelete, Status: tiercache.StatusFailed, Err: errDB, Duration: 30 * time.Millisecond},
		{Kind: tiercache.EventLoad, Duration: time.Millisecond, Keys: 1, Waiters: 1},
		{Kind: tiercache.EventLoad, Duration: 2 * time.Millisecond, Err: notFound, Keys: 1, Waiters: 1},
		{Kind: tiercache.EventRefill, Keys: 1}, // counted by the Collector, from Stats
	} {
		e.Cache = "users"
		obs.Observe(ctx, e)
	}

	const want = `
# HELP tiercache_layer_read_duration_seconds Duration of the reads of each cache layer.
# TYPE tiercache_layer_read_duration_seconds histogram
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l1",status="hit",le="0.001"} 2
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l1",status="hit",le="0.01"} 2
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l1",status="hit",le="+Inf"} 2
tiercache_layer_read_duration_seconds_sum{cache="users",layer="l1",status="hit"} 0.0002
tiercache_layer_read_duration_seconds_count{cache="users",layer="l1",status="hit"} 2
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l2",status="failed",le="0.001"} 0
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l2",status="failed",le="0.01"} 0
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l2",status="failed",le="+Inf"} 1
tiercache_layer_read_duration_seconds_sum{cache="users",layer="l2",status="failed"} 0.02
tiercache_layer_read_duration_seconds_count{cache="users",layer="l2",status="failed"} 1
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l2",status="miss",le="0.001"} 0
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l2",status="miss",le="0.01"} 1
tiercache_layer_read_duration_seconds_bucket{cache="users",layer="l2",status="miss",le="+Inf"} 1
tiercache_layer_read_duration_seconds_sum{cache="users",layer="l2",status="miss"} 0.005
tiercache_layer_read_duration_seconds_count{cache="users",layer="l2",status="miss"} 1
# HELP tiercache_load_duration_seconds Duration of the loader calls.
# TYPE tiercache_load_duration_seconds histogram
tiercache_load_duration_seconds_bucket{cache="users",status="not_found",le="0.001"} 0
tiercache_load_duration_seconds_bucket{cache="users",status="not_found",le="0.01"} 1
tiercache_load_duration_seconds_bucket{cache="users",status="not_found",le="+Inf"} 1
tiercache_load_duration_seconds_sum{cache="users",status="not_found"} 0.002
tiercache_load_duration_seconds_count{cache="users",status="not_found"} 1
tiercache_load_duration_seconds_bucket{cache="users",status="ok",le="0.001"} 1
tiercache_load_duration_seconds_bucket{cache="users",status="ok",le="0.01"} 1
tiercache_load_duration_seconds_bucket{cache="users",status="ok",le="+Inf"} 1
tiercache_load_duration_seconds_sum{cache="users",status="ok"} 0.001
tiercache_load_duration_seconds_count{cache="users",status="ok"} 1
# HELP tiercache_operation_duration_seconds Duration of the cache's operations.
# TYPE tiercache_operation_duration_seconds histogram
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="delete",status="failed",le="0.001"} 0
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="delete",status="failed",le="0.01"} 0
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="delete",status="failed",le="+Inf"} 1
tiercache_operation_duration_seconds_sum{cache="users",layer="",operation="delete",status="failed"} 0.03
tiercache_operation_duration_seconds_count{cache="users",layer="",operation="delete",status="failed"} 1
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="get_or_load",status="miss",le="0.001"} 0
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="get_or_load",status="miss",le="0.01"} 1
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="get_or_load",status="miss",le="+Inf"} 1
tiercache_operation_duration_seconds_sum{cache="users",layer="",operation="get_or_load",status="miss"} 0.002
tiercache_operation_duration_seconds_count{cache="users",layer="",operation="get_or_load",status="miss"} 1
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="set",status="ok",le="0.001"} 0
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="set",status="ok",le="0.01"} 1
tiercache_operation_duration_seconds_bucket{cache="users",layer="",operation="set",status="ok",le="+Inf"} 1
tiercache_operation_duration_seconds_sum{cache="users",layer="",operation="set",status="ok"} 0.003
tiercache_operation_duration_seconds_count{cache="users",layer="",operation="set",status="ok"} 1
tiercache_operation_duration_seconds_bucket{cache="users",layer="l1",operation="get",status="hit",le="0.001"} 1
tiercache_operation_duration_seconds_bucket{cache="users",layer="l1",operation="get",status="hit",le="0.01"} 1
tiercache_operation_duration_seconds_bucket{cache="users",layer="l1",operation="get",status="hit",le="+Inf"} 1
tiercache_operation_duration_seconds_sum{cache="users",layer="l1",operation="get",status="hit"} 0.0002
tiercache_operation_duration_seconds_count{cache="users",layer="l1",operation="get",status="hit"} 1
`
	if err := testutil.CollectAndCompare(obs, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// histCounts returns the sample count of each series of the histogram
// name in reg, keyed by its labels as "k=v,k=v".
func histCounts(t *testing.T, reg prometheus.Gatherer, name string) map[string]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]uint64)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var kv []string
			for _, l := range m.GetLabel() {
				kv = append(kv, l.GetName()+"="+l.GetValue())
			}
			slices.Sort(kv)
			out[strings.Join(kv, ",")] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

func equalCounts(t *testing.T, name string, got, want map[string]uint64) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s{%s} count %d (present: %v), want %d", name, k, g, ok, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s{%s} count %d, not expected", name, k, g)
		}
	}
}

func TestObserverOverACache(t *testing.T) {
	obs, err := tiercacheprom.NewObserver(nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(obs)
	c, l1, l2 := newCache(t, func(o *tiercache.Options[string]) { o.Observer = obs })
	ctx := context.Background()
	l1.Put("a", tiercache.CacheValue[string]{Data: "in L1"})
	l2.Put("c", tiercache.CacheValue[string]{Data: "in L2"})
	for _, k := range []string{"a", "b", "c"} { // L1 hit; miss in both; L2 hit
		if _, _, err := c.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	_, _ = c.GetOrLoad(ctx, "e", func(context.Context) (string, error) { return "", errDB })
	_ = c.Set(ctx, "s", "v", 0)

	equalCounts(t, "operation", histCounts(t, reg, "tiercache_operation_duration_seconds"), map[string]uint64{
		"cache=users,layer=l1,operation=get,status=hit":          1,
		"cache=users,layer=l2,operation=get,status=hit":          1,
		"cache=users,layer=,operation=get,status=miss":           1,
		"cache=users,layer=,operation=get_or_load,status=miss":   1,
		"cache=users,layer=,operation=get_or_load,status=failed": 1,
		"cache=users,layer=,operation=set,status=ok":             1,
	})
	equalCounts(t, "read", histCounts(t, reg, "tiercache_layer_read_duration_seconds"), map[string]uint64{
		"cache=users,layer=l1,status=hit":  1,
		"cache=users,layer=l1,status=miss": 4,
		"cache=users,layer=l2,status=hit":  1,
		"cache=users,layer=l2,status=miss": 3,
	})
	equalCounts(t, "load", histCounts(t, reg, "tiercache_load_duration_seconds"), map[string]uint64{
		"cache=users,status=ok":     1,
		"cache=users,status=failed": 1,
	})

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); len(h.GetBucket()) != 16 || h.GetSampleSum() <= 0 || h.GetSampleSum() > 1 {
				t.Errorf("%s %v: %d buckets, sum %vs; want DefaultBuckets' 16 and durations of this test", mf.GetName(), m.GetLabel(), len(h.GetBucket()), h.GetSampleSum())
			}
		}
	}
}

func TestObserverOfSeveralCaches(t *testing.T) {
	obs, err := tiercacheprom.NewObserver(nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(obs)
	ctx := context.Background()
	for _, name := range []string{"users", "orders", ""} {
		c, _, _ := newCache(t, func(o *tiercache.Options[string]) { o.Name, o.Observer = name, obs })
		_, _, _ = c.Get(ctx, "k")
	}
	equalCounts(t, "operation", histCounts(t, reg, "tiercache_operation_duration_seconds"), map[string]uint64{
		"cache=users,layer=,operation=get,status=miss":  1,
		"cache=orders,layer=,operation=get,status=miss": 1,
		"cache=,layer=,operation=get,status=miss":       1,
	})
}

// TestObserverCacheNameNotUTF8 shows a cache name with bytes that are not
// UTF-8 recorded under U+FFFD, where the vector would panic on it.
func TestObserverCacheNameNotUTF8(t *testing.T) {
	obs, err := tiercacheprom.NewObserver(nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(obs)
	c, _, _ := newCache(t, func(o *tiercache.Options[string]) { o.Name, o.Observer = "users\xff", obs })
	_, _, _ = c.Get(context.Background(), "k")
	equalCounts(t, "operation", histCounts(t, reg, "tiercache_operation_duration_seconds"), map[string]uint64{
		"cache=users\uFFFD,layer=,operation=get,status=miss": 1,
	})
}

// TestObserverConcurrently records events of several caches at once, for
// the race detector.
func TestObserverConcurrently(t *testing.T) {
	obs, err := tiercacheprom.NewObserver(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 100 {
				obs.Observe(ctx, tiercache.Event{Kind: tiercache.EventLoad, Cache: fmt.Sprint("c", (i+j)%5), Duration: time.Millisecond})
			}
		}()
	}
	for range 8 {
		<-done
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(obs)
	var total uint64
	for _, n := range histCounts(t, reg, "tiercache_load_duration_seconds") {
		total += n
	}
	if total != 800 {
		t.Errorf("%d loads recorded, want 800", total)
	}
}

func TestObserverOptions(t *testing.T) {
	for _, tt := range []struct {
		name    string
		buckets []float64
		wantErr bool
	}{
		{"nil: the defaults", nil, false},
		{"empty: the defaults", []float64{}, false},
		{"increasing", []float64{0.001, 0.1}, false},
		{"decreasing", []float64{0.1, 0.001}, true},
		{"repeated", []float64{0.1, 0.1}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tiercacheprom.NewObserver(&tiercacheprom.ObserverOptions{Buckets: tt.buckets})
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewObserver: %v, want an error: %v", err, tt.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "tiercacheprom: ") {
				t.Errorf("error %q, want the package's prefix", err)
			}
		})
	}

	for _, empty := range [][]float64{nil, {}} {
		obs, err := tiercacheprom.NewObserver(&tiercacheprom.ObserverOptions{Buckets: empty})
		if err != nil {
			t.Fatal(err)
		}
		if got := bucketBounds(t, obs); !slices.Equal(got, tiercacheprom.DefaultBuckets) {
			t.Errorf("Buckets %#v: bounds %v, want DefaultBuckets %v", empty, got, tiercacheprom.DefaultBuckets)
		}
	}

	buckets := []float64{0.001, 0.1}
	obs, err := tiercacheprom.NewObserver(&tiercacheprom.ObserverOptions{Buckets: buckets})
	if err != nil {
		t.Fatal(err)
	}
	buckets[0] = 5 // the Observer keeps its own copy
	if got := bucketBounds(t, obs); !slices.Equal(got, []float64{0.001, 0.1}) {
		t.Errorf("bounds %v, want 0.001 and 0.1", got)
	}
}

// bucketBounds records one load with obs and returns the upper bounds of
// its histogram's buckets.
func bucketBounds(t *testing.T, obs *tiercacheprom.Observer) []float64 {
	t.Helper()
	obs.Observe(context.Background(), tiercache.Event{Kind: tiercache.EventLoad, Duration: time.Millisecond})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(obs)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var bounds []float64
	for _, b := range mfs[0].GetMetric()[0].GetHistogram().GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	return bounds
}
