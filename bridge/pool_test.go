package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// held is a call parked in the Go function hold: where is the index of
// the Runtime it runs on; closing release lets it return.
type held struct {
	where   int64
	release chan struct{}
}

// holdPool makes a Pool of n Runtimes whose Lua global handle() calls the
// Go function hold with its Runtime's index; hold reports the call on
// arrived and waits to be released.
func holdPool(t *testing.T, n int) (*bridge.Pool, chan held) {
	t.Helper()
	arrived := make(chan held)
	next := 0
	p, err := bridge.NewPool(n, bridge.Options{}, func(rt *bridge.Runtime) error {
		index := next
		next++
		err := rt.RegisterFunc("hold", func(ctx context.Context, a bridge.Args) ([]any, error) {
			where, _ := a.Int(0)
			h := held{where: where, release: make(chan struct{})}
			arrived <- h
			select {
			case <-h.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return []any{where}, nil
		})
		if err != nil {
			return err
		}
		return rt.RunString(context.Background(), "setup", fmt.Sprintf("function handle() return hold(%d) end", index))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, arrived
}

// callAsync starts p.Call(handle) and returns the channel its outcome
// comes on.
func callAsync(p *bridge.Pool) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := p.Call(context.Background(), "handle")
		done <- err
	}()
	return done
}

func TestPoolSendsEachCallToTheLeastLoadedRuntime(t *testing.T) {
	p, arrived := holdPool(t, 3)
	if p.Len() != 3 {
		t.Fatalf("Len() = %d", p.Len())
	}
	// Calls started one after another, each parked before the next starts:
	// the loads are exact, so the first three take one Runtime each, and
	// so do the next three.
	var hs []held
	var dones []chan error
	for round := range 2 {
		seen := map[int64]bool{}
		for range 3 {
			dones = append(dones, callAsync(p))
			h := <-arrived
			if seen[h.where] {
				t.Fatalf("round %d: a second call on Runtime %d while another is idle or less loaded", round, h.where)
			}
			seen[h.where] = true
			hs = append(hs, h)
		}
	}
	// Runtime 1 finishes one of its two calls: it is the least loaded now.
	var on1 int
	for i, h := range hs {
		if h.where == 1 {
			on1 = i
			break
		}
	}
	close(hs[on1].release)
	if err := <-dones[on1]; err != nil {
		t.Fatal(err)
	}
	dones = append(dones, callAsync(p))
	h := <-arrived
	if h.where != 1 {
		t.Errorf("after Runtime 1 finished a call, the next went to Runtime %d", h.where)
	}
	hs = append(hs, h)
	for i, h := range hs {
		if i != on1 {
			close(h.release)
		}
	}
	for i, d := range dones {
		if i != on1 {
			if err := <-d; err != nil {
				t.Error(err)
			}
		}
	}
}

func TestPoolTakesIdleRuntimesInTurn(t *testing.T) {
	p, arrived := holdPool(t, 3)
	count := map[int64]int{}
	for range 9 {
		done := callAsync(p)
		h := <-arrived
		close(h.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		count[h.where]++
	}
	for i := range int64(3) {
		if count[i] != 3 {
			t.Errorf("9 sequential calls over 3 idle Runtimes: %v, want 3 each", count)
			break
		}
	}
}

func TestPoolRuntimesShareNoLuaState(t *testing.T) {
	var mu sync.Mutex
	var shared []string // state shared through Go
	p, err := bridge.NewPool(2, bridge.Options{}, func(rt *bridge.Runtime) error {
		if err := rt.RegisterFunc("remember", func(ctx context.Context, a bridge.Args) ([]any, error) {
			s, err := a.String(0)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			shared = append(shared, s)
			return []any{int64(len(shared))}, nil
		}); err != nil {
			return err
		}
		return rt.RunString(context.Background(), "setup", `
function set(v) x = v; return remember(v) end
function get() return x end`)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	// Idle Runtimes are taken in turn: set lands on one, get on the other.
	if out, err := p.Call(ctx, "set", "a"); err != nil || out[0] != int64(1) {
		t.Fatalf("set: %v, %v", out, err)
	}
	out, err := p.Call(ctx, "get")
	if err != nil || len(out) != 1 || out[0] != nil {
		t.Errorf("the other Runtime sees x = %v (%v), want nil", out, err)
	}
	out, err = p.Call(ctx, "get")
	if err != nil || out[0] != "a" {
		t.Errorf("the first Runtime's x = %v (%v), want a", out, err)
	}
	if out, err := p.Call(ctx, "set", "b"); err != nil || out[0] != int64(2) {
		t.Errorf("the shared Go state: %v, %v, want 2", out, err)
	}
}

func TestPoolRunStringRunFileAndCallFromManyGoroutines(t *testing.T) {
	var calls atomic.Int64
	out := &syncBuffer{}
	p, err := bridge.NewPool(0, bridge.Options{Stdout: out}, func(rt *bridge.Runtime) error {
		if err := rt.RegisterFunc("double", func(ctx context.Context, a bridge.Args) ([]any, error) {
			calls.Add(1)
			x, err := a.Int(0)
			return []any{2 * x}, err
		}); err != nil {
			return err
		}
		return rt.RunString(context.Background(), "setup", `
local task = require("task")
function work(n)
  local ts = {}
  for i = 1, n do ts[i] = task.spawn(double, i) end
  local sum = 0
  for i = 1, n do sum = sum + ts[i]:wait() end
  return sum
end`)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Len() != runtime.GOMAXPROCS(0) {
		t.Errorf("NewPool(0) made %d Runtimes, GOMAXPROCS is %d", p.Len(), runtime.GOMAXPROCS(0))
	}
	path := filepath.Join(t.TempDir(), "f.lua")
	if err := os.WriteFile(path, []byte("local a, b = ...\nprint('file', a + b)"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for g := range 100 {
		wg.Go(func() {
			n := g%10 + 1
			out, err := p.Call(ctx, "work", n)
			if err != nil {
				errs <- err
			} else if out[0] != int64(n*(n+1)) {
				errs <- fmt.Errorf("work(%d) = %v", n, out[0])
			}
			if err := p.RunString(ctx, "chunk", "print('string', ...)", g); err != nil {
				errs <- err
			}
			if err := p.RunFile(ctx, path, g, 1); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if want := int64(10 * (1 + 10) * 10 / 2); calls.Load() != want {
		t.Errorf("%d calls of double, want %d", calls.Load(), want)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	files, strs := 0, 0
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "file\t"):
			files++
		case strings.HasPrefix(l, "string\t"):
			strs++
		}
	}
	if files != 100 || strs != 100 || len(lines) != 200 {
		t.Errorf("output: %d file lines, %d string lines, %d in all", files, strs, len(lines))
	}
}

func TestPoolSetupFailureClosesWhatWasCreated(t *testing.T) {
	base := runtime.NumGoroutine()
	var made []*bridge.Runtime
	boom := errors.New("boom")
	_, err := bridge.NewPool(4, bridge.Options{}, func(rt *bridge.Runtime) error {
		made = append(made, rt)
		if len(made) == 3 {
			return boom
		}
		return rt.RunString(context.Background(), "setup", "function f() return 1 end")
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "Runtime 2 of 4") {
		t.Fatalf("err = %v, want boom naming Runtime 2", err)
	}
	if len(made) != 3 {
		t.Fatalf("setup ran %d times", len(made))
	}
	for i, rt := range made {
		if _, err := rt.Call(context.Background(), "f"); !errors.Is(err, bridge.ErrClosed) {
			t.Errorf("Runtime %d after the failed NewPool: %v, want ErrClosed", i, err)
		}
	}
	_, err = bridge.NewPool(2, bridge.Options{}, func(rt *bridge.Runtime) error { panic("in setup") })
	if err == nil || !strings.Contains(err.Error(), "Runtime 0 of 2: panic: in setup") {
		t.Errorf("panicking setup: %v", err)
	}
	_, err = bridge.NewPool(2, bridge.Options{SandboxDirs: []string{"/no/such/dir"}, Sandbox: true}, nil)
	if err == nil || !strings.Contains(err.Error(), "creating Runtime 0 of 2") {
		t.Errorf("failing New: %v", err)
	}
	if _, err := bridge.NewPool(-1, bridge.Options{}, nil); err == nil {
		t.Error("NewPool(-1) succeeded")
	}
	checkGoroutines(t, base)
}

func TestPoolCloseIsIdempotentAndJoinsErrors(t *testing.T) {
	base := runtime.NumGoroutine()
	stuck := make(chan struct{})
	entered := make(chan struct{})
	next := 0
	p, err := bridge.NewPool(3, bridge.Options{CloseGrace: time.Millisecond}, func(rt *bridge.Runtime) error {
		index := next
		next++
		if err := rt.RegisterFunc("stubborn", func(ctx context.Context, a bridge.Args) ([]any, error) {
			close(entered)
			<-stuck // ignores its context: Close gives up on it after the grace
			return nil, nil
		}); err != nil {
			return err
		}
		return rt.RunString(context.Background(), "setup", fmt.Sprintf("index = %d", index))
	})
	if err != nil {
		t.Fatal(err)
	}
	// A run on one Runtime waits in stubborn, a Go call that Runtime's
	// Close must wait for.
	done := make(chan error, 1)
	go func() { done <- p.RunString(context.Background(), "stuck", "stubborn()") }()
	<-entered
	err = p.Close()
	if err == nil || strings.Count(err.Error(), "Runtime ") != 1 || !strings.Contains(err.Error(), "bridge functions had not returned") {
		t.Errorf("Close: %v, want one Runtime's error", err)
	}
	if err2 := p.Close(); err2 != err {
		t.Errorf("second Close: %v, want the first's %v", err2, err)
	}
	if _, err := p.Call(context.Background(), "f"); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("Call after Close: %v", err)
	}
	if err := p.RunString(context.Background(), "x", ""); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("RunString after Close: %v", err)
	}
	// The run's goroutine may be the one running stubborn (a Runtime runs
	// a lone call on the caller's goroutine): it returns once stubborn does.
	close(stuck)
	if err := <-done; !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("the run in flight ended with %v, want ErrClosed", err)
	}
	checkGoroutines(t, base)
}

// Many goroutines call through a small Pool while it closes: every call
// returns, with its result or ErrClosed, and nothing is left behind.
func TestPoolCloseWhileCalling(t *testing.T) {
	base := runtime.NumGoroutine()
	p, err := bridge.NewPool(2, bridge.Options{}, func(rt *bridge.Runtime) error {
		return rt.RunString(context.Background(), "setup", "function id(x) require('task').yield(); return x end")
	})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var wg sync.WaitGroup
	var ok, closed atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if g == 0 && i == 10 {
					close(started)
				}
				out, err := p.Call(context.Background(), "id", i)
				switch {
				case errors.Is(err, bridge.ErrClosed):
					closed.Add(1)
					return
				case err != nil:
					t.Errorf("Call: %v", err)
					return
				case out[0] != int64(i):
					t.Errorf("id(%d) = %v", i, out[0])
					return
				}
				ok.Add(1)
			}
		})
	}
	<-started
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	wg.Wait()
	if closed.Load() != 16 || ok.Load() < 10 {
		t.Errorf("%d calls ended with ErrClosed (want 16), %d succeeded", closed.Load(), ok.Load())
	}
	checkGoroutines(t, base)
}

// A Pool of two Runtimes serving one Lua handler. The Runtimes share no
// Lua state, so the count of requests lives in Go, in a function every
// Runtime registers.
func ExampleNewPool() {
	var served atomic.Int64
	p, err := bridge.NewPool(2, bridge.Options{}, func(rt *bridge.Runtime) error {
		err := rt.RegisterFunc("next_request", func(ctx context.Context, a bridge.Args) ([]any, error) {
			return []any{served.Add(1)}, nil
		}, bridge.Inline())
		if err != nil {
			return err
		}
		return rt.RunString(context.Background(), "handlers", `
function greet(name)
  local n = next_request()   -- read once, before anything else can run
  return string.format("hello, %s (request %d)", name, n)
end`)
	})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	var wg sync.WaitGroup
	replies := make([]string, 3)
	for i, name := range []string{"ada", "grace", "barbara"} {
		wg.Go(func() {
			out, err := p.Call(context.Background(), "greet", name)
			if err != nil {
				panic(err)
			}
			replies[i] = out[0].(string)
		})
	}
	wg.Wait()
	for _, r := range replies {
		fmt.Println(strings.Split(r, " (")[0])
	}
	fmt.Println(served.Load(), "requests")
	// Output:
	// hello, ada
	// hello, grace
	// hello, barbara
	// 3 requests
}

func TestWithInstructionLimitGivesARunItsOwnBudget(t *testing.T) {
	p, err := bridge.NewPool(2, bridge.Options{InstructionLimit: 50_000}, func(rt *bridge.Runtime) error {
		return rt.RunString(context.Background(), "setup", "function spin(n) local x = 0; for i = 1, n do x = x + i end; return x end")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	const loop = "local x = 0; for i = 1, ... do x = x + i end"
	// The Runtimes' own limit.
	if err := p.RunString(ctx, "long", loop, 1_000_000); !errors.Is(err, bridge.ErrInstructionLimit) {
		t.Errorf("over Options.InstructionLimit: %v", err)
	}
	// Raised for one run, lifted for another, lowered for a third.
	if err := p.RunString(bridge.WithInstructionLimit(ctx, 100_000_000), "long", loop, 1_000_000); err != nil {
		t.Errorf("with a larger per-run limit: %v", err)
	}
	if out, err := p.Call(bridge.WithInstructionLimit(ctx, 0), "spin", 1_000_000); err != nil || out[0] != int64(500000500000) {
		t.Errorf("with no per-run limit: %v, %v", out, err)
	}
	if _, err := p.Call(bridge.WithInstructionLimit(ctx, 5_000), "spin", 10_000); !errors.Is(err, bridge.ErrInstructionLimit) {
		t.Errorf("with a smaller per-run limit: %v", err)
	}
	// Runs without the override keep the Runtime's limit.
	if out, err := p.Call(ctx, "spin", 10_000); err != nil || out[0] != int64(50005000) {
		t.Errorf("under Options.InstructionLimit: %v, %v", out, err)
	}
}
