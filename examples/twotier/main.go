// Twotier runs tiercache the way a service does: otter in the process as L1,
// Redis as L2, and a slow origin behind GetOrLoad.
//
// Workers read products with Zipf-distributed ids (a few are hot, most are
// cold, as in real traffic), 99% through GetOrLoad and 1% as writes with
// Set. L1 holds far fewer entries than there are products, so the warm part
// of the tail is served by L2 and the cold part by the origin.
//
// Each read policy runs twice on a fresh part of L2: first as the first
// replica of a service, on a cold L1 and a cold L2, then as a second replica
// that starts with an empty L1 while L2 is warm from the first. The second
// run shows what the shared layer is for: the new replica asks the origin
// for little. A progress line is printed every second and a table at the
// end: L1 and L2 hit ratios, origin loads and the latency callers saw.
//
// Redis is the one at $REDIS_ADDR (or -redis), or an embedded Redis-protocol
// server (miniredis) so that the demo runs on a machine with nothing but Go.
//
// With -metrics ADDR (say -metrics localhost:9090) the demo also serves
// /metrics while it runs: what a service would scrape, from tiercacheprom's
// Collector (the Stats counters) and Observer (latency histograms).
//
// Run it with `make demo`, or `go run ./twotier` in the examples module.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/tiercacheprom"
)

// config is what the flags set.
type config struct {
	redisAddr string        // "" : embedded miniredis
	duration  time.Duration // the whole run, shared by the policies
	workers   int
	keys      int
	l1Size    int
	origin    time.Duration // one origin load
	policies  []string
	metrics   string // address to serve /metrics on; "": none
}

func main() {
	var cfg config
	var policies string
	flag.StringVar(&cfg.redisAddr, "redis", os.Getenv("REDIS_ADDR"), "Redis address (default $REDIS_ADDR; empty: an embedded miniredis)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of the whole run, shared by the policies")
	flag.IntVar(&cfg.workers, "workers", 16, "concurrent callers")
	flag.IntVar(&cfg.keys, "keys", 20_000, "distinct product ids")
	flag.IntVar(&cfg.l1Size, "l1", 2_000, "L1 capacity in entries")
	flag.DurationVar(&cfg.origin, "origin", 2*time.Millisecond, "latency of one origin load")
	flag.StringVar(&policies, "policies", "sequential,parallel,race,race-cancel", "read policies to run, comma-separated")
	flag.StringVar(&cfg.metrics, "metrics", "", "serve Prometheus /metrics on this address while running (e.g. localhost:9090)")
	flag.Parse()
	cfg.policies = strings.Split(policies, ",")
	if _, err := run(context.Background(), os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "twotier:", err)
		os.Exit(1)
	}
}

// product is the cached value: about 200 bytes as JSON.
type product struct {
	ID          int      `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	PriceCents  int      `json:"price_cents"`
	Tags        []string `json:"tags"`
	Stock       int      `json:"stock"`
}

// readPolicies are the policies the demo knows, by the name -policies uses.
var readPolicies = map[string]tiercache.ReadPolicy[product]{
	"sequential":  tiercache.SequentialReadPolicy[product]{},
	"parallel":    tiercache.ParallelReadPolicy[product]{},
	"race":        tiercache.RaceReadPolicy[product]{},
	"race-cancel": tiercache.RaceReadPolicy[product]{Loser: tiercache.LoserCancel},
}

// result is one policy's run as one replica.
type result struct {
	policy   string
	replica  string
	ops      int64
	elapsed  time.Duration
	stats    tiercache.Stats
	p50, p99 time.Duration
}

// run runs every policy in cfg, printing to w, and returns the results.
func run(ctx context.Context, w io.Writer, cfg config) ([]result, error) {
	for _, p := range cfg.policies {
		if _, ok := readPolicies[p]; !ok {
			return nil, fmt.Errorf("unknown policy %q", p)
		}
	}
	addr, where := cfg.redisAddr, "at "+cfg.redisAddr
	if addr == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("embedded Redis: %w", err)
		}
		defer mr.Close()
		addr, where = mr.Addr(), "embedded (miniredis at "+mr.Addr()+")"
	}
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis at %s: %w", addr, err)
	}
	fmt.Fprintf(w, "tiercache demo: L1 otter (%d entries), L2 Redis %s, origin %v per load,\n", cfg.l1Size, where, cfg.origin)
	fmt.Fprintf(w, "%d workers, Zipf(1.1) over %d product ids, 99%% GetOrLoad / 1%% Set.\n\n", cfg.workers, cfg.keys)

	m, err := startMetrics(cfg.metrics, w)
	if err != nil {
		return nil, err
	}
	defer m.stop()

	each := cfg.duration / time.Duration(2*len(cfg.policies))
	run := time.Now().UnixNano() // a fresh part of L2 for every run of the demo
	var results []result
	for _, name := range cfg.policies {
		prefix := fmt.Sprintf("tiercache-demo:%d:%s:", run, name)
		for _, replica := range []string{"replica 1, all cold", "replica 2, L2 warm"} {
			r, err := runPolicy(ctx, w, cfg, client, m, name, replica, prefix, each)
			if err != nil {
				return nil, fmt.Errorf("%s, %s: %w", name, replica, err)
			}
			results = append(results, r)
		}
	}
	printTable(w, results)
	return results, nil
}

// runPolicy runs the workload for d as one replica: a cache with the named
// policy over a new L1 and the L2 keys under prefix. It reports every
// second.
func runPolicy(ctx context.Context, w io.Writer, cfg config, client redis.UniversalClient, m *metrics, name, replica, prefix string, d time.Duration) (result, error) {
	l1, err := otterstore.New(&otterstore.Options[product]{MaximumSize: cfg.l1Size})
	if err != nil {
		return result{}, err
	}
	defer l1.Close()
	l2, err := redisstore.New(client, &redisstore.Options[product]{KeyPrefix: prefix})
	if err != nil {
		return result{}, err
	}
	cacheName := name + "/" + replica[:len("replica 1")]
	cache, err := tiercache.New(l1, l2, &tiercache.Options[product]{
		Name:        cacheName,
		Observer:    m.observer(),
		ReadPolicy:  readPolicies[name],
		DefaultTTL:  5 * time.Minute,
		NegativeTTL: 30 * time.Second,
		TTLJitter:   0.1,
		L2Timeout:   100 * time.Millisecond,
	})
	if err != nil {
		return result{}, err
	}

	defer m.watch(cacheName, cache)()

	var ops atomic.Int64
	lat := make([][]time.Duration, cfg.workers)
	errs := make(chan error, cfg.workers)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range cfg.workers {
		wg.Go(func() {
			if err := worker(ctx, cache, cfg, deadline, uint64(i), &ops, &lat[i]); err != nil {
				errs <- err
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			s := cache.Stats()
			fmt.Fprintf(w, "  %-11s %-19s %4.1fs %8d calls  L1 hit %5.1f%%  L2 hit %5.1f%%  origin loads %6d  L2 p99 %v\n",
				name, replica, time.Since(start).Seconds(), ops.Load(), 100*s.L1.HitRatio(), 100*s.L2.HitRatio(), s.Loads, s.L2.Latency.P99.Round(time.Microsecond))
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := cache.Close(closeCtx); err != nil {
		return result{}, err
	}
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := result{policy: name, replica: replica, ops: ops.Load(), elapsed: elapsed, stats: cache.Stats()}
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r, nil
}

// worker reads and writes until deadline, recording each call's latency.
func worker(ctx context.Context, cache *tiercache.Cache[product], cfg config, deadline time.Time, seed uint64, ops *atomic.Int64, lat *[]time.Duration) error {
	rnd := rand.New(rand.NewPCG(seed, 42))
	zipf := rand.NewZipf(rnd, 1.1, 1, uint64(cfg.keys-1))
	for time.Now().Before(deadline) {
		id := int(zipf.Uint64())
		key := fmt.Sprintf("product:%d", id)
		start := time.Now()
		var err error
		if rnd.IntN(100) == 0 {
			err = cache.Set(ctx, key, newProduct(id), 0)
		} else {
			_, err = cache.GetOrLoad(ctx, key, func(ctx context.Context) (product, error) { return origin(ctx, cfg.origin, id) })
			if errors.Is(err, tiercache.ErrNotFound) {
				err = nil
			}
		}
		if err != nil {
			return err
		}
		*lat = append(*lat, time.Since(start))
		ops.Add(1)
	}
	return nil
}

// origin is the slow source of truth: a database, say. One id in a hundred
// does not exist.
func origin(ctx context.Context, latency time.Duration, id int) (product, error) {
	select {
	case <-time.After(latency):
	case <-ctx.Done():
		return product{}, ctx.Err()
	}
	if id%100 == 99 {
		return product{}, tiercache.ErrNotFound
	}
	return newProduct(id), nil
}

func newProduct(id int) product {
	return product{
		ID:          id,
		Name:        fmt.Sprintf("Product %d", id),
		Description: "A sturdy, well-made thing that does what it says and keeps doing it for years.",
		PriceCents:  1000 + id%9000,
		Tags:        []string{"demo", "catalog", fmt.Sprintf("shelf-%d", id%50)},
		Stock:       id % 97,
	}
}

func printTable(w io.Writer, results []result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\treplica\tcalls\tcalls/s\tL1 hit\tL2 hit\torigin loads\tcoalesced\tp50\tp99\t")
	for _, r := range results {
		s := r.stats
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.1f%%\t%.1f%%\t%d\t%d\t%v\t%v\t\n",
			r.policy, r.replica, r.ops, float64(r.ops)/r.elapsed.Seconds(), 100*s.L1.HitRatio(), 100*s.L2.HitRatio(),
			s.Loads, s.Coalesced, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nL1 hit: reads answered by otter in the process. L2 hit: L2 reads answered by Redis (remembered")
	fmt.Fprintln(w, "absences included). Origin loads: calls that reached the origin, one per key at a time however many")
	fmt.Fprintln(w, "callers missed together. Coalesced: callers that shared another caller's L2 read or load. Replica 2")
	fmt.Fprintln(w, "starts with an empty L1 on the L2 that replica 1 filled: most of its misses are served by Redis.")
}

// metrics serves /metrics while the demo runs, when asked to.
type metrics struct {
	addr string // where it listens
	reg  *prometheus.Registry
	obs  *tiercacheprom.Observer
	srv  *http.Server
	done chan struct{} // closed when the server has stopped
}

// startMetrics serves /metrics on addr; with addr "" it does nothing and
// returns a nil *metrics, whose methods do nothing either.
func startMetrics(addr string, w io.Writer) (*metrics, error) {
	if addr == "" {
		return nil, nil
	}
	obs, err := tiercacheprom.NewObserver(nil)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(obs); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m := &metrics{addr: ln.Addr().String(), reg: reg, obs: obs, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		_ = m.srv.Serve(ln)
	}()
	fmt.Fprintf(w, "serving metrics on http://%s/metrics\n", ln.Addr())
	return m, nil
}

func (m *metrics) observer() tiercache.Observer {
	if m == nil {
		return nil
	}
	return m.obs
}

// watch registers a cache's Stats for the time it runs; call the func it
// returns when the cache is done.
func (m *metrics) watch(name string, cache tiercacheprom.StatsSource) func() {
	if m == nil {
		return func() {}
	}
	c := tiercacheprom.NewCollector(name, cache)
	if err := m.reg.Register(c); err != nil {
		return func() {}
	}
	return func() { m.reg.Unregister(c) }
}

func (m *metrics) stop() {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
	<-m.done
}
