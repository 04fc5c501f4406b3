// Package tiercacheotel records what a [tiercache.Cache] does as
// OpenTelemetry metrics and, optionally, spans.
//
// An [Observer] is a [tiercache.Observer]: hand it to the cache in
// tiercache.Options.Observer and name the cache, and every read of a layer,
// operation, load, refill, refresh, failed background write, refused
// background task, invalidation, subscription drop and breaker transition
// is recorded on the MeterProvider (the global one by default):
//
//	obs, err := tiercacheotel.New(&tiercacheotel.Options{Tracing: true})
//	if err != nil {
//		return err
//	}
//	cache, err := tiercache.New(l1, l2, &tiercache.Options[User]{
//		Name:     "users",
//		Observer: obs,
//	})
//
// The metrics follow OpenTelemetry's naming conventions: durations are
// histograms in seconds (tiercache.layer.read.duration,
// tiercache.operation.duration, tiercache.load.duration), events are
// counters ([MetricRefills], [MetricWriteFailures], ...), and the cache
// name, layer, status and operation are attributes ([CacheNameKey],
// [LayerKey], [StatusKey], [OperationKey]). The histograms' buckets run from
// 10µs to 1s; a View changes them.
//
// With [Options].Tracing each operation is a span, "tiercache.get" or
// "tiercache.get_or_load" say, child of the caller's, with the layer that
// served the value and the outcome as attributes and the loads and refills
// it caused as events. Tracing is off by default: a span costs several
// times an L1 hit.
//
// Recording is allocation-free apart from spans: the attribute sets are
// built once per cache name. The module depends on the OpenTelemetry API
// only; the SDK is needed by the service, and by this module's tests.
package tiercacheotel
