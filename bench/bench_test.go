package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestProductEncodedSize(t *testing.T) {
	for _, id := range []int{0, 12345, 99999} {
		b, err := json.Marshal(newProduct(id, 1))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 180 || len(b) > 220 {
			t.Errorf("product %d is %d bytes of JSON, want about 200: %s", id, len(b), b)
		}
	}
}

func TestOriginCountsLoads(t *testing.T) {
	ctx := context.Background()
	o := newOrigin(time.Millisecond)
	o.Track()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			p, err := o.Load(ctx, productKey("p", 7))
			if err != nil || p.ID != 7 {
				t.Errorf("Load = %+v, %v; want product 7", p, err)
			}
		})
	}
	wg.Wait()
	if _, err := o.Load(ctx, productKey("s", 3)); err != nil {
		t.Fatal(err)
	}
	if got := o.Calls(); got != 11 {
		t.Errorf("Calls() = %d, want 11", got)
	}
	perKey := o.Untrack()
	if perKey["p:7"] != 10 || perKey["s:3"] != 1 || len(perKey) != 2 {
		t.Errorf("per key = %v, want p:7 10 times and s:3 once", perKey)
	}
	if _, err := o.Load(ctx, "no-id"); err == nil {
		t.Error("Load of a key without an id succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := newOrigin(time.Hour).Load(cctx, "p:1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestProxyAddsLatencyNotQueueing(t *testing.T) {
	addr := redisForTest(t)
	const delay = 20 * time.Millisecond
	proxy, err := startSlowProxy(addr, delay)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	ctx := context.Background()

	roundTrip := func(addr string) time.Duration {
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
		defer c.Close()
		if err := c.Ping(ctx).Err(); err != nil { // connects
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	direct, slow := roundTrip(addr), roundTrip(proxy.Addr)
	if slow < delay || slow-direct < delay {
		t.Errorf("a PING took %v through the proxy and %v directly; want %v more", slow, direct, delay)
	}

	// Pipelined commands share one delay: the proxy delays replies, it
	// does not serialize them.
	c := redis.NewClient(&redis.Options{Addr: proxy.Addr, PoolSize: 1})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pipe := c.Pipeline()
	for range 20 {
		pipe.Ping(ctx)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*delay {
		t.Errorf("20 pipelined PINGs took %v through a proxy adding %v; the delays queue up", d, delay)
	}

	// Close ends every connection and goroutine (TestMain checks for
	// leaks) even with a client still connected.
	if err := proxy.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_get:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_set:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=4,usec=1\r\n"
	got := parseCommandStats(info)
	want := map[string]int64{"get": 12, "set": 3, "client|setinfo": 4}
	if len(got) != len(want) {
		t.Fatalf("parseCommandStats = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d calls, want %d", k, got[k], v)
		}
	}
}

func TestQuantileAndMedian(t *testing.T) {
	lats := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if q := quantile(lats, 0.5); q != 5 {
		t.Errorf("p50 = %v, want 5", q)
	}
	if q := quantile(lats, 0.99); q != 10 {
		t.Errorf("p99 = %v, want 10", q)
	}
	samples := []sample{{Ops: 10, Elapsed: time.Second}, {Ops: 30, Elapsed: time.Second}, {Ops: 20, Elapsed: time.Second}}
	if m := median(samples, sample.Throughput); m != 20 {
		t.Errorf("median throughput = %v, want 20", m)
	}
}

// tinySizes are the smoke test's sizes: every workload in well under a
// second per library.
func tinySizes() sizes {
	return sizes{
		Keys:            1_000,
		Workers:         8,
		Capacity:        100,
		ZipfS:           1.1,
		SetRatio:        0.01,
		ReadMostlyOps:   400,
		L2HeavyOps:      200,
		L2HeavyWarmup:   100,
		StampedeCallers: 50,
		StampedeKeys:    5,
		SlowOps:         100,
		SlowWarmup:      50,
		RedisDelay:      2 * time.Millisecond,
	}
}

// TestWorkloadsSmoke runs every workload once on every library, the
// experiments included, at tiny sizes, and renders the results.
func TestWorkloadsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every workload on every library")
	}
	addr := redisForTest(t)
	ctx := context.Background()
	sz := tinySizes()
	proxy, err := startSlowProxy(addr, sz.RedisDelay)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	b := newBench(addr, proxy.Addr, sz, "", t.Logf)
	defer b.Close()
	b.meter.poll = 10 * time.Millisecond
	kinds := append(libraries(), experiments()...)
	wls := workloads()
	results, err := b.runAll(ctx, wls, kinds, 1)
	if err != nil {
		t.Fatal(err)
	}

	for i, wl := range wls {
		want := len(kinds) - len(experiments())
		if wl.ID == "b" || wl.ID == "d" {
			want = len(kinds)
		}
		if len(results[i]) != want {
			t.Errorf("%s ran %d libraries, want %d", wl.ID, len(results[i]), want)
		}
		for _, r := range results[i] {
			s := r.Samples[0]
			name := wl.ID + "/" + r.Kind.Name
			if s.Ops != measuredCalls(wl.ID, sz) {
				t.Errorf("%s: %d calls measured, want %d", name, s.Ops, measuredCalls(wl.ID, sz))
			}
			if s.Errors > 0 {
				t.Errorf("%s: %d calls failed, the first: %s", name, s.Errors, s.FirstError)
			}
			if s.Allocs == 0 || s.Throughput() <= 0 || s.P50 <= 0 || s.P99 < s.P50 || s.P999 < s.P99 {
				t.Errorf("%s: implausible figures %+v", name, s)
			}
			switch wl.ID {
			case "a-cold":
				if s.Loads == 0 || s.Gets() == 0 || s.Commands["set"] == 0 {
					t.Errorf("%s: %d loads, %d GETs, %d SETs from cold; want all of them", name, s.Loads, s.Gets(), s.Commands["set"])
				}
			case "b", "d":
				// Redis holds every key: a local miss is a GET that hits.
				if s.Gets() < int64(s.Ops)/2 {
					t.Errorf("%s: %d GETs for %d calls over a small local cache", name, s.Gets(), s.Ops)
				}
			case "c":
				if s.KeysLoaded != sz.StampedeKeys || s.Loads < int64(sz.StampedeKeys) || s.MaxPerKey < 1 {
					t.Errorf("%s: %d loads over %d keys (at most %d of one), want every one of %d keys loaded",
						name, s.Loads, s.KeysLoaded, s.MaxPerKey, sz.StampedeKeys)
				}
			}
		}
	}

	env := environment{Date: time.Now(), Rounds: 1, Sizes: sz, PoolSize: 20, CPUs: 2, GOMAXPROCS: 2}
	md := renderResults(env, results)
	for _, k := range kinds {
		if !strings.Contains(md, k.Name) {
			t.Errorf("results.md does not mention %s", k.Name)
		}
	}
	for _, want := range []string{"## Targets", "## Discussion", "a-cold:", "c: exactly one origin load", "d, experiment"} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	checkSVG(t, renderChart(env, results), kinds)
}

// checkSVG checks that svg is well-formed XML that labels every library.
func checkSVG(t *testing.T, svg string, kinds []libraryKind) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("throughput.svg is not well-formed: %v", err)
		}
	}
	for _, k := range kinds {
		if !strings.Contains(svg, ">"+esc(k.Label)+"<") {
			t.Errorf("the chart has no label %q", k.Label)
		}
	}
}
