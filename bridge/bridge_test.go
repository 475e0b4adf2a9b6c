package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// syncBuffer is a bytes.Buffer a test may read while the runtime writes.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // closed and replaced at each write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

// waitFor waits until what was written contains s, woken by each write;
// false if that has not happened within limit (a failure, not a timing).
func (b *syncBuffer) waitFor(s string, limit time.Duration) bool {
	give := time.After(limit)
	for {
		b.mu.Lock()
		if strings.Contains(b.buf.String(), s) {
			b.mu.Unlock()
			return true
		}
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		select {
		case <-written:
		case <-give:
			return false
		}
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

func newRuntime(t testing.TB) (*bridge.Runtime, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, out
}

func run(t testing.TB, rt *bridge.Runtime, src string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rt.RunString(ctx, "test", src)
}

func mustRun(t testing.TB, rt *bridge.Runtime, src string) {
	t.Helper()
	if err := run(t, rt, src); err != nil {
		var le *bridge.LuaError
		if errors.As(err, &le) {
			t.Fatalf("%v\n%s", err, le.Traceback)
		}
		t.Fatal(err)
	}
}

// goroutines waits for the goroutine count to settle back to at most n.
func checkGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUncaughtErrorIsLuaErrorWithTraceback(t *testing.T) {
	rt, _ := newRuntime(t)
	err := run(t, rt, "local function f() error('boom') end\nf()")
	var le *bridge.LuaError
	if !errors.As(err, &le) {
		t.Fatalf("want *LuaError, got %T %v", err, err)
	}
	if le.Message != "test:1: boom" || le.Kind != "runtime" {
		t.Errorf("message %q kind %q", le.Message, le.Kind)
	}
	for _, want := range []string{"in task 'test'", "stack traceback:", "in local 'f'", "test:2: in main chunk"} {
		if !strings.Contains(le.Traceback, want) {
			t.Errorf("traceback lacks %q:\n%s", want, le.Traceback)
		}
	}
	// The runtime keeps serving runs.
	mustRun(t, rt, "assert(1 + 1 == 2)")
}

func TestErrorCrossingAwaitKeepsEveryHop(t *testing.T) {
	rt, _ := newRuntime(t)
	err := run(t, rt, `
local task = require("task")
local function inner() error("deep") end
local t = task.spawn(function() inner() end)
local function waiter() return t:wait() end
waiter()`)
	var le *bridge.LuaError
	if !errors.As(err, &le) {
		t.Fatalf("want *LuaError, got %v", err)
	}
	if !strings.Contains(le.Message, "deep") {
		t.Errorf("message %q", le.Message)
	}
	first := strings.Index(le.Traceback, "in upvalue 'inner'")
	second := strings.Index(le.Traceback, "in local 'waiter'")
	if first < 0 || second < 0 || first > second {
		t.Errorf("traceback should show the failing task, then the awaiting one:\n%s", le.Traceback)
	}
}

// A cancellation's traceback (built without luaL_traceback's search of
// package.loaded, since races and timeouts cancel as a matter of course)
// shows where the task was, and elides the middle of a deep stack the way
// luaL_traceback does: ten frames, a count of the skipped ones, eleven.
func TestCancellationTraceback(t *testing.T) {
	rt, out := newRuntime(t)
	mustRun(t, rt, `
local task = require("task")
local function deep(n) if n == 0 then task.sleep(10) else deep(n - 1) end return n end
local shallow = task.spawn(function() task.sleep(10) end)
local nested = task.spawn(function() deep(30) end)
task.yield()
shallow:cancel()
nested:cancel()
local _, e1 = pcall(shallow.wait, shallow)
local _, e2 = pcall(nested.wait, nested)
print(e1.kind, e2.kind)
print(e1.traceback)
print(e2.traceback)`)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	want := []string{
		"cancelled\tcancelled",
		"in task #1",
		"stack traceback:",
		"\t[C]: in field 'sleep'",
		"\ttest:4: in function <test:4>",
		"\t[C]: in ?",
		"in task #2",
		"stack traceback:",
		"\t[C]: in field 'sleep'",
	}
	// sleep, 31 frames of deep, the task's function and the C frame under
	// it: 34, of which 21 are shown.
	for range 9 {
		want = append(want, "\ttest:3: in upvalue 'deep'")
	}
	want = append(want, "\t...\t(skipping 13 levels)")
	for range 9 {
		want = append(want, "\ttest:3: in upvalue 'deep'")
	}
	want = append(want, "\ttest:5: in function <test:5>", "\t[C]: in ?")
	if !slices.Equal(lines, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// RunString and RunFile pass their args to the chunk as "...", and an
// argument that cannot cross is an error naming it, before anything runs.
func TestChunkArguments(t *testing.T) {
	rt, out := newRuntime(t)
	ctx := context.Background()
	if err := rt.RunString(ctx, "args", `print(select("#", ...), ...) local _, _, t = ... print(t.k)`, "a", 2, map[string]any{"k": true}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f.lua")
	if err := os.WriteFile(path, []byte("#!/usr/bin/env moonbridge\nprint(...)"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rt.RunFile(ctx, path, 1.5, "z"); err != nil {
		t.Fatal(err)
	}
	if err := rt.RunString(ctx, "none", `print(select("#", ...))`); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "3\ta\t2\ttable: "; !strings.HasPrefix(got, want) {
		t.Fatalf("got %q, want it to start %q", got, want)
	}
	if got, want := out.String()[strings.Index(out.String(), "\n")+1:], "true\n1.5\tz\n0\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	err := rt.RunString(ctx, "bad", `error("must not run")`, "ok", make(chan int))
	if err == nil || !strings.Contains(err.Error(), "the arguments of bad") || !strings.Contains(err.Error(), "#2") {
		t.Errorf("an argument that cannot cross: %v", err)
	}
}

func TestSyntaxError(t *testing.T) {
	rt, _ := newRuntime(t)
	err := run(t, rt, "local = 1")
	var le *bridge.LuaError
	if !errors.As(err, &le) || !strings.Contains(le.Message, "test:1:") {
		t.Fatalf("want a syntax error naming the chunk, got %v", err)
	}
}

func TestGoErrorAndPanicBecomeLuaErrors(t *testing.T) {
	rt, _ := newRuntime(t)
	rt.RegisterFunc("fails", func(ctx context.Context, a bridge.Args) ([]any, error) {
		return nil, fmt.Errorf("lookup %q: %w", "k", os.ErrNotExist)
	})
	rt.RegisterFunc("panics", func(ctx context.Context, a bridge.Args) ([]any, error) {
		var m map[string]int
		m["x"] = 1 // a real runtime panic
		return nil, nil
	})
	rt.RegisterFunc("panics_inline", func(ctx context.Context, a bridge.Args) ([]any, error) {
		panic("inline boom")
	}, bridge.Inline())
	err := run(t, rt, "fails()")
	var le *bridge.LuaError
	if !errors.As(err, &le) || le.Kind != "bridge" || le.Op != "fails" ||
		le.Message != `fails: lookup "k": file does not exist` {
		t.Fatalf("got %#v", err)
	}
	for _, fn := range []string{"panics", "panics_inline"} {
		err = run(t, rt, fn+"()")
		if !errors.As(err, &le) || le.Kind != "bridge" || !strings.Contains(le.Message, fn+": panic: ") {
			t.Fatalf("%s: got %v", fn, err)
		}
	}
	mustRun(t, rt, `
local ok, e = pcall(panics)
assert(not ok and e.kind == "bridge" and e.message:find("assignment to entry in nil map"), tostring(e))`)
}

func TestInlineRunsWithoutGoroutine(t *testing.T) {
	rt, out := newRuntime(t)
	var calls atomic.Int64
	rt.RegisterFunc("lookup", func(ctx context.Context, a bridge.Args) ([]any, error) {
		calls.Add(1)
		k, err := a.String(0)
		return []any{strings.ToUpper(k)}, err
	}, bridge.Inline())
	mustRun(t, rt, `
local t = {}
for i = 1, 1000 do t[i] = lookup("k" .. i) end
-- inline functions work where Lua cannot yield
local list = {"b", "a", "c"}
table.sort(list, function(x, y) return lookup(x) < lookup(y) end)
print(t[1000], table.concat(list))`)
	if got := out.String(); got != "K1000\tabc\n" {
		t.Errorf("output %q", got)
	}
	if calls.Load() < 1000 {
		t.Errorf("calls %d", calls.Load())
	}
}

func TestCallFromManyGoroutinesDuringRun(t *testing.T) {
	rt, _ := newRuntime(t)
	rt.RegisterFunc("double", func(ctx context.Context, a bridge.Args) ([]any, error) {
		n, err := a.Int(0)
		return []any{n * 2}, err
	})
	mustRun(t, rt, `function handler(n, s) return double(n), s .. "!" end`)
	// A run in progress while the calls come in.
	release := make(chan struct{})
	rt.RegisterFunc("wait_release", func(ctx context.Context, a bridge.Args) ([]any, error) {
		<-release
		return nil, nil
	})
	runErr := make(chan error, 1)
	go func() { runErr <- run(t, rt, "wait_release()") }()

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 100; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				out, err := rt.Call(context.Background(), "handler", g*100+i, "x")
				if err != nil {
					errs <- err
					return
				}
				if len(out) != 2 || out[0] != int64(2*(g*100+i)) || out[1] != "x!" {
					errs <- fmt.Errorf("goroutine %d call %d: got %v", g, i, out)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(release)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

func TestCallErrors(t *testing.T) {
	rt, _ := newRuntime(t)
	_, err := rt.Call(context.Background(), "missing")
	if err == nil || !strings.Contains(err.Error(), "global 'missing' is not a function (a nil value)") {
		t.Fatalf("got %v", err)
	}
	mustRun(t, rt, `function bad() return print end; function boom() error("x") end`)
	if _, err = rt.Call(context.Background(), "bad"); err == nil || !strings.Contains(err.Error(), "cannot send a function to Go") {
		t.Fatalf("got %v", err)
	}
	var le *bridge.LuaError
	if _, err = rt.Call(context.Background(), "boom"); !errors.As(err, &le) || !strings.Contains(le.Message, ": x") {
		t.Fatalf("got %v", err)
	}
	if _, err = rt.Call(context.Background(), "boom", make(chan int)); err == nil || !strings.Contains(err.Error(), "chan") {
		t.Fatalf("got %v", err)
	}
}

func TestValuesThroughCall(t *testing.T) {
	rt, _ := newRuntime(t)
	mustRun(t, rt, `function id(...) return ... end`)
	type inner struct {
		X int `lua:"x"`
	}
	type rec struct {
		Name  string         `lua:"name"`
		List  []inner        `lua:"list"`
		Attrs map[string]int `lua:"attrs"`
		Skip  bool           `lua:"-"`
	}
	in := []any{nil, true, int64(-7), 2.5, "a\x00b", []any{int64(1), "two"}, map[string]any{"k": []any{}},
		rec{Name: "n", List: []inner{{1}, {2}}, Attrs: map[string]int{"a": 1}}}
	out, err := rt.Call(context.Background(), "id", in...)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]any{nil, true, int64(-7), 2.5, "a\x00b", []any{int64(1), "two"}, map[string]any{"k": map[string]any{}},
		map[string]any{"name": "n", "list": []any{map[string]any{"x": int64(1)}, map[string]any{"x": int64(2)}}, "attrs": map[string]any{"a": int64(1)}}})
	if fmt.Sprint(out) != want {
		t.Errorf("got  %v\nwant %s", out, want)
	}
}

func TestArgsDecode(t *testing.T) {
	rt, _ := newRuntime(t)
	type opts struct {
		Model     string   `lua:"model"`
		MaxTokens int      `lua:"max_tokens"`
		Stop      []string `lua:"stop"`
	}
	got := make(chan opts, 1)
	rt.RegisterFunc("configure", func(ctx context.Context, a bridge.Args) ([]any, error) {
		var o opts
		if err := a.Decode(0, &o); err != nil {
			return nil, err
		}
		got <- o
		return nil, nil
	})
	mustRun(t, rt, `configure({model = "m", max_tokens = 64, stop = {"\n"}})`)
	if o := <-got; o.Model != "m" || o.MaxTokens != 64 || len(o.Stop) != 1 {
		t.Errorf("decoded %+v", o)
	}
	err := run(t, rt, `configure({max_tokens = "lots"})`)
	if err == nil || !strings.Contains(err.Error(), "configure: bad argument #1") || !strings.Contains(err.Error(), "max_tokens") {
		t.Fatalf("got %v", err)
	}
}

func TestRunContextCancellation(t *testing.T) {
	rt, _ := newRuntime(t)
	started := make(chan struct{})
	sawCancel := make(chan error, 1)
	rt.RegisterFunc("block", func(ctx context.Context, a bridge.Args) ([]any, error) {
		close(started)
		<-ctx.Done()
		sawCancel <- ctx.Err()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- rt.RunString(ctx, "cancel", `
local task = require("task")
task.spawn(function() task.sleep(60) end)
block()`)
	}()
	<-started
	cancel()
	err := <-done
	if !errors.Is(err, bridge.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancelled, got %v", err)
	}
	if e := <-sawCancel; !errors.Is(e, context.Canceled) {
		t.Errorf("bridge ctx: %v", e)
	}
	// The runtime is still usable.
	mustRun(t, rt, "assert(true)")
}

func TestRunDeadline(t *testing.T) {
	rt, _ := newRuntime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := rt.RunString(ctx, "slow", `require("task").sleep(30)`)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}

func TestCloseCancelsInFlightAndIsIdempotent(t *testing.T) {
	before := runtime.NumGoroutine()
	rt, err := bridge.New(bridge.Options{Stdout: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	var started sync.WaitGroup
	started.Add(50)
	var cancelled atomic.Int64
	rt.RegisterFunc("block", func(ctx context.Context, a bridge.Args) ([]any, error) {
		started.Done()
		<-ctx.Done()
		cancelled.Add(1)
		return nil, ctx.Err()
	})
	done := make(chan error, 1)
	go func() {
		done <- rt.RunString(context.Background(), "close", `
local task = require("task")
for i = 1, 50 do task.spawn(block) end`)
	}()
	started.Wait()
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, bridge.ErrClosed) {
		t.Fatalf("run: want ErrClosed, got %v", err)
	}
	if cancelled.Load() != 50 {
		t.Errorf("cancelled %d of 50 contexts", cancelled.Load())
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt.RunString(context.Background(), "after", "print(1)"); !errors.Is(err, bridge.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if _, err := rt.Call(context.Background(), "print"); !errors.Is(err, bridge.ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
	checkGoroutines(t, before)
}

// Bridge functions that ignore cancellation complete after their tasks are
// gone: 2,000 calls and a stream, released only once their run was
// cancelled. The results are dropped, nothing crashes, the Runtime serves
// on, and every dropped completion is freed: after Close the C heap is back
// where it was before New (one record kept per completion would be
// hundreds of KiB), with no Lua byte or handle left.
func TestLateCompletionsAreHarmless(t *testing.T) {
	if !exactHeap(t) {
		return
	}
	warmUp(t)
	before := measureLeftBehind()
	rt, err := bridge.New(bridge.Options{Stdout: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	const calls = 2000
	var entered atomic.Int32
	allIn := make(chan struct{})
	enter := func() {
		if entered.Add(1) == calls+1 {
			close(allIn)
		}
	}
	release := make(chan struct{})
	var returned sync.WaitGroup
	returned.Add(calls + 1)
	rt.RegisterFunc("stubborn", func(ctx context.Context, a bridge.Args) ([]any, error) {
		defer returned.Done()
		enter()
		<-release // ignores ctx on purpose
		return []any{"late", []any{1, 2, 3}}, nil
	})
	var emitErrs atomic.Int32
	rt.RegisterStream("stubborn_stream", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		defer returned.Done()
		enter()
		<-release
		for i := 0; i < 200; i++ {
			if emit(i) != nil {
				emitErrs.Add(1)
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- rt.RunString(ctx, "late", fmt.Sprintf(`
local task = require("task")
task.spawn(function() for _ in stubborn_stream() do end end)
for i = 1, %d do task.spawn(stubborn) end
stubborn()`, calls-1))
	}()
	<-allIn // every call and the stream are in Go
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	close(release) // every completion now arrives for a task that is gone
	returned.Wait()
	if n := emitErrs.Load(); n != 200 {
		t.Errorf("%d of the stream's 200 late emits failed; each must report that Lua is gone", n)
	}
	mustRun(t, rt, "assert(1)")
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	before.checkNothingLeft(t, true)
}

func TestManyConcurrentCompletions(t *testing.T) {
	rt, out := newRuntime(t)
	rt.RegisterFunc("jitter", func(ctx context.Context, a bridge.Args) ([]any, error) {
		n, _ := a.Int(0)
		time.Sleep(time.Duration(rand.Intn(2000)) * time.Microsecond)
		return []any{n, strings.Repeat("x", int(n%17))}, nil
	})
	mustRun(t, rt, `
local task = require("task")
local ts = {}
for i = 1, 500 do
  ts[i] = task.spawn(function()
    local total = 0
    for j = 1, 4 do
      local n, s = jitter(i * 10 + j)
      assert(n == i * 10 + j and #s == n % 17)
      total = total + n
    end
    return total
  end)
end
local sum = 0
for i = 1, 500 do sum = sum + ts[i]:wait() end
print(sum)`)
	want := 0
	for i := 1; i <= 500; i++ {
		for j := 1; j <= 4; j++ {
			want += i*10 + j
		}
	}
	if got := strings.TrimSpace(out.String()); got != fmt.Sprint(want) {
		t.Errorf("sum %s, want %d", got, want)
	}
}

func TestStreamBackpressure(t *testing.T) {
	rt, _ := newRuntime(t)
	var emitted, consumed atomic.Int64
	var maxAhead atomic.Int64
	rt.RegisterStream("numbers", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		for i := 0; i < 2000; i++ {
			if err := emit(i); err != nil {
				return err
			}
			ahead := emitted.Add(1) - consumed.Load()
			for {
				m := maxAhead.Load()
				if ahead <= m || maxAhead.CompareAndSwap(m, ahead) {
					break
				}
			}
		}
		return nil
	})
	rt.RegisterFunc("took", func(ctx context.Context, a bridge.Args) ([]any, error) {
		consumed.Add(1)
		return nil, nil
	}, bridge.Inline())
	mustRun(t, rt, `
local task = require("task")
local n = 0
for v in numbers() do
  assert(v == n); n = n + 1; took()
  if n % 100 == 0 then task.sleep(0.001) end -- a slow consumer
end
assert(n == 2000)`)
	// The window is 256 chunks (MB_STREAM_WINDOW); one more may be in
	// flight at the moment of counting.
	if m := maxAhead.Load(); m > 258 {
		t.Errorf("Go ran %d chunks ahead of Lua; backpressure should hold it near 256", m)
	}
}

func TestStreamEarlyExitCancelsContext(t *testing.T) {
	rt, _ := newRuntime(t)
	cancelled := make(chan error, 1)
	rt.RegisterStream("forever", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		for i := 0; ; i++ {
			if err := emit(i); err != nil {
				cancelled <- err
				return err
			}
		}
	})
	mustRun(t, rt, `for v in forever() do if v == 10 then break end end`)
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("emit returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("leaving the loop did not cancel the stream")
	}
	// An error inside the loop cancels too.
	err := run(t, rt, `for v in forever() do if v == 3 then error("stop") end end`)
	if err == nil || !strings.Contains(err.Error(), "stop") {
		t.Fatalf("got %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("an error in the loop did not cancel the stream")
	}
}

func TestEmitRules(t *testing.T) {
	rt, _ := newRuntime(t)
	var late func(any) error
	rt.RegisterStream("rules", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		late = emit
		if err := emit(nil); err == nil || !strings.Contains(err.Error(), "nil") {
			return fmt.Errorf("emit(nil) gave %v", err)
		}
		if err := emit(make(chan int)); err == nil {
			return errors.New("emit(chan) succeeded")
		}
		return emit("ok")
	})
	mustRun(t, rt, `for v in rules() do assert(v == "ok") end`)
	if err := late("after"); err == nil {
		t.Error("emit after return succeeded")
	}
}

func TestDeadlockIsReported(t *testing.T) {
	rt, _ := newRuntime(t)
	err := run(t, rt, `
local task = require("task")
local a, b
a = task.spawn(function() task.yield(); b:wait() end)
b = task.spawn(function() task.yield(); a:wait() end)
a:wait()`)
	if !errors.Is(err, bridge.ErrDeadlock) {
		t.Fatalf("want deadlock, got %v", err)
	}
	for _, want := range []string{"deadlock", "test:4", "test:5", "waits for another task"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("deadlock report lacks %q:\n%s", want, err)
		}
	}
	mustRun(t, rt, "assert(true)")
}

func TestUnawaitedTaskErrorFailsRun(t *testing.T) {
	rt, _ := newRuntime(t)
	err := run(t, rt, `
local task = require("task")
task.spawn(function() error("nobody waits for me") end)
task.sleep(0.01)`)
	if err == nil || !strings.Contains(err.Error(), "nobody waits for me") {
		t.Fatalf("got %v", err)
	}
	// An awaited failure that is handled does not fail the run.
	mustRun(t, rt, `
local task = require("task")
local t = task.spawn(function() error("handled") end)
local ok, e = pcall(t.wait, t)
assert(not ok and e:find("handled"))
assert(t:status() == "failed")`)
}

func TestRunFileAndSetGlobal(t *testing.T) {
	rt, out := newRuntime(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "script.lua")
	os.WriteFile(path, []byte("#!/usr/bin/env moonbridge\nprint(greeting .. ' ' .. #list)\nerror('at line 3')\n"), 0o644)
	if err := rt.SetGlobal(context.Background(), "greeting", "hi"); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetGlobal(context.Background(), "list", []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	err := rt.RunFile(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "script.lua:3: at line 3") {
		t.Fatalf("got %v", err)
	}
	if out.String() != "hi 3\n" {
		t.Errorf("output %q", out.String())
	}
	if err := rt.RunFile(context.Background(), filepath.Join(dir, "missing.lua")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestRegisterValidation(t *testing.T) {
	rt, _ := newRuntime(t)
	for _, name := range []string{"", ".x", "x."} {
		if err := rt.RegisterFunc(name, func(context.Context, bridge.Args) ([]any, error) { return nil, nil }); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if err := rt.RegisterFunc("x", nil); err == nil {
		t.Error("nil function accepted")
	}
	// Nested module names and re-registration.
	rt.RegisterFunc("a.b.c", func(context.Context, bridge.Args) ([]any, error) { return []any{1}, nil })
	rt.RegisterFunc("a.b.c", func(context.Context, bridge.Args) ([]any, error) { return []any{2}, nil })
	mustRun(t, rt, `assert(require("a.b").c() == 2)`)
}

func TestSleepAndYieldOrder(t *testing.T) {
	rt, out := newRuntime(t)
	mustRun(t, rt, `
local task = require("task")
local log = {}
local a = task.spawn(function() for i = 1, 3 do log[#log+1] = "a" .. i; task.yield() end end)
local b = task.spawn(function() for i = 1, 3 do log[#log+1] = "b" .. i; task.yield() end end)
a:wait(); b:wait()
print(table.concat(log, " "))
local order, sleepers = {}, {}
for _, d in ipairs({0.03, 0.01, 0.02}) do
  sleepers[#sleepers + 1] = task.spawn(function() task.sleep(d); order[#order+1] = d end)
end
for _, s in ipairs(sleepers) do s:wait() end
print(table.concat(order, " "))
print(pcall(task.sleep, -1))`)
	want := "a1 b1 a2 b2 a3 b3\n0.01 0.02 0.03\nfalse\tbad argument #1 to 'task.sleep' (duration must be a non-negative number)\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// A lone call may run on the loop's own driving goroutine; while it blocks,
// the loop must keep serving: here a Call from Go and another task's timer
// complete while the first call is still blocked.
func TestLoopServesWhileALoneCallBlocks(t *testing.T) {
	rt, out := newRuntime(t)
	release, entered := make(chan struct{}), make(chan struct{})
	rt.RegisterFunc("block", func(ctx context.Context, a bridge.Args) ([]any, error) {
		close(entered)
		select {
		case <-release:
			return []any{"released"}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	mustRun(t, rt, `function ping(x) return x + 1 end`)
	done := make(chan error, 1)
	go func() { done <- run(t, rt, `print(block())`) }()
	<-entered // block() is now the only thing the loop waits for
	for i := 0; i < 50; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := rt.Call(ctx, "ping", i)
		cancel()
		if err != nil || res[0] != int64(i+1) {
			t.Fatalf("Call while a call blocks: %v %v", res, err)
		}
	}
	if err := run(t, rt, `require("task").sleep(0.01); print("timer fired")`); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "timer fired\nreleased\n" {
		t.Errorf("output %q", got)
	}
}

// No failure is lost: the first unawaited failure fails the run, further
// ones, and those of tasks a finished Call left running, go to Stderr.
func TestUnawaitedFailuresAreReported(t *testing.T) {
	rt, out := newRuntime(t)
	err := run(t, rt, `
local task = require("task")
task.spawn(function() error("first") end)
task.spawn(function() error("second") end)`)
	if err == nil || !strings.Contains(err.Error(), "first") {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "nobody waited for it: test:4: second") {
		t.Errorf("second failure not reported:\n%s", out.String())
	}
	out.Reset()
	mustRun(t, rt, `function handler()
  require("task").spawn(function() require("task").sleep(0.01); error("after return") end)
  return "ok"
end`)
	res, err := rt.Call(context.Background(), "handler")
	if err != nil || res[0] != "ok" {
		t.Fatalf("call: %v %v", res, err)
	}
	if !out.waitFor("after return", 10*time.Second) {
		t.Fatalf("failure after the Call returned was not reported: %q", out.String())
	}
}

// Calls that block wait together, however many: here each of 2,000 calls
// returns only once all 2,000 are in flight at the same time — a pool of
// goroutines that did not grow while calls wait behind blocked ones would
// never get there.
func TestManyBlockingCallsRunConcurrently(t *testing.T) {
	rt, _ := newRuntime(t)
	const n = 2000
	var arrived atomic.Int64
	all := make(chan struct{})
	rt.RegisterFunc("rendezvous", func(ctx context.Context, a bridge.Args) ([]any, error) {
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
			return []any{true}, nil
		case <-time.After(20 * time.Second):
			return nil, fmt.Errorf("only %d of %d calls were in flight together", arrived.Load(), n)
		}
	})
	mustRun(t, rt, fmt.Sprintf(`
local task = require("task")
local ts = {}
for i = 1, %d do ts[i] = task.spawn(rendezvous) end
for _, t in ipairs(ts) do assert(t:wait() == true) end`, n))
}

// TestStreamChunksOfEverySizeArriveIntact sends chunks whose sizes cycle
// through small (recycled between Lua and Go) and large (freed) ones, a
// reused Go value among them, and checks every byte in Lua, in order.
func TestStreamChunksOfEverySizeArriveIntact(t *testing.T) {
	rt, out := newRuntime(t)
	const n = 5000
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rt.RegisterStream("gen.bytes", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		reused := map[string]any{}
		for i := range n {
			size := (i * 37) % 700
			s := strings.Repeat(string(rune('a'+i%26)), size)
			if i%3 == 0 {
				reused["i"], reused["s"] = int64(i), s
				if err := emit(reused); err != nil {
					return err
				}
				continue
			}
			if err := emit(map[string]any{"i": int64(i), "s": s}); err != nil {
				return err
			}
		}
		return nil
	}))
	mustRun(t, rt, fmt.Sprintf(`
		local n = 0
		for c in require("gen").bytes() do
			assert(c.i == n, "chunk " .. c.i .. " in place of " .. n)
			local want = string.rep(string.char(97 + n %% 26), (n * 37) %% 700)
			assert(c.s == want, "chunk " .. n .. " damaged")
			n = n + 1
		end
		print(n == %d)`, n))
	if out.String() != "true\n" {
		t.Errorf("output %q", out.String())
	}
}
