package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

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
