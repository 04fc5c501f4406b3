package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// The Cache over its real backends: otterstore as L1, redisstore as L2 on a
// real redis-server, for each read policy.

var integrationPolicies = []struct {
	name   string
	policy tiercache.ReadPolicy[string]
}{
	{"sequential", tiercache.SequentialReadPolicy[string]{}},
	{"parallel", tiercache.ParallelReadPolicy[string]{}},
	{"race", tiercache.RaceReadPolicy[string]{}},
	{"race-cancel", tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}},
}

// commandCounter is a go-redis hook counting the commands a client sends,
// by name.
type commandCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.n[strings.ToLower(cmd.Name())]++
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *commandCounter) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[name]
}

// reads counts the commands that read L2: GETs, and the MGETs of
// coalesced Gets.
func (h *commandCounter) reads() int { return h.count("get") + h.count("mget") }

// replica is one process's cache: its own L1 over the shared L2 prefix.
func newReplica(t *testing.T, client redis.UniversalClient, prefix string, opts tiercache.Options[string]) *tiercache.Cache[string] {
	t.Helper()
	l1, err := otterstore.New(&otterstore.Options[string]{MaximumSize: 1000})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l1.Close()) })
	l2, err := redisstore.New(client, &redisstore.Options[string]{KeyPrefix: prefix})
	require.NoError(t, err)
	c, err := tiercache.New(l1, l2, &opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, c.Close(context.Background()))
		require.NoError(t, l2.Close(context.Background()))
	})
	return c
}

func TestCacheOverRedis(t *testing.T) {
	ctx := context.Background()
	for _, p := range integrationPolicies {
		t.Run(p.name, func(t *testing.T) {
			counter := &commandCounter{n: map[string]int{}}
			client := redis.NewClient(&redis.Options{Addr: redistest.Addr(t), ContextTimeoutEnabled: true})
			client.AddHook(counter)
			t.Cleanup(func() { client.Close() })
			prefix := newPrefix(t, client)
			opts := tiercache.Options[string]{ReadPolicy: p.policy, DefaultTTL: time.Minute, NegativeTTL: time.Minute, L2Timeout: time.Second}
			a := newReplica(t, client, prefix, opts)
			b := newReplica(t, client, prefix, opts)

			t.Run("a write in one replica is read by another through L2", func(t *testing.T) {
				require.NoError(t, a.Set(ctx, "greeting", "hello", 0))
				v, ok, err := b.Get(ctx, "greeting")
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, "hello", v)
				require.Equal(t, uint64(1), b.Stats().L2.Hits)
			})

			t.Run("a stampede on a cold key costs one L2 read and one load", func(t *testing.T) {
				before, coalescedBefore := counter.reads(), a.Stats().Coalesced
				var loads atomic.Int32
				gate := make(chan struct{})
				var wg sync.WaitGroup
				for range 200 {
					wg.Go(func() {
						v, err := a.GetOrLoad(ctx, "cold", func(context.Context) (string, error) {
							loads.Add(1)
							<-gate
							return "loaded", nil
						})
						require.NoError(t, err)
						require.Equal(t, "loaded", v)
					})
				}
				// The load waits until every caller has joined it, so that
				// none arrives after it (a Parallel read would read L2 again).
				require.Eventually(t, func() bool { return a.Stats().Coalesced-coalescedBefore >= 199 }, 5*time.Second, time.Millisecond)
				close(gate)
				wg.Wait()
				require.Equal(t, int32(1), loads.Load())
				require.Equal(t, 1, counter.reads()-before)
				require.Eventually(t, func() bool { // the L2 write went through the Offload
					v, ok, err := b.Get(ctx, "cold")
					return err == nil && ok && v == "loaded"
				}, 5*time.Second, 10*time.Millisecond)
			})

			t.Run("an absence one replica learnt spares the other's origin", func(t *testing.T) {
				_, err := a.GetOrLoad(ctx, "ghost", func(context.Context) (string, error) { return "", tiercache.ErrNotFound })
				require.ErrorIs(t, err, tiercache.ErrNotFound)
				require.Eventually(t, func() bool { // the absence's L2 write goes through the Offload
					return client.Exists(ctx, prefix+"ghost").Val() == 1
				}, 5*time.Second, time.Millisecond)
				_, err = b.GetOrLoad(ctx, "ghost", func(context.Context) (string, error) {
					t.Error("b asked the origin about a key a remembered absent")
					return "resurrected", nil
				})
				require.ErrorIs(t, err, tiercache.ErrNotFound)
			})

			t.Run("Redis drops a value at its Expire", func(t *testing.T) {
				const ttl = 300 * time.Millisecond
				// b must read the value before its Expire, which Redis
				// applies to the millisecond, rounded down: a miss by a
				// Set and Get that took longer, on a loaded machine,
				// proves nothing, and the test tries again with a new key.
				var key string
				for attempt := 1; ; attempt++ {
					key = fmt.Sprint("brief", attempt)
					start := time.Now()
					require.NoError(t, a.Set(ctx, key, "soon gone", ttl))
					v, ok, err := b.Get(ctx, key)
					require.NoError(t, err)
					if took := time.Since(start); !ok && took >= ttl-time.Millisecond && attempt < 10 {
						t.Logf("attempt %d: Set and Get took %v, past the TTL", attempt, took)
						continue
					}
					require.True(t, ok)
					require.Equal(t, "soon gone", v)
					break
				}
				time.Sleep(400 * time.Millisecond)
				for _, c := range []*tiercache.Cache[string]{a, b} {
					_, ok, err := c.Get(ctx, key)
					require.NoError(t, err)
					require.False(t, ok)
				}
				require.Zero(t, client.Exists(ctx, prefix+key).Val())
			})

			t.Run("Delete removes the key from Redis", func(t *testing.T) {
				require.NoError(t, a.Set(ctx, "doomed", "x", 0))
				require.NoError(t, a.Delete(ctx, "doomed"))
				require.Zero(t, client.Exists(ctx, prefix+"doomed").Val())
				_, ok, err := b.Get(ctx, "doomed")
				require.NoError(t, err)
				require.False(t, ok)
			})
		})
	}
}

// With Redis frozen, GetOrLoad answers from the origin, and keeps the value
// in L1: L2Timeout bounds the wait for Redis. The client has no read
// timeout, so that nothing else can end that wait: GetOrLoad must return
// with Redis still frozen, before a fail-safe thaws it.
func TestCacheSurvivesFrozenRedis(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: -1})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	for _, p := range integrationPolicies {
		t.Run(p.name, func(t *testing.T) {
			c := newReplica(t, client, newPrefix(t, client), tiercache.Options[string]{
				ReadPolicy: p.policy, DefaultTTL: time.Minute, L2Timeout: 50 * time.Millisecond,
			})
			require.NoError(t, srv.Freeze())
			failsafe := time.AfterFunc(waitFor, func() { _ = srv.Thaw() })
			start := time.Now()
			v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "from origin", nil })
			elapsed := time.Since(start)
			frozen := failsafe.Stop() // the fail-safe has not thawed Redis
			require.NoError(t, srv.Thaw())
			require.NoError(t, err)
			require.Equal(t, "from origin", v)
			require.True(t, frozen, "L2Timeout bounds the wait for Redis: GetOrLoad took %v", elapsed)
			t.Logf("GetOrLoad took %v with Redis frozen", elapsed)
			v, ok, err := c.Get(ctx, "k")
			require.NoError(t, err)
			require.True(t, ok, "the loaded value is in L1")
			require.Equal(t, "from origin", v)
		})
	}
}
