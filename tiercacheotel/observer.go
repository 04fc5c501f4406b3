package tiercacheotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache"
)

// ScopeName is the instrumentation scope of the meter and the tracer.
const ScopeName = "github.com/tiercache/tiercache/tiercacheotel"

// Options configures an Observer. The zero value, like a nil *Options,
// records metrics on the global MeterProvider and makes no span.
type Options struct {
	// MeterProvider makes the meter the metrics are recorded on. Nil: the
	// global one, otel.GetMeterProvider(), which forwards to the provider
	// set later with otel.SetMeterProvider. A noop provider turns the
	// metrics off.
	MeterProvider metric.MeterProvider
	// Tracing turns on a span per operation (see Observer). False: no span;
	// StartOp returns its ctx as it is.
	//
	// Tracing is off by default because an L1 hit costs about a hundred
	// nanoseconds and a span several times that, and a span for each cache
	// read can outnumber a service's other spans.
	Tracing bool
	// TracerProvider makes the tracer of the spans when Tracing is set.
	// Nil: the global one, otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// Observer records a Cache's events as OpenTelemetry metrics and, with
// Options.Tracing, spans. Give it to the cache in tiercache.Options.Observer;
// one Observer may serve several caches, told apart by their
// tiercache.Options.Name in the tiercache.cache.name attribute. It is safe
// for concurrent use.
//
// The metrics are listed with the Metric constants. Their attribute sets
// are built once for each cache name, so recording an event allocates
// nothing of the Observer's own.
//
// With tracing, each operation (Get, GetOrLoad, Set, Delete, GetMany,
// GetOrLoadMany) is a span named "tiercache." and the operation, such as
// "tiercache.get", a child of the span in the caller's ctx. When the
// operation ends the span gets tiercache.cache.name, tiercache.status and,
// on a hit, tiercache.layer (tiercache.keys for a batch); a failure is
// recorded as the span's error; a key that does not exist (ErrNotFound) is
// a miss, not an error. A load adds a "tiercache.load" event
// (tiercache.status, tiercache.duration in seconds, tiercache.keys,
// tiercache.waiters, exception.message on a failure) to the span of the
// operation that started it, not to those of the callers that joined it; a
// refill adds a "tiercache.refill" event and a refresh a
// "tiercache.refresh" event. Background work that ends after the
// operation's span did, as a refill through an OffloadPool usually does, is
// recorded instead as a short span of its own with that name, a child of
// the operation's span.
type Observer struct {
	in        *instruments
	sets      setsByName
	tracer    trace.Tracer // nil: no tracing
	spanNames [numOps]string
	spanOpts  [numOps][]trace.SpanStartOption
}

var (
	_ tiercache.Observer   = (*Observer)(nil)
	_ tiercache.OpObserver = (*Observer)(nil)
)

// New returns an Observer configured by opts; nil opts means the defaults.
// It returns an error, prefixed "tiercacheotel:", when the meter refuses an
// instrument. It never modifies *opts.
func New(opts *Options) (*Observer, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	mp := o.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	in, err := newInstruments(mp.Meter(ScopeName))
	if err != nil {
		return nil, errors.Join(errors.New("tiercacheotel: New: creating the instruments"), err)
	}
	obs := &Observer{in: in}
	if o.Tracing {
		tp := o.TracerProvider
		if tp == nil {
			tp = otel.GetTracerProvider()
		}
		obs.tracer = tp.Tracer(ScopeName)
		for op := range tiercache.Op(numOps) {
			obs.spanNames[op] = spanName(op)
			obs.spanOpts[op] = []trace.SpanStartOption{
				trace.WithSpanKind(trace.SpanKindInternal),
				trace.WithAttributes(OperationKey.String(op.String())),
			}
		}
	}
	return obs, nil
}

// Observe records e. It is called by the Cache.
func (o *Observer) Observe(ctx context.Context, e tiercache.Event) {
	s := o.sets.get(e.Cache)
	in := o.in
	switch e.Kind {
	case tiercache.EventRead:
		if e.Status == tiercache.StatusAbandoned {
			in.abandonedReads.Add(ctx, 1, s.layerOpts(e.Layer).add...)
			return
		}
		in.readDuration.Record(ctx, e.Duration.Seconds(), s.readOpts(e.Layer, e.Outcome()).rec...)
	case tiercache.EventOpDone:
		st := e.Outcome()
		in.opDuration.Record(ctx, e.Duration.Seconds(), s.opOpts(e.Op, st, e.Layer).rec...)
		if o.tracer != nil {
			o.endSpan(ctx, e, st, s)
		}
	case tiercache.EventLoad:
		st := e.Outcome()
		set := s.load[st]
		in.loadDuration.Record(ctx, e.Duration.Seconds(), set.rec...)
		in.loadKeys.Add(ctx, int64(e.Keys), set.add...)
		if e.Waiters > 0 {
			in.loadWaiters.Record(ctx, int64(e.Waiters), s.cache.rec...)
		}
		if o.tracer != nil {
			o.loadEvent(ctx, e, st, s)
		}
	case tiercache.EventRefill:
		in.refills.Add(ctx, int64(e.Keys), s.cache.add...)
		if o.tracer != nil {
			o.spanEvent(ctx, spanRefill, 0, s, KeysKey.Int(e.Keys))
		}
	case tiercache.EventRefresh:
		in.refreshes.Add(ctx, int64(e.Keys), s.cache.add...)
		if o.tracer != nil {
			o.spanEvent(ctx, spanRefresh, 0, s, KeysKey.Int(e.Keys))
		}
	case tiercache.EventWriteFailed:
		in.writeFailures.Add(ctx, 1, s.layerOpts(e.Layer).add...)
	case tiercache.EventOffloadRejected:
		in.offloadRejected.Add(ctx, 1, s.offloadOpts(e.OffloadKind).add...)
	case tiercache.EventInvalidationSent:
		in.invalidationKeys.Add(ctx, int64(e.Keys), s.invSent[e.Outcome()].add...)
	case tiercache.EventInvalidationReceived:
		in.invalidationKeys.Add(ctx, int64(e.Keys), s.invRecv.add...)
	case tiercache.EventSubscriptionLost:
		in.subscriptionDrops.Add(ctx, 1, s.cache.add...)
	case tiercache.EventBreakerChanged:
		in.breakerTransitions.Add(ctx, 1, s.breakerOpts(e.From, e.To).add...)
	}
}
