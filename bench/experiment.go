package main

import (
	"fmt"

	"github.com/redis/go-redis/v9"
)

// experiments returns configurations that are not part of the comparison
// proper: each library with its Redis commands sent through go-redis's
// AutoPipeliner (Client.AutoPipeline, experimental in go-redis v9.23), which
// gathers the commands of concurrent callers into pipelines. They run on
// workloads b and d only, to measure what auto-pipelining does when most
// calls go to Redis, fast or slow, for every library alike.
func experiments() []libraryKind {
	const note = " Its Redis commands go through `client.AutoPipeline()` (go-redis v9.23, experimental; " +
		"`DefaultBlockingAutoPipelineOptions`: batches of up to 300 commands, one batch in flight, no coalescing delay)."
	tc := tiercacheKind("Sequential", "sequential", tiercacheSequential)
	tc.Name, tc.Label = "tiercache Sequential + AutoPipeline", "tiercache sequential +AP"
	tc.Settings += "; redisstore over the AutoPipeliner, which it drives through its guarded path " +
		"(a goroutine per command, since the AutoPipeliner ignores per-command deadlines)." + note
	tc.New = func(cfg libConfig) (Library, error) {
		client := newRedisClient(cfg)
		ap, err := autoPipeliner(client)
		if err != nil {
			return nil, err
		}
		return newTiercache(cfg, client, ap, tiercacheSequential, 0, nil)
	}
	gr := goRedisCacheKind()
	gr.Name, gr.Label, gr.Peer = "go-redis/cache + AutoPipeline", "go-redis/cache +AP", false
	gr.Settings += "." + note
	gr.New = func(cfg libConfig) (Library, error) {
		client := newRedisClient(cfg)
		ap, err := autoPipeliner(client)
		if err != nil {
			return nil, err
		}
		return newGoRedisCache(cfg, client, ap), nil
	}
	st := sturdycKind()
	st.Name, st.Label, st.Peer = "sturdyc + AutoPipeline", "sturdyc +AP", false
	st.Settings += "." + note
	st.New = func(cfg libConfig) (Library, error) {
		client := newRedisClient(cfg)
		ap, err := autoPipeliner(client)
		if err != nil {
			return nil, err
		}
		return newSturdyc(cfg, client, ap), nil
	}
	kinds := []libraryKind{tc, gr, st}
	for i := range kinds {
		kinds[i].Only = []string{"b", "d"}
		kinds[i].Experiment = true
	}
	return append(kinds, codecExperiment())
}

// codecExperiment is tiercache Sequential with msgpack as
// redisstore's Codec instead of JSON, on the workloads where the codec
// counts most (an L2 hit decodes a value): b, and a-warm for the misses of
// read-mostly traffic.
func codecExperiment() libraryKind {
	k := tiercacheKind("Sequential", "sequential", tiercacheSequential)
	k.Name, k.Label = nameSequentialMsgpack, "tiercache sequential +msgpack"
	k.Settings += "; redisstore's `Codec` is msgpack (github.com/vmihailenco/msgpack/v5, go-redis/cache's encoding; " +
		"a Codec of a few lines in this module, codec.go) instead of the default JSON"
	k.New = func(cfg libConfig) (Library, error) {
		client := newRedisClient(cfg)
		return newTiercache(cfg, client, client, tiercacheSequential, 0, msgpackCodec[Product]{})
	}
	k.Family = familyTiercacheMsgpack
	k.Only = []string{"a-warm", "b"}
	k.Experiment = true
	return k
}

// autoPipeliner returns client's blocking AutoPipeliner, closing client
// when there is none.
func autoPipeliner(client *redis.Client) (*redis.AutoPipeliner, error) {
	ap, err := client.AutoPipeline()
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("bench: AutoPipeline: %w", err)
	}
	return ap, nil
}
