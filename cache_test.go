package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// openCache returns a Cache over l1 and l2 that is closed, and must close
// cleanly, when the test ends.
func openCache(t *testing.T, l1, l2 tiercache.Backend[string], opts *tiercache.Options[string]) *tiercache.Cache[string] {
	t.Helper()
	c, err := tiercache.New(l1, l2, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close(context.Background())) })
	return c
}

// inlineOffload runs every task at once on the submitting goroutine, so that
// background work is over when the call that started it returns. It records
// the kinds it ran.
type inlineOffload struct {
	mu    sync.Mutex
	kinds []string
}

func (o *inlineOffload) Go(kind string, task func(context.Context)) bool {
	o.mu.Lock()
	o.kinds = append(o.kinds, kind)
	o.mu.Unlock()
	task(context.Background())
	return true
}

func (o *inlineOffload) ran() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.kinds...)
}

// heldOffload accepts tasks and holds them until run is called, so that a
// test decides when background work happens. A Cache's Close waits for the
// tasks it handed over: run them before closing.
type heldOffload struct {
	mu    sync.Mutex
	kinds []string
	tasks []func(context.Context)
}

func (o *heldOffload) Go(kind string, task func(context.Context)) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kinds = append(o.kinds, kind)
	o.tasks = append(o.tasks, task)
	return true
}

// run runs the tasks held so far and returns their kinds.
func (o *heldOffload) run() []string {
	o.mu.Lock()
	tasks, kinds := o.tasks, o.kinds
	o.tasks, o.kinds = nil, nil
	o.mu.Unlock()
	for _, task := range tasks {
		task(context.Background())
	}
	return kinds
}

var (
	_ tiercache.Offload = (*inlineOffload)(nil)
	_ tiercache.Offload = (*heldOffload)(nil)
)

// hookedBackend is a fakeBackend with hooks around single operations, for
// what the fake's own gate and delay, which apply to every operation, cannot
// do: hold one kind of operation only, or record the order of operations
// across both layers. The hooks are set before the Cache is made and never
// changed.
type hookedBackend struct {
	*fakeBackend
	// afterGet runs once the fake has answered a Get, before the answer is
	// returned: a Get it holds has already read its value. An error it
	// returns replaces the answer.
	afterGet func(ctx context.Context) error
	// beforeSet and beforeDelete run before the fake sees the operation; an
	// error they return is the operation's.
	beforeSet    func(ctx context.Context) error
	beforeDelete func(ctx context.Context) error
}

var _ tiercache.Backend[string] = (*hookedBackend)(nil)

func (b *hookedBackend) Get(ctx context.Context, key string) (*tiercache.CacheValue[string], error) {
	v, err := b.fakeBackend.Get(ctx, key)
	if b.afterGet != nil {
		if herr := b.afterGet(ctx); herr != nil {
			return nil, herr
		}
	}
	return v, err
}

func (b *hookedBackend) Set(ctx context.Context, key string, v tiercache.CacheValue[string]) error {
	if b.beforeSet != nil {
		if err := b.beforeSet(ctx); err != nil {
			return err
		}
	}
	return b.fakeBackend.Set(ctx, key, v)
}

func (b *hookedBackend) Delete(ctx context.Context, key string) error {
	if b.beforeDelete != nil {
		if err := b.beforeDelete(ctx); err != nil {
			return err
		}
	}
	return b.fakeBackend.Delete(ctx, key)
}

// waitFor blocks until gate is closed or ctx ends, like a backend call that
// honours ctx.
func waitFor(ctx context.Context, gate <-chan struct{}) error {
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// slowSets returns a backend whose Sets take d, or end with their ctx
// first; its other operations answer at once.
func slowSets(d time.Duration) *hookedBackend {
	return &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: func(ctx context.Context) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
}

// opLog records operations, in order, across goroutines.
type opLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opLog) add(op string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
}

func (l *opLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ops...)
}

// logSets returns a beforeSet hook that records "name.Set" in log.
func logSets(log *opLog, name string) func(context.Context) error {
	return func(context.Context) error {
		log.add(name + ".Set")
		return nil
	}
}

// setLog returns a copy of every value b stored through Set, in order.
func setLog(b *fakeBackend) []tiercache.CacheValue[string] {
	var log []tiercache.CacheValue[string]
	b.configure(func(b *fakeBackend) { log = append(log, b.setLog...) })
	return log
}

// requireHolds fails unless b holds want for key, comparing times as
// instants.
func requireHolds(t *testing.T, b *fakeBackend, key string, want tiercache.CacheValue[string]) {
	t.Helper()
	got, ok := b.peek(key)
	require.True(t, ok, "%q is missing", key)
	requireSameValue(t, want, got)
}

func requireSameValue(t *testing.T, want, got tiercache.CacheValue[string]) {
	t.Helper()
	require.Equal(t, want.Data, got.Data, "Data")
	require.Equal(t, want.Negative, got.Negative, "Negative")
	require.True(t, want.Expire.Equal(got.Expire), "Expire: want %v, got %v", want.Expire, got.Expire)
	require.True(t, want.Stale.Equal(got.Stale), "Stale: want %v, got %v", want.Stale, got.Stale)
}

// requireMissing fails if b holds key.
func requireMissing(t *testing.T, b *fakeBackend, key string) {
	t.Helper()
	v, ok := b.peek(key)
	require.False(t, ok, "%q is still there: %+v", key, v)
}

func TestGetReadsThroughReadPolicy(t *testing.T) {
	l1, l2 := newFakeBackend(), newFakeBackend()
	l2.put("k", tiercache.CacheValue[string]{Data: "v"})
	var calls atomic.Int32
	counting := tiercache.ReadPolicyFunc[string](func(ctx context.Context, key string, r1, r2 tiercache.ReadFunc[string], off tiercache.Offload) (tiercache.ReadResult[string], error) {
		calls.Add(1)
		require.Equal(t, "k", key)
		require.NotNil(t, off, "the policy gets the cache's Offload")
		return tiercache.SequentialReadPolicy[string]{}.Read(ctx, key, r1, r2, off)
	})
	c := openCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: counting, Offload: &inlineOffload{}})

	for range 2 { // an L2 hit, refilled; then an L1 hit
		got, ok, err := c.Get(t.Context(), "k")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "v", got)
	}
	require.Equal(t, int32(2), calls.Load())
	require.Equal(t, backendCalls{gets: 2, sets: 1}, l1.calls(), "the policy's L1 reader reads L1")
	require.Equal(t, backendCalls{gets: 1}, l2.calls(), "the policy's L2 reader reads L2")
}

func TestGetAnswersWhatThePolicyAnswers(t *testing.T) {
	l1, l2 := newFakeBackend(), newFakeBackend()
	madeUp := tiercache.ReadPolicyFunc[string](func(context.Context, string, tiercache.ReadFunc[string], tiercache.ReadFunc[string], tiercache.Offload) (tiercache.ReadResult[string], error) {
		return tiercache.ReadResult[string]{
			Value:  &tiercache.CacheValue[string]{Data: "from the policy"},
			Source: tiercache.L1,
			L1:     tiercache.LayerReport{Status: tiercache.StatusHit},
		}, nil
	})
	c := openCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: madeUp})

	got, ok, err := c.Get(t.Context(), "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "from the policy", got)
	require.Equal(t, backendCalls{}, l1.calls())
	require.Equal(t, backendCalls{}, l2.calls())
	require.Equal(t, uint64(1), c.Stats().L1.Hits, "the policy's reports are counted")
}

func TestGetReadPolicyOption(t *testing.T) {
	tests := []struct {
		name       string
		policy     tiercache.ReadPolicy[string]
		wantL2Gets int
	}{
		{name: "default is sequential: an L1 hit skips L2", policy: nil, wantL2Gets: 0},
		{name: "ParallelReadPolicy reads L2 even on an L1 hit", policy: tiercache.ParallelReadPolicy[string]{}, wantL2Gets: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			l1.put("k", tiercache.CacheValue[string]{Data: "v"})
			l2.put("k", tiercache.CacheValue[string]{Data: "v"})
			c := openCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: tt.policy, Offload: &inlineOffload{}})

			got, ok, err := c.Get(t.Context(), "k")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "v", got)
			require.Equal(t, 1, l1.calls().gets)
			require.Equal(t, tt.wantL2Gets, l2.calls().gets)
		})
	}
}

func TestGetMiss(t *testing.T) {
	l1, l2 := newFakeBackend(), newFakeBackend()
	off := &inlineOffload{}
	c := openCache(t, l1, l2, &tiercache.Options[string]{Offload: off})

	got, ok, err := c.Get(t.Context(), "k")
	require.NoError(t, err, "a miss is not an error")
	require.False(t, ok)
	require.Empty(t, got)
	s := c.Stats()
	require.Equal(t, uint64(1), s.L1.Misses)
	require.Equal(t, uint64(1), s.L2.Misses)
	require.Empty(t, off.ran(), "nothing to refill")
	require.Zero(t, l1.calls().sets)
}

func TestGetNegativeEntry(t *testing.T) {
	tests := []struct {
		name  string
		layer tiercache.Layer
	}{
		{name: "in L1", layer: tiercache.L1},
		{name: "in L2", layer: tiercache.L2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			neg := tiercache.CacheValue[string]{Negative: true, Expire: time.Now().Add(time.Hour)}
			if tt.layer == tiercache.L1 {
				l1.put("k", neg)
			} else {
				l2.put("k", neg)
			}
			c := openCache(t, l1, l2, &tiercache.Options[string]{Offload: &inlineOffload{}})

			got, ok, err := c.Get(t.Context(), "k")
			require.NoError(t, err)
			require.False(t, ok)
			require.Empty(t, got)
			s := c.Stats()
			require.Equal(t, uint64(1), s.NegativeHits)
			if tt.layer == tiercache.L1 {
				require.Equal(t, uint64(1), s.L1.Hits, "a remembered absence is a layer hit")
			} else {
				require.Equal(t, uint64(1), s.L2.Hits, "a remembered absence is a layer hit")
			}
		})
	}
}

func TestGetErrorOnlyWhenEveryLayerFailed(t *testing.T) {
	errL1 := errors.New("L1 is down")
	errL2 := errors.New("L2 is down")
	policies := []struct {
		name   string
		policy tiercache.ReadPolicy[string]
	}{
		{name: "sequential", policy: nil},
		{name: "parallel", policy: tiercache.ParallelReadPolicy[string]{}},
	}
	tests := []struct {
		name             string
		l1Err, l2Err     error
		l2Has            bool
		wantErr          bool
		wantOK           bool
		wantL1F, wantL2F uint64 // failures counted
	}{
		{name: "both fail", l1Err: errL1, l2Err: errL2, wantErr: true, wantL1F: 1, wantL2F: 1},
		{name: "L1 fails, L2 misses", l1Err: errL1, wantL1F: 1},
		{name: "L1 misses, L2 fails", l2Err: errL2, wantL2F: 1},
		{name: "L1 fails, L2 hits", l1Err: errL1, l2Has: true, wantOK: true, wantL1F: 1},
	}
	for _, p := range policies {
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				l1.configure(func(b *fakeBackend) { b.getErr = tt.l1Err })
				l2.configure(func(b *fakeBackend) { b.getErr = tt.l2Err })
				if tt.l2Has {
					l2.put("user:42", tiercache.CacheValue[string]{Data: "v"})
				}
				c := openCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: p.policy, Offload: &inlineOffload{}})

				got, ok, err := c.Get(t.Context(), "user:42")
				if tt.wantErr {
					require.Error(t, err)
					require.ErrorIs(t, err, errL1)
					require.ErrorIs(t, err, errL2)
					require.ErrorContains(t, err, "tiercache:")
					require.ErrorContains(t, err, "user:42")
				} else {
					require.NoError(t, err)
				}
				require.Equal(t, tt.wantOK, ok)
				if tt.wantOK {
					require.Equal(t, "v", got)
				}
				s := c.Stats()
				require.Equal(t, tt.wantL1F, s.L1.Failures, "L1 failures")
				require.Equal(t, tt.wantL2F, s.L2.Failures, "L2 failures")
			})
		}
	}
}

func TestGetLayerTimeouts(t *testing.T) {
	const l1Timeout, l2Timeout = 10 * time.Millisecond, 50 * time.Millisecond
	tests := []struct {
		name        string
		slow        tiercache.Layer
		l2Has       bool
		wantOK      bool
		wantElapsed time.Duration
	}{
		{name: "slow L1 times out and Get falls through to L2", slow: tiercache.L1, l2Has: true, wantOK: true, wantElapsed: l1Timeout},
		{name: "slow L2 times out and Get is a miss", slow: tiercache.L2, wantOK: false, wantElapsed: l2Timeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				slow := l1
				if tt.slow == tiercache.L2 {
					slow = l2
				}
				slow.configure(func(b *fakeBackend) { b.delay = time.Hour })
				if tt.l2Has {
					l2.put("k", tiercache.CacheValue[string]{Data: "v"})
				}
				c := openCache(t, l1, l2, &tiercache.Options[string]{
					L1Timeout: l1Timeout,
					L2Timeout: l2Timeout,
					Refill:    tiercache.RefillNever,
				})

				start := time.Now()
				got, ok, err := c.Get(t.Context(), "k")
				require.Equal(t, tt.wantElapsed, time.Since(start))
				require.NoError(t, err, "one layer failing is not an error")
				require.Equal(t, tt.wantOK, ok)
				if tt.wantOK {
					require.Equal(t, "v", got)
				}
				s := c.Stats()
				if tt.slow == tiercache.L1 {
					require.Equal(t, uint64(1), s.L1.Failures)
				} else {
					require.Equal(t, uint64(1), s.L2.Failures)
				}
			})
		})
	}
}

func TestWriteLayerTimeouts(t *testing.T) {
	const l1Timeout, l2Timeout = 10 * time.Millisecond, 50 * time.Millisecond
	tests := []struct {
		name       string
		slow       tiercache.Layer
		op         func(ctx context.Context, c *tiercache.Cache[string]) error
		maxElapsed time.Duration
	}{
		{
			name:       "Set, slow L1",
			slow:       tiercache.L1,
			op:         func(ctx context.Context, c *tiercache.Cache[string]) error { return c.Set(ctx, "k", "v", 0) },
			maxElapsed: 2 * l1Timeout, // the write, then the eviction
		},
		{
			name:       "Set, slow L2",
			slow:       tiercache.L2,
			op:         func(ctx context.Context, c *tiercache.Cache[string]) error { return c.Set(ctx, "k", "v", 0) },
			maxElapsed: l2Timeout,
		},
		{
			name:       "Delete, slow L1",
			slow:       tiercache.L1,
			op:         func(ctx context.Context, c *tiercache.Cache[string]) error { return c.Delete(ctx, "k") },
			maxElapsed: l1Timeout,
		},
		{
			name:       "Delete, slow L2",
			slow:       tiercache.L2,
			op:         func(ctx context.Context, c *tiercache.Cache[string]) error { return c.Delete(ctx, "k") },
			maxElapsed: l2Timeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				slow := l1
				if tt.slow == tiercache.L2 {
					slow = l2
				}
				slow.configure(func(b *fakeBackend) { b.delay = time.Hour })
				c := openCache(t, l1, l2, &tiercache.Options[string]{L1Timeout: l1Timeout, L2Timeout: l2Timeout})

				start := time.Now()
				err := tt.op(t.Context(), c)
				elapsed := time.Since(start)
				require.ErrorIs(t, err, context.DeadlineExceeded)
				require.ErrorContains(t, err, tt.slow.String(), "the error names the layer")
				require.LessOrEqual(t, elapsed, tt.maxElapsed)
			})
		})
	}
}

// ctxRecorder records the ctx of each operation of a hookedBackend.
type ctxRecorder struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (r *ctxRecorder) record(ctx context.Context) error {
	r.mu.Lock()
	r.ctxs = append(r.ctxs, ctx)
	r.mu.Unlock()
	return nil
}

func (r *ctxRecorder) seen() []context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ctxs)
}

// recordingBackend returns a fakeBackend whose operations record their ctx
// in r.
func recordingBackend(r *ctxRecorder) *hookedBackend {
	return &hookedBackend{fakeBackend: newFakeBackend(), afterGet: r.record, beforeSet: r.record, beforeDelete: r.record}
}

// A layer timeout bounds each operation of the layer; a caller whose own
// deadline comes first is already bounded by it, and its ctx reaches the
// backend as it is (no derived ctx, no timer).
func TestLayerTimeoutAndCallerDeadline(t *testing.T) {
	const layerTimeout = time.Second
	ops := []struct {
		name       string
		op         func(ctx context.Context, c *tiercache.Cache[string]) error
		l1Detached bool // L1's operation runs without the caller's lifetime, under L1Timeout alone
	}{
		{name: "Get", op: func(ctx context.Context, c *tiercache.Cache[string]) error { _, _, err := c.Get(ctx, "k"); return err }},
		{name: "Set", op: func(ctx context.Context, c *tiercache.Cache[string]) error { return c.Set(ctx, "k", "v", 0) }},
		// Delete clears L1 even when the caller's ctx has ended.
		{name: "Delete", op: func(ctx context.Context, c *tiercache.Cache[string]) error { return c.Delete(ctx, "k") }, l1Detached: true},
	}
	deadlines := []struct {
		name      string
		deadline  time.Duration // the caller's, from now
		derived   bool          // the backend sees a ctx of its own
		backendAt time.Duration // the deadline the backend sees, from now
	}{
		{name: "caller's deadline nearer", deadline: 10 * time.Millisecond, backendAt: 10 * time.Millisecond},
		{name: "caller's deadline equal", deadline: layerTimeout, backendAt: layerTimeout},
		{name: "caller's deadline later", deadline: time.Hour, derived: true, backendAt: layerTimeout},
	}
	for _, op := range ops {
		for _, dl := range deadlines {
			t.Run(op.name+"/"+dl.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					l1, l2 := &ctxRecorder{}, &ctxRecorder{}
					c := openCache(t, recordingBackend(l1), recordingBackend(l2), &tiercache.Options[string]{L1Timeout: layerTimeout, L2Timeout: layerTimeout, Offload: &inlineOffload{}})
					ctx, cancel := context.WithTimeout(t.Context(), dl.deadline)
					defer cancel()
					start := time.Now()
					require.NoError(t, op.op(ctx, c))
					for _, b := range []*ctxRecorder{l1, l2} {
						derived, at := dl.derived, dl.backendAt
						if b == l1 && op.l1Detached {
							derived, at = true, layerTimeout
						}
						seen := b.seen()
						require.NotEmpty(t, seen)
						for _, got := range seen {
							require.Equal(t, !derived, got == ctx, "the backend has the caller's ctx itself")
							end, ok := got.Deadline()
							require.True(t, ok)
							require.Equal(t, start.Add(at), end)
						}
					}
				})
			})
		}
	}
}

func TestRefillCopiesL2HitIntoL1(t *testing.T) {
	tests := []struct {
		name     string
		l1MaxTTL time.Duration
		negative bool
		stale    time.Duration // from now; 0: never stale
		expire   time.Duration // from now; 0: never expires
		want     time.Duration // the L1 copy's Expire from now; 0: never
	}{
		{name: "keeps Stale and Expire", stale: time.Minute, expire: time.Hour, want: time.Hour},
		{name: "keeps an Expire under L1MaxTTL", l1MaxTTL: 2 * time.Hour, stale: time.Minute, expire: time.Hour, want: time.Hour},
		{name: "caps Expire at L1MaxTTL", l1MaxTTL: 10 * time.Minute, stale: time.Minute, expire: time.Hour, want: 10 * time.Minute},
		{name: "caps a value that never expires", l1MaxTTL: 10 * time.Minute, stale: time.Minute, want: 10 * time.Minute},
		{name: "no cap, never expires", stale: time.Minute},
		{name: "remembered absence", negative: true, expire: time.Hour, want: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				at := func(d time.Duration) time.Time {
					if d == 0 {
						return time.Time{}
					}
					return now.Add(d)
				}
				l1, l2 := newFakeBackend(), newFakeBackend()
				inL2 := tiercache.CacheValue[string]{Negative: tt.negative, Stale: at(tt.stale), Expire: at(tt.expire)}
				if !tt.negative {
					inL2.Data = "v"
				}
				l2.put("k", inL2)
				off := &inlineOffload{}
				c := openCache(t, l1, l2, &tiercache.Options[string]{L1MaxTTL: tt.l1MaxTTL, Offload: off})

				_, _, err := c.Get(t.Context(), "k")
				require.NoError(t, err)
				want := inL2
				want.Expire = at(tt.want)
				requireHolds(t, l1, "k", want)
				require.Equal(t, []string{tiercache.OffloadKindRefill}, off.ran())
				require.Equal(t, uint64(1), c.Stats().Refills)
				requireHolds(t, l2, "k", inL2) // L2 is left alone
				require.Zero(t, l2.calls().sets)
			})
		})
	}
}

func TestGetDoesNotWaitForRefill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var refilling atomic.Bool
		l1 := &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: func(ctx context.Context) error {
			refilling.Store(true)
			return waitFor(ctx, gate)
		}}
		l2 := newFakeBackend()
		l2.put("k", tiercache.CacheValue[string]{Data: "v"})
		c := openCache(t, l1, l2, nil) // the cache's own OffloadPool

		got, ok, err := c.Get(t.Context(), "k") // a deadlock if Get waited for the refill
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "v", got)
		synctest.Wait()
		require.True(t, refilling.Load(), "the refill has started")
		requireMissing(t, l1.fakeBackend, "k")
		require.Zero(t, c.Stats().Refills)

		close(gate)
		require.NoError(t, c.Close(t.Context()))
		requireHolds(t, l1.fakeBackend, "k", tiercache.CacheValue[string]{Data: "v"})
		require.Equal(t, uint64(1), c.Stats().Refills)
	})
}

// TestFlightFollowUpsHoldAnOffloadSlot pins how a flight's follow-up work
// (the refill of an L2 hit, the L2 write of a loaded value), which the
// flight's goroutine runs itself once its callers have their answer, is
// bound by the OffloadPool: it holds one of its slots while it runs, waits
// in its queue when every slot is taken, and is refused, and counted, when
// the queue has no room either.
func TestFlightFollowUpsHoldAnOffloadSlot(t *testing.T) {
	followUps := []struct {
		name    string
		l2Holds bool // the key is in L2: GetOrLoad hits it and refills L1
	}{
		{name: "refill of an L2 hit", l2Holds: true},
		{name: "L2 write of a loaded value"},
	}
	rooms := []struct {
		name       string
		slotsTaken bool
		maxQueued  int
	}{
		{name: "free slot"},
		{name: "every slot taken", slotsTaken: true},
		{name: "every slot taken, no queue", slotsTaken: true, maxQueued: -1},
	}
	for _, fu := range followUps {
		for _, room := range rooms {
			t.Run(fu.name+"/"+room.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1, MaxQueued: room.maxQueued})
					t.Cleanup(func() { require.NoError(t, pool.Close(context.Background())) })
					release := make(chan struct{})
					if room.slotsTaken {
						require.True(t, pool.Go("blocker", func(context.Context) { <-release }))
					}
					gate := make(chan struct{})
					var started atomic.Bool
					hook := func(ctx context.Context) error {
						started.Store(true)
						return waitFor(ctx, gate)
					}
					l1 := &hookedBackend{fakeBackend: newFakeBackend()}
					l2 := &hookedBackend{fakeBackend: newFakeBackend()}
					target := l2 // the layer the follow-up writes
					if fu.l2Holds {
						l2.put("k", tiercache.CacheValue[string]{Data: "v"})
						target = l1
					}
					target.beforeSet = hook
					c := openCache(t, l1, l2, &tiercache.Options[string]{Offload: pool})

					got, err := c.GetOrLoad(t.Context(), "k", func(context.Context) (string, error) { return "v", nil })
					require.NoError(t, err)
					require.Equal(t, "v", got)
					synctest.Wait()
					st := pool.Stats()
					switch {
					case !room.slotsTaken:
						require.True(t, started.Load(), "the follow-up runs at once")
						require.Equal(t, 1, st.Running, "in the pool's one slot")
						require.Equal(t, uint64(1), st.Accepted)
					case room.maxQueued == 0:
						require.False(t, started.Load(), "no slot: the follow-up waits")
						require.Equal(t, 1, st.Queued)
					default:
						require.False(t, started.Load())
						require.Equal(t, uint64(1), c.Stats().OffloadRejected)
					}

					close(release)
					close(gate)
					require.NoError(t, c.Close(t.Context()))
					require.NoError(t, pool.Wait(t.Context()))
					if room.slotsTaken && room.maxQueued < 0 {
						requireMissing(t, target.fakeBackend, "k")
						return
					}
					requireHolds(t, target.fakeBackend, "k", tiercache.CacheValue[string]{Data: "v"})
					require.Zero(t, pool.Stats().Running)
				})
			})
		}
	}
}

func TestRefillPolicy(t *testing.T) {
	tests := []struct {
		name        string
		refill      tiercache.RefillPolicy
		wantRefills uint64
		wantL2Gets  int // after two Gets
	}{
		{name: "RefillAlways", refill: tiercache.RefillAlways, wantRefills: 1, wantL2Gets: 1},
		{name: "RefillNever", refill: tiercache.RefillNever, wantRefills: 0, wantL2Gets: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			l2.put("k", tiercache.CacheValue[string]{Data: "v"})
			c := openCache(t, l1, l2, &tiercache.Options[string]{Refill: tt.refill, Offload: &inlineOffload{}})

			for range 2 {
				got, ok, err := c.Get(t.Context(), "k")
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, "v", got)
			}
			require.Equal(t, int(tt.wantRefills), l1.calls().sets)
			require.Equal(t, tt.wantRefills, c.Stats().Refills)
			require.Equal(t, tt.wantL2Gets, l2.calls().gets)
		})
	}
}

// A Set or Delete that lands while a Get is reading L2 makes the value read
// older than what the layers hold: its refill must not put it back into L1.
func TestRefillSkippedAfterWrite(t *testing.T) {
	tests := []struct {
		name        string
		between     func(t *testing.T, c *tiercache.Cache[string])
		wantL1      string // "": absent
		wantRefills uint64
		wantSkipped uint64
	}{
		{
			name:        "nothing in between",
			between:     func(*testing.T, *tiercache.Cache[string]) {},
			wantL1:      "old",
			wantRefills: 1,
		},
		{
			name: "Set in between",
			between: func(t *testing.T, c *tiercache.Cache[string]) {
				require.NoError(t, c.Set(t.Context(), "k", "new", 0))
			},
			wantL1:      "new",
			wantSkipped: 1,
		},
		{
			name: "Delete in between",
			between: func(t *testing.T, c *tiercache.Cache[string]) {
				require.NoError(t, c.Delete(t.Context(), "k"))
			},
			wantSkipped: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read, release := make(chan struct{}), make(chan struct{})
			// The L2 Get reads the old value, then waits for release.
			l2 := &hookedBackend{fakeBackend: newFakeBackend(), afterGet: func(ctx context.Context) error {
				close(read)
				return waitFor(ctx, release)
			}}
			l2.put("k", tiercache.CacheValue[string]{Data: "old"})
			l1 := newFakeBackend()
			off := &heldOffload{}
			c := openCache(t, l1, l2, &tiercache.Options[string]{Offload: off})
			t.Cleanup(func() { off.run() }) // before Close, which waits for the held tasks
			unblock := sync.OnceFunc(func() { close(release) })
			defer unblock()

			type result struct {
				v   string
				ok  bool
				err error
			}
			done := make(chan result, 1)
			go func() {
				v, ok, err := c.Get(context.Background(), "k")
				done <- result{v, ok, err}
			}()
			<-read
			tt.between(t, c)
			unblock()
			require.Equal(t, result{"old", true, nil}, <-done)
			require.Equal(t, []string{tiercache.OffloadKindRefill}, off.run())

			if tt.wantL1 == "" {
				requireMissing(t, l1, "k")
			} else {
				got, ok := l1.peek("k")
				require.True(t, ok)
				require.Equal(t, tt.wantL1, got.Data)
			}
			s := c.Stats()
			require.Equal(t, tt.wantRefills, s.Refills)
			require.Equal(t, tt.wantSkipped, s.RefillsSkipped)
		})
	}
}

func TestSetBuildsValue(t *testing.T) {
	tests := []struct {
		name   string
		opts   tiercache.Options[string]
		ttl    time.Duration
		stale  time.Duration // want Stale from now; 0: never
		l2Exp  time.Duration // want Expire in L2 from now; 0: never
		l1Exp  time.Duration // want Expire in L1 from now; 0: never
		l2Data string
	}{
		{name: "ttl", ttl: time.Hour, l2Exp: time.Hour, l1Exp: time.Hour},
		{name: "ttl 0 means DefaultTTL", opts: tiercache.Options[string]{DefaultTTL: 10 * time.Minute}, l2Exp: 10 * time.Minute, l1Exp: 10 * time.Minute},
		{name: "ttl beats DefaultTTL", opts: tiercache.Options[string]{DefaultTTL: 10 * time.Minute}, ttl: time.Hour, l2Exp: time.Hour, l1Exp: time.Hour},
		{name: "ttl 0 without DefaultTTL never expires"},
		{name: "StaleAfter", opts: tiercache.Options[string]{StaleAfter: 5 * time.Minute}, ttl: time.Hour, stale: 5 * time.Minute, l2Exp: time.Hour, l1Exp: time.Hour},
		{name: "L1MaxTTL caps the L1 copy", opts: tiercache.Options[string]{L1MaxTTL: time.Minute}, ttl: time.Hour, l2Exp: time.Hour, l1Exp: time.Minute},
		{name: "L1MaxTTL caps a value that never expires", opts: tiercache.Options[string]{L1MaxTTL: time.Minute}, l1Exp: time.Minute},
		{name: "L1MaxTTL above the ttl", opts: tiercache.Options[string]{L1MaxTTL: 2 * time.Hour}, ttl: time.Hour, l2Exp: time.Hour, l1Exp: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				at := func(d time.Duration) time.Time {
					if d == 0 {
						return time.Time{}
					}
					return now.Add(d)
				}
				l1, l2 := newFakeBackend(), newFakeBackend()
				opts := tt.opts
				c := openCache(t, l1, l2, &opts)

				require.NoError(t, c.Set(t.Context(), "k", "v", tt.ttl))
				requireHolds(t, l2, "k", tiercache.CacheValue[string]{Data: "v", Stale: at(tt.stale), Expire: at(tt.l2Exp)})
				requireHolds(t, l1, "k", tiercache.CacheValue[string]{Data: "v", Stale: at(tt.stale), Expire: at(tt.l1Exp)})
			})
		})
	}
}

func TestSetTTLJitter(t *testing.T) {
	const jitter, ttl, sets = 0.25, time.Hour, 200
	tests := []struct {
		name       string
		ttl        time.Duration
		defaultTTL time.Duration
	}{
		{name: "ttl", ttl: ttl},
		{name: "DefaultTTL", defaultTTL: ttl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := time.Now() // the bubble's clock stands still: only the jitter varies
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := openCache(t, l1, l2, &tiercache.Options[string]{TTLJitter: jitter, DefaultTTL: tt.defaultTTL})

				for i := range sets {
					require.NoError(t, c.Set(t.Context(), fmt.Sprint("k", i), "v", tt.ttl))
				}
				earliest := now.Add(time.Duration(float64(ttl) * (1 - jitter)))
				latest := now.Add(ttl)
				in1, in2 := setLog(l1), setLog(l2)
				require.Len(t, in2, sets)
				require.Len(t, in1, sets)
				distinct := make(map[time.Time]bool)
				for i, v := range in2 {
					require.False(t, v.Expire.Before(earliest), "Expire %v before %v", v.Expire, earliest)
					require.False(t, v.Expire.After(latest), "Expire %v after %v", v.Expire, latest)
					require.True(t, v.Expire.Equal(in1[i].Expire), "both layers get the same Expire")
					distinct[v.Expire.UTC()] = true
				}
				require.Greater(t, len(distinct), 1, "every Expire is the same: no jitter")
			})
		})
	}
}

func TestSetNegativeTTL(t *testing.T) {
	l1, l2 := newFakeBackend(), newFakeBackend()
	c := openCache(t, l1, l2, nil)

	err := c.Set(t.Context(), "user:42", "v", -time.Second)
	require.ErrorContains(t, err, "tiercache:")
	require.ErrorContains(t, err, "user:42")
	require.Equal(t, backendCalls{}, l1.calls())
	require.Equal(t, backendCalls{}, l2.calls())
}

// keyCall is one of the Cache's single-key calls. Its GetOrLoad's loader
// panics: the tests that use it expect no load.
type keyCall struct {
	name string
	call func(ctx context.Context, c *tiercache.Cache[string], key string) error
}

var keyCalls = []keyCall{
	{name: "Get", call: func(ctx context.Context, c *tiercache.Cache[string], key string) error {
		_, _, err := c.Get(ctx, key)
		return err
	}},
	{name: "Set", call: func(ctx context.Context, c *tiercache.Cache[string], key string) error {
		return c.Set(ctx, key, "v", 0)
	}},
	{name: "Delete", call: func(ctx context.Context, c *tiercache.Cache[string], key string) error {
		return c.Delete(ctx, key)
	}},
	{name: "GetOrLoad", call: func(ctx context.Context, c *tiercache.Cache[string], key string) error {
		_, err := c.GetOrLoad(ctx, key, func(context.Context) (string, error) {
			panic("the loader was called")
		})
		return err
	}},
}

func TestEmptyKey(t *testing.T) {
	for _, tt := range keyCalls {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			c := openCache(t, l1, l2, nil)

			err := tt.call(t.Context(), c, "")
			require.ErrorContains(t, err, "tiercache:")
			require.ErrorContains(t, err, "empty key")
			require.Equal(t, backendCalls{}, l1.calls())
			require.Equal(t, backendCalls{}, l2.calls())
		})
	}
}

func TestSequentialWriteOrder(t *testing.T) {
	tests := []struct {
		name   string
		policy tiercache.WritePolicy
	}{
		{name: "default", policy: nil},
		{name: "SequentialWritePolicy", policy: tiercache.SequentialWritePolicy{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log opLog
			l1 := &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: logSets(&log, "L1")}
			l2 := &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: logSets(&log, "L2")}
			c := openCache(t, l1, l2, &tiercache.Options[string]{WritePolicy: tt.policy})

			require.NoError(t, c.Set(t.Context(), "k", "v", 0))
			require.Equal(t, []string{"L2.Set", "L1.Set"}, log.list())
			requireHolds(t, l1.fakeBackend, "k", tiercache.CacheValue[string]{Data: "v"})
			requireHolds(t, l2.fakeBackend, "k", tiercache.CacheValue[string]{Data: "v"})
		})
	}
}

func TestSequentialWriteFailure(t *testing.T) {
	errL1 := errors.New("L1 is down")
	errL2 := errors.New("L2 is down")
	tests := []struct {
		name       string
		l1Err      error
		l2Err      error
		wantErr    error
		wantL1Sets int
		wantInL2   string // "": untouched, still "old"
	}{
		{name: "L2 fails: L1 evicted, not written", l2Err: errL2, wantErr: errL2, wantL1Sets: 0, wantInL2: "old"},
		{name: "L1 fails after L2: L1 evicted", l1Err: errL1, wantErr: errL1, wantL1Sets: 1, wantInL2: "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			l1.put("user:42", tiercache.CacheValue[string]{Data: "old"})
			l2.put("user:42", tiercache.CacheValue[string]{Data: "old"})
			l1.configure(func(b *fakeBackend) { b.setErr = tt.l1Err })
			l2.configure(func(b *fakeBackend) { b.setErr = tt.l2Err })
			c := openCache(t, l1, l2, nil)

			err := c.Set(t.Context(), "user:42", "new", 0)
			require.ErrorIs(t, err, tt.wantErr)
			require.ErrorContains(t, err, "tiercache:")
			require.ErrorContains(t, err, "user:42")
			requireMissing(t, l1, "user:42")
			require.Equal(t, backendCalls{sets: tt.wantL1Sets, deletes: 1}, l1.calls())
			got, ok := l2.peek("user:42")
			require.True(t, ok)
			require.Equal(t, tt.wantInL2, got.Data)
		})
	}
}

func TestWritePolicyLatency(t *testing.T) {
	const layerLatency = 30 * time.Millisecond
	tests := []struct {
		name   string
		policy tiercache.WritePolicy
		want   time.Duration
	}{
		{name: "sequential adds the layers up", policy: tiercache.SequentialWritePolicy{}, want: 2 * layerLatency},
		{name: "parallel costs the slower layer", policy: tiercache.ParallelWritePolicy{}, want: layerLatency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				l1.configure(func(b *fakeBackend) { b.delay = layerLatency })
				l2.configure(func(b *fakeBackend) { b.delay = layerLatency })
				c := openCache(t, l1, l2, &tiercache.Options[string]{WritePolicy: tt.policy})

				start := time.Now()
				require.NoError(t, c.Set(t.Context(), "k", "v", 0))
				require.Equal(t, tt.want, time.Since(start))
				requireHolds(t, l1, "k", tiercache.CacheValue[string]{Data: "v"})
				requireHolds(t, l2, "k", tiercache.CacheValue[string]{Data: "v"})
			})
		})
	}
}

func TestParallelWriteFailure(t *testing.T) {
	errL1 := errors.New("L1 is down")
	errL2 := errors.New("L2 is down")
	tests := []struct {
		name         string
		l1Err, l2Err error
	}{
		{name: "L1 fails", l1Err: errL1},
		{name: "L2 fails", l2Err: errL2},
		{name: "both fail", l1Err: errL1, l2Err: errL2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			l1.put("user:42", tiercache.CacheValue[string]{Data: "old"})
			l2.put("user:42", tiercache.CacheValue[string]{Data: "old"})
			l1.configure(func(b *fakeBackend) { b.setErr = tt.l1Err })
			l2.configure(func(b *fakeBackend) { b.setErr = tt.l2Err })
			c := openCache(t, l1, l2, &tiercache.Options[string]{WritePolicy: tiercache.ParallelWritePolicy{}})

			err := c.Set(t.Context(), "user:42", "new", 0)
			require.ErrorContains(t, err, "tiercache:")
			require.ErrorContains(t, err, "user:42")
			for _, layer := range []struct {
				name string
				b    *fakeBackend
				err  error
			}{{"L1", l1, tt.l1Err}, {"L2", l2, tt.l2Err}} {
				if layer.err != nil {
					require.ErrorIs(t, err, layer.err)
					require.Equal(t, 1, layer.b.calls().deletes, "%s evicted", layer.name)
					requireMissing(t, layer.b, "user:42")
					continue
				}
				require.Zero(t, layer.b.calls().deletes, "%s did not fail: not evicted", layer.name)
				got, ok := layer.b.peek("user:42")
				require.True(t, ok)
				require.Equal(t, "new", got.Data, "%s written", layer.name)
			}
		})
	}
}

func TestSetPanickingBackend(t *testing.T) {
	policies := []struct {
		name   string
		policy tiercache.WritePolicy
	}{
		{name: "sequential", policy: tiercache.SequentialWritePolicy{}},
		{name: "parallel", policy: tiercache.ParallelWritePolicy{}},
	}
	for _, p := range policies {
		for _, layer := range []tiercache.Layer{tiercache.L1, tiercache.L2} {
			t.Run(p.name+"/"+layer.String(), func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				panicky := l1
				if layer == tiercache.L2 {
					panicky = l2
				}
				panicky.configure(func(b *fakeBackend) { b.panics = "backend exploded" })
				c := openCache(t, l1, l2, &tiercache.Options[string]{WritePolicy: p.policy})

				err := c.Set(t.Context(), "k", "v", 0)
				var pe *tiercache.PanicError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, "backend exploded", pe.Value)
				require.NotEmpty(t, pe.Stack)
			})
		}
	}
}

func TestDelete(t *testing.T) {
	errL1 := errors.New("L1 is down")
	errL2 := errors.New("L2 is down")
	tests := []struct {
		name         string
		l1Err, l2Err error
	}{
		{name: "removes from both layers"},
		{name: "L2 fails: L1 is cleared all the same", l2Err: errL2},
		{name: "L1 fails: L2 is cleared", l1Err: errL1},
		{name: "both fail: joined errors", l1Err: errL1, l2Err: errL2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			l1.put("user:42", tiercache.CacheValue[string]{Data: "v"})
			l2.put("user:42", tiercache.CacheValue[string]{Data: "v"})
			l1.configure(func(b *fakeBackend) { b.delErr = tt.l1Err })
			l2.configure(func(b *fakeBackend) { b.delErr = tt.l2Err })
			c := openCache(t, l1, l2, nil)

			err := c.Delete(t.Context(), "user:42")
			for _, layer := range []struct {
				b   *fakeBackend
				err error
			}{{l1, tt.l1Err}, {l2, tt.l2Err}} {
				require.Equal(t, 1, layer.b.calls().deletes)
				if layer.err != nil {
					require.ErrorIs(t, err, layer.err)
				} else {
					requireMissing(t, layer.b, "user:42")
				}
			}
			if tt.l1Err == nil && tt.l2Err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "tiercache:")
			require.ErrorContains(t, err, "user:42")
		})
	}
}

// L2 failing by a timeout is the case that matters most: the delete may have
// landed in L2 all the same, and L1 must not keep the value beside it.
func TestDeleteClearsL1WhenL2TimesOut(t *testing.T) {
	tests := []struct {
		name      string
		l2Timeout time.Duration
		deadline  time.Duration // of the caller's ctx; 0: none
	}{
		{name: "L2Timeout", l2Timeout: 10 * time.Millisecond},
		{name: "caller's deadline", deadline: 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1, l2 := newFakeBackend(), newFakeBackend()
				l1.put("k", tiercache.CacheValue[string]{Data: "v"})
				l2.put("k", tiercache.CacheValue[string]{Data: "v"})
				l2.configure(func(b *fakeBackend) { b.delay = time.Hour })
				c := openCache(t, l1, l2, &tiercache.Options[string]{L2Timeout: tt.l2Timeout})

				ctx := t.Context()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				err := c.Delete(ctx, "k")
				require.ErrorIs(t, err, context.DeadlineExceeded)
				requireMissing(t, l1, "k")
			})
		})
	}
}

func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const l2Latency = 40 * time.Millisecond
		errL1 := errors.New("L1 is down")
		l1, l2 := newFakeBackend(), newFakeBackend()
		l2.configure(func(b *fakeBackend) { b.delay = l2Latency })
		l1.put("only-l1", tiercache.CacheValue[string]{Data: "v"})
		l2.put("only-l2", tiercache.CacheValue[string]{Data: "v"})
		c := openCache(t, l1, l2, &tiercache.Options[string]{
			ReadPolicy: tiercache.ParallelReadPolicy[string]{}, // both layers on every Get
			Refill:     tiercache.RefillNever,
		})
		require.Equal(t, tiercache.Stats{}, c.Stats())
		require.Zero(t, c.Stats().L1.HitRatio())

		get := func(ctx context.Context, key string) error {
			_, _, err := c.Get(ctx, key)
			return err
		}
		require.NoError(t, get(t.Context(), "only-l2")) // L1 miss, L2 hit
		require.NoError(t, get(t.Context(), "nowhere")) // L1 miss, L2 miss
		require.NoError(t, get(t.Context(), "only-l1")) // L1 hit, L2 miss
		l1.configure(func(b *fakeBackend) { b.getErr = errL1 })
		require.NoError(t, get(t.Context(), "only-l2")) // L1 failure, L2 hit
		l1.configure(func(b *fakeBackend) { b.getErr = nil })
		ctx, cancel := context.WithTimeout(t.Context(), l2Latency/4)
		defer cancel()
		require.ErrorIs(t, get(ctx, "nowhere"), context.DeadlineExceeded) // L1 miss, L2 abandoned

		s := c.Stats()
		const gets = 5
		require.Equal(t, uint64(1), s.L1.Hits)
		require.Equal(t, uint64(3), s.L1.Misses)
		require.Equal(t, uint64(1), s.L1.Failures)
		require.Zero(t, s.L1.Abandoned)
		require.Equal(t, uint64(2), s.L2.Hits)
		require.Equal(t, uint64(2), s.L2.Misses)
		require.Zero(t, s.L2.Failures)
		require.Equal(t, uint64(1), s.L2.Abandoned)
		for _, l := range []tiercache.LayerStats{s.L1, s.L2} {
			require.Equal(t, uint64(gets), l.Hits+l.Misses+l.Failures+l.Abandoned, "every Get counted once per layer")
			require.Equal(t, l.Hits+l.Misses+l.Failures, l.Latency.Count, "every finished read timed")
		}
		require.GreaterOrEqual(t, s.L2.Latency.P99, l2Latency)
		require.GreaterOrEqual(t, s.L2.Latency.P50, l2Latency)
		require.InEpsilon(t, float64(l2Latency), float64(s.L2.Latency.Mean), 0.125, "the mean is estimated to within 12.5%")
		require.InDelta(t, 1.0/5, s.L1.HitRatio(), 1e-9)
		require.InDelta(t, 2.0/4, s.L2.HitRatio(), 1e-9)
	})
}

func TestHitRatio(t *testing.T) {
	tests := []struct {
		name  string
		stats tiercache.LayerStats
		want  float64
	}{
		{name: "no reads", want: 0},
		{name: "hits only", stats: tiercache.LayerStats{Hits: 3}, want: 1},
		{name: "failures count against", stats: tiercache.LayerStats{Hits: 1, Misses: 2, Failures: 1}, want: 0.25},
		{name: "abandoned reads do not count", stats: tiercache.LayerStats{Hits: 1, Misses: 1, Abandoned: 8}, want: 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.InDelta(t, tt.want, tt.stats.HitRatio(), 1e-9)
		})
	}
}

func TestCloseWaitsForBackgroundWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		l1 := &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: func(ctx context.Context) error { return waitFor(ctx, gate) }}
		l2 := newFakeBackend()
		l2.put("k", tiercache.CacheValue[string]{Data: "v"})
		c := openCache(t, l1, l2, nil)
		_, _, err := c.Get(t.Context(), "k") // its refill waits for the gate
		require.NoError(t, err)

		closed := make(chan error, 1)
		go func() { closed <- c.Close(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while a refill was under way", err)
		default:
		}
		close(gate)
		require.NoError(t, <-closed)
		requireHolds(t, l1.fakeBackend, "k", tiercache.CacheValue[string]{Data: "v"})
		require.Equal(t, uint64(1), c.Stats().Refills)
	})
}

func TestCloseDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		defer close(gate)
		l1 := &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: func(ctx context.Context) error { return waitFor(ctx, gate) }}
		l2 := newFakeBackend()
		l2.put("k", tiercache.CacheValue[string]{Data: "v"})
		c, err := tiercache.New[string](l1, l2, nil)
		require.NoError(t, err)
		_, _, err = c.Get(t.Context(), "k") // its refill waits for the gate
		require.NoError(t, err)

		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = c.Close(ctx)
		require.Equal(t, 20*time.Millisecond, time.Since(start))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorContains(t, err, "tiercache:")
		synctest.Wait() // the refill, its ctx cancelled, gives up
		requireMissing(t, l1.fakeBackend, "k")
		_, _, err = c.Get(t.Context(), "k")
		require.ErrorIs(t, err, tiercache.ErrClosed)
	})
}

// A slow L2 write of a loaded value holds back no L1 write of its stripe:
// an inline refill of the key is not kept waiting for it (it gives way, the
// L2 write being newer than what it read), so the Get that makes it
// returns at once.
func TestSlowL2WriteHoldsBackNoL1Write(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1 := newFakeBackend()
		l2 := slowSets(10 * time.Second)
		c := openCache(t, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillInline, L2Timeout: 30 * time.Second})
		v, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "loaded", nil })
		require.NoError(t, err)
		require.Equal(t, "loaded", v)
		synctest.Wait() // the loaded value's L2 write is under way, and slow

		l2.put("k", tiercache.CacheValue[string]{Data: "from another process"})
		require.NoError(t, l1.Delete(context.Background(), "k"))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		v, ok, err := c.Get(ctx, "k")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "from another process", v)
		require.Zero(t, time.Since(start), "the refill did not wait for the L2 write")
		require.EqualValues(t, 1, c.Stats().RefillsSkipped)
	})
}

// A shared OffloadPool whose Close runs out of time drops the tasks still
// queued. The cache's work among them is released: Close does not wait for
// it, and a losing read that a dropped task was to wait for is cancelled.
func TestCloseAfterSharedPoolDroppedWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
		require.True(t, pool.Go("busy", func(ctx context.Context) { <-ctx.Done() }))
		var loserErr error
		l1, l2 := newFakeBackend(), &hookedBackend{fakeBackend: newFakeBackend(), afterGet: func(ctx context.Context) error {
			loserErr = waitFor(ctx, nil) // L2 answers only when its ctx ends
			return loserErr
		}}
		l1.put("k", tiercache.CacheValue[string]{Data: "one"})
		c, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{
			ReadPolicy: tiercache.RaceReadPolicy[string]{},
			Offload:    pool, // no L2Timeout: only its owner ends the loser
		})
		require.NoError(t, err)
		v, ok, err := c.Get(context.Background(), "k")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "one", v)
		require.Equal(t, 1, pool.Stats().Queued, "the task owning the losing L2 read waits behind the busy one")

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, pool.Close(ctx), context.DeadlineExceeded)
		require.Equal(t, uint64(1), pool.Stats().Dropped)
		synctest.Wait()
		require.ErrorIs(t, loserErr, context.Canceled, "the loser is cancelled with its task dropped")

		start := time.Now()
		require.NoError(t, c.Close(context.Background()))
		require.Zero(t, time.Since(start), "Close does not wait for dropped work")
	})
}

// busyPool returns a shared OffloadPool whose one slot a task holds until
// the pool's Close cancels it: whatever a cache hands it waits in its queue.
func busyPool(t *testing.T) *tiercache.OffloadPool {
	t.Helper()
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
	require.True(t, pool.Go("busy", func(ctx context.Context) { <-ctx.Done() }))
	return pool
}

// dropQueued closes pool with a ctx that has ended, which drops the one
// task queued in it unrun.
func dropQueued(t *testing.T, pool *tiercache.OffloadPool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, pool.Close(ctx), context.Canceled)
	require.Equal(t, uint64(1), pool.Stats().Dropped)
}

// The refill of an L2 hit queued on a shared OffloadPool whose Close runs
// out of time is dropped with the rest: the cache's Close does not wait for
// it either.
func TestCloseAfterSharedPoolDroppedRefill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := busyPool(t)
		l1, l2 := newFakeBackend(), newFakeBackend()
		l2.put("k", tiercache.CacheValue[string]{Data: "v"})
		c, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{Offload: pool})
		require.NoError(t, err)
		_, ok, err := c.Get(context.Background(), "k")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, 1, pool.Stats().Queued, "the refill waits behind the busy task")

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, pool.Close(ctx), context.DeadlineExceeded)
		require.Equal(t, uint64(1), pool.Stats().Dropped)

		closeCtx, cancelClose := context.WithTimeout(context.Background(), time.Second)
		defer cancelClose()
		start := time.Now()
		require.NoError(t, c.Close(closeCtx))
		require.Zero(t, time.Since(start), "Close does not wait for the dropped refill")
		requireMissing(t, l1, "k")
	})
}

// A loaded value's L2 write that a shared OffloadPool's Close drops unrun
// leaves nothing behind: the flight that waited for the write leaves the
// group, so a later miss loads again rather than taking that flight's value.
func TestSharedPoolDroppedWorkLeavesNothingBehind(t *testing.T) {
	for _, many := range []bool{false, true} {
		t.Run(map[bool]string{false: "GetOrLoad", true: "GetOrLoadMany"}[many], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pool := busyPool(t)
				l1, l2 := newFakeBackend(), newFakeBackend()
				c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{Offload: pool})
				loads := 0
				get := func() string {
					t.Helper()
					loads++
					if many {
						vals, err := c.GetOrLoadMany(context.Background(), []string{"k"}, func(context.Context, []string) (map[string]string, error) {
							return map[string]string{"k": fmt.Sprint("v", loads)}, nil
						})
						require.NoError(t, err)
						return vals["k"]
					}
					v, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return fmt.Sprint("v", loads), nil })
					require.NoError(t, err)
					return v
				}
				require.Equal(t, "v1", get())
				require.Equal(t, 1, pool.Stats().Queued, "the L2 write waits behind the busy task")
				dropQueued(t, pool)

				require.NoError(t, l1.Delete(context.Background(), "k")) // L1 lets it go; L2 never had it
				require.Equal(t, "v2", get(), "loaded again, not taken from the dropped write's flight")
			})
		})
	}
}

// A refresh that a shared OffloadPool's Close drops unrun does not keep its
// key marked as being refreshed: the next stale read tries again (and, the
// pool being closed, is refused and counted).
func TestSharedPoolDroppedRefreshCanBeRetried(t *testing.T) {
	for _, many := range []bool{false, true} {
		t.Run(map[bool]string{false: "GetOrLoad", true: "GetOrLoadMany"}[many], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pool := busyPool(t)
				l1, l2 := newFakeBackend(), newFakeBackend()
				stale := tiercache.CacheValue[string]{Data: "old", Stale: time.Now().Add(-time.Second)}
				l1.put("k", stale)
				c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{Offload: pool})
				read := func() {
					t.Helper()
					if many {
						_, err := c.GetOrLoadMany(context.Background(), []string{"k"}, func(context.Context, []string) (map[string]string, error) {
							return map[string]string{"k": "new"}, nil
						})
						require.NoError(t, err)
						return
					}
					_, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "new", nil })
					require.NoError(t, err)
				}
				read()
				require.Equal(t, 1, pool.Stats().Queued, "the refresh waits behind the busy task")
				dropQueued(t, pool)

				rejected := c.Stats().OffloadRejected
				read()
				require.Equal(t, rejected+1, c.Stats().OffloadRejected, "a new refresh was tried")
			})
		})
	}
}

func TestCallsAfterClose(t *testing.T) {
	for _, tt := range keyCalls {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			l1.put("k", tiercache.CacheValue[string]{Data: "v"})
			l2.put("k", tiercache.CacheValue[string]{Data: "v"})
			c, err := tiercache.New[string](l1, l2, nil)
			require.NoError(t, err)
			require.NoError(t, c.Close(t.Context()))

			require.ErrorIs(t, tt.call(t.Context(), c, "k"), tiercache.ErrClosed)
			require.Equal(t, backendCalls{}, l1.calls())
			require.Equal(t, backendCalls{}, l2.calls())
		})
	}
}

func TestCloseTwice(t *testing.T) {
	tests := []struct {
		name    string
		offload bool // a shared OffloadPool instead of the cache's own
	}{
		{name: "own OffloadPool"},
		{name: "shared OffloadPool", offload: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts tiercache.Options[string]
			if tt.offload {
				pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
				t.Cleanup(func() { closePool(t, pool) })
				opts.Offload = pool
			}
			c, err := tiercache.New[string](newFakeBackend(), newFakeBackend(), &opts)
			require.NoError(t, err)
			require.NoError(t, c.Close(t.Context()))
			require.NoError(t, c.Close(t.Context()))
		})
	}
}

func TestSetBeforeCloseIsInBothLayers(t *testing.T) {
	tests := []struct {
		name   string
		policy tiercache.WritePolicy
	}{
		{name: "sequential", policy: tiercache.SequentialWritePolicy{}},
		{name: "parallel", policy: tiercache.ParallelWritePolicy{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			c, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{WritePolicy: tt.policy})
			require.NoError(t, err)
			const keys = 20
			var wg sync.WaitGroup
			for i := range keys {
				wg.Go(func() {
					require.NoError(t, c.Set(context.Background(), fmt.Sprint("k", i), fmt.Sprint("v", i), 0))
				})
			}
			wg.Wait()
			require.NoError(t, c.Close(t.Context()))
			for i := range keys {
				want := tiercache.CacheValue[string]{Data: fmt.Sprint("v", i)}
				requireHolds(t, l1, fmt.Sprint("k", i), want)
				requireHolds(t, l2, fmt.Sprint("k", i), want)
			}
		})
	}
}

func TestCloseSharedOffload(t *testing.T) {
	tests := []struct {
		name   string
		policy tiercache.ReadPolicy[string]
		// hold sets up the layers so that Get leaves background work that
		// waits for gate.
		hold func(l1, l2 *fakeBackend, gate chan struct{})
	}{
		{
			name: "refill", // L1's Set waits for the gate
			hold: func(_, l2 *fakeBackend, _ chan struct{}) {
				l2.put("k", tiercache.CacheValue[string]{Data: "v"})
			},
		},
		{
			name:   "race loser",
			policy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserOffload},
			hold: func(l1, l2 *fakeBackend, gate chan struct{}) {
				l1.put("k", tiercache.CacheValue[string]{Data: "v"})
				l2.configure(func(b *fakeBackend) { b.gate = gate })
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gate := make(chan struct{})
				l1 := &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: func(ctx context.Context) error { return waitFor(ctx, gate) }}
				l2 := newFakeBackend()
				tt.hold(l1.fakeBackend, l2, gate)
				pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
				c, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{ReadPolicy: tt.policy, Offload: pool})
				require.NoError(t, err)
				got, ok, err := c.Get(t.Context(), "k")
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, "v", got)

				closed := make(chan error, 1)
				go func() { closed <- c.Close(context.Background()) }()
				synctest.Wait()
				select {
				case err := <-closed:
					close(gate)
					closePool(t, pool)
					t.Fatalf("Close returned (%v) while work it gave the shared Offload was under way", err)
				default:
				}
				close(gate)
				require.NoError(t, <-closed)

				ran := make(chan struct{})
				require.True(t, pool.Go("test", func(context.Context) { close(ran) }), "the shared pool is still open")
				<-ran
				closePool(t, pool)
			})
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	tests := []struct {
		name string
		opts tiercache.Options[string]
	}{
		{name: "defaults"},
		{name: "parallel", opts: tiercache.Options[string]{
			ReadPolicy:  tiercache.ParallelReadPolicy[string]{},
			WritePolicy: tiercache.ParallelWritePolicy{},
		}},
		{name: "race, jitter, L1MaxTTL", opts: tiercache.Options[string]{
			ReadPolicy: tiercache.RaceReadPolicy[string]{},
			TTLJitter:  0.2,
			L1MaxTTL:   time.Second,
			StaleAfter: time.Millisecond,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const workers, ops, keys = 32, 300, 10
			l1, l2 := newFakeBackend(), newFakeBackend()
			opts := tt.opts
			c, err := tiercache.New[string](l1, l2, &opts)
			require.NoError(t, err)

			var gets atomic.Uint64
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					for i := range ops {
						key := fmt.Sprint("k", rng.IntN(keys))
						var err error
						switch rng.IntN(3) {
						case 0:
							gets.Add(1)
							_, _, err = c.Get(context.Background(), key)
						case 1:
							err = c.Set(context.Background(), key, fmt.Sprint(w, "-", i), time.Minute)
						case 2:
							err = c.Delete(context.Background(), key)
						}
						if err != nil {
							t.Errorf("worker %d: %v", w, err)
							return
						}
					}
				})
			}
			wg.Wait()
			require.NoError(t, c.Close(t.Context()))
			s := c.Stats().L1
			require.Equal(t, gets.Load(), s.Hits+s.Misses+s.Failures+s.Abandoned, "every Get read L1 once")
		})
	}
}

// A Set of a key whose loaded value is still on its way to a stuck L2
// waits for it at most until the Set's deadline, and then writes nothing.
func TestSetDoesNotOutwaitItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		first := true
		var mu sync.Mutex
		l2 := &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: func(ctx context.Context) error {
			mu.Lock()
			stuck := first
			first = false
			mu.Unlock()
			if stuck { // the load's L2 write
				<-gate
			}
			return nil
		}}
		l1 := newFakeBackend()
		c := openCache(t, l1, l2, nil)
		v, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "loaded", nil })
		require.NoError(t, err)
		require.Equal(t, "loaded", v)
		synctest.Wait() // the L2 write is stuck, holding the key's stripe

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = c.Set(ctx, "k", "newer", 0)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 50*time.Millisecond, time.Since(start))
		got, _ := l1.peek("k")
		require.Equal(t, "loaded", got.Data, "nothing written")
		close(gate)
		synctest.Wait()
		require.NoError(t, c.Set(context.Background(), "k", "newer", 0))
		got, _ = l2.peek("k")
		require.Equal(t, "newer", got.Data, "lands after the load's write")
	})
}

// A task of the cache that a shared Offload starts only after Close gave up
// waiting for it does nothing: no layer is written after Close returned.
func TestCloseGivenUpLeavesSharedOffloadTasksUndone(t *testing.T) {
	l1, l2 := newFakeBackend(), newFakeBackend()
	l2.put("k", tiercache.CacheValue[string]{Data: "v"})
	held := &heldOffload{}
	c, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{Offload: held})
	require.NoError(t, err)
	_, _, err = c.Get(context.Background(), "k") // its refill is held
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, c.Close(ctx), context.Canceled, "Close gave up on the held refill")
	require.Equal(t, []string{tiercache.OffloadKindRefill}, held.run())
	requireMissing(t, l1, "k")
	require.Zero(t, l1.calls().sets, "the refill did not run")
}

// A losing race read handed to a shared Offload that starts its task only
// after Close gave up is cancelled then, not left to run on.
func TestCloseGivenUpCancelsRaceLoserOfSharedOffload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		l1.put("k", tiercache.CacheValue[string]{Data: "v"})
		gate := make(chan struct{}) // never opened: L2 answers only when its ctx ends
		l2.configure(func(b *fakeBackend) { b.gate = gate })
		held := &heldOffload{}
		c, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{
			ReadPolicy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserOffload},
			Offload:    held,
		})
		require.NoError(t, err)
		got, _, err := c.Get(context.Background(), "k")
		require.NoError(t, err)
		require.Equal(t, "v", got)

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, c.Close(ctx), context.Canceled, "Close gave up on the losing L2 read")
		require.Equal(t, []string{tiercache.OffloadKindRaceLoser}, held.run(), "returns: the read is cancelled, not awaited")
		synctest.Wait() // the read, cancelled, has returned
	})
}

// A nil *OffloadPool as Options.Offload is an Offload that rejects every
// task, as OffloadPool.Go documents: background work is shed and counted,
// and no goroutine of the cache dereferences it.
func TestNilOffloadPoolRejectsBackgroundWork(t *testing.T) {
	ctx := context.Background()
	var pool *tiercache.OffloadPool
	l1, l2 := newFakeBackend(), newFakeBackend()
	c, err := tiercache.New[string](l1, l2, &tiercache.Options[string]{Offload: pool})
	require.NoError(t, err)
	defer c.Close(ctx)

	v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	require.NoError(t, err)
	require.Equal(t, "v", v)
	got, ok, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v", got)
	require.NoError(t, c.Close(ctx))
	require.Equal(t, uint64(1), c.Stats().OffloadRejected, "the L2 write of the loaded value, shed")
}
