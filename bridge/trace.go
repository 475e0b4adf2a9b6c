package bridge

// OpenTelemetry spans for runs and bridge calls, made only when
// Options.TracerProvider is set. Unset, nothing here is on any path: the
// run methods test one nil field and RegisterFunc registers the function
// unwrapped.

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonbridge/moonbridge/core"
)

// TracerName is the instrumentation scope of moonbridge's spans.
const TracerName = "github.com/moonbridge/moonbridge/bridge"

// Span attribute keys moonbridge sets.
const (
	// AttrRunKind is a run span's kind: "string" (RunString), "file"
	// (RunFile) or "call" (Call).
	AttrRunKind = attribute.Key("moonbridge.run.kind")
	// AttrFuncKind is a bridge call span's kind: "async" or "stream".
	AttrFuncKind = attribute.Key("moonbridge.function.kind")
	// AttrErrorKind is the kind of the moonbridge error a span ended with
	// ("runtime", "bridge", "cancelled", "limit", ...).
	AttrErrorKind = attribute.Key("moonbridge.error.kind")
)

// startRun starts the span of a run (RunString, RunFile, Call) when
// tracing is on; its context carries the span to every bridge call of
// the run. With tracing off it returns ctx and a nil span.
func (rt *Runtime) startRun(ctx context.Context, kind, name string) (context.Context, trace.Span) {
	if rt.tracer == nil {
		return ctx, nil
	}
	return rt.tracer.Start(ctx, name, trace.WithAttributes(AttrRunKind.String(kind)))
}

// endRun ends a span startRun made, if any, with err's status.
func endRun(span trace.Span, err error) {
	if span != nil {
		endSpan(span, err)
	}
}

// endSpan records err (nil: success) on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		var le *LuaError
		if errors.As(err, &le) {
			span.SetAttributes(AttrErrorKind.String(le.Kind))
		}
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// tracedFunc wraps a bridge function in a span named after its Lua name:
// the span is the parent of whatever the function starts from its ctx,
// and its own parent is the run's span.
func (rt *Runtime) tracedFunc(name string, fn core.Func) core.Func {
	attrs := trace.WithAttributes(AttrFuncKind.String("async"))
	return func(ctx context.Context, args []core.Value) (vals []any, err error) {
		ctx, span := rt.tracer.Start(ctx, name, attrs)
		defer endTraced(span, &err)
		return fn(ctx, args)
	}
}

// tracedStream is tracedFunc for streams: the span lasts until the
// stream function returns.
func (rt *Runtime) tracedStream(name string, fn core.StreamFunc) core.StreamFunc {
	attrs := trace.WithAttributes(AttrFuncKind.String("stream"))
	return func(ctx context.Context, args []core.Value, emit func(any) error) (err error) {
		ctx, span := rt.tracer.Start(ctx, name, attrs)
		defer endTraced(span, &err)
		return fn(ctx, args, emit)
	}
}

// endTraced ends a bridge call's span, also when the function panics (the
// core turns the panic into a Lua error after this).
func endTraced(span trace.Span, err *error) {
	if p := recover(); p != nil {
		endSpan(span, fmt.Errorf("panic: %v", p))
		panic(p)
	}
	endSpan(span, *err)
}
