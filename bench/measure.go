package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// sample is what one measured phase of one library produced.
type sample struct {
	Ops        int // calls; pages in a batch workload
	Keys       int // keys the calls read: Ops, or the keys of every page
	Elapsed    time.Duration
	P50        time.Duration
	P99        time.Duration
	P999       time.Duration
	ClientCPU  time.Duration    // the process's CPU time (user and system), background work included
	RedisCPU   time.Duration    // redis-server's CPU time (INFO cpu), over the same span
	Allocs     uint64           // heap allocations during the phase, background work included
	Bytes      uint64           // heap bytes allocated during the phase
	Loads      int64            // origin calls, Load and LoadMany alike
	LoadedKeys int64            // keys the origin calls asked for
	Commands   map[string]int64 // Redis commands by name, INFO excluded
	Errors     int64            // calls that returned an error
	FirstError string           // the first of them
	Diag       map[string]uint64
	MaxPerKey  int // stampede: the most loads of one key
	KeysLoaded int // stampede: keys loaded at least once
	// PageLoads is, in a batch workload, the most origin calls one page
	// made (started; a page that waits for another's load makes none).
	PageLoads int64
}

// Throughput returns calls (pages) per second.
func (s sample) Throughput() float64 { return float64(s.Ops) / s.Elapsed.Seconds() }

// KeysPerSecond returns keys read per second.
func (s sample) KeysPerSecond() float64 { return float64(s.Keys) / s.Elapsed.Seconds() }

// ClientCPUPerOp and RedisCPUPerOp return the CPU time of the process and
// of redis-server per call.
func (s sample) ClientCPUPerOp() time.Duration { return s.ClientCPU / time.Duration(s.Ops) }
func (s sample) RedisCPUPerOp() time.Duration  { return s.RedisCPU / time.Duration(s.Ops) }

// CommandsPerOp returns the Redis commands per call, all commands but INFO.
func (s sample) CommandsPerOp() float64 { return float64(sumCommands(s.Commands)) / float64(s.Ops) }

// Gets returns the GET and MGET commands of s.
func (s sample) Gets() int64 { return s.Commands["get"] + s.Commands["mget"] }

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
	// poll is how often quiesce looks at Redis's command counts; Redis is
	// quiet once they have not moved for two polls.
	poll time.Duration
}

// measure runs phase, which returns its latencies and its failed calls, and
// takes every figure of it. The time is phase's; the allocations and Redis
// commands are counted until Redis has gone quiet after it, so that the
// background work the phase caused (an L2 write, a refill) counts too.
func (m *meter) measure(ctx context.Context, lib Library, profile string, phase func() ([]time.Duration, *callErrors)) (sample, error) {
	runtime.GC()
	diag0 := diagnostics(lib)
	loads0, keys0 := m.origin.Calls(), m.origin.Keys()
	cmds0, err := commandStats(ctx, m.admin)
	if err != nil {
		return sample{}, err
	}
	redis0, err := redisCPU(ctx, m.admin)
	if err != nil {
		return sample{}, err
	}
	var mem0 runtime.MemStats
	runtime.ReadMemStats(&mem0)
	cpu0 := processCPU()

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
	cpu1 := processCPU()
	var mem1 runtime.MemStats
	runtime.ReadMemStats(&mem1)
	cmds1, err := commandStats(ctx, m.admin)
	if err != nil {
		return sample{}, err
	}
	redis1, err := redisCPU(ctx, m.admin)
	if err != nil {
		return sample{}, err
	}
	s := sample{
		Ops:        len(lats),
		Keys:       len(lats),
		Elapsed:    elapsed,
		ClientCPU:  cpu1 - cpu0,
		RedisCPU:   redis1 - redis0,
		Allocs:     mem1.Mallocs - mem0.Mallocs,
		Bytes:      mem1.TotalAlloc - mem0.TotalAlloc,
		Loads:      m.origin.Calls() - loads0,
		LoadedKeys: m.origin.Keys() - keys0,
		Commands:   diffCommands(cmds0, cmds1),
		Errors:     errs.count.Load(),
		FirstError: errs.firstError(),
		Diag:       diffDiag(diag0, diagnostics(lib)),
	}
	slices.Sort(lats)
	s.P50, s.P99, s.P999 = quantile(lats, 0.5), quantile(lats, 0.99), quantile(lats, 0.999)
	return s, nil
}

// startProfile starts a CPU profile named name in profileDir, when both
// are set, and an execution trace (name.trace: `go tool trace
// -pprof=sched|net|sync|syscall` says where the goroutines waited), and
// writes the heap profile (allocations since the process started) as
// name.heap0.pprof; the stop it returns ends the CPU profile and the
// trace and writes name.heap1.pprof, so that `go tool pprof -diff_base
// name.heap0.pprof name.heap1.pprof` shows the phase's allocations.
func (m *meter) startProfile(name string) (stop func(), err error) {
	if m.profileDir == "" || name == "" {
		return func() {}, nil
	}
	base := filepath.Join(m.profileDir, name)
	if err := writeHeapProfile(base + ".heap0.pprof"); err != nil {
		return nil, err
	}
	f, err := os.Create(base + ".pprof")
	if err != nil {
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	tf, err := os.Create(base + ".trace")
	if err == nil {
		err = trace.Start(tf)
	}
	if err != nil {
		pprof.StopCPUProfile()
		f.Close()
		if tf != nil {
			tf.Close()
		}
		return nil, fmt.Errorf("bench: trace: %w", err)
	}
	return func() {
		trace.Stop()
		tf.Close()
		pprof.StopCPUProfile()
		f.Close()
		if err := writeHeapProfile(base + ".heap1.pprof"); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}, nil
}

// writeHeapProfile writes the heap profile, up to date, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	defer f.Close()
	runtime.GC() // the profile is as of the last GC
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	return nil
}

// quiesce waits until Redis has run no command but INFO for two polls (60
// ms by default), and at most 10 s: by then the background writes and
// refills of the phase that ended have reached Redis.
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
			if stable++; stable == 2 {
				return nil
			}
		} else {
			last, stable = n, 0
		}
		time.Sleep(m.poll)
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
// call's latency, written into lats (one slot per call of p, allocated by
// the caller before the measured phase, see plan.slots), and the calls that
// failed. Sets write version of the Product.
func runPlan(ctx context.Context, lib Library, keys []string, p plan, version int64, lats []time.Duration) ([]time.Duration, *callErrors) {
	errs := &callErrors{}
	var wg sync.WaitGroup
	off := 0
	for _, calls := range p {
		l := lats[off : off+len(calls)]
		off += len(calls)
		wg.Go(func() {
			for i, o := range calls {
				var err error
				start := time.Now()
				if o.set {
					err = lib.Set(ctx, keys[o.key], newProduct(int(o.key), version))
				} else {
					_, err = lib.GetOrLoad(ctx, keys[o.key])
				}
				l[i] = time.Since(start)
				errs.add(err)
			}
		})
	}
	wg.Wait()
	return lats[:off], errs
}

// runPages reads every page of p through lib, one goroutine per worker,
// and returns every page's latency, the pages that failed (a call that
// returned an error, or a page answered without a value for every key) and
// the most origin calls one page made. Each worker counts its page's origin
// calls through a context of withPageLoads, built once per worker, so the
// count costs a page no allocation. The latencies go into lats, one slot
// per page, allocated by the caller before the measured phase.
func runPages(ctx context.Context, lib batchLibrary, p pagePlan, lats []time.Duration) ([]time.Duration, *callErrors, int64) {
	most := make([]int64, len(p))
	errs := &callErrors{}
	var wg sync.WaitGroup
	off := 0
	for w, pages := range p {
		l := lats[off : off+len(pages)]
		off += len(pages)
		wg.Go(func() {
			var loads atomic.Int64
			pctx := withPageLoads(ctx, &loads)
			for i, page := range pages {
				loads.Store(0)
				start := time.Now()
				ps, err := lib.GetOrLoadMany(pctx, page)
				l[i] = time.Since(start)
				if err == nil && len(ps) != len(page) {
					err = fmt.Errorf("bench: a page of %d keys came back with %d values", len(page), len(ps))
				}
				errs.add(err)
				most[w] = max(most[w], loads.Load())
			}
		})
	}
	wg.Wait()
	return lats[:off], errs, slices.Max(append(most, 0))
}

// runStampede has callers goroutines call GetOrLoad of each key of keys at
// once: the goroutines wait at a gate, the gate opens, and the next key's
// gate opens when every caller has returned. It returns every call's
// latency, counted from when its goroutine woke, written into lats
// (callers × len(keys) slots, allocated by the caller before the measured
// phase), and the calls that failed.
func runStampede(ctx context.Context, lib Library, keys []string, callers int, lats []time.Duration) ([]time.Duration, *callErrors) {
	gates := make([]chan struct{}, len(keys))
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	lats = lats[:callers*len(keys)]
	errs := &callErrors{}
	var done, exited sync.WaitGroup
	for c := range callers {
		l := lats[c*len(keys) : (c+1)*len(keys)]
		exited.Go(func() {
			for k, key := range keys {
				<-gates[k]
				start := time.Now()
				_, err := lib.GetOrLoad(ctx, key)
				l[k] = time.Since(start)
				errs.add(err)
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
	return lats, errs
}

// callErrors counts the calls of a phase that failed and keeps the first
// error.
type callErrors struct {
	count atomic.Int64
	first atomic.Pointer[error]
}

// add counts err when it is not nil. It allocates only then: taking the
// address of the parameter itself would move it to the heap on every call.
func (e *callErrors) add(err error) {
	if err == nil {
		return
	}
	e.count.Add(1)
	first := new(error)
	*first = err
	e.first.CompareAndSwap(nil, first)
}

func (e *callErrors) firstError() string {
	if p := e.first.Load(); p != nil {
		return (*p).Error()
	}
	return ""
}
