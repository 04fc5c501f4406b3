package tiercacheotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache"
)

// The names of the span events, and of the spans that stand for them when
// the operation's span has already ended.
const (
	spanLoad    = "tiercache.load"
	spanRefill  = "tiercache.refill"
	spanRefresh = "tiercache.refresh"
)

// exceptionMessageKey is OpenTelemetry's attribute for an error's message.
const exceptionMessageKey = attribute.Key("exception.message")

// opSpanKey marks the ctx StartOp returns with the span it started, so that
// EventOpDone ends that span and never one it did not start: not even one
// another Observer started in the same ctx (two behind a MultiObserver).
type opSpanKey struct{ o *Observer }

// spanName is the name of op's span, such as "tiercache.get".
func spanName(op tiercache.Op) string { return "tiercache." + op.String() }

// StartOp starts the span of op, when tracing is on, and returns ctx with
// it; without tracing it returns ctx. It is called by the Cache.
func (o *Observer) StartOp(ctx context.Context, op tiercache.Op, cache string) context.Context {
	if o.tracer == nil {
		return ctx
	}
	var span trace.Span
	if int(op) < numOps {
		opts := o.spanOpts[op]
		if cache != "" { // at the start, so that samplers see it
			opts = append(opts[:len(opts):len(opts)], trace.WithAttributes(CacheNameKey.String(cache)))
		}
		ctx, span = o.tracer.Start(ctx, o.spanNames[op], opts...)
	} else {
		ctx, span = o.tracer.Start(ctx, spanName(op), trace.WithAttributes(OperationKey.String(op.String())))
	}
	return context.WithValue(ctx, opSpanKey{o}, span)
}

// endSpan ends the span StartOp put in ctx, with the outcome of e.
func (o *Observer) endSpan(ctx context.Context, e tiercache.Event, st status, s *cacheSets) {
	span, ok := ctx.Value(opSpanKey{o}).(trace.Span)
	if !ok {
		return // StartOp was not called: the span in ctx belongs to someone else
	}
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 4)
		attrs = append(attrs, s.spanAttrs...)
		attrs = append(attrs, StatusKey.String(st.String()))
		if st == statusHit && e.Layer != tiercache.NoLayer {
			attrs = append(attrs, LayerKey.String(layerName(e.Layer)))
		}
		if e.Op == tiercache.OpGetMany || e.Op == tiercache.OpGetOrLoadMany {
			attrs = append(attrs, KeysKey.Int(e.Keys))
		}
		span.SetAttributes(attrs...)
		if st == statusFailed && e.Err != nil {
			span.RecordError(e.Err)
			span.SetStatus(codes.Error, e.Err.Error())
		}
	}
	span.End()
}

// loadEvent records a load on the span in ctx.
func (o *Observer) loadEvent(ctx context.Context, e tiercache.Event, st status, s *cacheSets) {
	attrs := []attribute.KeyValue{
		StatusKey.String(st.String()),
		DurationKey.Float64(e.Duration.Seconds()),
		KeysKey.Int(e.Keys),
		WaitersKey.Int(e.Waiters),
	}
	if st == statusFailed {
		attrs = append(attrs, exceptionMessageKey.String(e.Err.Error()))
	}
	o.spanEvent(ctx, spanLoad, e.Duration, s, attrs...)
}

// spanEvent adds the event name to the operation's span: the one StartOp
// put in ctx, or else the span in ctx. When that span has ended (the work
// ran in the background and outlived it) the event becomes a span of its
// own, a child of the operation's, that lasted d up to now. Nothing is
// recorded when the operation's span was not sampled.
func (o *Observer) spanEvent(ctx context.Context, name string, d time.Duration, s *cacheSets, attrs ...attribute.KeyValue) {
	span, ok := ctx.Value(opSpanKey{o}).(trace.Span)
	if !ok {
		span = trace.SpanFromContext(ctx)
	}
	if span.IsRecording() {
		span.AddEvent(name, trace.WithAttributes(attrs...))
		return
	}
	if !span.SpanContext().IsSampled() {
		return
	}
	if ok {
		ctx = trace.ContextWithSpan(ctx, span) // not another Observer's, started inside it
	}
	end := time.Now()
	_, child := o.tracer.Start(ctx, name,
		trace.WithTimestamp(end.Add(-d)),
		trace.WithAttributes(s.spanAttrs...),
		trace.WithAttributes(attrs...))
	child.End(trace.WithTimestamp(end))
}
