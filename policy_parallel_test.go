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

// Rule 6: Parallel reads both and waits for both. When both hit, the later
// Expire wins (exact instants; never expiring beats expiring; a tie goes to
// L1). When one hits, its value wins whatever the other did.
func TestParallelReadPolicyChoice(t *testing.T) {
	base := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	at := func(data string, expire time.Time) *tiercache.CacheValue[string] {
		return &tiercache.CacheValue[string]{Data: data, Expire: expire}
	}
	tests := []struct {
		name       string
		l1, l2     *fakeLayer
		wantSource tiercache.Layer
	}{
		{name: "L2 expires later", l1: &fakeLayer{val: at("1", base)}, l2: &fakeLayer{val: at("2", base.Add(time.Second))}, wantSource: tiercache.L2},
		{name: "L1 expires later", l1: &fakeLayer{val: at("1", base.Add(time.Second))}, l2: &fakeLayer{val: at("2", base)}, wantSource: tiercache.L1},
		{name: "one nanosecond decides", l1: &fakeLayer{val: at("1", base)}, l2: &fakeLayer{val: at("2", base.Add(time.Nanosecond))}, wantSource: tiercache.L2},
		{name: "sub-second difference is not rounded away", l1: &fakeLayer{val: at("1", base.Add(999*time.Millisecond))}, l2: &fakeLayer{val: at("2", base.Add(time.Millisecond))}, wantSource: tiercache.L1},
		{name: "tie goes to L1", l1: &fakeLayer{val: at("1", base)}, l2: &fakeLayer{val: at("2", base)}, wantSource: tiercache.L1},
		{name: "same instant in different zones is a tie", l1: &fakeLayer{val: at("1", base)}, l2: &fakeLayer{val: at("2", base.In(time.FixedZone("X", 3600)))}, wantSource: tiercache.L1},
		{name: "L1 never expires beats L2", l1: &fakeLayer{val: at("1", time.Time{})}, l2: &fakeLayer{val: at("2", base.Add(24*time.Hour))}, wantSource: tiercache.L1},
		{name: "L2 never expires beats L1", l1: &fakeLayer{val: at("1", base.Add(24*time.Hour))}, l2: &fakeLayer{val: at("2", time.Time{})}, wantSource: tiercache.L2},
		{name: "both never expire: tie to L1", l1: &fakeLayer{val: at("1", time.Time{})}, l2: &fakeLayer{val: at("2", time.Time{})}, wantSource: tiercache.L1},
		{name: "only L1 hits, L2 misses", l1: &fakeLayer{val: at("1", base)}, l2: &fakeLayer{}, wantSource: tiercache.L1},
		{name: "only L1 hits, L2 fails", l1: &fakeLayer{val: at("1", base)}, l2: &fakeLayer{err: errors.New("down")}, wantSource: tiercache.L1},
		{name: "only L2 hits, L1 misses", l1: &fakeLayer{}, l2: &fakeLayer{val: at("2", base)}, wantSource: tiercache.L2},
		{name: "only L2 hits, L1 panics", l1: &fakeLayer{panicWith: "x"}, l2: &fakeLayer{val: at("2", base)}, wantSource: tiercache.L2},
		{name: "L2 value beats an expired L1 value", l1: &fakeLayer{val: at("1", base.Add(-48*time.Hour))}, l2: &fakeLayer{val: at("2", base)}, wantSource: tiercache.L2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// The bubble's clock starts in 2000, before base.
				res, err := tiercache.ParallelReadPolicy[string]{}.Read(context.Background(), "k", tt.l1.read, tt.l2.read, nil)
				require.NoError(t, err)
				require.Equal(t, tt.wantSource, res.Source)
				require.Equal(t, tt.wantSource.String()[1:], res.Value.Data)
				require.Equal(t, 1, tt.l1.stats().calls)
				require.Equal(t, 1, tt.l2.stats().calls)
			})
		})
	}
}

// Parallel waits for both layers, and reads them at the same time.
func TestParallelWaitsForBoth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l1 := &fakeLayer{val: hitIn("1", time.Hour), delay: 30 * time.Millisecond}
		l2 := &fakeLayer{delay: 50 * time.Millisecond}
		start := time.Now()
		res, err := tiercache.ParallelReadPolicy[string]{}.Read(context.Background(), "k", l1.read, l2.read, nil)
		require.NoError(t, err)
		require.Equal(t, 50*time.Millisecond, time.Since(start), "concurrent: the slower layer, not the sum")
		require.Equal(t, tiercache.L1, res.Source)
		require.Equal(t, tiercache.StatusMiss, res.L2.Status, "L2 ran to completion")
		require.Equal(t, 0, l2.stats().cancelled)
	})
}

// Parallel reads L1 on the caller's goroutine and L2 on exactly one other.
func TestParallelGoroutines(t *testing.T) {
	l1, l2 := &fakeLayer{}, &fakeLayer{}
	_, err := tiercache.ParallelReadPolicy[string]{}.Read(context.Background(), "k", l1.read, l2.read, nil)
	require.NoError(t, err)
	require.Equal(t, goroutineID(), l1.goroutine)
	require.NotEqual(t, goroutineID(), l2.goroutine)
}

// An L2 hit that came in before ctx ended wins under Parallel, even when the
// L1 read, still running, ends with ctx: the value wins whatever L1 did, and
// L2, which finished, is reported as it finished, not as abandoned. Repeated,
// since both the L2 answer and ctx's end are ready when L1 returns.
func TestParallelL2HitBeforeCtxEndWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for range 20 {
			l1 := &fakeLayer{delay: time.Hour}
			l2 := &fakeLayer{val: hitIn("2", time.Hour)}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(10*time.Millisecond, cancel)
			res, err := tiercache.ParallelReadPolicy[string]{}.Read(ctx, "k", l1.read, l2.read, nil)
			require.NoError(t, err)
			require.Equal(t, tiercache.L2, res.Source)
			require.Equal(t, "2", res.Value.Data)
			require.Equal(t, tiercache.StatusHit, res.L2.Status)
			require.Equal(t, tiercache.StatusFailed, res.L1.Status)
		}
	})
}

// An L1 value that expires while Parallel waits for a slow L2 is a miss,
// not the answer: ReadResult.Value is never expired. Whether L2 then misses
// or fails, the read is a miss without an error.
func TestParallelL1ValueExpiredWhileWaitingForL2IsAMiss(t *testing.T) {
	tests := []struct {
		name string
		l2   *fakeLayer
	}{
		{name: "L2 misses", l2: &fakeLayer{delay: 2 * time.Second}},
		{name: "L2 fails", l2: &fakeLayer{delay: 2 * time.Second, err: errors.New("down")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1 := &fakeLayer{val: hitIn("1", time.Second)}
				res, err := tiercache.ParallelReadPolicy[string]{}.Read(context.Background(), "k", l1.read, tt.l2.read, nil)
				require.NoError(t, err)
				require.Nil(t, res.Value, "expired at 1s, answered at 2s")
				require.Equal(t, tiercache.NoLayer, res.Source)
				require.Equal(t, tiercache.StatusMiss, res.L1.Status)
			})
		})
	}
}
