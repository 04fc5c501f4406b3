//go:build faults

package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
	"github.com/tiercache/tiercache/redisstore"
)

// The fault suite (issue 7): a Cache with otterstore as L1 and redisstore
// as L2 on a real redis-server of the test's own, under a load of 64
// workers calling GetOrLoad (99%) and Set (1%) over Zipf-distributed keys,
// while a fault is injected. Build tag faults; run with `make test-faults`.
//
// Every scenario logs what it measured on one line starting with
// FAULT-REPORT, as key=value pairs.

// The workload and the cache every scenario starts from.
const (
	faultWorkers      = 64
	faultKeys         = 10_000 // Zipf over k0..k9999
	faultZipfS        = 1.1
	faultL1Size       = 1_000 // entries: about a fifth of the calls miss L1
	faultL2Timeout    = 50 * time.Millisecond
	faultCallTimeout  = 2 * time.Second      // the deadline of every call
	faultThink        = 3 * time.Millisecond // a worker's pause between calls: the load keeps the 2 CPUs about half busy under -race
	faultOriginDelay  = time.Millisecond
	faultSetPercent   = 1
	faultOffloadConc  = 16
	faultOffloadQueue = 1024
	faultTTL          = 10 * time.Minute
)

// faultBreaker is the breaker every scenario turns on, unless it is about
// the breaker being off.
var faultBreaker = tiercache.BreakerOptions{Failures: 5, CoolDown: 200 * time.Millisecond}

// faultKeyNames are the keys of the workload, by Zipf rank.
var faultKeyNames = func() []string {
	keys := make([]string, faultKeys)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	return keys
}()

// originValue is what the origin answers for key. Every value the workload
// sees starts with its key and "|", so that a value of another key is
// caught.
func originValue(key string) string { return key + "|origin" }

// faultClient is how the go-redis client of a scenario, and the Store over
// it, are built.
type faultClient struct {
	name       string
	ctxTimeout bool // ContextTimeoutEnabled: socket I/O bounded by each ctx's deadline
	coalesce   bool // the Store coalesces Gets and writes (SuggestedCoalesceGets each)
}

// faultClients are the clients every scenario that depends on the client
// runs with: go-redis's default options, ContextTimeoutEnabled (which
// bounds an abandoned command by its ctx's deadline, and lets the
// dispatchers of coalesced batches call the client on their own
// goroutines), and ContextTimeoutEnabled with Gets and writes coalesced.
var faultClients = []faultClient{
	{"default-client", false, false},
	{"ctx-timeout-client", true, false},
	{"coalescing-client", true, true},
}

func eachFaultClient(t *testing.T, f func(t *testing.T, fc faultClient)) {
	for _, fc := range faultClients {
		t.Run(fc.name, func(t *testing.T) { f(t, fc) })
	}
}

// rigOptions configures a rig.
type rigOptions struct {
	addr      string
	client    faultClient
	breaker   tiercache.BreakerOptions
	offload   tiercache.OffloadOptions // zero: faultOffloadConc running, faultOffloadQueue queued
	l2Timeout time.Duration            // zero: faultL2Timeout; negative: none
	poolSize  int                      // the client's; zero: go-redis's default
	hook      redis.Hook               // added to the client when not nil
	wrapL1    func(tiercache.Backend[string]) tiercache.Backend[string]
}

// rig is one cache under test and what it is made of. Everything is closed
// when the test ends, the cache first.
type rig struct {
	opts   rigOptions
	client *redis.Client
	l1     *otterstore.Store[string]
	l2     *redisstore.Store[string]
	pool   *tiercache.OffloadPool
	cache  *tiercache.Cache[string]
	prefix string

	loads  atomic.Int64 // calls of the origin
	panics atomic.Int64 // panics seen: in offloaded tasks, or returned to a caller

	// Once markLoads is set, the origin records in marked the keys it is
	// asked for.
	markLoads atomic.Bool
	marked    sync.Map // key -> struct{}
}

// loadedSinceMark reports whether the origin was asked for key since
// markLoads was set.
func (r *rig) loadedSinceMark(key string) bool {
	_, ok := r.marked.Load(key)
	return ok
}

var rigPrefixes atomic.Int64

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	if o.offload.MaxConcurrent == 0 {
		o.offload.MaxConcurrent = faultOffloadConc
	}
	if o.offload.MaxQueued == 0 {
		o.offload.MaxQueued = faultOffloadQueue
	}
	switch {
	case o.l2Timeout == 0:
		o.l2Timeout = faultL2Timeout
	case o.l2Timeout < 0:
		o.l2Timeout = 0
	}
	r := &rig{opts: o, prefix: fmt.Sprintf("fault%d:", rigPrefixes.Add(1))}
	r.client = redis.NewClient(&redis.Options{Addr: o.addr, ContextTimeoutEnabled: o.client.ctxTimeout, PoolSize: o.poolSize})
	t.Cleanup(func() { r.client.Close() })
	if o.hook != nil {
		r.client.AddHook(o.hook)
	}
	var err error
	r.l1, err = otterstore.New(&otterstore.Options[string]{MaximumSize: faultL1Size})
	require.NoError(t, err)
	t.Cleanup(func() { r.l1.Close() })
	l2opts := redisstore.Options[string]{KeyPrefix: r.prefix, CoalesceGets: redisstore.CoalesceOff, CoalesceWrites: redisstore.CoalesceOff}
	if o.client.coalesce {
		l2opts.CoalesceGets, l2opts.CoalesceWrites = redisstore.SuggestedCoalesceGets, redisstore.SuggestedCoalesceGets
	}
	r.l2, err = redisstore.New(r.client, &l2opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, within(10*time.Second, r.l2.Close)) })
	offload := o.offload
	offload.OnPanic = func(kind string, recovered any, stack []byte) {
		r.panics.Add(1)
		t.Errorf("%s panicked: %v\n%s", kind, recovered, stack)
	}
	r.pool = tiercache.NewOffloadPool(offload)
	t.Cleanup(func() { require.NoError(t, within(10*time.Second, r.pool.Close)) })
	var l1 tiercache.Backend[string] = r.l1
	if o.wrapL1 != nil {
		l1 = o.wrapL1(l1)
	}
	r.cache, err = tiercache.New[string](l1, r.l2, &tiercache.Options[string]{
		DefaultTTL: faultTTL,
		L2Timeout:  o.l2Timeout,
		Breaker:    o.breaker,
		Offload:    r.pool,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, within(10*time.Second, r.cache.Close)) })
	return r
}

// within calls f with a ctx that ends after d.
func within(d time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx)
}

// origin is the loader of key: it takes faultOriginDelay, or ends with ctx.
func (r *rig) origin(key string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		r.loads.Add(1)
		if r.markLoads.Load() {
			r.marked.Store(key, struct{}{})
		}
		t := time.NewTimer(faultOriginDelay)
		defer t.Stop()
		select {
		case <-t.C:
			return originValue(key), nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// goroutineCeiling is the bound on the goroutines of a process using the
// cache, given base, the goroutines it had before the load (the test's own,
// otter's cleaner, go-redis's idle ones), and W callers (workers) calling
// GetOrLoad, Get and Set with SequentialReadPolicy, no StaleAfter, an
// OffloadPool of M workers and a go-redis client of P pooled connections:
//
//	base + W     the callers
//	+ F          flights, one goroutine each (the L2 read, then the load): F <= W,
//	             every flight being held by a caller that waits for it
//	+ M          the OffloadPool's workers; queued tasks hold none
//	+ T          the runtime's timer goroutines: a context deadline that passes
//	             runs its cancel on a goroutine of its own, briefly, but they pile
//	             up when many L2Timeout deadlines pass at once (Redis frozen) and
//	             the CPUs are busy: T <= W + M, one per L2 operation under way
//	+ G          redisstore's guarded path (every command whose ctx can end, on
//	             any client): one goroutine per command under way, G <= W + M
//	             (every command has a caller waiting: a flight, a pool task or a
//	             Set), plus the abandoned ones, each holding one of the P pooled
//	             connections until the client's ReadTimeout (or, with
//	             ContextTimeoutEnabled, the ctx's deadline): G <= W + M + P
//	+ P + 1      go-redis's own: at most P dialing goroutines (MaxConcurrentDials
//	             defaults to PoolSize) and one that probes a server that refused
//	             PoolSize dials in a row
//	+ D          a Store that coalesces: its dispatchers, CoalesceGets +
//	             CoalesceWrites (the callers they serve wait in the queue, on
//	             their own goroutines)
//	+ 4          otter's maintenance and slack
//
// that is base + 4W + 3M + 2P + D + 5. Without the callers and base (the
// application's), the cache's own share is 3W + 3M + 2P + D + 5.
func (r *rig) goroutineCeiling(base, workers int) int {
	w, m, p := workers, r.opts.offload.MaxConcurrent, r.client.Options().PoolSize
	n := base + w + w + m + (w + m) + (w + m + p) + (p + 1) + 4
	if r.opts.client.coalesce {
		n += 2 * redisstore.SuggestedCoalesceGets
	}
	return n
}

// workload is what the workers do.
type workload struct {
	workers    int // zero: faultWorkers
	setPercent int // negative: none; zero: faultSetPercent
	// ownedSets makes worker w Set only keys whose rank is w modulo the
	// number of workers, so that the Sets of a key never overlap, and
	// remember the value of the last Set acknowledged.
	ownedSets bool
}

// sample is one GetOrLoad: when it started (since the run's start) and how
// long it took.
type sample struct{ at, d time.Duration }

// workerLog is what one worker saw.
type workerLog struct {
	samples []sample
	acked   map[string]string // ownedSets: key → value of its last Set that returned nil
	unsure  map[string]bool   // ownedSets: a Set after the last acknowledged one failed, and may have landed
}

// sampler watches the process while a scenario runs: the number of
// goroutines every 2 ms, how late a 1 ms sleep wakes up (the scheduling
// delay the machine adds to every latency measured), and, when asked, the
// heap every 100 ms.
type sampler struct {
	start   time.Time
	base    int // goroutines before the load, the sampler's own included
	ceiling int
	stop    chan struct{}
	done    sync.WaitGroup

	mu          sync.Mutex
	goroutines  []timed // n: goroutines
	late        []timed // n: nanoseconds a 1 ms sleep overslept
	heap        []timed // n: HeapInuse bytes
	overCeiling []byte  // a goroutine profile at the highest count above ceiling
	overMax     int
}

type timed struct {
	at time.Duration
	n  int
}

// startSampler starts a sampler; ceiling(base) is the goroutine ceiling
// for the base it measures. With heap, it samples the heap too.
func startSampler(ceiling func(base int) int, heap bool) *sampler {
	s := &sampler{start: time.Now(), stop: make(chan struct{})}
	extra := 2 // the sampler's goroutines
	if heap {
		extra++
	}
	s.base = runtime.NumGoroutine() + extra
	s.ceiling = ceiling(s.base)
	s.done.Add(extra)
	go s.countGoroutines()
	go s.measureLateness()
	if heap {
		go s.measureHeap()
	}
	return s
}

func (s *sampler) now() time.Duration { return time.Since(s.start) }

func (s *sampler) countGoroutines() {
	defer s.done.Done()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		n := runtime.NumGoroutine()
		var profile []byte
		if n > s.ceiling && n > s.overMax {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			profile = b.Bytes()
		}
		s.mu.Lock()
		s.goroutines = append(s.goroutines, timed{s.now(), n})
		if profile != nil {
			s.overCeiling, s.overMax = profile, n
		}
		s.mu.Unlock()
		select {
		case <-tick.C:
		case <-s.stop:
			return
		}
	}
}

func (s *sampler) measureLateness() {
	defer s.done.Done()
	for {
		at := s.now()
		time.Sleep(time.Millisecond)
		late := s.now() - at - time.Millisecond
		s.mu.Lock()
		s.late = append(s.late, timed{at, int(late)})
		s.mu.Unlock()
		select {
		case <-s.stop:
			return
		default:
		}
	}
}

func (s *sampler) measureHeap() {
	defer s.done.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var m runtime.MemStats
	for {
		runtime.ReadMemStats(&m)
		s.mu.Lock()
		s.heap = append(s.heap, timed{s.now(), int(m.HeapInuse)})
		s.mu.Unlock()
		select {
		case <-tick.C:
		case <-s.stop:
			return
		}
	}
}

// finish stops the sampler and waits for it.
func (s *sampler) finish() {
	close(s.stop)
	s.done.Wait()
}

// max returns the highest of the samples *samples taken in [from, to).
func (s *sampler) max(samples *[]timed, from, to time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, x := range *samples {
		if x.at >= from && x.at < to {
			n = max(n, x.n)
		}
	}
	return n
}

// goroutinesMax returns the most goroutines sampled in [from, to).
func (s *sampler) goroutinesMax(from, to time.Duration) int { return s.max(&s.goroutines, from, to) }

// heapMax returns the highest HeapInuse sampled in [from, to).
func (s *sampler) heapMax(from, to time.Duration) int { return s.max(&s.heap, from, to) }

// lateness returns the 99th percentile and the maximum of how late a 1 ms
// sleep woke up in [from, to).
func (s *sampler) lateness(from, to time.Duration) (p99, worst time.Duration) {
	s.mu.Lock()
	var ds []time.Duration
	for _, x := range s.late {
		if x.at >= from && x.at < to {
			ds = append(ds, time.Duration(x.n))
		}
	}
	s.mu.Unlock()
	l := summarise(ds)
	return l.p99, l.max
}

// checkGoroutines asserts that the goroutines sampled stayed under the
// ceiling, showing the goroutine profile taken at the highest count above
// it when they did not.
func (s *sampler) checkGoroutines(t *testing.T) {
	t.Helper()
	gmax := s.goroutinesMax(0, all)
	if gmax <= s.ceiling {
		return
	}
	s.mu.Lock()
	profile := s.overCeiling
	s.mu.Unlock()
	t.Errorf("%d goroutines sampled, above the ceiling of %d (base %d); the goroutine profile at %d:\n%s", gmax, s.ceiling, s.base, s.overMax, profile)
}

// running is a workload under way, then done.
type running struct {
	*sampler
	r    *rig
	wl   workload
	stop chan struct{}
	wg   sync.WaitGroup
	logs []*workerLog

	calls, failed, closedErrs atomic.Int64 // GetOrLoad
	setCalls, setFailed       atomic.Int64
	wrong, overdue            atomic.Int64 // values of another key; calls that outlived their deadline
	errMu                     sync.Mutex
	someErrs                  []string
}

// run starts the workload on the rig's cache.
func (r *rig) run(wl workload) *running {
	if wl.workers == 0 {
		wl.workers = faultWorkers
	}
	if wl.setPercent == 0 {
		wl.setPercent = faultSetPercent
	}
	ru := &running{r: r, wl: wl, stop: make(chan struct{})}
	ru.sampler = startSampler(func(base int) int { return r.goroutineCeiling(base, wl.workers) }, false)
	seed := uint64(time.Now().UnixNano())
	for w := range wl.workers {
		log := &workerLog{samples: make([]sample, 0, 1<<14)}
		if wl.ownedSets {
			log.acked, log.unsure = map[string]string{}, map[string]bool{}
		}
		ru.logs = append(ru.logs, log)
		ru.wg.Go(func() { ru.work(w, log, rand.New(rand.NewPCG(seed, uint64(w)))) })
	}
	return ru
}

func (ru *running) work(w int, log *workerLog, rng *rand.Rand) {
	wl := ru.wl
	zipf := rand.NewZipf(rng, faultZipfS, 1, faultKeys-1)
	for seq := 0; ; seq++ {
		select {
		case <-ru.stop:
			return
		default:
		}
		i := int(zipf.Uint64())
		if wl.setPercent > 0 && rng.IntN(100) < wl.setPercent {
			if wl.ownedSets {
				if i = i - i%wl.workers + w; i >= faultKeys {
					i -= wl.workers
				}
			}
			ru.set(w, seq, faultKeyNames[i], log)
		} else {
			ru.getOrLoad(faultKeyNames[i], log)
		}
		time.Sleep(faultThink)
	}
}

func (ru *running) getOrLoad(key string, log *workerLog) {
	ctx, cancel := context.WithTimeout(context.Background(), faultCallTimeout)
	defer cancel()
	start := time.Now()
	v, err := ru.r.cache.GetOrLoad(ctx, key, ru.r.origin(key))
	d := time.Since(start)
	log.samples = append(log.samples, sample{start.Sub(ru.start), d})
	ru.calls.Add(1)
	if d > faultCallTimeout+50*time.Millisecond {
		ru.overdue.Add(1)
	}
	switch {
	case errors.Is(err, tiercache.ErrClosed):
		ru.closedErrs.Add(1)
	case err != nil:
		ru.failed.Add(1)
		ru.noteErr("GetOrLoad", key, err)
	case !strings.HasPrefix(v, key+"|"):
		ru.wrong.Add(1)
		ru.noteErr("GetOrLoad", key, fmt.Errorf("wrong value %q", v))
	}
}

func (ru *running) set(w, seq int, key string, log *workerLog) {
	ctx, cancel := context.WithTimeout(context.Background(), faultCallTimeout)
	defer cancel()
	v := fmt.Sprintf("%s|set|%d|%d", key, w, seq)
	start := time.Now()
	err := ru.r.cache.Set(ctx, key, v, 0)
	if time.Since(start) > faultCallTimeout+50*time.Millisecond {
		ru.overdue.Add(1)
	}
	ru.setCalls.Add(1)
	if err != nil {
		if !errors.Is(err, tiercache.ErrClosed) {
			ru.setFailed.Add(1)
			if log.unsure != nil {
				log.unsure[key] = true
			}
		}
		return
	}
	if log.acked != nil {
		log.acked[key] = v
		delete(log.unsure, key)
	}
}

func (ru *running) noteErr(op, key string, err error) {
	var pe *tiercache.PanicError
	if errors.As(err, &pe) {
		ru.r.panics.Add(1)
	}
	ru.errMu.Lock()
	defer ru.errMu.Unlock()
	if len(ru.someErrs) < 5 {
		ru.someErrs = append(ru.someErrs, fmt.Sprintf("%s %q: %v", op, key, err))
	}
}

// finish stops the workers and the sampler and waits for them.
func (ru *running) finish() {
	close(ru.stop)
	ru.wg.Wait()
	ru.sampler.finish()
}

// latency summarises durations.
type latency struct {
	n             int
	p50, p99, max time.Duration
}

func summarise(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return latency{n: len(ds), p50: q(0.50), p99: q(0.99), max: ds[len(ds)-1]}
}

// latency summarises the GetOrLoad calls that started in [from, to).
func (ru *running) latency(from, to time.Duration) latency {
	var ds []time.Duration
	for _, log := range ru.logs {
		for _, s := range log.samples {
			if s.at >= from && s.at < to {
				ds = append(ds, s.d)
			}
		}
	}
	return summarise(ds)
}

// all is the whole run.
const all = time.Duration(1<<63 - 1)

// checkCalls asserts what every scenario requires of the calls: none
// failed (ErrClosed aside), none returned a value of another key, none
// outlived its deadline, nothing panicked.
func (ru *running) checkCalls(t *testing.T) {
	t.Helper()
	require.Zero(t, ru.failed.Load(), "failed GetOrLoad calls; some: %q", ru.someErrs)
	require.Zero(t, ru.wrong.Load(), "values of another key; some: %q", ru.someErrs)
	require.Zero(t, ru.overdue.Load(), "calls that outlived their deadline (%v)", faultCallTimeout)
	require.Zero(t, ru.r.panics.Load(), "panics")
}

// report logs one FAULT-REPORT line: scenario, then the key-value pairs.
func report(t *testing.T, scenario string, kv ...any) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "FAULT-REPORT scenario=%s", scenario)
	kv = append(kv, "loadavg", loadAverage())
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if d, ok := v.(time.Duration); ok {
			v = roundDuration(d)
		}
		fmt.Fprintf(&b, " %v=%v", kv[i], v)
	}
	t.Log(b.String())
}

// loadAverage returns the machine's one-minute load average, which tells
// how much else competed for the CPUs while a scenario ran.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

// roundDuration keeps three significant digits or so.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// callKV returns the key-value pairs every report has about the calls and
// the machine.
func (ru *running) callKV() []any {
	late99, lateMax := ru.lateness(0, all)
	return []any{
		"calls", ru.calls.Load(), "failed", ru.failed.Load(), "wrong", ru.wrong.Load(), "overdue", ru.overdue.Load(),
		"sets", ru.setCalls.Load(), "sets_failed", ru.setFailed.Load(), "loads", ru.r.loads.Load(),
		"goroutines_base", ru.base, "goroutines_max", ru.goroutinesMax(0, all), "goroutines_ceiling", ru.ceiling,
		"sched_late_p99", late99, "sched_late_max", lateMax,
	}
}

// latencyKV returns the key-value pairs of l, named with prefix.
func latencyKV(prefix string, l latency) []any {
	return []any{prefix + "n", l.n, prefix + "p50", l.p50, prefix + "p99", l.p99, prefix + "max", l.max}
}

// sleepUntil sleeps until the run has lasted at.
func (s *sampler) sleepUntil(at time.Duration) {
	if d := at - s.now(); d > 0 {
		time.Sleep(d)
	}
}

// redisLogLines counts the lines go-redis logs (one per failed dial while
// Redis is down) instead of printing them; set for every test of the
// faults build.
var redisLogLines atomic.Int64

type countingLogger struct{}

func (countingLogger) Printf(context.Context, string, ...any) { redisLogLines.Add(1) }

func init() { redis.SetLogger(countingLogger{}) }
