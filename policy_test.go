package tiercache_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// fakeLayer is a hand-written reader for one layer. Its behaviour is set by
// its fields before use; it counts what happened under a mutex.
type fakeLayer struct {
	val       *tiercache.CacheValue[string]
	err       error
	panicWith any
	delay     time.Duration // how long a read takes
	ignoreCtx bool          // a read runs its full delay even when ctx ends

	mu        sync.Mutex
	calls     int
	finished  int // reads that returned
	cancelled int // reads that ended early because ctx ended
	lastErr   error
	ctx       context.Context
	started   time.Time
	goroutine uint64
}

func (f *fakeLayer) read(ctx context.Context, _ string) (*tiercache.CacheValue[string], error) {
	f.mu.Lock()
	f.calls++
	f.ctx = ctx
	f.started = time.Now()
	f.goroutine = goroutineID()
	f.mu.Unlock()
	if f.delay > 0 {
		if f.ignoreCtx {
			time.Sleep(f.delay)
		} else {
			timer := time.NewTimer(f.delay)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-ctx.Done():
				f.mu.Lock()
				f.cancelled++
				f.finished++
				f.lastErr = ctx.Err()
				f.mu.Unlock()
				return nil, ctx.Err()
			}
		}
	}
	f.mu.Lock()
	f.finished++
	f.mu.Unlock()
	if f.panicWith != nil {
		panic(f.panicWith)
	}
	return f.val, f.err
}

type fakeStats struct{ calls, finished, cancelled int }

func (f *fakeLayer) stats() fakeStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakeStats{f.calls, f.finished, f.cancelled}
}

func (f *fakeLayer) readCtx() context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctx
}

// goroutineID returns the id of the calling goroutine, parsed from its stack
// header ("goroutine 42 [running]:").
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	b = b[:bytes.IndexByte(b, ' ')]
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

func hitIn(data string, expireIn time.Duration) *tiercache.CacheValue[string] {
	return &tiercache.CacheValue[string]{Data: data, Expire: time.Now().Add(expireIn)}
}

// policyCase is one policy under test.
type policyCase struct {
	name   string
	policy tiercache.ReadPolicy[string]
	pool   bool // pass an OffloadPool (closed at the end of the test)
}

func allPolicies() []policyCase {
	return []policyCase{
		{name: "sequential", policy: tiercache.SequentialReadPolicy[string]{}},
		{name: "parallel", policy: tiercache.ParallelReadPolicy[string]{}},
		{name: "race/offload", policy: tiercache.RaceReadPolicy[string]{}, pool: true},
		{name: "race/offload-nil", policy: tiercache.RaceReadPolicy[string]{}},
		{name: "race/cancel", policy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}},
		{name: "race/offload-hedged", policy: tiercache.RaceReadPolicy[string]{HedgeAfter: 3 * time.Millisecond}, pool: true},
		{name: "race/cancel-hedged", policy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel, HedgeAfter: 3 * time.Millisecond}},
	}
}

// read runs pc's policy once. With pc.pool it passes an OffloadPool that
// the test's cleanup closes, waiting for offloaded losers.
func (pc policyCase) read(t *testing.T, ctx context.Context, l1, l2 *fakeLayer) (tiercache.ReadResult[string], error) {
	t.Helper()
	var off tiercache.Offload
	if pc.pool {
		pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		t.Cleanup(func() { require.NoError(t, pool.Close(context.Background())) })
		off = pool
	}
	return pc.policy.Read(ctx, "k", l1.read, l2.read, off)
}

// scenario is one behaviour checked against a policy.
type scenario struct {
	name string
	run  func(t *testing.T, pc policyCase)
}

// eachPolicy runs every scenario against every policy, each in its own
// synctest bubble, so that time is virtual and every goroutine a policy
// starts must have ended when the scenario returns.
func eachPolicy(t *testing.T, scenarios ...scenario) {
	for _, pc := range allPolicies() {
		for _, sc := range scenarios {
			t.Run(pc.name+"/"+sc.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { sc.run(t, pc) })
			})
		}
	}
}

func TestLayerAndStatusStrings(t *testing.T) {
	tests := []struct {
		got  string
		want string
	}{
		{tiercache.NoLayer.String(), "none"},
		{tiercache.L1.String(), "L1"},
		{tiercache.L2.String(), "L2"},
		{tiercache.Layer(9).String(), "Layer(9)"},
		{tiercache.StatusNotRun.String(), "not-run"},
		{tiercache.StatusHit.String(), "hit"},
		{tiercache.StatusMiss.String(), "miss"},
		{tiercache.StatusFailed.String(), "failed"},
		{tiercache.StatusAbandoned.String(), "abandoned"},
		{tiercache.ReadStatus(9).String(), "ReadStatus(9)"},
		{tiercache.LoserOffload.String(), "offload"},
		{tiercache.LoserCancel.String(), "cancel"},
		{tiercache.LoserPolicy(7).String(), "LoserPolicy(7)"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.got)
	}
}

func TestReadPolicyFunc(t *testing.T) {
	var calls int
	f := tiercache.ReadPolicyFunc[string](func(ctx context.Context, key string, l1, l2 tiercache.ReadFunc[string], off tiercache.Offload) (tiercache.ReadResult[string], error) {
		calls++
		return tiercache.SequentialReadPolicy[string]{}.Read(ctx, key, l1, l2, off)
	})
	l1 := &fakeLayer{val: &tiercache.CacheValue[string]{Data: "v"}}
	res, err := f.Read(context.Background(), "k", l1.read, (&fakeLayer{}).read, nil)
	require.NoError(t, err)
	require.Equal(t, 1, calls)
	require.Equal(t, "v", res.Value.Data)
}

func TestReadNilReader(t *testing.T) {
	eachPolicy(t, scenario{"rejected", func(t *testing.T, pc policyCase) {
		l := &fakeLayer{}
		for _, readers := range [][2]tiercache.ReadFunc[string]{{nil, l.read}, {l.read, nil}} {
			_, err := pc.policy.Read(context.Background(), "k", readers[0], readers[1], nil)
			require.ErrorContains(t, err, "tiercache:")
			require.ErrorContains(t, err, "nil ReadFunc")
		}
		require.Zero(t, l.stats().calls)
	}})
}

// Rule 1: (nil, nil) is a miss; an expired value is a miss too, never
// returned and never preferred over anything.
func TestReadMissAndExpired(t *testing.T) {
	expired := func() *tiercache.CacheValue[string] { return hitIn("old", -time.Nanosecond) }
	eachPolicy(t,
		scenario{"both miss", func(t *testing.T, pc policyCase) {
			res, err := pc.read(t, context.Background(), &fakeLayer{}, &fakeLayer{})
			require.NoError(t, err)
			require.Nil(t, res.Value)
			require.Equal(t, tiercache.NoLayer, res.Source)
			require.Equal(t, tiercache.StatusMiss, res.L1.Status)
			require.Equal(t, tiercache.StatusMiss, res.L2.Status)
		}},
		scenario{"both expired", func(t *testing.T, pc policyCase) {
			res, err := pc.read(t, context.Background(), &fakeLayer{val: expired()}, &fakeLayer{val: expired()})
			require.NoError(t, err)
			require.Nil(t, res.Value)
			require.Equal(t, tiercache.StatusMiss, res.L1.Status)
			require.Equal(t, tiercache.StatusMiss, res.L2.Status)
		}},
		scenario{"value expiring exactly now is a miss", func(t *testing.T, pc policyCase) {
			res, err := pc.read(t, context.Background(), &fakeLayer{val: hitIn("old", 0)}, &fakeLayer{})
			require.NoError(t, err)
			require.Nil(t, res.Value)
		}},
		scenario{"expired L1 never preferred over an L2 hit", func(t *testing.T, pc policyCase) {
			l1 := &fakeLayer{val: expired()}
			l2 := &fakeLayer{val: hitIn("fresh", time.Minute), delay: time.Millisecond}
			res, err := pc.read(t, context.Background(), l1, l2)
			require.NoError(t, err)
			require.Equal(t, tiercache.L2, res.Source)
			require.Equal(t, "fresh", res.Value.Data)
			require.Equal(t, tiercache.StatusMiss, res.L1.Status)
		}},
		scenario{"expired L2 never preferred over an L1 hit", func(t *testing.T, pc policyCase) {
			l1 := &fakeLayer{val: hitIn("fresh", time.Minute), delay: time.Millisecond}
			l2 := &fakeLayer{val: &tiercache.CacheValue[string]{Data: "old", Expire: time.Now().Add(-time.Hour)}}
			res, err := pc.read(t, context.Background(), l1, l2)
			require.NoError(t, err)
			require.Equal(t, tiercache.L1, res.Source)
			require.Equal(t, "fresh", res.Value.Data)
		}},
	)
}

// Rule 2: a reader that panics is that layer's failure, never a crash,
// whichever goroutine it ran on.
func TestReadPanicIsLayerFailure(t *testing.T) {
	sentinel := errors.New("boom")
	eachPolicy(t,
		scenario{"L1 panics, L2 hits", func(t *testing.T, pc policyCase) {
			l1 := &fakeLayer{panicWith: "l1 exploded"}
			l2 := &fakeLayer{val: hitIn("v2", time.Minute), delay: time.Millisecond}
			res, err := pc.read(t, context.Background(), l1, l2)
			require.NoError(t, err)
			require.Equal(t, tiercache.L2, res.Source)
			require.Equal(t, tiercache.StatusFailed, res.L1.Status)
			var pe *tiercache.PanicError
			require.ErrorAs(t, res.L1.Err, &pe)
			require.Equal(t, "l1 exploded", pe.Value)
			require.Contains(t, string(pe.Stack), "fakeLayer).read")
		}},
		scenario{"L2 panics with an error, L1 misses", func(t *testing.T, pc policyCase) {
			l2 := &fakeLayer{panicWith: sentinel}
			res, err := pc.read(t, context.Background(), &fakeLayer{}, l2)
			require.NoError(t, err, "a miss and a failure is a miss")
			require.Nil(t, res.Value)
			require.Equal(t, tiercache.StatusFailed, res.L2.Status)
			require.ErrorIs(t, res.L2.Err, sentinel)
		}},
		scenario{"both panic", func(t *testing.T, pc policyCase) {
			_, err := pc.read(t, context.Background(), &fakeLayer{panicWith: sentinel}, &fakeLayer{panicWith: 42})
			require.ErrorIs(t, err, sentinel)
			var pe *tiercache.PanicError
			require.ErrorAs(t, err, &pe)
		}},
	)
}

// Rule 3: an error only when nothing was found and every layer that ran
// failed, wrapping each layer's error.
func TestReadErrorContract(t *testing.T) {
	e1, e2 := errors.New("l1 down"), errors.New("l2 down")
	eachPolicy(t,
		scenario{"both fail", func(t *testing.T, pc policyCase) {
			res, err := pc.read(t, context.Background(), &fakeLayer{err: e1}, &fakeLayer{err: e2})
			require.ErrorIs(t, err, e1)
			require.ErrorIs(t, err, e2)
			require.ErrorContains(t, err, `tiercache: read "k"`)
			require.Nil(t, res.Value)
			require.Equal(t, tiercache.StatusFailed, res.L1.Status)
			require.Equal(t, tiercache.StatusFailed, res.L2.Status)
			require.ErrorIs(t, res.L1.Err, e1)
			require.ErrorIs(t, res.L2.Err, e2)
		}},
		scenario{"L1 fails, L2 misses", func(t *testing.T, pc policyCase) {
			res, err := pc.read(t, context.Background(), &fakeLayer{err: e1}, &fakeLayer{})
			require.NoError(t, err)
			require.Nil(t, res.Value)
			require.ErrorIs(t, res.L1.Err, e1)
			require.Equal(t, tiercache.StatusMiss, res.L2.Status)
		}},
		scenario{"L1 misses, L2 fails", func(t *testing.T, pc policyCase) {
			res, err := pc.read(t, context.Background(), &fakeLayer{}, &fakeLayer{err: e2})
			require.NoError(t, err)
			require.Nil(t, res.Value)
			require.Equal(t, tiercache.StatusMiss, res.L1.Status)
			require.ErrorIs(t, res.L2.Err, e2)
		}},
		scenario{"a value with an error is a failure", func(t *testing.T, pc policyCase) {
			l1 := &fakeLayer{val: hitIn("v1", time.Minute), err: e1}
			l2 := &fakeLayer{val: hitIn("v2", time.Minute), delay: time.Millisecond}
			res, err := pc.read(t, context.Background(), l1, l2)
			require.NoError(t, err)
			require.Equal(t, tiercache.L2, res.Source)
			require.Equal(t, tiercache.StatusFailed, res.L1.Status)
		}},
		scenario{"latency is reported", func(t *testing.T, pc policyCase) {
			l1 := &fakeLayer{delay: 2 * time.Millisecond}
			l2 := &fakeLayer{val: hitIn("v2", time.Minute), delay: 7 * time.Millisecond}
			res, err := pc.read(t, context.Background(), l1, l2)
			require.NoError(t, err)
			require.Equal(t, 2*time.Millisecond, res.L1.Latency)
			require.Equal(t, 7*time.Millisecond, res.L2.Latency)
		}},
	)
}

// A Negative value is a cached fact: a hit in every policy.
func TestReadNegativeIsHit(t *testing.T) {
	eachPolicy(t, scenario{"L1 negative wins", func(t *testing.T, pc policyCase) {
		neg := &tiercache.CacheValue[string]{Negative: true, Expire: time.Now().Add(time.Minute)}
		l2 := &fakeLayer{delay: time.Millisecond}
		res, err := pc.read(t, context.Background(), &fakeLayer{val: neg}, l2)
		require.NoError(t, err)
		require.Equal(t, tiercache.L1, res.Source)
		require.True(t, res.Value.Negative)
		require.Equal(t, tiercache.StatusHit, res.L1.Status)
	}})
}

// Readers see the caller's context values (trace IDs) in every policy.
func TestReadersSeeContextValues(t *testing.T) {
	type traceKey struct{}
	eachPolicy(t, scenario{"values", func(t *testing.T, pc policyCase) {
		ctx := context.WithValue(context.Background(), traceKey{}, "trace-1")
		l1 := &fakeLayer{}
		l2 := &fakeLayer{val: hitIn("v", time.Minute)}
		_, err := pc.read(t, ctx, l1, l2)
		require.NoError(t, err)
		require.Equal(t, "trace-1", l1.readCtx().Value(traceKey{}))
		require.Equal(t, "trace-1", l2.readCtx().Value(traceKey{}))
	}})
}

// Rule 7: when ctx ends before an answer, Read returns promptly with ctx's
// error and cancels every read it started.
func TestReadContextEnds(t *testing.T) {
	eachPolicy(t,
		scenario{"cancelled while both layers are slow", func(t *testing.T, pc policyCase) {
			l1 := &fakeLayer{delay: time.Hour}
			l2 := &fakeLayer{delay: time.Hour}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(10*time.Millisecond, cancel)
			start := time.Now()
			res, err := pc.read(t, ctx, l1, l2)
			require.ErrorIs(t, err, context.Canceled)
			require.ErrorIs(t, err, ctx.Err())
			require.Equal(t, 10*time.Millisecond, time.Since(start))
			require.Nil(t, res.Value)
			synctest.Wait()
			for _, l := range []*fakeLayer{l1, l2} {
				s := l.stats()
				require.Equal(t, s.calls, s.cancelled, "every started read is cancelled")
				require.Equal(t, s.calls, s.finished)
			}
		}},
		scenario{"deadline while L2 is slow", func(t *testing.T, pc policyCase) {
			l1 := &fakeLayer{}
			l2 := &fakeLayer{delay: time.Hour}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := pc.read(t, ctx, l1, l2)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Equal(t, 20*time.Millisecond, time.Since(start))
			synctest.Wait()
			require.Equal(t, 1, l2.stats().cancelled)
		}},
		scenario{"already cancelled runs no reader", func(t *testing.T, pc policyCase) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			l1, l2 := &fakeLayer{val: hitIn("v", time.Minute)}, &fakeLayer{}
			_, err := pc.read(t, ctx, l1, l2)
			require.ErrorIs(t, err, context.Canceled)
			require.Zero(t, l1.stats().calls+l2.stats().calls)
		}},
	)
}

// A reader that calls runtime.Goexit on a goroutine a policy started is that
// layer's failure; the read still answers.
func TestReadGoexitIsLayerFailure(t *testing.T) {
	goexit := func(context.Context, string) (*tiercache.CacheValue[string], error) {
		runtime.Goexit()
		return nil, nil
	}
	for _, pc := range allPolicies() {
		if pc.name == "sequential" {
			continue // runs readers on the caller's goroutine: Goexit ends the caller
		}
		t.Run(pc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// L1 is slower than any hedge delay, so L2 runs on a goroutine.
				l1 := &fakeLayer{delay: 10 * time.Millisecond}
				var off tiercache.Offload
				if pc.pool {
					pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
					defer pool.Close(context.Background())
					off = pool
				}
				res, err := pc.policy.Read(context.Background(), "k", l1.read, goexit, off)
				require.NoError(t, err, "a miss and a failure is a miss")
				require.Equal(t, tiercache.StatusFailed, res.L2.Status)
				require.ErrorContains(t, res.L2.Err, "Goexit")
			})
		})
	}
}
