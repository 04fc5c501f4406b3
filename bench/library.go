package main

import (
	"context"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Library is one cache under test, behind the two calls the workloads make.
// Implementations are safe for concurrent use.
type Library interface {
	// GetOrLoad returns the Product of key, loading it from the Origin on a
	// miss, the way the library's documentation recommends.
	GetOrLoad(ctx context.Context, key string) (Product, error)
	// Set writes p under key in both the local cache and Redis.
	Set(ctx context.Context, key string, p Product) error
	// Close waits for the library's background work where it can and
	// releases the library and its Redis client.
	Close(ctx context.Context) error
}

// batchLibrary is a Library that reads a page of keys in one call, which
// workload e makes. Every library under comparison is one.
type batchLibrary interface {
	Library
	// GetOrLoadMany returns the Products of keys, which are distinct,
	// loading the missing ones from the Origin, through the library's batch
	// API where it has one (one Origin.LoadMany call for the keys it
	// missed), the way its documentation shows.
	GetOrLoadMany(ctx context.Context, keys []string) (map[string]Product, error)
}

var (
	_ batchLibrary = (*tiercacheLib)(nil)
	_ batchLibrary = (*sturdycLib)(nil)
	_ batchLibrary = (*goRedisCacheLib)(nil)
)

// diagnoser is a Library that exposes counters of its own, reported beside
// the figures (their difference over the measured phase).
type diagnoser interface {
	Diagnostics() map[string]uint64
}

// libConfig is what every Library is built from: the same Redis, the same
// local capacity and TTL, the same Origin.
type libConfig struct {
	Addr     string        // Redis, or the slow proxy in front of it
	DB       int           // the Redis database of this library's keys
	Capacity int           // local cache capacity, in entries
	TTL      time.Duration // time to live of every value, in both layers
	Origin   *Origin
}

// newRedisClient returns the go-redis client every library gets: the same
// options for all, go-redis's defaults but for ContextTimeoutEnabled, which
// redisstore asks for (PoolSize is 10 per GOMAXPROCS).
func newRedisClient(cfg libConfig) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  cfg.Addr,
		DB:                    cfg.DB,
		ContextTimeoutEnabled: true,
	})
}

// libraryKind describes one library configuration of the comparison.
type libraryKind struct {
	Name   string // in tables
	Label  string // in the chart
	Family string // libraries of one family read each other's Redis entries
	Peer   bool   // a library tiercache is compared against
	// Experiment marks a configuration outside the comparison proper,
	// reported on its own.
	Experiment bool
	Settings   string // how it is configured, for results.md
	// Only lists the workloads it runs on; empty: every workload.
	Only []string
	New  func(cfg libConfig) (Library, error)
}

// runs reports whether k runs on the workload with id id.
func (k libraryKind) runs(id string) bool {
	return len(k.Only) == 0 || slices.Contains(k.Only, id)
}

// Families, which decide the Redis database of the pre-filled key space of
// workloads b and d.
const (
	familyTiercache = "tiercache"
	familyGoRedis   = "go-redis/cache"
	familySturdyc   = "sturdyc"
	// familyTiercacheMsgpack is tiercache with msgpack as its Codec (the
	// codec experiment): its entries are not JSON, so it has a database of
	// its own.
	familyTiercacheMsgpack = "tiercache (msgpack)"
)

// libraries returns every configuration under comparison, tiercache's first.
func libraries() []libraryKind {
	return []libraryKind{
		tiercacheKind("Sequential", "sequential", tiercacheSequential),
		tiercacheKind("Parallel", "parallel", tiercacheParallel),
		tiercacheKind("Race LoserOffload", "race-offload", tiercacheRaceOffload),
		tiercacheKind("Race LoserCancel", "race-cancel", tiercacheRaceCancel),
		tiercacheUncoalescedKind(),
		goRedisCacheKind(),
		sturdycKind(),
	}
}
