package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tiercache/tiercache/redisstore"
)

// discussion returns results.md's discussion: what the figures say, drawn
// from them, and why, from what each library does (and from CPU profiles
// of the same workloads, `go run . -profile DIR`).
func discussion(byID map[string][]summary, env environment) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }

	p("**In short.** %s\n\n", headline(byID))

	if ss, ok := byID["a-warm"]; ok {
		p("**Read-mostly (a).** Most calls are local hits here, and the three local caches differ in what a hit costs. " +
			"tiercache (otter) and sturdyc (a sharded map) keep the decoded value and return it; go-redis/cache keeps the encoded bytes " +
			"in TinyLFU, behind one mutex, and decodes msgpack (with s2 above 64 bytes) on every hit, hence its allocations per call")
		if g, ok := find(ss, "go-redis/cache"); ok {
			if s, ok := find(ss, nameSequential); ok {
				p(" (%.1f per call warm, against tiercache Sequential's %.1f)", g.Allocs, s.Allocs)
			}
		}
		p(". The rest of the time goes to the misses: 1%% Sets, and the keys of the long Zipf tail that are not local, which cost a " +
			"Redis round trip and, on a Redis miss, a 1 ms load. On an L1 miss the first caller of a key reads Redis itself and " +
			"the concurrent callers of the key wait for its read (a caller whose deadline is nearer than L2Timeout leaves the read " +
			"to a pooled goroutine instead, so that it can leave at its deadline while the others wait); the load of a key Redis " +
			"lacks runs on a pooled goroutine, which then writes the value to Redis in a slot of the OffloadPool; the L1 copy of " +
			"an L2 hit is written before the call returns (RefillInline). The peers read Redis and load on the caller's goroutine. The CPU/op column " +
			"gives each library's CPU time per call; `go run . -profile DIR` writes the CPU profiles that show where it goes. ")
		seq, okSeq := find(ss, nameSequential)
		off, okOff := find(ss, nameSequentialUncoalesced)
		if best, ok := bestPeer(ss); ok && okSeq && okOff {
			p("Sent one by one, every library's Redis commands are about the same here (a GET per local miss, a SET per load): "+
				"so are tiercache's with coalescing off, %.2f per call, %s ops/s warm. By default redisstore sends the GETs of "+
				"concurrent misses in shared MGETs and the SETs of concurrent loads in shared pipelines (up to %d batches in flight), "+
				"so that fewer round trips carry them: %.2f commands per call, %s ops/s warm, %.2f× the best peer (%s), %.1f allocs/op.%s ",
				off.Commands, thousands(off.Throughput), redisstore.SuggestedCoalesceGets, seq.Commands, thousands(seq.Throughput),
				seq.Throughput/best.Throughput, best.Kind.Name, seq.Allocs, codecNote(ss, seq))
		}
		p("ParallelReadPolicy reads Redis on every call, local hit or not (Redis cmds/op near 1 against about 0.2 for the others), " +
			"so it runs at the rate of Redis round trips; that is its purpose (the fresher of the two copies wins), not a defect. " +
			"Race with LoserOffload reads both layers on two goroutines per call.\n\n")
	}

	if ss, ok := byID["b"]; ok {
		p("**L2-heavy (b).** Nine calls in ten miss the local cache and hit Redis, so the cost of an L2 hit decides: ")
		var parts []string
		for _, s := range ss {
			if s.Kind.Peer || s.Kind.Name == nameSequential {
				parts = append(parts, fmt.Sprintf("%s %s ops/s, %.1f allocs/op, %s B/op", s.Kind.Name, thousands(s.Throughput), s.Allocs, thousands(s.Bytes)))
			}
		}
		p("%s. The peers send one GET per local miss (GET/op ≈ 0.9), and so does tiercache with coalescing off; beyond the round trips, the difference is CPU per call on a machine whose two "+
			"CPUs also run redis-server. go-redis/cache decodes msgpack on the caller's goroutine and copies the bytes into TinyLFU; "+
			"sturdyc decodes its JSON record (encoding/json) on the caller's goroutine; tiercache decodes JSON on the caller's goroutine "+
			"too (redisstore's default codec reads encoding/json's bytes with segmentio/encoding's decoder, about a third of "+
			"encoding/json's time) and copies the value into otter there (RefillInline); each L2 hit also "+
			"costs a flight (two channels, a map entry), an L2 deadline (a timer) and a key-guard ticket on top of the GET. ",
			strings.Join(parts, "; "))
		if ap := experimentRows(ss); ap != "" {
			p("The experiment rows batch the Redis commands of concurrent callers (each library over go-redis's AutoPipeliner): %s. ", ap)
			tc, ok1 := find(ss, nameSequentialAP)
			seq, ok2 := find(ss, nameSequential)
			if ok1 && ok2 && tc.Throughput < seq.Throughput {
				p("Pipelining saves the peers system calls and Redis work, but tiercache's own throughput falls (%s against %s): "+
					"redisstore drives an AutoPipeliner through its guarded path, a goroutine per command, and on a Redis this "+
					"close that goroutine costs more than the round trips it saves.", thousands(tc.Throughput), thousands(seq.Throughput))
			} else {
				p("Pipelining saves every library system calls and Redis work.")
			}
		}
		seq, okSeq := find(ss, nameSequential)
		if off, ok := find(ss, nameSequentialUncoalesced); ok && okSeq {
			p(" With coalescing off tiercache sends %.2f Redis commands per call and runs at %s ops/s, p99 %s; coalescing (redisstore's "+
				"default) cuts the commands to %.2f per call (%s ops/s, p99 %s); what it leaves is tiercache's CPU per L1 miss.",
				off.Commands, thousands(off.Throughput), fmtDur(off.P99), seq.Commands, thousands(seq.Throughput), fmtDur(seq.P99))
		}
		if okSeq {
			p("%s", codecNote(ss, seq))
		}
		p("\n\n")
	}

	if ss, ok := byID["c"]; ok {
		keys := env.Sizes.StampedeKeys
		var over, exact, peersOver []string
		for _, s := range ss {
			if s.Kind.Experiment {
				continue
			}
			twice := s.LoadsMax > int64(keys) || s.MaxPerKey > 1
			switch {
			case s.Kind.Peer && twice:
				peersOver = append(peersOver, fmt.Sprintf("%s (up to %s loads, %d of one key)", s.Kind.Name, thousands(float64(s.LoadsMax)), s.MaxPerKey))
			case s.Kind.Peer:
			case twice:
				over = append(over, fmt.Sprintf("%s (up to %s loads, %d of one key)", s.Kind.Name, thousands(float64(s.LoadsMax)), s.MaxPerKey))
			default:
				exact = append(exact, s.Kind.Name)
			}
		}
		p("**Stampede (c).** go-redis/cache (singleflight) and sturdyc (its in-flight map) coalesce the 1,000 callers of a cold key too. ")
		if len(exact) > 0 {
			p("%s loaded each key exactly once in every round. ", strings.Join(exact, ", "))
		}
		if len(over) > 0 {
			p("%s loaded some keys more than once. The window: a caller misses L1, and before it joins the key's "+
				"flight that flight ends (it stores the value in L1, then leaves the group) while the value's L2 write is still queued "+
				"on the OffloadPool; the caller starts a new flight, misses L2 too, and loads again. Under Parallel and Race the L1 "+
				"and L2 reads run on goroutines of their own, which widens the window with 1,000 callers on 2 CPUs; under Sequential "+
				"the caller joins right after its L1 read, so a second load is rare but possible. A new flight that reads L1 again "+
				"before L2 closes the window: the value is in L1 before the old flight leaves the group. ", strings.Join(over, ", "))
		}
		if len(peersOver) > 0 {
			p("The same window shows in %s: it too writes Redis after its in-flight call has ended. ", strings.Join(peersOver, ", "))
		}
		p("\n\n")
	}

	if ss, ok := byID["d"]; ok {
		rt := float64(env.PoolSize) / (float64(env.Sizes.RedisDelay.Seconds()) + 0.0005)
		p("**Redis slow (d).** With 2 ms added to every reply, a connection carries at most one command per ~2.5 ms (the proxy's "+
			"2 ms plus timer and scheduling slack), so a pool of %d connections caps every library near %s round trips per second, "+
			"about %s calls per second at 0.9 GETs per call. The peers (and tiercache with coalescing off) send one command per "+
			"round trip and none reaches the cap, since the proxy, Redis and the library share two CPUs",
			env.PoolSize, thousands(rt), thousands(rt/0.9))
		if best, ok := bestPeer(ss); ok {
			if s, ok := find(ss, nameSequentialUncoalesced); ok {
				p(": tiercache Sequential with coalescing off %s ops/s, %s %s", thousands(s.Throughput), best.Kind.Name, thousands(best.Throughput))
			}
		}
		p(". With the round trip this long, CPU per call matters less than in b, and waiting for a free connection is what makes the p99. ")
		best, okBest := bestPeer(ss)
		if co, ok := find(ss, nameSequential); ok && okBest {
			p("Sending the commands of concurrent callers together is the lever. With its defaults (redisstore gathers concurrent "+
				"Gets into one MGET, and writes into one pipeline, up to %d batches in flight, no batching window, each caller still bound "+
				"by its own deadline) tiercache sends %.2f Redis commands per call instead of %.2f and runs at %.2f× the best peer (%s), "+
				"p99 %s against %s. ",
				redisstore.SuggestedCoalesceGets, co.Commands, best.Commands, co.Throughput/best.Throughput, best.Kind.Name, fmtDur(co.P99), fmtDur(best.P99))
		}
		if ap := experimentRows(ss); ap != "" {
			p("The experiment rows try go-redis's AutoPipeliner on every library: %s. ", ap)
			tc, okTC := find(ss, nameSequentialAP)
			var apPeer summary
			for _, s := range ss {
				if s.Kind.Experiment && s.Kind.Family != familyTiercache && strings.HasSuffix(s.Kind.Name, "+ AutoPipeline") && s.Throughput > apPeer.Throughput {
					apPeer = s
				}
			}
			if okTC && okBest {
				p("Over go-redis's AutoPipeliner (which is not a *redis.Client, so redisstore does not coalesce by default) tiercache runs at %.2f× the best peer's README configuration, p99 %s. ",
					tc.Throughput/best.Throughput, fmtDur(tc.P99))
			}
			if okTC && apPeer.Throughput > tc.Throughput {
				p("But the peers gain more from the same client option (%s: %.2f× tiercache's): redisstore sends each command "+
					"from a goroutine of its own (its guarded path) to keep its deadline guarantee, since the AutoPipeliner ignores "+
					"per-command deadlines, and tiercache's L1-miss path costs what it costs in b. Coalescing is the batching "+
					"inside redisstore, with deadlines it enforces itself; a cheaper miss path is what remains.",
					apPeer.Kind.Name, apPeer.Throughput/tc.Throughput)
			}
		}
		p("\n\n")
	}

	if ss, ok := byID["e"]; ok {
		p("%s\n\n", batchDiscussion(ss, env))
	}

	var failing []string
	for _, id := range []string{"a-cold", "a-warm", "b", "c", "d", "e"} {
		for _, s := range byID[id] {
			if s.Errors > 0 {
				failing = append(failing, fmt.Sprintf("%s in %s (%d)", s.Kind.Name, id, s.Errors))
			}
		}
	}
	if len(failing) > 0 {
		p("**Errors.** Some calls failed: %s. tiercache's are its L2Timeout (100 ms) at work on a saturated machine: "+
			"a Set whose L2 write does not finish within it returns the error (and evicts L1), as documented; a read degrades to "+
			"the origin instead, which shows as origin loads in b and d. The peers have no per-operation deadline, so a slow Redis "+
			"makes them slower instead of failing.\n\n", strings.Join(failing, ", "))
	}

	p("**What this does not show.** Redis is on the same two CPUs as the benchmark, so CPU spent by one side slows the other; " +
		"on separate machines the round trip dominates more and CPU per call less. Allocations are the whole process's, go-redis's " +
		"included, the same client for every library. Each peer runs as its README shows: go-redis/cache writes Redis inside `Once` " +
		"before callers get the value, sturdyc writes it on a new goroutine per write with `context.Background()` and never " +
		"stops its eviction goroutine; tiercache bounds its background work (an OffloadPool of 64 tasks), which costs it the " +
		"goroutine hand-offs above. sturdyc reaches Redis only through a `DistributedStorage` its user writes (this module's is " +
		"sturdyc_storage.go), and has no write-through Set.\n")
	return w.String()
}

// codecNote compares the codec experiment with co, the same configuration
// on JSON; empty when the experiment did not run.
func codecNote(ss []summary, co summary) string {
	mp, ok := find(ss, nameSequentialMsgpack)
	if !ok {
		return ""
	}
	s := fmt.Sprintf(" The codec experiment swaps JSON for msgpack in the same configuration: %s ops/s against %s, CPU per call %s against %s (process)",
		thousands(mp.Throughput), thousands(co.Throughput), fmtMicros(mp.ClientCPU), fmtMicros(co.ClientCPU))
	if best, ok := bestPeer(ss); ok {
		s += fmt.Sprintf(", %.2f× the best peer (%s)", mp.Throughput/best.Throughput, best.Kind.Name)
	}
	return s + "."
}

// experimentRows lists the throughput and p99 of the AutoPipeline
// experiment rows.
func experimentRows(ss []summary) string {
	var ap []string
	for _, s := range ss {
		if s.Kind.Experiment && strings.HasSuffix(s.Kind.Name, "+ AutoPipeline") {
			ap = append(ap, fmt.Sprintf("%s %s ops/s, p99 %s", s.Kind.Name, thousands(s.Throughput), fmtDur(s.P99)))
		}
	}
	return strings.Join(ap, "; ")
}

// headline sums the comparison up in a sentence per workload.
func headline(byID map[string][]summary) string {
	var parts []string
	for _, id := range []string{"a-cold", "a-warm", "b", "c", "d", "e"} {
		ss, ok := byID[id]
		if !ok {
			continue
		}
		seq, ok1 := find(ss, nameSequential)
		best, ok2 := bestPeer(ss)
		if !ok1 || !ok2 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2f× (%s)", id, seq.Throughput/best.Throughput, best.Kind.Name))
	}
	if len(parts) == 0 {
		return "No workload ran both tiercache and a peer."
	}
	fastest := func(id string) string {
		ss := slices.Clone(byID[id])
		var in []summary
		for _, s := range ss {
			if !s.Kind.Experiment {
				in = append(in, s)
			}
		}
		if len(in) == 0 {
			return ""
		}
		top := slices.MaxFunc(in, func(a, b summary) int { return cmpFloat(a.Throughput, b.Throughput) })
		return top.Kind.Name
	}
	var tops []string
	for _, id := range []string{"a-cold", "a-warm", "b", "c", "d", "e"} {
		if _, ok := byID[id]; ok {
			tops = append(tops, id+": "+fastest(id))
		}
	}
	return "tiercache Sequential's throughput against the best peer, per workload: " + strings.Join(parts, ", ") +
		". Fastest library per workload: " + strings.Join(tops, ", ") + "."
}

// batchDiscussion returns the paragraph on workload e: what a page costs in
// each library, from the figures.
func batchDiscussion(ss []summary, env environment) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	p("**Batch pages (e).** A page is one call of the library's batch read, %d distinct keys. tiercache's GetOrLoadMany reads "+
		"L1 for the page in one batch; under Sequential it reads the keys L1 missed from Redis in one MGET, then asks the origin "+
		"for the keys Redis lacked in one LoadMany, and writes those values to Redis in one pipeline of SETs on its OffloadPool. "+
		"sturdyc's GetOrFetchBatch does the same with its memory, one `GetBatch` (MGET) and one fetch, and writes to Redis with "+
		"`SetBatch` on a new goroutine. go-redis/cache has no batch API: its page is %d `Once` calls one after the other, a GET "+
		"per local miss and an origin call per key Redis lacks, so its origin calls equal its origin keys. Per page: ",
		env.Sizes.PageSize, env.Sizes.PageSize)
	var parts []string
	for _, s := range ss {
		if s.Kind.Experiment || s.Ops == 0 {
			continue
		}
		perCall := 0.0
		if s.Loads > 0 {
			perCall = float64(s.OriginKeys) / float64(s.Loads)
		}
		parts = append(parts, fmt.Sprintf("%s %s pages/s (%s keys/s), p99 %s, %.2f origin calls of %.1f keys each, GET %.2f, MGET %.2f, SET %.2f",
			s.Kind.Name, thousands(s.Throughput), thousands(s.KeysPerSec), fmtDur(s.P99),
			float64(s.Loads)/float64(s.Ops), perCall, s.GetsOnly, s.MGets, s.Sets))
	}
	p("%s. ", strings.Join(parts, "; "))
	seq, ok1 := find(ss, nameSequential)
	st, ok2 := find(ss, sturdycKind().Name)
	if ok1 && ok2 && st.Throughput > 0 {
		p("tiercache Sequential runs at %.2f× sturdyc's pages/s, %.1f allocs and %s B per page against %.1f and %s. ",
			seq.Throughput/st.Throughput, seq.Allocs, thousands(seq.Bytes), st.Allocs, thousands(st.Bytes))
	}
	if ok1 && ok2 && seq.Ops > 0 {
		loaded := float64(seq.OriginKeys) / float64(seq.Ops)
		switch {
		case seq.Sets < 0.95*loaded:
			p("tiercache Sequential sent %.2f SETs per page for %.2f keys loaded per page, with no write error or rejected "+
				"offload counted: some loaded values did not reach Redis. Its store of a batch's loaded values, into L1 and then "+
				"L2, skips a key whose key-guard stripe (keys are hashed onto a fixed number of stripes) saw a Set, a Delete or an "+
				"invalidation since the batch's load began, so that it never writes over a newer value; such a key is loaded "+
				"again by a later page. ", seq.Sets, loaded)
		case seq.OriginKeys > st.OriginKeys:
			p("For the same pages tiercache Sequential asked the origin for %s keys and sturdyc for %s (%.0f%% more), and "+
				"tiercache wrote each loaded key to Redis (%.2f SETs per page for %.2f keys loaded per page); this benchmark "+
				"does not measure why the two local caches leave different keys to the origin. ",
				thousands(float64(seq.OriginKeys)), thousands(float64(st.OriginKeys)),
				100*(float64(seq.OriginKeys)/float64(st.OriginKeys)-1), seq.Sets, loaded)
		}
	}
	if ok1 && seq.Diag != nil {
		hits, misses := seq.Diag["l2 hits"], seq.Diag["l2 misses"]
		p("Of the keys each page of tiercache Sequential read from Redis (%.1f), %.1f were there (its `Cache.Stats`). ", hits+misses, hits)
		if hits+misses > 0 && hits < 0.1*(hits+misses) {
			p("Both layers start empty, so Redis holds only what this process loaded, and the store that writes a loaded value " +
				"to Redis writes it to L1 first: an MGET finds a key only once L1 has evicted it, and a page's keys come from L1 " +
				"or the origin. ")
		}
	}
	return strings.TrimSpace(w.String())
}
