package bridge_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

func TestChannelDeadlockNamesEachTaskAndLine(t *testing.T) {
	rt, _ := newRuntime(t)
	err := run(t, rt, `
local task, channel = require("task"), require("channel")
local jobs, results = channel.new(), channel.new()
task.spawn({name = "worker"}, function()
  for j in jobs:iter() do results:send(j * 2) end
end)
task.spawn({name = "feeder"}, function() jobs:send(1); jobs:send(2) end)
print(results:recv())`)
	if !errors.Is(err, bridge.ErrDeadlock) {
		t.Fatalf("want a deadlock, got %v", err)
	}
	// Main took one result and ended; the worker blocks sending the second,
	// so the feeder blocks sending its last job: nothing can move.
	for _, want := range []string{"deadlock", "task 'worker' (test:5) waits for a channel send"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %q:\n%s", want, err)
		}
	}
	// The runtime keeps serving.
	mustRun(t, rt, "assert(true)")
}

func TestDeadlockWaitsForTimersAndCalls(t *testing.T) {
	rt, _ := newRuntime(t)
	if err := rt.RegisterFunc("later", func(ctx context.Context, a bridge.Args) ([]any, error) {
		time.Sleep(20 * time.Millisecond)
		return []any{"late"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Every task is blocked on a channel, but a timer and a bridge call
	// can still wake them: no deadlock.
	mustRun(t, rt, `
local task, channel = require("task"), require("channel")
local a, b = channel.new(), channel.new()
setTimeout(function() a:send("timer") end, 10)
task.spawn(function() b:send(later()) end)
assert(a:recv() == "timer")
assert(b:recv() == "late")`)
}

func TestDetachedTaskDoesNotHoldTheRun(t *testing.T) {
	rt, out := newRuntime(t)
	mustRun(t, rt, `
local task = require("task")
task.spawn(function()
  local guard <close> = setmetatable({}, {__close = function() print("daemon cleaned up") end})
  task.sleep(3600)
end):detach()
task.spawn(function() error("daemon failure") end):detach()
task.yield() -- both start; the run does not wait for the sleeper
print("main done")`)
	got := out.String()
	for _, want := range []string{"main done", "daemon cleaned up", "daemon failure"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "main done") > strings.Index(got, "daemon cleaned up") {
		t.Errorf("the daemon was cancelled before main finished:\n%s", got)
	}
}

func TestTimeSlicePreemptsAGreedyLoop(t *testing.T) {
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out, TimeSlice: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	// Without preemption the greedy task never lets the timer, the
	// channel's other side or the main task run, and the run times out.
	mustRun(t, rt, `
local task, channel = require("task"), require("channel")
assert(debug.gethook() == nil, "the scheduler's count hook is not the script's")
local stop, ticks = false, 0
local greedy = task.spawn(function()
  local n = 0
  while not stop do n = n + 1 end
  return n
end)
local third = channel.new(1)
local id = setInterval(function() ticks = ticks + 1; if ticks == 3 then third:send(true) end end, 1)
local ch = channel.new()
task.spawn(function() for i = 1, 3 do ch:send(i) end end)
assert(ch:recv() + ch:recv() + ch:recv() == 6)
third:recv() -- the interval ticks three times while the greedy task runs
stop = true
assert(greedy:wait() > 0)
clearInterval(id)
-- A cancellation reaches a loop that never suspends.
local spin = task.spawn(function() while true do end end)
task.yield()
spin:cancel()
local ok, e = pcall(spin.wait, spin)
assert(not ok and e.kind == "cancelled")`)

	// No slice, no budget, no deadline: no hook, so nothing to pay. (A
	// context with a deadline brings one: see TestDeadlineStopsATightLoop.)
	plain, _ := newRuntime(t)
	if err := plain.RunString(context.Background(), "plain", `assert(debug.gethook() == nil, "no hook")`); err != nil {
		t.Error(err)
	}
}

func TestPriorityGetsMoreTurns(t *testing.T) {
	rt, out := newRuntime(t)
	mustRun(t, rt, `
local task = require("task")
local order = {}
local function loop(tag) for i = 1, 12 do order[#order + 1] = tag; task.yield() end end
local lo = task.spawn({name = "lo", priority = 1}, loop, "l")
local hi = task.spawn({name = "hi", priority = 3}, loop, "H")
lo:wait(); hi:wait()
print(table.concat(order))`)
	got := strings.TrimSpace(out.String())
	// Each round: lo once, hi three times in a row.
	if want := "lHHHlHHHlHHHlHHHllllllll"; got != want {
		t.Errorf("turns %s, want %s", got, want)
	}
}

func TestCancelCancelsThePendingCallsContext(t *testing.T) {
	rt, out := newRuntime(t)
	seen := make(chan error, 1)
	if err := rt.RegisterFunc("block", func(ctx context.Context, a bridge.Args) ([]any, error) {
		<-ctx.Done()
		seen <- ctx.Err()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `
local task = require("task")
local t = task.spawn({name = "caller"}, function()
  local ok, e = pcall(block)
  print("caught", e.kind)
  task.sleep(0.001) -- cleanup may await, then the cancellation comes back
  print("not reached")
end)
task.yield() -- the task starts, and waits in block()
assert(t:cancel("enough") == true)
local ok, e = pcall(t.wait, t)
print(ok, e.kind, e.message, t:status())
assert(t:cancel() == false)`)
	select {
	case err := <-seen:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Go saw %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Go function's context was not cancelled")
	}
	if got, want := out.String(), "caught\tcancelled\nfalse\tcancelled\tenough\tcancelled\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

func TestConcurrencyLeavesNothingBehind(t *testing.T) {
	before := measureLeftBehind()
	for round := 0; round < 3; round++ {
		rt, err := bridge.New(bridge.Options{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.RegisterFunc("nap", func(ctx context.Context, a bridge.Args) ([]any, error) {
			select {
			case <-time.After(time.Millisecond):
			case <-ctx.Done():
			}
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		mustRun(t, rt, `
local task, channel, promise = require("task"), require("channel"), require("promise")
local ch = channel.new(8)
local ts = {}
for i = 1, 200 do
  ts[i] = task.spawn(function() nap(); ch:send(i); task.sleep(1) end)
end
local sum = 0
for i = 1, 200 do sum = sum + ch:recv() end
for i = 1, 200 do ts[i]:cancel() end
assert(sum == 200 * 201 // 2)
local ps = {}
for i = 1, 50 do ps[i] = async(function() nap(); return i end)() end
assert(#promise.all(ps):await() == 50)
assert(select("#", task.race({function() task.sleep(10) end, function() return 1 end})) == 2)`)
		if err := rt.Close(); err != nil {
			t.Fatal(err)
		}
	}
	before.checkNothingLeft(t, false)
}

// A task that returned gives its thread back for the next spawn, results
// or not (its results stay with its Task). After a burst the pool holds
// the burst's threads, lets them go once they sat unused for a whole
// period, and under a MemoryLimit keeps only a few: idle threads must not
// count against a script's memory. Lua's own count of its memory shows it.
func TestTaskThreadsOfABurstAreKeptThenLetGo(t *testing.T) {
	const probe = `
local task = require("task")
local function burst(n)
  local ts = {}
  for i = 1, n do ts[i] = task.spawn(function() task.yield(); return i, "r" end) end
  for i = 1, n do assert(select(2, ts[i]:wait()) == "r") end
end
local function kb() collectgarbage(); collectgarbage(); return collectgarbage("count") end
local base
function probe(periods)
  burst(300)
  base = kb()
  burst(5000)
  local high = kb()
  for _ = 1, periods do -- a thread given back after a period's wait sees it
    task.sleep(1.05)
    task.spawn(function() end):wait()
  end
  return high - base, kb() - base
end
-- Without collecting: what the collector has not freed still counts.
function held() return collectgarbage("count") - base end`
	for _, c := range []struct {
		name             string
		limit            int64
		periods          int
		keptMin, keptMax float64 // KiB over the base after the burst
		afterMax         float64 // and after the periods
		idle             bool    // then the Runtime stays idle: it lets them go too
	}{
		{"no limit", 0, 2, 2048, 1 << 20, 1024, false},
		{"memory limit", 256 << 20, 0, -1 << 20, 1024, 1024, false},
		{"idle", 0, 0, 2048, 1 << 20, 1 << 20, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt, err := bridge.New(bridge.Options{MemoryLimit: c.limit})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			mustRun(t, rt, probe)
			out, err := rt.Call(context.Background(), "probe", c.periods)
			if err != nil {
				t.Fatal(err)
			}
			kept, after := out[0].(float64), out[1].(float64)
			t.Logf("KiB over the base: %.0f after the burst, %.0f after %d periods", kept, after, c.periods)
			if kept < c.keptMin || kept > c.keptMax {
				t.Errorf("after a burst of 5,000 tasks Lua holds %.0f KiB more, want %.0f..%.0f", kept, c.keptMin, c.keptMax)
			}
			if after > c.afterMax {
				t.Errorf("after %d idle periods Lua still holds %.0f KiB more, want at most %.0f", c.periods, after, c.afterMax)
			}
			if c.idle {
				checkIdleRuntimeLetsGo(t, rt)
			}
		})
	}
}

// checkIdleRuntimeLetsGo: a Runtime that goes idle after a burst lets
// its threads go within a few periods (two at most, plus the timer's
// slack), with no spawn to notice. held() spawns one task a poll, which
// allocates far too little to start a collection: only the loop's own
// trim frees the threads.
func checkIdleRuntimeLetsGo(t *testing.T, rt *bridge.Runtime) {
	t.Helper()
	var kept float64
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		out, err := rt.Call(context.Background(), "held")
		if err != nil {
			t.Fatal(err)
		}
		if kept = out[0].(float64); kept < 1024 {
			return
		}
	}
	t.Errorf("an idle Runtime still holds %.0f KiB of a burst's threads after 8 s, want under 1024", kept)
}
