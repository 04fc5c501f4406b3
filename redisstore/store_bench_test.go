package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// benchPaths are the ways a command reaches Redis, compared by the Get and
// Set benchmarks on the same server and the same value (user, ~200 bytes of
// JSON):
//
//   - path=goredis: go-redis alone (GET/SET of the entry's bytes), no Store;
//   - path=direct: a Store with coalescing off (CoalesceGets and
//     CoalesceWrites -1) over a client with ContextTimeoutEnabled, which it
//     calls on the caller's goroutine for a ctx that cannot end; a ctx
//     with a deadline may be cancelled before it, so the Store runs each
//     command on a goroutine of its own, as on path=guarded;
//   - path=guarded: the same over a client with default options, which it
//     runs each command on a goroutine of its own to return by ctx's
//     end;
//   - path=coalesced: path=direct with the Store's defaults, which coalesce
//     under load: Gets sharing MGETs and Sets sharing pipelines once
//     SuggestedCoalesceGets are in flight.
//
// Every call gets a ctx with a deadline, as a tiercache Cache gives it.
var benchPaths = []struct {
	name     string
	cte      bool
	coalesce int
}{
	{"path=goredis", true, redisstore.CoalesceOff},
	{"path=direct", true, redisstore.CoalesceOff},
	{"path=guarded", false, redisstore.CoalesceOff},
	{"path=coalesced", true, 0},
}

func benchStore(b *testing.B, cte bool, coalesce int) (*redis.Client, *redisstore.Store[user], string) {
	client := redis.NewClient(&redis.Options{Addr: redistest.Addr(b), ContextTimeoutEnabled: cte})
	b.Cleanup(func() { client.Close() })
	s, prefix := newStore(b, client, redisstore.Options[user]{CoalesceGets: coalesce, CoalesceWrites: coalesce})
	return client, s, prefix
}

func BenchmarkGet(b *testing.B) {
	for _, p := range benchPaths {
		b.Run(p.name, func(b *testing.B) {
			client, s, prefix := benchStore(b, p.cte, p.coalesce)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			if err := s.Set(ctx, "k", tiercache.CacheValue[user]{Data: ada, Expire: time.Now().Add(time.Hour)}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			if p.name == "path=goredis" {
				for b.Loop() {
					if _, err := client.Get(ctx, prefix+"k").Bytes(); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			for b.Loop() {
				if v, err := s.Get(ctx, "k"); err != nil || v == nil {
					b.Fatal(v, err)
				}
			}
		})
	}
}

func BenchmarkGetParallel(b *testing.B) {
	for _, p := range benchPaths[1:] {
		b.Run(p.name, func(b *testing.B) {
			_, s, _ := benchStore(b, p.cte, p.coalesce)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			if err := s.Set(ctx, "k", tiercache.CacheValue[user]{Data: ada, Expire: time.Now().Add(time.Hour)}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetParallelism(4) // 8 callers on 2 cores: a server's request handlers
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if v, err := s.Get(ctx, "k"); err != nil || v == nil {
						b.Error(v, err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkSet(b *testing.B) {
	for _, p := range benchPaths {
		b.Run(p.name, func(b *testing.B) {
			client, s, prefix := benchStore(b, p.cte, p.coalesce)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			v := tiercache.CacheValue[user]{Data: ada, Expire: time.Now().Add(time.Hour), Stale: time.Now().Add(time.Minute)}
			b.ReportAllocs()
			if p.name == "path=goredis" {
				if err := s.Set(ctx, "k", v); err != nil {
					b.Fatal(err)
				}
				raw, err := client.Get(ctx, prefix+"k").Bytes()
				if err != nil {
					b.Fatal(err)
				}
				raw = append([]byte(nil), raw...)
				at := v.Expire.UnixMilli()
				for b.Loop() {
					if err := client.Do(ctx, "set", prefix+"k", raw, "pxat", at).Err(); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			for b.Loop() {
				if err := s.Set(ctx, "k", v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// memClient answers every command at once from memory: a GET with entry,
// anything else with OK. Only Process is implemented; the Store calls
// nothing else.
type memClient struct {
	redis.UniversalClient
	entry string
}

func (c *memClient) Process(_ context.Context, cmd redis.Cmder) error {
	switch cmd := cmd.(type) {
	case *redis.StringCmd:
		cmd.SetVal(c.entry)
	case *redis.StatusCmd:
		cmd.SetVal("OK")
	}
	return nil
}

// BenchmarkGetOverhead measures redisstore's own cost of a Get, decoding
// included, with a client that answers at once from memory: path=direct
// (a ctx that cannot end, which takes the direct path with any client)
// beside path=guarded (a ctx with a deadline and a client the Store cannot
// trust, which takes the guarded path: one goroutine per call).
func BenchmarkGetOverhead(b *testing.B) {
	ctx := context.Background()
	// The entry of ada, as a Store writes it.
	rec := &recordClient{}
	w, err := redisstore.New[user](rec, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Set(ctx, "k", tiercache.CacheValue[user]{Data: ada, Expire: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	s, err := redisstore.New[user](&memClient{entry: rec.last}, nil)
	if err != nil {
		b.Fatal(err)
	}
	deadline, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	for _, p := range []struct {
		name string
		ctx  context.Context
	}{{"path=direct", ctx}, {"path=guarded", deadline}} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v, err := s.Get(p.ctx, "k"); err != nil || v == nil {
					b.Fatal(v, err)
				}
			}
		})
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// recordClient keeps the value of the last SET it is sent.
type recordClient struct {
	redis.UniversalClient
	last string
}

func (c *recordClient) Process(_ context.Context, cmd redis.Cmder) error {
	if args := cmd.Args(); len(args) >= 3 && args[0] == "set" {
		c.last = string(args[2].([]byte))
	}
	return nil
}

// BenchmarkCacheL2Hit measures a Cache's GetOrLoad on an L1 miss and an L2
// hit over a real Redis: the flight, the Store's Get and its decoding, the
// refill (RefillInline, as for an in-process L1); 8 callers on distinct
// keys, each key in Redis, and an L1 that never holds anything, so that
// every call reads L2. path=coalesced is the Store with its defaults,
// which coalesce under load.
// path=floor is the least a two-tier read can do on the same traffic:
// go-redis's GET of a plain JSON value, json.Unmarshal, and a copy into a
// mutex-guarded map, on the caller's goroutine, no deadline.
//
// Besides ns/op (wall time, 2 cores shared with redis-server), cpu-ns/op
// is the process's CPU time (user and system) per call, which says more
// about the cost of a path than wall time on a noisy machine.
func BenchmarkCacheL2Hit(b *testing.B) {
	const keys = 1024
	load := func(context.Context) (user, error) { return user{}, errors.New("loaded: the key is in Redis") }
	b.Run("path=floor", func(b *testing.B) {
		client, _, prefix := benchStore(b, true, redisstore.CoalesceOff)
		ctx := context.Background()
		for i := range keys {
			raw, err := json.Marshal(ada)
			if err != nil {
				b.Fatal(err)
			}
			if err := client.Set(ctx, prefix+benchKey(i), raw, time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
		}
		var (
			mu    sync.Mutex
			local = make(map[string]user, keys)
		)
		runL2Hits(b, keys, func(key string) error {
			raw, err := client.Get(ctx, prefix+key).Bytes()
			if err != nil {
				return err
			}
			var u user
			if err := json.Unmarshal(raw, &u); err != nil {
				return err
			}
			mu.Lock()
			local[key] = u
			delete(local, key) // an L1 that never holds anything, as nowhere
			mu.Unlock()
			return nil
		})
	})
	for _, p := range benchPaths[1:] {
		if !p.cte {
			continue
		}
		b.Run(p.name, func(b *testing.B) {
			_, s, _ := benchStore(b, p.cte, p.coalesce)
			ctx := context.Background()
			for i := range keys {
				if err := s.Set(ctx, benchKey(i), tiercache.CacheValue[user]{Data: ada, Expire: time.Now().Add(time.Hour)}); err != nil {
					b.Fatal(err)
				}
			}
			c, err := tiercache.New[user](nowhere[user]{}, s, &tiercache.Options[user]{L2Timeout: time.Second, Refill: tiercache.RefillInline})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close(ctx) })
			runL2Hits(b, keys, func(key string) error {
				_, err := c.GetOrLoad(ctx, key, load)
				return err
			})
		})
	}
}

// runL2Hits runs read over keys keys from 8 callers, each on its own run of
// keys, and reports allocations and cpu-ns/op.
func runL2Hits(b *testing.B, keys int, read func(key string) error) {
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(4) // 8 callers on 2 cores
	cpu0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(int64(keys / 8)))
		for pb.Next() {
			i++
			if err := read(benchKey(i % keys)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

func benchKey(i int) string { return "k" + strconv.Itoa(i) }

// nowhere is an L1 that holds nothing: every Get misses.
type nowhere[T any] struct{}

func (nowhere[T]) Get(context.Context, string) (*tiercache.CacheValue[T], error) { return nil, nil }
func (nowhere[T]) Set(context.Context, string, tiercache.CacheValue[T]) error    { return nil }
func (nowhere[T]) Delete(context.Context, string) error                          { return nil }
