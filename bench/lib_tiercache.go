package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
		Settings: "otterstore L1 (`MaximumSize: 10_000`), redisstore L2 (its defaults: JSON, written by encoding/json and read by segmentio/encoding's decoder, and Gets and writes " +
			"coalesced under load, 4 dispatchers each, see the Sequential (coalescing off) row), " +
			"`Options{ReadPolicy: " + policyName + ", DefaultTTL: 1h, L2Timeout: 100ms, Refill: RefillInline}` (the refill its README " +
			"gives for an in-process L1), every other option at its default (its own OffloadPool: 64 tasks, 1,024 queued; SequentialWritePolicy)",
		New: func(cfg libConfig) (Library, error) {
			client := newRedisClient(cfg)
			return newTiercache(cfg, client, client, policy, 0, nil)
		},
	}
}

// tiercacheUncoalescedKind is tiercache Sequential with redisstore's
// coalescing turned off (Options.CoalesceGets and CoalesceWrites = -1):
// every Get sends its own GET and every write its own command, as every
// peer does.
func tiercacheUncoalescedKind() libraryKind {
	k := tiercacheKind("Sequential", "sequential", tiercacheSequential)
	k.Name, k.Label = nameSequentialUncoalesced, "tiercache sequential coalescing off"
	n := redisstore.SuggestedCoalesceGets
	k.Settings = strings.Replace(k.Settings, ", see the Sequential (coalescing off) row)", " by default)", 1) +
		fmt.Sprintf("; here redisstore runs with `Options{CoalesceGets: -1, CoalesceWrites: -1}`: coalescing off, every Get "+
			"sends its own GET and every Set its own SET. By default, over a *redis.Client, a Get or write that finds another "+
			"in flight is queued instead, and at most %d dispatchers each send every Get queued in one MGET (every write "+
			"queued in one pipeline), up to 128 a batch, no batching window (a batch is what queued while the dispatchers were busy)", n)
	k.New = func(cfg libConfig) (Library, error) {
		client := newRedisClient(cfg)
		return newTiercache(cfg, client, client, tiercacheSequential, redisstore.CoalesceOff, nil)
	}
	return k
}

// tiercacheLib is a tiercache.Cache on otterstore and redisstore.
type tiercacheLib struct {
	cache  *tiercache.Cache[Product]
	l1     *otterstore.Store[Product]
	l2     *redisstore.Store[Product]
	client *redis.Client
	origin *Origin
}

var (
	_ Library   = (*tiercacheLib)(nil)
	_ diagnoser = (*tiercacheLib)(nil)
)

// newTiercache builds the cache with policy over l2Client, a client of
// client (client itself, or an AutoPipeliner of it), which Close closes;
// redisstore coalesces Gets, and writes, as Options.CoalesceGets and
// CoalesceWrites set to coalesce say (0: its default) and encodes with
// codec (nil: its default, JSON).
func newTiercache(cfg libConfig, client *redis.Client, l2Client redis.UniversalClient, policy int, coalesce int, codec tiercache.Codec[Product]) (*tiercacheLib, error) {
	l1, err := otterstore.New(&otterstore.Options[Product]{MaximumSize: cfg.Capacity})
	if err != nil {
		client.Close()
		return nil, err
	}
	l2, err := redisstore.New(l2Client, &redisstore.Options[Product]{CoalesceGets: coalesce, CoalesceWrites: coalesce, Codec: codec})
	if err != nil {
		l1.Close()
		client.Close()
		return nil, err
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
	cache, err := tiercache.New(l1, l2, &tiercache.Options[Product]{
		ReadPolicy: p,
		DefaultTTL: cfg.TTL,
		L2Timeout:  tiercacheL2Timeout,
		Refill:     tiercache.RefillInline,
	})
	if err != nil {
		_ = l2.Close(context.Background())
		l1.Close()
		client.Close()
		return nil, err
	}
	return &tiercacheLib{cache: cache, l1: l1, l2: l2, client: client, origin: cfg.Origin}, nil
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
