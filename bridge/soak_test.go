package bridge_test

// The soak test: many tasks through bridge calls where Go randomly
// succeeds, errors, panics, delays or hangs until cancelled, with random
// task cancellation and every outcome sent over a channel. It proves that
// each task's outcome arrived exactly once or was reported cancelled, that
// nothing is left (goroutines, OS threads, libuv handles, Lua or C bytes),
// and that memory stays flat from round to round.
//
//	go test -run TestSoak ./bridge                    # short: 20,000 tasks
//	go test -run TestSoak -v ./bridge -args -soak=1000000   # the long form

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/cheap"
	"github.com/moonbridge/moonbridge/internal/leaks"
)

var soakTasks = flag.Int("soak", 20_000, "tasks in TestSoak, over all its rounds")

// soakScript runs n tasks, at most batch at a time. Task id calls
// work(id, mode); a collector task receives each outcome over a channel.
// It returns one letter per id (o: the result, e: an error, p: a panic,
// c: cancelled) and Lua's memory after a full collection, in KiB.
const soakScript = `
local task, channel = require("task"), require("channel")

function soak(n, batch, seed)
math.randomseed(seed)

local outcomes = channel.new(64)
local seen = {}
local collector = task.spawn(function()
  for o in outcomes:iter() do
    local id, what = o[1], o[2]
    if seen[id + 1] then error("a second outcome for task " .. id) end
    seen[id + 1] = what
  end
end)

local function run(id, mode)
  local ok, r = pcall(work, id, mode)
  local what
  if ok then
    if r ~= id * 2 then error("task " .. id .. " got " .. tostring(r)) end
    what = "o"
  elseif r.kind == "cancelled" then
    error(r, 0)                               -- it ends as cancelled
  elseif r.message:find("panic", 1, true) then
    what = "p"
  else
    what = "e"
  end
  outcomes:send({id, what})
end

for base = 0, n - 1, batch do
  local ts, ids, doomed = {}, {}, {}
  for id = base, math.min(base + batch, n) - 1 do
    local mode = math.random(100)
    local t = task.spawn(run, id, mode)
    ts[#ts + 1], ids[#ts + 1] = t, id
    if mode > 90 or math.random(100) <= 3 then doomed[#doomed + 1] = t end
  end
  task.sleep(0.0005 * math.random(0, 2))     -- some have started, some not
  for _, t in ipairs(doomed) do t:cancel() end
  for i, t in ipairs(ts) do
    pcall(t.wait, t)
    if t:status() == "cancelled" then outcomes:send({ids[i], "c"}) end
  end
end
outcomes:close()
collector:wait()
for i = 1, n do
  if not seen[i] then error("no outcome for task " .. (i - 1)) end
end
seen = table.concat(seen)
collectgarbage(); collectgarbage()
return seen, collectgarbage("count")
end
`

// soakWork is the Go side: mode picks what it does, and calls[id] counts
// how many times it ran for each task.
func soakWork(calls []atomic.Int32) bridge.Func {
	return func(ctx context.Context, args bridge.Args) ([]any, error) {
		id, _ := args.Int(0)
		mode, _ := args.Int(1)
		calls[id].Add(1)
		switch {
		case mode <= 55:
			return []any{id * 2}, nil
		case mode <= 65:
			return nil, fmt.Errorf("task %d: refused", id)
		case mode <= 70:
			panic(fmt.Sprintf("task %d: boom", id))
		case mode <= 90:
			select {
			case <-time.After(time.Duration(rand.IntN(1000)) * time.Microsecond):
				return []any{id * 2}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		<-ctx.Done() // hangs until its task is cancelled
		return nil, ctx.Err()
	}
}

func osThreads(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("counting OS threads: %v", err)
	}
	var n int
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			fmt.Sscan(v, &n)
		}
	}
	return n
}

type soakRound struct {
	luaKiB, cHeap int64
	threads       int
}

// exactHeap is the glibc tunable that turns malloc's per-thread caches
// off. Chunks parked in those caches count as in use in mallinfo2, and
// which thread frees what varies from run to run, so with the caches on
// the C heap drifts by a few KiB a round with not a byte leaked. Tunables
// are read at start-up, so TestSoak runs itself again with this set.
const exactHeap = "glibc.malloc.tcache_count=0"

func TestSoak(t *testing.T) {
	if !strings.Contains(os.Getenv("GLIBC_TUNABLES"), exactHeap) {
		soakInChild(t)
		return
	}
	total := *soakTasks
	rounds := 4
	if total >= 200_000 {
		rounds = 10
	}
	per := total / rounds
	// A first Runtime warms the process up (malloc's arenas and caches,
	// libuv's and Go's one-time state), so the C heap measured around the
	// soak's own Runtime is the soak's.
	warm, err := bridge.New(bridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	warm.RegisterFunc("work", soakWork(make([]atomic.Int32, 100)))
	mustRun(t, warm, soakScript+` soak(100, 50, 1)`)
	warm.Close()

	goroutines := runtime.NumGoroutine()
	leakedLua, leakedLoops := leaks.Counts()
	cHeapBefore := cheap.Bytes()

	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	calls := make([]atomic.Int32, per)
	if err := rt.RegisterFunc("work", soakWork(calls)); err != nil {
		t.Fatal(err)
	}
	if err := rt.RunString(context.Background(), "soak", soakScript); err != nil {
		t.Fatal(err)
	}
	var history []soakRound
	start := time.Now()
	counts := map[byte]int{}
	for round := range rounds {
		for i := range calls {
			calls[i].Store(0)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		out, err := rt.Call(ctx, "soak", per, 2000, round+1)
		cancel()
		if err != nil {
			var le *bridge.LuaError
			if errors.As(err, &le) {
				t.Fatalf("round %d: %v\n%s", round, err, le.Traceback)
			}
			t.Fatalf("round %d: %v", round, err)
		}
		seen := out[0].(string)
		for id := range per {
			n := calls[id].Load()
			switch seen[id] {
			case 'o', 'e', 'p': // the task got the call's outcome: Go ran it once
				if n != 1 {
					t.Fatalf("round %d: task %d got an outcome but Go ran %d times", round, id, n)
				}
			case 'c': // cancelled before or during its call
				if n > 1 {
					t.Fatalf("round %d: task %d: Go ran %d times", round, id, n)
				}
			default:
				t.Fatalf("round %d: task %d: outcome %q", round, id, seen[id])
			}
			counts[seen[id]]++
		}
		runtime.GC()
		history = append(history, soakRound{luaKiB: int64(out[1].(float64)), cHeap: cheap.Bytes(), threads: osThreads(t)})
		t.Logf("round %d: %d tasks, Lua %d KiB, C heap %d KiB, %d OS threads, %d goroutines",
			round, per, history[round].luaKiB, history[round].cHeap>>10, history[round].threads, runtime.NumGoroutine())
	}
	elapsed := time.Since(start)
	t.Logf("%d tasks in %v (%.1f µs/task): %d results, %d errors, %d panics, %d cancelled",
		per*rounds, elapsed.Round(time.Millisecond), float64(elapsed.Microseconds())/float64(per*rounds),
		counts['o'], counts['e'], counts['p'], counts['c'])
	if counts['o'] == 0 || counts['e'] == 0 || counts['p'] == 0 || counts['c'] == 0 {
		t.Errorf("a kind of outcome never happened: %v", counts)
	}

	// Flat: the last round holds no more than the second (the first warms
	// pools and caches up), give or take 10 % and 1 MiB.
	second, last := history[1], history[len(history)-1]
	if last.luaKiB > second.luaKiB*11/10+1024 {
		t.Errorf("Lua memory grew from %d to %d KiB", second.luaKiB, last.luaKiB)
	}
	if last.cHeap > second.cHeap+slackC {
		t.Errorf("C heap grew from %d to %d bytes", second.cHeap, last.cHeap)
	}
	if last.threads > second.threads+2 {
		t.Errorf("OS threads grew from %d to %d", second.threads, last.threads)
	}

	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	checkGoroutines(t, goroutines)
	// Go's runtime keeps the threads it started, idle; the C core starts
	// none (no libuv thread pool), so Close adds none either.
	if n, peak := osThreads(t), slices.MaxFunc(history, func(a, b soakRound) int { return a.threads - b.threads }).threads; n > peak {
		t.Errorf("OS threads: %d after Close, at most %d during the soak", n, peak)
	}
	if lua, loops := leaks.Counts(); lua != leakedLua || loops != leakedLoops {
		t.Errorf("left behind: %d Lua bytes, %d loops with open handles", lua-leakedLua, loops-leakedLoops)
	}
	// The C heap is the process's, so a thread the Go runtime started
	// meanwhile may own a few bytes of it; a byte leaked per task would be
	// 20 KB in the short form. LeakSanitizer checks the rest under make asan.
	left := cheap.Bytes() - cHeapBefore
	t.Logf("after Close: C heap %+d bytes since before New; peak Lua %d KiB", left, slices.MaxFunc(history, func(a, b soakRound) int { return int(a.luaKiB - b.luaKiB) }).luaKiB)
	if left > slackC {
		t.Errorf("C heap: %d bytes more than before New", left)
	}
}

// slackC is how much the C heap may differ without a leak: Lua's own
// heap (allocated from malloc) varies by a few hundred bytes after a full
// collection, and new OS threads take a little.
const slackC = 16 << 10

// soakInChild runs TestSoak in a child process of this test binary with
// malloc's thread caches off, passing its flags on, and relays its report.
func soakInChild(t *testing.T) {
	args := []string{"-test.run=^TestSoak$", "-test.v", "-test.count=1", fmt.Sprintf("-soak=%d", *soakTasks)}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GLIBC_TUNABLES="+strings.TrimPrefix(os.Getenv("GLIBC_TUNABLES")+":"+exactHeap, ":"))
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("the soak (run with %s): %v", exactHeap, err)
	}
	if !strings.Contains(string(out), "--- PASS: TestSoak") {
		t.Fatalf("the soak's child process ran no TestSoak")
	}
}
