package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
	"github.com/tiercache/tiercache/redisstore"
)

// The refresh marks of a Cache (one per key with a refresh scheduled) are
// removed when the refresh ends or is refused (issue 7: no map keyed by
// user keys outgrows the work under way). Seen from outside: a key that
// was refreshed, or whose refresh the Offload refused, is refreshed again
// the next time it is found stale. This test runs in the default build;
// that flights are removed is TestGetOrLoadLeavesNoFlightBehind's, in the
// root module.
func TestRefreshMarksRemovedWhenDone(t *testing.T) {
	const (
		keys       = 50
		staleAfter = 50 * time.Millisecond
	)
	ctx := context.Background()
	client := newClient(t)
	prefix := newPrefix(t, client)
	l1, err := otterstore.New[string](nil)
	require.NoError(t, err)
	t.Cleanup(func() { l1.Close() })
	l2, err := redisstore.New(client, &redisstore.Options[string]{KeyPrefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l2.Close(ctx)) })
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
	t.Cleanup(func() { require.NoError(t, pool.Close(ctx)) })
	var refuse atomic.Bool
	off := tiercache.OffloadFunc(func(kind string, task func(context.Context)) bool {
		if kind == tiercache.OffloadKindRefresh && refuse.Load() {
			return false
		}
		return pool.Go(kind, task)
	})
	c, err := tiercache.New(l1, l2, &tiercache.Options[string]{DefaultTTL: time.Hour, StaleAfter: staleAfter, Offload: off})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close(ctx)) })

	var loads [keys]atomic.Int32
	getAll := func() {
		t.Helper()
		for i := range keys {
			_, err := c.GetOrLoad(ctx, fmt.Sprint("key-", i), func(context.Context) (string, error) {
				return fmt.Sprint("value-", i, "-", loads[i].Add(1)), nil
			})
			require.NoError(t, err)
		}
	}
	// loadedTimes waits until every key has been loaded n times and the
	// refreshes have ended.
	loadedTimes := func(n int32) {
		t.Helper()
		require.Eventually(t, func() bool {
			for i := range keys {
				if loads[i].Load() != n {
					return false
				}
			}
			return true
		}, 5*time.Second, time.Millisecond, "every key loaded %d times", n)
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		require.NoError(t, pool.Wait(waitCtx))
	}

	getAll()
	loadedTimes(1)
	for n := int32(2); n <= 3; n++ { // refreshed, then refreshed again
		time.Sleep(staleAfter + 10*time.Millisecond)
		getAll()
		loadedTimes(n)
	}
	time.Sleep(staleAfter + 10*time.Millisecond)
	refuse.Store(true)
	getAll() // stale, and the refreshes are refused
	refuse.Store(false)
	rejected := c.Stats().OffloadRejected
	getAll() // still stale: refreshed now
	loadedTimes(4)

	s := c.Stats()
	require.EqualValues(t, keys, rejected, "the refused refreshes")
	require.EqualValues(t, 3*keys, s.Refreshes, "a refresh for every key each time it was found stale and the Offload took it")
	require.EqualValues(t, 4*keys, s.StaleServed)
}
