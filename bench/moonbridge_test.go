package bench

// The moonbridge side of the workloads: the same Lua text, run as tasks on
// moonbridge's loop. async_inc is a registered Go function (each call runs
// in a goroutine; the task suspends until it completes), sync_inc an
// Inline one (runs on the loop thread).

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

func init() {
	Register(Impl{
		Name:                "moonbridge",
		RoundTripSeq:        mbRoundTripSeq,
		RoundTripConcurrent: mbRoundTripConcurrent,
		SyncCall:            mbSyncCall,
		SpawnFinish:         mbSpawnFinish,
		YieldSwitch:         mbYieldSwitch,
		CallFromGo:          mbCallFromGo,
		SuspendedMemory:     mbSuspendedMemory,
		Fib:                 mbFib,
		StringBuild:         mbStringBuild,
		ChannelPingPong:     mbChannelPingPong,
		SelectEight:         mbSelectEight,
		PromiseChain:        mbPromiseChain,
		Pipeline3:           mbPipeline3,
		SleepingTasks:       mbSleepingTasks,
		StreamChunks:        mbStreamChunks,
		GenerateAll:         mbGenerateAll,
		FanOut:              mbFanOut,
	})
}

// mbRuntime makes a Runtime with async_inc, sync_inc, go_sleep and, for
// each named workload, a global function running its text.
func mbRuntime(b *testing.B, block chan struct{}, workloads map[string]string) *bridge.Runtime {
	return mbRuntimeStarted(b, block, nil, workloads)
}

// mbRuntimeStarted is mbRuntime; with block set, async_inc calls started
// (if not nil) as it starts to wait.
func mbRuntimeStarted(b *testing.B, block chan struct{}, started func(), workloads map[string]string) *bridge.Runtime {
	b.Helper()
	return mbRuntimeWith(b, func(ctx context.Context, x int64) ([]any, error) {
		if block != nil {
			if started != nil {
				started()
			}
			select {
			case <-block:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return []any{x + 1}, nil
	}, workloads)
}

// mbRuntimeWith is mbRuntime with inc as async_inc's Go side.
func mbRuntimeWith(b *testing.B, inc func(context.Context, int64) ([]any, error), workloads map[string]string) *bridge.Runtime {
	b.Helper()
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	must(b, rt.RegisterFunc("async_inc", func(ctx context.Context, a bridge.Args) ([]any, error) {
		x, err := a.Int(0)
		if err != nil {
			return nil, err
		}
		return inc(ctx, x)
	}))
	must(b, rt.RegisterFunc("sync_inc", func(ctx context.Context, a bridge.Args) ([]any, error) {
		x, err := a.Int(0)
		return []any{x + 1}, err
	}, bridge.Inline()))
	must(b, rt.RegisterFunc("go_sleep", func(ctx context.Context, a bridge.Args) ([]any, error) {
		ms, err := a.Int(0)
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return []any{ms}, nil
	}))
	src := "task = require('task')\n"
	for name, body := range workloads {
		src += fmt.Sprintf("function %s(...)\n%s\nend\n", name, body)
	}
	must(b, rt.RunString(context.Background(), "setup", src))
	return rt
}

// mbCall is on the hot path of CallFromGo: no b.Helper (it walks the stack).
func mbCall(b *testing.B, rt *bridge.Runtime, fn string, args ...any) []any {
	out, err := rt.Call(context.Background(), fn, args...)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func checkN(b *testing.B, out []any, want int) {
	b.Helper()
	if len(out) == 0 || out[0] != int64(want) {
		b.Fatalf("got %v, want %d", out, want)
	}
}

// mbLoopN times one Call of the workload fn, whose loop makes b.N units
// of work and returns b.N.
func mbLoopN(b *testing.B, fn string, workloads map[string]string) {
	rt := mbRuntime(b, nil, workloads)
	defer rt.Close()
	b.ReportAllocs()
	b.ResetTimer()
	out := mbCall(b, rt, fn, b.N)
	b.StopTimer()
	checkN(b, out, b.N)
}

func mbRoundTripSeq(b *testing.B) {
	mbLoopN(b, "seq", map[string]string{"seq": RoundTripSeqLua})
}

func mbRoundTripConcurrent(b *testing.B) {
	rt := mbRuntime(b, nil, map[string]string{
		"body": RoundTripConcurrentLua,
		"concurrent": `
local tasks, calls = ...
local ts = {}
for i = 1, tasks do ts[i] = task.spawn(body, calls) end
local sum = 0
for i = 1, tasks do sum = sum + ts[i]:wait() end
return sum`,
	})
	defer rt.Close()
	trips := b.N * ConcurrentTasks * ConcurrentCallsEach
	cpu := processCPU()
	el := ReportPerUnit(b, trips, func() {
		for i := 0; i < b.N; i++ {
			out := mbCall(b, rt, "concurrent", ConcurrentTasks, ConcurrentCallsEach)
			checkN(b, out, ConcurrentTasks*ConcurrentCallsEach)
		}
	})
	b.ReportMetric(float64(processCPU()-cpu)/float64(trips), "cpu-ns/op")
	b.ReportMetric(float64(trips)/el.Seconds(), "trips/s")
}

func mbSyncCall(b *testing.B) {
	mbLoopN(b, "sync", map[string]string{"sync": SyncCallLua})
}

// mbSpawnFinish spawns b.N tasks, each running the empty body and then
// counting itself (an upvalue increment, as gopher-lua's side counts in
// OnDone), and returns how many finished: all of them, or it fails.
func mbSpawnFinish(b *testing.B) {
	mbLoopN(b, "spawn", map[string]string{
		"empty": SpawnFinishLua,
		"spawn": `
local n = ...
local spawn, yield, empty = task.spawn, task.yield, empty
local finished = 0
local function body() empty(); finished = finished + 1 end
for i = 1, n do
  spawn(body)
  if i % 256 == 0 then yield() end -- let the spawned ones run and finish
end
yield()
return finished`,
	})
}

func mbYieldSwitch(b *testing.B) {
	rt := mbRuntime(b, nil, map[string]string{
		// At a task's root coroutine.yield is stock's main-thread error;
		// task.yield is the scheduler's round robin.
		// Each task counts the times it was resumed after a yield (the
		// counts add up to every switch made, or the run fails) and checks
		// that another task ran meanwhile: every task moves the shared
		// count before each yield and once more when it ends.
		"body": `local n, shared = ...
local yield = task.yield
local resumed = 0
for i = 1, n do
  local before = shared.moves + 1
  shared.moves = before
  yield()
  if shared.moves == before then error("no other task ran during a yield") end
  resumed = resumed + 1
end
shared.moves = shared.moves + 1
return resumed`,
		"switch": `
local tasks, n = ...
local ts, shared = {}, {moves = 0}
for i = 1, tasks do ts[i] = task.spawn(body, n, shared) end
local switches = 0
for i = 1, tasks do switches = switches + ts[i]:wait() end
return switches`,
	})
	defer rt.Close()
	per := b.N/YieldTasks + 1
	ReportPerUnit(b, YieldTasks*per, func() {
		out := mbCall(b, rt, "switch", YieldTasks, per)
		checkN(b, out, YieldTasks*per)
	})
}

func mbCallFromGo(b *testing.B) {
	rt := mbRuntime(b, nil, nil)
	defer rt.Close()
	must(b, rt.RunString(context.Background(), "add", CallFromGoLua))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := mbCall(b, rt, "add", i, 1)
		if out[0] != int64(i+1) {
			b.Fatalf("got %v", out)
		}
	}
}

// mbSuspendedMemory parks SuspendedTasks tasks in async_inc calls whose Go
// side waits, and counts every byte they hold: the Go heap (goroutines'
// records, contexts), the C heap (Lua threads, task records, call
// records), as glibc's allocator reports it, after both GCs, and the
// goroutines' stacks; totalB/task is the three together. It measures once
// every call is in Go (each counts itself in), and checks that every call
// then returns and the run ends without an error.
func mbSuspendedMemory(b *testing.B) {
	var goHeap, cHeap, stack float64
	var el time.Duration
	for i := 0; i < b.N; i++ {
		g0 := runtime.NumGoroutine()
		block := make(chan struct{})
		parked := make(chan struct{})
		var entered, returned atomic.Int64
		allIn := make(chan struct{})
		rt := mbRuntimeWith(b, func(ctx context.Context, x int64) ([]any, error) {
			if entered.Add(1) == SuspendedTasks {
				close(allIn)
			}
			select {
			case <-block:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			returned.Add(1)
			return []any{x + 1}, nil
		}, map[string]string{"body": SuspendedMemoryLua})
		must(b, rt.RegisterFunc("parked", func(ctx context.Context, a bridge.Args) ([]any, error) {
			close(parked)
			return nil, nil
		}, bridge.Inline()))
		must(b, rt.RunString(context.Background(), "warm", "collectgarbage(); collectgarbage()"))
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		c0 := CHeapInUse()
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			done <- rt.RunString(context.Background(), "park", fmt.Sprintf(`
for i = 1, %d do task.spawn(body) end
task.yield() -- every task runs to its call
collectgarbage(); collectgarbage()
parked()`, SuspendedTasks))
		}()
		<-parked
		el += time.Since(start)
		select { // every call is in Go, waiting: what is counted
		case <-allIn:
		case err := <-done:
			b.Fatalf("the tasks ended before their calls were all in Go: %v", err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		c1 := CHeapInUse()
		goHeap += float64(int64(m1.HeapAlloc) - int64(m0.HeapAlloc))
		stack += float64(int64(m1.StackInuse) - int64(m0.StackInuse))
		cHeap += float64(int64(c1) - int64(c0))
		close(block)
		must(b, <-done)
		rt.Close()
		if n := returned.Load(); n != SuspendedTasks {
			b.Fatalf("%d of %d suspended calls returned", n, SuspendedTasks)
		}
		WaitGoroutines(g0)
	}
	tasks := float64(b.N) * SuspendedTasks
	b.ReportMetric((goHeap+cHeap)/tasks, "B/task")
	b.ReportMetric(cHeap/tasks, "cB/task")
	b.ReportMetric(stack/tasks, "stackB/task")
	b.ReportMetric((goHeap+cHeap+stack)/tasks, "totalB/task")
	b.ReportMetric(float64(el.Nanoseconds())/tasks, "ns/op")
}

// mbFanOut: FanOutTasks tasks each making one go_sleep call, b.N times;
// the sum of their results is checked.
func mbFanOut(b *testing.B) {
	rt := mbRuntime(b, nil, map[string]string{
		"body": FanOutLua,
		"fanout": `
local tasks, ms = ...
local ts = {}
for i = 1, tasks do ts[i] = task.spawn(body, ms) end
local sum = 0
for i = 1, tasks do sum = sum + ts[i]:wait() end
return sum`,
	})
	defer rt.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		out := mbCall(b, rt, "fanout", FanOutTasks, FanOutSleepMs)
		checkN(b, out, FanOutTasks*FanOutSleepMs)
	}
}

func mbFib(b *testing.B) {
	rt := mbRuntime(b, nil, map[string]string{"fib": FibLua})
	defer rt.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		checkN(b, mbCall(b, rt, "fib", FibN), FibResult)
	}
}

func mbStringBuild(b *testing.B) {
	rt := mbRuntime(b, nil, map[string]string{"build": StringBuildLua})
	defer rt.Close()
	b.ResetTimer()
	want := int64(StringBuildLen(StringBuildN))
	for i := 0; i < b.N; i++ {
		out := mbCall(b, rt, "build", StringBuildN)
		if n, _ := out[0].(int64); n != want {
			b.Fatalf("got %v, want %d", out, want)
		}
	}
}

// mbPerUnit makes a Runtime with the workloads, then times one Call of fn
// with args, which does `units` units of work in all, and checks that its
// first result is want. setup, if not empty, runs before the timing.
func mbPerUnit(b *testing.B, workloads map[string]string, setup, fn string, units int, want int64, args ...any) time.Duration {
	b.Helper()
	rt := mbRuntime(b, nil, workloads)
	defer rt.Close()
	if setup != "" {
		must(b, rt.RunString(context.Background(), "setup", setup))
	}
	var out []any
	el := ReportPerUnit(b, units, func() { out = mbCall(b, rt, fn, args...) })
	if len(out) == 0 || out[0] != want {
		b.Fatalf("%s: got %v, want %d", fn, out, want)
	}
	return el
}

// sumTo is 1 + 2 + ... + n.
func sumTo(n int) int64 { return int64(n) * int64(n+1) / 2 }

func mbChannelPingPong(b *testing.B) {
	mbPerUnit(b, map[string]string{"pingpong": MBChannelPingPongLua}, "",
		"pingpong", 2*b.N, sumTo(b.N), b.N)
}

func mbSelectEight(b *testing.B) {
	mbPerUnit(b, map[string]string{"produce": SelectProducerLua, "consume": MBSelectConsumerLua}, "",
		"consume", b.N, sumTo(b.N), b.N)
}

func mbPromiseChain(b *testing.B) {
	mbPerUnit(b, map[string]string{"chains": MBPromiseChainLua}, "",
		"chains", b.N*PromiseChainLen, int64(b.N)*PromiseChainLen, b.N, PromiseChainLen)
}

func mbPipeline3(b *testing.B) {
	items := b.N * PipelineItems
	el := mbPerUnit(b, map[string]string{"mkitems": PipelineItemsLua, "pipe": MBPipeline3Lua},
		fmt.Sprintf("mkitems(%d)", PipelineItems),
		"pipe", items, int64(items), b.N, PipelineItems)
	b.ReportMetric(float64(items)/el.Seconds(), "items/s")
}

// mbSleepFigures are one SleepingTasks batch's measurements.
type mbSleepFigures struct {
	el, cancel                         time.Duration
	goHeap, cHeap, luaHeap, stack, rss int64
	allocB, allocN                     uint64
}

// mbSleepBatch parks n tasks in task.sleep(3600) on a new Runtime and
// counts what they hold as mbSuspendedMemory does: the Go heap and the C
// heap (Lua's allocations are C malloc), after both GCs; the Lua heap's own
// growth (collectgarbage("count")) comes back from the script as a
// cross-check. el is the time from the Call until every task sleeps. The
// script then cancels every task and checks that each one ended cancelled;
// cancel is the time that takes (from the release of parked until the
// Call returns).
func mbSleepBatch(b *testing.B, n int) mbSleepFigures {
	b.Helper()
	ctx := context.Background()
	spawned := make(chan struct{})
	parked := make(chan struct{})
	release := make(chan struct{})
	rt := mbRuntime(b, nil, map[string]string{"body": SleepingLua, "sleepers": MBSleepersLua})
	defer rt.Close()
	must(b, rt.RegisterFunc("spawned", func(ctx context.Context, a bridge.Args) ([]any, error) {
		close(spawned)
		return nil, nil
	}, bridge.Inline()))
	must(b, rt.RegisterFunc("parked", func(ctx context.Context, a bridge.Args) ([]any, error) {
		close(parked)
		select {
		case <-release:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	must(b, rt.RunString(ctx, "warm", "sleep = task.sleep; collectgarbage(); collectgarbage()"))
	type result struct {
		out []any
		err error
	}
	var f mbSleepFigures
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	c0, r0 := CHeapInUse(), RSSBytes()
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		out, err := rt.Call(ctx, "sleepers", n)
		done <- result{out, err}
	}()
	for _, ch := range []chan struct{}{spawned, parked} {
		select {
		case <-ch:
		case r := <-done:
			b.Fatalf("sleepers ended early: %v %v", r.out, r.err)
		}
		if ch == spawned {
			f.el = time.Since(start)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	f.cHeap, f.rss = CHeapInUse()-c0, RSSBytes()-r0
	f.goHeap = int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	f.stack = int64(m1.StackInuse) - int64(m0.StackInuse)
	f.allocB, f.allocN = m1.TotalAlloc-m0.TotalAlloc, m1.Mallocs-m0.Mallocs
	close(release)
	cancelStart := time.Now()
	r := <-done
	f.cancel = time.Since(cancelStart)
	must(b, r.err)
	if len(r.out) != 2 || r.out[0] != int64(n) {
		b.Fatalf("sleepers: got %v, want %d cancelled tasks", r.out, n)
	}
	f.luaHeap, _ = r.out[1].(int64)
	return f
}

// mbSleepingTasks: a first batch kept apart (SleepingCold),
// then b.N batches of SleepingCount() tasks, as glSleepingTasks.
func mbSleepingTasks(b *testing.B) {
	n := SleepingCount()
	b.StopTimer()
	cold := ColdBatch(b, func() SleepingCold {
		first := mbSleepBatch(b, n)
		return SleepingCold{Elapsed: first.el, RSS: first.rss}
	})
	var sum mbSleepFigures
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		f := mbSleepBatch(b, n)
		sum.el += f.el
		sum.cancel += f.cancel
		sum.goHeap += f.goHeap
		sum.cHeap += f.cHeap
		sum.luaHeap += f.luaHeap
		sum.stack += f.stack
		sum.allocB += f.allocB
		sum.allocN += f.allocN
	}
	b.StopTimer()
	tasks := float64(b.N) * float64(n)
	b.ReportMetric(float64(sum.goHeap+sum.cHeap)/tasks, "B/task")
	b.ReportMetric(float64(sum.cHeap)/tasks, "cB/task")
	b.ReportMetric(float64(sum.luaHeap)/tasks, "luaB/task")
	b.ReportMetric(float64(sum.stack)/tasks, "stackB/task")
	b.ReportMetric(float64(sum.el.Nanoseconds())/tasks, "ns/op")
	b.ReportMetric(float64(sum.cancel.Nanoseconds())/tasks, "cancelns/task")
	b.ReportMetric(float64(sum.allocB)/tasks, "B/op")
	b.ReportMetric(float64(sum.allocN)/tasks, "allocs/op")
	cold.Report(b, n)
}

// mbStreamChunks: llm.stream over ChunkProvider (RegisterLLM), b.N streams.
func mbStreamChunks(b *testing.B) {
	rt := mbRuntime(b, nil, map[string]string{"stream": StreamChunksLua})
	defer rt.Close()
	must(b, rt.RegisterLLM("llm", ChunkProvider{N: StreamChunkN}))
	chunks := b.N * StreamChunkN
	el := ReportPerUnit(b, chunks, func() {
		for range b.N {
			checkN(b, mbCall(b, rt, "stream"), StreamChunkN)
		}
	})
	b.ReportMetric(float64(chunks)/el.Seconds(), "chunks/s")
}

// mbGenerateAll: llm.generate_all (RegisterLLM over the ChatServer's
// provider), b.N runs of GenerateAllN requests.
func mbGenerateAll(b *testing.B) {
	srv := NewChatServer()
	defer srv.Close()
	p, closeIdle := srv.Provider()
	defer closeIdle()
	rt := mbRuntime(b, nil, map[string]string{"generate_all": GenerateAllLua})
	defer rt.Close()
	must(b, rt.RegisterLLM("llm", p))
	ReportGenerateAll(b, srv, func(n int) {
		checkN(b, mbCall(b, rt, "generate_all", n, GenerateAllConcurrency), n)
	})
}
