package bench

import (
	"runtime"
	"testing"
	"time"
)

// Impl is one implementation (or configuration) of the workloads. Each
// *_test.go file registers its implementations from init() with Register;
// every Benchmark<Workload> below runs one sub-benchmark per registered
// Impl, named Impl.Name, so results line up as
// BenchmarkRoundTripSeq/gopherlua-default, .../gopherlua-tuned,
// .../moonbridge. A nil field skips that workload for that Impl.
//
// Units, so that every implementation reports the same thing (use the
// helpers below where the unit is not one b.N iteration):
//
//	RoundTripSeq         b.N = async calls made sequentially by one coroutine; ns/op per call
//	RoundTripConcurrent  b.N = batches of ConcurrentTasks x ConcurrentCallsEach;
//	                     ReportPerUnit(units = trips) -> ns/op, B/op, allocs/op per trip, plus trips/s
//	SyncCall             b.N = sync_inc calls from one Lua loop; ns/op per call
//	SpawnFinish          b.N = tasks created and run to completion; ns/op per spawn
//	YieldSwitch          YieldTasks tasks yield round robin; ReportPerUnit(units = resume+yield pairs)
//	CallFromGo           b.N = calls of the Lua global add(a, b) from Go; ns/op per call
//	SuspendedMemory      b.N = batches of SuspendedTasks tasks parked in async_inc;
//	                     ReportSuspended -> B/task (HeapAlloc delta after GC), stackB/task,
//	                     totalB/task (the two together, plus the C heap where
//	                     there is one: task + call + goroutine) and ns/op per task
//	Fib                  b.N = runs of fib(FibN); ns/op per run
//	StringBuild          b.N = runs of StringBuildLua(StringBuildN); ns/op per run
//	ChannelPingPong      b.N = round trips (two hand-offs); ReportPerUnit(units = hand-offs)
//	SelectEight          b.N = selects over SelectChannels channels, one value each; ns/op per select
//	PromiseChain         b.N = chains of PromiseChainLen andThen steps;
//	                     ReportPerUnit(units = steps) -> ns/op per step
//	Pipeline3            b.N = runs of PipelineItems items through 3 stages;
//	                     ReportPerUnit(units = items) -> ns/op per item, plus items/s
//	SleepingTasks        b.N = batches of SleepingCount() tasks parked in a long sleep;
//	                     B/task (heap delta) and ns/op per task spawned into its sleep,
//	                     after a first batch kept apart (SleepingCold:
//	                     firstns/task, rssB/task); moonbridge adds cancelns/task,
//	                     the time to cancel every task and wait for each
//	StreamChunks         b.N = streams of StreamChunkN chunks (ChunkProvider) into a Lua for loop;
//	                     ReportPerUnit(units = chunks) -> ns/op per chunk, plus chunks/s
//	FanOut               b.N = fan-outs: FanOutTasks coroutines each making one async
//	                     go_sleep(FanOutSleepMs) call, all in flight together; ns/op per fan-out
//	GenerateAll          b.N = runs of GenerateAllN requests through generate_all at
//	                     GenerateAllConcurrency, against ChatServer;
//	                     ReportPerUnit(units = requests) -> ns/op per request, plus requests/s
//	                     (and conns/run: connections opened per timed run, 0 when all are reused)
type Impl struct {
	Name                string
	RoundTripSeq        func(b *testing.B)
	RoundTripConcurrent func(b *testing.B)
	SyncCall            func(b *testing.B)
	SpawnFinish         func(b *testing.B)
	YieldSwitch         func(b *testing.B)
	CallFromGo          func(b *testing.B)
	SuspendedMemory     func(b *testing.B)
	Fib                 func(b *testing.B)
	StringBuild         func(b *testing.B)
	ChannelPingPong     func(b *testing.B)
	SelectEight         func(b *testing.B)
	PromiseChain        func(b *testing.B)
	Pipeline3           func(b *testing.B)
	SleepingTasks       func(b *testing.B)
	StreamChunks        func(b *testing.B)
	GenerateAll         func(b *testing.B)
	FanOut              func(b *testing.B)
}

var impls []Impl

// Register adds an implementation; call it from init().
func Register(i Impl) { impls = append(impls, i) }

func runAll(b *testing.B, pick func(Impl) func(*testing.B)) {
	for _, i := range impls {
		if f := pick(i); f != nil {
			b.Run(i.Name, f)
		}
	}
}

func BenchmarkRoundTripSeq(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.RoundTripSeq })
}
func BenchmarkRoundTripConcurrent(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.RoundTripConcurrent })
}
func BenchmarkSyncCall(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.SyncCall })
}
func BenchmarkSpawnFinish(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.SpawnFinish })
}
func BenchmarkYieldSwitch(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.YieldSwitch })
}
func BenchmarkCallFromGo(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.CallFromGo })
}
func BenchmarkSuspendedMemory(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.SuspendedMemory })
}
func BenchmarkFib(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.Fib })
}
func BenchmarkStringBuild(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.StringBuild })
}
func BenchmarkChannelPingPong(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.ChannelPingPong })
}
func BenchmarkSelectEight(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.SelectEight })
}
func BenchmarkPromiseChain(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.PromiseChain })
}
func BenchmarkPipeline3(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.Pipeline3 })
}
func BenchmarkSleepingTasks(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.SleepingTasks })
}
func BenchmarkStreamChunks(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.StreamChunks })
}
func BenchmarkGenerateAll(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.GenerateAll })
}
func BenchmarkFanOut(b *testing.B) {
	runAll(b, func(i Impl) func(*testing.B) { return i.FanOut })
}

// ReportGenerateAll times b.N runs of GenerateAllN requests against srv,
// with ReportPerUnit, after a warm-up run (untimed) has opened the
// connections; run(n) makes one run of n requests. It adds requests/s and
// conns/run.
func ReportGenerateAll(b *testing.B, srv *ChatServer, run func(n int)) {
	b.Helper()
	run(GenerateAllConcurrency)
	c0 := srv.Conns()
	requests := b.N * GenerateAllN
	el := ReportPerUnit(b, requests, func() {
		for range b.N {
			run(GenerateAllN)
		}
	})
	b.ReportMetric(float64(requests)/el.Seconds(), "requests/s")
	b.ReportMetric(float64(srv.Conns()-c0)/float64(b.N), "conns/run")
}

// ReportPerUnit times body (which does `units` units of work in total) and
// reports ns/op, B/op and allocs/op per unit, overriding the framework's
// per-b.N figures. It resets the timer first, so call it after setup.
func ReportPerUnit(b *testing.B, units int, body func()) time.Duration {
	b.Helper()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	start := time.Now()
	body()
	el := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	n := float64(units)
	b.ReportMetric(float64(el.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/n, "B/op")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/n, "allocs/op")
	return el
}

// SuspendedBatch is one batch of the SuspendedMemory workload: Spawn must
// create SuspendedTasks tasks, each parked in async_inc, and return once
// they all are; Release then lets them go (or drops them) so they can be
// freed. Keep must keep every structure that holds the tasks reachable.
type SuspendedBatch struct {
	Spawn   func()
	Keep    func()
	Release func()
}

// ReportSuspended runs b.N batches made by mk and reports B/task (HeapAlloc
// delta after runtime.GC, per task), stackB/task (StackInuse delta: the
// goroutines parked with the tasks, if any), totalB/task (both together)
// and ns/op per task spawned into suspension (including its async call),
// with B/op and allocs/op per task.
func ReportSuspended(b *testing.B, mk func() SuspendedBatch) {
	b.Helper()
	ReportSuspendedN(b, SuspendedTasks, mk)
}

// ReportSuspendedN is ReportSuspended for batches of n tasks.
func ReportSuspendedN(b *testing.B, n int, mk func() SuspendedBatch) {
	b.Helper()
	var heap, stack, allocB, allocN float64
	var el time.Duration
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		g0 := runtime.NumGoroutine()
		batch := mk()
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		b.StartTimer()
		start := time.Now()
		batch.Spawn()
		el += time.Since(start)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		batch.Keep()
		heap += float64(int64(m1.HeapAlloc) - int64(m0.HeapAlloc))
		stack += float64(int64(m1.StackInuse) - int64(m0.StackInuse))
		allocB += float64(m1.TotalAlloc - m0.TotalAlloc)
		allocN += float64(m1.Mallocs - m0.Mallocs)
		batch.Release()
		WaitGoroutines(g0)
	}
	tasks := float64(b.N) * float64(n)
	b.ReportMetric(heap/tasks, "B/task")
	b.ReportMetric(stack/tasks, "stackB/task")
	b.ReportMetric((heap+stack)/tasks, "totalB/task")
	b.ReportMetric(float64(el.Nanoseconds())/tasks, "ns/op")
	b.ReportMetric(allocB/tasks, "B/op")
	b.ReportMetric(allocN/tasks, "allocs/op")
}

// WaitGoroutines returns once no more than n goroutines are left: a batch's
// released goroutines must be gone before the next batch is measured, or
// the next one reuses their stacks and records and looks smaller than it
// is. (It yields while it waits; the goroutines it waits for are runnable.)
func WaitGoroutines(n int) {
	for runtime.NumGoroutine() > n {
		runtime.Gosched()
	}
}

// SleepingCold is the first SleepingTasks batch of an implementation in a
// process, kept out of the per-b.N figures and measured once (ColdBatch):
// its memory is new to the process, so every page its tasks touch is
// faulted in, about 7 µs per 1,600 bytes on this VM (see RESULTS.md).
// Later batches reuse whatever the allocators kept from the previous one,
// which varies: glibc unmaps a per-thread arena's heap once it is wholly
// free, and the Go runtime returns idle pages in the background. Its
// resident set growth (rssB/task) is the figure to compare with a memory
// budget.
type SleepingCold struct {
	Elapsed time.Duration // spawning the batch into its sleep
	RSS     int64         // resident set growth, to the moment they all sleep
}

// coldBatches holds each benchmark's SleepingCold, by b.Name().
var coldBatches = map[string]SleepingCold{}

// ColdBatch returns the benchmark's SleepingCold, measuring it with measure
// on its first run in this process; every run (each -count, each b.N
// probe) reports the same figures, so the summary's median is that batch.
func ColdBatch(b *testing.B, measure func() SleepingCold) SleepingCold {
	c, ok := coldBatches[b.Name()]
	if !ok {
		c = measure()
		coldBatches[b.Name()] = c
	}
	return c
}

// Report adds firstns/task and rssB/task for a batch of n tasks.
func (c SleepingCold) Report(b *testing.B, n int) {
	b.ReportMetric(float64(c.Elapsed.Nanoseconds())/float64(n), "firstns/task")
	b.ReportMetric(float64(c.RSS)/float64(n), "rssB/task")
}
