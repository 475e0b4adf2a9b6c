package bench

import (
	"container/heap"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func init() {
	for _, cfg := range GLConfigs {
		cfg := cfg
		impl := Impl{
			Name:                cfg.Name,
			RoundTripSeq:        func(b *testing.B) { glRoundTripSeq(b, cfg) },
			RoundTripConcurrent: func(b *testing.B) { glRoundTripConcurrent(b, cfg) },
			SyncCall:            func(b *testing.B) { glSyncCall(b, cfg) },
			SpawnFinish:         func(b *testing.B) { glSpawnFinish(b, cfg) },
			YieldSwitch:         func(b *testing.B) { glYieldSwitch(b, cfg) },
			CallFromGo:          func(b *testing.B) { glCallFromGo(b, cfg) },
			SuspendedMemory:     func(b *testing.B) { glSuspendedMemory(b, cfg) },
			Fib:                 func(b *testing.B) { glFib(b, cfg) },
			StringBuild:         func(b *testing.B) { glStringBuild(b, cfg) },
			ChannelPingPong:     func(b *testing.B) { glChannelPingPong(b, cfg) },
			SelectEight:         func(b *testing.B) { glSelectEight(b, cfg) },
			// PromiseChain: gopher-lua has no promises (nil: no peer).
			Pipeline3:     func(b *testing.B) { glPipeline3(b, cfg) },
			SleepingTasks: func(b *testing.B) { glSleepingTasks(b, cfg) },
			StreamChunks:  func(b *testing.B) { glStreamChunks(b, cfg) },
			GenerateAll:   func(b *testing.B) { glGenerateAll(b, cfg) },
			FanOut:        func(b *testing.B) { glFanOut(b, cfg) },
		}
		if cfg.Opts == nil {
			// With the defaults every coroutine costs ~100 KB
			// (SuspendedMemory): SleepingN of them would be ~10 GB.
			impl.SleepingTasks = nil
		}
		Register(impl)
	}
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// callChunk runs fn(args...) on L (not in a coroutine) and returns its first
// result.
func callChunk(b *testing.B, L *lua.LState, fn *lua.LFunction, args ...lua.LValue) lua.LValue {
	b.Helper()
	must(b, L.CallByParam(lua.P{Fn: fn, NRet: 1, Protect: true}, args...))
	v := L.Get(-1)
	L.Pop(1)
	return v
}

func glRoundTripSeq(b *testing.B, cfg GLConfig) {
	br := NewGLBridge(cfg)
	defer br.Close()
	fn := br.Load(RoundTripSeqLua)
	var res []lua.LValue
	br.OnDone = func(r []lua.LValue) { res = r }
	b.ReportAllocs()
	b.ResetTimer()
	br.Spawn(fn, lua.LNumber(b.N))
	must(b, br.Run())
	b.StopTimer()
	must(b, CheckInt(res, b.N))
}

func glRoundTripConcurrent(b *testing.B, cfg GLConfig) {
	br := NewGLBridge(cfg)
	defer br.Close()
	fn := br.Load(RoundTripConcurrentLua)
	finished := 0
	var bad error
	br.OnDone = func(r []lua.LValue) {
		finished++
		if err := CheckInt(r, ConcurrentCallsEach); err != nil && bad == nil {
			bad = err
		}
	}
	trips := b.N * ConcurrentTasks * ConcurrentCallsEach
	cpu := processCPU()
	el := ReportPerUnit(b, trips, func() {
		for range b.N {
			for range ConcurrentTasks {
				br.Spawn(fn, lua.LNumber(ConcurrentCallsEach))
			}
			must(b, br.Run())
		}
	})
	b.ReportMetric(float64(processCPU()-cpu)/float64(trips), "cpu-ns/op")
	must(b, bad)
	if finished != b.N*ConcurrentTasks {
		b.Fatalf("finished %d tasks, want %d", finished, b.N*ConcurrentTasks)
	}
	b.ReportMetric(float64(trips)/el.Seconds(), "trips/s")
}

// glFanOut: FanOutTasks coroutines each making one go_sleep call, b.N
// times; every coroutine must return FanOutSleepMs.
func glFanOut(b *testing.B, cfg GLConfig) {
	br := NewGLBridge(cfg)
	defer br.Close()
	fn := br.Load(FanOutLua)
	finished := 0
	var bad error
	br.OnDone = func(r []lua.LValue) {
		finished++
		if err := CheckInt(r, FanOutSleepMs); err != nil && bad == nil {
			bad = err
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for range FanOutTasks {
			br.Spawn(fn, lua.LNumber(FanOutSleepMs))
		}
		must(b, br.Run())
	}
	b.StopTimer()
	must(b, bad)
	if finished != b.N*FanOutTasks {
		b.Fatalf("finished %d coroutines, want %d", finished, b.N*FanOutTasks)
	}
}

func glSyncCall(b *testing.B, cfg GLConfig) {
	br := NewGLBridge(cfg)
	defer br.Close()
	fn := br.Load(SyncCallLua)
	b.ReportAllocs()
	b.ResetTimer()
	v := callChunk(b, br.L, fn, lua.LNumber(b.N))
	b.StopTimer()
	must(b, CheckInt([]lua.LValue{v}, b.N))
}

func glSpawnFinish(b *testing.B, cfg GLConfig) {
	br := NewGLBridge(cfg)
	defer br.Close()
	fn := br.Load(SpawnFinishLua)
	finished := 0
	br.OnDone = func([]lua.LValue) { finished++ }
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		br.Spawn(fn)
	}
	must(b, br.Run())
	b.StopTimer()
	if finished != b.N {
		b.Fatalf("finished %d, want %d", finished, b.N)
	}
}

func glYieldSwitch(b *testing.B, cfg GLConfig) {
	br := NewGLBridge(cfg)
	defer br.Close()
	fn := br.Load(YieldSwitchLua)
	each := (b.N + YieldTasks - 1) / YieldTasks
	finished := 0
	br.OnDone = func([]lua.LValue) { finished++ }
	// Spawning runs each task to its first yield (untimed); then the loop
	// makes `each` resumes per task: each-1 that end in a yield and a last
	// one that ends the task.
	for range YieldTasks {
		br.Spawn(fn, lua.LNumber(each))
	}
	ReportPerUnit(b, YieldTasks*each, func() { must(b, br.Run()) })
	if finished != YieldTasks {
		b.Fatalf("finished %d, want %d", finished, YieldTasks)
	}
}

func glCallFromGo(b *testing.B, cfg GLConfig) {
	L := cfg.NewState()
	defer L.Close()
	must(b, L.DoString(CallFromGoLua))
	add := L.GetGlobal("add")
	p := lua.P{Fn: add, NRet: 1, Protect: true}
	sum := 0.0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := L.CallByParam(p, lua.LNumber(i), lua.LNumber(1)); err != nil {
			b.Fatal(err)
		}
		sum += float64(L.Get(-1).(lua.LNumber))
		L.Pop(1)
	}
	b.StopTimer()
	if want := float64(b.N) * float64(b.N+1) / 2; sum != want {
		b.Fatalf("sum %v, want %v", sum, want)
	}
}

func glSuspendedMemory(b *testing.B, cfg GLConfig) {
	ReportSuspended(b, func() SuspendedBatch {
		br := NewGLBridge(cfg)
		br.Block = make(chan struct{})
		fn := br.Load(SuspendedMemoryLua)
		return SuspendedBatch{
			Spawn: func() {
				for range SuspendedTasks {
					br.Spawn(fn)
				}
				if br.Pending() != SuspendedTasks {
					b.Fatalf("pending %d, want %d", br.Pending(), SuspendedTasks)
				}
			},
			Keep: func() { keep(br) },
			Release: func() {
				close(br.Block)
				br.Close()
			},
		}
	})
}

//go:noinline
func keep(any) {}

func glFib(b *testing.B, cfg GLConfig) {
	L := cfg.NewState()
	defer L.Close()
	fn, err := L.LoadString(FibLua)
	must(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		v := callChunk(b, L, fn, lua.LNumber(FibN))
		if v != lua.LNumber(FibResult) {
			b.Fatalf("fib = %v", v)
		}
	}
}

func glStringBuild(b *testing.B, cfg GLConfig) {
	L := cfg.WithRegistry(StringBuildRegistry).NewState()
	defer L.Close()
	fn, err := L.LoadString(StringBuildLua)
	must(b, err)
	want := lua.LNumber(StringBuildLen(StringBuildN))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		v := callChunk(b, L, fn, lua.LNumber(StringBuildN))
		if v != want {
			b.Fatalf("len = %v, want %v", v, want)
		}
	}
}

func glChannelPingPong(b *testing.B, cfg GLConfig) {
	ping := make(chan lua.LValue)
	pong := make(chan lua.LValue)
	L1, L2 := cfg.NewState(), cfg.NewState()
	defer L1.Close()
	defer L2.Close()
	for _, L := range []*lua.LState{L1, L2} {
		L.SetGlobal("ping", lua.LChannel(ping))
		L.SetGlobal("pong", lua.LChannel(pong))
	}
	pingFn, err := L1.LoadString(ChannelPingLua)
	must(b, err)
	pongFn, err := L2.LoadString(ChannelPongLua)
	must(b, err)
	var wg sync.WaitGroup
	var pongErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		pongErr = L2.CallByParam(lua.P{Fn: pongFn, NRet: 0, Protect: true})
	}()
	var v lua.LValue
	ReportPerUnit(b, 2*b.N, func() {
		v = callChunk(b, L1, pingFn, lua.LNumber(b.N))
	})
	wg.Wait()
	must(b, pongErr)
	if want := lua.LNumber(float64(b.N) * float64(b.N+1) / 2); v != want {
		b.Fatalf("sum %v, want %v", v, want)
	}
}

// glChannels returns a Lua list of the channels, made in L.
func glChannels(L *lua.LState, chans []chan lua.LValue) *lua.LTable {
	t := L.NewTable()
	for _, c := range chans {
		t.Append(lua.LChannel(c))
	}
	return t
}

// glSelectEight: the consumer (this goroutine's state) selects over
// SelectChannels unbuffered channels; the producer, a second state on a
// goroutine of its own, sends on a rotating one of them.
func glSelectEight(b *testing.B, cfg GLConfig) {
	chans := make([]chan lua.LValue, SelectChannels)
	for i := range chans {
		chans[i] = make(chan lua.LValue)
	}
	L1, L2 := cfg.NewState(), cfg.NewState()
	defer L1.Close()
	defer L2.Close()
	consFn, err := L1.LoadString(GLSelectConsumerLua)
	must(b, err)
	prodFn, err := L2.LoadString(SelectProducerLua)
	must(b, err)
	var wg sync.WaitGroup
	var prodErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		prodErr = L2.CallByParam(lua.P{Fn: prodFn, NRet: 0, Protect: true},
			glChannels(L2, chans), lua.LNumber(b.N))
	}()
	b.ReportAllocs()
	b.ResetTimer()
	v := callChunk(b, L1, consFn, glChannels(L1, chans), lua.LNumber(b.N))
	b.StopTimer()
	wg.Wait()
	must(b, prodErr)
	if want := lua.LNumber(float64(b.N) * float64(b.N+1) / 2); v != want {
		b.Fatalf("sum %v, want %v", v, want)
	}
}

// glPipeline3 is a three-stage pipeline as a gopher-lua user writes it: one
// state per stage, each on a goroutine of its own, connected by gopher-lua
// channels of PipelineBuffer slots; a source state sends the items and the
// main state collects the results into a list.
func glPipeline3(b *testing.B, cfg GLConfig) {
	feed, sink := cfg.NewState(), cfg.NewState()
	defer feed.Close()
	defer sink.Close()
	fn, err := feed.LoadString(PipelineItemsLua)
	must(b, err)
	callChunk(b, feed, fn, lua.LNumber(PipelineItems))
	feedFn, err := feed.LoadString(GLPipelineFeedLua)
	must(b, err)
	collectFn, err := sink.LoadString(GLPipelineCollectLua)
	must(b, err)
	var stages [3]*lua.LState
	var stageFns [3]*lua.LFunction
	for k, expr := range []string{PipelineFnA, PipelineFnB, PipelineFnC} {
		stages[k] = cfg.NewState()
		defer stages[k].Close()
		stageFns[k], err = stages[k].LoadString(fmt.Sprintf(GLPipelineStageLua, expr))
		must(b, err)
	}
	items := b.N * PipelineItems
	el := ReportPerUnit(b, items, func() {
		for range b.N {
			var chs [4]chan lua.LValue
			for k := range chs {
				chs[k] = make(chan lua.LValue, PipelineBuffer)
			}
			var wg sync.WaitGroup
			var errs [4]error
			wg.Add(4)
			go func() {
				defer wg.Done()
				errs[0] = feed.CallByParam(lua.P{Fn: feedFn, Protect: true}, lua.LChannel(chs[0]))
			}()
			for k := range stages {
				go func() {
					defer wg.Done()
					errs[k+1] = stages[k].CallByParam(lua.P{Fn: stageFns[k], Protect: true},
						lua.LChannel(chs[k]), lua.LChannel(chs[k+1]))
				}()
			}
			v := callChunk(b, sink, collectFn, lua.LChannel(chs[3]), lua.LNumber(PipelineItems))
			wg.Wait()
			for _, err := range errs {
				must(b, err)
			}
			if v != lua.LNumber(PipelineItems) {
				b.Fatalf("collected %v", v)
			}
		}
	})
	b.ReportMetric(float64(items)/el.Seconds(), "items/s")
}

// glTimer is a coroutine asleep until wake.
type glTimer struct {
	co   *lua.LState
	wake time.Time
}

// glTimers is a min-heap of sleeping coroutines, by wake time: what a
// scheduler with a sleep holds.
type glTimers []glTimer

func (h glTimers) Len() int           { return len(h) }
func (h glTimers) Less(i, j int) bool { return h[i].wake.Before(h[j].wake) }
func (h glTimers) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *glTimers) Push(x any)        { *h = append(*h, x.(glTimer)) }
func (h *glTimers) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// glSleepingTasks parks SleepingCount() coroutines in sleep(3600): a Lua
// function that yields the seconds; the scheduler (here, Spawn) pushes the
// coroutine on a timer heap with its wake time. A first batch, kept out of
// the per-b.N figures, gives firstns/task and rssB/task (see SleepingCold).
func glSleepingTasks(b *testing.B, cfg GLConfig) {
	n := SleepingCount()
	mk := func() SuspendedBatch {
		L := cfg.NewState()
		if err := L.DoString(`function sleep(s) return coroutine.yield(s) end`); err != nil {
			b.Fatal(err)
		}
		fn, err := L.LoadString(SleepingLua)
		must(b, err)
		var timers glTimers
		return SuspendedBatch{
			Spawn: func() {
				now := time.Now()
				for range n {
					co, _ := L.NewThread()
					st, err, vals := L.Resume(co, fn)
					if st != lua.ResumeYield || len(vals) != 1 {
						b.Fatalf("resume: %v %v %v", st, err, vals)
					}
					secs := float64(vals[0].(lua.LNumber))
					heap.Push(&timers, glTimer{co: co, wake: now.Add(time.Duration(secs * float64(time.Second)))})
				}
				if timers.Len() != n {
					b.Fatalf("%d sleeping, want %d", timers.Len(), n)
				}
			},
			Keep: func() { keep(L); keep(timers) },
			Release: func() {
				timers = nil
				L.Close()
			},
		}
	}
	b.StopTimer()
	cold := ColdBatch(b, func() SleepingCold {
		first := mk()
		runtime.GC()
		r0 := RSSBytes()
		start := time.Now()
		first.Spawn()
		c := SleepingCold{Elapsed: time.Since(start), RSS: RSSBytes() - r0}
		first.Release()
		return c
	})
	ReportSuspendedN(b, n, mk)
	cold.Report(b, n)
}

// glStreamChunks: the llm module's stream (GLBridge.RegisterLLM) over
// ChunkProvider, b.N streams, each run on the main state: its iterator
// blocks on the Go channel.
func glStreamChunks(b *testing.B, cfg GLConfig) {
	br := NewGLBridge(cfg)
	defer br.Close()
	m := br.RegisterLLM("llm", ChunkProvider{N: StreamChunkN})
	defer m.Close()
	fn := br.Load(StreamChunksLua)
	chunks := b.N * StreamChunkN
	el := ReportPerUnit(b, chunks, func() {
		for range b.N {
			v := callChunk(b, br.L, fn)
			must(b, CheckInt([]lua.LValue{v}, StreamChunkN))
		}
	})
	b.ReportMetric(float64(chunks)/el.Seconds(), "chunks/s")
}

// glGenerateAll: the llm module's generate_all (GLGenerateAllLua: worker
// coroutines over the async generate) against the ChatServer, each run a
// coroutine driven by the GLBridge loop.
func glGenerateAll(b *testing.B, cfg GLConfig) {
	srv := NewChatServer()
	defer srv.Close()
	p, closeIdle := srv.Provider()
	defer closeIdle()
	br := NewGLBridge(cfg)
	defer br.Close()
	m := br.RegisterLLM("llm", p)
	defer m.Close()
	fn := br.Load(GenerateAllLua)
	var res []lua.LValue
	br.OnDone = func(r []lua.LValue) { res = r }
	ReportGenerateAll(b, srv, func(n int) {
		res = nil
		br.Spawn(fn, lua.LNumber(n), lua.LNumber(GenerateAllConcurrency))
		must(b, br.Run())
		must(b, CheckInt(res, n))
	})
}
