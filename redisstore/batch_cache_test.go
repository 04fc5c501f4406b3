package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// pageKeys are the keys of a page of n products.
func pageKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("product:%d", i)
	}
	return keys
}

// pageValue is a value of about 200 bytes.
func pageValue(k string) string { return k + ": " + strings.Repeat("x", 190) }

// warmPage returns a Cache over a fresh otterstore L1 and L2 under a prefix
// already holding the n values of a page.
func warmPage(tb testing.TB, client redis.UniversalClient, n int) (*tiercache.Cache[string], *otterstore.Store[string], []string) {
	tb.Helper()
	keys := pageKeys(n)
	l2, err := redisstore.New(client, &redisstore.Options[string]{KeyPrefix: newPrefix(tb, client)})
	require.NoError(tb, err)
	values := make([]tiercache.CacheValue[string], n)
	for i, k := range keys {
		values[i] = tiercache.CacheValue[string]{Data: pageValue(k), Expire: time.Now().Add(time.Hour)}
	}
	require.NoError(tb, l2.SetMany(context.Background(), keys, values))
	l1, err := otterstore.New[string](nil)
	require.NoError(tb, err)
	c, err := tiercache.New(l1, l2, &tiercache.Options[string]{DefaultTTL: time.Hour, Refill: tiercache.RefillNever})
	require.NoError(tb, err)
	tb.Cleanup(func() {
		require.NoError(tb, c.Close(context.Background()))
		require.NoError(tb, l1.Close())
		require.NoError(tb, l2.Close(context.Background()))
	})
	return c, l1, keys
}

func noLoad(tb testing.TB) func(context.Context, []string) (map[string]string, error) {
	return func(context.Context, []string) (map[string]string, error) {
		tb.Error("the loader was asked, though L2 holds every key")
		return nil, nil
	}
}

// GetOrLoadMany of 100 keys with L1 cold and L2 warm costs one Redis round
// trip: one MGET, as the server counts its commands.
func TestGetOrLoadManyOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	c, _, keys := warmPage(t, client, 100)
	before := commandStats(t, srv.Addr)
	got, err := c.GetOrLoadMany(context.Background(), keys, noLoad(t))
	require.NoError(t, err)
	require.Len(t, got, 100)
	after := commandStats(t, srv.Addr)
	require.Equal(t, 1, after["mget"]-before["mget"], "one MGET")
	require.Zero(t, after["get"]-before["get"], "no GET")
	sent := map[string]int{}
	for cmd, n := range after {
		switch cmd {
		case "info", "hello", "client|setinfo": // commandStats' own connection
		default:
			if d := n - before[cmd]; d > 0 {
				sent[cmd] = d
			}
		}
	}
	require.Equal(t, map[string]int{"mget": 1}, sent, "nothing but the MGET")
}

// BenchmarkPage compares a page of 100 products read with one
// GetOrLoadMany against 100 GetOrLoad calls in a row, each on a cold L1
// over a warm L2, on a real redis-server.
func BenchmarkPage(b *testing.B) {
	client := redis.NewClient(&redis.Options{Addr: redistest.Addr(b), ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	ctx := context.Background()
	c, l1, keys := warmPage(b, client, 100)
	coldL1 := func() {
		b.StopTimer()
		require.NoError(b, l1.Flush(ctx))
		b.StartTimer()
	}
	b.Run("impl=getorloadmany/keys=100", func(b *testing.B) {
		for b.Loop() {
			coldL1()
			got, err := c.GetOrLoadMany(ctx, keys, noLoad(b))
			if err != nil || len(got) != len(keys) {
				b.Fatal(err, len(got))
			}
		}
	})
	b.Run("impl=getorload-in-a-row/keys=100", func(b *testing.B) {
		load := func(context.Context) (string, error) { b.Error("loaded"); return "", nil }
		for b.Loop() {
			coldL1()
			for _, k := range keys {
				if _, err := c.GetOrLoad(ctx, k, load); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
