package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// loadPolicy is a read policy GetOrLoad is checked under.
type loadPolicy struct {
	name   string
	policy tiercache.ReadPolicy[string]
}

// eachLoadPolicy runs f under every read policy, each in its own synctest
// bubble: time is virtual, synctest.Wait settles every goroutine the cache
// started, and each of them must have ended when f returns.
func eachLoadPolicy(t *testing.T, f func(t *testing.T, lp loadPolicy)) {
	t.Helper()
	eachLoadPolicySkipping(t, nil, f)
}

// eachLoadPolicySkipping is eachLoadPolicy, skipping the policies named in
// skips with the reason given. It skips outside the bubble, so that the
// skip shows in the test's output.
func eachLoadPolicySkipping(t *testing.T, skips map[string]string, f func(t *testing.T, lp loadPolicy)) {
	t.Helper()
	policies := []loadPolicy{
		{name: "sequential", policy: tiercache.SequentialReadPolicy[string]{}},
		{name: "parallel", policy: tiercache.ParallelReadPolicy[string]{}},
		{name: "race/offload", policy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserOffload}},
		{name: "race/cancel", policy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}},
	}
	for _, lp := range policies {
		t.Run(lp.name, func(t *testing.T) {
			if reason, ok := skips[lp.name]; ok {
				t.Skip(reason)
			}
			synctest.Test(t, func(t *testing.T) { f(t, lp) })
		})
	}
}

// newLoadTestCache returns a Cache over l1 and l2 that is closed when the
// test ends. Close gets a deadline so that a test failing with work still
// held ends (at once, in a bubble) instead of hanging.
func newLoadTestCache(t *testing.T, l1, l2 *fakeBackend, opts *tiercache.Options[string]) *tiercache.Cache[string] {
	t.Helper()
	return newLoadTestCacheOver(t, l1, l2, opts)
}

// newLoadTestCacheOver is newLoadTestCache over any backends.
func newLoadTestCacheOver(t *testing.T, l1, l2 tiercache.Backend[string], opts *tiercache.Options[string]) *tiercache.Cache[string] {
	t.Helper()
	c, err := tiercache.New[string](l1, l2, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, c.Close(ctx))
	})
	return c
}

// loadGate returns a channel that holds whoever waits on it until open is
// called. The test's cleanup opens it too, before the cache closes when the
// gate is made after the cache, so a failing test leaves nothing blocked.
// Make it inside the bubble that uses it.
func loadGate(t *testing.T) (gate chan struct{}, open func()) {
	gate = make(chan struct{})
	open = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open)
	return gate, open
}

// loadCounter is a loader that counts its calls and keeps the ctx of each;
// body does the work and learns which call it is (1 for the first).
type loadCounter struct {
	body func(ctx context.Context, call int) (string, error)

	mu   sync.Mutex
	ctxs []context.Context
}

func countLoads(body func(ctx context.Context, call int) (string, error)) *loadCounter {
	return &loadCounter{body: body}
}

func (l *loadCounter) load(ctx context.Context) (string, error) {
	l.mu.Lock()
	l.ctxs = append(l.ctxs, ctx)
	call := len(l.ctxs)
	l.mu.Unlock()
	return l.body(ctx, call)
}

// n returns the number of calls so far.
func (l *loadCounter) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ctxs)
}

// ctx returns the ctx of call i (1 for the first).
func (l *loadCounter) ctx(i int) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctxs[i-1]
}

// loadResult is what one GetOrLoad returned, and when.
type loadResult struct {
	v   string
	err error
	at  time.Time
}

// goGetOrLoad calls GetOrLoad on a new goroutine; the channel receives its
// result. A caller still waiting when the test ends, because it failed, is
// cancelled and waited for (up to an hour of the bubble's time), so that
// the failure is reported instead of a deadlock of the bubble.
func goGetOrLoad(t *testing.T, ctx context.Context, c *tiercache.Cache[string], key string, load func(context.Context) (string, error)) <-chan loadResult {
	return goCall(t, ctx, "GetOrLoad", func(ctx context.Context) loadResult {
		v, err := c.GetOrLoad(ctx, key, load)
		return loadResult{v: v, err: err, at: time.Now()}
	})
}

// awaitLoad returns the result of a GetOrLoad, failing the test if it has
// not returned within an hour of the bubble's time, as when it would wait
// forever.
func awaitLoad(t *testing.T, ch <-chan loadResult) loadResult {
	t.Helper()
	return await(t, ch, "GetOrLoad")
}

// leaveAtOnce starts a GetOrLoad of key, lets everything it started settle,
// cancels its ctx and checks that it returned at once with context.Canceled.
// Call it in a bubble.
func leaveAtOnce(t *testing.T, c *tiercache.Cache[string], key string, load func(context.Context) (string, error)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gone := goGetOrLoad(t, ctx, c, key, load)
	synctest.Wait()
	cancel()
	synctest.Wait()
	err := loadResultNow(t, gone).err
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, fmt.Sprintf("tiercache: read %q: ", key), "the package and the key")
}

// loadResultNow returns the result of a GetOrLoad that must have returned
// already.
func loadResultNow(t *testing.T, ch <-chan loadResult) loadResult {
	t.Helper()
	return resultNow(t, ch, "GetOrLoad")
}

// goCall runs call on a new goroutine with a ctx of ctx; the channel
// receives its result. A call still running when the test ends, because it
// failed, is cancelled and waited for (up to an hour of the bubble's time),
// so that the failure is reported instead of a deadlock of the bubble.
func goCall[R any](t *testing.T, ctx context.Context, what string, call func(ctx context.Context) R) <-chan R {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan R, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ch <- call(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Hour):
			t.Errorf("%s did not return when its ctx was cancelled", what)
		}
	})
	return ch
}

// await returns what a call started by goCall returned, failing the test
// if it has not returned within an hour of the bubble's time.
func await[R any](t *testing.T, ch <-chan R, what string) R {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(time.Hour):
		require.FailNow(t, what+" did not return")
		var zero R
		return zero
	}
}

// resultNow returns what a call started by goCall returned, which it must
// have already.
func resultNow[R any](t *testing.T, ch <-chan R, what string) R {
	t.Helper()
	select {
	case r := <-ch:
		return r
	default:
		require.FailNow(t, what+" has not returned")
		var zero R
		return zero
	}
}

// loadOffload is an Offload that records the kind of every task it is
// given and holds the tasks until run is called; with refuse set, it
// refuses them instead.
type loadOffload struct {
	mu     sync.Mutex
	refuse bool
	kinds  []string
	held   []heldLoadTask
}

type heldLoadTask struct {
	kind string
	run  func(context.Context)
}

func (o *loadOffload) offload() tiercache.Offload {
	return tiercache.OffloadFunc(func(kind string, task func(context.Context)) bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.kinds = append(o.kinds, kind)
		if o.refuse {
			return false
		}
		o.held = append(o.held, heldLoadTask{kind, task})
		return true
	})
}

// run runs the held tasks in order, and those handed over meanwhile, until
// none is left.
func (o *loadOffload) run() {
	for {
		o.mu.Lock()
		if len(o.held) == 0 {
			o.mu.Unlock()
			return
		}
		task := o.held[0]
		o.held = o.held[1:]
		o.mu.Unlock()
		task.run(context.Background())
	}
}

// runKind runs the held tasks of kind, in order, leaving the others held.
func (o *loadOffload) runKind(kind string) {
	o.mu.Lock()
	var run, keep []heldLoadTask
	for _, task := range o.held {
		if task.kind == kind {
			run = append(run, task)
		} else {
			keep = append(keep, task)
		}
	}
	o.held = keep
	o.mu.Unlock()
	for _, task := range run {
		task.run(context.Background())
	}
}

// kindsGiven returns the kinds of the tasks given so far, in order.
func (o *loadOffload) kindsGiven() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.kinds...)
}

// count returns how many tasks of kind were given.
func (o *loadOffload) count(kind string) int {
	n := 0
	for _, k := range o.kindsGiven() {
		if k == kind {
			n++
		}
	}
	return n
}

// clearBackend empties b without counting calls.
// staleValue is a value that went stale a second ago and expires in an
// hour, as a copy another process stored a while back.
func staleValue(data string) tiercache.CacheValue[string] {
	now := time.Now()
	return tiercache.CacheValue[string]{Data: data, Stale: now.Add(-time.Second), Expire: now.Add(time.Hour)}
}

func clearBackend(b *fakeBackend) {
	b.configure(func(b *fakeBackend) { clear(b.m) })
}

// requireLoadHolds checks that b holds a value for key with this data and
// instants.
func requireLoadHolds(t *testing.T, b *fakeBackend, key, data string, stale, expire time.Time, msgAndArgs ...any) {
	t.Helper()
	v, ok := b.peek(key)
	require.True(t, ok, msgAndArgs...)
	require.Equal(t, tiercache.CacheValue[string]{Data: data, Stale: stale, Expire: expire}, v, msgAndArgs...)
}

var errOrigin = errors.New("origin down")

// 1,000 callers asking for one cold key at once share one L2 read and one
// load, and all get the loaded value.
func TestGetOrLoadCoalescesColdKey(t *testing.T) {
	const callers = 1000
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		l2Gate, openL2 := loadGate(t)
		l2.configure(func(b *fakeBackend) { b.gate = l2Gate })
		loadHold, openLoad := loadGate(t)
		loader := countLoads(func(context.Context, int) (string, error) {
			<-loadHold
			return "v", nil
		})

		results := make([]<-chan loadResult, callers)
		for i := range results {
			results[i] = goGetOrLoad(t, context.Background(), c, "k", loader.load)
		}
		synctest.Wait()
		require.Equal(t, 1, l2.calls().gets, "the L1 misses share one L2 read")
		openL2()
		synctest.Wait()
		require.Equal(t, 1, loader.n(), "the L2 miss leads to one load")
		openLoad()
		for _, ch := range results {
			r := awaitLoad(t, ch)
			require.NoError(t, r.err)
			require.Equal(t, "v", r.v)
		}
		synctest.Wait()

		require.Equal(t, 1, loader.n())
		require.EqualValues(t, 1, c.Stats().Loads)
		require.Equal(t, 1, l2.calls().gets, "no caller read L2 on its own")
		require.Equal(t, 1, l1.calls().sets, "L1 filled once")
		require.Equal(t, 1, l2.calls().sets, "L2 written once")
	})
}

// When L2 has the key, 1,000 callers missing L1 at once share one L2 read,
// nobody loads, and L1 is refilled once.
func TestGetOrLoadCoalescesL2Hit(t *testing.T) {
	const callers = 1000
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		l2.put("k", tiercache.CacheValue[string]{Data: "from-l2"})
		l2Gate, openL2 := loadGate(t)
		l2.configure(func(b *fakeBackend) { b.gate = l2Gate })
		loader := countLoads(func(context.Context, int) (string, error) { return "loaded", nil })

		results := make([]<-chan loadResult, callers)
		for i := range results {
			results[i] = goGetOrLoad(t, context.Background(), c, "k", loader.load)
		}
		synctest.Wait()
		require.Equal(t, 1, l2.calls().gets, "the L1 misses share one L2 read")
		openL2()
		for _, ch := range results {
			r := awaitLoad(t, ch)
			require.NoError(t, r.err)
			require.Equal(t, "from-l2", r.v)
		}
		synctest.Wait()

		require.Zero(t, loader.n())
		s := c.Stats()
		require.Zero(t, s.Loads)
		require.EqualValues(t, 1, s.Refills)
		require.Equal(t, 1, l2.calls().gets)
		require.Equal(t, 1, l1.calls().sets, "L1 refilled once")
		requireLoadHolds(t, l1, "k", "from-l2", time.Time{}, time.Time{})
	})
}

// Stats.Coalesced counts each caller that shared another's work once:
// callers-1 when they all share one L2 read and, on a miss, one load.
func TestGetOrLoadCountsCoalescedCallersOnce(t *testing.T) {
	tests := []struct {
		name    string
		callers int
		l2Has   bool
		l1Delay time.Duration // L1 reads outlast the shared L2 read
		skips   map[string]string
	}{
		{name: "L2 hit", callers: 1000, l2Has: true},
		{name: "L2 miss", callers: 1000},
		{
			// The callers' L2 reads run beside their slower L1 reads: both
			// leave the flight at its L2 miss, which drops it, and meet again
			// in a new flight for the load.
			name: "L2 miss, slow L1", callers: 2, l1Delay: 10 * time.Millisecond,
			skips: map[string]string{
				"sequential": "L2 is read after L1: the callers do not meet at the L2 read",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachLoadPolicySkipping(t, tt.skips, func(t *testing.T, lp loadPolicy) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
				if tt.l2Has {
					l2.put("k", tiercache.CacheValue[string]{Data: "v"})
				}
				l1.configure(func(b *fakeBackend) { b.delay = tt.l1Delay })
				l2Gate, openL2 := loadGate(t)
				l2.configure(func(b *fakeBackend) { b.gate = l2Gate })
				loadHold, openLoad := loadGate(t)
				loader := countLoads(func(context.Context, int) (string, error) {
					<-loadHold
					return "v", nil
				})

				results := make([]<-chan loadResult, tt.callers)
				for i := range results {
					results[i] = goGetOrLoad(t, context.Background(), c, "k", loader.load)
				}
				if tt.l1Delay > 0 {
					time.Sleep(tt.l1Delay / 2)
				}
				synctest.Wait()
				require.Equal(t, 1, l2.calls().gets, "one shared L2 read")
				openL2()
				time.Sleep(tt.l1Delay)
				synctest.Wait()
				openLoad()
				for _, ch := range results {
					r := awaitLoad(t, ch)
					require.NoError(t, r.err)
					require.Equal(t, "v", r.v)
				}
				wantLoads := 1
				if tt.l2Has {
					wantLoads = 0
				}
				require.Equal(t, wantLoads, loader.n())
				require.EqualValues(t, tt.callers-1, c.Stats().Coalesced)
			})
		})
	}
}

// Callers arriving while the load runs join it: no second L2 read, no
// second load.
func TestGetOrLoadLateCallersJoinRunningLoad(t *testing.T) {
	const late = 10
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		gate, open := loadGate(t)
		loader := countLoads(func(context.Context, int) (string, error) {
			<-gate
			return "v", nil
		})

		first := goGetOrLoad(t, context.Background(), c, "k", loader.load)
		synctest.Wait()
		require.Equal(t, 1, loader.n())
		require.Equal(t, 1, l2.calls().gets)

		results := []<-chan loadResult{first}
		for range late {
			results = append(results, goGetOrLoad(t, context.Background(), c, "k", loader.load))
		}
		synctest.Wait()
		require.Equal(t, 1, l2.calls().gets, "late callers do not read L2")
		require.Equal(t, 1, loader.n(), "late callers do not load")
		require.EqualValues(t, late, c.Stats().Coalesced)

		open()
		for _, ch := range results {
			r := awaitLoad(t, ch)
			require.NoError(t, r.err)
			require.Equal(t, "v", r.v)
		}
		require.Equal(t, 1, loader.n())
		require.Equal(t, 1, l2.calls().gets)
	})
}

// The shared load sees the first caller's ctx values, but not its
// cancellation: cancelled, the first caller returns at once with its ctx's
// error, and the load goes on for the second.
func TestGetOrLoadSharedLoadHasFirstCallerValuesNotCancellation(t *testing.T) {
	type traceKey struct{}
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		gate, open := loadGate(t)
		loader := countLoads(func(ctx context.Context, _ int) (string, error) {
			select {
			case <-gate:
				return "v", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})
		start := time.Now()

		firstCtx, cancelFirst := context.WithCancel(context.WithValue(context.Background(), traceKey{}, "trace-1"))
		defer cancelFirst()
		first := goGetOrLoad(t, firstCtx, c, "k", loader.load)
		synctest.Wait()
		second := goGetOrLoad(t, context.Background(), c, "k", loader.load)
		synctest.Wait()
		require.Equal(t, 1, loader.n())
		loadCtx := loader.ctx(1)
		require.Equal(t, "trace-1", loadCtx.Value(traceKey{}), "the load carries the first caller's values")

		cancelFirst()
		synctest.Wait()
		r := loadResultNow(t, first)
		require.ErrorIs(t, r.err, context.Canceled)
		require.Equal(t, start, r.at, "the first caller returns at once")
		require.NoError(t, loadCtx.Err(), "the load is not cancelled while a caller waits")

		open()
		r = awaitLoad(t, second)
		require.NoError(t, r.err)
		require.Equal(t, "v", r.v)
		require.Equal(t, 1, loader.n())
	})
}

// The load is cancelled when its last waiter leaves, and the next caller
// starts a fresh one.
func TestGetOrLoadCancelsLoadWhenEveryWaiterLeaves(t *testing.T) {
	const callers = 3
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		loader := countLoads(func(ctx context.Context, call int) (string, error) {
			if call > 1 {
				return "fresh", nil
			}
			<-ctx.Done()
			return "", ctx.Err()
		})

		var cancels []context.CancelFunc
		var results []<-chan loadResult
		for range callers {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cancels = append(cancels, cancel)
			results = append(results, goGetOrLoad(t, ctx, c, "k", loader.load))
		}
		synctest.Wait()
		require.Equal(t, 1, loader.n())
		loadCtx := loader.ctx(1)

		for i, cancel := range cancels {
			require.NoError(t, loadCtx.Err(), "%d of %d callers gone: the load goes on", i, callers)
			cancel()
			synctest.Wait()
			require.ErrorIs(t, loadResultNow(t, results[i]).err, context.Canceled)
		}
		require.ErrorIs(t, loadCtx.Err(), context.Canceled, "the last caller's leaving cancels the load")

		r := awaitLoad(t, goGetOrLoad(t, context.Background(), c, "k", loader.load))
		require.NoError(t, r.err)
		require.Equal(t, "fresh", r.v)
		require.Equal(t, 2, loader.n())
	})
}

// A caller arriving after every waiter of a load has gone starts a fresh
// load, even while the abandoned one, ignoring its ctx, still runs; the
// abandoned load, finishing last, does not overwrite the fresh value.
func TestGetOrLoadStartsAfreshAfterEveryWaiterLeft(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		gate, open := loadGate(t)
		loader := countLoads(func(_ context.Context, call int) (string, error) {
			if call > 1 {
				return "fresh", nil
			}
			<-gate // deaf to its ctx
			return "abandoned", nil
		})

		leaveAtOnce(t, c, "k", loader.load)

		r := awaitLoad(t, goGetOrLoad(t, context.Background(), c, "k", loader.load))
		require.NoError(t, r.err)
		require.Equal(t, "fresh", r.v)
		require.Equal(t, 2, loader.n(), "a fresh load, while the first is still running")

		open()
		synctest.Wait()
		requireLoadHolds(t, l1, "k", "fresh", time.Time{}, time.Time{}, "the older load does not overwrite the fresh value")
		requireLoadHolds(t, l2, "k", "fresh", time.Time{}, time.Time{}, "the older load does not overwrite the fresh value")
	})
}

// The caller that starts a flight reads L2 itself (on the goroutine its
// policy reads L2 on), with its own ctx, when that ctx has no deadline or
// one that leaves room for L2Timeout; otherwise the read runs on a
// goroutine of the flight's. Either way a caller returns when its ctx ends
// and the others get the L2 value without a load: a read cut short by its
// caller's cancellation starts over for them.
func TestGetOrLoadFirstCallerReadsL2(t *testing.T) {
	tests := []struct {
		name          string
		l2Timeout     time.Duration
		deadline      time.Duration // of the first caller's ctx; 0: none, cancelled instead
		wantGets      int           // L2 reads in all
		wantAbandoned uint64        // L2 reads reported abandoned
	}{
		{name: "cancelled, read on its goroutine, read again for the other", wantGets: 2, wantAbandoned: 1},
		{name: "deadline leaves room for L2Timeout, read on its goroutine", l2Timeout: 100 * time.Millisecond, deadline: time.Hour, wantGets: 2, wantAbandoned: 1},
		{name: "deadline inside L2Timeout, read on the flight's goroutine", l2Timeout: time.Hour, deadline: 10 * time.Millisecond, wantGets: 1},
		{name: "deadline without L2Timeout, read on the flight's goroutine", deadline: 10 * time.Millisecond, wantGets: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy, L2Timeout: tt.l2Timeout})
				l2.put("k", tiercache.CacheValue[string]{Data: "from-l2"})
				gate, open := loadGate(t)
				l2.configure(func(b *fakeBackend) { b.gate = gate })
				loader := countLoads(func(context.Context, int) (string, error) { return "loaded", nil })
				start := time.Now()

				ctx, cancel := context.WithCancel(context.Background())
				if tt.deadline > 0 {
					ctx, cancel = context.WithTimeout(context.Background(), tt.deadline)
				}
				defer cancel()
				first := goGetOrLoad(t, ctx, c, "k", loader.load)
				synctest.Wait()
				other := goGetOrLoad(t, context.Background(), c, "k", loader.load)
				synctest.Wait()
				require.Equal(t, 1, l2.calls().gets, "the other caller shares the read")

				left := start
				if tt.deadline > 0 && tt.deadline < time.Minute {
					time.Sleep(tt.deadline) // the first caller's deadline passes
					left = start.Add(tt.deadline)
				} else {
					cancel()
				}
				synctest.Wait()
				r := loadResultNow(t, first)
				require.ErrorIs(t, r.err, ctx.Err())
				require.Equal(t, left, r.at, "the first caller returns when its ctx ends")

				open()
				r = awaitLoad(t, other)
				require.NoError(t, r.err)
				require.Equal(t, "from-l2", r.v)
				synctest.Wait()
				require.Zero(t, loader.n(), "no load: L2 had the value")
				require.Equal(t, tt.wantGets, l2.calls().gets)
				require.Equal(t, tt.wantAbandoned, c.Stats().L2.Abandoned)
				require.EqualValues(t, 1, c.Stats().L2.Hits)
				requireLoadHolds(t, l1, "k", "from-l2", time.Time{}, time.Time{})
			})
		})
	}
}

// A first caller whose ctx ends during its own L2 read, with no one else
// waiting, leaves nothing behind: the next caller reads afresh.
func TestGetOrLoadFirstCallerLeavingAloneEndsItsRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, nil)
		l2.put("k", tiercache.CacheValue[string]{Data: "from-l2"})
		gate, open := loadGate(t)
		l2.configure(func(b *fakeBackend) { b.gate = gate })
		loader := countLoads(func(context.Context, int) (string, error) { return "loaded", nil })

		leaveAtOnce(t, c, "k", loader.load)
		require.EqualValues(t, 1, c.Stats().L2.Abandoned)
		require.Zero(t, c.Stats().L2.Failures, "a read its caller left is not an L2 failure")

		open()
		r := awaitLoad(t, goGetOrLoad(t, context.Background(), c, "k", loader.load))
		require.NoError(t, r.err)
		require.Equal(t, "from-l2", r.v)
		require.Equal(t, 2, l2.calls().gets)
		require.Zero(t, loader.n())
	})
}

// An L2 reader that calls runtime.Goexit on the goroutine of the caller
// that runs the read ends that caller's goroutine; the callers waiting for
// the read go on as after an L2 failure, and load.
func TestGetOrLoadFirstCallerGoexitInL2(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1 := newFakeBackend()
		gate, open := loadGate(t)
		var calls atomic.Int32
		l2 := &hookedBackend{fakeBackend: newFakeBackend(), afterGet: func(ctx context.Context) error {
			if calls.Add(1) == 1 {
				<-gate
				runtime.Goexit()
			}
			return nil
		}}
		c := newLoadTestCacheOver(t, l1, l2, nil)
		loader := countLoads(func(context.Context, int) (string, error) { return "loaded", nil })

		r := goexitThenWaiter(t, context.Background(), c, loader.load, open)
		require.NoError(t, r.err)
		require.Equal(t, "loaded", r.v)
		require.Equal(t, 1, loader.n())
		require.EqualValues(t, 1, c.Stats().L2.Failures)
	})
}

// goexitThenWaiter starts a GetOrLoad of "k" with ctx on a goroutine that
// a backend may end with runtime.Goexit, waits until it is held (by a gate
// that open releases), starts a second caller of the key, lets the first
// go, waits for its goroutine to end and returns what the second got. Call
// it in a synctest bubble.
func goexitThenWaiter(t *testing.T, ctx context.Context, c *tiercache.Cache[string], load func(context.Context) (string, error), open func()) loadResult {
	t.Helper()
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_, _ = c.GetOrLoad(ctx, "k", load)
	}()
	synctest.Wait()
	other := goGetOrLoad(t, context.Background(), c, "k", load)
	synctest.Wait()
	open()
	<-exited
	return awaitLoad(t, other)
}

// Each caller returns when its own ctx ends, while the load goes on for the
// others.
func TestGetOrLoadReturnsAtCallerDeadline(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		loader := countLoads(func(context.Context, int) (string, error) {
			time.Sleep(time.Second)
			return "v", nil
		})
		start := time.Now()

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		short := goGetOrLoad(t, ctx, c, "k", loader.load)
		long := goGetOrLoad(t, context.Background(), c, "k", loader.load)

		r := awaitLoad(t, short)
		require.ErrorIs(t, r.err, context.DeadlineExceeded)
		require.ErrorContains(t, r.err, `tiercache: read "k": `, "the package and the key")
		require.Equal(t, 10*time.Millisecond, r.at.Sub(start))
		r = awaitLoad(t, long)
		require.NoError(t, r.err)
		require.Equal(t, "v", r.v)
		require.Equal(t, time.Second, r.at.Sub(start))
		require.Equal(t, 1, loader.n())
	})
}

// A loaded value is in L1 when GetOrLoad returns; its L2 write is a task of
// kind OffloadKindWriteL2, and L2 is written only when the task runs.
func TestGetOrLoadFillsL1AtOnceAndL2ThroughOffload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		off := &loadOffload{}
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{Offload: off.offload()})
		loader := countLoads(func(context.Context, int) (string, error) { return "v", nil })

		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "v", v)
		requireLoadHolds(t, l1, "k", "v", time.Time{}, time.Time{}, "in L1 before GetOrLoad returns")
		_, ok := l2.peek("k")
		require.False(t, ok, "L2 waits for the Offload")
		require.Zero(t, l2.calls().sets)
		require.Equal(t, []string{tiercache.OffloadKindWriteL2}, off.kindsGiven())

		off.run()
		requireLoadHolds(t, l2, "k", "v", time.Time{}, time.Time{})
		require.Equal(t, 1, l2.calls().sets)
	})
}

// When the Offload refuses the L2 write, L2 is not written, the refusal is
// counted, and the caller still gets the value, kept in L1.
func TestGetOrLoadSkipsL2WriteWhenOffloadRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		off := &loadOffload{refuse: true}
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{Offload: off.offload()})
		loader := countLoads(func(context.Context, int) (string, error) { return "v", nil })

		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "v", v)
		requireLoadHolds(t, l1, "k", "v", time.Time{}, time.Time{})
		synctest.Wait()
		require.Equal(t, []string{tiercache.OffloadKindWriteL2}, off.kindsGiven())
		require.Zero(t, l2.calls().sets)
		require.EqualValues(t, 1, c.Stats().OffloadRejected)
	})
}

// An L2 outage, failing or hanging, never fails GetOrLoad: the value is
// loaded, returned and kept in L1, and the failure shows in Stats.
func TestGetOrLoadSurvivesL2Outage(t *testing.T) {
	const l2Timeout = 50 * time.Millisecond
	outages := []struct {
		name     string
		opts     tiercache.Options[string]
		breakL2  func(b *fakeBackend) // called in the bubble
		wantTook time.Duration
	}{
		{
			name:    "errors",
			breakL2: func(b *fakeBackend) { b.getErr, b.setErr = errors.New("L2 down"), errors.New("L2 down") },
		},
		{
			name:     "hangs past L2Timeout",
			opts:     tiercache.Options[string]{L2Timeout: l2Timeout},
			breakL2:  func(b *fakeBackend) { b.gate = make(chan struct{}) }, // never opened
			wantTook: l2Timeout,
		},
	}
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				l2.configure(o.breakL2)
				opts := o.opts
				opts.ReadPolicy = lp.policy
				c := newLoadTestCache(t, l1, l2, &opts)
				loader := countLoads(func(context.Context, int) (string, error) { return "v", nil })
				start := time.Now()

				v, err := c.GetOrLoad(context.Background(), "k", loader.load)
				require.NoError(t, err)
				require.Equal(t, "v", v)
				require.Equal(t, o.wantTook, time.Since(start))
				requireLoadHolds(t, l1, "k", "v", time.Time{}, time.Time{})
				require.Equal(t, 1, loader.n())
				require.EqualValues(t, 1, c.Stats().L2.Failures)

				time.Sleep(time.Second) // the background L2 write fails too
				synctest.Wait()
				require.EqualValues(t, 1, c.Stats().WriteErrors)
				requireLoadHolds(t, l1, "k", "v", time.Time{}, time.Time{}, "L1 keeps the value")
			})
		})
	}
}

// A loader's error or panic reaches every caller that waited for it, and is
// not cached: the next call loads again.
func TestGetOrLoadLoaderFailureReachesEveryWaiter(t *testing.T) {
	const callers = 10
	failures := []struct {
		name  string
		fail  func() (string, error)
		check func(t *testing.T, err error)
	}{
		{
			name: "error",
			fail: func() (string, error) { return "", fmt.Errorf("user 7: %w", errOrigin) },
			check: func(t *testing.T, err error) {
				require.ErrorIs(t, err, errOrigin)
			},
		},
		{
			name: "panic",
			fail: func() (string, error) { panic("origin exploded") },
			check: func(t *testing.T, err error) {
				var pe *tiercache.PanicError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, "origin exploded", pe.Value)
			},
		},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
				gate, open := loadGate(t)
				loader := countLoads(func(_ context.Context, call int) (string, error) {
					if call > 1 {
						return "v", nil
					}
					<-gate
					return f.fail()
				})

				var results []<-chan loadResult
				for range callers {
					results = append(results, goGetOrLoad(t, context.Background(), c, "k", loader.load))
				}
				synctest.Wait()
				open()
				for _, ch := range results {
					r := awaitLoad(t, ch)
					require.Error(t, r.err)
					f.check(t, r.err)
				}
				require.Equal(t, 1, loader.n())
				synctest.Wait()
				require.Zero(t, l1.calls().sets, "a failure is not cached")
				require.Zero(t, l2.calls().sets, "a failure is not cached")

				v, err := c.GetOrLoad(context.Background(), "k", loader.load)
				require.NoError(t, err)
				require.Equal(t, "v", v)
				require.Equal(t, 2, loader.n(), "the next call loads again")
			})
		})
	}
}

// Without NegativeTTL, a loader's ErrNotFound reaches the caller and is not
// remembered: nothing is written, and the next call loads again.
func TestGetOrLoadNotFound(t *testing.T) {
	for _, notFound := range []error{tiercache.ErrNotFound, fmt.Errorf("user 7: %w", tiercache.ErrNotFound)} {
		t.Run(notFound.Error(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := newLoadTestCache(t, l1, l2, nil)
				loader := countLoads(func(context.Context, int) (string, error) { return "", notFound })

				for i := 1; i <= 2; i++ {
					v, err := c.GetOrLoad(context.Background(), "k", loader.load)
					require.ErrorIs(t, err, tiercache.ErrNotFound)
					require.Empty(t, v)
					require.Equal(t, i, loader.n(), "every call loads")
					synctest.Wait()
					require.Zero(t, l1.calls().sets)
					require.Zero(t, l2.calls().sets)
				}
				require.EqualValues(t, 2, c.Stats().NotFound)
				require.Zero(t, c.Stats().NegativeHits)
			})
		})
	}
}

// With NegativeTTL, a loader's ErrNotFound is remembered in both layers for
// NegativeTTL: later calls, in this process or another sharing L2, get
// ErrNotFound without loading, and Get sees a miss.
func TestGetOrLoadRemembersNotFound(t *testing.T) {
	const negativeTTL = 30 * time.Second
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		off := &loadOffload{}
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{NegativeTTL: negativeTTL, Offload: off.offload()})
		loader := countLoads(func(context.Context, int) (string, error) {
			return "", fmt.Errorf("user 7: %w", tiercache.ErrNotFound)
		})
		start := time.Now()
		negative := tiercache.CacheValue[string]{Negative: true, Expire: start.Add(negativeTTL)}

		_, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.ErrorIs(t, err, tiercache.ErrNotFound)
		got, ok := l1.peek("k")
		require.True(t, ok)
		require.Equal(t, negative, got, "L1 remembers the absence")
		_, ok = l2.peek("k")
		require.False(t, ok, "L2 waits for the Offload")
		require.Equal(t, []string{tiercache.OffloadKindWriteL2}, off.kindsGiven())
		off.run()
		got, ok = l2.peek("k")
		require.True(t, ok)
		require.Equal(t, negative, got, "L2 remembers the absence")

		_, err = c.GetOrLoad(context.Background(), "k", loader.load)
		require.ErrorIs(t, err, tiercache.ErrNotFound)
		require.Equal(t, 1, loader.n(), "the absence is not loaded again")
		require.EqualValues(t, 1, c.Stats().NegativeHits)

		v, found, err := c.Get(context.Background(), "k")
		require.NoError(t, err)
		require.False(t, found)
		require.Empty(t, v)

		// Another process, its own L1, the same L2.
		other := newLoadTestCache(t, newFakeBackend(), l2, &tiercache.Options[string]{NegativeTTL: negativeTTL})
		otherLoader := countLoads(func(context.Context, int) (string, error) { return "v", nil })
		_, err = other.GetOrLoad(context.Background(), "k", otherLoader.load)
		require.ErrorIs(t, err, tiercache.ErrNotFound)
		require.Zero(t, otherLoader.n(), "the absence remembered in L2 is shared")
		require.EqualValues(t, 1, other.Stats().NegativeHits)

		time.Sleep(negativeTTL)
		v, err = c.GetOrLoad(context.Background(), "k", otherLoader.load)
		require.NoError(t, err)
		require.Equal(t, "v", v, "the absence is forgotten after NegativeTTL")
		off.run()
	})
}

// A stale value is returned at once, however many callers see it, and one
// refresh, handed to the Offload as OffloadKindRefresh, rewrites both
// layers.
func TestGetOrLoadServesStaleAndRefreshesOnce(t *testing.T) {
	const (
		callers    = 100
		staleAfter = time.Minute
		ttl        = time.Hour
	)
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		off := &loadOffload{}
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{
			ReadPolicy: lp.policy, Offload: off.offload(), StaleAfter: staleAfter, DefaultTTL: ttl,
		})
		start := time.Now()
		old := tiercache.CacheValue[string]{Data: "old", Stale: start.Add(-time.Second), Expire: start.Add(ttl)}
		l1.put("k", old)
		l2.put("k", old)
		loader := countLoads(func(context.Context, int) (string, error) {
			time.Sleep(time.Second)
			return "new", nil
		})

		var results []<-chan loadResult
		for range callers {
			results = append(results, goGetOrLoad(t, context.Background(), c, "k", loader.load))
		}
		synctest.Wait()
		for _, ch := range results {
			r := loadResultNow(t, ch)
			require.NoError(t, r.err)
			require.Equal(t, "old", r.v)
			require.Equal(t, start, r.at, "served at once")
		}
		require.EqualValues(t, callers, c.Stats().StaleServed)
		require.Equal(t, 1, off.count(tiercache.OffloadKindRefresh), "one refresh for every caller")
		require.Zero(t, loader.n(), "the refresh is background work")

		off.run()
		require.Equal(t, 1, loader.n())
		require.EqualValues(t, 1, c.Stats().Refreshes)
		refreshed := start.Add(time.Second)
		requireLoadHolds(t, l1, "k", "new", refreshed.Add(staleAfter), refreshed.Add(ttl))
		requireLoadHolds(t, l2, "k", "new", refreshed.Add(staleAfter), refreshed.Add(ttl))
	})
}

// A caller that finds the value stale while its refresh runs is served at
// once too, and starts no second refresh.
func TestGetOrLoadServesStaleWhileRefreshRuns(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		off := &loadOffload{}
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{
			ReadPolicy: lp.policy, Offload: off.offload(), StaleAfter: time.Minute, DefaultTTL: time.Hour,
		})
		start := time.Now()
		old := tiercache.CacheValue[string]{Data: "old", Stale: start.Add(-time.Second), Expire: start.Add(time.Hour)}
		l1.put("k", old)
		l2.put("k", old)
		loader := countLoads(func(context.Context, int) (string, error) {
			time.Sleep(time.Second)
			return "new", nil
		})

		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "old", v)
		synctest.Wait()
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			off.run()
		}()
		synctest.Wait()
		require.Equal(t, 1, loader.n(), "the refresh is loading")

		v, err = c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "old", v)
		require.Equal(t, start, time.Now(), "served at once, not after the refresh's load")

		<-ran
		off.run()
		require.Equal(t, 1, loader.n(), "no second refresh")
		s := c.Stats()
		require.EqualValues(t, 2, s.StaleServed)
		require.EqualValues(t, 1, s.Refreshes)
	})
}

// A stale value is refreshed even when L2 is slower than the Offload is to
// start the refresh: an L2 read of the key still running is not a load in
// flight. The held Offload starts the refresh while the L2 read of the
// GetOrLoad that served the stale value still runs.
func TestGetOrLoadRefreshesStaleValueWhileL2IsSlow(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		off := &loadOffload{}
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{
			ReadPolicy: lp.policy, Offload: off.offload(), StaleAfter: time.Minute, DefaultTTL: time.Hour,
		})
		start := time.Now()
		old := tiercache.CacheValue[string]{Data: "old", Stale: start.Add(-time.Second), Expire: start.Add(time.Hour)}
		l1.put("k", old)
		l2.put("k", old)
		l2.configure(func(b *fakeBackend) { b.delay = 5 * time.Millisecond })
		loader := countLoads(func(context.Context, int) (string, error) { return "new", nil })

		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "old", v)
		synctest.Wait()
		require.Equal(t, 1, off.count(tiercache.OffloadKindRefresh))
		off.runKind(tiercache.OffloadKindRefresh)
		time.Sleep(time.Second)
		off.run()
		synctest.Wait()
		require.Equal(t, 1, loader.n(), "the stale value is refreshed")
		require.EqualValues(t, 1, c.Stats().Refreshes)
		got, ok := l1.peek("k")
		require.True(t, ok)
		require.Equal(t, "new", got.Data)
	})
}

// No refresh starts while a load of the key is in flight.
func TestGetOrLoadNoRefreshWhileLoadInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{StaleAfter: time.Minute})
		gate, open := loadGate(t)
		loader := countLoads(func(_ context.Context, call int) (string, error) {
			if call > 1 {
				return "refreshed", nil
			}
			<-gate
			return "loaded", nil
		})

		loading := goGetOrLoad(t, context.Background(), c, "k", loader.load)
		synctest.Wait()
		require.Equal(t, 1, loader.n())

		// A stale copy shows up in L1 while the load runs.
		l1.put("k", staleValue("old"))
		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "old", v)
		synctest.Wait()
		require.EqualValues(t, 1, c.Stats().StaleServed)
		require.Equal(t, 1, loader.n(), "no refresh while the load is in flight")
		require.Zero(t, c.Stats().Refreshes)

		open()
		r := awaitLoad(t, loading)
		require.NoError(t, r.err)
		require.Equal(t, "loaded", r.v)
		synctest.Wait()
		require.Equal(t, 1, loader.n())
		got, _ := l1.peek("k")
		require.Equal(t, "loaded", got.Data)
	})
}

// A refresh whose loader says the key is gone removes it from both layers.
func TestGetOrLoadRefreshOfVanishedKeyEvicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{StaleAfter: time.Minute})
		now := time.Now()
		old := tiercache.CacheValue[string]{Data: "old", Stale: now.Add(-time.Second), Expire: now.Add(time.Hour)}
		l1.put("k", old)
		l2.put("k", old)
		loader := countLoads(func(context.Context, int) (string, error) { return "", tiercache.ErrNotFound })

		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "old", v)
		synctest.Wait()
		require.Equal(t, 1, loader.n())
		_, ok := l1.peek("k")
		require.False(t, ok, "gone from L1")
		_, ok = l2.peek("k")
		require.False(t, ok, "gone from L2")
	})
}

// Loaded values live DefaultTTL; their L1 copy at most L1MaxTTL.
func TestGetOrLoadTTLs(t *testing.T) {
	tests := []struct {
		name              string
		defaultTTL, l1Max time.Duration
		wantL1, wantL2    time.Duration // from the load; 0: never expires
	}{
		{name: "no TTL"},
		{name: "DefaultTTL", defaultTTL: time.Hour, wantL1: time.Hour, wantL2: time.Hour},
		{name: "L1MaxTTL caps DefaultTTL", defaultTTL: time.Hour, l1Max: time.Minute, wantL1: time.Minute, wantL2: time.Hour},
		{name: "L1MaxTTL above DefaultTTL", defaultTTL: time.Minute, l1Max: time.Hour, wantL1: time.Minute, wantL2: time.Minute},
		{name: "L1MaxTTL caps no expiry", l1Max: time.Minute, wantL1: time.Minute},
	}
	at := func(start time.Time, d time.Duration) time.Time {
		if d == 0 {
			return time.Time{}
		}
		return start.Add(d)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{DefaultTTL: tt.defaultTTL, L1MaxTTL: tt.l1Max})
				loader := countLoads(func(context.Context, int) (string, error) { return "v", nil })
				start := time.Now()

				v, err := c.GetOrLoad(context.Background(), "k", loader.load)
				require.NoError(t, err)
				require.Equal(t, "v", v)
				synctest.Wait()
				requireLoadHolds(t, l1, "k", "v", time.Time{}, at(start, tt.wantL1), "L1")
				requireLoadHolds(t, l2, "k", "v", time.Time{}, at(start, tt.wantL2), "L2")
			})
		})
	}
}

// A load that finishes after a Set or Delete of its key does not undo it in
// either layer; its waiters still get the loaded value.
func TestGetOrLoadDoesNotOverwriteNewerWrite(t *testing.T) {
	tests := []struct {
		name  string
		write func(c *tiercache.Cache[string]) error
		want  string // "" for no value
	}{
		{name: "Set", write: func(c *tiercache.Cache[string]) error { return c.Set(context.Background(), "k", "set", 0) }, want: "set"},
		{name: "Delete", write: func(c *tiercache.Cache[string]) error { return c.Delete(context.Background(), "k") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := newLoadTestCache(t, l1, l2, nil)
				gate, open := loadGate(t)
				loader := countLoads(func(context.Context, int) (string, error) {
					<-gate
					return "loaded", nil
				})

				loading := goGetOrLoad(t, context.Background(), c, "k", loader.load)
				synctest.Wait()
				require.Equal(t, 1, loader.n())
				require.NoError(t, tt.write(c))
				open()
				r := awaitLoad(t, loading)
				require.NoError(t, r.err)
				require.Equal(t, "loaded", r.v, "the waiters get the loaded value")
				synctest.Wait()

				for _, b := range []*fakeBackend{l1, l2} {
					got, ok := b.peek("k")
					if tt.want == "" {
						require.False(t, ok, "the load did not write after the %s", tt.name)
						continue
					}
					require.True(t, ok)
					require.Equal(t, tt.want, got.Data, "the load did not overwrite the %s", tt.name)
				}
			})
		})
	}
}

// A Set landing after a load wrote L1 but before the load's L2 write ran
// is not undone in L2 by that write.
func TestGetOrLoadL2WriteDoesNotOverwriteNewerSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		off := &loadOffload{}
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{Offload: off.offload()})
		loader := countLoads(func(context.Context, int) (string, error) { return "loaded", nil })

		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "loaded", v)
		require.Equal(t, []string{tiercache.OffloadKindWriteL2}, off.kindsGiven(), "the L2 write is held")
		require.NoError(t, c.Set(context.Background(), "k", "set", 0))
		off.run()

		requireLoadHolds(t, l1, "k", "set", time.Time{}, time.Time{})
		requireLoadHolds(t, l2, "k", "set", time.Time{}, time.Time{}, "the late L2 write of the load did not overwrite the Set")
	})
}

// Bad input is refused before anything is called.
func TestGetOrLoadRejectsBadInput(t *testing.T) {
	load := func(context.Context) (string, error) { panic("the loader must not be called") }
	tests := []struct {
		name  string
		key   string
		load  func(context.Context) (string, error)
		close bool
		check func(t *testing.T, err error)
	}{
		{name: "nil load", key: "k", check: func(t *testing.T, err error) {
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "tiercache:"), err.Error())
		}},
		{name: "empty key", load: load, check: func(t *testing.T, err error) {
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "tiercache:"), err.Error())
		}},
		{name: "closed", key: "k", load: load, close: true, check: func(t *testing.T, err error) {
			require.ErrorIs(t, err, tiercache.ErrClosed)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := newLoadTestCache(t, l1, l2, nil)
				if tt.close {
					require.NoError(t, c.Close(context.Background()))
				}
				v, err := c.GetOrLoad(context.Background(), tt.key, tt.load)
				tt.check(t, err)
				require.Empty(t, v)
				synctest.Wait()
				require.Equal(t, backendCalls{}, l1.calls())
				require.Equal(t, backendCalls{}, l2.calls())
				require.Equal(t, tiercache.Stats{}, c.Stats())
			})
		})
	}
}

// Close waits for a load in flight, whose caller gets the value.
func TestGetOrLoadCloseWaitsForLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, nil)
		loader := countLoads(func(context.Context, int) (string, error) {
			time.Sleep(time.Second)
			return "v", nil
		})
		start := time.Now()

		loading := goGetOrLoad(t, context.Background(), c, "k", loader.load)
		synctest.Wait()
		require.NoError(t, c.Close(context.Background()))
		require.Equal(t, time.Second, time.Since(start), "Close waited for the load")
		synctest.Wait()
		r := loadResultNow(t, loading)
		require.NoError(t, r.err)
		require.Equal(t, "v", r.v)
	})
}

// When Close's ctx ends before a load in flight, Close cancels the load's
// ctx and returns the deadline error.
func TestGetOrLoadCloseDeadlineCancelsLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, nil)
		loader := countLoads(func(ctx context.Context, _ int) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		})
		start := time.Now()

		loading := goGetOrLoad(t, context.Background(), c, "k", loader.load)
		synctest.Wait()
		require.Equal(t, 1, loader.n())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		err := c.Close(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 10*time.Millisecond, time.Since(start))
		synctest.Wait()
		require.ErrorIs(t, loader.ctx(1).Err(), context.Canceled, "Close cancelled the load")
		r := loadResultNow(t, loading)
		require.ErrorIs(t, r.err, context.Canceled)
	})
}

// No flight outlives its callers: after many keys were loaded, failed,
// found missing or abandoned (during the load or the L2 read), the next
// caller of each key, with both layers cleared, reads L2 and loads afresh.
func TestGetOrLoadLeavesNoFlightBehind(t *testing.T) {
	const keys = 200
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		l2Gate, openL2 := loadGate(t)
		l2Abandoned := func(i int) bool { return i%5 == 4 }
		loaders := make([]*loadCounter, keys)
		for i := range loaders {
			loaders[i] = countLoads(func(ctx context.Context, call int) (string, error) {
				if call > 1 || l2Abandoned(i) { // the L2-abandoned keys load only afterwards
					return fmt.Sprint("again-", i), nil
				}
				switch i % 5 {
				case 1:
					return "", errOrigin
				case 2:
					return "", tiercache.ErrNotFound
				case 3: // abandoned during the load
					<-ctx.Done()
					return "", ctx.Err()
				}
				return fmt.Sprint("first-", i), nil
			})
		}
		key := func(i int) string { return fmt.Sprint("key-", i) }

		// Callers of the L2-abandoned keys wait on a gated L2 and give up;
		// the rest load.
		l2.configure(func(b *fakeBackend) { b.gate = l2Gate })
		var cancels []context.CancelFunc
		results := make([]<-chan loadResult, keys)
		for i := range keys {
			if l2Abandoned(i) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				cancels = append(cancels, cancel)
				results[i] = goGetOrLoad(t, ctx, c, key(i), loaders[i].load)
			}
		}
		synctest.Wait()
		for _, cancel := range cancels {
			cancel()
		}
		synctest.Wait()
		openL2()
		for i := range keys {
			if l2Abandoned(i) {
				continue
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%5 == 3 {
				cancels = append(cancels, cancel)
			}
			results[i] = goGetOrLoad(t, ctx, c, key(i), loaders[i].load)
		}
		synctest.Wait()
		for _, cancel := range cancels {
			cancel()
		}
		for i, ch := range results {
			r := awaitLoad(t, ch)
			switch i % 5 {
			case 0:
				require.NoError(t, r.err)
			case 1:
				require.ErrorIs(t, r.err, errOrigin)
			case 2:
				require.ErrorIs(t, r.err, tiercache.ErrNotFound)
			default:
				require.ErrorIs(t, r.err, context.Canceled)
			}
		}
		synctest.Wait()
		clearBackend(l1)
		clearBackend(l2)
		l2Gets := l2.calls().gets

		for i := range keys {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a flight left behind would hold the caller
			defer cancel()
			v, err := c.GetOrLoad(ctx, key(i), loaders[i].load)
			require.NoError(t, err, "key %d", i)
			require.Equal(t, fmt.Sprint("again-", i), v)
			wantLoads := 2
			if l2Abandoned(i) {
				wantLoads = 1
			}
			require.Equal(t, wantLoads, loaders[i].n(), "key %d loads afresh", i)
		}
		require.Equal(t, l2Gets+keys, l2.calls().gets, "every key read L2 afresh")
	})
}

// A flight whose value is still on its way to L2 stays joinable: a caller
// that missed L1 takes its value, instead of reading L2 before the value
// is there and loading it again.
func TestGetOrLoadJoinsFlightUntilItsValueIsInL2(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		c, l1, l2, held := heldWritesCache(t, lp)
		loads := 0
		load := func(context.Context) (string, error) { loads++; return "v", nil }
		v, err := c.GetOrLoad(context.Background(), "k", load)
		require.NoError(t, err)
		require.Equal(t, "v", v)
		require.NoError(t, l1.Delete(context.Background(), "k")) // as if this caller had read L1 before the store
		gets := l2.calls().gets
		v, err = c.GetOrLoad(context.Background(), "k", load)
		require.NoError(t, err)
		require.Equal(t, "v", v)
		require.Equal(t, 1, loads, "no second load")
		require.Equal(t, gets, l2.calls().gets, "no L2 read before the value is there")
		held.run() // the L2 write lands; the flight leaves
		require.NoError(t, l1.Delete(context.Background(), "k"))
		v, err = c.GetOrLoad(context.Background(), "k", load)
		require.NoError(t, err)
		require.Equal(t, "v", v)
		require.Equal(t, 1, loads, "now from L2")
		require.Equal(t, gets+1, l2.calls().gets)
		held.run()
	})
}

// A flight waiting for its value to reach L2 is joined only while that
// value is still good: once it has expired, or the key has been written,
// deleted or invalidated since, a caller that misses L1 reads or loads the
// key afresh.
func TestGetOrLoadLeavesAFlightWhoseValueIsNoLongerGood(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  tiercache.Options[string]
		first func(ctx context.Context) (string, error)
		// after runs between the first GetOrLoad and the second.
		after func(t *testing.T, c *tiercache.Cache[string])
		want  string // what the second GetOrLoad returns
	}{
		{"value expired", tiercache.Options[string]{DefaultTTL: time.Second},
			func(context.Context) (string, error) { return "first", nil },
			func(*testing.T, *tiercache.Cache[string]) { time.Sleep(time.Minute) }, "second"},
		{"absence expired", tiercache.Options[string]{NegativeTTL: time.Second},
			func(context.Context) (string, error) { return "", tiercache.ErrNotFound },
			func(*testing.T, *tiercache.Cache[string]) { time.Sleep(time.Minute) }, "second"},
		{"key deleted", tiercache.Options[string]{},
			func(context.Context) (string, error) { return "first", nil },
			func(t *testing.T, c *tiercache.Cache[string]) {
				require.NoError(t, c.Delete(context.Background(), "k"))
			}, "second"},
		{"key set", tiercache.Options[string]{},
			func(context.Context) (string, error) { return "first", nil },
			func(t *testing.T, c *tiercache.Cache[string]) {
				require.NoError(t, c.Set(context.Background(), "k", "set", 0))
			}, "set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				off := &heldOffload{} // holds the L2 write of the first load
				opts := tc.opts
				opts.ReadPolicy, opts.Offload = lp.policy, off
				c := newLoadTestCache(t, l1, l2, &opts)
				t.Cleanup(func() { off.run() })
				_, _ = c.GetOrLoad(context.Background(), "k", tc.first)
				require.Equal(t, []string{tiercache.OffloadKindWriteL2}, off.kinds)
				tc.after(t, c)
				_ = l1.Delete(context.Background(), "k") // L1's copy has expired or gone too
				v, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "second", nil })
				require.NoError(t, err)
				require.Equal(t, tc.want, v, "not the first flight's value")
			})
		})
	}
}

// A value that has expired is not served by a flight still waiting for its
// L2 write even with the default Offload, when that write is slow.
func TestGetOrLoadLeavesAFlightWhoseValueExpiredDuringASlowL2Write(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1 := newFakeBackend()
		l2 := slowSets(5 * time.Second)
		c := newLoadTestCacheOver(t, l1, l2, &tiercache.Options[string]{NegativeTTL: time.Second, L2Timeout: 10 * time.Second})
		loader := countLoads(func(_ context.Context, call int) (string, error) {
			if call == 1 {
				return "", tiercache.ErrNotFound
			}
			return "exists now", nil
		})
		_, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.ErrorIs(t, err, tiercache.ErrNotFound)
		time.Sleep(3 * time.Second) // the absence expired 2 s ago; its L2 write is still under way
		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "exists now", v)
		require.Equal(t, 2, loader.n())
	})
}

// A refresh that takes a key over from a flight still reading L2 loads the
// key once: when that read misses, the flight answers with the refresh's
// load instead of loading the key beside it.
func TestGetOrLoadNoRefreshWhileL2ReadInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, l1, openL2 := staleAfterMinuteHeldL2(t)
		var inflight, peak atomic.Int32
		loader := countLoads(func(_ context.Context, call int) (string, error) {
			n := inflight.Add(1)
			defer inflight.Add(-1)
			if n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(time.Second)
			return fmt.Sprint("v", call), nil
		})

		reading := goGetOrLoad(t, context.Background(), c, "k", loader.load) // its L2 read waits
		synctest.Wait()
		// A stale copy shows up in L1 meanwhile; a caller is served it.
		l1.put("k", staleValue("old"))
		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "old", v)
		synctest.Wait()
		openL2() // the flight's L2 read misses: it answers with the refresh's load
		r := awaitLoad(t, reading)
		require.NoError(t, r.err)
		require.Equal(t, "v1", r.v)
		synctest.Wait()
		require.Equal(t, 1, loader.n(), "one load of the key")
		require.EqualValues(t, 1, peak.Load())
	})
}

// The load of a key runs with the loader of a caller still waiting for it:
// when the caller that started the flight has left while L2 was being
// read, a caller that stayed loads with its own loader, which may use what
// that caller owns.
func TestGetOrLoadUsesTheLoaderOfACallerStillWaiting(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy})
		l2Gate, openL2 := loadGate(t)
		l2.configure(func(b *fakeBackend) { b.gate = l2Gate })
		var used []string
		var mu sync.Mutex
		loaderOf := func(who string) func(context.Context) (string, error) {
			return func(context.Context) (string, error) {
				mu.Lock()
				used = append(used, who)
				mu.Unlock()
				return "from " + who, nil
			}
		}

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		first := goGetOrLoad(t, ctx, c, "k", loaderOf("first"))
		synctest.Wait()
		second := goGetOrLoad(t, context.Background(), c, "k", loaderOf("second"))
		synctest.Wait()
		cancel()
		synctest.Wait()
		require.ErrorIs(t, loadResultNow(t, first).err, context.Canceled)

		openL2()
		r := awaitLoad(t, second)
		require.NoError(t, r.err)
		require.Equal(t, "from second", r.v)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []string{"second"}, used)
	})
}

// readThenHold is an L2 whose Gets read the store, then wait for hold
// before answering: what a read returns may be overtaken by a write that
// lands while it is on its way back.
type readThenHold struct {
	*fakeBackend
	entered chan struct{}
	hold    chan struct{}
}

func (b *readThenHold) Get(ctx context.Context, key string) (*tiercache.CacheValue[string], error) {
	v, err := b.fakeBackend.Get(ctx, key)
	b.entered <- struct{}{}
	<-b.hold
	return v, err
}

// newOvertakenCache returns a cache with a fake L1 and a readThenHold L2
// whose Gets wait for open, closed when t ends.
func newOvertakenCache(t *testing.T, lp loadPolicy) (*tiercache.Cache[string], *fakeBackend, *readThenHold, func()) {
	t.Helper()
	l1 := newFakeBackend()
	hold, open := loadGate(t)
	l2 := &readThenHold{fakeBackend: newFakeBackend(), entered: make(chan struct{}, 1), hold: hold}
	return newLoadTestCacheOver(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy}), l1, l2, open
}

// A Set that lands after a load's L2 read missed, and before the load
// began, is newer than what the load was started on: the loaded value
// overwrites it in neither layer.
func TestGetOrLoadDoesNotOverwriteASetThatLandedAfterItsL2Read(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		c, l1, l2, open := newOvertakenCache(t, lp)
		loader := countLoads(func(context.Context, int) (string, error) { return "origin", nil })

		got := goGetOrLoad(t, context.Background(), c, "k", loader.load)
		<-l2.entered // L2 has been read: a miss, on its way back
		require.NoError(t, c.Set(context.Background(), "k", "set", 0))
		open()
		r := awaitLoad(t, got)
		require.NoError(t, r.err)
		synctest.Wait()

		requireLoadHolds(t, l1, "k", "set", time.Time{}, time.Time{}, "the Set stays in L1")
		requireLoadHolds(t, l2.fakeBackend, "k", "set", time.Time{}, time.Time{}, "the Set stays in L2")
	})
}

// The same for a batch: a Set that lands after the batch's L2 read missed
// its key is not overwritten by the batch's load.
func TestGetOrLoadManyDoesNotOverwriteASetThatLandedAfterItsL2Read(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		c, l1, l2, open := newOvertakenCache(t, lp)

		type result struct {
			vals map[string]string
			err  error
		}
		got := make(chan result, 1)
		go func() {
			vals, err := c.GetOrLoadMany(context.Background(), []string{"k"}, func(_ context.Context, keys []string) (map[string]string, error) {
				return map[string]string{"k": "origin"}, nil
			})
			got <- result{vals, err}
		}()
		<-l2.entered
		require.NoError(t, c.Set(context.Background(), "k", "set", 0))
		open()
		r := <-got
		require.NoError(t, r.err)
		synctest.Wait()

		requireLoadHolds(t, l1, "k", "set", time.Time{}, time.Time{}, "the Set stays in L1")
		requireLoadHolds(t, l2.fakeBackend, "k", "set", time.Time{}, time.Time{}, "the Set stays in L2")
	})
}

// staleAfterMinuteHeldL2 returns a cache whose values go stale after a
// minute and live an hour, with its L1, over an L2 whose every operation
// waits until openL2 is called. Call it in a bubble.
func staleAfterMinuteHeldL2(t *testing.T) (c *tiercache.Cache[string], l1 *fakeBackend, openL2 func()) {
	t.Helper()
	l1, l2 := newFakeBackend(), newFakeBackend()
	l2Gate, openL2 := loadGate(t)
	l2.configure(func(b *fakeBackend) { b.gate = l2Gate })
	c = newLoadTestCache(t, l1, l2, &tiercache.Options[string]{StaleAfter: time.Minute, DefaultTTL: time.Hour})
	return c, l1, openL2
}

// heldWritesCache returns a cache under lp, its layers, and the Offload
// that holds its background work (the L2 writes of loaded values among it)
// until held.run(), or the end of the test.
func heldWritesCache(t *testing.T, lp loadPolicy) (c *tiercache.Cache[string], l1, l2 *fakeBackend, held *heldOffload) {
	t.Helper()
	l1, l2 = newFakeBackend(), newFakeBackend()
	held = &heldOffload{}
	c = newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy, Offload: held})
	t.Cleanup(func() { held.run() })
	return c, l1, l2, held
}

// deletingBeforeAnswer returns a cache under lp whose Offload, handed the
// first L2 write of a loaded value, first deletes key (so that the Delete
// lands between the load's L1 store and its answer) and then holds the
// write until the test ends; *deleted says whether it has.
func deletingBeforeAnswer(t *testing.T, lp loadPolicy, key string) (c *tiercache.Cache[string], deleted *bool) {
	t.Helper()
	held := &heldOffload{}
	deleted = new(bool)
	off := tiercache.OffloadFunc(func(kind string, task func(context.Context)) bool {
		if kind == tiercache.OffloadKindWriteL2 && !*deleted {
			*deleted = true
			require.NoError(t, c.Delete(context.Background(), key))
		}
		return held.Go(kind, task)
	})
	c = newLoadTestCache(t, newFakeBackend(), newFakeBackend(), &tiercache.Options[string]{ReadPolicy: lp.policy, Offload: off})
	t.Cleanup(func() { held.run() })
	return c, deleted
}

// A Delete that lands after a load has put its value in L1 but before the
// load has answered its flight is newer than the loaded value: a caller
// that misses L1 afterwards does not take that value from the flight, which
// is still waiting for its L2 write.
func TestGetOrLoadDeleteBeforeAnswerIsNotUndone(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		c, deleted := deletingBeforeAnswer(t, lp, "k")
		v, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "first", nil })
		require.NoError(t, err)
		require.Equal(t, "first", v)
		require.True(t, *deleted)
		v, err = c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "second", nil })
		require.NoError(t, err)
		require.Equal(t, "second", v, "the deleted value is not served again")
	})
}

// A GetOrLoad that finds a value in L1 returns it, even when its L2 read
// joined another caller's load, which failed: errors only when nothing
// could answer.
func TestGetOrLoadL1HitBesideAFailedLoadIsNotAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: tiercache.ParallelReadPolicy[string]{}})
		gate, open := loadGate(t)
		failing := goGetOrLoad(t, context.Background(), c, "k", func(ctx context.Context) (string, error) {
			<-gate
			return "", errOrigin
		})
		synctest.Wait() // its load is under way
		l1.put("k", tiercache.CacheValue[string]{Data: "in L1"})
		hit := goGetOrLoad(t, context.Background(), c, "k", func(context.Context) (string, error) { return "loaded", nil })
		synctest.Wait()
		open()
		require.ErrorIs(t, awaitLoad(t, failing).err, errOrigin)
		r := awaitLoad(t, hit)
		require.NoError(t, r.err)
		require.Equal(t, "in L1", r.v)
	})
}

// Under ParallelReadPolicy, an L1 value that expires while the read waits
// for a slow L2 is not served: Get misses, and GetOrLoad loads the key.
func TestGetOrLoadParallelDoesNotServeL1ValueExpiredWhileL2WasRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: tiercache.ParallelReadPolicy[string]{}})
		l2.configure(func(b *fakeBackend) { b.delay = 2 * time.Second })
		expiring := func() tiercache.CacheValue[string] {
			return tiercache.CacheValue[string]{Data: "old", Expire: time.Now().Add(time.Second)}
		}

		l1.put("k", expiring())
		v, ok, err := c.Get(context.Background(), "k")
		require.NoError(t, err)
		require.False(t, ok, "Get served %q a second past its Expire", v)

		l1.put("k", expiring())
		loader := countLoads(func(context.Context, int) (string, error) { return "new", nil })
		v, err = c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "new", v, "GetOrLoad served the value a second past its Expire")
		require.Equal(t, 1, loader.n())
	})
}
