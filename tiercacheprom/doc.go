// Package tiercacheprom exposes what a [tiercache.Cache] does to Prometheus.
//
// Two collectors, registered like any other:
//
//   - a [Collector] turns the cache's Stats into counters (hits, misses and
//     failures per layer, loads, coalesced calls, refills, refreshes,
//     invalidations, breaker openings, ...) and the breaker's state into a
//     gauge, read from one Stats snapshot at each scrape, at no cost
//     between scrapes;
//   - an [Observer] is the cache's tiercache.Observer and records the
//     latency of its operations, layer reads and loads in histograms, with
//     buckets from 10µs to 1s.
//
// A service adds:
//
//	obs, err := tiercacheprom.NewObserver(nil)
//	if err != nil {
//		return err
//	}
//	cache, err := tiercache.New(l1, l2, &tiercache.Options[User]{Name: "users", Observer: obs})
//	if err != nil {
//		return err
//	}
//	prometheus.MustRegister(obs, tiercacheprom.NewCollector("users", cache))
//
// Every series has a cache label, the cache's name. Several caches share
// one Observer, and each has its own Collector; a Collector works for a
// cache of any value type, through [StatsSource].
package tiercacheprom
