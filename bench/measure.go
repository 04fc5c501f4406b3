package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// sample is what one measured phase of one library produced.
type sample struct {
	Ops        int
	Elapsed    time.Duration
	P50        time.Duration
	P99        time.Duration
	P999       time.Duration
	Allocs     uint64           // heap allocations during the phase, background work included
	Bytes      uint64           // heap bytes allocated during the phase
	Loads      int64            // origin loads
	Commands   map[string]int64 // Redis commands by name, INFO excluded
	Errors     int64            // calls that returned an error
	Diag       map[string]uint64
	MaxPerKey  int // stampede: the most loads of one key
	KeysLoaded int // stampede: keys loaded at least once
}

// Throughput returns calls per second.
func (s sample) Throughput() float64 { return float64(s.Ops) / s.Elapsed.Seconds() }

// CommandsPerOp returns the Redis commands per call, all commands but INFO.
func (s sample) CommandsPerOp() float64 { return float64(sumCommands(s.Commands)) / float64(s.Ops) }

// CommandPerOp returns the calls of Redis command name per call.
func (s sample) CommandPerOp(name string) float64 { return float64(s.Commands[name]) / float64(s.Ops) }

// sumCommands adds up every command's calls.
func sumCommands(m map[string]int64) int64 {
	var n int64
	for _, c := range m {
		n += c
	}
	return n
}

// meter takes the measurements around a phase: the process's allocations,
// the Redis commands, the origin's loads.
type meter struct {
	admin  *redis.Client // INFO only
	origin *Origin
	// profileDir, when set, receives a CPU profile of each phase measured
	// with a profile name.
	profileDir string
}

// measure runs phase, which returns its latencies and its error count, and
// takes every figure of it. The time is phase's; the allocations and Redis
// commands are counted until Redis has gone quiet after it, so that the
// background work the phase caused (an L2 write, a refill) counts too.
func (m *meter) measure(ctx context.Context, lib Library, profile string, phase func() ([]time.Duration, int64)) (sample, error) {
	runtime.GC()
	diag0 := diagnostics(lib)
	loads0 := m.origin.Calls()
	cmds0, err := commandStats(ctx, m.admin)
	if err != nil {
		return sample{}, err
	}
	var mem0 runtime.MemStats
	runtime.ReadMemStats(&mem0)

	stopProfile, err := m.startProfile(profile)
	if err != nil {
		return sample{}, err
	}
	start := time.Now()
	lats, errs := phase()
	elapsed := time.Since(start)
	stopProfile()

	if err := m.quiesce(ctx); err != nil {
		return sample{}, err
	}
	var mem1 runtime.MemStats
	runtime.ReadMemStats(&mem1)
	cmds1, err := commandStats(ctx, m.admin)
	if err != nil {
		return sample{}, err
	}
	s := sample{
		Ops:      len(lats),
		Elapsed:  elapsed,
		Allocs:   mem1.Mallocs - mem0.Mallocs,
		Bytes:    mem1.TotalAlloc - mem0.TotalAlloc,
		Loads:    m.origin.Calls() - loads0,
		Commands: diffCommands(cmds0, cmds1),
		Errors:   errs,
		Diag:     diffDiag(diag0, diagnostics(lib)),
	}
	slices.Sort(lats)
	s.P50, s.P99, s.P999 = quantile(lats, 0.5), quantile(lats, 0.99), quantile(lats, 0.999)
	return s, nil
}

// startProfile starts a CPU profile named name in profileDir, when both
// are set, and returns what stops it.
func (m *meter) startProfile(name string) (stop func(), err error) {
	if m.profileDir == "" || name == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(m.profileDir, name+".pprof"))
	if err != nil {
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// quiesce waits until Redis has run no command but INFO for 150 ms, and at
// most 10 s: by then the background writes and refills of the phase that
// ended have reached Redis.
func (m *meter) quiesce(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	last, stable := int64(-1), 0
	for time.Now().Before(deadline) {
		stats, err := commandStats(ctx, m.admin)
		if err != nil {
			return err
		}
		delete(stats, "info")
		if n := sumCommands(stats); n == last {
			if stable++; stable == 3 {
				return nil
			}
		} else {
			last, stable = n, 0
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// diffCommands returns after minus before, without INFO (the benchmark's
// own) and without commands that did not run.
func diffCommands(before, after map[string]int64) map[string]int64 {
	d := make(map[string]int64)
	for name, n := range after {
		if name == "info" {
			continue
		}
		if n -= before[name]; n > 0 {
			d[name] = n
		}
	}
	return d
}

func diagnostics(lib Library) map[string]uint64 {
	if d, ok := lib.(diagnoser); ok {
		return d.Diagnostics()
	}
	return nil
}

func diffDiag(before, after map[string]uint64) map[string]uint64 {
	if after == nil {
		return nil
	}
	d := maps.Clone(after)
	for k, v := range before {
		d[k] -= v
	}
	return d
}

// quantile returns the q-quantile of sorted, by the nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// runPlan runs p against lib, one goroutine per worker, and returns every
// call's latency and the number of calls that failed. Sets write version of
// the Product.
func runPlan(ctx context.Context, lib Library, keys []string, p plan, version int64) ([]time.Duration, int64) {
	lats := make([][]time.Duration, len(p))
	var errs atomic.Int64
	var wg sync.WaitGroup
	for w, calls := range p {
		lats[w] = make([]time.Duration, len(calls))
		wg.Go(func() {
			l := lats[w]
			for i, o := range calls {
				var err error
				start := time.Now()
				if o.set {
					err = lib.Set(ctx, keys[o.key], newProduct(int(o.key), version))
				} else {
					_, err = lib.GetOrLoad(ctx, keys[o.key])
				}
				l[i] = time.Since(start)
				if err != nil {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return slices.Concat(lats...), errs.Load()
}

// runStampede has callers goroutines call GetOrLoad of each key of keys at
// once: the goroutines wait at a gate, the gate opens, and the next key's
// gate opens when every caller has returned. It returns every call's
// latency, counted from when its goroutine woke, and the failed calls.
func runStampede(ctx context.Context, lib Library, keys []string, callers int) ([]time.Duration, int64) {
	gates := make([]chan struct{}, len(keys))
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	lats := make([][]time.Duration, callers)
	var errs atomic.Int64
	var done, exited sync.WaitGroup
	for c := range callers {
		lats[c] = make([]time.Duration, len(keys))
		exited.Go(func() {
			for k, key := range keys {
				<-gates[k]
				start := time.Now()
				_, err := lib.GetOrLoad(ctx, key)
				lats[c][k] = time.Since(start)
				if err != nil {
					errs.Add(1)
				}
				done.Done()
			}
		})
	}
	for k := range keys {
		done.Add(callers)
		close(gates[k])
		done.Wait()
	}
	exited.Wait()
	return slices.Concat(lats...), errs.Load()
}
