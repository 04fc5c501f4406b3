package tiercache_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// An L2 read its caller's ctx cut short is counted abandoned, not as a
// failure of L2, in Stats and to the Observer: a Get under the default
// policy, as a GetOrLoad's read is.
func TestGetCancelledL2ReadIsAbandonedNotFailed(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		gate, _ := loadGate(t)
		l2.configure(func(b *fakeBackend) { b.gate = gate })
		c, r := observedCache(t, l1, l2, tiercache.Options[string]{ReadPolicy: lp.policy})
		for i := range 20 { // the policy may see its read's end or ctx's first
			ctx, cancel := context.WithCancel(context.Background())
			got := goCall(t, ctx, "Get", func(ctx context.Context) error {
				_, _, err := c.Get(ctx, "k")
				return err
			})
			synctest.Wait()
			cancel()
			synctest.Wait()
			require.ErrorIs(t, resultNow(t, got, "Get"), context.Canceled)
			s := c.Stats().L2
			require.Zero(t, s.Failures, "the caller left; L2 did not fail")
			require.EqualValues(t, i+1, s.Abandoned)
		}
		for _, e := range r.of(tiercache.EventRead) {
			if e.Layer == tiercache.L2 {
				require.Equal(t, tiercache.StatusAbandoned, e.Status)
			}
		}
	})
}

// A GetOrLoad that misses L1 while a refresh loads the key reads L2 outside
// any flight; when its caller leaves during that read, the read is counted
// abandoned, not as a failure of L2.
func TestGetOrLoadCancelledL2ReadDuringRefreshIsAbandoned(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFakeBackend(), newFakeBackend()
		c := newLoadTestCache(t, l1, l2, &tiercache.Options[string]{ReadPolicy: lp.policy, StaleAfter: time.Minute})
		l1.put("k", tiercache.CacheValue[string]{Data: "stale", Stale: time.Now().Add(-time.Second)})
		loading, openLoad := loadGate(t)
		loader := countLoads(func(context.Context, int) (string, error) { <-loading; return "fresh", nil })
		v, err := c.GetOrLoad(context.Background(), "k", loader.load)
		require.NoError(t, err)
		require.Equal(t, "stale", v)
		synctest.Wait() // the refresh is loading
		require.Equal(t, 1, loader.n())

		l1.configure(func(b *fakeBackend) { delete(b.m, "k") })
		l2Gate, _ := loadGate(t)
		l2.configure(func(b *fakeBackend) { b.gate = l2Gate })
		before := c.Stats().L2
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		gone := goGetOrLoad(t, ctx, c, "k", loader.load)
		synctest.Wait()
		cancel()
		synctest.Wait()
		require.ErrorIs(t, loadResultNow(t, gone).err, context.Canceled)
		s := c.Stats().L2
		require.Equal(t, before.Failures, s.Failures, "the caller left; L2 did not fail")
		require.Equal(t, before.Abandoned+1, s.Abandoned)
		openLoad()
	})
}

// A Set the open breaker keeps from L2 is an L2 operation it refused,
// counted in Breaker.Rejected as a Delete's and a loaded value's L2 write
// are.
func TestBreakerRejectedCountsEveryRefusedOperation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l1, l2 := newFakeBackend(), newFakeBackend()
		l2.configure(func(b *fakeBackend) { b.getErr = errors.New("down") })
		c := openCache(t, l1, l2, &tiercache.Options[string]{
			Breaker: tiercache.BreakerOptions{Failures: 1, CoolDown: time.Hour},
			Offload: &inlineOffload{},
		})
		_, _, _ = c.Get(ctx, "k")
		require.Equal(t, tiercache.BreakerOpen, c.Stats().Breaker.State)
		for _, tt := range []struct {
			name string
			op   func() error
		}{
			{"Set", func() error { return c.Set(ctx, "k", "v", 0) }},
			{"Delete", func() error { return c.Delete(ctx, "k") }},
			{"Get", func() error { _, _, err := c.Get(ctx, "cold"); return err }},
		} {
			before := c.Stats().Breaker.Rejected
			_ = tt.op()
			require.Equal(t, before+1, c.Stats().Breaker.Rejected, tt.name)
		}
		require.Equal(t, 0, l2.calls().sets+l2.calls().deletes, "L2 not called while open")
	})
}

// A GetOrLoadMany whose every value was loaded ends as a miss, as a
// GetOrLoad that loads does: no layer served a value. One that a layer
// served a value for ends as a hit.
func TestObserverGetOrLoadManyLoadedIsMiss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l1 := newFakeBackend()
		c, r := observedCache(t, l1, newFakeBackend(), tiercache.Options[string]{})
		load := func(_ context.Context, keys []string) (map[string]string, error) {
			m := map[string]string{}
			for _, k := range keys {
				m[k] = "loaded"
			}
			return m, nil
		}
		got, err := c.GetOrLoadMany(ctx, []string{"a", "b"}, load)
		require.NoError(t, err)
		require.Len(t, got, 2)
		done := r.of(tiercache.EventOpDone)
		require.Len(t, done, 1)
		require.Equal(t, tiercache.StatusMiss, done[0].Status, "loaded, not served by a layer")
		require.Equal(t, tiercache.OutcomeMiss, done[0].Outcome())

		r.reset()
		_, err = c.GetOrLoadMany(ctx, []string{"a", "c"}, load) // a from L1
		require.NoError(t, err)
		require.Equal(t, tiercache.StatusHit, r.of(tiercache.EventOpDone)[0].Status)
	})
}
