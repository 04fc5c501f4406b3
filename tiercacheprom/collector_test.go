package tiercacheprom_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	"github.com/tiercache/tiercache/tiercacheprom"
)

var errDB = errors.New("database down")

// syncOffload runs background work at once, on the caller's goroutine.
var syncOffload = tiercache.OffloadFunc(func(_ string, task func(context.Context)) bool {
	task(context.Background())
	return true
})

// newCache returns a cache named "users" over two in-memory backends, its
// background work synchronous, configured further by configure.
func newCache(t testing.TB, configure func(o *tiercache.Options[string])) (c *tiercache.Cache[string], l1, l2 *backendtest.Memory[string]) {
	t.Helper()
	l1, l2 = backendtest.NewMemory[string](), backendtest.NewMemory[string]()
	opts := &tiercache.Options[string]{Name: "users", Offload: syncOffload}
	if configure != nil {
		configure(opts)
	}
	c, err := tiercache.New[string](l1, l2, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c, l1, l2
}

// Every field of Stats reaches its metric, and no other.
func TestCollectorMapsEveryField(t *testing.T) {
	want, err := os.Open("testdata/full_stats.prom")
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	c := tiercacheprom.NewCollector("users", tiercacheprom.StatsFunc(fullStats))
	if err := testutil.CollectAndCompare(c, want); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c); n != 37 {
		t.Errorf("%d series, want 37", n)
	}
}

func TestCollectorOverACache(t *testing.T) {
	c, l1, l2 := newCache(t, nil)
	ctx := context.Background()
	l1.Put("a", tiercache.CacheValue[string]{Data: "in L1"})
	l2.Put("c", tiercache.CacheValue[string]{Data: "in L2"})
	for _, k := range []string{"a", "b", "c"} { // L1 hit; miss in both; L2 hit, refilled
		if _, _, err := c.Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = c.GetOrLoad(ctx, "loaded", func(context.Context) (string, error) { return "v", nil })
	_, _ = c.GetOrLoad(ctx, "absent", func(context.Context) (string, error) { return "", tiercache.ErrNotFound })
	_, _ = c.GetOrLoad(ctx, "failing", func(context.Context) (string, error) { return "", errDB })
	_, _ = c.GetOrLoad(ctx, "loaded", func(context.Context) (string, error) { return "v", nil }) // L1 hit

	const want = `
# HELP tiercache_layer_reads_total Reads of each cache layer, by outcome.
# TYPE tiercache_layer_reads_total counter
tiercache_layer_reads_total{cache="users",layer="l1",status="abandoned"} 0
tiercache_layer_reads_total{cache="users",layer="l1",status="failed"} 0
tiercache_layer_reads_total{cache="users",layer="l1",status="hit"} 2
tiercache_layer_reads_total{cache="users",layer="l1",status="miss"} 5
tiercache_layer_reads_total{cache="users",layer="l2",status="abandoned"} 0
tiercache_layer_reads_total{cache="users",layer="l2",status="failed"} 0
tiercache_layer_reads_total{cache="users",layer="l2",status="hit"} 1
tiercache_layer_reads_total{cache="users",layer="l2",status="miss"} 4
# HELP tiercache_loads_total Loader calls.
# TYPE tiercache_loads_total counter
tiercache_loads_total{cache="users"} 3
# HELP tiercache_load_errors_total Loader calls that failed, ErrNotFound aside.
# TYPE tiercache_load_errors_total counter
tiercache_load_errors_total{cache="users"} 1
# HELP tiercache_load_not_found_total Keys a loader found missing: GetOrLoad loader calls that returned ErrNotFound, keys a GetOrLoadMany loader omitted.
# TYPE tiercache_load_not_found_total counter
tiercache_load_not_found_total{cache="users"} 1
# HELP tiercache_refills_total L2 values copied into L1.
# TYPE tiercache_refills_total counter
tiercache_refills_total{cache="users"} 1
# HELP tiercache_breaker_state State of the L2 circuit breaker: 1 for the current state, 0 for the others.
# TYPE tiercache_breaker_state gauge
tiercache_breaker_state{cache="users",state="closed"} 1
tiercache_breaker_state{cache="users",state="half_open"} 0
tiercache_breaker_state{cache="users",state="open"} 0
`
	err := testutil.CollectAndCompare(tiercacheprom.NewCollector("users", c), strings.NewReader(want),
		"tiercache_layer_reads_total", "tiercache_loads_total", "tiercache_load_errors_total",
		"tiercache_load_not_found_total", "tiercache_refills_total", "tiercache_breaker_state")
	if err != nil {
		t.Error(err)
	}
}

func TestCollectorOfABreaker(t *testing.T) {
	c, _, l2 := newCache(t, func(o *tiercache.Options[string]) {
		o.Breaker = tiercache.BreakerOptions{Failures: 2, CoolDown: time.Hour}
	})
	l2.FailGet(errDB)
	ctx := context.Background()
	for range 5 { // two failures open it; three reads go around L2
		if _, _, err := c.Get(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}

	const want = `
# HELP tiercache_breaker_state State of the L2 circuit breaker: 1 for the current state, 0 for the others.
# TYPE tiercache_breaker_state gauge
tiercache_breaker_state{cache="users",state="closed"} 0
tiercache_breaker_state{cache="users",state="half_open"} 0
tiercache_breaker_state{cache="users",state="open"} 1
# HELP tiercache_breaker_opens_total Times the L2 circuit breaker opened.
# TYPE tiercache_breaker_opens_total counter
tiercache_breaker_opens_total{cache="users"} 1
# HELP tiercache_breaker_rejected_total L2 operations the circuit breaker refused.
# TYPE tiercache_breaker_rejected_total counter
tiercache_breaker_rejected_total{cache="users"} 3
`
	err := testutil.CollectAndCompare(tiercacheprom.NewCollector("users", c), strings.NewReader(want),
		"tiercache_breaker_state", "tiercache_breaker_opens_total", "tiercache_breaker_rejected_total")
	if err != nil {
		t.Error(err)
	}
}

// A cache with an Invalidator is unsubscribed until the Invalidator says
// otherwise, and the time counts.
func TestCollectorUnsubscribedTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inv := tiercache.InvalidatorFunc(func(func(tiercache.InvalidationEvent)) (tiercache.Subscription, error) {
			return nopSubscription{}, nil
		})
		c, _, _ := newCache(t, func(o *tiercache.Options[string]) { o.Invalidator = inv })
		time.Sleep(90 * time.Second)

		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(tiercacheprom.NewCollector("users", c))
		if got := gatherValue(t, reg, "tiercache_unsubscribed_seconds_total"); got != 90 {
			t.Errorf("tiercache_unsubscribed_seconds_total = %v, want the 90s since New", got)
		}
	})
}

type nopSubscription struct{}

func (nopSubscription) Announce(context.Context, ...string) error { return nil }
func (nopSubscription) Close() error                              { return nil }

// gatherValue returns the value of the one counter or gauge series named
// name in reg.
func gatherValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s: %d series, want 1", name, len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

func TestCollectorsOfSeveralCaches(t *testing.T) {
	users, _, _ := newCache(t, nil)
	orders, _, _ := newCache(t, nil)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(tiercacheprom.NewCollector("users", users)); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(tiercacheprom.NewCollector("orders", orders)); err != nil {
		t.Fatalf("a second cache's Collector: %v", err)
	}
	if err := reg.Register(tiercacheprom.NewCollector("users", orders)); err == nil {
		t.Error("a second Collector named users was registered")
	}
	if _, err := reg.Gather(); err != nil {
		t.Error(err)
	}
}

func TestLint(t *testing.T) {
	obs, err := tiercacheprom.NewObserver(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _, _ := newCache(t, func(o *tiercache.Options[string]) { o.Observer = obs })
	_, _ = c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "v", nil })
	for name, col := range map[string]prometheus.Collector{
		"Collector": tiercacheprom.NewCollector("users", c),
		"Observer":  obs,
	} {
		problems, err := testutil.CollectAndLint(col)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
}
