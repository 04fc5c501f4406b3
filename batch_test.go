package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// batchCase is what GetMany and GetOrLoadMany are checked under: a read
// policy, and layers that are BatchBackends or are read key by key.
type batchCase struct {
	name   string
	policy tiercache.ReadPolicy[string]
	batch  bool // the layers are BatchBackends
}

var (
	sequentialPolicy = loadPolicy{name: "sequential", policy: tiercache.SequentialReadPolicy[string]{}}
	parallelPolicy   = loadPolicy{name: "parallel", policy: tiercache.ParallelReadPolicy[string]{}}
	raceOffload      = loadPolicy{name: "race-offload", policy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserOffload}}
	raceCancel       = loadPolicy{name: "race-cancel", policy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}}
	everyPolicy      = []loadPolicy{sequentialPolicy, parallelPolicy, raceOffload, raceCancel}
	racePolicies     = []loadPolicy{raceOffload, raceCancel}
)

func (bc batchCase) sequential() bool {
	_, ok := bc.policy.(tiercache.SequentialReadPolicy[string])
	return ok
}

// eachBatchCase runs f under every read policy, with BatchBackend layers and
// with layers read key by key, each in its own synctest bubble.
func eachBatchCase(t *testing.T, f func(t *testing.T, bc batchCase)) {
	t.Helper()
	eachBatchCaseOf(t, everyPolicy, nil, f)
}

// eachBatchCaseOf runs f under policies, with both kinds of layers, each in
// its own synctest bubble, skipping the cases named in skips (by policy,
// "parallel", by kind of layers, "per-key", or both, "parallel/per-key")
// with the reason given. It skips outside the bubble, so that the skip shows.
func eachBatchCaseOf(t *testing.T, policies []loadPolicy, skips map[string]string, f func(t *testing.T, bc batchCase)) {
	t.Helper()
	for _, lp := range policies {
		for _, batch := range []bool{true, false} {
			kind := "batch"
			if !batch {
				kind = "per-key"
			}
			bc := batchCase{name: lp.name + "/" + kind, policy: lp.policy, batch: batch}
			t.Run(bc.name, func(t *testing.T) {
				for _, name := range []string{lp.name, kind, bc.name} {
					if reason, ok := skips[name]; ok {
						t.Skip(reason)
					}
				}
				synctest.Test(t, func(t *testing.T) { f(t, bc) })
			})
		}
	}
}

// batchLayer is one layer of a cache under test: a fakeBatchBackend, or a
// perKeyBackend that is not a BatchBackend. Either way the keys of every
// read and write are recorded; the embedded fakeBackend is the store.
type batchLayer struct {
	*fakeBackend
	batch  *fakeBatchBackend // when the layer is a BatchBackend
	perKey *perKeyBackend    // when it is not
}

func newBatchLayer(batch bool) *batchLayer {
	if batch {
		b := newFakeBatchBackend()
		return &batchLayer{fakeBackend: b.fakeBackend, batch: b}
	}
	p := &perKeyBackend{fakeBackend: newFakeBackend()}
	return &batchLayer{fakeBackend: p.fakeBackend, perKey: p}
}

// layers returns two layers of the case's kind.
func (bc batchCase) layers() (l1, l2 *batchLayer) {
	return newBatchLayer(bc.batch), newBatchLayer(bc.batch)
}

func (l *batchLayer) backend() tiercache.Backend[string] {
	if l.batch != nil {
		return l.batch
	}
	return l.perKey
}

// reads returns the keys of each read of the layer, in order: one list per
// GetMany, or one one-key list per Get.
func (l *batchLayer) reads() [][]string {
	if l.batch != nil {
		return l.batch.getManyCalls()
	}
	return oneKeyLists(l.perKey.log(func(p *perKeyBackend) []string { return p.gets }))
}

// writes returns the keys of each batch write of the layer: one list per
// SetMany, or one one-key list per Set.
func (l *batchLayer) writes() [][]string {
	if l.batch != nil {
		return l.batch.setManyCalls()
	}
	return oneKeyLists(l.perKey.log(func(p *perKeyBackend) []string { return p.sets }))
}

func oneKeyLists(keys []string) [][]string {
	var out [][]string
	for _, k := range keys {
		out = append(out, []string{k})
	}
	return out
}

// failReads makes reads of keys fail with err; the layer's other keys are
// read as usual.
func (l *batchLayer) failReads(err error, keys ...string) {
	set := make(map[string]bool)
	for _, k := range keys {
		set[k] = true
	}
	if l.batch != nil {
		l.batch.configureBatch(func(b *fakeBatchBackend) { b.failKeys, b.failErr = set, err })
		return
	}
	l.perKey.mu.Lock()
	defer l.perKey.mu.Unlock()
	l.perKey.failKeys, l.perKey.failErr = set, err
}

// holdReads makes the layer's reads (GetMany, or Get) wait until open is
// called; its writes go on.
func (l *batchLayer) holdReads(t *testing.T) (open func()) {
	gate, open := loadGate(t)
	if l.batch != nil {
		l.batch.configureBatch(func(b *fakeBatchBackend) { b.getManyGate = gate })
	} else {
		l.perKey.mu.Lock()
		l.perKey.getGate = gate
		l.perKey.mu.Unlock()
	}
	return open
}

// requireOneBatch checks that calls, the reads or writes of a layer, are
// one batch of want (in any order) on a BatchBackend, or one call per key
// of want otherwise.
func requireOneBatch(t *testing.T, l *batchLayer, calls [][]string, want []string, msgAndArgs ...any) {
	t.Helper()
	if len(want) == 0 {
		require.Empty(t, calls, msgAndArgs...)
		return
	}
	if l.batch != nil {
		require.Len(t, calls, 1, msgAndArgs...)
		require.ElementsMatch(t, want, calls[0], msgAndArgs...)
		return
	}
	require.Len(t, calls, len(want), msgAndArgs...)
	require.ElementsMatch(t, want, slices.Concat(calls...), msgAndArgs...)
}

// perKeyBackend is a fakeBackend that is not a BatchBackend, so that the
// cache reads and writes it key by key. It records the keys of its Gets and
// Sets, measures how many Gets run at once, can fail the Gets of some keys,
// and can hold its Gets alone on a gate.
type perKeyBackend struct {
	*fakeBackend

	mu          sync.Mutex
	gets, sets  []string
	failKeys    map[string]bool
	failErr     error
	getGate     chan struct{}
	getsRunning int
	getsPeak    int
}

var _ tiercache.Backend[string] = (*perKeyBackend)(nil)

func (p *perKeyBackend) Get(ctx context.Context, key string) (*tiercache.CacheValue[string], error) {
	p.mu.Lock()
	p.gets = append(p.gets, key)
	fail, failErr, gate := p.failKeys[key], p.failErr, p.getGate
	p.getsRunning++
	p.getsPeak = max(p.getsPeak, p.getsRunning)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.getsRunning--
		p.mu.Unlock()
	}()
	if gate != nil {
		if err := waitFor(ctx, gate); err != nil {
			return nil, err
		}
	}
	v, err := p.fakeBackend.Get(ctx, key)
	if err == nil && fail {
		return nil, failErr
	}
	return v, err
}

func (p *perKeyBackend) Set(ctx context.Context, key string, v tiercache.CacheValue[string]) error {
	p.mu.Lock()
	p.sets = append(p.sets, key)
	p.mu.Unlock()
	return p.fakeBackend.Set(ctx, key, v)
}

func (p *perKeyBackend) log(f func(p *perKeyBackend) []string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(f(p))
}

// running returns the Gets under way and the most that ran at once.
func (p *perKeyBackend) running() (now, peak int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.getsRunning, p.getsPeak
}

// openBatchCache returns a Cache over l1 and l2 under the case's policy,
// closed when the test ends (with a deadline, so that a failing test with
// work still held ends instead of hanging).
func openBatchCache(t *testing.T, bc batchCase, l1, l2 *batchLayer, opts *tiercache.Options[string]) *tiercache.Cache[string] {
	t.Helper()
	return openBatchCacheOver(t, bc, l1.backend(), l2.backend(), opts)
}

func openBatchCacheOver(t *testing.T, bc batchCase, l1, l2 tiercache.Backend[string], opts *tiercache.Options[string]) *tiercache.Cache[string] {
	t.Helper()
	var o tiercache.Options[string]
	if opts != nil {
		o = *opts
	}
	o.ReadPolicy = bc.policy
	c, err := tiercache.New(l1, l2, &o)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, c.Close(ctx))
	})
	return c
}

// manyLoader is a batch loader that records the keys and ctx of each call;
// body does the work and learns which call it is (1 for the first).
type manyLoader struct {
	body func(ctx context.Context, call int, keys []string) (map[string]string, error)

	mu    sync.Mutex
	keys  [][]string
	ctxs  []context.Context
	calls int
}

func loadMany(body func(ctx context.Context, call int, keys []string) (map[string]string, error)) *manyLoader {
	return &manyLoader{body: body}
}

// loadEvery is a loader body that returns "loaded-"+key for every key.
func loadEvery(_ context.Context, _ int, keys []string) (map[string]string, error) {
	return loadedValues(keys...), nil
}

func loadedValues(keys ...string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = "loaded-" + k
	}
	return m
}

func (l *manyLoader) load(ctx context.Context, keys []string) (map[string]string, error) {
	l.mu.Lock()
	l.keys = append(l.keys, slices.Clone(keys))
	l.ctxs = append(l.ctxs, ctx)
	l.calls++
	call := l.calls
	l.mu.Unlock()
	return l.body(ctx, call, keys)
}

// n returns the number of calls so far.
func (l *manyLoader) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// asked returns the keys of each call, in order.
func (l *manyLoader) asked() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.keys)
}

// ctx returns the ctx of call i (1 for the first).
func (l *manyLoader) ctx(i int) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctxs[i-1]
}

// requireRememberedAbsent checks that every layer holds a remembered
// absence of key, and that GetOrLoad answers ErrNotFound from it without
// calling single.
func requireRememberedAbsent(t *testing.T, c *tiercache.Cache[string], single *loadCounter, key string, layers ...*batchLayer) {
	t.Helper()
	for _, l := range layers {
		v, ok := l.peek(key)
		require.True(t, ok, "%s in a layer", key)
		require.True(t, v.Negative, "%s remembered absent", key)
	}
	_, err := c.GetOrLoad(context.Background(), key, single.load)
	require.ErrorIs(t, err, tiercache.ErrNotFound)
	require.Zero(t, single.n(), "remembered: not loaded")
}

// requireAsked checks that the loader was called once per list of want,
// with those keys in any order.
func requireAsked(t *testing.T, l *manyLoader, want ...[]string) {
	t.Helper()
	got := l.asked()
	require.Len(t, got, len(want), "loader calls: %v", got)
	for i := range want {
		require.ElementsMatch(t, want[i], got[i], "loader call %d", i+1)
	}
}

// notLoading is a loader that must not be called.
func notLoading(t *testing.T) func(context.Context, []string) (map[string]string, error) {
	return func(_ context.Context, keys []string) (map[string]string, error) {
		t.Errorf("the loader was called with %v", keys)
		return nil, errors.New("unexpected load")
	}
}

// manyCall is GetMany or GetOrLoadMany: the tests of what both do run with
// each. GetMany ignores load.
type manyCall struct {
	name  string
	loads bool
	call  func(ctx context.Context, c *tiercache.Cache[string], keys []string, load func(context.Context, []string) (map[string]string, error)) (map[string]string, error)
}

var manyCalls = []manyCall{
	{name: "GetMany", call: func(ctx context.Context, c *tiercache.Cache[string], keys []string, _ func(context.Context, []string) (map[string]string, error)) (map[string]string, error) {
		return c.GetMany(ctx, keys)
	}},
	{name: "GetOrLoadMany", loads: true, call: func(ctx context.Context, c *tiercache.Cache[string], keys []string, load func(context.Context, []string) (map[string]string, error)) (map[string]string, error) {
		return c.GetOrLoadMany(ctx, keys, load)
	}},
}

// eachManyCall runs f for GetMany and GetOrLoadMany, each under every batch
// case.
func eachManyCall(t *testing.T, f func(t *testing.T, mc manyCall, bc batchCase)) {
	t.Helper()
	eachManyCallOf(t, everyPolicy, nil, f)
}

func eachManyCallOf(t *testing.T, policies []loadPolicy, skips map[string]string, f func(t *testing.T, mc manyCall, bc batchCase)) {
	t.Helper()
	for _, mc := range manyCalls {
		t.Run(mc.name, func(t *testing.T) {
			eachBatchCaseOf(t, policies, skips, func(t *testing.T, bc batchCase) { f(t, mc, bc) })
		})
	}
}

// manyResult is what one GetMany or GetOrLoadMany returned, and when.
type manyResult struct {
	vals map[string]string
	err  error
	at   time.Time
}

// goGetOrLoadMany calls GetOrLoadMany on a new goroutine; the channel
// receives its result. A caller still waiting when the test ends, because
// it failed, is cancelled and waited for.
func goGetOrLoadMany(t *testing.T, ctx context.Context, c *tiercache.Cache[string], keys []string, load func(context.Context, []string) (map[string]string, error)) <-chan manyResult {
	return goMany(t, ctx, func(ctx context.Context) (map[string]string, error) { return c.GetOrLoadMany(ctx, keys, load) })
}

func goMany(t *testing.T, ctx context.Context, call func(ctx context.Context) (map[string]string, error)) <-chan manyResult {
	return goCall(t, ctx, "the batch call", func(ctx context.Context) manyResult {
		vals, err := call(ctx)
		return manyResult{vals: vals, err: err, at: time.Now()}
	})
}

// awaitMany returns the result of a batch call, failing the test if it has
// not returned within an hour of the bubble's time.
func awaitMany(t *testing.T, ch <-chan manyResult) manyResult {
	t.Helper()
	return await(t, ch, "the batch call")
}

// manyResultNow returns the result of a batch call that must have returned
// already.
func manyResultNow(t *testing.T, ch <-chan manyResult) manyResult {
	t.Helper()
	return resultNow(t, ch, "the batch call")
}

// requireNotReturned fails if a batch call has returned.
func requireNotReturned(t *testing.T, ch <-chan manyResult, msg string) {
	t.Helper()
	select {
	case r := <-ch:
		require.FailNow(t, msg, "returned %v, %v", r.vals, r.err)
	default:
	}
}

func val(data string) tiercache.CacheValue[string] { return tiercache.CacheValue[string]{Data: data} }

func keyRange(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint(prefix, i)
	}
	return keys
}

var (
	errL1Down = errors.New("L1 down")
	errL2Down = errors.New("L2 down")
)

// Keys are deduplicated: each distinct key is read once from each layer,
// asked of the loader once, and counted once.
func TestBatchDeduplicatesKeys(t *testing.T) {
	eachManyCall(t, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("a", val("a1"))
		l2.put("b", val("b2"))
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})
		loader := loadMany(loadEvery)

		got, err := mc.call(context.Background(), c, []string{"a", "b", "a", "c", "b", "c", "a"}, loader.load)
		require.NoError(t, err)
		want := map[string]string{"a": "a1", "b": "b2"}
		if mc.loads {
			want["c"] = "loaded-c"
			requireAsked(t, loader, []string{"c"})
		}
		require.Equal(t, want, got)
		requireOneBatch(t, l1, l1.reads(), []string{"a", "b", "c"}, "L1 reads each key once")
		wantL2 := []string{"a", "b", "c"}
		if bc.sequential() {
			wantL2 = []string{"b", "c"}
		}
		requireOneBatch(t, l2, l2.reads(), wantL2, "L2 reads each key once")
		s := c.Stats()
		require.EqualValues(t, 1, s.BatchCalls)
		require.EqualValues(t, 3, s.BatchKeys, "distinct keys")
	})
}

// The result holds the keys that have values: a remembered absence in
// either layer, a key nowhere, and a key the loader did not return are
// absent, and none of them is an error.
func TestBatchResultHoldsOnlyKeysWithValues(t *testing.T) {
	eachManyCall(t, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		neg := tiercache.CacheValue[string]{Negative: true, Expire: time.Now().Add(time.Hour)}
		l1.put("a", val("a1"))
		l1.put("neg1", neg)
		l2.put("b", val("b2"))
		l2.put("neg2", neg)
		c := openBatchCache(t, bc, l1, l2, nil)
		loader := loadMany(func(context.Context, int, []string) (map[string]string, error) {
			return map[string]string{"c": "loaded-c"}, nil // not "omitted"
		})

		got, err := mc.call(context.Background(), c, []string{"a", "neg1", "b", "neg2", "c", "omitted"}, loader.load)
		require.NoError(t, err)
		want := map[string]string{"a": "a1", "b": "b2"}
		if mc.loads {
			want["c"] = "loaded-c"
			requireAsked(t, loader, []string{"c", "omitted"})
		}
		require.Equal(t, want, got)
		require.EqualValues(t, 2, c.Stats().NegativeHits)
	})
}

// An empty keys slice is an empty map and no error; nothing is read or
// loaded.
func TestBatchEmptyKeys(t *testing.T) {
	eachManyCallOf(t, everyPolicy, nil, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, nil)
		for _, keys := range [][]string{nil, {}} {
			got, err := mc.call(context.Background(), c, keys, notLoading(t))
			require.NoError(t, err)
			require.NotNil(t, got)
			require.Empty(t, got)
		}
		synctest.Wait()
		require.Empty(t, l1.reads())
		require.Empty(t, l2.reads())
	})
}

// Bad input is refused before anything is read, loaded or counted: an
// empty key among the keys, a nil load, a closed cache.
func TestBatchRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		keys    []string
		nilLoad bool
		close   bool
		check   func(t *testing.T, err error)
	}{
		{name: "empty key", keys: []string{"a", "", "b"}, check: func(t *testing.T, err error) {
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "tiercache:"), err.Error())
			require.ErrorContains(t, err, "empty key")
			require.ErrorContains(t, err, "key 1 of 3")
			require.Equal(t, 1, strings.Count(err.Error(), "tiercache:"), "the package name once: %s", err)
		}},
		{name: "nil load", keys: []string{"a", "b"}, nilLoad: true, check: func(t *testing.T, err error) {
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "tiercache:"), err.Error())
		}},
		{name: "closed", keys: []string{"a", "b"}, close: true, check: func(t *testing.T, err error) {
			require.ErrorIs(t, err, tiercache.ErrClosed)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachManyCall(t, func(t *testing.T, mc manyCall, bc batchCase) {
				if tt.nilLoad && !mc.loads {
					return // GetMany has no load
				}
				l1, l2 := bc.layers()
				l1.put("a", val("a1"))
				l2.put("b", val("b2"))
				c := openBatchCache(t, bc, l1, l2, nil)
				if tt.close {
					require.NoError(t, c.Close(context.Background()))
				}
				load := notLoading(t)
				if tt.nilLoad {
					load = nil
				}

				got, err := mc.call(context.Background(), c, tt.keys, load)
				tt.check(t, err)
				require.Empty(t, got)
				synctest.Wait()
				require.Empty(t, l1.reads(), "nothing read")
				require.Empty(t, l2.reads(), "nothing read")
				require.Equal(t, backendCalls{}, l1.calls())
				require.Equal(t, backendCalls{}, l2.calls())
				require.Equal(t, tiercache.Stats{}, c.Stats(), "nothing counted")
			})
		})
	}
}

// L1 is read first, in one batch. Under SequentialReadPolicy only the keys
// L1 missed are read from L2, in one batch; under ParallelReadPolicy and
// RaceReadPolicy L2 is read in one batch of every key. GetOrLoadMany then
// asks the loader, once, for the keys still missing and only those.
func TestBatchReadsL1ThenL2InOneBatchEach(t *testing.T) {
	eachManyCall(t, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("a", val("a1"))
		l1.put("b", val("b1"))
		l2.put("b", val("b2"))
		l2.put("c", val("c2"))
		off := &loadOffload{}
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Offload: off.offload()})
		t.Cleanup(off.run)
		loader := loadMany(loadEvery)

		got, err := mc.call(context.Background(), c, []string{"a", "b", "c", "d"}, loader.load)
		require.NoError(t, err)
		want := map[string]string{"a": "a1", "b": "b1", "c": "c2"}
		if mc.loads {
			want["d"] = "loaded-d"
			requireAsked(t, loader, []string{"d"})
		}
		require.Equal(t, want, got)
		requireOneBatch(t, l1, l1.reads(), []string{"a", "b", "c", "d"}, "L1: one batch of every key")
		if bc.sequential() {
			requireOneBatch(t, l2, l2.reads(), []string{"c", "d"}, "L2: one batch of L1's misses")
		} else {
			requireOneBatch(t, l2, l2.reads(), []string{"a", "b", "c", "d"}, "L2: one batch of every key")
		}
		if bc.batch {
			require.Zero(t, l1.calls().gets, "a BatchBackend is not read key by key")
			require.Zero(t, l2.calls().gets, "a BatchBackend is not read key by key")
		}
	})
}

// Under ParallelReadPolicy and RaceReadPolicy the two layers' batches are
// read at once: L2's batch starts while L1's is still under way.
func TestBatchReadsBothLayersConcurrently(t *testing.T) {
	eachManyCallOf(t, []loadPolicy{parallelPolicy, raceOffload, raceCancel}, nil, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("a", val("a1"))
		l2.put("b", val("b2"))
		c := openBatchCache(t, bc, l1, l2, nil)
		openL1 := l1.holdReads(t)
		openL2 := l2.holdReads(t)
		loader := loadMany(loadEvery)

		res := goMany(t, context.Background(), func(ctx context.Context) (map[string]string, error) {
			return mc.call(ctx, c, []string{"a", "b", "c"}, loader.load)
		})
		synctest.Wait()
		require.NotEmpty(t, l1.reads(), "L1 is being read")
		require.NotEmpty(t, l2.reads(), "L2 is being read while L1's batch is held")
		requireNotReturned(t, res, "both layers are held")
		openL1()
		openL2()
		r := awaitMany(t, res)
		require.NoError(t, r.err)
		want := map[string]string{"a": "a1", "b": "b2"}
		if mc.loads {
			want["c"] = "loaded-c"
		}
		require.Equal(t, want, r.vals)
		requireOneBatch(t, l1, l1.reads(), []string{"a", "b", "c"})
		requireOneBatch(t, l2, l2.reads(), []string{"a", "b", "c"})
	})
}

// A layer without BatchBackend is read key by key, concurrently, at most
// BatchConcurrency keys at once.
func TestBatchReadsPerKeyWithinBatchConcurrency(t *testing.T) {
	const keys = 3*tiercache.BatchConcurrency + 5
	eachManyCallOf(t, everyPolicy, map[string]string{"batch": "BatchBackends are read in one call"}, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		all := keyRange("k", keys)
		for _, k := range all {
			l2.put(k, val("v-"+k))
		}
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})
		openL1 := l1.holdReads(t)
		openL2 := l2.holdReads(t)

		res := goMany(t, context.Background(), func(ctx context.Context) (map[string]string, error) {
			return mc.call(ctx, c, all, notLoading(t))
		})
		synctest.Wait()
		now, _ := l1.perKey.running()
		require.Equal(t, tiercache.BatchConcurrency, now, "L1 Gets at once")
		if !bc.sequential() {
			now, _ = l2.perKey.running()
			require.Equal(t, tiercache.BatchConcurrency, now, "L2 Gets at once, beside L1's")
		}
		openL1()
		synctest.Wait()
		now, _ = l2.perKey.running()
		require.Equal(t, tiercache.BatchConcurrency, now, "L2 Gets at once")
		openL2()
		r := awaitMany(t, res)
		require.NoError(t, r.err)
		require.Len(t, r.vals, keys)
		for _, l := range []*batchLayer{l1, l2} {
			_, peak := l.perKey.running()
			require.Equal(t, tiercache.BatchConcurrency, peak, "never more than BatchConcurrency at once")
			requireOneBatch(t, l, l.reads(), all, "every key read once")
		}
	})
}

// ParallelReadPolicy chooses per key the value that expires later: L2's
// fresher copy for some keys, L1's for others; a key in one layer only
// takes that layer's value.
func TestBatchParallelPicksLaterExpirePerKey(t *testing.T) {
	eachManyCallOf(t, []loadPolicy{parallelPolicy}, nil, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		now := time.Now()
		at := func(d time.Duration) time.Time { return now.Add(d) }
		l1.put("l2-fresher", tiercache.CacheValue[string]{Data: "l1", Expire: at(time.Hour)})
		l2.put("l2-fresher", tiercache.CacheValue[string]{Data: "l2", Expire: at(2 * time.Hour)})
		l1.put("l1-fresher", tiercache.CacheValue[string]{Data: "l1", Expire: at(2 * time.Hour)})
		l2.put("l1-fresher", tiercache.CacheValue[string]{Data: "l2", Expire: at(time.Hour)})
		l1.put("l1-forever", tiercache.CacheValue[string]{Data: "l1"})
		l2.put("l1-forever", tiercache.CacheValue[string]{Data: "l2", Expire: at(time.Hour)})
		l1.put("l2-forever", tiercache.CacheValue[string]{Data: "l1", Expire: at(time.Hour)})
		l2.put("l2-forever", tiercache.CacheValue[string]{Data: "l2"})
		l2.put("l2-only", tiercache.CacheValue[string]{Data: "l2", Expire: at(time.Minute)})
		l1.put("l1-only", tiercache.CacheValue[string]{Data: "l1", Expire: at(time.Minute)})
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})

		got, err := mc.call(context.Background(), c, []string{"l2-fresher", "l1-fresher", "l1-forever", "l2-forever", "l2-only", "l1-only"}, notLoading(t))
		require.NoError(t, err)
		require.Equal(t, map[string]string{
			"l2-fresher": "l2", "l1-fresher": "l1", "l1-forever": "l1", "l2-forever": "l2", "l2-only": "l2", "l1-only": "l1",
		}, got)
	})
}

// RaceReadPolicy takes per key the first hit: the keys both layers hold
// come from the layer that answered first; a key only the slower layer
// holds comes from it.
func TestBatchRaceTakesFirstHit(t *testing.T) {
	scenarios := []struct {
		name string
		slow tiercache.Layer
		want map[string]string
	}{
		{name: "L2 first", slow: tiercache.L1, want: map[string]string{"both1": "l2", "both2": "l2", "one": "l1"}},
		{name: "L1 first", slow: tiercache.L2, want: map[string]string{"both1": "l1", "both2": "l1", "one": "l2"}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			eachManyCallOf(t, racePolicies, nil, func(t *testing.T, mc manyCall, bc batchCase) {
				l1, l2 := bc.layers()
				fast, slow := l1, l2
				if sc.slow == tiercache.L1 {
					fast, slow = l2, l1
				}
				fastName, slowName := "l1", "l2"
				if sc.slow == tiercache.L1 {
					fastName, slowName = "l2", "l1"
				}
				fast.put("both1", val(fastName))
				fast.put("both2", val(fastName))
				slow.put("both1", val(slowName))
				slow.put("both2", val(slowName))
				slow.put("one", val(slowName))
				slow.configure(func(b *fakeBackend) { b.delay = 10 * time.Millisecond })
				c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})

				got, err := mc.call(context.Background(), c, []string{"both1", "both2", "one"}, notLoading(t))
				require.NoError(t, err)
				require.Equal(t, sc.want, got)
			})
		})
	}
}

// Under RaceReadPolicy a stalled L1 does not hold the answer when L2 has
// answered every key: the first hit wins for each, as for one key.
func TestBatchRaceDoesNotWaitForStalledL1(t *testing.T) {
	eachManyCallOf(t, racePolicies, nil, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		l1.configure(func(b *fakeBackend) { b.delay = time.Hour }) // honours ctx
		l2.put("a", val("a2"))
		l2.put("b", val("b2"))
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})
		start := time.Now()

		res := goMany(t, context.Background(), func(ctx context.Context) (map[string]string, error) {
			return mc.call(ctx, c, []string{"a", "b"}, notLoading(t))
		})
		r := awaitMany(t, res)
		require.NoError(t, r.err)
		require.Equal(t, map[string]string{"a": "a2", "b": "b2"}, r.vals)
		// At once: L2's win waits a microsecond for an L1 answering at the
		// same instant, not L1's hour.
		require.LessOrEqual(t, r.at.Sub(start), time.Microsecond, "answered by L2 at once, not after L1's hour")
	})
}

// A key a single GetOrLoad is loading is awaited by GetOrLoadMany, not
// loaded again: the batch's loader is asked only for the other keys, and
// the awaited key is counted in Stats.BatchKeysCoalesced.
func TestGetOrLoadManyAwaitsSingleLoadInFlight(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, nil)
		gate, open := loadGate(t)
		single := countLoads(func(context.Context, int) (string, error) {
			<-gate
			return "single-b", nil
		})
		loader := loadMany(loadEvery)

		singleRes := goGetOrLoad(t, context.Background(), c, "b", single.load)
		synctest.Wait()
		require.Equal(t, 1, single.n(), "the single load of b is in flight")
		res := goGetOrLoadMany(t, context.Background(), c, []string{"a", "b", "c"}, loader.load)
		synctest.Wait()
		requireAsked(t, loader, []string{"a", "c"})
		requireNotReturned(t, res, "b is still loading")
		require.EqualValues(t, 1, c.Stats().BatchKeysCoalesced)

		open()
		r := awaitMany(t, res)
		require.NoError(t, r.err)
		require.Equal(t, map[string]string{"a": "loaded-a", "b": "single-b", "c": "loaded-c"}, r.vals)
		sr := awaitLoad(t, singleRes)
		require.NoError(t, sr.err)
		require.Equal(t, "single-b", sr.v)
		require.Equal(t, 1, single.n())
		requireAsked(t, loader, []string{"a", "c"})
		require.EqualValues(t, 2, c.Stats().Loads)
	})
}

// Concurrent GetOrLoadMany calls with overlapping keys load each key once:
// the keys passed to the loader, across every call, are the distinct keys.
func TestGetOrLoadManyConcurrentCallsLoadEachKeyOnce(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, nil)
		gate, open := loadGate(t)
		loader := loadMany(func(_ context.Context, _ int, keys []string) (map[string]string, error) {
			<-gate
			return loadedValues(keys...), nil
		})

		calls := [][]string{{"a", "b", "c"}, {"b", "c", "d"}, {"a", "d", "e"}, {"e", "a", "b", "c", "d"}}
		var results []<-chan manyResult
		for _, keys := range calls {
			results = append(results, goGetOrLoadMany(t, context.Background(), c, keys, loader.load))
			synctest.Wait()
		}
		requireAsked(t, loader, []string{"a", "b", "c"}, []string{"d"}, []string{"e"})
		open()
		for i, ch := range results {
			r := awaitMany(t, ch)
			require.NoError(t, r.err)
			require.Equal(t, loadedValues(calls[i]...), r.vals)
		}
		var asked []string
		for _, keys := range loader.asked() {
			asked = append(asked, keys...)
		}
		require.ElementsMatch(t, []string{"a", "b", "c", "d", "e"}, asked, "each key loaded once")
		s := c.Stats()
		require.EqualValues(t, 3, s.Loads)
		require.EqualValues(t, 5, s.BatchKeysLoaded)
		require.EqualValues(t, 2+2+5, s.BatchKeysCoalesced)
	})
}

// A single GetOrLoad of a key a batch is loading waits for the batch's
// load: no L2 read of its own under SequentialReadPolicy, no second load.
func TestGetOrLoadWaitsForBatchLoad(t *testing.T) {
	eachBatchCaseOf(t, everyPolicy, nil, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, nil)
		gate, open := loadGate(t)
		loader := loadMany(func(_ context.Context, _ int, keys []string) (map[string]string, error) {
			<-gate
			return loadedValues(keys...), nil
		})
		single := countLoads(func(context.Context, int) (string, error) { return "single-a", nil })

		batchRes := goGetOrLoadMany(t, context.Background(), c, []string{"a", "b"}, loader.load)
		synctest.Wait()
		require.Equal(t, 1, loader.n(), "the batch is loading")
		l2Reads := len(l2.reads())
		singleRes := goGetOrLoad(t, context.Background(), c, "a", single.load)
		synctest.Wait()
		require.Zero(t, single.n(), "the single caller waits for the batch")
		if bc.sequential() {
			require.Len(t, l2.reads(), l2Reads, "nor reads L2 again")
		}

		open()
		r := awaitLoad(t, singleRes)
		require.NoError(t, r.err)
		require.Equal(t, "loaded-a", r.v)
		br := awaitMany(t, batchRes)
		require.NoError(t, br.err)
		require.Equal(t, loadedValues("a", "b"), br.vals)
		require.Zero(t, single.n())
		require.Equal(t, 1, loader.n())
		require.EqualValues(t, 1, c.Stats().Coalesced)
	})
}

// Loaded values and remembered absences are in L1 when GetOrLoadMany
// returns, written in one batch; their L2 write is one task of kind
// OffloadKindWriteL2, one batch, and L2 is written only when it runs.
func TestGetOrLoadManyStoresInL1NowAndL2ThroughOffload(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		off := &loadOffload{}
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{
			Offload: off.offload(), DefaultTTL: time.Hour, NegativeTTL: time.Minute,
		})
		t.Cleanup(off.run)
		loader := loadMany(func(context.Context, int, []string) (map[string]string, error) {
			return loadedValues("a", "b"), nil // not "gone"
		})
		start := time.Now()

		got, err := c.GetOrLoadMany(context.Background(), []string{"a", "b", "gone"}, loader.load)
		require.NoError(t, err)
		require.Equal(t, loadedValues("a", "b"), got)
		// Checked before anything else runs: the values are in L1 already.
		loaded := func(k string) tiercache.CacheValue[string] {
			return tiercache.CacheValue[string]{Data: "loaded-" + k, Expire: start.Add(time.Hour)}
		}
		gone := tiercache.CacheValue[string]{Negative: true, Expire: start.Add(time.Minute)}
		requireHolds(t, l1.fakeBackend, "a", loaded("a"))
		requireHolds(t, l1.fakeBackend, "b", loaded("b"))
		requireHolds(t, l1.fakeBackend, "gone", gone)
		requireOneBatch(t, l1, l1.writes(), []string{"a", "b", "gone"}, "L1 written in one batch")
		require.Equal(t, []string{tiercache.OffloadKindWriteL2}, off.kindsGiven())
		require.Empty(t, l2.writes(), "L2 waits for the Offload")
		requireMissing(t, l2.fakeBackend, "a")

		off.run()
		requireOneBatch(t, l2, l2.writes(), []string{"a", "b", "gone"}, "L2 written in one batch")
		requireHolds(t, l2.fakeBackend, "a", loaded("a"))
		requireHolds(t, l2.fakeBackend, "b", loaded("b"))
		requireHolds(t, l2.fakeBackend, "gone", gone)
		require.Equal(t, []string{tiercache.OffloadKindWriteL2}, off.kindsGiven(), "one task")
	})
}

// eachNegativeTTLBatchCase runs f under every batch case, with NegativeTTL
// a minute and unset.
func eachNegativeTTLBatchCase(t *testing.T, f func(t *testing.T, bc batchCase, negativeTTL time.Duration)) {
	for _, tt := range []struct {
		name        string
		negativeTTL time.Duration
	}{{"NegativeTTL", time.Minute}, {"no NegativeTTL", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			eachBatchCase(t, func(t *testing.T, bc batchCase) { f(t, bc, tt.negativeTTL) })
		})
	}
}

// With NegativeTTL, the keys the loader omitted are remembered: a later
// GetOrLoadMany answers them absent without loading, and GetOrLoad of one
// returns ErrNotFound without loading. Without it nothing is stored for
// them and they are loaded again.
func TestGetOrLoadManyRemembersOmittedKeys(t *testing.T) {
	eachNegativeTTLBatchCase(t, func(t *testing.T, bc batchCase, negativeTTL time.Duration) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{NegativeTTL: negativeTTL})
		loader := loadMany(func(_ context.Context, _ int, keys []string) (map[string]string, error) {
			out := loadedValues(keys...)
			delete(out, "gone")
			return out, nil
		})
		single := countLoads(func(context.Context, int) (string, error) { return "", tiercache.ErrNotFound })

		got, err := c.GetOrLoadMany(context.Background(), []string{"a", "gone"}, loader.load)
		require.NoError(t, err, "a key the loader omitted is no error")
		require.Equal(t, loadedValues("a"), got)
		synctest.Wait() // the L2 write

		got, err = c.GetOrLoadMany(context.Background(), []string{"gone"}, loader.load)
		require.NoError(t, err)
		require.Empty(t, got)
		if negativeTTL == 0 {
			requireMissing(t, l1.fakeBackend, "gone")
			requireMissing(t, l2.fakeBackend, "gone")
			requireAsked(t, loader, []string{"a", "gone"}, []string{"gone"})
			return
		}
		requireAsked(t, loader, []string{"a", "gone"})
		requireRememberedAbsent(t, c, single, "gone", l1, l2)
		require.Equal(t, 1, loader.n())
	})
}

// L2 hits are copied into L1 in one batch, by one task of kind
// OffloadKindRefill; L1 holds them only when it runs.
func TestBatchRefillsL1InOneBatch(t *testing.T) {
	eachManyCall(t, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("d", val("d1"))
		for _, k := range []string{"a", "b", "c"} {
			l2.put(k, tiercache.CacheValue[string]{Data: k + "2", Expire: time.Now().Add(time.Hour)})
		}
		off := &loadOffload{}
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Offload: off.offload()})
		t.Cleanup(off.run)

		got, err := mc.call(context.Background(), c, []string{"a", "b", "c", "d"}, notLoading(t))
		require.NoError(t, err)
		require.Equal(t, map[string]string{"a": "a2", "b": "b2", "c": "c2", "d": "d1"}, got)
		synctest.Wait()
		require.Equal(t, []string{tiercache.OffloadKindRefill}, off.kindsGiven(), "one refill task")
		requireMissing(t, l1.fakeBackend, "a")
		require.Empty(t, l1.writes())

		off.run()
		requireOneBatch(t, l1, l1.writes(), []string{"a", "b", "c"}, "L1 refilled in one batch")
		for _, k := range []string{"a", "b", "c"} {
			requireHolds(t, l1.fakeBackend, k, tiercache.CacheValue[string]{Data: k + "2", Expire: time.Now().Add(time.Hour)})
		}
		require.EqualValues(t, 3, c.Stats().Refills)
	})
}

// A refill does not overwrite a key Set after it was read: that key is
// skipped, the others are copied.
func TestBatchRefillSkipsKeySetMeanwhile(t *testing.T) {
	const n = 20
	eachManyCall(t, func(t *testing.T, mc manyCall, bc batchCase) {
		l1, l2 := bc.layers()
		keys := keyRange("k", n)
		for _, k := range keys {
			l2.put(k, val("old"))
		}
		off := &loadOffload{}
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Offload: off.offload()})
		t.Cleanup(off.run)

		got, err := mc.call(context.Background(), c, keys, notLoading(t))
		require.NoError(t, err)
		require.Len(t, got, n)
		synctest.Wait()
		require.Equal(t, []string{tiercache.OffloadKindRefill}, off.kindsGiven(), "the refill is held")
		require.NoError(t, c.Set(context.Background(), "k0", "new", 0))
		off.run()

		requireHolds(t, l1.fakeBackend, "k0", val("new"))
		if bc.batch {
			for _, call := range l1.writes() {
				require.NotContains(t, call, "k0", "the refill skipped k0")
			}
		}
		s := c.Stats()
		// Keys sharing k0's stripe of the write guard are skipped too.
		require.GreaterOrEqual(t, s.RefillsSkipped, uint64(1))
		require.GreaterOrEqual(t, s.Refills, uint64(1), "the other keys are refilled")
		require.EqualValues(t, n, s.Refills+s.RefillsSkipped)
		for _, k := range keys[1:] {
			if v, ok := l1.peek(k); ok {
				require.Equal(t, "old", v.Data)
			}
		}
	})
}

// Stale values are served at once and refreshed in the background: one
// task of kind OffloadKindRefresh, one loader call for every stale key of
// the call, both layers rewritten.
func TestGetOrLoadManyRefreshesStaleKeysInOneLoad(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		off := &loadOffload{}
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{
			Offload: off.offload(), StaleAfter: time.Minute, DefaultTTL: time.Hour,
		})
		t.Cleanup(off.run)
		start := time.Now()
		stale := tiercache.CacheValue[string]{Data: "old", Stale: start.Add(-time.Second), Expire: start.Add(time.Hour)}
		fresh := tiercache.CacheValue[string]{Data: "fresh", Stale: start.Add(time.Minute), Expire: start.Add(time.Hour)}
		for _, l := range []*batchLayer{l1, l2} {
			l.put("s1", stale)
			l.put("s2", stale)
			l.put("f", fresh)
		}
		loader := loadMany(loadEvery)

		got, err := c.GetOrLoadMany(context.Background(), []string{"s1", "f", "s2"}, loader.load)
		require.NoError(t, err)
		require.Equal(t, map[string]string{"s1": "old", "s2": "old", "f": "fresh"}, got, "stale values served")
		require.Equal(t, start, time.Now(), "at once")
		synctest.Wait()
		require.Zero(t, loader.n(), "the refresh waits for the Offload")
		require.Equal(t, []string{tiercache.OffloadKindRefresh}, off.kindsGiven(), "one refresh")

		off.run()
		requireAsked(t, loader, []string{"s1", "s2"})
		renewed := func(k string) tiercache.CacheValue[string] {
			return tiercache.CacheValue[string]{Data: "loaded-" + k, Stale: start.Add(time.Minute), Expire: start.Add(time.Hour)}
		}
		for _, l := range []*batchLayer{l1, l2} {
			requireHolds(t, l.fakeBackend, "s1", renewed("s1"))
			requireHolds(t, l.fakeBackend, "s2", renewed("s2"))
			requireHolds(t, l.fakeBackend, "f", fresh)
		}
		requireOneBatch(t, l1, l1.writes(), []string{"s1", "s2"})
		requireOneBatch(t, l2, l2.writes(), []string{"s1", "s2"})
		require.Equal(t, []string{tiercache.OffloadKindRefresh, tiercache.OffloadKindWriteL2}, off.kindsGiven())
		s := c.Stats()
		require.EqualValues(t, 2, s.StaleServed)
		require.EqualValues(t, 2, s.Refreshes)
		require.EqualValues(t, 1, s.Loads)
	})
}

// A batch load runs with the context values of the caller that started it.
func TestGetOrLoadManyLoadHasFirstCallerValues(t *testing.T) {
	type traceKey struct{}
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, nil)
		loader := loadMany(loadEvery)

		ctx := context.WithValue(context.Background(), traceKey{}, "trace-1")
		_, err := c.GetOrLoadMany(ctx, []string{"a", "b"}, loader.load)
		require.NoError(t, err)
		require.Equal(t, 1, loader.n())
		require.Equal(t, "trace-1", loader.ctx(1).Value(traceKey{}))
	})
}

// A batch load is cancelled only when every waiter on every one of its
// keys has gone: two callers sharing a key, the first leaves and its load
// goes on for the second; both gone, the loads' ctxs are cancelled. Each
// caller returns as soon as its ctx ends, with its ctx's error and the
// values already found.
func TestGetOrLoadManyCancelsLoadWhenEveryWaiterLeft(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("x", val("x1"))
		c := openBatchCache(t, bc, l1, l2, nil)
		loader := loadMany(func(ctx context.Context, _ int, _ []string) (map[string]string, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		start := time.Now()

		ctxA, cancelA := context.WithCancel(context.Background())
		defer cancelA()
		first := goGetOrLoadMany(t, ctxA, c, []string{"x", "a", "b"}, loader.load)
		synctest.Wait()
		ctxB, cancelB := context.WithCancel(context.Background())
		defer cancelB()
		second := goGetOrLoadMany(t, ctxB, c, []string{"b", "c"}, loader.load)
		synctest.Wait()
		requireAsked(t, loader, []string{"a", "b"}, []string{"c"})
		require.EqualValues(t, 1, c.Stats().BatchKeysCoalesced, "the second caller waits for the first's b")

		cancelA()
		synctest.Wait()
		r := manyResultNow(t, first)
		require.ErrorIs(t, r.err, context.Canceled)
		require.Equal(t, map[string]string{"x": "x1"}, r.vals, "with the values already found")
		require.Equal(t, start, r.at, "at once")
		require.NoError(t, loader.ctx(1).Err(), "the second caller still waits for b")
		require.NoError(t, loader.ctx(2).Err())

		cancelB()
		synctest.Wait()
		r = manyResultNow(t, second)
		require.ErrorIs(t, r.err, context.Canceled)
		require.Empty(t, r.vals)
		require.ErrorIs(t, loader.ctx(1).Err(), context.Canceled, "every waiter gone")
		require.ErrorIs(t, loader.ctx(2).Err(), context.Canceled, "every waiter gone")
	})
}

// Each caller returns at its own deadline, with its ctx's error and the
// values already found, while the load goes on for the others.
func TestGetOrLoadManyReturnsAtCallerDeadline(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("x", val("x1"))
		c := openBatchCache(t, bc, l1, l2, nil)
		loader := loadMany(func(_ context.Context, _ int, keys []string) (map[string]string, error) {
			time.Sleep(time.Second)
			return loadedValues(keys...), nil
		})
		start := time.Now()

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		short := goGetOrLoadMany(t, ctx, c, []string{"x", "a"}, loader.load)
		synctest.Wait()
		long := goGetOrLoadMany(t, context.Background(), c, []string{"a"}, loader.load)

		r := awaitMany(t, short)
		require.ErrorIs(t, r.err, context.DeadlineExceeded)
		require.Equal(t, map[string]string{"x": "x1"}, r.vals)
		require.Equal(t, 10*time.Millisecond, r.at.Sub(start))
		r = awaitMany(t, long)
		require.NoError(t, r.err)
		require.Equal(t, loadedValues("a"), r.vals)
		require.Equal(t, time.Second, r.at.Sub(start))
		require.Equal(t, 1, loader.n())
	})
}

// A failing L1, by an error or a panic, degrades to L2 and then the
// loader: no error, and L1's failures counted.
func TestBatchDegradesPastFailingL1(t *testing.T) {
	failures := []struct {
		name    string
		breakIt func(b *fakeBackend)
	}{
		{name: "error", breakIt: func(b *fakeBackend) { b.getErr = errL1Down }},
		{name: "panic", breakIt: func(b *fakeBackend) { b.panics = "L1 exploded" }},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			eachManyCall(t, func(t *testing.T, mc manyCall, bc batchCase) {
				l1, l2 := bc.layers()
				l1.configure(f.breakIt)
				l2.put("a", val("a2"))
				l2.put("b", val("b2"))
				c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})
				loader := loadMany(loadEvery)

				got, err := mc.call(context.Background(), c, []string{"a", "b", "c"}, loader.load)
				require.NoError(t, err, "L2 answered")
				want := map[string]string{"a": "a2", "b": "b2"}
				if mc.loads {
					want["c"] = "loaded-c"
					requireAsked(t, loader, []string{"c"})
				}
				require.Equal(t, want, got)
				requireOneBatch(t, l2, l2.reads(), []string{"a", "b", "c"}, "L2 reads the keys L1 failed")
				require.EqualValues(t, 3, c.Stats().L1.Failures)
			})
		})
	}
}

// A failing L2 degrades to the loader for the keys L1 missed; GetMany
// answers what L1 has, with no error since L1 only missed.
func TestBatchDegradesPastFailingL2(t *testing.T) {
	failures := []struct {
		name    string
		breakIt func(b *fakeBackend)
	}{
		{name: "error", breakIt: func(b *fakeBackend) { b.getErr, b.setErr = errL2Down, errL2Down }},
		{name: "panic", breakIt: func(b *fakeBackend) { b.panics = "L2 exploded" }},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			eachManyCall(t, func(t *testing.T, mc manyCall, bc batchCase) {
				l1, l2 := bc.layers()
				l1.put("a", val("a1"))
				l2.configure(f.breakIt)
				c := openBatchCache(t, bc, l1, l2, nil)
				loader := loadMany(loadEvery)

				got, err := mc.call(context.Background(), c, []string{"a", "b", "c"}, loader.load)
				require.NoError(t, err)
				want := map[string]string{"a": "a1"}
				if mc.loads {
					want["b"], want["c"] = "loaded-b", "loaded-c"
					requireAsked(t, loader, []string{"b", "c"})
					requireHolds(t, l1.fakeBackend, "b", val("loaded-b"))
				}
				require.Equal(t, want, got)
				require.NotZero(t, c.Stats().L2.Failures)
				synctest.Wait()
			})
		})
	}
}

// BatchBackend.GetMany answering an error with a full slice has failed for
// its nil entries only (c, missing, is one of them: the answer cannot tell
// a miss): those keys go to the next layer, the others are hits. An error with any other slice fails the whole call, whatever it
// holds.
func TestBatchBackendPartialGetMany(t *testing.T) {
	errSome := errors.New("some keys failed")
	t.Run("full slice", func(t *testing.T) {
		eachManyCallOf(t, everyPolicy, map[string]string{"per-key": "a BatchBackend's answer"}, func(t *testing.T, mc manyCall, bc batchCase) {
			l1, l2 := bc.layers()
			l1.put("a", val("a1"))
			l1.put("b", val("b1"))
			l1.failReads(errSome, "b")
			l2.put("b", val("b2"))
			c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})
			loader := loadMany(loadEvery)

			got, err := mc.call(context.Background(), c, []string{"a", "b", "c"}, loader.load)
			require.NoError(t, err)
			want := map[string]string{"a": "a1", "b": "b2"}
			if mc.loads {
				want["c"] = "loaded-c"
				requireAsked(t, loader, []string{"c"})
			}
			require.Equal(t, want, got)
			if bc.sequential() {
				requireOneBatch(t, l2, l2.reads(), []string{"b", "c"}, "L2 reads L1's failure and miss")
			}
			s := c.Stats().L1
			require.EqualValues(t, 1, s.Hits, "a")
			require.EqualValues(t, 2, s.Failures, "b, and c: a nil entry beside an error is a failure")
		})
	})
	t.Run("short slice", func(t *testing.T) {
		eachManyCallOf(t, everyPolicy, map[string]string{"per-key": "a BatchBackend's answer"}, func(t *testing.T, mc manyCall, bc batchCase) {
			l1, l2 := bc.layers()
			l1.put("a", val("a1")) // answered, but in a short slice: not to be used
			l1.batch.configureBatch(func(b *fakeBatchBackend) { b.shortAnswer, b.shortErr = true, errSome })
			l2.put("a", val("a2"))
			c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})
			loader := loadMany(loadEvery)

			got, err := mc.call(context.Background(), c, []string{"a", "b"}, loader.load)
			require.NoError(t, err)
			want := map[string]string{"a": "a2"}
			if mc.loads {
				want["b"] = "loaded-b"
				requireAsked(t, loader, []string{"b"})
			}
			require.Equal(t, want, got)
			require.EqualValues(t, 2, c.Stats().L1.Failures)
		})
	})
}

// A BatchBackend breaking its contract, a short slice without an error,
// is a failure of that layer, never a crash of the host.
func TestBatchBackendShortAnswerWithoutError(t *testing.T) {
	for _, broken := range []tiercache.Layer{tiercache.L1, tiercache.L2} {
		t.Run(broken.String(), func(t *testing.T) {
			skips := map[string]string{
				"per-key": "a BatchBackend's answer",
			}
			eachManyCallOf(t, everyPolicy, skips, func(t *testing.T, mc manyCall, bc batchCase) {
				l1, l2 := bc.layers()
				l1.put("a", val("a1"))
				l2.put("a", val("a2"))
				l2.put("b", val("b2"))
				bad := l1
				if broken == tiercache.L2 {
					bad = l2
				}
				bad.batch.configureBatch(func(b *fakeBatchBackend) { b.shortAnswer = true })
				c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})
				loader := loadMany(loadEvery)

				got, err := mc.call(context.Background(), c, []string{"a", "b", "c"}, loader.load)
				require.NoError(t, err, "the other layer answered")
				require.Contains(t, got, "a")
				if broken == tiercache.L1 {
					require.Equal(t, "b2", got["b"], "L1's broken answer degrades to L2")
					require.EqualValues(t, 3, c.Stats().L1.Failures)
				} else {
					require.NotZero(t, c.Stats().L2.Failures)
				}
			})
		})
	}
}

// GetMany's error names the keys for which every layer failed, and wraps
// each layer's error; the values found are returned with it. A key one
// layer failed and the other answered or missed is no error.
func TestGetManyErrorNamesKeysEveryLayerFailed(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("ok", val("ok1"))
		l1.failReads(errL1Down, "l2-has", "both-fail", "l2-misses")
		l2.failReads(errL2Down, "both-fail")
		l2.put("l2-has", val("l2"))
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})

		got, err := c.GetMany(context.Background(), []string{"ok", "l2-has", "both-fail", "l2-misses"})
		require.Equal(t, map[string]string{"ok": "ok1", "l2-has": "l2"}, got)
		require.Error(t, err)
		require.True(t, strings.HasPrefix(err.Error(), "tiercache:"), err.Error())
		require.ErrorIs(t, err, errL1Down)
		require.ErrorIs(t, err, errL2Down)
		require.Contains(t, err.Error(), `"both-fail"`)
		named, notNamed := []string{`"both-fail"`}, []string{`"ok"`, `"l2-has"`}
		if bc.batch {
			// L2's GetMany failed for some keys: its nil entries, l2-misses
			// among them, are failures too.
			named = append(named, `"l2-misses"`)
		} else {
			notNamed = append(notNamed, `"l2-misses"`)
		}
		for _, k := range named {
			require.Contains(t, err.Error(), k)
		}
		for _, k := range notNamed {
			require.NotContains(t, err.Error(), k)
		}

		l2.failReads(nil) // L2 only misses now
		got, err = c.GetMany(context.Background(), []string{"ok", "l2-has", "l2-misses"})
		require.NoError(t, err, "L1 failed, L2 answered or missed")
		require.Equal(t, map[string]string{"ok": "ok1", "l2-has": "l2"}, got)
	})
}

// GetMany's error stays short however many keys failed: the keys are
// named up to a few, and each layer's error, shared by every key of a
// failed batch, is in it once.
func TestGetManyErrorStaysShortForManyFailedKeys(t *testing.T) {
	const n = 100
	eachBatchCaseOf(t, everyPolicy, nil, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.configure(func(b *fakeBackend) { b.getErr = errL1Down })
		l2.configure(func(b *fakeBackend) { b.getErr = errL2Down })
		c := openBatchCache(t, bc, l1, l2, nil)

		got, err := c.GetMany(context.Background(), keyRange("k", n))
		require.Empty(t, got)
		require.ErrorIs(t, err, errL1Down)
		require.ErrorIs(t, err, errL2Down)
		require.Contains(t, err.Error(), fmt.Sprintf("and %d more", n-5))
		require.Equal(t, 1, strings.Count(err.Error(), errL1Down.Error()), err.Error())
		require.Equal(t, 1, strings.Count(err.Error(), errL2Down.Error()), err.Error())
	})
}

// A loader error returns the values already found, with an error that
// wraps the loader's and names the keys it was asked for. It is not
// cached: the next call loads again.
func TestGetOrLoadManyLoaderError(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("a", val("a1"))
		c := openBatchCache(t, bc, l1, l2, nil)
		loader := loadMany(func(_ context.Context, call int, keys []string) (map[string]string, error) {
			if call == 1 {
				return nil, fmt.Errorf("products: %w", errOrigin)
			}
			return loadedValues(keys...), nil
		})

		got, err := c.GetOrLoadMany(context.Background(), []string{"a", "b", "c"}, loader.load)
		require.Equal(t, map[string]string{"a": "a1"}, got)
		require.ErrorIs(t, err, errOrigin)
		require.True(t, strings.HasPrefix(err.Error(), "tiercache:"), err.Error())
		require.Contains(t, err.Error(), `"b"`)
		require.Contains(t, err.Error(), `"c"`)
		require.EqualValues(t, 1, c.Stats().LoadErrors)
		synctest.Wait()
		requireMissing(t, l1.fakeBackend, "b")

		got, err = c.GetOrLoadMany(context.Background(), []string{"a", "b", "c"}, loader.load)
		require.NoError(t, err)
		require.Equal(t, map[string]string{"a": "a1", "b": "loaded-b", "c": "loaded-c"}, got)
		requireAsked(t, loader, []string{"b", "c"}, []string{"b", "c"})
	})
}

// A batch loader's error wrapping ErrNotFound says that none of the keys
// it was asked for exists: as if it had omitted them all, and as GetOrLoad
// takes its loader's ErrNotFound. The keys count in NotFound, not in
// LoadErrors, are absent from the result without an error, and with
// NegativeTTL are remembered.
func TestGetOrLoadManyLoaderNotFound(t *testing.T) {
	eachNegativeTTLBatchCase(t, func(t *testing.T, bc batchCase, negativeTTL time.Duration) {
		l1, l2 := bc.layers()
		l1.put("a", val("a1"))
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{NegativeTTL: negativeTTL})
		loader := loadMany(func(_ context.Context, call int, keys []string) (map[string]string, error) {
			if call == 1 {
				return loadedValues(keys...), fmt.Errorf("products: %w", tiercache.ErrNotFound)
			}
			return loadedValues(keys...), nil
		})
		single := countLoads(func(context.Context, int) (string, error) { return "single", nil })

		got, err := c.GetOrLoadMany(context.Background(), []string{"a", "b", "c"}, loader.load)
		require.NoError(t, err, "absent keys are no error")
		require.Equal(t, map[string]string{"a": "a1"}, got, "the map returned with the error is ignored")
		s := c.Stats()
		require.Zero(t, s.LoadErrors)
		require.EqualValues(t, 2, s.NotFound, "as keys the loader omitted")
		require.EqualValues(t, 1, s.Loads)
		synctest.Wait() // the L2 write

		got, err = c.GetOrLoadMany(context.Background(), []string{"a", "b", "c"}, loader.load)
		require.NoError(t, err)
		if negativeTTL == 0 {
			require.Equal(t, map[string]string{"a": "a1", "b": "loaded-b", "c": "loaded-c"}, got)
			requireAsked(t, loader, []string{"b", "c"}, []string{"b", "c"})
			return
		}
		require.Equal(t, map[string]string{"a": "a1"}, got)
		requireAsked(t, loader, []string{"b", "c"})
		requireRememberedAbsent(t, c, single, "b", l1, l2)
		requireRememberedAbsent(t, c, single, "c", l1, l2)
	})
}

// A panicking loader is an error holding a *PanicError, returned with the
// values already found; the host does not crash and the cache carries on.
func TestGetOrLoadManyLoaderPanic(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("a", val("a1"))
		c := openBatchCache(t, bc, l1, l2, nil)
		loader := loadMany(func(_ context.Context, call int, keys []string) (map[string]string, error) {
			if call == 1 {
				panic("origin exploded")
			}
			return loadedValues(keys...), nil
		})

		got, err := c.GetOrLoadMany(context.Background(), []string{"a", "b"}, loader.load)
		require.Equal(t, map[string]string{"a": "a1"}, got)
		var pe *tiercache.PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "origin exploded", pe.Value)
		require.NotEmpty(t, pe.Stack)
		require.Contains(t, err.Error(), `"b"`)

		got, err = c.GetOrLoadMany(context.Background(), []string{"a", "b"}, loader.load)
		require.NoError(t, err)
		require.Equal(t, map[string]string{"a": "a1", "b": "loaded-b"}, got)
	})
}

// With an Invalidator, a batch load announces its keys in one call, and
// the other caches evict them from their L1.
func TestGetOrLoadManyAnnouncesLoadedKeysInOneCall(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		bus := &fakeBus{}
		l1a, _ := bc.flusherL1()
		l1b, storeB := bc.flusherL1()
		l2 := newBatchLayer(bc.batch)
		opts := &tiercache.Options[string]{Invalidator: bus, Offload: &inlineOffload{}}
		a := openBatchCacheOver(t, bc, l1a, l2.backend(), opts)
		b := openBatchCacheOver(t, bc, l1b, l2.backend(), opts)
		storeB.put("x", val("old"))
		loader := loadMany(loadEvery)

		got, err := a.GetOrLoadMany(context.Background(), []string{"x", "y", "z"}, loader.load)
		require.NoError(t, err)
		require.Equal(t, loadedValues("x", "y", "z"), got)
		announced := bus.announcements()
		require.Len(t, announced, 1, "one Announce: %v", announced)
		require.ElementsMatch(t, []string{"x", "y", "z"}, announced[0])
		requireMissing(t, storeB, "x")
		require.EqualValues(t, 3, b.Stats().InvalidationsReceived)
		require.EqualValues(t, 3, a.Stats().InvalidationsSent)
	})
}

// flusherL1 returns an L1 of the case's kind that is a Flusher, as an
// Invalidator needs, and the store behind it.
func (bc batchCase) flusherL1() (tiercache.Backend[string], *fakeBackend) {
	if bc.batch {
		b := newFakeBatchBackend()
		return b, b.fakeBackend
	}
	b := newFlushBackend()
	return b, b.fakeBackend
}

// While the breaker is open, a batch load's L2 write is skipped as
// GetOrLoad's is: each key counts in Breaker.WritesSkipped, the write that
// did not happen counts in WriteErrors (one for the batch, as a failed
// batch write does), and no key is announced, since none reached L2.
func TestGetOrLoadManyBreakerOpenSkipsL2Write(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		ctx := context.Background()
		bus := &fakeBus{}
		l1, store := bc.flusherL1()
		l2 := newBatchLayer(bc.batch)
		c := openBatchCacheOver(t, bc, l1, l2.backend(), &tiercache.Options[string]{
			Breaker: tiercache.BreakerOptions{Failures: 1, CoolDown: time.Hour},
			Offload: &inlineOffload{}, Invalidator: bus,
		})
		l2.configure(func(b *fakeBackend) { b.getErr = errors.New("down") })
		_, _, err := c.Get(ctx, "trip")
		require.NoError(t, err)
		require.Equal(t, tiercache.BreakerOpen, c.Stats().Breaker.State)

		_, err = c.GetOrLoad(ctx, "one", func(context.Context) (string, error) { return "v", nil })
		require.NoError(t, err)
		s := c.Stats()
		require.EqualValues(t, 1, s.Breaker.WritesSkipped, "GetOrLoad, for reference")
		require.EqualValues(t, 1, s.WriteErrors, "GetOrLoad, for reference")
		require.Zero(t, s.InvalidationsSent, "GetOrLoad, for reference")

		got, err := c.GetOrLoadMany(ctx, []string{"x", "y"}, loadMany(loadEvery).load)
		require.NoError(t, err)
		require.Equal(t, loadedValues("x", "y"), got)
		s = c.Stats()
		require.EqualValues(t, 3, s.Breaker.WritesSkipped, "each key of the batch")
		require.EqualValues(t, 2, s.WriteErrors, "the batch's L2 write did not happen")
		require.Zero(t, s.InvalidationsSent, "no key reached L2: none announced")
		require.Empty(t, bus.announcements())
		require.Empty(t, l2.writes(), "L2 not called")
		for _, k := range []string{"x", "y"} {
			requireMissing(t, l2.fakeBackend, k)
			_, inL1 := store.peek(k)
			require.True(t, inL1, "the loaded value stays in L1")
		}
	})
}

// While the subscription is down L1 is read around: GetMany does not read
// it, so it counts no L1 read (Stats.L1 counts the layer's reads).
func TestGetManyCountsNoReadOfDistrustedL1(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, _ := bc.flusherL1()
		l2 := newBatchLayer(bc.batch)
		l2.put("b", val("b2"))
		c := openBatchCacheOver(t, bc, l1, l2.backend(), &tiercache.Options[string]{
			Invalidator: &fakeBus{down: true}, Offload: &inlineOffload{},
		})

		got, err := c.GetMany(context.Background(), []string{"a", "b"})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"b": "b2"}, got)
		s := c.Stats()
		require.Zero(t, s.L1.Hits+s.L1.Misses+s.L1.Failures, "L1 was not read")
		require.EqualValues(t, 2, s.L2.Hits+s.L2.Misses)
	})
}

// Stats count batch calls, the distinct keys they asked for, the keys
// their loads were asked for and the keys taken from another caller's
// load; Loads counts loader calls, single and batch.
func TestBatchStats(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("a", val("a1"))
		l2.put("b", val("b2"))
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillNever})
		loader := loadMany(loadEvery)
		require.Equal(t, tiercache.Stats{}, c.Stats())

		_, err := c.GetMany(context.Background(), []string{"a", "a", "b", "c"})
		require.NoError(t, err)
		s := c.Stats()
		require.EqualValues(t, 1, s.BatchCalls)
		require.EqualValues(t, 3, s.BatchKeys)
		require.Zero(t, s.BatchKeysLoaded)
		require.Zero(t, s.Loads)
		require.EqualValues(t, 3, s.L1.Hits+s.L1.Misses, "each key read from L1")

		_, err = c.GetOrLoadMany(context.Background(), []string{"a", "b", "c", "d"}, loader.load)
		require.NoError(t, err)
		s = c.Stats()
		require.EqualValues(t, 2, s.BatchCalls)
		require.EqualValues(t, 7, s.BatchKeys)
		require.EqualValues(t, 2, s.BatchKeysLoaded)
		require.EqualValues(t, 1, s.Loads)

		gate, open := loadGate(t)
		single := countLoads(func(context.Context, int) (string, error) {
			<-gate
			return "single-e", nil
		})
		singleRes := goGetOrLoad(t, context.Background(), c, "e", single.load)
		synctest.Wait()
		res := goGetOrLoadMany(t, context.Background(), c, []string{"e", "f"}, loader.load)
		synctest.Wait()
		open()
		require.NoError(t, awaitMany(t, res).err)
		require.NoError(t, awaitLoad(t, singleRes).err)
		s = c.Stats()
		require.EqualValues(t, 3, s.BatchCalls)
		require.EqualValues(t, 9, s.BatchKeys)
		require.EqualValues(t, 3, s.BatchKeysLoaded)
		require.EqualValues(t, 1, s.BatchKeysCoalesced)
		require.EqualValues(t, 3, s.Loads, "two batch loads and the single load")
	})
}

// Sixteen goroutines calling GetOrLoadMany, GetMany, Set and Delete on
// overlapping keys: no race (under -race), no error, and every value
// returned for a key is one that was written or loaded for it.
func TestBatchConcurrentUse(t *testing.T) {
	const workers, ops, keys = 16, 200, 12
	for _, lp := range everyPolicy {
		for _, batch := range []bool{true, false} {
			bc := batchCase{name: lp.name, policy: lp.policy, batch: batch}
			if !batch {
				bc.name += "/per-key"
			} else {
				bc.name += "/batch"
			}
			t.Run(bc.name, func(t *testing.T) {
				var mu sync.Mutex
				written := make(map[string]map[string]bool) // key -> values written or loaded for it
				record := func(key, v string) {
					mu.Lock()
					defer mu.Unlock()
					if written[key] == nil {
						written[key] = make(map[string]bool)
					}
					written[key][v] = true
				}
				check := func(w int, got map[string]string, asked []string) {
					mu.Lock()
					defer mu.Unlock()
					for k, v := range got {
						if !slices.Contains(asked, k) {
							t.Errorf("worker %d: %q returned, not asked for", w, k)
						}
						if !written[k][v] {
							t.Errorf("worker %d: %q = %q, never written or loaded", w, k, v)
						}
					}
				}
				l1, l2 := bc.layers()
				c, err := tiercache.New(l1.backend(), l2.backend(), &tiercache.Options[string]{
					ReadPolicy:  bc.policy,
					NegativeTTL: time.Millisecond,
					StaleAfter:  time.Millisecond,
					DefaultTTL:  time.Second,
				})
				require.NoError(t, err)
				var wg sync.WaitGroup
				for w := range workers {
					wg.Go(func() {
						rng := rand.New(rand.NewPCG(uint64(w), 7))
						for i := range ops {
							asked := make([]string, 1+rng.IntN(5))
							for j := range asked {
								asked[j] = fmt.Sprint("k", rng.IntN(keys))
							}
							var got map[string]string
							var err error
							switch rng.IntN(5) {
							case 0, 1:
								got, err = c.GetOrLoadMany(context.Background(), asked, func(_ context.Context, missing []string) (map[string]string, error) {
									out := make(map[string]string)
									for _, k := range missing {
										if rand.N(4) == 0 {
											continue // gone
										}
										v := fmt.Sprintf("%s|load|%d-%d", k, w, i)
										record(k, v)
										out[k] = v
									}
									return out, nil
								})
							case 2:
								got, err = c.GetMany(context.Background(), asked)
							case 3:
								v := fmt.Sprintf("%s|set|%d-%d", asked[0], w, i)
								record(asked[0], v)
								err = c.Set(context.Background(), asked[0], v, 0)
							case 4:
								err = c.Delete(context.Background(), asked[0])
							}
							if err != nil {
								t.Errorf("worker %d: %v", w, err)
								return
							}
							check(w, got, asked)
						}
					})
				}
				wg.Wait()
				require.NoError(t, c.Close(context.Background()))
				s := c.Stats()
				require.NotZero(t, s.BatchCalls)
				require.NotZero(t, s.BatchKeysLoaded)
			})
		}
	}
}

// refreshingStale opens a cache over bc whose key "k", stale in both
// layers, is being refreshed: the first call of the returned loader (the
// refresh's) is held until open is called; later calls load at once.
func refreshingStale(t *testing.T, bc batchCase) (c *tiercache.Cache[string], l1, l2 *batchLayer, loader *manyLoader, open func()) {
	t.Helper()
	l1, l2 = bc.layers()
	c = openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{StaleAfter: time.Minute})
	now := time.Now()
	stale := tiercache.CacheValue[string]{Data: "old", Stale: now.Add(-time.Second), Expire: now.Add(time.Hour)}
	l1.put("k", stale)
	l2.put("k", stale)
	gate, open := loadGate(t)
	loader = loadMany(func(_ context.Context, call int, keys []string) (map[string]string, error) {
		if call == 1 {
			<-gate
		}
		return loadedValues(keys...), nil
	})

	got, err := c.GetOrLoadMany(context.Background(), []string{"k"}, loader.load)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"k": "old"}, got)
	synctest.Wait()
	require.Equal(t, 1, loader.n(), "the refresh is loading")
	return c, l1, l2, loader, open
}

// A key a background refresh is loading is awaited by GetOrLoadMany when it
// has meanwhile left both layers, as GetOrLoad awaits it: no second load.
func TestGetOrLoadManyAwaitsRefreshInFlight(t *testing.T) {
	eachBatchCaseOf(t, everyPolicy, nil, func(t *testing.T, bc batchCase) {
		c, l1, l2, loader, open := refreshingStale(t, bc)
		clearBackend(l1.fakeBackend) // k expires, or is evicted, meanwhile
		clearBackend(l2.fakeBackend)

		res := goGetOrLoadMany(t, context.Background(), c, []string{"k"}, loader.load)
		synctest.Wait()
		requireNotReturned(t, res, "the refresh's load is awaited")
		require.Equal(t, 1, loader.n(), "the refresh's load is awaited, not repeated")
		open()
		r := awaitMany(t, res)
		require.NoError(t, r.err)
		require.Equal(t, loadedValues("k"), r.vals)
		require.Equal(t, 1, loader.n())
	})
}

// A key a background refresh is loading, missing from L1 but still in L2,
// is served from L2 by GetOrLoadMany, as GetOrLoad serves it: the batch does
// not wait for the refresh's load, nor load the key again. The other keys
// of the batch are read and loaded as usual.
func TestGetOrLoadManyReadsL2WhileRefreshRuns(t *testing.T) {
	eachBatchCaseOf(t, everyPolicy, nil, func(t *testing.T, bc batchCase) {
		c, l1, _, loader, open := refreshingStale(t, bc)
		clearBackend(l1.fakeBackend) // k is evicted from L1 meanwhile

		res := goGetOrLoadMany(t, context.Background(), c, []string{"k", "other"}, loader.load)
		synctest.Wait()
		r := manyResultNow(t, res)
		require.NoError(t, r.err)
		require.Equal(t, map[string]string{"k": "old", "other": loadedValues("other")["other"]}, r.vals)
		require.Equal(t, 2, loader.n(), "one load for other; k's refresh is still the only load of k")
		open()
		synctest.Wait()
		require.Equal(t, 2, loader.n())
	})
}

// A batch load that finishes after a Set or Delete of one of its keys
// does not undo that write in either layer; its callers still get the
// loaded value, and its other keys are stored.
func TestGetOrLoadManyDoesNotOverwriteNewerWrite(t *testing.T) {
	tests := []struct {
		name  string
		write func(c *tiercache.Cache[string]) error
		want  string // "": absent
	}{
		{name: "Set", write: func(c *tiercache.Cache[string]) error { return c.Set(context.Background(), "k", "set", 0) }, want: "set"},
		{name: "Delete", write: func(c *tiercache.Cache[string]) error { return c.Delete(context.Background(), "k") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachBatchCase(t, func(t *testing.T, bc batchCase) {
				l1, l2 := bc.layers()
				c := openBatchCache(t, bc, l1, l2, nil)
				gate, open := loadGate(t)
				loader := loadMany(func(_ context.Context, _ int, keys []string) (map[string]string, error) {
					<-gate
					return loadedValues(keys...), nil
				})

				res := goGetOrLoadMany(t, context.Background(), c, []string{"k"}, loader.load)
				synctest.Wait()
				require.Equal(t, 1, loader.n())
				require.NoError(t, tt.write(c))
				open()
				r := awaitMany(t, res)
				require.NoError(t, r.err)
				require.Equal(t, loadedValues("k"), r.vals, "the callers get the loaded value")
				synctest.Wait()
				for _, l := range []*batchLayer{l1, l2} {
					if tt.want == "" {
						requireMissing(t, l.fakeBackend, "k")
						continue
					}
					requireHolds(t, l.fakeBackend, "k", val(tt.want))
				}
			})
		})
	}
}

// failedKeysError names exactly the keys a GetMany failed for.
type failedKeysError struct{ keys []string }

func (e *failedKeysError) Error() string        { return "some keys failed" }
func (e *failedKeysError) FailedKeys() []string { return e.keys }

// A GetMany error that names its failed keys leaves the other nil entries
// misses: only the named keys count as failures.
func TestBatchBackendNamedFailedKeys(t *testing.T) {
	ctx := context.Background()
	l2 := newFakeBackend()
	l1 := tiercache.Backend[string](namedFailures{fakeBackend: newFakeBackend(), failed: []string{"bad"}})
	c := openCache(t, l1, l2, nil)
	_, err := c.GetMany(ctx, []string{"bad", "missing"})
	require.NoError(t, err)
	s := c.Stats()
	require.Equal(t, uint64(1), s.L1.Failures, "only the named key failed")
	require.Equal(t, uint64(1), s.L1.Misses)
}

// namedFailures is a BatchBackend whose GetMany fails the keys in failed and
// says so with a FailedKeys error.
type namedFailures struct {
	*fakeBackend
	failed []string
}

func (b namedFailures) GetMany(_ context.Context, keys []string) ([]*tiercache.CacheValue[string], error) {
	return make([]*tiercache.CacheValue[string], len(keys)), fmt.Errorf("wrapped: %w", &failedKeysError{b.failed})
}

func (b namedFailures) SetMany(context.Context, []string, []tiercache.CacheValue[string]) error {
	return nil
}

// TestLoadsOfKeysSharingStripesAllLand checks that values loaded at the
// same time all reach both layers, however their keys fall on the write
// guard's stripes: 3,000 keys, more than there are stripes, loaded by two
// concurrent batches (and by one GetOrLoad each), the first batch storing
// its values after the second has stored its own. A key is then loaded
// once, and read back from L1 without another load.
func TestLoadsOfKeysSharingStripesAllLand(t *testing.T) {
	const n = 1500
	keysA, keysB := make([]string, n), make([]string, n)
	for i := range n {
		keysA[i], keysB[i] = fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
	}
	check := func(t *testing.T, c *tiercache.Cache[string], l1, l2 *batchLayer, loads *atomic.Int64) {
		t.Helper()
		require.EqualValues(t, 2*n, loads.Load(), "each key loaded once")
		got, err := c.GetOrLoadMany(t.Context(), append(slices.Clone(keysA), keysB...), notLoading(t))
		require.NoError(t, err)
		require.Len(t, got, 2*n)
		synctest.Wait() // the L2 writes through the Offload
		for _, k := range append(slices.Clone(keysA), keysB...) {
			_, in1 := l1.peek(k)
			_, in2 := l2.peek(k)
			require.True(t, in1 && in2, "%s in L1: %v, in L2: %v", k, in1, in2)
		}
	}
	policies := []loadPolicy{sequentialPolicy, parallelPolicy}
	t.Run("GetOrLoadMany", func(t *testing.T) {
		eachBatchCaseOf(t, policies, nil, func(t *testing.T, bc batchCase) {
			l1, l2 := bc.layers()
			c := openBatchCache(t, bc, l1, l2, nil)
			var loads atomic.Int64
			bStored := make(chan struct{})
			aCalled := make(chan struct{})
			a := goGetOrLoadMany(t, t.Context(), c, keysA, func(ctx context.Context, keys []string) (map[string]string, error) {
				loads.Add(int64(len(keys)))
				close(aCalled)
				<-bStored
				return loadedValues(keys...), nil
			})
			<-aCalled
			_, err := c.GetOrLoadMany(t.Context(), keysB, func(ctx context.Context, keys []string) (map[string]string, error) {
				loads.Add(int64(len(keys)))
				return loadedValues(keys...), nil
			})
			require.NoError(t, err)
			synctest.Wait()
			close(bStored)
			require.NoError(t, awaitMany(t, a).err)
			check(t, c, l1, l2, &loads)
		})
	})
	t.Run("GetOrLoad", func(t *testing.T) {
		eachBatchCaseOf(t, policies, nil, func(t *testing.T, bc batchCase) {
			l1, l2 := bc.layers()
			// An Offload that sheds nothing: 3,000 L2 writes at once would
			// overflow the default pool's queue.
			unbounded := tiercache.OffloadFunc(func(_ string, task func(context.Context)) bool {
				go task(context.Background())
				return true
			})
			c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Offload: unbounded})
			var loads atomic.Int64
			release := make(chan struct{})
			var wg sync.WaitGroup
			for _, k := range append(slices.Clone(keysA), keysB...) {
				wg.Go(func() {
					_, err := c.GetOrLoad(t.Context(), k, func(ctx context.Context) (string, error) {
						loads.Add(1)
						<-release
						return "loaded-" + k, nil
					})
					assert.NoError(t, err)
				})
			}
			synctest.Wait() // every load has begun
			close(release)
			wg.Wait()
			check(t, c, l1, l2, &loads)
		})
	})
}

// GetOrLoadMany, like GetOrLoad, joins a flight waiting for its value to
// reach L2 only while the key has not been deleted (or written, or
// invalidated) since, and the value has not expired.
func TestGetOrLoadManyLeavesAFlightWhoseValueIsNoLongerGood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		off := &heldOffload{} // holds the L2 writes
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{Offload: off})
		t.Cleanup(func() { off.run() })
		_, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "first", nil })
		require.NoError(t, err)
		require.NoError(t, c.Delete(context.Background(), "k"))
		vals, err := c.GetOrLoadMany(context.Background(), []string{"k"}, func(_ context.Context, keys []string) (map[string]string, error) {
			return map[string]string{"k": "second"}, nil
		})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"k": "second"}, vals)
	})
}

// A batch refresh that takes a key over from a flight still reading L2
// loads the key once: when that read misses, the flight answers with the
// refresh's load.
func TestGetOrLoadManyRefreshWhileL2ReadInFlightLoadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, l1, openL2 := staleAfterMinuteHeldL2(t)
		var loads atomic.Int32
		load := func(context.Context) (string, error) {
			time.Sleep(time.Second)
			return fmt.Sprint("single load ", loads.Add(1)), nil
		}
		loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
			time.Sleep(time.Second)
			n := loads.Add(1)
			out := map[string]string{}
			for _, k := range keys {
				out[k] = fmt.Sprint("batch load ", n)
			}
			return out, nil
		}
		reading := goGetOrLoad(t, context.Background(), c, "k", load) // its L2 read waits
		synctest.Wait()
		l1.put("k", staleValue("old"))
		vals, err := c.GetOrLoadMany(context.Background(), []string{"k"}, loadMany) // served stale; refreshes
		require.NoError(t, err)
		require.Equal(t, map[string]string{"k": "old"}, vals)
		synctest.Wait()
		openL2()
		r := awaitLoad(t, reading)
		require.NoError(t, r.err)
		require.Equal(t, "batch load 1", r.v, "the flight answered with the refresh's load")
		synctest.Wait()
		require.EqualValues(t, 1, loads.Load(), "one load of the key")
	})
}

// As TestGetOrLoadDeleteBeforeAnswerIsNotUndone, for a batch load.
func TestGetOrLoadManyDeleteBeforeAnswerIsNotUndone(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		c, deleted := deletingBeforeAnswer(t, lp, "k")
		loadAs := func(v string) func(context.Context, []string) (map[string]string, error) {
			return func(_ context.Context, keys []string) (map[string]string, error) {
				m := map[string]string{}
				for _, k := range keys {
					m[k] = v
				}
				return m, nil
			}
		}
		m, err := c.GetOrLoadMany(context.Background(), []string{"k"}, loadAs("first"))
		require.NoError(t, err)
		require.Equal(t, map[string]string{"k": "first"}, m)
		require.True(t, *deleted)
		m, err = c.GetOrLoadMany(context.Background(), []string{"k"}, loadAs("second"))
		require.NoError(t, err)
		require.Equal(t, map[string]string{"k": "second"}, m, "the deleted value is not served again")
	})
}

// As TestGetOrLoadJoinsFlightUntilItsValueIsInL2, for a batch load.
func TestGetOrLoadManyJoinsFlightUntilItsValueIsInL2(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		c, l1, l2, _ := heldWritesCache(t, lp)
		loads := 0
		load := func(_ context.Context, keys []string) (map[string]string, error) {
			loads++
			return map[string]string{"k": "v"}, nil
		}
		require.NoError(t, c.Set(context.Background(), "k", "old", 0)) // the key's stripe has seen writes
		clearBackend(l1)
		clearBackend(l2)
		m, err := c.GetOrLoadMany(context.Background(), []string{"k"}, load)
		require.NoError(t, err)
		require.Equal(t, map[string]string{"k": "v"}, m)
		require.NoError(t, l1.Delete(context.Background(), "k")) // as if this caller had read L1 before the store
		m, err = c.GetOrLoadMany(context.Background(), []string{"k"}, load)
		require.NoError(t, err)
		require.Equal(t, map[string]string{"k": "v"}, m)
		require.Equal(t, 1, loads, "no second load")
	})
}

// As TestGetOrLoadNoRefreshWhileL2ReadInFlight, for a batch's flight: a
// refresh that takes a key over while GetOrLoadMany's L2 read of it is
// under way loads the key once.
func TestGetOrLoadManyNoRefreshWhileL2ReadInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, l1, openL2 := staleAfterMinuteHeldL2(t)
		var mu sync.Mutex
		loads := 0
		loadOne := func(context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			loads++
			return fmt.Sprint("v", loads), nil
		}
		loadMany := func(ctx context.Context, keys []string) (map[string]string, error) {
			v, err := loadOne(ctx)
			return map[string]string{"k": v}, err
		}

		reading := goCall(t, context.Background(), "GetOrLoadMany", func(ctx context.Context) map[string]string {
			m, err := c.GetOrLoadMany(ctx, []string{"k"}, loadMany) // its L2 read waits
			require.NoError(t, err)
			return m
		})
		synctest.Wait()
		// A stale copy shows up in L1 meanwhile; a caller is served it.
		l1.put("k", staleValue("old"))
		v, err := c.GetOrLoad(context.Background(), "k", loadOne)
		require.NoError(t, err)
		require.Equal(t, "old", v)
		synctest.Wait()
		openL2() // the batch's L2 read misses: it answers with the refresh's load
		m := await(t, reading, "GetOrLoadMany")
		require.Equal(t, map[string]string{"k": "v1"}, m)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 1, loads, "one load of the key")
	})
}

// Under the policies that read both layers at once, GetMany keeps the L2
// hits that came in before ctx ended, even when the L1 read, still running,
// ends with ctx: as for one key, a layer's hit wins whatever the other did,
// and the values found are returned with ctx's error. Repeated, since both
// the L2 answer and ctx's end are ready when L1 returns.
func TestGetManyKeepsL2HitsBeforeCtxEnd(t *testing.T) {
	eachBatchCaseOf(t, []loadPolicy{parallelPolicy, raceOffload, raceCancel}, nil, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.configure(func(b *fakeBackend) { b.delay = time.Hour })
		l2.put("a", tiercache.CacheValue[string]{Data: "v"}) // "b" misses: L2 does not answer every key
		c := newLoadTestCacheOver(t, l1.backend(), l2.backend(), &tiercache.Options[string]{ReadPolicy: bc.policy, Refill: tiercache.RefillNever})
		for range 20 {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(10*time.Millisecond, cancel)
			vals, err := c.GetMany(ctx, []string{"a", "b"})
			require.ErrorIs(t, err, context.Canceled)
			require.Equal(t, map[string]string{"a": "v"}, vals)
		}
	})
}

// A read a batch race cancelled because the other layer won, or because
// its caller left, is counted abandoned, not as a failure of its layer, as
// a single-key read is.
func TestGetManyCancelledReadIsAbandonedNotFailed(t *testing.T) {
	eachBatchCaseOf(t, []loadPolicy{raceCancel}, nil, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		l1.put("a", tiercache.CacheValue[string]{Data: "v1"})
		l1.configure(func(b *fakeBackend) { b.delay = time.Millisecond })
		l2.configure(func(b *fakeBackend) { b.delay = time.Hour })
		c := newLoadTestCacheOver(t, l1.backend(), l2.backend(), &tiercache.Options[string]{ReadPolicy: bc.policy, Refill: tiercache.RefillNever})
		vals, err := c.GetMany(context.Background(), []string{"a"})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"a": "v1"}, vals)
		synctest.Wait() // the losing L2 read has returned, cancelled
		s := c.Stats().L2
		require.Zero(t, s.Failures, "L2 lost the race; it did not fail")
		require.Equal(t, uint64(1), s.Abandoned)
	})
}

// A batch's flights share one ctx, ended when no caller holds any of them.
// A flight of the batch that its callers leave, and that a caller joins
// and leaves again while its value is on its way to L2, counts as left
// once: the batch's other flight, answering with the load of a refresh
// that took its key over, still has a caller and goes on until that load
// answers. Before, the second leave counted again, ended the batch's ctx
// and failed the waiting GetOrLoad with context.Canceled.
func TestGetOrLoadManyFlightLeftTwiceKeepsBatchForOthers(t *testing.T) {
	eachBatchCaseOf(t, []loadPolicy{sequentialPolicy}, nil, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		held := &heldOffload{}
		off := tiercache.OffloadFunc(func(kind string, task func(context.Context)) bool {
			if kind == tiercache.OffloadKindWriteL2 {
				return held.Go(kind, task) // y's value stays on its way to L2
			}
			go task(context.Background())
			return true
		})
		c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{
			Offload: off, StaleAfter: time.Minute, DefaultTTL: time.Hour,
		})
		openL2 := l2.holdReads(t)
		refreshGate, openRefresh := loadGate(t)
		t.Cleanup(func() {
			openRefresh()
			synctest.Wait() // a failing test's refresh hands its L2 write over
			held.run()
		})
		refreshLoad := func(ctx context.Context) (string, error) {
			select {
			case <-refreshGate:
				return "refreshed", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		notCalled := func(context.Context) (string, error) {
			t.Error("a single loader was called")
			return "", errors.New("unexpected load")
		}

		// The batch reads x and y from L2; a GetOrLoad of x joins it.
		ctx1, cancel1 := context.WithCancel(context.Background())
		defer cancel1()
		batch := goGetOrLoadMany(t, ctx1, c, []string{"x", "y"}, loadMany(loadEvery).load)
		synctest.Wait()
		single := goGetOrLoad(t, context.Background(), c, "x", notCalled)
		synctest.Wait()
		// A stale x shows up in L1: served, and its refresh takes x over.
		l1.put("x", staleValue("old"))
		v, err := c.GetOrLoad(context.Background(), "x", refreshLoad)
		require.NoError(t, err)
		require.Equal(t, "old", v)
		synctest.Wait()
		// L2 misses both: x follows the refresh's load, y is loaded by the
		// batch and stays in the group until its L2 write lands.
		openL2()
		synctest.Wait()
		cancel1() // the batch's caller leaves x and y
		synctest.Wait()
		require.ErrorIs(t, manyResultNow(t, batch).err, context.Canceled)
		// y is joined again, from its flight, and left.
		require.NoError(t, l1.fakeBackend.Delete(context.Background(), "y"))
		v, err = c.GetOrLoad(context.Background(), "y", notCalled)
		require.NoError(t, err)
		require.Equal(t, "loaded-y", v)
		synctest.Wait()

		requireNotReturned := func() {
			t.Helper()
			select {
			case r := <-single:
				require.FailNow(t, "GetOrLoad of x returned before the refresh's load", "%q, %v", r.v, r.err)
			default:
			}
		}
		requireNotReturned()
		openRefresh()
		r := awaitLoad(t, single)
		require.NoError(t, r.err)
		require.Equal(t, "refreshed", r.v)
	})
}

// A refresh runs as a task of the Offload, and its load ends with that
// task's ctx (at TaskTimeout here) when no caller waits for it: a batch
// refresh as a single key's refresh does. Before, a batch refresh loaded
// on a ctx of its own, past TaskTimeout and a shared pool's Close, until
// the cache's Close.
func TestGetOrLoadManyRefreshEndsWithItsTask(t *testing.T) {
	calls := []struct {
		name    string
		refresh func(c *tiercache.Cache[string], load func(context.Context) (string, error)) (string, error)
	}{
		{name: "GetOrLoad", refresh: func(c *tiercache.Cache[string], load func(context.Context) (string, error)) (string, error) {
			return c.GetOrLoad(context.Background(), "k", load)
		}},
		{name: "GetOrLoadMany", refresh: func(c *tiercache.Cache[string], load func(context.Context) (string, error)) (string, error) {
			m, err := c.GetOrLoadMany(context.Background(), []string{"k"}, func(ctx context.Context, _ []string) (map[string]string, error) {
				v, err := load(ctx)
				return map[string]string{"k": v}, err
			})
			return m["k"], err
		}},
	}
	for _, call := range calls {
		t.Run(call.name, func(t *testing.T) {
			eachBatchCaseOf(t, everyPolicy, nil, func(t *testing.T, bc batchCase) {
				l1, l2 := bc.layers()
				pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{TaskTimeout: time.Second})
				t.Cleanup(func() { require.NoError(t, pool.Close(context.Background())) })
				c := openBatchCache(t, bc, l1, l2, &tiercache.Options[string]{Offload: pool, StaleAfter: time.Minute})
				l1.put("k", staleValue("old"))
				l2.put("k", staleValue("old"))
				start := time.Now()
				ended := make(chan time.Time, 1)
				load := func(ctx context.Context) (string, error) {
					<-ctx.Done()
					ended <- time.Now()
					return "", ctx.Err()
				}

				v, err := call.refresh(c, load)
				require.NoError(t, err)
				require.Equal(t, "old", v, "served stale")
				select {
				case at := <-ended:
					require.Equal(t, time.Second, at.Sub(start), "the refresh's load ends at TaskTimeout")
				case <-time.After(time.Hour):
					require.FailNow(t, "the refresh's load outlived its task's ctx")
				}
				require.NoError(t, pool.Wait(context.Background()))
			})
		})
	}
}

// A batch whose every caller left during its L2 read does not go on to
// load: the loader is not called with the ended ctx, and no load or load
// error is counted, as for a GetOrLoad whose callers left during its read.
func TestGetOrLoadManyLeftDuringL2ReadDoesNotLoad(t *testing.T) {
	eachBatchCaseOf(t, []loadPolicy{sequentialPolicy}, nil, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, nil)
		gate, openL2 := loadGate(t)
		l2.configure(func(b *fakeBackend) { b.gate = gate }) // Get and GetMany
		loader := loadMany(loadEvery)
		single := countLoads(func(context.Context, int) (string, error) { return "single", nil })

		ctx, cancel := context.WithCancel(context.Background())
		res := goGetOrLoadMany(t, ctx, c, []string{"a", "b"}, loader.load)
		one := goGetOrLoad(t, ctx, c, "c", single.load)
		synctest.Wait()
		cancel()
		synctest.Wait()
		require.ErrorIs(t, manyResultNow(t, res).err, context.Canceled)
		require.ErrorIs(t, loadResultNow(t, one).err, context.Canceled)
		openL2()
		synctest.Wait()
		require.Zero(t, single.n(), "GetOrLoad, for reference")
		require.Zero(t, loader.n(), "no caller is left to load for")
		s := c.Stats()
		require.Zero(t, s.Loads)
		require.Zero(t, s.LoadErrors)
		require.Zero(t, s.BatchKeysLoaded)
	})
}

// An L1 value that expires while the batch waits for L2 (which another key
// needs, or which a policy reading both layers waits for) is a miss, as
// for one key: GetMany leaves it out, and GetOrLoadMany under a policy
// reading both layers loads it with the keys that missed.
func TestBatchDoesNotServeL1ValueExpiredWhileL2WasRead(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, nil)
		l2.configure(func(b *fakeBackend) { b.delay = 2 * time.Second })
		expiring := tiercache.CacheValue[string]{Data: "old", Expire: time.Now().Add(time.Second)}

		l1.put("a", expiring)
		got, err := c.GetMany(context.Background(), []string{"a", "b"})
		require.NoError(t, err)
		require.Empty(t, got, "served a second past its Expire")

		l1.put("a", expiring)
		loader := loadMany(loadEvery)
		got, err = c.GetOrLoadMany(context.Background(), []string{"a", "b"}, loader.load)
		require.NoError(t, err)
		require.Equal(t, loadedValues("a", "b"), got)
	})
}

// A hit GetOrLoadMany read before waiting for the loads of its misses, and
// that expired during that wait, is not returned: it is read from L2 and
// loaded as a miss.
func TestGetOrLoadManyHitExpiredWhileOthersLoadedIsReloaded(t *testing.T) {
	eachBatchCase(t, func(t *testing.T, bc batchCase) {
		l1, l2 := bc.layers()
		c := openBatchCache(t, bc, l1, l2, nil)
		l1.put("a", tiercache.CacheValue[string]{Data: "old", Expire: time.Now().Add(time.Second)})
		var asked [][]string
		load := func(_ context.Context, keys []string) (map[string]string, error) {
			asked = append(asked, keys)
			time.Sleep(2 * time.Second) // "a" expires meanwhile
			m := map[string]string{}
			for _, k := range keys {
				m[k] = "loaded " + k
			}
			return m, nil
		}
		got, err := c.GetOrLoadMany(context.Background(), []string{"a", "b"}, load)
		require.NoError(t, err)
		require.Equal(t, map[string]string{"a": "loaded a", "b": "loaded b"}, got, "not the value that expired a second before")
		require.Equal(t, [][]string{{"b"}, {"a"}}, asked)
	})
}
