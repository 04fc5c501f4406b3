package tiercacheprom_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	"github.com/tiercache/tiercache/tiercacheprom"
)

// A service gives the cache an Observer and a name, and registers the
// Observer and a Collector of the cache's Stats. Here the registry's
// exposition is printed, its non-zero counters and histogram counts; a
// service serves it with promhttp.
func Example() {
	ctx := context.Background()
	obs, err := tiercacheprom.NewObserver(nil)
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
	registry := prometheus.NewRegistry()
	registry.MustRegister(obs, tiercacheprom.NewCollector("users", cache))

	load := func(context.Context) (string, error) { return "Ada Lovelace", nil }
	for range 3 {
		if _, err := cache.GetOrLoad(ctx, "user:42", load); err != nil {
			panic(err)
		}
	}

	families, err := registry.Gather()
	if err != nil {
		panic(err)
	}
	var text bytes.Buffer
	for _, mf := range families {
		if err := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain)).Encode(mf); err != nil {
			panic(err)
		}
	}
	for line := range strings.Lines(text.String()) {
		if strings.HasPrefix(line, "#") || strings.HasSuffix(line, " 0\n") ||
			strings.Contains(line, "_bucket") || strings.Contains(line, "_sum") {
			continue
		}
		fmt.Print(line)
	}
	// Output:
	// tiercache_breaker_state{cache="users",state="closed"} 1
	// tiercache_layer_read_duration_seconds_count{cache="users",layer="l1",status="hit"} 2
	// tiercache_layer_read_duration_seconds_count{cache="users",layer="l1",status="miss"} 1
	// tiercache_layer_read_duration_seconds_count{cache="users",layer="l2",status="miss"} 1
	// tiercache_layer_reads_total{cache="users",layer="l1",status="hit"} 2
	// tiercache_layer_reads_total{cache="users",layer="l1",status="miss"} 1
	// tiercache_layer_reads_total{cache="users",layer="l2",status="miss"} 1
	// tiercache_load_duration_seconds_count{cache="users",status="ok"} 1
	// tiercache_loads_total{cache="users"} 1
	// tiercache_operation_duration_seconds_count{cache="users",layer="",operation="get_or_load",status="miss"} 1
	// tiercache_operation_duration_seconds_count{cache="users",layer="l1",operation="get_or_load",status="hit"} 2
}
