package redisstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// BenchmarkInvalidationBatching measures what the batch window does under
// write load: eight writers Set distinct keys on replica A, either paced to
// 5,000 writes a second in all or as fast as they can, and replica B
// records when each key is evicted from its L1. It reports the writes and
// the messages A published per second, the keys per message, and the
// propagation delay from a Set returning to B's eviction (p50, p99).
//
//	go test -run '^$' -bench InvalidationBatching -benchtime 20000x
func BenchmarkInvalidationBatching(b *testing.B) {
	for _, rate := range []int{5000, 0} {
		for _, w := range []struct {
			name   string
			window time.Duration
		}{
			{"window=none", -1},
			{"window=250µs", 250 * time.Microsecond},
			{"window=500µs", 500 * time.Microsecond},
			{"window=1ms(default)", 0},
			{"window=5ms", 5 * time.Millisecond},
		} {
			name := "rate=max/" + w.name
			if rate > 0 {
				name = fmt.Sprintf("rate=%d/s/%s", rate, w.name)
			}
			b.Run(name, func(b *testing.B) { benchBatching(b, w.window, rate) })
		}
	}
}

// benchBatching is one case of BenchmarkInvalidationBatching: b.N writes,
// rate of them a second (0: unpaced).
func benchBatching(b *testing.B, window time.Duration, rate int) {
	ctx := context.Background()
	addr := redistest.Addr(b)
	clientA, clientB := newTimeoutClient(b, addr), newTimeoutClient(b, addr)
	prefix, channel := newPrefix(b, clientA), newChannel()
	invA := newInvalidator(b, clientA, redisstore.InvalidatorOptions{Channel: channel, BatchWindow: window})
	invB := newInvalidator(b, clientB, redisstore.InvalidatorOptions{Channel: channel})
	a := benchCache(b, clientA, prefix, invA)
	l1B := newEvictionL1(b)
	waitTrusted(b, a, benchCacheWithL1(b, clientB, prefix, invB, l1B))

	const writers = 8
	var (
		next     atomic.Int64
		mu       sync.Mutex
		returned = make(map[string]time.Time, b.N)
		wg       sync.WaitGroup
	)
	before := invA.Stats()
	b.ResetTimer()
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				if rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(n) * time.Second / time.Duration(rate))))
				}
				key := fmt.Sprint("b", n)
				if err := a.cache.Set(ctx, key, "v", time.Minute); err != nil {
					b.Error(err)
					return
				}
				at := time.Now()
				mu.Lock()
				returned[key] = at
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	delays := make([]time.Duration, 0, len(returned))
	deadline := time.Now().Add(waitFor)
	for key, at := range returned {
		for {
			if ev, ok := l1B.deletedAt(key); ok {
				delays = append(delays, max(ev.Sub(at), 0))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s never reached B", key)
			}
			time.Sleep(time.Millisecond)
		}
	}
	after := invA.Stats()
	msgs := after.MessagesPublished - before.MessagesPublished
	keys := after.KeysPublished - before.KeysPublished
	p50, p99, _ := quantiles(delays)
	b.ReportMetric(float64(len(returned))/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(msgs)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(keys)/float64(max(msgs, 1)), "keys/msg")
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
}

// benchCache is a replica with a cache over an otterstore L1 of its own.
func benchCache(b *testing.B, client *redis.Client, prefix string, inv *redisstore.Invalidator) *replica {
	return benchCacheWithL1(b, client, prefix, inv, newEvictionL1(b))
}

func benchCacheWithL1(b *testing.B, client *redis.Client, prefix string, inv *redisstore.Invalidator, l1 *evictionL1) *replica {
	b.Helper()
	l2, err := redisstore.New(client, &redisstore.Options[string]{KeyPrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	opts := tiercache.Options[string]{Invalidator: inv}
	r := &replica{inv: inv, l1: l1, trust: observeTrust(&opts)}
	r.cache, err = tiercache.New[string](l1, l2, &opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := r.cache.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return r
}
