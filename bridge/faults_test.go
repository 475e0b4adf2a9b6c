package bridge_test

// Faults at the seams between Go, C and Lua: each must end in a clear
// error or a clean shutdown, never a crash, a hang or a leak.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/leaks"
)

// Close with 5,000 calls blocked in Go: every run ends with ErrClosed,
// every goroutine returns, and the C runtime is freed with nothing left
// (no Lua bytes, no open handle, the C heap back where it was).
func TestCloseWithThousandsOfCallsInFlight(t *testing.T) {
	if !exactHeap(t) {
		return
	}
	warmUp(t)
	before := measureLeftBehind()
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	var started atomic.Int32
	all := make(chan struct{})
	rt.RegisterFunc("block", func(ctx context.Context, args bridge.Args) ([]any, error) {
		if started.Add(1) == n {
			close(all)
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	done := make(chan error, 1)
	go func() {
		done <- rt.RunString(context.Background(), "many", `
			local task = require("task")
			for i = 1, 5000 do task.spawn(block, i) end`)
	}()
	<-all
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("the run ended with %v, want ErrClosed", err)
	}
	if err := rt.RunString(context.Background(), "after", "print(1)"); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("a run after Close: %v", err)
	}
	before.checkNothingLeft(t, true)
}

// closeGrace and closeTolerance: Close must give a function that ignores
// its context the grace, and return soon after; the tolerance is for a
// loaded machine's scheduling, far below the 5 s default grace that a Close
// ignoring Options.CloseGrace would wait.
const (
	closeGrace     = 200 * time.Millisecond
	closeTolerance = time.Second
)

// checkCloseBoundedByGrace: Close, which took waited, returned an error
// saying want after CloseGrace (and not much later), and a second Close
// returns the same error.
func checkCloseBoundedByGrace(t *testing.T, rt *bridge.Runtime, err error, waited time.Duration, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Close: %v", err)
	}
	if waited < closeGrace || waited > closeGrace+closeTolerance {
		t.Errorf("Close returned after %v; with CloseGrace %v it must wait that long, and not much longer", waited, closeGrace)
	}
	if err2 := rt.Close(); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("a second Close: %v", err2)
	}
}

func TestCloseIsBoundedByAFunctionThatNeverReturns(t *testing.T) {
	before := measureLeftBehind()
	rt, err := bridge.New(bridge.Options{CloseGrace: closeGrace})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{})
	rt.RegisterFunc("stubborn", func(ctx context.Context, args bridge.Args) ([]any, error) {
		close(entered)
		<-release // ignores ctx
		return []any{"too late"}, nil
	})
	go rt.RunString(context.Background(), "stuck", `stubborn()`)
	<-entered
	start := time.Now()
	err = rt.Close()
	checkCloseBoundedByGrace(t, rt, err, time.Since(start), "had not returned 200ms after their contexts were cancelled")
	// The function will still complete into the C runtime: it must not be
	// freed yet, and must be once the function returns.
	if n := leaks.Live(); n != before.live+1 {
		t.Errorf("C runtimes after Close: %d, want %d (freed under a running function)", n, before.live+1)
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := leaks.WaitLive(ctx, before.live); err != nil {
		t.Fatalf("the C runtime was not freed after its last function returned: %v", err)
	}
	before.checkNothingLeft(t, false)
}

func TestEmitAfterTheConsumerLeft(t *testing.T) {
	rt, _ := newRuntime(t)
	results := make(chan []error, 1)
	rt.RegisterStream("gen.forever", func(ctx context.Context, args bridge.Args, emit func(any) error) error {
		var errs []error
		for i := 0; i < 1000; i++ { // keeps emitting after the loop is gone, past the window
			if err := emit(i); err != nil {
				errs = append(errs, err)
			}
		}
		results <- errs
		return nil
	})
	mustRun(t, rt, `for v in require("gen").forever() do if v == 3 then break end end`)
	errs := <-results
	if len(errs) == 0 {
		t.Fatal("emit never reported that Lua left")
	}
	for _, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("emit after the consumer left: %v", err)
		}
	}
	mustRun(t, rt, `print("still serving")`)
}

func TestLuaErrorsInGCCloseAndTimers(t *testing.T) {
	rt, out := newRuntime(t)
	// __gc: Lua turns the error into a warning, shown once warnings are
	// on (stock lua5.4's default is off), and goes on.
	mustRun(t, rt, `
		warn("@on")
		setmetatable({}, {__gc = function() error("boom in __gc") end})
		collectgarbage(); collectgarbage()
		print("after gc")`)
	if want := "Lua warning: error in __gc (test:3: boom in __gc)\nafter gc\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	out.Reset()
	// __close: the error is the block's, in the task that closed it.
	err := run(t, rt, `
		local task = require("task")
		task.spawn(function()
			local x <close> = setmetatable({}, {__close = function() error("boom in __close") end})
		end):wait()`)
	if err == nil || !strings.Contains(err.Error(), "boom in __close") {
		t.Errorf("__close: %v", err)
	}
	// A timer callback's error fails the run, like any task nobody waits for.
	err = run(t, rt, `setTimeout(function() error("boom in a timer") end, 1)`)
	if err == nil || !strings.Contains(err.Error(), "boom in a timer") {
		t.Errorf("timer: %v", err)
	}
	out.Reset()
	mustRun(t, rt, `print("still serving")`)
	if out.String() != "still serving\n" {
		t.Errorf("output %q", out.String())
	}
}

// Lua's warning system works as in stock lua5.4 (warn, its "@on" and
// "@off" controls, errors in __gc reported as warnings): the same script
// writes the same to stderr under both.
func TestLuaWarningsAsStockLua(t *testing.T) {
	lua, err := exec.LookPath("lua5.4")
	if err != nil {
		t.Fatal("lua5.4 is needed to compare with stock Lua: run 'make deps'")
	}
	path := filepath.Join(t.TempDir(), "warn.lua")
	src := `warn("not shown: warnings start off")
setmetatable({}, {__gc = function() error("not shown either") end}); collectgarbage()
warn("@on")
warn("a warning ", "in ", "pieces")
setmetatable({}, {__gc = function() error("boom in __gc") end}); collectgarbage()
setmetatable({}, {__gc = function() error({}) end}); collectgarbage()
warn("@unknown") -- a control message nobody knows: ignored
warn("@off")
warn("hidden")
warn("@on")
warn("@on", "is no control message when it comes in pieces")
print("stdout is apart")
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var stockOut, stockErr bytes.Buffer
	cmd := exec.Command(lua, path)
	cmd.Stdout, cmd.Stderr = &stockOut, &stockErr
	if err := cmd.Run(); err != nil {
		t.Fatalf("lua5.4: %v\n%s", err, stockErr.String())
	}
	var mbOut, mbErr syncBuffer
	rt, err := bridge.New(bridge.Options{Stdout: &mbOut, Stderr: &mbErr})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.RunFile(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	// What stock Lua shows (the path may be shortened, as Lua shortens
	// long chunk names): the test's script must exercise every case.
	stock := strings.Split(strings.TrimSuffix(stockErr.String(), "\n"), "\n")
	if len(stock) != 4 || stock[0] != "Lua warning: a warning in pieces" ||
		!strings.HasPrefix(stock[1], "Lua warning: error in __gc (") || !strings.HasSuffix(stock[1], "warn.lua:5: boom in __gc)") ||
		stock[2] != "Lua warning: error in __gc (error object is not a string)" ||
		stock[3] != "Lua warning: @onis no control message when it comes in pieces" {
		t.Fatalf("stock lua5.4 wrote to stderr:\n%s", stockErr.String())
	}
	if mbErr.String() != stockErr.String() || mbOut.String() != stockOut.String() {
		t.Errorf("moonbridge wrote\n%s%s\nlua5.4 wrote\n%s%s", mbErr.String(), mbOut.String(), stockErr.String(), stockOut.String())
	}
}

func TestUnboundedSpawningHitsTheMemoryLimit(t *testing.T) {
	rt, err := bridge.New(bridge.Options{MemoryLimit: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	err = run(t, rt, `
		local task = require("task")
		while true do task.spawn(function() task.sleep(1e9) end) end`)
	if !errors.Is(err, bridge.ErrMemoryLimit) {
		t.Fatalf("got %v, want ErrMemoryLimit", err)
	}
	mustRun(t, rt, `local task = require("task"); task.spawn(task.sleep, 0.001):wait()`)
}

// TestUnawaitedFailuresSurviveCollection: a failed task nobody holds stays
// alive (its error waits for the run's end) through garbage collections;
// the memory-limit test found it freed while still listed (ASan: a write
// after free when the next failure was listed).
func TestUnawaitedFailuresSurviveCollection(t *testing.T) {
	rt, out := newRuntime(t)
	err := run(t, rt, `
		local task = require("task")
		task.spawn(function() error("first") end)
		task.yield(); task.yield()
		collectgarbage(); collectgarbage()
		task.spawn(function() error("second") end)
		task.yield(); task.yield()
		collectgarbage(); collectgarbage()`)
	if err == nil || !strings.Contains(err.Error(), "first") {
		t.Errorf("the run's error: %v", err)
	}
	if !strings.Contains(out.String(), "nobody waited for it: test:6: second") {
		t.Errorf("the second failure was not reported: %q", out.String())
	}
}

// A run torn down (here by its context, cancelled once every task waits)
// while tasks wait inside user coroutines ends those coroutines as it ends
// the tasks: the next run finds them dead, with their to-be-closed
// variables closed, not busy for good.
func TestKilledRunEndsTheCoroutinesItWaitedIn(t *testing.T) {
	rt, out := newRuntime(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Tasks start in spawn order, so when the last one calls this, the
	// others are asleep.
	if err := rt.RegisterFunc("all_asleep", func(context.Context, bridge.Args) ([]any, error) {
		cancel()
		return nil, nil
	}, bridge.Inline()); err != nil {
		t.Fatal(err)
	}
	err := rt.RunString(ctx, "one", `
local task = require("task")
closed = {}
local function closer(name) return setmetatable({}, {__close = function() closed[#closed + 1] = name end}) end
inner = coroutine.create(function()
  local c <close> = closer("inner")
  task.sleep(3600)
end)
outer = coroutine.create(function()
  local c <close> = closer("outer")
  coroutine.resume(inner)
end)
wrapped = coroutine.wrap(function()
  local c <close> = closer("wrapped")
  task.sleep(3600)
end)
task.spawn(wrapped)
-- Cleanup that fails, or tries to wait, cannot stop the others.
rude = coroutine.create(function()
  local a <close> = setmetatable({}, {__close = function() task.sleep(1) end})
  local b <close> = setmetatable({}, {__close = function() error("cleanup failed") end})
  task.sleep(3600)
end)
task.spawn(coroutine.resume, rude)
task.spawn(function() all_asleep() task.sleep(3600) end)
coroutine.resume(outer)`)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run one: %v, want its context's cancellation", err)
	}
	mustRun(t, rt, `
print(table.concat(closed, " "))
print(coroutine.status(inner), coroutine.status(outer), coroutine.status(rude))
print(coroutine.resume(inner))
print(coroutine.close(outer))
print(pcall(wrapped))`)
	want := "inner outer wrapped\n" +
		"dead\tdead\tdead\n" +
		"false\tcannot resume dead coroutine\n" +
		"true\n" +
		"false\tcannot resume dead coroutine\n" // as stock Lua's pcall(wrapped)
	if got := out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A Go function running inline runs on the loop's own thread: a Close it
// calls cannot wait for the loop, so it ends the runs and returns at once,
// and the Runtime finishes closing, leaving nothing behind, once the
// function has returned. Before, that Close waited for itself forever.
func TestCloseFromAnInlineFunction(t *testing.T) {
	before := measureLeftBehind()
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	if err := rt.RegisterFunc("shutdown", func(ctx context.Context, a bridge.Args) ([]any, error) {
		closed <- rt.Close()
		return []any{"after Close"}, nil
	}, bridge.Inline()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.RunString(context.Background(), "main", `shutdown() while true do end`) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close from the inline function: %v", err)
		}
	case <-time.After(hostileHang):
		t.Fatal("Close from an inline function did not return")
	}
	if err, ok := within(hostileHang, func() error { return <-done }); !ok || !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("the run: %v (ended: %v)", err, ok)
	}
	if err, ok := within(hostileHang, rt.Close); !ok || err != nil {
		t.Fatalf("Close from outside afterwards: %v (returned: %v)", err, ok)
	}
	before.checkNothingLeft(t, false)
}

// A Go function running inline cannot wait for its own Runtime: a run,
// Call or Tasks it asks for is an error at once that says why, not a
// deadlock (the loop waits for the function, which would wait for the
// loop), and the run that called it goes on.
func TestRequestsFromAnInlineFunctionAreErrors(t *testing.T) {
	rt, out := newRuntime(t)
	var errs []error
	if err := rt.RegisterFunc("reenter", func(ctx context.Context, a bridge.Args) ([]any, error) {
		errs = append(errs, rt.RunString(ctx, "inner", `x = 1`))
		_, err := rt.Call(ctx, "print", "from Go")
		errs = append(errs, err)
		_, err = rt.Get(ctx, "x")
		errs = append(errs, err)
		if rt.Tasks() != nil {
			errs = append(errs, errors.New("Tasks returned tasks"))
		}
		return []any{"done"}, nil
	}, bridge.Inline()); err != nil {
		t.Fatal(err)
	}
	err, ok := within(hostileHang, func() error { return run(t, rt, `print(reenter())`) })
	if !ok {
		t.Fatal("a request from an inline function hangs")
	}
	if err != nil || out.String() != "done\n" {
		t.Fatalf("the run: %v, output %q", err, out.String())
	}
	if len(errs) != 3 {
		t.Fatalf("errors %v", errs)
	}
	for _, e := range errs {
		if e == nil || !strings.Contains(e.Error(), "registered with Inline") {
			t.Errorf("want the inline error, got %v", e)
		}
	}
	mustRun(t, rt, `assert(x == nil)`) // the inner run never ran
}

// Lua runs finalizers and hook functions with hooks off, so Close's
// preemption cannot reach one in an endless loop (the sandbox allows
// neither). Close returns after CloseGrace with an error rather than wait
// forever, and the runtime is freed once the loop returns.
// stuckProbeRuntime measures what is left behind, then makes a Runtime
// with CloseGrace closeGrace where Lua has started(), which closes the
// channel returned, and released(), which reads the flag returned: Inline
// functions, so they answer where Lua cannot yield.
func stuckProbeRuntime(t *testing.T) (leftBehind, *bridge.Runtime, *atomic.Bool, chan struct{}) {
	t.Helper()
	before := measureLeftBehind()
	rt, err := bridge.New(bridge.Options{CloseGrace: closeGrace})
	if err != nil {
		t.Fatal(err)
	}
	released := new(atomic.Bool)
	entered := make(chan struct{})
	var once sync.Once
	for fn, f := range map[string]bridge.Func{
		"started": func(context.Context, bridge.Args) ([]any, error) {
			once.Do(func() { close(entered) })
			return nil, nil
		},
		"released": func(context.Context, bridge.Args) ([]any, error) {
			return []any{released.Load()}, nil
		},
	} {
		if err := rt.RegisterFunc(fn, f, bridge.Inline()); err != nil {
			t.Fatal(err)
		}
	}
	return before, rt, released, entered
}

// TestCloseIsBoundedByAFinalizerLeftForIt: a finalizer that never
// returns, left for Close (lua_close runs it while the runtime is freed),
// holds Close no longer than the grace either. Before, Close bounded only
// the wait for the loop to stop, and moonbridge run hung for ever.
func TestCloseIsBoundedByAFinalizerLeftForIt(t *testing.T) {
	before, rt, released, entered := stuckProbeRuntime(t)
	mustRun(t, rt, `keep = setmetatable({}, {__gc = function() started(); while not released() do end end})`)
	start := time.Now()
	err, ok := within(hostileHang, rt.Close)
	waited := time.Since(start)
	if !ok {
		released.Store(true)
		t.Fatalf("Close still waiting after %v", waited)
	}
	select {
	case <-entered:
	default:
		t.Error("the finalizer did not run at Close")
	}
	checkCloseBoundedByGrace(t, rt, err, waited, "had not returned from the runtime's finalizers 200ms after freeing began")
	released.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := leaks.WaitLive(ctx, before.live); err != nil {
		t.Fatalf("the C runtime was not freed once Lua returned: %v", err)
	}
	before.checkNothingLeft(t, false)
}

func TestCloseIsBoundedByLuaThatNeverReturns(t *testing.T) {
	for name, src := range map[string]string{
		"finalizer": `setmetatable({}, {__gc = function() started(); while not released() do end end})
collectgarbage()`,
		"hook function": `debug.sethook(function() started(); while not released() do end end, "", 1)
local x = 0
while true do x = x + 1 end`,
	} {
		t.Run(name, func(t *testing.T) {
			before, rt, released, entered := stuckProbeRuntime(t)
			done := make(chan error, 1)
			go func() { done <- rt.RunString(context.Background(), "stuck", src) }()
			<-entered
			start := time.Now()
			err, ok := within(hostileHang, rt.Close)
			waited := time.Since(start)
			if !ok {
				released.Store(true) // let the loop go, or it spins through the other tests
				t.Fatalf("Close still waiting after %v", waited)
			}
			checkCloseBoundedByGrace(t, rt, err, waited, "had not given the loop's thread back 200ms after Close asked")
			released.Store(true)
			if err := <-done; !errors.Is(err, bridge.ErrClosed) {
				t.Errorf("the run: %v, want ErrClosed", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := leaks.WaitLive(ctx, before.live); err != nil {
				t.Fatalf("the C runtime was not freed once Lua returned: %v", err)
			}
			before.checkNothingLeft(t, false)
		})
	}
}
