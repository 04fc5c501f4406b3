package tiercache_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// recorder is a hand-written Observer that keeps every event, with the
// value of traceKey in the ctx it came with. As an OpObserver it puts
// "op:<name>" under traceKey.
type recorder struct {
	mu     sync.Mutex
	events []observed
	starts []tiercache.Op
}

type observed struct {
	tiercache.Event
	trace any
}

type traceKey struct{}

func (r *recorder) Observe(ctx context.Context, e tiercache.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, observed{e, ctx.Value(traceKey{})})
}

func (r *recorder) StartOp(ctx context.Context, op tiercache.Op, cache string) context.Context {
	r.mu.Lock()
	r.starts = append(r.starts, op)
	r.mu.Unlock()
	return context.WithValue(ctx, traceKey{}, "op:"+op.String())
}

var _ tiercache.OpObserver = (*recorder)(nil)

// of returns the events of kind k.
func (r *recorder) of(k tiercache.EventKind) []observed {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []observed
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events, r.starts = nil, nil
}

func observedCache(t *testing.T, l1, l2 tiercache.Backend[string], opts tiercache.Options[string]) (*tiercache.Cache[string], *recorder) {
	t.Helper()
	r := &recorder{}
	opts.Observer, opts.Name = r, "products"
	if opts.Offload == nil {
		opts.Offload = &inlineOffload{}
	}
	return openCache(t, l1, l2, &opts), r
}

func TestObserverReads(t *testing.T) {
	ctx := context.Background()
	l1, l2 := newFakeBackend(), newFakeBackend()
	c, r := observedCache(t, l1, l2, tiercache.Options[string]{})
	l1.put("hot", tiercache.CacheValue[string]{Data: "1"})
	l2.put("warm", tiercache.CacheValue[string]{Data: "2"})

	_, _, err := c.Get(ctx, "hot")
	require.NoError(t, err)
	reads := r.of(tiercache.EventRead)
	require.Len(t, reads, 1)
	require.Equal(t, tiercache.L1, reads[0].Layer)
	require.Equal(t, tiercache.StatusHit, reads[0].Status)
	require.Equal(t, "products", reads[0].Cache)
	require.Equal(t, "op:get", reads[0].trace, "events carry the ctx StartOp returned")
	done := r.of(tiercache.EventOpDone)
	require.Len(t, done, 1)
	require.Equal(t, tiercache.OpGet, done[0].Op)
	require.Equal(t, tiercache.StatusHit, done[0].Status)
	require.Equal(t, tiercache.L1, done[0].Layer)

	r.reset()
	_, _, err = c.Get(ctx, "warm")
	require.NoError(t, err)
	reads = r.of(tiercache.EventRead)
	require.Len(t, reads, 2)
	require.Equal(t, tiercache.StatusMiss, reads[0].Status)
	require.Equal(t, tiercache.L2, reads[1].Layer)
	require.Equal(t, tiercache.StatusHit, reads[1].Status)
	require.Len(t, r.of(tiercache.EventRefill), 1)
	require.Equal(t, tiercache.L2, r.of(tiercache.EventOpDone)[0].Layer)

	r.reset()
	_, _, err = c.Get(ctx, "cold")
	require.NoError(t, err)
	done = r.of(tiercache.EventOpDone)
	require.Equal(t, tiercache.StatusMiss, done[0].Status)
	require.Equal(t, tiercache.NoLayer, done[0].Layer)
}

func TestObserverLoads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.WithValue(context.Background(), traceKey{}, "caller")
		c, r := observedCache(t, newFakeBackend(), newFakeBackend(), tiercache.Options[string]{})
		gate := make(chan struct{})
		load := func(context.Context) (string, error) { <-gate; return "v", nil }
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				_, err := c.GetOrLoad(ctx, "k", load)
				require.NoError(t, err)
			})
		}
		synctest.Wait()
		time.Sleep(3 * time.Millisecond)
		close(gate)
		wg.Wait()
		loads := r.of(tiercache.EventLoad)
		require.Len(t, loads, 1)
		require.Equal(t, 5, loads[0].Waiters)
		require.Equal(t, 1, loads[0].Keys)
		require.Equal(t, 3*time.Millisecond, loads[0].Duration)
		require.NoError(t, loads[0].Err)
		require.Equal(t, "op:get_or_load", loads[0].trace, "the load carries the first caller's values")
		for _, d := range r.of(tiercache.EventOpDone) {
			require.Equal(t, tiercache.StatusMiss, d.Status, "loaded, not served by a layer")
		}

		r.reset()
		_, err := c.GetOrLoad(ctx, "gone", func(context.Context) (string, error) { return "", tiercache.ErrNotFound })
		require.ErrorIs(t, err, tiercache.ErrNotFound)
		require.ErrorIs(t, r.of(tiercache.EventLoad)[0].Err, tiercache.ErrNotFound)
		require.Equal(t, tiercache.StatusMiss, r.of(tiercache.EventOpDone)[0].Status, "no such thing is a miss")
		require.ErrorIs(t, r.of(tiercache.EventOpDone)[0].Err, tiercache.ErrNotFound)
	})
}

// A GetOrLoad that joins another caller's load reports what it got as
// loaded (NoLayer, a miss), under every policy, not as an L2 hit.
func TestObserverJoinedLoadIsNoL2Hit(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		var mu sync.Mutex
		var done []tiercache.Event
		obs := tiercache.ObserverFunc(func(_ context.Context, e tiercache.Event) {
			if e.Kind == tiercache.EventOpDone {
				mu.Lock()
				done = append(done, e)
				mu.Unlock()
			}
		})
		c := newLoadTestCache(t, newFakeBackend(), newFakeBackend(), &tiercache.Options[string]{ReadPolicy: lp.policy, Observer: obs})
		gate, open := loadGate(t)
		loader := countLoads(func(context.Context, int) (string, error) { <-gate; return "v", nil })
		first := goGetOrLoad(t, context.Background(), c, "k", loader.load)
		synctest.Wait()
		second := goGetOrLoad(t, context.Background(), c, "k", loader.load)
		synctest.Wait()
		open()
		require.NoError(t, awaitLoad(t, first).err)
		require.NoError(t, awaitLoad(t, second).err)
		require.Equal(t, 1, loader.n())
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, done, 2)
		for _, e := range done {
			require.Equal(t, tiercache.NoLayer, e.Layer, "%+v", e)
			require.Equal(t, tiercache.StatusMiss, e.Status, "%+v", e)
		}
	})
}

func TestObserverWritesAndFailures(t *testing.T) {
	ctx := context.Background()
	l1, l2 := newFakeBackend(), newFakeBackend()
	refusing := tiercache.OffloadFunc(func(string, func(context.Context)) bool { return false })
	c, r := observedCache(t, l1, l2, tiercache.Options[string]{Offload: refusing})
	require.NoError(t, c.Set(ctx, "k", "v", 0))
	require.NoError(t, c.Delete(ctx, "k"))
	done := r.of(tiercache.EventOpDone)
	require.Equal(t, []tiercache.Op{tiercache.OpSet, tiercache.OpDelete}, []tiercache.Op{done[0].Op, done[1].Op})
	require.Equal(t, tiercache.StatusNotRun, done[0].Status, "a write reads nothing")

	l2.put("warm", tiercache.CacheValue[string]{Data: "2"})
	_, _, err := c.Get(ctx, "warm") // its refill is refused
	require.NoError(t, err)
	rej := r.of(tiercache.EventOffloadRejected)
	require.Len(t, rej, 1)
	require.Equal(t, tiercache.OffloadKindRefill, rej[0].OffloadKind)

	boom := errors.New("l2 down")
	l2.configure(func(b *fakeBackend) { b.setErr = boom })
	require.ErrorIs(t, c.Set(ctx, "k", "v", 0), boom)
	last := r.of(tiercache.EventOpDone)
	require.Equal(t, tiercache.StatusFailed, last[len(last)-1].Status)
	require.ErrorIs(t, last[len(last)-1].Err, boom)
}

func TestObserverBackgroundWriteFailure(t *testing.T) {
	ctx := context.Background()
	l1, l2 := newFakeBackend(), newFakeBackend()
	c, r := observedCache(t, l1, l2, tiercache.Options[string]{})
	boom := errors.New("l1 full")
	l1.configure(func(b *fakeBackend) { b.setErr = boom })
	l2.put("warm", tiercache.CacheValue[string]{Data: "2"})
	_, _, err := c.Get(ctx, "warm")
	require.NoError(t, err)
	failed := r.of(tiercache.EventWriteFailed)
	require.Len(t, failed, 1)
	require.Equal(t, tiercache.L1, failed[0].Layer)
	require.ErrorIs(t, failed[0].Err, boom)
}

func TestObserverInvalidationAndBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		bus := &fakeBus{}
		l2 := newFakeBackend()
		a, ra := observedCache(t, newFlushBackend(), l2, tiercache.Options[string]{Invalidator: bus})
		_, rb := observedCache(t, newFlushBackend(), l2, tiercache.Options[string]{
			Invalidator: bus,
			Breaker:     tiercache.BreakerOptions{Failures: 1, CoolDown: time.Second},
		})
		require.Len(t, ra.of(tiercache.EventSubscriptionRestored), 1)
		require.NoError(t, a.Set(ctx, "k", "v", 0))
		require.Equal(t, 1, ra.of(tiercache.EventInvalidationSent)[0].Keys)
		require.Equal(t, 1, rb.of(tiercache.EventInvalidationReceived)[0].Keys)
		bus.setDown(true)
		require.Len(t, ra.of(tiercache.EventSubscriptionLost), 1)
		bus.setDown(false)
		require.Len(t, ra.of(tiercache.EventSubscriptionRestored), 2)
	})
}

func TestObserverBreakerTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l2 := newFakeBackend()
		l2.configure(func(b *fakeBackend) { b.getErr = errors.New("down") })
		c, r := observedCache(t, newFakeBackend(), l2, tiercache.Options[string]{Breaker: tiercache.BreakerOptions{Failures: 1, CoolDown: time.Second}})
		_, _, _ = c.Get(ctx, "k")
		time.Sleep(time.Second)
		l2.configure(func(b *fakeBackend) { b.getErr = nil })
		_, _, _ = c.Get(ctx, "k")
		var got [][2]tiercache.BreakerState
		for _, e := range r.of(tiercache.EventBreakerChanged) {
			got = append(got, [2]tiercache.BreakerState{e.From, e.To})
		}
		require.Equal(t, [][2]tiercache.BreakerState{
			{tiercache.BreakerClosed, tiercache.BreakerOpen},
			{tiercache.BreakerOpen, tiercache.BreakerHalfOpen},
			{tiercache.BreakerHalfOpen, tiercache.BreakerClosed},
		}, got)
	})
}

func TestObserverRefreshAndBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c, r := observedCache(t, newFakeBackend(), newFakeBackend(), tiercache.Options[string]{StaleAfter: time.Minute})
		_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
		require.NoError(t, err)
		time.Sleep(2 * time.Minute)
		_, err = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v2", nil })
		require.NoError(t, err)
		require.Len(t, r.of(tiercache.EventRefresh), 1)

		r.reset()
		_, err = c.GetOrLoadMany(ctx, []string{"a", "b", "c"}, func(_ context.Context, keys []string) (map[string]string, error) {
			m := map[string]string{}
			for _, k := range keys {
				m[k] = k
			}
			return m, nil
		})
		require.NoError(t, err)
		loads := r.of(tiercache.EventLoad)
		require.Len(t, loads, 1)
		require.Equal(t, 3, loads[0].Keys)
		done := r.of(tiercache.EventOpDone)
		require.Equal(t, tiercache.OpGetOrLoadMany, done[0].Op)
		require.Equal(t, 3, done[0].Keys)
	})
}

func TestEventAndOpStrings(t *testing.T) {
	require.Equal(t, "read", tiercache.EventRead.String())
	require.Equal(t, "breaker-changed", tiercache.EventBreakerChanged.String())
	require.Equal(t, "EventKind(99)", tiercache.EventKind(99).String())
	require.Equal(t, "get_or_load_many", tiercache.OpGetOrLoadMany.String())
	require.Equal(t, "Op(42)", tiercache.Op(42).String())
}

// Without an Observer a read allocates nothing.
func TestNoObserverNoAllocation(t *testing.T) {
	ctx := context.Background()
	l1 := readOnlyBackend{"k": &tiercache.CacheValue[string]{Data: "v"}}
	c := openCache(t, l1, readOnlyBackend{}, nil)
	allocs := testing.AllocsPerRun(1000, func() { _, _, _ = c.Get(ctx, "k") })
	require.Zero(t, allocs)
	allocs = testing.AllocsPerRun(1000, func() {
		_, _ = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "", nil })
	})
	require.Zero(t, allocs)
}

// MultiObserver hands every event to each Observer, and lets each
// OpObserver wrap the ctx.
func TestMultiObserver(t *testing.T) {
	ctx := context.Background()
	a, b := &recorder{}, &recorder{}
	var plain []tiercache.Event
	m := tiercache.MultiObserver(a, nil, tiercache.ObserverFunc(func(_ context.Context, e tiercache.Event) { plain = append(plain, e) }), b)
	l1 := newFakeBackend()
	l1.put("k", tiercache.CacheValue[string]{Data: "v"})
	c := openCache(t, l1, newFakeBackend(), &tiercache.Options[string]{Observer: m, Name: "n"})
	_, _, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.Len(t, a.of(tiercache.EventOpDone), 1)
	require.Len(t, b.of(tiercache.EventOpDone), 1)
	require.Len(t, plain, 2, "a read and the end of the Get")
	require.Equal(t, []tiercache.Op{tiercache.OpGet}, a.starts)
	require.Equal(t, []tiercache.Op{tiercache.OpGet}, b.starts)
	require.Equal(t, "op:get", b.of(tiercache.EventOpDone)[0].trace)
}

// panickingObserver panics in Observe and, as an OpObserver, in StartOp.
type panickingObserver struct{}

func (panickingObserver) Observe(context.Context, tiercache.Event) { panic("observer bug") }
func (panickingObserver) StartOp(context.Context, tiercache.Op, string) context.Context {
	panic("observer bug")
}

// An Observer that panics cuts short neither an operation nor the
// background work of one (a load runs on a goroutine of the cache's own):
// each panic is recovered and counted, the event is lost.
func TestPanickingObserverIsContained(t *testing.T) {
	for _, tt := range []struct {
		name string
		obs  tiercache.Observer
	}{
		{"Observe", tiercache.ObserverFunc(func(context.Context, tiercache.Event) { panic("observer bug") })},
		{"StartOp and Observe", panickingObserver{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			l1, l2 := newFakeBackend(), newFakeBackend()
			c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{Observer: tt.obs})
			v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "loaded", nil })
			require.NoError(t, err)
			require.Equal(t, "loaded", v)
			require.NoError(t, c.Set(ctx, "k2", "v2", 0))
			v, ok, err := c.Get(ctx, "k2")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "v2", v)
			got, err := c.GetOrLoadMany(ctx, []string{"k", "k3"}, func(_ context.Context, keys []string) (map[string]string, error) {
				return map[string]string{"k3": "loaded3"}, nil
			})
			require.NoError(t, err)
			require.Equal(t, map[string]string{"k": "loaded", "k3": "loaded3"}, got)
			require.NoError(t, c.Delete(ctx, "k2"))
			require.NoError(t, c.Close(ctx), "the cache's background work ended")
			require.GreaterOrEqual(t, c.Stats().ObserverPanics, uint64(5), "one at least for each operation's end")
		})
	}
}
