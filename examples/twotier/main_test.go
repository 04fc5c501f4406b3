package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo runs every policy on the embedded Redis and reports what each
// layer and the origin did.
func TestRunOnEmbeddedRedis(t *testing.T) {
	cfg := config{
		duration: 4 * time.Second,
		workers:  8,
		keys:     5_000,
		l1Size:   500,
		origin:   time.Millisecond,
		policies: []string{"sequential", "parallel", "race", "race-cancel"},
	}
	var out bytes.Buffer
	results, err := run(context.Background(), &out, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2*len(cfg.policies) {
		t.Fatalf("got %d results, want two replicas of %d policies", len(results), len(cfg.policies))
	}
	for i := 0; i < len(results); i += 2 {
		first, second := results[i], results[i+1]
		rate := func(r result) float64 { return float64(r.stats.Loads) / float64(max(r.ops, 1)) }
		if rate(second) > 0.75*rate(first) {
			t.Errorf("%s: the second replica loaded on %.1f%% of its calls, the first on %.1f%%: a warm L2 should spare the origin",
				first.policy, 100*rate(second), 100*rate(first))
		}
	}
	for _, r := range results {
		s := r.stats
		switch {
		case r.ops == 0:
			t.Errorf("%s: no calls", r.policy)
		case s.Loads == 0 || s.Loads > uint64(cfg.keys):
			t.Errorf("%s: %d origin loads for %d keys", r.policy, s.Loads, cfg.keys)
		case s.L1.HitRatio() < 0.3:
			t.Errorf("%s, %s: L1 hit ratio %.2f: the hot keys should stay in L1", r.policy, r.replica, s.L1.HitRatio())
		case s.L2.Hits == 0 && strings.HasPrefix(r.replica, "replica 2"):
			t.Errorf("%s, %s: L2 never hit, though replica 1 filled it", r.policy, r.replica)
		case r.p99 < r.p50:
			t.Errorf("%s: p99 %v below p50 %v", r.policy, r.p99, r.p50)
		}
		if row := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(r.policy) + `\s+` + regexp.QuoteMeta(r.replica) + `\s+\d+\s`); !row.MatchString(out.String()) {
			t.Errorf("the table has no row for %s, %s:\n%s", r.policy, r.replica, out.String())
		}
	}
	for _, want := range []string{"embedded (miniredis", "L1 hit", "origin loads", "p99"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUnknownPolicy(t *testing.T) {
	_, err := run(context.Background(), &bytes.Buffer{}, config{policies: []string{"fastest"}})
	if err == nil || !strings.Contains(err.Error(), `unknown policy "fastest"`) {
		t.Fatalf("got %v, want an unknown policy error", err)
	}
}

// With -metrics the demo serves what a service would scrape: the Stats
// counters of the cache running, and latency histograms.
func TestMetricsEndpoint(t *testing.T) {
	var out bytes.Buffer
	m, err := startMetrics("127.0.0.1:0", &out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.stop()
	if !strings.Contains(out.String(), "/metrics") {
		t.Fatalf("the address is not printed: %q", out.String())
	}
	l1 := newMapStore()
	cache, err := tiercache.New[product](l1, newMapStore(), &tiercache.Options[product]{Name: "demo", Observer: m.observer()})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(context.Background())
	unwatch := m.watch("demo", cache)
	defer unwatch()
	if _, err := cache.GetOrLoad(context.Background(), "k", func(context.Context) (product, error) { return newProduct(1), nil }); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + m.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`tiercache_loads_total{cache="demo"} 1`, `tiercache_operation_duration_seconds_bucket{cache="demo"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
}

// mapStore is a minimal tiercache.Backend for the metrics test.
type mapStore struct {
	mu sync.Mutex
	m  map[string]tiercache.CacheValue[product]
}

func newMapStore() *mapStore { return &mapStore{m: map[string]tiercache.CacheValue[product]{}} }

func (s *mapStore) Get(_ context.Context, k string) (*tiercache.CacheValue[product], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return nil, nil
	}
	return &v, nil
}

func (s *mapStore) Set(_ context.Context, k string, v tiercache.CacheValue[product]) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = v
	return nil
}

func (s *mapStore) Delete(_ context.Context, k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}
