// Command bench compares tiercache with the Go two-tier caches its users
// would pick instead, go-redis/cache (a TinyLFU local cache over Redis) and
// sturdyc (an in-memory cache with a Redis DistributedStorage, written here
// in sturdyc_storage.go), on one real redis-server, and writes
// docs/bench/results.md and docs/bench/throughput.svg.
//
// Run it with `make bench-compare` from the repository's root, or:
//
//	cd bench && go run . -out ../docs/bench
//
// It starts redis-server on a free loopback port with persistence off, or
// uses the Redis at REDIS_ADDR, whose databases 11 to 15 it flushes. Flags:
// -rounds (3) runs every workload that many times on every library, in a
// rotated order, and reports medians; -scale multiplies the calls of
// workloads a, b and d and the pages of e; -workloads picks some of a-cold,
// a-warm, b, c, d and e; -experiments=false leaves out the experiment rows
// (every library over go-redis's AutoPipeliner on b and d, and tiercache
// with msgpack as its Codec on a-warm and b); -profile DIR writes a CPU
// profile, heap profiles and an execution trace of every measured phase of
// the first round (`go tool trace -pprof=sync NAME.trace` says where the
// calls waited).
//
// Every library gets the same Redis, the same local capacity (10,000
// entries), the same values (Product, about 200 bytes encoded) and the same
// origin (Origin: a 1 ms wait, counted). The workloads (workload.go): a,
// read-mostly, Zipf(1.1) over 100,000 keys, 99% GetOrLoad and 1% Set, from
// cold and again warm; b, L2-heavy, uniform over a Redis holding every key;
// c, a stampede of 1,000 callers per cold key over 100 keys; d, the traffic
// of b through slowProxy, which delays every Redis reply by 2 ms; e, pages
// of 50 distinct Zipf(1.1) keys, each read with the library's batch call
// (tiercache's GetOrLoadMany, sturdyc's GetOrFetchBatch, a loop of
// go-redis/cache's Once, which has no batch API) over a batch origin
// (Origin.LoadMany: one 1 ms wait per call). A meter takes each phase's
// throughput, latency quantiles, allocations (runtime.MemStats), origin
// calls and Redis commands (INFO commandstats); e's are per page.
//
// The module is separate from tiercache's so that the peers' dependencies
// never reach tiercache's users; it requires tiercache, otterstore and
// redisstore through replace directives.
package main
