package bench

// The moonbridge side of the workloads: the same Lua text, run as tasks on
// moonbridge's loop. async_inc is a registered Go function (each call runs
// in a goroutine; the task suspends until it completes), sync_inc an
// Inline one (runs on the loop thread).

import (
	"context"
	"fmt"
	"runtime"
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
	})
}

// mbRuntime makes a Runtime with async_inc, sync_inc and, for each named
// workload, a global function running its text.
func mbRuntime(b *testing.B, block chan struct{}, workloads map[string]string) *bridge.Runtime {
	b.Helper()
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	must(b, rt.RegisterFunc("async_inc", func(ctx context.Context, a bridge.Args) ([]any, error) {
		if block != nil {
			select {
			case <-block:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		x, err := a.Int(0)
		return []any{x + 1}, err
	}))
	must(b, rt.RegisterFunc("sync_inc", func(ctx context.Context, a bridge.Args) ([]any, error) {
		x, err := a.Int(0)
		return []any{x + 1}, err
	}, bridge.Inline()))
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
	el := ReportPerUnit(b, trips, func() {
		for i := 0; i < b.N; i++ {
			out := mbCall(b, rt, "concurrent", ConcurrentTasks, ConcurrentCallsEach)
			checkN(b, out, ConcurrentTasks*ConcurrentCallsEach)
		}
	})
	b.ReportMetric(float64(trips)/el.Seconds(), "trips/s")
}

func mbSyncCall(b *testing.B) {
	mbLoopN(b, "sync", map[string]string{"sync": SyncCallLua})
}

func mbSpawnFinish(b *testing.B) {
	mbLoopN(b, "spawn", map[string]string{
		"empty": SpawnFinishLua,
		"spawn": `
local n = ...
local spawn, yield = task.spawn, task.yield
for i = 1, n do
  spawn(empty)
  if i % 256 == 0 then yield() end -- let the spawned ones run and finish
end
yield()
return n`,
	})
}

func mbYieldSwitch(b *testing.B) {
	rt := mbRuntime(b, nil, map[string]string{
		// At a task's root coroutine.yield is stock's main-thread error;
		// task.yield is the scheduler's round robin.
		"body": `local n = ...
local yield = task.yield
for i = 1, n do yield() end
return n`,
		"switch": `
local tasks, n = ...
local ts = {}
for i = 1, tasks do ts[i] = task.spawn(body, n) end
for i = 1, tasks do ts[i]:wait() end
return n`,
	})
	defer rt.Close()
	per := b.N/YieldTasks + 1
	ReportPerUnit(b, YieldTasks*per, func() {
		out := mbCall(b, rt, "switch", YieldTasks, per)
		checkN(b, out, per)
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
// records, contexts) and the C heap (Lua threads, task records, call
// records), as glibc's allocator reports it, after both GCs.
func mbSuspendedMemory(b *testing.B) {
	var goHeap, cHeap, stack float64
	var el time.Duration
	for i := 0; i < b.N; i++ {
		block := make(chan struct{})
		parked := make(chan struct{})
		rt := mbRuntime(b, block, map[string]string{"body": SuspendedMemoryLua})
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
		// Let the driver start every call before counting.
		time.Sleep(50 * time.Millisecond)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		c1 := CHeapInUse()
		goHeap += float64(int64(m1.HeapAlloc) - int64(m0.HeapAlloc))
		stack += float64(int64(m1.StackInuse) - int64(m0.StackInuse))
		cHeap += float64(int64(c1) - int64(c0))
		close(block)
		must(b, <-done)
		rt.Close()
	}
	tasks := float64(b.N) * SuspendedTasks
	b.ReportMetric((goHeap+cHeap)/tasks, "B/task")
	b.ReportMetric(cHeap/tasks, "cB/task")
	b.ReportMetric(stack/tasks, "stackB/task")
	b.ReportMetric(float64(el.Nanoseconds())/tasks, "ns/op")
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
	for i := 0; i < b.N; i++ {
		out := mbCall(b, rt, "build", StringBuildN)
		if n, _ := out[0].(int64); n < int64(StringBuildN) {
			b.Fatalf("got %v", out)
		}
	}
}
