package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/moonbridge/moonbridge/bridge"
)

func newTracedRuntime(t testing.TB) (*bridge.Runtime, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, rec
}

// spanTree renders ended spans as "parent > child" lines, sorted by start,
// with the status of failed ones.
func spanTree(spans []sdktrace.ReadOnlySpan) map[string]int {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	lines := map[string]int{}
	for _, s := range spans {
		path := s.Name()
		for p := s.Parent(); p.IsValid(); {
			ps, ok := byID[p.SpanID()]
			if !ok {
				path = "?> " + path
				break
			}
			path = ps.Name() + " > " + path
			p = ps.Parent()
		}
		if s.Status().Code == codes.Error {
			path += " [error: " + s.Status().Description + "]"
		}
		lines[path]++
	}
	return lines
}

func TestTracingSpansForRunsAndBridgeCallsNestTheHostsSpans(t *testing.T) {
	rt, rec := newTracedRuntime(t)
	rt.RegisterFunc("kv.get", func(ctx context.Context, args bridge.Args) ([]any, error) {
		// The host's own span, from the call's ctx: it nests under kv.get.
		_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("host").Start(ctx, "db.query")
		span.End()
		key, _ := args.String(0)
		return []any{"v:" + key}, nil
	})
	rt.RegisterFunc("kv.fail", func(ctx context.Context, args bridge.Args) ([]any, error) {
		return nil, errors.New("no such key")
	})
	rt.RegisterStream("feed.read", func(ctx context.Context, args bridge.Args, emit func(any) error) error {
		for i := range 3 {
			if err := emit(int64(i)); err != nil {
				return err
			}
		}
		return nil
	})
	rt.RegisterFunc("kv.len", func(ctx context.Context, args bridge.Args) ([]any, error) {
		return []any{int64(1)}, nil
	}, bridge.Inline())
	mustRun(t, rt, `
		local kv, task = require("kv"), require("task")
		local t = task.spawn(kv.get, "a")
		assert(kv.get("b") == "v:b" and t:wait() == "v:a")
		assert(not pcall(kv.fail))
		for _ in feed.read() do end
		assert(kv.len() == 1)
		function handler(x) return kv.get(x) end
	`)
	if _, err := rt.Call(context.Background(), "handler", "c"); err != nil {
		t.Fatal(err)
	}
	err := run(t, rt, `error("kaput", 0)`)
	if err == nil {
		t.Fatal("no error")
	}
	got := spanTree(rec.Ended())
	want := map[string]int{
		"test > kv.get":                       2,
		"test > kv.get > db.query":            2,
		"test > kv.fail [error: no such key]": 1,
		"test > feed.read":                    1,
		"handler":                             1,
		"handler > kv.get":                    1,
		"handler > kv.get > db.query":         1,
		"test":                                1,
		"test [error: kaput]":                 1, // the failed run
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("spans:\n got %v\nwant %v", got, want)
	}
	for _, s := range rec.Ended() {
		attrs := map[string]string{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.Emit()
		}
		var want map[string]string
		switch {
		case s.Name() == "kv.get" || s.Name() == "kv.fail":
			want = map[string]string{"moonbridge.function.kind": "async"}
		case s.Name() == "feed.read":
			want = map[string]string{"moonbridge.function.kind": "stream"}
		case s.Name() == "handler":
			want = map[string]string{"moonbridge.run.kind": "call"}
		case s.Name() == "test" && s.Status().Code == codes.Error:
			want = map[string]string{"moonbridge.run.kind": "string", "moonbridge.error.kind": "runtime"}
		case s.Name() == "test":
			want = map[string]string{"moonbridge.run.kind": "string"}
		default:
			continue
		}
		if fmt.Sprint(attrs) != fmt.Sprint(want) {
			t.Errorf("span %s: attributes %v, want %v", s.Name(), attrs, want)
		}
	}
}

func TestTracingEndsTheSpanOfAPanickingFunction(t *testing.T) {
	rt, rec := newTracedRuntime(t)
	rt.RegisterFunc("bad.call", func(ctx context.Context, args bridge.Args) ([]any, error) {
		panic("oops")
	})
	mustRun(t, rt, `local ok, err = pcall(bad.call); assert(not ok and err.message:find("panic: oops"))`)
	got := spanTree(rec.Ended())
	if got["test > bad.call [error: panic: oops]"] != 1 {
		t.Errorf("spans: %v", got)
	}
}

// Without a TracerProvider the bridge function gets the core's own call
// context, not a wrapper around it: nothing is added on the call path.
func TestTracingOffLeavesTheCallContextUnwrapped(t *testing.T) {
	rt, _ := newRuntime(t)
	var desc string
	var recording bool
	rt.RegisterFunc("probe", func(ctx context.Context, args bridge.Args) ([]any, error) {
		desc = fmt.Sprint(ctx)
		recording = trace.SpanFromContext(ctx).IsRecording()
		return nil, nil
	})
	mustRun(t, rt, `probe()`)
	if desc != "moonbridge call context" || recording {
		t.Errorf("ctx %q (recording %v), want the core's call context", desc, recording)
	}
}

func BenchmarkSequentialCallTracing(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			var rt *bridge.Runtime
			if mode == "on" {
				rt, _ = newTracedRuntime(b)
			} else {
				rt, _ = newRuntime(b)
			}
			rt.RegisterFunc("echo", func(ctx context.Context, args bridge.Args) ([]any, error) {
				return []any{args.Get(0)}, nil
			})
			src := fmt.Sprintf(`local s = 0
				for i = 1, %d do s = s + echo(i) end
				assert(s == %d)`, b.N, b.N*(b.N+1)/2)
			b.ReportAllocs()
			b.ResetTimer()
			mustRun(b, rt, src)
		})
	}
}
