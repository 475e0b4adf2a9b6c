package bridge_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/llmhook"
)

type countKey struct{}

// TestRunValuesAreFreshPerRun: each RunString, RunFile and Call has its
// own store, shared by every bridge call of that run, and none outside.
func TestRunValuesAreFreshPerRun(t *testing.T) {
	if bridge.RunValues(context.Background()) != nil {
		t.Error("a store outside a run")
	}
	rt, out := newRuntime(t)
	var mu sync.Mutex
	stores := map[*bridge.RunStore]bool{}
	rt.RegisterFunc("rs.count", func(ctx context.Context, args bridge.Args) ([]any, error) {
		s := bridge.RunValues(ctx)
		if s == nil {
			return nil, errors.New("no run store")
		}
		mu.Lock()
		stores[s] = true
		mu.Unlock()
		v, _ := s.LoadOrStore(countKey{}, new(int))
		p := v.(*int)
		mu.Lock()
		defer mu.Unlock()
		*p++
		return []any{int64(*p)}, nil
	})
	src := `
		local rs, task = require("rs"), require("task")
		local a = task.spawn(rs.count)
		local b = rs.count()
		print(math.max(a:wait(), b), rs.count())`
	mustRun(t, rt, src)
	mustRun(t, rt, src)
	mustRun(t, rt, `function counted() return require("rs").count() end`)
	if _, err := rt.Call(context.Background(), "counted"); err != nil {
		t.Fatal(err)
	}
	vals, err := rt.Call(context.Background(), "counted")
	if err != nil || len(vals) != 1 || vals[0] != int64(1) {
		t.Errorf("Call: %v, %v; want a fresh count of 1", vals, err)
	}
	if out.String() != "2\t3\n2\t3\n" {
		t.Errorf("output %q", out.String())
	}
	if len(stores) != 4 {
		t.Errorf("%d stores for 4 runs that counted", len(stores))
	}
}

// TestPreludesRunOnceBeforeTheNextRun: a prelude runs before the next run,
// once; one whose run fails (here: a cancelled context) stays pending.
func TestPreludesRunOnceBeforeTheNextRun(t *testing.T) {
	rt, out := newRuntime(t)
	var ran atomic.Int32
	if err := rt.RegisterFunc("tick", func(context.Context, bridge.Args) ([]any, error) {
		ran.Add(1)
		return nil, nil
	}, bridge.Inline()); err != nil {
		t.Fatal(err)
	}
	// A prelude is moonbridge's own Lua: its globals are private (only
	// what it does to shared state, here a Go call, shows).
	llmhook.Prelude(rt, "prelude", "tick(); preluded = true")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := rt.RunString(ctx, "main", "print('never')"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want the cancelled context's", err)
	}
	mustRun(t, rt, "print(preluded)")
	mustRun(t, rt, "print(preluded)")
	if out.String() != "nil\nnil\n" || ran.Load() != 1 {
		t.Errorf("output %q, the prelude ran %d times", out.String(), ran.Load())
	}
}
