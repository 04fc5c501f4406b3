package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

func TestBreakerOffByDefault(t *testing.T) {
	ctx := context.Background()
	l1, l2 := newFakeBackend(), newFakeBackend()
	l2.configure(func(b *fakeBackend) { b.getErr = errors.New("down") })
	c := openCache(t, l1, l2, nil)
	for range 50 {
		_, _, err := c.Get(ctx, "k")
		require.NoError(t, err, "an L1 miss and an L2 failure is a miss")
	}
	require.Equal(t, 50, l2.calls().gets, "every read reaches L2")
	require.Equal(t, tiercache.BreakerStats{}, c.Stats().Breaker)
}

func TestBreakerOptionsValidated(t *testing.T) {
	for _, o := range []tiercache.BreakerOptions{{Failures: -1}, {Failures: 1, CoolDown: -time.Second}, {Failures: 1, Probes: -2}} {
		_, err := tiercache.New[string](newFakeBackend(), newFakeBackend(), &tiercache.Options[string]{Breaker: o})
		require.ErrorContains(t, err, "tiercache: Options.Breaker.")
	}
}

// After a run of L2 failures the breaker opens: L2 is not called, reads
// and loads go on from L1 and the loader, Sets write L1, count the L2 write
// as skipped and say L2 was not written, Deletes clear L1 and say L2 was
// not reached.
func TestBreakerOpens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l1, l2 := newFakeBackend(), newFakeBackend()
		down := errors.New("redis down")
		l2.configure(func(b *fakeBackend) { b.getErr, b.setErr = down, down })
		c := openCache(t, l1, l2, &tiercache.Options[string]{
			Breaker: tiercache.BreakerOptions{Failures: 3, CoolDown: time.Second},
			Offload: &inlineOffload{},
		})
		l1.put("hot", tiercache.CacheValue[string]{Data: "in L1"})
		for range 3 {
			_, _, err := c.Get(ctx, "cold")
			require.NoError(t, err, "an L1 miss and an L2 failure is a miss")
		}
		s := c.Stats().Breaker
		require.Equal(t, tiercache.BreakerOpen, s.State)
		require.Equal(t, uint64(1), s.Opens)
		gets := l2.calls().gets

		_, ok, err := c.Get(ctx, "cold")
		require.NoError(t, err)
		require.False(t, ok)
		v, ok, err := c.Get(ctx, "hot")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "in L1", v)
		loaded, err := c.GetOrLoad(ctx, "new", func(context.Context) (string, error) { return "from origin", nil })
		require.NoError(t, err)
		require.Equal(t, "from origin", loaded)
		require.Equal(t, gets, l2.calls().gets, "L2 is not read while open")

		sets := l2.calls().sets
		err = c.Set(ctx, "written", "L1 only", 0)
		require.ErrorIs(t, err, tiercache.ErrBreakerOpen, "not acknowledged: L2 lacks the value")
		got, inL1 := l1.peek("written")
		require.True(t, inL1)
		require.Equal(t, "L1 only", got.Data)
		require.Equal(t, sets, l2.calls().sets, "L2 is not written while open")

		err = c.Delete(ctx, "hot")
		require.ErrorIs(t, err, tiercache.ErrBreakerOpen)
		_, inL1 = l1.peek("hot")
		require.False(t, inL1, "L1 is cleared all the same")

		synctest.Wait() // the loaded value's L2 write is background work
		s = c.Stats().Breaker
		require.Equal(t, uint64(2), s.WritesSkipped, "the Set and the loaded value's L2 write")
		require.Positive(t, s.Rejected)
		require.Equal(t, uint64(3), c.Stats().L2.Failures, "refused reads are not counted as L2 failures")
	})
}

// After the cool-down one probe goes through: a success closes the breaker,
// a failure opens it for another cool-down.
func TestBreakerProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l1, l2 := newFakeBackend(), newFakeBackend()
		down := errors.New("redis down")
		l2.configure(func(b *fakeBackend) { b.getErr = down })
		c := openCache(t, l1, l2, &tiercache.Options[string]{Breaker: tiercache.BreakerOptions{Failures: 1, CoolDown: time.Second}})
		_, _, _ = c.Get(ctx, "k")
		require.Equal(t, tiercache.BreakerOpen, c.Stats().Breaker.State)

		time.Sleep(time.Second)
		gets := l2.calls().gets
		_, _, _ = c.Get(ctx, "k") // the probe fails
		require.Equal(t, gets+1, l2.calls().gets, "a probe went through")
		require.Equal(t, tiercache.BreakerOpen, c.Stats().Breaker.State)
		require.Equal(t, uint64(2), c.Stats().Breaker.Opens)

		time.Sleep(500 * time.Millisecond)
		_, _, _ = c.Get(ctx, "k")
		require.Equal(t, gets+1, l2.calls().gets, "a new cool-down started at the failed probe")

		l2.configure(func(b *fakeBackend) { b.getErr = nil })
		time.Sleep(500 * time.Millisecond)
		_, _, err := c.Get(ctx, "k") // the probe succeeds (a miss is a success)
		require.NoError(t, err)
		s := c.Stats().Breaker
		require.Equal(t, tiercache.BreakerClosed, s.State)
		require.Equal(t, uint64(1), s.Closes)
	})
}

// Timeouts count as failures; the caller's own cancellations and misses do
// not.
func TestBreakerCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := openCache(t, l1, l2, &tiercache.Options[string]{
			L2Timeout: 10 * time.Millisecond,
			Breaker:   tiercache.BreakerOptions{Failures: 2},
		})
		for range 5 {
			_, _, err := c.Get(context.Background(), "missing")
			require.NoError(t, err)
		}
		require.Equal(t, tiercache.BreakerClosed, c.Stats().Breaker.State, "misses are successes")

		l2.configure(func(b *fakeBackend) { b.delay = time.Hour })
		for range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
			_, _, _ = c.Get(ctx, "k") // the caller gives up before L2Timeout
			cancel()
		}
		require.Equal(t, tiercache.BreakerClosed, c.Stats().Breaker.State, "the caller's deadline is not L2's failure")

		for range 2 {
			_, _, _ = c.Get(context.Background(), "k") // L2Timeout
		}
		require.Equal(t, tiercache.BreakerOpen, c.Stats().Breaker.State, "timeouts are failures")
	})
}

func TestBreakerStateString(t *testing.T) {
	require.Equal(t, "closed", tiercache.BreakerClosed.String())
	require.Equal(t, "open", tiercache.BreakerOpen.String())
	require.Equal(t, "half-open", tiercache.BreakerHalfOpen.String())
}

// Bad entries (ErrBadEntry) and batch errors that name their failed keys
// say L2 answered: they do not open the breaker.
func TestBreakerIgnoresBadEntries(t *testing.T) {
	ctx := context.Background()
	l1, l2 := newFakeBackend(), newFakeBackend()
	l2.configure(func(b *fakeBackend) { b.getErr = fmt.Errorf("corrupt: %w", tiercache.ErrBadEntry) })
	c := openCache(t, l1, l2, &tiercache.Options[string]{Breaker: tiercache.BreakerOptions{Failures: 2}})
	for range 10 {
		_, _, err := c.Get(ctx, "k")
		require.NoError(t, err)
	}
	require.Equal(t, tiercache.BreakerClosed, c.Stats().Breaker.State)
	require.Equal(t, uint64(10), c.Stats().L2.Failures, "still the layer's failures")
}

// An L2 backend that panics during a probe does not leave the breaker
// half-open for good.
func TestBreakerProbePanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l1, l2 := newFakeBackend(), newFakeBackend()
		l2.configure(func(b *fakeBackend) { b.getErr = errors.New("down") })
		c := openCache(t, l1, l2, &tiercache.Options[string]{Breaker: tiercache.BreakerOptions{Failures: 1, CoolDown: time.Second}})
		_, _, _ = c.Get(ctx, "k")
		time.Sleep(time.Second)
		l2.configure(func(b *fakeBackend) { b.getErr, b.panics = nil, "probe exploded" })
		_, _, err := c.Get(ctx, "k") // the probe panics: a failure
		require.NoError(t, err)
		require.Equal(t, tiercache.BreakerOpen, c.Stats().Breaker.State)
		time.Sleep(time.Second)
		l2.configure(func(b *fakeBackend) { b.panics = nil })
		_, _, err = c.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, tiercache.BreakerClosed, c.Stats().Breaker.State, "the next probe was let through")
	})
}

// cooledBreakerCache returns a cache whose breaker (one failure, a second's
// cool-down) a failed L2 read has opened, a cool-down ago: its next L2
// operation is a probe. L2 still fails reads. Call it in a bubble.
func cooledBreakerCache(t *testing.T) (c *tiercache.Cache[string], l1, l2 *fakeBackend) {
	t.Helper()
	l1, l2 = newFakeBackend(), newFakeBackend()
	l2.configure(func(b *fakeBackend) { b.getErr = errors.New("down") })
	c = openCache(t, l1, l2, &tiercache.Options[string]{Breaker: tiercache.BreakerOptions{Failures: 1, CoolDown: time.Second}})
	_, _, _ = c.Get(context.Background(), "k")
	require.Equal(t, tiercache.BreakerOpen, c.Stats().Breaker.State)
	time.Sleep(time.Second)
	return c, l1, l2
}

// A probe its caller gave up on says nothing about L2: it neither closes
// the breaker nor opens it again, and the next operation is a probe.
func TestBreakerProbeCancelledByCallerDecidesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _, l2 := cooledBreakerCache(t)
		gate := make(chan struct{})
		defer close(gate)
		l2.configure(func(b *fakeBackend) { b.gate = gate }) // L2 hangs
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, _, err := c.Get(ctx, "k")
			done <- err
		}()
		synctest.Wait() // the probe is in L2
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		require.NotEqual(t, tiercache.BreakerClosed, c.Stats().Breaker.State, "a cancelled probe did not succeed")
		require.Equal(t, uint64(0), c.Stats().Breaker.Closes)

		gets := l2.calls().gets
		l2.configure(func(b *fakeBackend) { b.gate = nil }) // L2 still fails
		_, _, _ = c.Get(context.Background(), "k")
		require.Equal(t, gets+1, l2.calls().gets, "the next probe was let through")
		require.Equal(t, tiercache.BreakerOpen, c.Stats().Breaker.State, "and its failure opened the breaker")
	})
}

// While the breaker is half-open and every probe's place is taken, a Set
// does what it does while the breaker is open: L1 gets the value, L2 is not
// called, and the error says L2 lacks it.
func TestBreakerHalfOpenFullSetWritesL1Only(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, l1, l2 := cooledBreakerCache(t)
		gate := make(chan struct{})
		l2.configure(func(b *fakeBackend) { b.gate = gate }) // the probe hangs in L2
		probe := make(chan error, 1)
		go func() {
			_, _, err := c.Get(context.Background(), "k")
			probe <- err
		}()
		synctest.Wait()
		require.Equal(t, tiercache.BreakerHalfOpen, c.Stats().Breaker.State)

		sets := l2.calls().sets
		err := c.Set(context.Background(), "written", "L1 only", 0)
		require.ErrorIs(t, err, tiercache.ErrBreakerOpen)
		got, inL1 := l1.peek("written")
		require.True(t, inL1, "L1 has the value, as while open")
		require.Equal(t, "L1 only", got.Data)
		require.Equal(t, sets, l2.calls().sets, "L2 is not called")
		require.Equal(t, uint64(1), c.Stats().Breaker.WritesSkipped)

		l2.configure(func(b *fakeBackend) { b.getErr = nil })
		close(gate)
		require.NoError(t, <-probe)
	})
}
