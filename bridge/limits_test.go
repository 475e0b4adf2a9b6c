package bridge_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

func limitError(t *testing.T, err error, op string) *bridge.LuaError {
	t.Helper()
	var le *bridge.LuaError
	if !errors.As(err, &le) || le.Kind != "limit" || le.Op != op {
		t.Fatalf("want a limit error (%s), got %T %v", op, err, err)
	}
	return le
}

func TestMemoryLimit(t *testing.T) {
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out, MemoryLimit: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	// Caught, as in stock Lua: the script goes on once the garbage is gone.
	mustRun(t, rt, `
		local ok, err = pcall(function()
			local t = {}
			for i = 1, 1e8 do t[i] = ("x"):rep(64) .. i end
		end)
		print(ok, err)
		local t = {}
		for i = 1, 1000 do t[i] = i end
		print(#t)`)
	if got := out.String(); got != "false\tnot enough memory\n1000\n" {
		t.Errorf("output %q", got)
	}

	// Uncaught, in a task: the run fails with a limit error.
	err = run(t, rt, `
		local task = require("task")
		task.spawn(function()
			local t = {}
			for i = 1, 1e8 do t[i] = {i} end
		end):wait()`)
	le := limitError(t, err, "memory")
	if !errors.Is(err, bridge.ErrMemoryLimit) || errors.Is(err, bridge.ErrInstructionLimit) || le.Message != "not enough memory" {
		t.Errorf("errors.Is and message: %v", err)
	}

	// The Runtime keeps serving: a run within the limit succeeds.
	out.Reset()
	mustRun(t, rt, `local s = ("y"):rep(1 << 20); print(#s)`)
	if out.String() != "1048576\n" {
		t.Errorf("after the limit: %q", out.String())
	}
}

func TestInstructionLimitEndsTightLoops(t *testing.T) {
	rt, err := bridge.New(bridge.Options{InstructionLimit: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	for _, src := range []string{
		`while true do end`,
		// A script that catches every error cannot swallow the limit.
		`while true do pcall(function() while true do end end) end`,
		`while true do local co = coroutine.create(function() while true do end end); coroutine.resume(co) end`,
		// Tasks share the run's budget.
		`local task = require("task")
		 for i = 1, 4 do task.spawn(function() while true do task.yield() end end) end`,
	} {
		err := run(t, rt, src)
		limitError(t, err, "instructions")
		if !errors.Is(err, bridge.ErrInstructionLimit) {
			t.Errorf("%s: %v is not ErrInstructionLimit", src, err)
		}
	}
	// Within the budget: fine, and each run has its own.
	for range 3 {
		mustRun(t, rt, `local s = 0; for i = 1, 100000 do s = s + i end; assert(s == 5000050000)`)
	}
}

func TestDeadlineStopsATightLoop(t *testing.T) {
	rt, _ := newRuntime(t)
	for _, src := range []string{
		`while true do end`,
		`while true do pcall(function() while true do end end) end`,
		`require("task").sleep(60)`, // suspended: the context's own path
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := rt.RunString(ctx, "loop", src)
		cancel()
		limitError(t, err, "deadline")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v is not DeadlineExceeded", src, err)
		}
	}
	// Inside Lua the error has kind "limit" too, seen by a task's cleanup.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	out := &syncBuffer{}
	rt2, err := bridge.New(bridge.Options{Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	err = rt2.RunString(ctx, "loop", `
		local ok, e = xpcall(function() while true do end end, function(e) print("seen:", e.kind, e.op) return e end)`)
	limitError(t, err, "deadline")
	if out.String() != "seen:\tlimit\tdeadline\n" {
		t.Errorf("inside Lua: %q", out.String())
	}
	mustRun(t, rt, `print("still serving")`)
}

// A count hook sees a thread's instructions in whole periods, and a thread
// that ends inside its first period was never seen at all: 2,000 tasks
// (or coroutines) of about 600 instructions each, 1.2 million in all, ran
// to completion under a budget of 100,000. Each must be charged.
func TestInstructionLimitCountsShortTasks(t *testing.T) {
	rt, err := bridge.New(bridge.Options{InstructionLimit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	const work = `local s = 0; for i = 1, 150 do s = s + i end; return s`
	for name, src := range map[string]string{
		"tasks": `local task = require("task")
			local ts = {}
			for i = 1, 2000 do ts[i] = task.spawn(function() ` + work + ` end) end
			for i = 1, 2000 do assert(ts[i]:wait() == 11325) end`,
		"coroutines": `for i = 1, 2000 do assert(coroutine.wrap(function() ` + work + ` end)() == 11325) end`,
		"created coroutines": `for i = 1, 2000 do
				local ok, s = coroutine.resume(coroutine.create(function() ` + work + ` end))
				assert(ok and s == 11325)
			end`,
	} {
		err := run(t, rt, src)
		if !errors.Is(err, bridge.ErrInstructionLimit) {
			t.Errorf("%s: 1.2 million instructions under a budget of 100,000 ended with %v, want ErrInstructionLimit", name, err)
		}
	}
	// One of them is well within the budget.
	mustRun(t, rt, `local task = require("task"); assert(task.spawn(function() `+work+` end):wait() == 11325)`)
	mustRun(t, rt, `assert(coroutine.wrap(function() `+work+` end)() == 11325)`)
}

// Running out of memory in a task that does not catch it ends the run at
// once with a limit error carrying that task's traceback, where it ran out:
// the other tasks do not wait on for what it will never do (here, main
// would wait for ever: the run used to end in a deadlock report), and
// nothing more is reported on stderr. The same for a promise handler's,
// whose promise is awaited: its memory error is not a rejection to catch.
func TestOutOfMemoryInATaskEndsTheRun(t *testing.T) {
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out, MemoryLimit: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	for name, src := range map[string]string{ // each runs out of memory at line 5
		"task": `local task, channel = require("task"), require("channel")
local ch = channel.new()
task.spawn({name = "hog"}, function()
  local t = {}
  for i = 1, 1e8 do t[i] = {i} end
  ch:send("never")
end)
print(ch:recv())`,
		// awaited: a rejection would hand main a bare message to catch
		"promise handler": `local promise = require("promise")
local p = promise.resolve(1)
local d = p:andThen(function()
  local t = {}
  for i = 1, 1e8 do t[i] = {i} end
end)
print(pcall(d.await, d))`,
		// inside a user coroutine of the task: the traceback is the
		// coroutine's, where it ran out, not the task's resume
		"coroutine in a task": `local task, channel = require("task"), require("channel")
local ch = channel.new()
task.spawn({name = "gen"}, function()
  local gen = coroutine.wrap(function() local t = {}
    for i = 1, 1e8 do t[i] = {i} end
  end)
  gen()
  ch:send("never")
end)
print(ch:recv())`,
	} {
		out.Reset()
		err := run(t, rt, src)
		le := limitError(t, err, "memory")
		if !errors.Is(err, bridge.ErrMemoryLimit) || le.Message != "not enough memory" {
			t.Errorf("%s: %v", name, err)
		}
		for _, want := range []string{"in task ", "stack traceback:", "test:5:"} {
			if !strings.Contains(le.Traceback, want) {
				t.Errorf("%s: the traceback lacks %q:\n%s", name, want, le.Traceback)
			}
		}
		if out.String() != "" {
			t.Errorf("%s: output besides the run's error: %q", name, out.String())
		}
		mustRun(t, rt, `local s = ("y"):rep(1 << 20); assert(#s == 1048576)`)
	}
}
