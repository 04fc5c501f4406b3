package tiercacheprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
)

// StatsSource is what a Collector reads. Every *tiercache.Cache[T] is one,
// whatever its T.
type StatsSource interface {
	Stats() tiercache.Stats
}

// StatsFunc adapts a function to the StatsSource interface.
type StatsFunc func() tiercache.Stats

// Stats calls f.
func (f StatsFunc) Stats() tiercache.Stats { return f() }

var (
	_ StatsSource          = StatsFunc(nil)
	_ StatsSource          = (*tiercache.Cache[string])(nil)
	_ prometheus.Collector = (*Collector)(nil)
)

// Collector exposes a cache's Stats to Prometheus: on each scrape it takes
// one Stats snapshot and turns its counters into counters, and the breaker's
// state into a gauge, every series labelled with the cache's name. Register
// one Collector for each cache; several caches' Collectors can share a
// registry when their names differ.
//
// The metrics are:
//
//	tiercache_layer_reads_total{cache,layer,status}   reads of each layer; layer l1 or l2, status hit, miss, failed or abandoned
//	tiercache_loads_total{cache}                      loader calls
//	tiercache_load_errors_total{cache}                loader calls that failed, ErrNotFound aside
//	tiercache_load_not_found_total{cache}             keys a loader found missing
//	tiercache_coalesced_total{cache}                  GetOrLoad calls that shared another caller's L2 read or load
//	tiercache_refills_total{cache}                    L2 values copied into L1
//	tiercache_refills_skipped_total{cache}            refills dropped because the key was written meanwhile
//	tiercache_stale_served_total{cache}               stale values GetOrLoad returned
//	tiercache_refreshes_total{cache}                  background refreshes of stale values that ran
//	tiercache_negative_hits_total{cache}              reads answered by a remembered absence
//	tiercache_write_errors_total{cache}               background writes that failed
//	tiercache_offload_rejected_total{cache}           background work the Offload refused, not done
//	tiercache_observer_panics_total{cache}            Observer calls that panicked (recovered, the event lost)
//	tiercache_invalidations_sent_total{cache}         keys announced to the other caches
//	tiercache_invalidation_errors_total{cache}        announcements the Invalidator refused
//	tiercache_invalidations_received_total{cache}     keys the other caches announced
//	tiercache_invalidation_evictions_total{cache}     keys evicted from L1 on their behalf
//	tiercache_subscription_drops_total{cache}         times the Invalidator lost its subscription (each flushed L1)
//	tiercache_unsubscribed_seconds_total{cache}       time spent without a subscription, L1 read around
//	tiercache_batch_calls_total{cache}                GetMany and GetOrLoadMany calls
//	tiercache_batch_keys_total{cache}                 distinct keys they asked for
//	tiercache_batch_keys_loaded_total{cache}          keys their loads were asked for
//	tiercache_batch_keys_coalesced_total{cache}       keys they took from another caller's read or load
//	tiercache_breaker_state{cache,state}              1 for the L2 circuit breaker's state (closed, open, half_open), 0 for the others
//	tiercache_breaker_opens_total{cache}              times the breaker opened
//	tiercache_breaker_closes_total{cache}             times a probe closed it
//	tiercache_breaker_rejected_total{cache}           L2 operations it refused
//	tiercache_breaker_writes_skipped_total{cache}     L2 writes not made while it was open
//
// The time spent unsubscribed is a counter, not a gauge, because it only
// grows: its rate is the fraction of time L1 was read around. Latency is
// not taken from Stats, whose percentiles span the cache's whole life; the
// Observer's histograms give it per scrape interval.
type Collector struct {
	src        StatsSource
	reads      *prometheus.Desc
	counters   []counterDesc
	unsubTotal *prometheus.Desc
	breaker    *prometheus.Desc
}

// counterDesc is one counter taken from Stats.
type counterDesc struct {
	desc  *prometheus.Desc
	value func(s *tiercache.Stats) uint64
}

// counterDefs are the counters taken from Stats, by name (without the
// tiercache_ prefix and the _total suffix).
var counterDefs = []struct {
	name, help string
	value      func(s *tiercache.Stats) uint64
}{
	{"loads", "Loader calls.", func(s *tiercache.Stats) uint64 { return s.Loads }},
	{"load_errors", "Loader calls that failed, ErrNotFound aside.", func(s *tiercache.Stats) uint64 { return s.LoadErrors }},
	{"load_not_found", "Keys a loader found missing: GetOrLoad loader calls that returned ErrNotFound, keys a GetOrLoadMany loader omitted.", func(s *tiercache.Stats) uint64 { return s.NotFound }},
	{"coalesced", "GetOrLoad calls that shared an L2 read or a load started by another caller.", func(s *tiercache.Stats) uint64 { return s.Coalesced }},
	{"refills", "L2 values copied into L1.", func(s *tiercache.Stats) uint64 { return s.Refills }},
	{"refills_skipped", "Refills dropped because the key was written while the value was read.", func(s *tiercache.Stats) uint64 { return s.RefillsSkipped }},
	{"stale_served", "Stale values GetOrLoad returned.", func(s *tiercache.Stats) uint64 { return s.StaleServed }},
	{"refreshes", "Background refreshes of stale values that ran.", func(s *tiercache.Stats) uint64 { return s.Refreshes }},
	{"negative_hits", "Reads answered by a remembered absence.", func(s *tiercache.Stats) uint64 { return s.NegativeHits }},
	{"write_errors", "Background writes (refills, L2 writes of loaded values, evictions) that failed.", func(s *tiercache.Stats) uint64 { return s.WriteErrors }},
	{"offload_rejected", "Background work the Offload refused, which was not done.", func(s *tiercache.Stats) uint64 { return s.OffloadRejected }},
	{"observer_panics", "Observer calls that panicked; each was recovered and its event lost.", func(s *tiercache.Stats) uint64 { return s.ObserverPanics }},
	{"invalidations_sent", "Keys announced to the other caches.", func(s *tiercache.Stats) uint64 { return s.InvalidationsSent }},
	{"invalidation_errors", "Announcements the Invalidator refused.", func(s *tiercache.Stats) uint64 { return s.InvalidationErrors }},
	{"invalidations_received", "Keys the other caches announced.", func(s *tiercache.Stats) uint64 { return s.InvalidationsReceived }},
	{"invalidation_evictions", "Keys evicted from L1 on behalf of the other caches.", func(s *tiercache.Stats) uint64 { return s.InvalidationEvictions }},
	{"subscription_drops", "Times the Invalidator lost its subscription, each of which flushed L1.", func(s *tiercache.Stats) uint64 { return s.SubscriptionDrops }},
	{"batch_calls", "GetMany and GetOrLoadMany calls.", func(s *tiercache.Stats) uint64 { return s.BatchCalls }},
	{"batch_keys", "Distinct keys GetMany and GetOrLoadMany asked for.", func(s *tiercache.Stats) uint64 { return s.BatchKeys }},
	{"batch_keys_loaded", "Keys the batch loads were asked for.", func(s *tiercache.Stats) uint64 { return s.BatchKeysLoaded }},
	{"batch_keys_coalesced", "Keys batch calls took from a read or load another caller had under way.", func(s *tiercache.Stats) uint64 { return s.BatchKeysCoalesced }},
	{"breaker_opens", "Times the L2 circuit breaker opened.", func(s *tiercache.Stats) uint64 { return s.Breaker.Opens }},
	{"breaker_closes", "Times a probe closed the L2 circuit breaker.", func(s *tiercache.Stats) uint64 { return s.Breaker.Closes }},
	{"breaker_rejected", "L2 operations the circuit breaker refused.", func(s *tiercache.Stats) uint64 { return s.Breaker.Rejected }},
	{"breaker_writes_skipped", "L2 writes not made while the circuit breaker was open.", func(s *tiercache.Stats) uint64 { return s.Breaker.WritesSkipped }},
}

// NewCollector returns a Collector of the Stats of the cache named name
// (its tiercache.Options.Name, so that the series match the Observer's).
func NewCollector(name string, src StatsSource) *Collector {
	labels := prometheus.Labels{"cache": name}
	c := &Collector{
		src: src,
		reads: prometheus.NewDesc("tiercache_layer_reads_total",
			"Reads of each cache layer, by outcome.", []string{"layer", "status"}, labels),
		unsubTotal: prometheus.NewDesc("tiercache_unsubscribed_seconds_total",
			"Time spent without an invalidation subscription, L1 read around.", nil, labels),
		breaker: prometheus.NewDesc("tiercache_breaker_state",
			"State of the L2 circuit breaker: 1 for the current state, 0 for the others.", []string{"state"}, labels),
		counters: make([]counterDesc, len(counterDefs)),
	}
	for i, d := range counterDefs {
		c.counters[i] = counterDesc{
			desc:  prometheus.NewDesc("tiercache_"+d.name+"_total", d.help, nil, labels),
			value: d.value,
		}
	}
	return c
}

// Describe sends the descriptors of every metric the Collector exposes.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reads
	for _, d := range c.counters {
		ch <- d.desc
	}
	ch <- c.unsubTotal
	ch <- c.breaker
}

// Collect takes a Stats snapshot and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	for _, l := range []struct {
		name string
		s    *tiercache.LayerStats
	}{{"l1", &s.L1}, {"l2", &s.L2}} {
		for _, r := range []struct {
			status string
			n      uint64
		}{{"hit", l.s.Hits}, {"miss", l.s.Misses}, {"failed", l.s.Failures}, {"abandoned", l.s.Abandoned}} {
			ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(r.n), l.name, r.status)
		}
	}
	for _, d := range c.counters {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.value(&s)))
	}
	ch <- prometheus.MustNewConstMetric(c.unsubTotal, prometheus.CounterValue, s.Unsubscribed.Seconds())
	for state, name := range breakerStates {
		v := 0.0
		if s.Breaker.State == tiercache.BreakerState(state) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.breaker, prometheus.GaugeValue, v, name)
	}
}

// breakerStates are the values of the breaker's state label, indexed by
// tiercache.BreakerState.
var breakerStates = [...]string{
	tiercache.BreakerClosed:   "closed",
	tiercache.BreakerOpen:     "open",
	tiercache.BreakerHalfOpen: "half_open",
}
