package main

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
	"github.com/tiercache/tiercache/redisstore"
)

// tiercacheL2Timeout is the deadline of each L2 operation, as the
// redisstore documentation suggests.
const tiercacheL2Timeout = 100 * time.Millisecond

// The read policies tiercache runs with.
const (
	tiercacheSequential = iota
	tiercacheParallel
	tiercacheRaceOffload
	tiercacheRaceCancel
)

func tiercacheKind(policyName, label string, policy int) libraryKind {
	return libraryKind{
		Name:   "tiercache " + policyName,
		Label:  "tiercache " + label,
		Family: familyTiercache,
		Settings: "otterstore L1 (`MaximumSize: 10_000`), redisstore L2 (JSON codec, the default), " +
			"`Options{ReadPolicy: " + policyName + ", DefaultTTL: 1h, L2Timeout: 100ms}`, every other option at its default " +
			"(its own OffloadPool: 64 tasks, 1,024 queued; RefillAlways; SequentialWritePolicy)",
		New: func(cfg libConfig) (Library, error) {
			client := newRedisClient(cfg)
			return newTiercache(cfg, client, client, policy, false)
		},
	}
}

// tiercacheLib is a tiercache.Cache on otterstore and redisstore.
type tiercacheLib struct {
	cache    *tiercache.Cache[Product]
	l1       *otterstore.Store[Product]
	l2       *redisstore.Store[Product]
	coalesce *coalescingL2[Product] // nil but in the coalescing experiment
	client   *redis.Client
	origin   *Origin
}

// Coalescing prototype settings: see coalescingL2.
const (
	coalesceDispatchers = 8
	coalesceMaxBatch    = 128
)

var (
	_ Library   = (*tiercacheLib)(nil)
	_ diagnoser = (*tiercacheLib)(nil)
)

// newTiercache builds the cache with policy over l2Client, a client of
// client (client itself, or an AutoPipeliner of it), which Close closes;
// with coalesce, its L2 is redisstore behind the coalescingL2 prototype.
func newTiercache(cfg libConfig, client *redis.Client, l2Client redis.UniversalClient, policy int, coalesce bool) (*tiercacheLib, error) {
	l1, err := otterstore.New(&otterstore.Options[Product]{MaximumSize: cfg.Capacity})
	if err != nil {
		client.Close()
		return nil, err
	}
	l2, err := redisstore.New(l2Client, &redisstore.Options[Product]{})
	if err != nil {
		l1.Close()
		client.Close()
		return nil, err
	}
	var l2b tiercache.Backend[Product] = l2
	var co *coalescingL2[Product]
	if coalesce {
		if co, err = newCoalescingL2[Product](l2, coalesceDispatchers, coalesceMaxBatch, tiercacheL2Timeout); err != nil {
			l1.Close()
			client.Close()
			return nil, err
		}
		l2b = co
	}
	var p tiercache.ReadPolicy[Product]
	switch policy {
	case tiercacheSequential:
		p = tiercache.SequentialReadPolicy[Product]{}
	case tiercacheParallel:
		p = tiercache.ParallelReadPolicy[Product]{}
	case tiercacheRaceOffload:
		p = tiercache.RaceReadPolicy[Product]{Loser: tiercache.LoserOffload}
	case tiercacheRaceCancel:
		p = tiercache.RaceReadPolicy[Product]{Loser: tiercache.LoserCancel}
	}
	cache, err := tiercache.New(l1, l2b, &tiercache.Options[Product]{
		ReadPolicy: p,
		DefaultTTL: cfg.TTL,
		L2Timeout:  tiercacheL2Timeout,
	})
	if err != nil {
		if co != nil {
			co.Close()
		}
		l1.Close()
		client.Close()
		return nil, err
	}
	return &tiercacheLib{cache: cache, l1: l1, l2: l2, coalesce: co, client: client, origin: cfg.Origin}, nil
}

func (t *tiercacheLib) GetOrLoad(ctx context.Context, key string) (Product, error) {
	return t.cache.GetOrLoad(ctx, key, func(ctx context.Context) (Product, error) {
		return t.origin.Load(ctx, key)
	})
}

func (t *tiercacheLib) Set(ctx context.Context, key string, p Product) error {
	return t.cache.Set(ctx, key, p, 0)
}

// Close closes the cache (waiting for its background work), then the
// stores, then the client.
func (t *tiercacheLib) Close(ctx context.Context) error {
	err := t.cache.Close(ctx)
	if t.coalesce != nil {
		t.coalesce.Close()
	}
	return errors.Join(err, t.l2.Close(ctx), t.l1.Close(), t.client.Close())
}

// Diagnostics returns the cache's counters that explain its figures.
func (t *tiercacheLib) Diagnostics() map[string]uint64 {
	s := t.cache.Stats()
	return map[string]uint64{
		"l1 hits":          s.L1.Hits,
		"l2 hits":          s.L2.Hits,
		"l2 misses":        s.L2.Misses,
		"l2 failures":      s.L2.Failures,
		"l2 abandoned":     s.L2.Abandoned,
		"coalesced":        s.Coalesced,
		"refills":          s.Refills,
		"write errors":     s.WriteErrors,
		"offload rejected": s.OffloadRejected,
	}
}

// GetOrLoadMany reads the page with Cache.GetOrLoadMany, whose load asks
// the Origin for the keys no layer had, in one call.
func (t *tiercacheLib) GetOrLoadMany(ctx context.Context, keys []string) (map[string]Product, error) {
	return t.cache.GetOrLoadMany(ctx, keys, t.origin.LoadMany)
}
