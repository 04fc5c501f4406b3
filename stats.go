package tiercache

import (
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/hist"
)

// Stats is a snapshot of a Cache's counters since New. Every count is
// cumulative; subtract two snapshots for a rate.
type Stats struct {
	// L1 and L2 count each layer's reads.
	L1, L2 LayerStats
	// Loads counts loader calls.
	Loads uint64
	// LoadErrors counts loader calls that failed, ErrNotFound aside.
	LoadErrors uint64
	// NotFound counts keys a loader found missing: each GetOrLoad loader
	// call that returned ErrNotFound, and each key a GetOrLoadMany loader
	// omitted (every key it was asked for when it returned ErrNotFound).
	NotFound uint64
	// Coalesced counts GetOrLoad calls that shared an L2 read or a load
	// started by another caller instead of starting their own.
	Coalesced uint64
	// Refills counts L2 values copied into L1.
	Refills uint64
	// RefillsSkipped counts refills dropped because the key was written
	// while the value was being read, so the copy would have been older.
	RefillsSkipped uint64
	// StaleServed counts stale values GetOrLoad returned.
	StaleServed uint64
	// Refreshes counts background refreshes of stale values that ran.
	Refreshes uint64
	// NegativeHits counts reads answered by a remembered absence.
	NegativeHits uint64
	// WriteErrors counts the writes no caller sees fail (refills, inline or
	// in the background, and the L2 write of a loaded value) that failed.
	// A batch write (GetMany's copies of L2 hits into L1, GetOrLoadMany's
	// writes of loaded values) counts once when it fails, however many of
	// its keys did.
	WriteErrors uint64
	// OffloadRejected counts background work the Offload refused, and which
	// was therefore not done.
	OffloadRejected uint64
	// ObserverPanics counts calls of the Observer (Observe, StartOp) that
	// panicked. The panic is recovered where it happened, so that neither
	// the operation nor a background goroutine is cut short; the event is
	// lost.
	ObserverPanics uint64

	// InvalidationsSent counts keys this cache announced to the others.
	InvalidationsSent uint64
	// InvalidationErrors counts announcements the Invalidator refused.
	InvalidationErrors uint64
	// InvalidationsReceived counts keys other caches announced.
	InvalidationsReceived uint64
	// InvalidationEvictions counts keys evicted from L1 on their behalf.
	InvalidationEvictions uint64
	// SubscriptionDrops counts the times the Invalidator lost its
	// subscription, each of which flushed L1.
	SubscriptionDrops uint64
	// Unsubscribed is the time spent without a subscription, L1 read
	// around, the current period included (the start up to the first
	// subscription too).
	Unsubscribed time.Duration

	// BatchCalls counts GetMany and GetOrLoadMany calls.
	BatchCalls uint64
	// BatchKeys counts the distinct keys they asked for.
	BatchKeys uint64
	// BatchKeysLoaded counts the keys their loads were asked for.
	BatchKeysLoaded uint64
	// BatchKeysCoalesced counts the keys they took from a read or load
	// another caller had under way.
	BatchKeysCoalesced uint64

	// Breaker is the circuit breaker in front of L2: its state and
	// transitions. All zero without a breaker.
	Breaker BreakerStats
}

// LayerStats counts one layer's reads.
type LayerStats struct {
	// Hits counts reads that returned an unexpired value, negative ones
	// included.
	Hits uint64
	// Misses counts reads that found nothing, or only an expired value.
	Misses uint64
	// Failures counts reads that failed: an error, a timeout, a panic.
	Failures uint64
	// Abandoned counts reads a policy stopped waiting for (a lost race, a
	// caller's ctx ending).
	Abandoned uint64
	// Latency summarises how long the finished reads took.
	Latency LatencyStats
}

// LatencyStats summarises how long a layer's finished reads took. The
// figures come from a log-linear histogram: quantiles are upper estimates
// and the mean an estimate, both accurate to within 12.5%.
type LatencyStats struct {
	// Count is the number of reads measured.
	Count uint64
	// Mean is the mean duration.
	Mean time.Duration
	// P50, P99 and P999 are the median, 99th and 99.9th percentiles.
	P50, P99, P999 time.Duration
}

// HitRatio returns Hits / (Hits + Misses + Failures), or 0 before any read.
func (s LayerStats) HitRatio() float64 {
	n := s.Hits + s.Misses + s.Failures
	if n == 0 {
		return 0
	}
	return float64(s.Hits) / float64(n)
}

// layerCounters are the live counters behind a LayerStats: one histogram
// per outcome, so that recording a read is a single atomic add.
type layerCounters struct {
	hit, miss, failed hist.Histogram
	abandoned         atomic.Uint64
}

func (l *layerCounters) record(rep LayerReport) {
	switch rep.Status {
	case StatusHit:
		l.hit.Record(rep.Latency)
	case StatusMiss:
		l.miss.Record(rep.Latency)
	case StatusFailed:
		if rep.Err == ErrBreakerOpen {
			return // not a read of the layer: counted in Stats.Breaker
		}
		l.failed.Record(rep.Latency)
	case StatusAbandoned:
		l.abandoned.Add(1)
	}
}

func (l *layerCounters) snapshot() LayerStats {
	hits, misses, failed := l.hit.Snapshot(), l.miss.Snapshot(), l.failed.Snapshot()
	all := new(hist.Snapshot)
	all.Add(&l.hit)
	all.Add(&l.miss)
	all.Add(&l.failed)
	return LayerStats{
		Hits:      hits.Count(),
		Misses:    misses.Count(),
		Failures:  failed.Count(),
		Abandoned: l.abandoned.Load(),
		Latency: LatencyStats{
			Count: all.Count(),
			Mean:  all.Mean(),
			P50:   all.Quantile(0.5),
			P99:   all.Quantile(0.99),
			P999:  all.Quantile(0.999),
		},
	}
}

// counters are the live counters behind Stats.
type counters struct {
	l1, l2                                          layerCounters
	loads, loadErrors, notFound, coalesced          atomic.Uint64
	refills, refillsSkipped, staleServed, refreshes atomic.Uint64
	negativeHits, writeErrors, offloadRejected      atomic.Uint64
	observerPanics                                  atomic.Uint64
	invalidationsSent, invalidationErrors           atomic.Uint64
	invalidationsReceived, invalidationEvictions    atomic.Uint64
	subscriptionDrops                               atomic.Uint64
	batchCalls, batchKeys                           atomic.Uint64
	batchKeysLoaded, batchKeysCoalesced             atomic.Uint64
	breakerCloses, writesSkipped                    atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		L1:              c.l1.snapshot(),
		L2:              c.l2.snapshot(),
		Loads:           c.loads.Load(),
		LoadErrors:      c.loadErrors.Load(),
		NotFound:        c.notFound.Load(),
		Coalesced:       c.coalesced.Load(),
		Refills:         c.refills.Load(),
		RefillsSkipped:  c.refillsSkipped.Load(),
		StaleServed:     c.staleServed.Load(),
		Refreshes:       c.refreshes.Load(),
		NegativeHits:    c.negativeHits.Load(),
		WriteErrors:     c.writeErrors.Load(),
		OffloadRejected: c.offloadRejected.Load(),
		ObserverPanics:  c.observerPanics.Load(),

		InvalidationsSent:     c.invalidationsSent.Load(),
		InvalidationErrors:    c.invalidationErrors.Load(),
		InvalidationsReceived: c.invalidationsReceived.Load(),
		InvalidationEvictions: c.invalidationEvictions.Load(),
		SubscriptionDrops:     c.subscriptionDrops.Load(),

		BatchCalls:         c.batchCalls.Load(),
		BatchKeys:          c.batchKeys.Load(),
		BatchKeysLoaded:    c.batchKeysLoaded.Load(),
		BatchKeysCoalesced: c.batchKeysCoalesced.Load(),
	}
}
