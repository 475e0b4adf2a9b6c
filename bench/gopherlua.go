package bench

import (
	"errors"
	"fmt"
	"runtime"

	lua "github.com/yuin/gopher-lua"
)

// GLConfig is one way of configuring gopher-lua.
type GLConfig struct {
	Name string
	// Opts is nil for lua.NewState() with no options.
	Opts *lua.Options
}

// NewState returns a fresh state with the standard libraries open.
func (c GLConfig) NewState() *lua.LState {
	if c.Opts == nil {
		return lua.NewState()
	}
	return lua.NewState(*c.Opts)
}

// WithRegistry returns the config with the data stack ("registry") set to
// a fixed size of n slots. gopher-lua's table.concat pushes every element and
// every separator onto the data stack, so StringBuild needs about 2*N slots;
// the defaults (5,120 slots, no growth) fail with "registry overflow".
// Growth (RegistryMaxSize) is additive (RegistryGrowStep slots per step)
// and so quadratic for this size, hence a fixed size for both configs.
func (c GLConfig) WithRegistry(n int) GLConfig {
	o := lua.Options{CallStackSize: lua.CallStackSize}
	if c.Opts != nil {
		o = *c.Opts
	}
	o.RegistrySize = n
	o.RegistryMaxSize = 0
	o.RegistryGrowStep = 0
	return GLConfig{Name: c.Name, Opts: &o}
}

// StringBuildRegistry is the data stack size used by StringBuild in both
// configs (2^19 slots = 8 MiB; table.concat of 200,000 items needs 399,999
// slots plus a few).
const StringBuildRegistry = 1 << 19

// GLDefault is gopher-lua as most users run it: lua.NewState() defaults
// (CallStackSize 256 fixed frames, RegistrySize 5,120 slots, no growth).
// Every coroutine from NewThread gets the same sizes (~100 KB each).
var GLDefault = GLConfig{Name: "gopherlua-default"}

// GLTuned is gopher-lua configured for many small coroutines. NewThread
// copies the parent's Options, so these apply to every coroutine:
//   - RegistrySize 128: the smallest value NewState accepts (below 128 it
//     silently falls back to the 5,120 default);
//   - RegistryMaxSize 1<<18, RegistryGrowStep 256: the data stack grows on
//     demand (never shrinks) so deep code still works;
//   - CallStackSize 200 with MinimizeStackMemory: the call stack is allocated
//     in 8-frame segments on demand (from a sync.Pool), up to 200 frames
//     (C Lua's LUAI_MAXCCALLS), instead of 256 frames up front.
var GLTuned = GLConfig{Name: "gopherlua-tuned", Opts: &lua.Options{
	CallStackSize:       200,
	RegistrySize:        128,
	RegistryMaxSize:     1 << 18,
	RegistryGrowStep:    256,
	MinimizeStackMemory: true,
}}

// GLConfigs lists the peer's configurations in report order.
var GLConfigs = []GLConfig{GLDefault, GLTuned}

// ---------------------------------------------------------------------------
// The bridge: how a gopher-lua user runs Go work in goroutines under Lua
// coroutines today.
//
// A Go function registered in Lua (async_inc), called from a coroutine,
// starts a goroutine for the work and yields a private marker value. The
// goroutine sends {coroutine, results} on a channel. The scheduler loop, on
// the LState's goroutine, receives from that channel and resumes the
// coroutine with the results, which become async_inc's return values.
// Coroutines come from L.NewThread. A coroutine that yields anything other
// than the marker (coroutine.yield) is put back on a ready queue and resumed
// round robin. The loop ends when no coroutine is ready or pending.

type glCompletion struct {
	co      *lua.LState
	results []lua.LValue
}

// GLBridge is the scheduler for one LState and its coroutines.
type GLBridge struct {
	L       *lua.LState
	done    chan glCompletion
	ready   []*lua.LState
	next    []*lua.LState
	pending int // coroutines suspended in an async call
	live    int // coroutines not finished
	marker  *lua.LUserData
	err     error

	// Block, if non-nil, makes async work wait until it is closed and then
	// exit without completing (SuspendedMemory).
	Block chan struct{}
	// OnDone, if set, receives each finished coroutine's return values.
	OnDone func(results []lua.LValue)
}

// CompletionBuffer is the capacity of the completion channel.
const CompletionBuffer = 16384

// NewGLBridge makes a state for cfg with async_inc and sync_inc registered.
func NewGLBridge(cfg GLConfig) *GLBridge {
	L := cfg.NewState()
	b := &GLBridge{
		L:      L,
		done:   make(chan glCompletion, CompletionBuffer),
		marker: L.NewUserData(),
	}
	L.SetGlobal("async_inc", L.NewFunction(b.asyncInc))
	L.SetGlobal("sync_inc", L.NewFunction(SyncInc))
	return b
}

// SyncInc is sync_inc(x) -> x+1.
func SyncInc(L *lua.LState) int {
	x := L.CheckInt(1)
	L.Push(lua.LNumber(x + 1))
	return 1
}

// asyncInc is async_inc(x): x+1 computed in a goroutine.
func (b *GLBridge) asyncInc(co *lua.LState) int {
	x := co.CheckInt(1)
	done, block := b.done, b.Block
	go func() {
		if block != nil {
			<-block
			// The work never completes; like real in-flight work, the
			// goroutine holds its coroutine until then.
			runtime.KeepAlive(co)
			return
		}
		done <- glCompletion{co: co, results: []lua.LValue{lua.LNumber(x + 1)}}
	}()
	return co.Yield(b.marker)
}

// Close releases the state.
func (b *GLBridge) Close() { b.L.Close() }

// Load compiles a chunk.
func (b *GLBridge) Load(src string) *lua.LFunction {
	fn, err := b.L.LoadString(src)
	if err != nil {
		panic(err)
	}
	return fn
}

// Spawn creates a coroutine running fn(args...) and runs it until it
// first yields or finishes.
func (b *GLBridge) Spawn(fn *lua.LFunction, args ...lua.LValue) {
	co, _ := b.L.NewThread()
	b.live++
	b.step(co, fn, args)
}

func (b *GLBridge) step(co *lua.LState, fn *lua.LFunction, args []lua.LValue) {
	st, err, vals := b.L.Resume(co, fn, args...)
	switch st {
	case lua.ResumeOK:
		b.live--
		if b.OnDone != nil {
			b.OnDone(vals)
		}
	case lua.ResumeYield:
		if len(vals) > 0 && vals[0] == b.marker {
			b.pending++
		} else {
			b.next = append(b.next, co)
		}
	default:
		b.live--
		if b.err == nil {
			b.err = err
		}
	}
}

// Run drives all coroutines until none is ready or pending.
func (b *GLBridge) Run() error {
	for b.err == nil {
		if len(b.next) > 0 {
			// One round of the round robin.
			b.ready, b.next = b.next, b.ready[:0]
			for i, co := range b.ready {
				b.step(co, nil, nil)
				b.ready[i] = nil
			}
			continue
		}
		if b.pending == 0 {
			break
		}
		c := <-b.done
		b.pending--
		b.step(c.co, nil, c.results)
	}
	return b.err
}

// Pending reports the coroutines suspended in async calls.
func (b *GLBridge) Pending() int { return b.pending }

// CheckInt checks that results hold exactly the number want.
func CheckInt(results []lua.LValue, want int) error {
	if len(results) < 1 {
		return errors.New("no result")
	}
	n, ok := results[0].(lua.LNumber)
	if !ok || int(n) != want {
		return fmt.Errorf("result %v, want %d", results[0], want)
	}
	return nil
}

// StringBuildLen is the length StringBuildLua returns for n.
func StringBuildLen(n int) int {
	total := 0
	for i := 1; i <= n; i++ {
		total += len(fmt.Sprint("item", i))
	}
	return total + n - 1
}
