package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

func TestOriginLoadManyCountsOneCall(t *testing.T) {
	ctx := context.Background()
	o := newOrigin(time.Millisecond)
	o.Track()
	var page atomic.Int64
	pctx := withPageLoads(ctx, &page)
	keys := []string{productKey("p", 1), productKey("p", 2), productKey("p", 3)}
	ps, err := o.LoadMany(pctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range keys {
		if ps[key].ID != int64(i+1) {
			t.Errorf("LoadMany: %s = %+v, want product %d", key, ps[key], i+1)
		}
	}
	if _, err := o.Load(pctx, productKey("p", 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Load(ctx, productKey("p", 5)); err != nil { // not the page's
		t.Fatal(err)
	}
	if calls, n, pc := o.Calls(), o.Keys(), page.Load(); calls != 3 || n != 5 || pc != 2 {
		t.Errorf("Calls() = %d, Keys() = %d, the page's calls = %d; want 3, 5 and 2", calls, n, pc)
	}
	if perKey := o.Untrack(); len(perKey) != 5 || perKey["p:2"] != 1 {
		t.Errorf("per key = %v, want each of 5 keys once", perKey)
	}
	if _, err := o.LoadMany(ctx, []string{"p:1", "no-id"}); err == nil {
		t.Error("LoadMany of a key without an id succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := newOrigin(time.Hour).LoadMany(cctx, keys); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadMany with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestZipfPages(t *testing.T) {
	keys := make([]string, 1_000)
	for i := range keys {
		keys[i] = productKey("p", i)
	}
	const pages, workers, size = 45, 8, 10
	p := zipfPages(1, pages, workers, size, 1.1, keys)
	if len(p) != workers {
		t.Fatalf("%d workers' pages, want %d", len(p), workers)
	}
	n := 0
	for _, wp := range p {
		for _, page := range wp {
			n++
			if len(page) != size {
				t.Errorf("a page of %d keys, want %d", len(page), size)
			}
			seen := make(map[string]bool)
			for _, key := range page {
				if seen[key] {
					t.Errorf("page %v lists %s twice", page, key)
				}
				seen[key] = true
			}
		}
	}
	if n != pages || p.keys() != pages*size {
		t.Errorf("%d pages of %d keys in all, want %d of %d", n, p.keys(), pages, pages*size)
	}
	if q := zipfPages(1, pages, workers, size, 1.1, keys); !slices.EqualFunc(p, q, func(a, b [][]string) bool {
		return slices.EqualFunc(a, b, slices.Equal)
	}) {
		t.Error("the same seed drew other pages")
	}
}

// pageLibrary is a batchLibrary over an Origin with no cache: each page is
// one LoadMany. With drop set it leaves the last key of every page out of
// its answer.
type pageLibrary struct {
	origin *Origin
	drop   bool
}

func (l *pageLibrary) GetOrLoad(ctx context.Context, key string) (Product, error) {
	return l.origin.Load(ctx, key)
}

func (l *pageLibrary) GetOrLoadMany(ctx context.Context, keys []string) (map[string]Product, error) {
	ps, err := l.origin.LoadMany(ctx, keys)
	if l.drop {
		delete(ps, keys[len(keys)-1])
	}
	return ps, err
}

func (l *pageLibrary) Set(context.Context, string, Product) error { return nil }
func (l *pageLibrary) Close(context.Context) error                { return nil }

func TestRunPages(t *testing.T) {
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = productKey("p", i)
	}
	pages := zipfPages(1, 12, 4, 5, 1.1, keys)
	for _, tc := range []struct {
		name       string
		drop       bool
		wantFailed int64
	}{
		{name: "every key answered", wantFailed: 0},
		{name: "a key missing from every page", drop: true, wantFailed: 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(time.Millisecond)
			lats, errs, most := runPages(context.Background(), &pageLibrary{origin: o, drop: tc.drop}, pages, pages.slots())
			if len(lats) != 12 || errs.count.Load() != tc.wantFailed {
				t.Errorf("%d latencies and %d pages failed (%s), want 12 and %d", len(lats), errs.count.Load(), errs.firstError(), tc.wantFailed)
			}
			if most != 1 || o.Calls() != 12 || o.Keys() != 60 {
				t.Errorf("at most %d origin calls of a page, %d calls of %d keys in all; want 1, 12 and 60", most, o.Calls(), o.Keys())
			}
		})
	}
}

// TestBatchLibrariesAnswerPages reads pages through every library under
// comparison: a cold page, the same page again, and a page half of whose
// keys are known. Each must answer every key with its product; tiercache
// and sturdyc ask the origin once per page, for the keys they lack, and
// go-redis/cache, which has no batch API, once per key it lacks.
func TestBatchLibrariesAnswerPages(t *testing.T) {
	addr := redisForTest(t)
	ctx := context.Background()
	keys := func(from, to int) []string {
		var ks []string
		for i := from; i < to; i++ {
			ks = append(ks, productKey("p", i))
		}
		return ks
	}
	for _, kind := range libraries() {
		t.Run(kind.Name, func(t *testing.T) {
			admin := redis.NewClient(&redis.Options{Addr: addr, DB: dbScratch})
			defer admin.Close()
			if err := admin.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			o := newOrigin(time.Millisecond)
			lib, err := kind.New(libConfig{Addr: addr, DB: dbScratch, Capacity: 100, TTL: time.Hour, Origin: o})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := lib.Close(ctx); err != nil {
					t.Error(err)
				}
			}()
			bl, ok := lib.(batchLibrary)
			if !ok {
				t.Fatalf("%s reads no pages", kind.Name)
			}
			batch := kind.Family != familyGoRedis
			for _, step := range []struct {
				name            string
				page            []string
				wantCalls, keys int64 // origin calls and keys; wantCalls for a batch library
			}{
				{name: "cold", page: keys(0, 10), wantCalls: 1, keys: 10},
				{name: "warm", page: keys(0, 10), wantCalls: 0, keys: 0},
				{name: "half known", page: keys(5, 15), wantCalls: 1, keys: 5},
			} {
				calls0, keys0 := o.Calls(), o.Keys()
				ps, err := bl.GetOrLoadMany(ctx, step.page)
				if err != nil {
					t.Fatalf("%s page: %v", step.name, err)
				}
				if len(ps) != len(step.page) {
					t.Errorf("%s page: %d values for %d keys", step.name, len(ps), len(step.page))
				}
				for _, key := range step.page {
					id, _ := productID(key)
					if p, ok := ps[key]; !ok || p.ID != int64(id) {
						t.Errorf("%s page: %s = %+v, %v; want product %d", step.name, key, p, ok, id)
					}
				}
				calls, n := o.Calls()-calls0, o.Keys()-keys0
				want := step.wantCalls
				if !batch {
					want = step.keys
				}
				if calls != want || n != step.keys {
					t.Errorf("%s page: %d origin calls of %d keys, want %d of %d", step.name, calls, n, want, step.keys)
				}
			}
		})
	}
}

// TestProxyAddsLatencyNotQueueing checks that the proxy adds its delay on
// top of a round trip to Redis, and that pipelined replies share one delay
// instead of queueing behind each other. A loaded machine can stall any one
// round trip, never make one faster than the proxy lets it be: every try
// through the proxy must take the delay, and the comparisons use the
// fastest of a few tries, which a stall of one of them does not decide.
func TestProxyAddsLatencyNotQueueing(t *testing.T) {
	addr := redisForTest(t)
	const (
		delay = 20 * time.Millisecond
		tries = 5
	)
	proxy, err := startSlowProxy(addr, delay)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	ctx := context.Background()

	connect := func(addr string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
		if err := c.Ping(ctx).Err(); err != nil { // connects
			c.Close()
			t.Fatal(err)
		}
		return c
	}
	timed := func(f func() error) time.Duration {
		start := time.Now()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	direct := connect(addr)
	defer direct.Close()
	slow := connect(proxy.Addr)
	defer slow.Close() // still connected when the proxy closes
	ping := func(c *redis.Client) func() error { return func() error { return c.Ping(ctx).Err() } }

	fastestDirect, fastestSlow := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for range tries { // interleaved, so that both see the same load
		fastestDirect = min(fastestDirect, timed(ping(direct)))
		d := timed(ping(slow))
		if d < delay {
			t.Errorf("a PING took %v through a proxy adding %v", d, delay)
		}
		fastestSlow = min(fastestSlow, d)
	}
	if fastestSlow-fastestDirect < delay {
		t.Errorf("a PING took at best %v through the proxy and %v directly; want %v more", fastestSlow, fastestDirect, delay)
	}

	// Pipelined commands share one delay: the proxy delays replies, it
	// does not serialize them.
	fastestPipe := time.Duration(math.MaxInt64)
	for range tries {
		d := timed(func() error {
			pipe := slow.Pipeline()
			for range 20 {
				pipe.Ping(ctx)
			}
			_, err := pipe.Exec(ctx)
			return err
		})
		if d < delay {
			t.Errorf("20 pipelined PINGs took %v through a proxy adding %v", d, delay)
		}
		fastestPipe = min(fastestPipe, d)
	}
	if fastestPipe > 5*delay {
		t.Errorf("20 pipelined PINGs took at best %v through a proxy adding %v; the delays queue up", fastestPipe, delay)
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

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"tiercache Sequential + CoalesceGets": "tiercache-sequential-coalescegets",
		"go-redis/cache":                      "go-redis-cache",
		"sturdyc":                             "sturdyc",
		"Race (LoserOffload) ":                "race-loseroffload",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCPU(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:0.500125\r\nused_cpu_sys_children:9.000000\r\n"
	got, err := parseCPU(info)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1750125 * time.Microsecond; got != want {
		t.Errorf("parseCPU = %v, want %v", got, want)
	}
	if _, err := parseCPU("# CPU\r\nused_cpu_sys:1.0\r\n"); err == nil {
		t.Error("parseCPU without used_cpu_user: no error")
	}
	if _, err := parseCPU("used_cpu_sys:x\r\nused_cpu_user:1\r\n"); err == nil {
		t.Error("parseCPU of a bad number: no error")
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
		PageSize:        10,
		Pages:           40,
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

	// The AutoPipeline experiments (three) run on b and d, the codec
	// experiment on a-warm and b.
	extra := map[string]int{"a-warm": 1, "b": 4, "d": 3}
	for i, wl := range wls {
		want := len(libraries()) + extra[wl.ID]
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
			if s.Allocs == 0 || s.ClientCPU <= 0 || s.RedisCPU <= 0 || s.Throughput() <= 0 || s.P50 <= 0 || s.P99 < s.P50 || s.P999 < s.P99 {
				t.Errorf("%s: implausible figures %+v", name, s)
			}
			switch wl.ID {
			case "a-cold":
				if s.Loads == 0 || s.Gets() == 0 || s.Commands["set"] == 0 {
					t.Errorf("%s: %d loads, %d GETs, %d SETs from cold; want all of them", name, s.Loads, s.Gets(), s.Commands["set"])
				}
			case "b", "d":
				// Redis holds every key: a local miss is a GET that hits,
				// or one key of an MGET when redisstore coalesces several
				// misses into one command.
				if s.Gets() == 0 || s.Commands["mget"] == 0 && s.Gets() < int64(s.Ops)/2 {
					t.Errorf("%s: %d GETs for %d calls over a small local cache", name, s.Gets(), s.Ops)
				}
			case "c":
				if s.KeysLoaded != sz.StampedeKeys || s.Loads < int64(sz.StampedeKeys) || s.MaxPerKey < 1 {
					t.Errorf("%s: %d loads over %d keys (at most %d of one), want every one of %d keys loaded",
						name, s.Loads, s.KeysLoaded, s.MaxPerKey, sz.StampedeKeys)
				}
			case "e":
				// Every page was answered with a value for every key (runPages
				// counts a short answer as an error, checked above).
				if s.Keys != sz.Pages*sz.PageSize {
					t.Errorf("%s: %d keys read, want %d pages of %d", name, s.Keys, sz.Pages, sz.PageSize)
				}
				if s.Loads == 0 || s.LoadedKeys < s.Loads || s.PageLoads < 1 {
					t.Errorf("%s: %d origin calls of %d keys, at most %d of one page; want some, of a key or more each",
						name, s.Loads, s.LoadedKeys, s.PageLoads)
				}
				if r.Kind.Family == familyGoRedis {
					if s.Loads != s.LoadedKeys { // a load per key: no batch API
						t.Errorf("%s: %d origin calls of %d keys, want a call per key", name, s.Loads, s.LoadedKeys)
					}
				} else if s.PageLoads != 1 || s.Loads > int64(s.Ops) {
					t.Errorf("%s: %d origin calls for %d pages, at most %d of one; want one at most per page", name, s.Loads, s.Ops, s.PageLoads)
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
	for _, want := range []string{"## Targets", "## Discussion", "a-cold:", "c: exactly one origin load", "d, experiment",
		"e: a page of Sequential's GetOrLoadMany", "| library | pages/s (min–max) | keys/s |", "**Batch pages (e).**"} {
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

// nopLibrary answers every call at once, without allocating: what the meter
// counts over a phase on it is the benchmark's own share.
type nopLibrary struct{}

func (nopLibrary) GetOrLoad(context.Context, string) (Product, error) { return Product{}, nil }
func (nopLibrary) Set(context.Context, string, Product) error         { return nil }
func (nopLibrary) Close(context.Context) error                        { return nil }
func (nopLibrary) GetOrLoadMany(context.Context, []string) (map[string]Product, error) {
	return nopPage, nil
}

// nopPage is nopLibrary's answer to a page of one key.
var nopPage = map[string]Product{"p:0": {}}

// TestHarnessAllocatesNothingPerCall checks that the measured phase of the
// run functions allocates next to nothing of its own: a goroutine per worker
// (per caller in a stampede, about 8 B per call at c's sizes), no latency
// slot, so that allocs/op and B/op are the library's.
func TestHarnessAllocatesNothingPerCall(t *testing.T) {
	ctx := context.Background()
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = productKey("p", i)
	}
	p := uniformPlan(1, 20_000, 8, len(keys))
	pages := zipfPages(2, 20_000, 8, 1, 1.1, keys)
	stampede := keys[:100]
	for _, tc := range []struct {
		name  string
		calls int
		max   float64 // B per call
		run   func() int
	}{
		{"runPlan", 20_000, 1, func() int {
			slots := p.slots()
			return measureAllocs(func() { runPlan(ctx, nopLibrary{}, keys, p, 1, slots) })
		}},
		{"runPages", 20_000, 1, func() int {
			slots := pages.slots()
			return measureAllocs(func() { runPages(ctx, nopLibrary{}, pages, slots) })
		}},
		{"runStampede", 100 * 1000, 10, func() int {
			slots := make([]time.Duration, 1000*len(stampede))
			return measureAllocs(func() { runStampede(ctx, nopLibrary{}, stampede, 1000, slots) })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if perCall := float64(tc.run()) / float64(tc.calls); perCall > tc.max {
				t.Errorf("the phase allocated %.1f B per call of its own, want next to none", perCall)
			}
		})
	}
}

// measureAllocs returns the heap bytes f allocates.
func measureAllocs(f func()) int {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	f()
	runtime.ReadMemStats(&m1)
	return int(m1.TotalAlloc - m0.TotalAlloc)
}
