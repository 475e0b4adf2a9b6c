package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/scripttest"
)

// person crosses to Lua as a map through its lua tags.
type person struct {
	Name   string   `lua:"name"`
	Age    int      `lua:"age"`
	Tags   []string `lua:"tags"`
	Hidden string   `lua:"-"`
}

// registerTestModule registers module "t", the Go side of testdata/*.lua.
func registerTestModule(t testing.TB, rt *bridge.Runtime) {
	t.Helper()
	cancelled := make(chan struct{}, 16)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rt.RegisterFunc("t.echo", func(ctx context.Context, a bridge.Args) ([]any, error) {
		out := make([]any, a.Len())
		for i := range out {
			out[i] = a.Get(i)
		}
		return out, nil
	}))
	must(rt.RegisterFunc("t.add", func(ctx context.Context, a bridge.Args) ([]any, error) {
		x, err := a.Int(0)
		if err != nil {
			return nil, err
		}
		y, err := a.Int(1)
		if err != nil {
			return nil, err
		}
		return []any{x + y}, nil
	}))
	must(rt.RegisterFunc("t.inc", func(ctx context.Context, a bridge.Args) ([]any, error) {
		x, err := a.Int(0)
		return []any{x + 1}, err
	}, bridge.Inline()))
	// t.busy(ms) keeps the loop itself busy for ms milliseconds, as a
	// long computation would, without running a Lua instruction: an inline
	// function that blocks (a misuse anywhere else), so that a script's
	// instruction count does not depend on the machine's speed.
	must(rt.RegisterFunc("t.busy", func(ctx context.Context, a bridge.Args) ([]any, error) {
		ms, err := a.Int(0)
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return nil, nil
	}, bridge.Inline()))
	must(rt.RegisterFunc("t.sleep_echo", func(ctx context.Context, a bridge.Args) ([]any, error) {
		secs, err := a.Float(0)
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(secs * float64(time.Second))):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []any{a.Get(1)}, nil
	}))
	// t.hold(key) returns key once t.release(key) is called (or fails when
	// its task is cancelled): a Go call that ends on an event of the
	// script's choosing, not after a while.
	var gatesMu sync.Mutex
	gates := map[string]chan struct{}{}
	gate := func(key string) chan struct{} {
		gatesMu.Lock()
		defer gatesMu.Unlock()
		g, ok := gates[key]
		if !ok {
			g = make(chan struct{})
			gates[key] = g
		}
		return g
	}
	must(rt.RegisterFunc("t.hold", func(ctx context.Context, a bridge.Args) ([]any, error) {
		key, err := a.String(0)
		if err != nil {
			return nil, err
		}
		select {
		case <-gate(key):
			return []any{key}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	must(rt.RegisterFunc("t.release", func(ctx context.Context, a bridge.Args) ([]any, error) {
		key, err := a.String(0)
		if err != nil {
			return nil, err
		}
		close(gate(key))
		return nil, nil
	}, bridge.Inline()))
	must(rt.RegisterFunc("t.fail", func(ctx context.Context, a bridge.Args) ([]any, error) {
		msg, _ := a.String(0)
		return nil, errors.New(msg)
	}))
	must(rt.RegisterFunc("t.panic", func(ctx context.Context, a bridge.Args) ([]any, error) {
		msg, _ := a.String(0)
		panic(msg)
	}))
	must(rt.RegisterFunc("t.person", func(ctx context.Context, a bridge.Args) ([]any, error) {
		return []any{person{Name: "Ada", Age: 36, Tags: []string{"logic", "math"}, Hidden: "x"}}, nil
	}))
	must(rt.RegisterStream("t.count", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		n, err := a.Int(0)
		if err != nil {
			return err
		}
		for i := int64(0); i < n; i++ {
			if err := emit(i); err != nil {
				if ctx.Err() != nil {
					cancelled <- struct{}{}
				}
				return err
			}
		}
		return nil
	}))
	must(rt.RegisterStream("t.chunks", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		n, _ := a.Int(0)
		words := []string{"one", "two", "three", "four"}
		for i := int64(0); i < n; i++ {
			if err := emit(map[string]any{"index": i + 1, "text": words[i%4]}); err != nil {
				return err
			}
		}
		return nil
	}))
	must(rt.RegisterStream("t.count_then_fail", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		n, _ := a.Int(0)
		for i := int64(0); i < n; i++ {
			if err := emit(i); err != nil {
				return err
			}
		}
		return fmt.Errorf("failed after %d", n)
	}))
	must(rt.RegisterFunc("t.last_stream_cancelled", func(ctx context.Context, a bridge.Args) ([]any, error) {
		select {
		case <-cancelled:
			return []any{true}, nil
		case <-time.After(10 * time.Second):
			return []any{false}, nil
		}
	}))
}

// TestScripts runs testdata/NAME.lua and compares what it prints with
// testdata/NAME.out.
func TestScripts(t *testing.T) {
	scripttest.RunGolden(t, "../testdata/*.lua", registerTestModule)
}

// TestStockLua runs testdata/stock/*.lua under the stock lua5.4
// interpreter and under moonbridge: they must print the same.
func TestStockLua(t *testing.T) {
	lua, err := exec.LookPath("lua5.4")
	if err != nil {
		t.Fatal("lua5.4 is needed to compare with stock Lua: run 'make deps'")
	}
	files, _ := filepath.Glob("../testdata/stock/*.lua")
	if len(files) == 0 {
		t.Fatal("no scripts in testdata/stock")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want, err := exec.Command(lua, file).CombinedOutput()
			if err != nil {
				t.Fatalf("lua5.4 %s: %v\n%s", file, err, want)
			}
			var out bytes.Buffer
			rt, err := bridge.New(bridge.Options{Stdout: &out, Stderr: &out})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			if err := rt.RunFile(context.Background(), file); err != nil {
				t.Fatalf("moonbridge: %v\n%s", err, out.String())
			}
			if out.String() != string(want) {
				t.Errorf("moonbridge differs from lua5.4\n--- moonbridge\n%s--- lua5.4\n%s", out.String(), want)
			}
		})
	}
}
