package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/moonbridge/moonbridge/bridge"
)

const handlerScript = `
local served = 0
function handle(who)
	served = served + 1
	return string.format("hello %s (%d)", who, served)
end
function peek() return secret end`

// The load-once-then-Call pattern, with and without the sandbox: the
// script keeps its globals between calls, and other runs neither see
// them nor change them.
func TestScriptKeepsItsGlobalsAndOnlyItsGlobals(t *testing.T) {
	for _, sandbox := range []bool{false, true} {
		t.Run(fmt.Sprintf("sandbox=%v", sandbox), func(t *testing.T) {
			out := &syncBuffer{}
			rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out, Sandbox: sandbox})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			ctx := context.Background()
			s, err := rt.Load(ctx, "handlers", handlerScript)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{"hello a (1)", "hello b (2)"} {
				vals, err := s.Call(ctx, "handle", string(rune('a'+i)))
				if err != nil || len(vals) != 1 || vals[0] != want {
					t.Fatalf("call %d: %v %v", i, vals, err)
				}
			}
			// Another run sees none of the script's globals, and what it
			// defines does not reach the script.
			mustRun(t, rt, `secret = "tenant"; print(type(handle), served)`)
			vals, err := s.Call(ctx, "peek")
			wantPeek := any(nil)
			if !sandbox {
				wantPeek = "tenant" // without the sandbox the global table is shared, and the script reads through to it
			}
			if err != nil || len(vals) != 1 || vals[0] != wantPeek {
				t.Errorf("peek: %v %v, want %v", vals, err, wantPeek)
			}
			if got := out.String(); got != "nil\tnil\n" {
				t.Errorf("the other run saw %q", got)
			}
			// A function of the Runtime's own globals is found too.
			if vals, err := s.Call(ctx, "tostring", 5); err != nil || vals[0] != "5" {
				t.Errorf("Call of a base function: %v %v", vals, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, err = s.Call(ctx, "handle", "x")
			if !errors.Is(err, bridge.ErrScriptClosed) || !errors.Is(err, bridge.ErrClosed) {
				t.Errorf("after Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// Under the sandbox Runtime.Call finds the functions of the last run that
// defined some (a host's RunString of its handlers, then Calls), else the
// Runtime's own globals, and says how to call a script's function when
// there is none.
func TestSandboxedCallFindsTheLastRunsFunctions(t *testing.T) {
	rt, err := bridge.New(bridge.Options{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx := context.Background()
	_, err = rt.Call(ctx, "handle")
	var le *bridge.LuaError
	if !errors.As(err, &le) || !strings.Contains(le.Message, "Runtime.Load") {
		t.Errorf("Call with no run yet: %v", err)
	}
	mustRun(t, rt, `local n = 0; function handle() n = n + 1; return n end`)
	mustRun(t, rt, `x = 1`) // a run that defines no function leaves them be
	for want := int64(1); want <= 2; want++ {
		if vals, err := rt.Call(ctx, "handle"); err != nil || vals[0] != want {
			t.Errorf("Call %d: %v %v", want, vals, err)
		}
	}
	mustRun(t, rt, `function other() return "o" end`)
	if vals, err := rt.Call(ctx, "other"); err != nil || vals[0] != "o" {
		t.Errorf("Call of the newest run's function: %v %v", vals, err)
	}
	if vals, err := rt.Call(ctx, "tostring", true); err != nil || vals[0] != "true" {
		t.Errorf("Call of a base function: %v %v", vals, err)
	}
}

// A chunk that fails to load gives its error and no Script.
func TestLoadFailureGivesTheError(t *testing.T) {
	rt, _ := newRuntime(t)
	ctx := context.Background()
	if _, err := rt.Load(ctx, "bad", "function ("); err == nil || !strings.Contains(err.Error(), "bad:1:") {
		t.Errorf("syntax error: %v", err)
	}
	if _, err := rt.Load(ctx, "boom", "x = 1; error('boom')"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("runtime error: %v", err)
	}
	s, err := rt.Load(ctx, "ok", "function f(a, b) return a + b end")
	if err != nil {
		t.Fatal(err)
	}
	if vals, err := s.Call(ctx, "f", 2, 3); err != nil || vals[0] != int64(5) {
		t.Errorf("%v %v", vals, err)
	}
	if _, err := s.Call(ctx, "missing"); err == nil || !strings.Contains(err.Error(), "'missing' is not a function") {
		t.Errorf("missing function: %v", err)
	}
}

// Pool.Load loads the script into every Runtime; calls spread over them,
// each Runtime keeping its own copy of the script's globals.
func TestPoolLoad(t *testing.T) {
	p, err := bridge.NewPool(2, bridge.Options{Sandbox: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	s, err := p.Load(ctx, "handlers", handlerScript)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]bool{}
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals, err := s.Call(ctx, "handle", fmt.Sprint(i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[vals[0].(string)] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Errorf("%d distinct answers for 40 calls", len(seen))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Call(ctx, "handle", "x"); !errors.Is(err, bridge.ErrScriptClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// A Go map with integer keys crosses as a Lua table with those keys (the
// program's arg, which counts from 0, crosses so).
func TestIntegerKeyedMapsCross(t *testing.T) {
	rt, out := newRuntime(t)
	ctx := context.Background()
	if err := rt.SetGlobal(ctx, "arg", map[int]any{0: "script.lua", 1: "a", 2: "b", -1: "lua"}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `print(arg[-1], arg[0], arg[1], arg[2], #arg, math.type(next({[0] = 1})))`)
	if got := out.String(); got != "lua\tscript.lua\ta\tb\t2\tinteger\n" {
		t.Errorf("got %q", got)
	}
}
