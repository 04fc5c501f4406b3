package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis databases the benchmark uses, and flushes: one scratch database for
// the workloads that start cold, and one per library family for the key
// space that workloads b and d read, filled once.
const (
	dbScratch = 12
	dbFirst   = 11
	dbLast    = 15
)

var familyDB = map[string]int{familyTiercacheMsgpack: 11, familyTiercache: 13, familyGoRedis: 14, familySturdyc: 15}

// sizes are the workloads' dimensions.
type sizes struct {
	Keys            int     // key space of workloads a, b, d and e
	Workers         int     // goroutines of workloads a, b, d and e
	Capacity        int     // local cache capacity, entries
	ZipfS           float64 // workload a's and e's skew
	SetRatio        float64 // workload a's share of Sets
	ReadMostlyOps   int     // workload a, each of cold and warm (and the warm-up)
	L2HeavyOps      int     // workload b
	L2HeavyWarmup   int     // workload b's unmeasured warm-up
	StampedeCallers int     // workload c, per key
	StampedeKeys    int     // workload c
	SlowOps         int     // workload d
	SlowWarmup      int     // workload d's unmeasured warm-up
	RedisDelay      time.Duration
	PageSize        int // workload e: keys per page
	Pages           int // workload e: pages, each of the warm-up and the measured run
}

// fullSizes are the sizes of `make bench-compare`.
func fullSizes() sizes {
	return sizes{
		Keys:            100_000,
		Workers:         64,
		Capacity:        10_000,
		ZipfS:           1.1,
		SetRatio:        0.01,
		ReadMostlyOps:   30_000,
		L2HeavyOps:      16_000,
		L2HeavyWarmup:   6_000,
		StampedeCallers: 1_000,
		StampedeKeys:    100,
		SlowOps:         5_000,
		SlowWarmup:      2_000,
		RedisDelay:      2 * time.Millisecond,
		PageSize:        50,
		Pages:           2_000,
	}
}

// scaled returns s with every count of calls (and pages) multiplied by f
// (at least one call per worker), the rest unchanged.
func (s sizes) scaled(f float64) sizes {
	scale := func(n int) int { return max(int(float64(n)*f), s.Workers) }
	s.ReadMostlyOps = scale(s.ReadMostlyOps)
	s.L2HeavyOps = scale(s.L2HeavyOps)
	s.L2HeavyWarmup = scale(s.L2HeavyWarmup)
	s.SlowOps = scale(s.SlowOps)
	s.SlowWarmup = scale(s.SlowWarmup)
	s.Pages = scale(s.Pages)
	return s
}

// workload is one of the scenarios of the comparison.
type workload struct {
	ID    string // "a-cold"
	Title string
	About string // what it does, for results.md
	// Batch marks a workload whose calls read a page of keys each
	// (GetOrLoadMany): its figures are per page.
	Batch bool
	run   func(ctx context.Context, b *bench, kind libraryKind, profile string) (sample, error)
}

// bench is one comparison run: the Redis, the proxy, the key space, the
// plans and pages, the meter.
type bench struct {
	sizes    sizes
	addr     string // Redis
	slowAddr string // the proxy in front of it
	admin    *redis.Client
	origin   *Origin
	meter    *meter
	keys     []string // the shared key space, "p:0" on
	stampede []string // the stampede's keys
	plans    map[string]plan
	pages    map[string]pagePlan
	logf     func(format string, args ...any)
}

// newBench prepares a run against the Redis at addr and the slow proxy at
// slowAddr: keys and plans are made here, outside any measurement.
func newBench(addr, slowAddr string, sz sizes, profileDir string, logf func(string, ...any)) *bench {
	b := &bench{
		sizes:    sz,
		addr:     addr,
		slowAddr: slowAddr,
		admin:    redis.NewClient(&redis.Options{Addr: addr}),
		origin:   newOrigin(originDelay),
		keys:     make([]string, sz.Keys),
		stampede: make([]string, sz.StampedeKeys),
		logf:     logf,
	}
	b.meter = &meter{admin: b.admin, origin: b.origin, profileDir: profileDir, poll: 30 * time.Millisecond}
	for i := range b.keys {
		b.keys[i] = productKey("p", i)
	}
	for i := range b.stampede {
		b.stampede[i] = productKey("s", i)
	}
	b.plans = map[string]plan{
		"zipf":         zipfPlan(1, sz.ReadMostlyOps, sz.Workers, sz.Keys, sz.ZipfS, sz.SetRatio),
		"zipf-warmup":  zipfPlan(2, sz.ReadMostlyOps, sz.Workers, sz.Keys, sz.ZipfS, sz.SetRatio),
		"uniform":      uniformPlan(3, sz.L2HeavyOps, sz.Workers, sz.Keys),
		"uniform-warm": uniformPlan(4, sz.L2HeavyWarmup, sz.Workers, sz.Keys),
		"slow":         uniformPlan(5, sz.SlowOps, sz.Workers, sz.Keys),
		"slow-warm":    uniformPlan(6, sz.SlowWarmup, sz.Workers, sz.Keys),
	}
	b.pages = map[string]pagePlan{
		"zipf-pages":        zipfPages(7, sz.Pages, sz.Workers, sz.PageSize, sz.ZipfS, b.keys),
		"zipf-pages-warmup": zipfPages(8, sz.Pages, sz.Workers, sz.PageSize, sz.ZipfS, b.keys),
	}
	return b
}

// Close releases the admin client.
func (b *bench) Close() error { return b.admin.Close() }

// config returns the libConfig of a library on database db behind addr.
func (b *bench) config(addr string, db int) libConfig {
	return libConfig{Addr: addr, DB: db, Capacity: b.sizes.Capacity, TTL: time.Hour, Origin: b.origin}
}

// workloads returns the scenarios in the order they run and are reported.
func workloads() []workload {
	return []workload{
		{
			ID: "a-cold", Title: "a. read-mostly, cold",
			About: "Zipf(s=1.1) over the key space, 99% GetOrLoad / 1% Set, 64 goroutines, starting with both layers empty",
			run: func(ctx context.Context, b *bench, kind libraryKind, profile string) (sample, error) {
				return b.onScratch(ctx, kind, profile, func(lib Library) (sample, error) {
					slots := b.plans["zipf"].slots()
					return b.meter.measure(ctx, lib, profile, func() ([]time.Duration, *callErrors) {
						return runPlan(ctx, lib, b.keys, b.plans["zipf"], 2, slots)
					})
				})
			},
		},
		{
			ID: "a-warm", Title: "a. read-mostly, warm",
			About: "the same calls as a-cold, after an unmeasured warm-up of the same length (other draws of the same distribution) on the same cache",
			run: func(ctx context.Context, b *bench, kind libraryKind, profile string) (sample, error) {
				return b.onScratch(ctx, kind, profile, func(lib Library) (sample, error) {
					if err := b.warmUp(ctx, lib, "zipf-warmup"); err != nil {
						return sample{}, err
					}
					slots := b.plans["zipf"].slots()
					return b.meter.measure(ctx, lib, profile, func() ([]time.Duration, *callErrors) {
						return runPlan(ctx, lib, b.keys, b.plans["zipf"], 2, slots)
					})
				})
			},
		},
		{
			ID: "b", Title: "b. L2-heavy",
			About: "100% GetOrLoad, uniform over the key space, 64 goroutines; Redis holds every key (filled beforehand by the library's own Set), the local cache (10,000 entries) at most a tenth of them, after an unmeasured warm-up (other draws) on the same cache",
			run: func(ctx context.Context, b *bench, kind libraryKind, profile string) (sample, error) {
				return b.onFilled(ctx, kind, b.addr, profile, "uniform-warm", "uniform")
			},
		},
		{
			ID: "c", Title: "c. stampede",
			About: "1,000 goroutines call GetOrLoad of one cold key at once (both layers empty); when all have returned, the next key; 100 keys",
			run: func(ctx context.Context, b *bench, kind libraryKind, profile string) (sample, error) {
				return b.onScratch(ctx, kind, profile, func(lib Library) (sample, error) {
					b.origin.Track()
					slots := make([]time.Duration, b.sizes.StampedeCallers*len(b.stampede))
					s, err := b.meter.measure(ctx, lib, profile, func() ([]time.Duration, *callErrors) {
						return runStampede(ctx, lib, b.stampede, b.sizes.StampedeCallers, slots)
					})
					perKey := b.origin.Untrack()
					s.KeysLoaded = len(perKey)
					for _, n := range perKey {
						s.MaxPerKey = max(s.MaxPerKey, n)
					}
					return s, err
				})
			},
		},
		{
			ID: "d", Title: "d. Redis slow (+2 ms)",
			About: "the traffic of b (other draws, a shorter warm-up), through a loopback proxy in this module that delays every reply from Redis by 2 ms",
			run: func(ctx context.Context, b *bench, kind libraryKind, profile string) (sample, error) {
				return b.onFilled(ctx, kind, b.slowAddr, profile, "slow-warm", "slow")
			},
		},
		{
			ID: "e", Title: "e. batch pages", Batch: true,
			About: "pages of 50 distinct keys, each drawn by Zipf(s=1.1) over the key space (a key already on the page is drawn again), " +
				"one GetOrLoadMany (the library's batch read) per page, 64 goroutines; both layers empty at the start of an unmeasured " +
				"warm-up of as many pages (other draws), then the measured pages on the same cache. The origin answers a batch in one " +
				"call, 1 ms whatever its size, for the keys the library asks for",
			run: func(ctx context.Context, b *bench, kind libraryKind, profile string) (sample, error) {
				return b.onScratch(ctx, kind, profile, func(lib Library) (sample, error) {
					bl, ok := lib.(batchLibrary)
					if !ok {
						return sample{}, fmt.Errorf("bench: %s reads no pages", kind.Name)
					}
					if err := b.warmUpPages(ctx, bl, "zipf-pages-warmup"); err != nil {
						return sample{}, err
					}
					pages := b.pages["zipf-pages"]
					var most int64
					slots := pages.slots()
					s, err := b.meter.measure(ctx, lib, profile, func() ([]time.Duration, *callErrors) {
						lats, errs, m := runPages(ctx, bl, pages, slots)
						most = m
						return lats, errs
					})
					s.Keys, s.PageLoads = pages.keys(), most
					return s, err
				})
			},
		},
	}
}

// onScratch runs fn on a new library over the emptied scratch database, and
// closes it.
func (b *bench) onScratch(ctx context.Context, kind libraryKind, _ string, fn func(lib Library) (sample, error)) (sample, error) {
	if err := b.flush(ctx, dbScratch); err != nil {
		return sample{}, err
	}
	return b.with(ctx, kind, b.config(b.addr, dbScratch), fn)
}

// onFilled measures the plan named measured on a new library (empty local
// cache) over its family's filled database, reached at addr, after an
// unmeasured run of the plan named warm.
func (b *bench) onFilled(ctx context.Context, kind libraryKind, addr, profile, warm, measured string) (sample, error) {
	return b.with(ctx, kind, b.config(addr, familyDB[kind.Family]), func(lib Library) (sample, error) {
		if err := b.warmUp(ctx, lib, warm); err != nil {
			return sample{}, err
		}
		slots := b.plans[measured].slots()
		return b.meter.measure(ctx, lib, profile, func() ([]time.Duration, *callErrors) {
			return runPlan(ctx, lib, b.keys, b.plans[measured], 2, slots)
		})
	})
}

// with builds a library of kind, runs fn, waits for Redis to go quiet and
// closes the library.
func (b *bench) with(ctx context.Context, kind libraryKind, cfg libConfig, fn func(lib Library) (sample, error)) (s sample, err error) {
	lib, err := kind.New(cfg)
	if err != nil {
		return sample{}, fmt.Errorf("bench: %s: %w", kind.Name, err)
	}
	defer func() {
		qerr := b.meter.quiesce(ctx)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if cerr := lib.Close(cctx); err == nil {
			err = cmpOr(qerr, cerr)
		}
	}()
	return fn(lib)
}

// cmpOr returns the first non-nil error.
func cmpOr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// warmUp runs the plan named name, unmeasured, and waits for Redis to go
// quiet.
func (b *bench) warmUp(ctx context.Context, lib Library, name string) error {
	if _, errs := runPlan(ctx, lib, b.keys, b.plans[name], 1, b.plans[name].slots()); errs.count.Load() > 0 {
		b.logf("warm-up %s: %d calls failed, the first with: %s", name, errs.count.Load(), errs.firstError())
	}
	return b.meter.quiesce(ctx)
}

// warmUpPages reads the pages named name, unmeasured, and waits for Redis
// to go quiet.
func (b *bench) warmUpPages(ctx context.Context, lib batchLibrary, name string) error {
	if _, errs, _ := runPages(ctx, lib, b.pages[name], b.pages[name].slots()); errs.count.Load() > 0 {
		b.logf("warm-up %s: %d pages failed, the first with: %s", name, errs.count.Load(), errs.firstError())
	}
	return b.meter.quiesce(ctx)
}

// fill writes every key of the key space, once per family, through the
// family's first library's own Set, into the family's database.
func (b *bench) fill(ctx context.Context, kinds []libraryKind) error {
	done := make(map[string]bool)
	for _, kind := range kinds {
		if done[kind.Family] {
			continue
		}
		done[kind.Family] = true
		db := familyDB[kind.Family]
		if err := b.flush(ctx, db); err != nil {
			return err
		}
		start := time.Now()
		_, err := b.with(ctx, kind, b.config(b.addr, db), func(lib Library) (sample, error) {
			return sample{}, b.setAll(ctx, lib)
		})
		if err != nil {
			return err
		}
		b.logf("filled Redis db %d with %d keys for %s in %v", db, len(b.keys), kind.Family, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// setAll Sets every key, from Workers goroutines, trying each up to five
// times.
func (b *bench) setAll(ctx context.Context, lib Library) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range b.sizes.Workers {
		wg.Go(func() {
			for i := w; i < len(b.keys); i += b.sizes.Workers {
				var err error
				for range 5 { // a Set may time out on a busy machine: try again
					if err = lib.Set(ctx, b.keys[i], newProduct(i, 1)); err == nil {
						break
					}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("bench: filling Redis: %w", errs[0])
	}
	return nil
}

// flush empties Redis database db.
func (b *bench) flush(ctx context.Context, db int) error {
	c := redis.NewClient(&redis.Options{Addr: b.addr, DB: db})
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("bench: FLUSHDB %d: %w", db, err)
	}
	return nil
}

// result is the samples of one library on one workload, one per round.
type result struct {
	Workload workload
	Kind     libraryKind
	Samples  []sample
}

// runAll runs every workload on every library that runs on it, rounds
// times, the libraries in a rotated order each round so that none always
// runs first, and returns the results by workload, then library, in the
// given orders.
func (b *bench) runAll(ctx context.Context, wls []workload, kinds []libraryKind, rounds int) ([][]*result, error) {
	if err := b.fill(ctx, kinds); err != nil {
		return nil, err
	}
	out := make([][]*result, len(wls))
	for i, w := range wls {
		for _, k := range kinds {
			if k.runs(w.ID) {
				out[i] = append(out[i], &result{Workload: w, Kind: k})
			}
		}
	}
	for r := range rounds {
		for i, w := range wls {
			n := len(out[i])
			for j := range n {
				res := out[i][(j+r)%n]
				profile := ""
				if r == 0 {
					profile = w.ID + "-" + slug(res.Kind.Label)
				}
				start := time.Now()
				s, err := w.run(ctx, b, res.Kind, profile)
				if err != nil {
					return nil, fmt.Errorf("bench: round %d, %s, %s: %w", r+1, w.ID, res.Kind.Name, err)
				}
				res.Samples = append(res.Samples, s)
				b.logf("round %d  %-7s %-36s %9.0f ops/s  p99 %-9v loads %-6d cmds/op %.2f  errors %d  (%v)",
					r+1, w.ID, res.Kind.Name, s.Throughput(), s.P99.Round(time.Microsecond), s.Loads, s.CommandsPerOp(), s.Errors,
					time.Since(start).Round(time.Millisecond))
				if s.FirstError != "" {
					b.logf("    first error: %s", s.FirstError)
				}
				if len(s.Diag) > 0 {
					b.logf("    %v", s.Diag)
				}
			}
		}
	}
	return out, nil
}

// slug turns a label into a file name: lower-case letters and digits, a
// dash for each run of anything else ("tiercache Sequential + CoalesceGets"
// is "tiercache-sequential-coalescegets").
func slug(s string) string {
	b := make([]byte, 0, len(s))
	for _, c := range []byte(strings.ToLower(s)) {
		switch {
		case 'a' <= c && c <= 'z' || '0' <= c && c <= '9':
			b = append(b, c)
		case len(b) > 0 && b[len(b)-1] != '-':
			b = append(b, '-')
		}
	}
	return strings.TrimSuffix(string(b), "-")
}

// median returns the median of the values f takes over r's samples.
func median[V int | int64 | float64 | time.Duration](samples []sample, f func(sample) V) V {
	vs := make([]V, len(samples))
	for i, s := range samples {
		vs[i] = f(s)
	}
	slices.Sort(vs)
	n := len(vs)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}
