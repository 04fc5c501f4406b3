package tiercacheotel

import (
	"errors"

	"go.opentelemetry.io/otel/metric"
)

// The names of the instruments, for Views and dashboards. Durations are in
// seconds ("s"); counts are in UCUM annotations such as "{read}".
const (
	// MetricLayerReadDuration is a histogram of the reads of one layer:
	// tiercache.cache.name, tiercache.layer (l1, l2) and tiercache.status
	// (hit, miss, failed).
	MetricLayerReadDuration = "tiercache.layer.read.duration"
	// MetricLayerAbandonedReads counts the reads of a layer a read policy
	// stopped waiting for (a lost race, the caller's ctx ending), which
	// have no duration: tiercache.cache.name, tiercache.layer.
	MetricLayerAbandonedReads = "tiercache.layer.abandoned_reads"
	// MetricOperationDuration is a histogram of the Cache's operations:
	// tiercache.cache.name, tiercache.operation (get, get_or_load, set,
	// delete, get_many, get_or_load_many), tiercache.status (hit, miss,
	// failed for reads; ok, failed for set and delete) and, on a hit of
	// Get or GetOrLoad, tiercache.layer, the layer that served the value.
	MetricOperationDuration = "tiercache.operation.duration"
	// MetricLoadDuration is a histogram of the loader calls:
	// tiercache.cache.name, tiercache.status (ok, not_found, failed).
	MetricLoadDuration = "tiercache.load.duration"
	// MetricLoadKeys counts the keys loads were asked for (one per
	// GetOrLoad load, several per GetOrLoadMany batch):
	// tiercache.cache.name, tiercache.status.
	MetricLoadKeys = "tiercache.load.keys"
	// MetricLoadWaiters is a histogram of the callers waiting for each
	// load of GetOrLoad (or refresh) when it ended, the one that started it
	// included: tiercache.cache.name. The batch loads of GetOrLoadMany,
	// which do not count their waiters, are not recorded.
	MetricLoadWaiters = "tiercache.load.waiters"
	// MetricRefills counts the L2 values copied into L1:
	// tiercache.cache.name.
	MetricRefills = "tiercache.refills"
	// MetricRefreshes counts the keys of the background refreshes of stale
	// values that started: tiercache.cache.name.
	MetricRefreshes = "tiercache.refreshes"
	// MetricWriteFailures counts the background writes that failed (a
	// refill, the L2 write of a loaded value, an eviction):
	// tiercache.cache.name, tiercache.layer.
	MetricWriteFailures = "tiercache.write.failures"
	// MetricOffloadRejectedTasks counts the background tasks the Offload
	// refused, which were therefore not done: tiercache.cache.name,
	// tiercache.offload.kind (tiercache.refill, tiercache.refresh,
	// tiercache.write-l2, tiercache.race-loser).
	MetricOffloadRejectedTasks = "tiercache.offload.rejected_tasks"
	// MetricInvalidationKeys counts the keys announced to the other caches
	// (tiercache.invalidation.direction sent, with tiercache.status ok or
	// failed when the Invalidator refused them) and the keys other caches
	// announced (direction received): tiercache.cache.name.
	MetricInvalidationKeys = "tiercache.invalidation.keys"
	// MetricSubscriptionDrops counts the times the Invalidator lost its
	// subscription, each of which flushed L1: tiercache.cache.name.
	MetricSubscriptionDrops = "tiercache.subscription.drops"
	// MetricBreakerTransitions counts the L2 circuit breaker's changes of
	// state: tiercache.cache.name, tiercache.breaker.from and
	// tiercache.breaker.to (closed, open, half_open).
	MetricBreakerTransitions = "tiercache.breaker.transitions"
)

// durationBuckets are the bucket boundaries, in seconds, of the duration
// histograms: from 10µs to 1s. An L1 hit falls in the first; L2 round
// trips, loads and their tails spread over the rest. A View overrides them.
var durationBuckets = []float64{
	0.00001, 0.000025, 0.00005,
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1,
}

// waiterBuckets are the bucket boundaries of MetricLoadWaiters.
var waiterBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}

// instruments are the Observer's metric instruments.
type instruments struct {
	readDuration, opDuration, loadDuration metric.Float64Histogram
	loadWaiters                            metric.Int64Histogram
	abandonedReads, loadKeys               metric.Int64Counter
	refills, refreshes, writeFailures      metric.Int64Counter
	offloadRejected, invalidationKeys      metric.Int64Counter
	subscriptionDrops, breakerTransitions  metric.Int64Counter
}

// newInstruments creates the instruments on m. It returns every error the
// meter reported, joined.
func newInstruments(m metric.Meter) (*instruments, error) {
	var (
		in   instruments
		errs []error
	)
	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	in.readDuration = hist(MetricLayerReadDuration, "Duration of the reads of one cache layer.")
	in.opDuration = hist(MetricOperationDuration, "Duration of the cache's operations.")
	in.loadDuration = hist(MetricLoadDuration, "Duration of the loader calls.")
	var err error
	in.loadWaiters, err = m.Int64Histogram(MetricLoadWaiters, metric.WithUnit("{waiter}"),
		metric.WithDescription("Callers waiting for each load when it ended."),
		metric.WithExplicitBucketBoundaries(waiterBuckets...))
	errs = append(errs, err)
	in.abandonedReads = counter(MetricLayerAbandonedReads, "{read}", "Reads of a layer a read policy stopped waiting for.")
	in.loadKeys = counter(MetricLoadKeys, "{key}", "Keys the loads were asked for.")
	in.refills = counter(MetricRefills, "{key}", "L2 values copied into L1.")
	in.refreshes = counter(MetricRefreshes, "{key}", "Keys of the background refreshes of stale values.")
	in.writeFailures = counter(MetricWriteFailures, "{write}", "Background writes that failed.")
	in.offloadRejected = counter(MetricOffloadRejectedTasks, "{task}", "Background tasks the Offload refused, not done.")
	in.invalidationKeys = counter(MetricInvalidationKeys, "{key}", "Keys announced to and by the other caches.")
	in.subscriptionDrops = counter(MetricSubscriptionDrops, "{drop}", "Times the Invalidator lost its subscription.")
	in.breakerTransitions = counter(MetricBreakerTransitions, "{transition}", "Changes of state of the L2 circuit breaker.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &in, nil
}
