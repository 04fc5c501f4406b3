package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viccon/sturdyc"
)

// sturdyc's settings, from its README: "capacity := 10000 ... numShards :=
// 10 ... evictionPercentage := 10".
const (
	sturdycShards             = 10
	sturdycEvictionPercentage = 10
)

func sturdycKind() libraryKind {
	return libraryKind{
		Name:   "sturdyc",
		Label:  "sturdyc",
		Family: familySturdyc,
		Peer:   true,
		Settings: "`sturdyc.New[Product](10_000, 10, time.Hour, 10, sturdyc.WithDistributedStorage(storage))` (capacity, shards and " +
			"eviction percentage as in its README; continuous evictions on, the default), `GetOrFetch` for GetOrLoad, " +
			"`GetOrFetchBatch` for a page of e, with the key itself as the id (its `keyFn` returns its argument, so that a page " +
			"reads the keys GetOrFetch uses); `storage` is this module's Redis `DistributedStorage` (GET, SET with a 1 h TTL, " +
			"and the batch methods GetOrFetchBatch calls: MGET for `GetBatch`, pipelined SETs for `SetBatch`); " +
			"sturdyc has no write-through Set, so Set writes its JSON record to Redis and then calls `Client.Set`",
		New: func(cfg libConfig) (Library, error) {
			client := newRedisClient(cfg)
			return newSturdyc(cfg, client, client), nil
		},
	}
}

// sturdycLib is a sturdyc client over a Redis DistributedStorage.
type sturdycLib struct {
	cache   *sturdyc.Client[Product]
	storage *sturdycStorage
	client  *redis.Client
	origin  *Origin
}

var (
	_ Library   = (*sturdycLib)(nil)
	_ diagnoser = (*sturdycLib)(nil)
)

// newSturdyc builds the cache over redisClient, a client of client (client
// itself, or an AutoPipeliner of it), which Close closes.
func newSturdyc(cfg libConfig, client *redis.Client, redisClient redis.Cmdable) *sturdycLib {
	storage := newSturdycStorage(redisClient, cfg.TTL)
	return &sturdycLib{
		cache: sturdyc.New[Product](cfg.Capacity, sturdycShards, cfg.TTL, sturdycEvictionPercentage,
			sturdyc.WithDistributedStorage(storage)),
		storage: storage,
		client:  client,
		origin:  cfg.Origin,
	}
}

func (s *sturdycLib) GetOrLoad(ctx context.Context, key string) (Product, error) {
	return s.cache.GetOrFetch(ctx, key, func(ctx context.Context) (Product, error) {
		return s.origin.Load(ctx, key)
	})
}

// GetOrLoadMany reads the page with GetOrFetchBatch: the keys missing from
// memory are read from the storage with one GetBatch, and the keys still
// missing go to the Origin in one call. The ids are the keys themselves.
func (s *sturdycLib) GetOrLoadMany(ctx context.Context, keys []string) (map[string]Product, error) {
	return s.cache.GetOrFetchBatch(ctx, keys, sturdycKeyIsID, s.origin.LoadMany)
}

// sturdycKeyIsID is the sturdyc.KeyFn of the benchmark's pages: the ids
// they pass are the cache keys already.
func sturdycKeyIsID(id string) string { return id }

// sturdycRecord is the JSON document sturdyc keeps in a DistributedStorage
// for a value: what its GetOrFetch reads back from Redis.
type sturdycRecord struct {
	CreatedAt       time.Time `json:"created_at"`
	Value           Product   `json:"value"`
	IsMissingRecord bool      `json:"is_missing_record"`
}

// Set writes p to Redis as sturdyc's record, then into sturdyc's memory:
// sturdyc itself writes to its storage only what it fetched.
func (s *sturdycLib) Set(ctx context.Context, key string, p Product) error {
	b, err := json.Marshal(sturdycRecord{CreatedAt: time.Now(), Value: p})
	if err != nil {
		return fmt.Errorf("sturdyc set %q: %w", key, err)
	}
	if err := s.storage.set(ctx, key, b); err != nil {
		return fmt.Errorf("sturdyc set %q: %w", key, err)
	}
	s.cache.Set(key, p)
	return nil
}

// Close closes the Redis client. sturdyc has no Close: its eviction
// goroutine runs until the process exits, and the storage writes it started
// in the background are not waited for (the benchmark waits for Redis to go
// quiet before closing a library).
func (s *sturdycLib) Close(context.Context) error { return s.client.Close() }

// Diagnostics returns the storage's failures, which sturdyc cannot see.
func (s *sturdycLib) Diagnostics() map[string]uint64 {
	return map[string]uint64{"storage failures": s.storage.failures.Load()}
}
