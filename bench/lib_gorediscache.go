package main

import (
	"context"

	"github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
)

func goRedisCacheKind() libraryKind {
	return libraryKind{
		Name:   "go-redis/cache",
		Label:  "go-redis/cache",
		Family: familyGoRedis,
		Peer:   true,
		Settings: "`cache.New(&cache.Options{Redis: client, LocalCache: cache.NewTinyLFU(10_000, time.Hour)})` as in its README " +
			"(msgpack with s2 compression above 64 bytes, the defaults); `Once` with `Item{TTL: time.Hour, Do: load}` for GetOrLoad, " +
			"`Set` with `Item{TTL: time.Hour}`; it has no batch API, so a page of e is a loop of `Once` calls, one key after the " +
			"other, on the caller's goroutine (a GET per local miss, an origin call per missing key)",
		New: func(cfg libConfig) (Library, error) {
			client := newRedisClient(cfg)
			return newGoRedisCache(cfg, client, client), nil
		},
	}
}

// goRedisCacheLib is go-redis/cache with its TinyLFU local cache.
type goRedisCacheLib struct {
	cache  *cache.Cache
	client *redis.Client
	cfg    libConfig
}

var _ Library = (*goRedisCacheLib)(nil)

// newGoRedisCache builds the cache over redisClient, a client of client
// (client itself, or an AutoPipeliner of it), which Close closes.
func newGoRedisCache(cfg libConfig, client *redis.Client, redisClient redis.Cmdable) *goRedisCacheLib {
	return &goRedisCacheLib{
		cache: cache.New(&cache.Options{
			Redis:      redisClient,
			LocalCache: cache.NewTinyLFU(cfg.Capacity, cfg.TTL),
		}),
		client: client,
		cfg:    cfg,
	}
}

func (g *goRedisCacheLib) GetOrLoad(ctx context.Context, key string) (Product, error) {
	var p Product
	err := g.cache.Once(&cache.Item{
		Ctx:   ctx,
		Key:   key,
		Value: &p,
		TTL:   g.cfg.TTL,
		Do: func(item *cache.Item) (any, error) {
			return g.cfg.Origin.Load(item.Context(), key)
		},
	})
	return p, err
}

// GetOrLoadMany reads the page with a loop of Once calls, one key after
// the other: go-redis/cache (v9.0.0) has no batch API, neither a multi-key
// Get nor a batch loader, so each local miss is a GET and each key Redis
// lacks an origin call of its own (Origin.Load). It stops at the first
// error, as a caller rendering the page would.
func (g *goRedisCacheLib) GetOrLoadMany(ctx context.Context, keys []string) (map[string]Product, error) {
	ps := make(map[string]Product, len(keys))
	for _, key := range keys {
		p, err := g.GetOrLoad(ctx, key)
		if err != nil {
			return ps, err
		}
		ps[key] = p
	}
	return ps, nil
}

func (g *goRedisCacheLib) Set(ctx context.Context, key string, p Product) error {
	return g.cache.Set(&cache.Item{Ctx: ctx, Key: key, Value: &p, TTL: g.cfg.TTL})
}

// Close closes the client: go-redis/cache has no background work.
func (g *goRedisCacheLib) Close(context.Context) error { return g.client.Close() }
