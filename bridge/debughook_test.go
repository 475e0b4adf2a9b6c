package bridge_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// debug.sethook works outside the sandbox as in stock Lua, beside the
// scheduler's own count hook (a run's deadline, here the test's 30 s,
// keeps that hook on): line, call and return hooks see what stock
// lua5.4 shows, a hook lasts across the task's turns, debug.gethook shows
// the script's hook alone, and a count hook keeps its own period.
func TestDebugSetHookWorksBesideTheScheduler(t *testing.T) {
	rt, out := newRuntime(t)
	mustRun(t, rt, `
		local task = require("task")
		-- a coroutine's trace, as in Lua's own coroutine.lua
		local co = coroutine.create(function()
			coroutine.yield(10)
			return 20
		end)
		local trace = {}
		debug.sethook(co, function(e) trace[#trace + 1] = e end, "clr")
		repeat until not coroutine.resume(co)
		print(table.concat(trace, " "))
		-- a line hook on the task's own thread, through ten turns
		local lines = 0
		debug.sethook(function(e, line) lines = lines + 1 end, "l")
		local f, mask, count = debug.gethook()
		print(type(f), mask, count)
		for i = 1, 10 do task.yield() end
		debug.sethook()
		print(lines > 10, debug.gethook())
		-- a count hook of 1 and one of 4, as in Lua's own db.lua
		local a = 0
		debug.sethook(function() a = a + 1 end, "", 1)
		a = 0; for i = 1, 1000 do end
		local one = a
		debug.sethook(function() a = a + 1 end, "", 4)
		a = 0; for i = 1, 1000 do end
		debug.sethook()
		print(1000 < one and one < 1012, 250 < a and a < 255)`)
	want := "call line call return line return\nfunction\tl\t0\ntrue\tnil\ntrue\ttrue\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

// A script cannot take the scheduler's hook away: debug.sethook() (or a
// loop of changes) leaves the instruction limit and the deadline in force.
// Before, `debug.sethook() while true do end` ran forever under both.
func TestDebugSetHookCannotRemoveTheLimits(t *testing.T) {
	loops := map[string]string{
		"hook removed":        `debug.sethook() while true do end`,
		"hook replaced":       `debug.sethook(function() end, "c") while true do end`,
		"hooks set and reset": `while true do debug.sethook(function() end, "l") debug.sethook() end`,
	}
	for name, src := range loops {
		t.Run(name+", instruction limit", func(t *testing.T) {
			rt, err := bridge.New(bridge.Options{InstructionLimit: 5_000_000})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			err, ok := within(hostileHang, func() error { return rt.RunString(context.Background(), "spin", src) })
			if !ok {
				t.Fatalf("still running after %v", hostileHang)
			}
			wantKind(t, err, "limit", "instructions")
		})
		t.Run(name+", deadline", func(t *testing.T) {
			rt, err := bridge.New(bridge.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err, ok := within(hostileHang, func() error { return rt.RunString(ctx, "spin", src) })
			if !ok {
				t.Fatalf("still running after %v", hostileHang)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the run: %v", err)
			}
		})
	}
}

// A hook belongs to the run that set it: a coroutine kept in a global,
// resumed by a later run, does not run the earlier run's hook there, and
// a task's thread going back to the pool takes no hook to the next task.
func TestDebugSetHookStaysInItsRun(t *testing.T) {
	rt, out := newRuntime(t)
	mustRun(t, rt, `
		co = coroutine.create(function() while true do coroutine.yield() end end)
		hits = 0
		debug.sethook(co, function() hits = hits + 1 end, "l")
		coroutine.resume(co)
		print(hits > 0)`)
	mustRun(t, rt, `
		hits = 0
		coroutine.resume(co); coroutine.resume(co)
		print(hits, debug.gethook(co))`)
	mustRun(t, rt, `
		local task = require("task")
		for i = 1, 20 do
			task.spawn(function() debug.sethook(function() end, "l") end):wait()
			local f = task.spawn(function() return debug.gethook() end):wait()
			if f ~= nil then print("a new task has a hook") end
		end
		print("ok")`)
	if want := "true\n0\tnil\nok\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if strings.Contains(out.String(), "a new task has a hook") {
		t.Error("a pooled thread kept its task's hook")
	}
}
