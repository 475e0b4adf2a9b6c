package bridge_test

// Hostile scripts (issue 13, the rest): the limits hold wherever Lua runs —
// in a killed task's cleanup, in message handlers after the count hook's
// error, in VM operations the hook cannot see, on the host's own data —
// and the core reads what a script can reach without running its
// metamethods. The helpers are hostile_test.go's.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// registerSleep gives the runtime host.sleep(seconds), an inline function
// that blocks the loop: time passes with no VM instruction, so a deadline
// passes between two instructions without any count hook seeing it.
func registerSleep(t *testing.T, rt *bridge.Runtime) {
	t.Helper()
	err := rt.RegisterFunc("host.sleep", func(_ context.Context, a bridge.Args) ([]any, error) {
		s, err := a.Float(0)
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Duration(s * float64(time.Second)))
		return nil, nil
	}, bridge.Inline())
	if err != nil {
		t.Fatal(err)
	}
}

// A VM operation on huge strings is one instruction however long it runs,
// so the count hook, every 1,000 instructions, sees a loop of them seconds
// late. They allocate as they go: the allocator refuses a task whose run
// is past its deadline. Here the deadline passes inside host.sleep, and
// the very next allocating instruction ends the run: the statement after
// it never runs (the hook alone would let ~1,000 more instructions run).
func TestHostileLongVMOperationsStopAtTheDeadline(t *testing.T) {
	const setup = `local s = string.rep("x", 1 << 20)
		local packed = string.pack("s4", s)
		local src = "return " .. string.rep("1 + ", 1 << 18) .. "1"
		host.sleep(0.3) -- the 0.1 s deadline passes here
		`
	for name, op := range map[string]string{
		"concat":       `local t = s .. s`,
		"concat of 4":  `local t = s .. s .. s .. s`,
		"format":       `local t = string.format("%s%s", s, s)`,
		"pack":         `local t = string.pack("s4s4", s, s)`,
		"unpack":       `local t = string.unpack("s4", packed)`,
		"load":         `local f = load(src)`,
		"table of one": `local t = {s .. "!"}`,
	} {
		t.Run(name, func(t *testing.T) {
			rt, out := hostileRuntime(t, nil)
			registerSleep(t, rt)
			err := hostileDo(t, "run", func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				return rt.RunString(ctx, "long", setup+op+"\nprint('after')")
			})
			wantStopped(t, err)
			if strings.Contains(out.String(), "after") {
				t.Errorf("the operation past the deadline succeeded and the run went on: %q", out.String())
			}
			servesAfter(t, rt, out)
		})
	}
}

// The host's own data for a run (a Call's arguments, SetGlobal's value, a
// chunk) is the run's: held to MemoryLimit, it fails that run with a
// memory limit error. The scheduler once decoded it without a limit, then
// (held to the limit plus its small reserve) ended the loop instead.
func TestHostileRunDataIsHeldToTheMemoryLimit(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = false; o.MemoryLimit = 8 << 20 })
	// Fill the memory with globals outside the sandbox, where they stay.
	// Each string is made whole (no garbage a collection could free), so
	// what is left is less than one of them.
	if err := hostileRun(t, rt, `keep = {} pcall(function() for i = 1, 1e9 do keep[i] = ("x"):rep(1000, i) end end) collectgarbage()`); err != nil {
		t.Fatalf("filling: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostileHang)
	defer cancel()
	// 512 KiB fits the scheduler's reserve (1 MiB at this limit) but not
	// the limit: it must be refused all the same.
	for _, size := range []int{512 << 10, 16 << 20} {
		big := strings.Repeat("y", size)
		_, err := hostileCall(t, rt, ctx, "print", big)
		if !errors.Is(err, bridge.ErrMemoryLimit) {
			t.Errorf("Call with %d bytes of arguments over 8 MiB: %v", size, err)
		}
		err = hostileDo(t, "SetGlobal", func() error { return rt.SetGlobal(ctx, "big", big) })
		if !errors.Is(err, bridge.ErrMemoryLimit) {
			t.Errorf("SetGlobal of %d bytes over 8 MiB: %v", size, err)
		}
		err = hostileDo(t, "RunString", func() error {
			return rt.RunString(ctx, "big", "return '"+big+"'")
		})
		if !errors.Is(err, bridge.ErrMemoryLimit) {
			t.Errorf("a chunk of %d bytes over 8 MiB: %v", size, err)
		}
	}
	out.Reset()
	if err := hostileRun(t, rt, `keep = nil collectgarbage() print(big == nil)`); err != nil || out.String() != "true\n" {
		t.Fatalf("after: %v %q", err, out.String())
	}
	servesAfter(t, rt, out)
}

// The count hook raises the run's limit error, or a task's cancellation,
// with the thread's hooks off until it unwinds; Lua calls xpcall's message
// handler before that. A handler that loops then ran forever. A task busy
// in an xpcall whose handler loops is cancelled by a sibling (TimeSlice
// lets the sibling run): the handler is stopped by the deadline.
func TestHostileMessageHandlerOfACancelledTaskIsStopped(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.TimeSlice = 10_000 })
	err := hostileRun(t, rt, `
		local task = require("task")
		local busy = task.spawn(function()
			xpcall(function() while true do end end, function(e) while true do end end)
		end)
		task.yield()
		busy:cancel()
		busy:wait()`)
	wantStopped(t, err)
	servesAfter(t, rt, out)
}

// A handler still runs after the hook's error, once, and sees it: a
// handler that returns a value of its own makes xpcall return it.
func TestHostileMessageHandlerSeesTheLimitError(t *testing.T) {
	rt, out := hostileRuntime(t, nil)
	err := hostileRun(t, rt, `
		local ok, e = xpcall(function() while true do end end, function(e)
			print("handler", e.kind, e.op)
			return e
		end)`)
	wantStopped(t, err)
	if got := out.String(); got != "handler\tlimit\tdeadline\n" && got != "handler\tlimit\tinstructions\n" {
		t.Errorf("the handler printed %q", got)
	}
	servesAfter(t, rt, out)
}

// A killed task's cleanup is the run's code and runs as the task (under
// its limits), but its run has ended: it may not start a task there.
func TestHostileKilledTasksCleanupCannotStartTasks(t *testing.T) {
	rt, out := hostileRuntime(t, nil)
	err := hostileRun(t, rt, `
		local task = require("task")
		task.spawn(function()
			local x <close> = setmetatable({}, {__close = function()
				local ok, e = pcall(task.spawn, function() end)
				print(ok, tostring(e))
			end})
			task.sleep(100)
		end)
		task.yield()
		error("boom")`)
	wantKind(t, err, "runtime", "", "boom")
	if got := out.String(); !strings.HasPrefix(got, "false\t") || !strings.Contains(got, "cannot start a task: the run has ended") {
		t.Errorf("task.spawn in a killed task's cleanup: %q", got)
	}
	servesAfter(t, rt, out)
}

// Close kills every run's tasks; a cleanup that loops in a run with no
// limit at all is ended too: the runtime cannot wait for it.
func TestHostileCloseEndsALoopingCleanup(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.InstructionLimit = 0 })
	started := make(chan struct{})
	err := rt.RegisterFunc("host.started", func(context.Context, bridge.Args) ([]any, error) {
		close(started)
		return nil, nil
	}, bridge.Inline())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- rt.RunString(context.Background(), "forever", `
			local task = require("task")
			task.spawn(function()
				local x <close> = setmetatable({}, {__close = function() print("cleanup") while true do end end})
				task.sleep(1e6)
			end)
			task.yield()
			host.started()
			task.sleep(1e6)`)
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("the run ended early: %v", err)
	}
	if err := hostileDo(t, "Close", rt.Close); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("the run: %v", err)
	}
	if !strings.Contains(out.String(), "cleanup") {
		t.Errorf("the cleanup did not run: %q", out.String())
	}
}

// The chain of coroutine.close calls nested through __close handlers,
// started by a killed task's cleanup (the deadline kills it) and by a
// wrapped coroutine's error, is bounded as coroutine.close's own is.
func TestHostileNestedClosesInCleanupAndWrap(t *testing.T) {
	chain := nestedCloseChain
	for name, src := range map[string]string{
		"killed task": chain + `
			local task = require("task")
			task.spawn(function()
				local head <close> = setmetatable({}, {__close = function() coroutine.close(co) end})
				task.sleep(100)
			end)
			task.sleep(100)`,
		"wrap's error": chain + `
			print(pcall(coroutine.wrap(function()
				local head <close> = setmetatable({}, {__close = function() assert(coroutine.close(co)) end})
				error("boom")
			end)))`,
	} {
		t.Run(name, func(t *testing.T) {
			rt, out := hostileRuntime(t, nil)
			err := hostileRun(t, rt, src)
			if name == "killed task" {
				wantStopped(t, err)
			} else if err != nil || !strings.HasPrefix(out.String(), "false\t") || !strings.Contains(out.String(), "C stack overflow") {
				t.Errorf("%v %q", err, out.String())
			}
			servesAfter(t, rt, out)
		})
	}
}

// Outside the sandbox the error metatable is a script's to change. Run A
// makes every metamethod on it loop; the core, which reads and writes
// error tables raw, neither hangs nor runs them when later runs fail,
// report a task nobody waited for, or Call what is missing.
func TestHostileErrorMetatableTamperedOutsideTheSandbox(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = false })
	loop := `function() while true do end end`
	// Both metatables: a fresh error's (as raised, caught by pcall in the
	// same task) and a stamped one's (one that ended a task).
	err := hostileRun(t, rt, fmt.Sprintf(`
		local task = require("task")
		local _, fresh = pcall(task.timeout, 0, task.sleep, 1)
		local t = task.spawn(error, "x")
		local _, stamped = pcall(t.wait, t)
		for _, e in ipairs{fresh, stamped} do
			local mt = getmetatable(e)
			mt.__index, mt.__newindex, mt.__len, mt.__concat, mt.__eq = %s, %s, %s, %s, %s
		end
		assert(getmetatable(fresh) ~= getmetatable(stamped))`, loop, loop, loop, loop, loop))
	if err != nil {
		t.Fatalf("tampering: %v", err)
	}
	for name, src := range map[string]string{
		"error":            `error("plain")`,
		"misuse":           `local c = require("channel").new() c:close() c:close()`,
		"a task's error":   `require("task").spawn(function() error("in task") end):wait()`,
		"nobody waits":     `local t = require("task").spawn(function() error("lost") end) t:detach() require("task").yield()`,
		"cancelled":        `local task = require("task") local t = task.spawn(task.sleep, 10) task.yield() t:cancel() t:wait()`,
		"deadline":         `while true do end`,
		"errors.new cause": `error(setmetatable({}, {__tostring = function() return "own" end}))`,
	} {
		out.Reset()
		err := hostileRun(t, rt, src)
		var le *bridge.LuaError
		if name != "nobody waits" && !errors.As(err, &le) {
			t.Errorf("%s: want a Lua error, got %v", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostileHang)
	defer cancel()
	_, err = hostileCall(t, rt, ctx, "nosuchfn")
	wantKind(t, err, "runtime", "", "nosuchfn")
	servesAfter(t, rt, out)
}

// A coroutine that the count hook's error ended (its run's limit) has
// its hooks off for good: Lua turns them on again only when the hook
// returns or a pcall inside the coroutine catches. Closing it then ran its
// __close handlers with no hook, and one that looped hung the Runtime
// (FuzzHostile found it through coroutine.wrap, whose error path closes
// the coroutine). Its handlers are not run; its error is what close
// gives. A coroutine that failed with an ordinary error is closed as
// stock Lua closes it.
func TestHostileCoroutineEndedByALimitIsClosedWithoutItsHandlers(t *testing.T) {
	const looping = `coroutine.create(function()
		local c <close> = setmetatable({}, {__close = function() while true do end end})
		while true do end
	end)`
	t.Run("wrap's error", func(t *testing.T) {
		rt, out := hostileRuntime(t, nil)
		err := hostileRun(t, rt, `pcall(coroutine.wrap(function()
			local c <close> = setmetatable({}, {__close = function() while true do end end})
			while true do end
		end))`)
		wantStopped(t, err)
		servesAfter(t, rt, out)
	})
	t.Run("closed in a later run", func(t *testing.T) {
		rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = false })
		wantStopped(t, hostileRun(t, rt, `co = `+looping+` coroutine.resume(co)`))
		if err := hostileRun(t, rt, `print(coroutine.close(co))`); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); !strings.HasPrefix(got, "false\t") || !strings.Contains(got, "limit") {
			t.Errorf("coroutine.close gave %q, want false and the limit error", got)
		}
		servesAfter(t, rt, out)
	})
	t.Run("an ordinary error", func(t *testing.T) {
		rt, out := hostileRuntime(t, nil)
		err := hostileRun(t, rt, `
			print(pcall(coroutine.wrap(function()
				local c <close> = setmetatable({}, {__close = function() print("closed") end})
				error("w")
			end)))
			local co = coroutine.create(function()
				local c <close> = setmetatable({}, {__close = function() print("closed too") end})
				error("v")
			end)
			print(coroutine.resume(co))
			print(coroutine.close(co))`)
		if want := "closed\nfalse\thostile:4: w\nfalse\thostile:8: v\nclosed too\nfalse\thostile:8: v\n"; err != nil || out.String() != want {
			t.Errorf("%v %q, want %q", err, out.String(), want)
		}
		servesAfter(t, rt, out)
	})
}

// Detached tasks left over are cancelled, with an error value made in the
// scheduler's reserve: one for each task, a script that detached thousands
// of them exhausted the reserve and ended the scheduler itself ("scheduler
// failed: not enough memory"), and with it the Runtime (FuzzHostile found
// it, as the main task failed and its tasks were killed). They now share
// one error: the run ends with the memory limit's error when its main task
// fails, normally when it ends well, and the Runtime serves on.
func TestHostileDetachedTasksBeyondTheReserve(t *testing.T) {
	for _, sandbox := range []bool{true, false} {
		rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = sandbox; o.MemoryLimit = 16 << 20 })
		err := hostileRun(t, rt, `for i = 1, 16384 do require("task").spawn(function() while true do end end):detach() end`)
		var le *bridge.LuaError
		if !errors.As(err, &le) || !errors.Is(err, bridge.ErrMemoryLimit) {
			t.Errorf("sandbox %v: %v, want the memory limit's Lua error", sandbox, err)
		}
		servesAfter(t, rt, out)
		// The main task ends well, leaving detached tasks that fill the
		// memory: they are cancelled, sharing one cancellation error, and
		// the run ends when they have.
		rt, out = hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = sandbox; o.MemoryLimit = 16 << 20 })
		err = hostileRun(t, rt, `
			local task = require("task")
			print(pcall(function() for i = 1, 1e6 do task.spawn(function() task.sleep(100) end):detach() end end))`)
		if err != nil || out.String() != "false\tnot enough memory\n" {
			t.Errorf("sandbox %v, leftover detached tasks: %v, output %q", sandbox, err, out.String())
		}
		servesAfter(t, rt, out)
	}
}

// spinShapes are a task spinning with no limit, no time slice and no
// deadline, in each place a turn can be stuck: where it can yield, and
// where it cannot (a C function's callback, a message handler).
var spinShapes = map[string]string{
	"loop":                  `while true do end`,
	"in pcall":              `pcall(function() while true do end end)`,
	"in a handler":          `xpcall(error, function() while true do end end)`,
	"in a comparator":       `table.sort({3, 2, 1}, function(a, b) while true do end end)`,
	"pcall in a comparator": `table.sort({3, 2, 1}, function(a, b) while true do pcall(function() while true do end end) end end)`,
	"in __index":            `local t = setmetatable({}, {__index = function() while true do end end}); local _ = t.x`,
	"in a coroutine":        `coroutine.wrap(function() while true do end end)()`,
	"in a task":             `require("task").spawn(function() while true do end end):wait()`,
}

// spinning starts script in a new Runtime with no limits and returns once
// its spin has begun, with the run's result to come on done.
func spinning(t *testing.T, ctx context.Context, spin string) (rt *bridge.Runtime, done chan error) {
	t.Helper()
	return runUntilStarted(t, ctx, bridge.Options{}, "started()\n"+spin)
}

// runUntilStarted starts src in a new Runtime made with opts and returns
// once src has called started(), with the run's result to come on done.
func runUntilStarted(t *testing.T, ctx context.Context, opts bridge.Options, src string) (rt *bridge.Runtime, done chan error) {
	t.Helper()
	rt, err := bridge.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	if err := rt.RegisterFunc("started", func(context.Context, bridge.Args) ([]any, error) {
		close(started)
		return nil, nil
	}, bridge.Inline()); err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	go func() { done <- rt.RunString(ctx, "main", src) }()
	<-started
	return rt, done
}

// Close ends a task that spins anywhere (spinShapes): Close preempts it
// (a signal), and where it cannot give up its turn it fails, at every
// instruction until it is out. Before, Close waited for a turn that never
// ended.
func TestCloseEndsASpinningTaskWithNoLimits(t *testing.T) {
	for name, spin := range spinShapes {
		t.Run(name, func(t *testing.T) {
			rt, done := spinning(t, context.Background(), spin)
			if err := hostileDo(t, "Close", rt.Close); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := <-done; !errors.Is(err, bridge.ErrClosed) {
				t.Errorf("the run: %v", err)
			}
		})
	}
}

// Cancelling a run's context ends it wherever its task spins, the same
// way, and the Runtime serves the next run.
func TestCancelEndsASpinningTaskWithNoLimits(t *testing.T) {
	for name, spin := range spinShapes {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			rt, done := spinning(t, ctx, spin)
			defer rt.Close()
			cancel()
			err, ok := within(hostileHang, func() error { return <-done })
			if !ok {
				t.Fatalf("the cancelled run still runs after %v", hostileHang)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the run: %v", err)
			}
			if err := rt.RunString(context.Background(), "next", `assert(1 + 1 == 2)`); err != nil {
				t.Errorf("the next run: %v", err)
			}
		})
	}
}

// Close ends a looping cleanup in a coroutine its killed task waited in,
// in a run with no limit at all: the coroutine's to-be-closed variable is
// closed as the task is killed, and Close's preemption reaches it there.
func TestCloseEndsALoopingCleanupInACoroutine(t *testing.T) {
	out := &syncBuffer{}
	rt, done := runUntilStarted(t, context.Background(), bridge.Options{Stdout: out}, `
		local task = require("task")
		coroutine.wrap(function()
			local x <close> = setmetatable({}, {__close = function() print("cleanup") while true do end end})
			started()
			task.sleep(1e6)
		end)()`)
	if err := hostileDo(t, "Close", rt.Close); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("the run: %v", err)
	}
	if out.String() != "cleanup\n" {
		t.Errorf("output %q: the cleanup did not run", out.String())
	}
}

// TestHostileTasksFillingTheMemoryEndTheRunNotTheRuntime: a run that
// fills its MemoryLimit with tasks, then ends, kills them all. The kills
// share one error: one each exhausted the scheduler's reserve, and the
// Runtime died with "scheduler failed: not enough memory" (a pipeline
// stage asking for 1e9 workers did it). A task that died of the memory
// error before its first instruction has its error made on its dead
// thread: that needs room first, which make asan's Lua (API checks on)
// aborted without.
func TestHostileTasksFillingTheMemoryEndTheRunNotTheRuntime(t *testing.T) {
	scripts := map[string]string{
		"waiting tasks": `
			local task = require("task")
			local c = require("channel").new()
			local ts = {}
			print(pcall(function()
			  while true do ts[#ts + 1] = task.spawn({name = "w" .. #ts}, function() c:recv() end) end
			end))`,
		"pipeline workers": `
			local p = require("pipeline").new({{name = "a", fn = function(x) return x end, parallel = 1e9}})
			print(pcall(p.collect, p, {1, 2, 3}))`,
	}
	for name, src := range scripts {
		for _, limit := range []int64{2 << 20, 3 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20} {
			rt, out := hostileRuntime(t, func(o *bridge.Options) { o.MemoryLimit = limit })
			err := hostileRun(t, rt, src)
			if !errors.Is(err, bridge.ErrMemoryLimit) {
				t.Errorf("%s, limit %d MiB: %v, want the memory limit's error", name, limit>>20, err)
			}
			servesAfter(t, rt, out)
		}
	}
}
