package bench

import (
	"sync"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func init() {
	for _, cfg := range GLConfigs {
		cfg := cfg
		Register(Impl{
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
		})
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
	el := ReportPerUnit(b, trips, func() {
		for range b.N {
			for range ConcurrentTasks {
				br.Spawn(fn, lua.LNumber(ConcurrentCallsEach))
			}
			must(b, br.Run())
		}
	})
	must(b, bad)
	if finished != b.N*ConcurrentTasks {
		b.Fatalf("finished %d tasks, want %d", finished, b.N*ConcurrentTasks)
	}
	b.ReportMetric(float64(trips)/el.Seconds(), "trips/s")
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
