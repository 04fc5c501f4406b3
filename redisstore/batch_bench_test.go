package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// batchBenchKeys is the number of keys each batch benchmark operation
// reads or writes.
const batchBenchKeys = 100

// batchBenchTargets are the clients the batch benchmarks compare: a single
// node with ContextTimeoutEnabled (the direct path for a ctx that cannot
// end; the ctx here has a deadline, so guarded, as with any client) and
// with default options, and the three-node cluster (always guarded).
var batchBenchTargets = []struct {
	name   string
	client func(b *testing.B) redis.UniversalClient
}{
	{"target=single-direct", func(b *testing.B) redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: redistest.Addr(b), ContextTimeoutEnabled: true})
	}},
	{"target=single-guarded", func(b *testing.B) redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: redistest.Addr(b)})
	}},
	{"target=cluster", func(b *testing.B) redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(b)})
	}},
}

// BenchmarkGetMany reads 100 keys, every one a hit holding a ~200-byte
// JSON value, with one GetMany (impl=GetMany) and with 100 Gets in a row
// (impl=Get-x100), on a real redis-server; one op is the 100 keys. Each
// call has a ctx with a deadline, as a Cache gives it. Compare with
// benchstat -col /impl.
func BenchmarkGetMany(b *testing.B) {
	for _, target := range batchBenchTargets {
		client := target.client(b)
		s, _ := newStore(b, client, redisstore.Options[user]{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		keys := make([]string, batchBenchKeys)
		values := make([]tiercache.CacheValue[user], batchBenchKeys)
		for i := range keys {
			keys[i] = fmt.Sprint("user:", i)
			values[i] = tiercache.CacheValue[user]{Data: ada, Expire: time.Now().Add(time.Hour)}
		}
		if err := s.SetMany(ctx, keys, values); err != nil {
			b.Fatal(err)
		}
		b.Run(target.name+"/impl=GetMany", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got, err := s.GetMany(ctx, keys)
				if err != nil || got[batchBenchKeys-1] == nil {
					b.Fatal("miss", err)
				}
			}
		})
		b.Run(target.name+"/impl=Get-x100", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, key := range keys {
					if v, err := s.Get(ctx, key); err != nil || v == nil {
						b.Fatal("miss", err)
					}
				}
			}
		})
		cancel()
		client.Close()
	}
}

// BenchmarkSetMany writes 100 keys with one SetMany (impl=SetMany) and
// with 100 Sets in a row (impl=Set-x100), as BenchmarkGetMany reads them.
func BenchmarkSetMany(b *testing.B) {
	for _, target := range batchBenchTargets {
		client := target.client(b)
		s, _ := newStore(b, client, redisstore.Options[user]{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		keys := make([]string, batchBenchKeys)
		values := make([]tiercache.CacheValue[user], batchBenchKeys)
		for i := range keys {
			keys[i] = fmt.Sprint("user:", i)
			values[i] = tiercache.CacheValue[user]{Data: ada, Expire: time.Now().Add(time.Hour)}
		}
		b.Run(target.name+"/impl=SetMany", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := s.SetMany(ctx, keys, values); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(target.name+"/impl=Set-x100", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for i, key := range keys {
					if err := s.Set(ctx, key, values[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		cancel()
		client.Close()
	}
}
