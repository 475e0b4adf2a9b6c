package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/moonbridge/moonbridge/bridge/llm"
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
//
// Lua starts coroutines with spawn(fn, ...), which returns a handle; the
// loop starts them (before the next round robin), and join(handle) waits
// for one to finish the same way async_inc waits for its work: a goroutine
// waits for the coroutine's end and sends the completion.

type glCompletion struct {
	co      *lua.LState
	results []lua.LValue
}

// glTask is a coroutine started from Lua by spawn.
type glTask struct {
	co   *lua.LState
	fn   *lua.LFunction
	args []lua.LValue
	done chan struct{} // closed when the coroutine has finished
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
	starts  []*glTask               // spawned from Lua, not yet started
	tasks   map[*lua.LState]*glTask // spawned from Lua, started, not finished

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
	L.SetGlobal("go_sleep", L.NewFunction(b.goSleep))
	L.SetGlobal("spawn", L.NewFunction(b.spawn))
	L.SetGlobal("join", L.NewFunction(b.join))
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

// goSleep is go_sleep(ms): a goroutine sleeps ms milliseconds, then the
// coroutine gets ms back.
func (b *GLBridge) goSleep(co *lua.LState) int {
	ms := co.CheckInt(1)
	return b.Go(co, func() []lua.LValue {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return []lua.LValue{lua.LNumber(ms)}
	})
}

// Go is the async pattern for any Go work: called from the LGFunction
// running on coroutine co, it runs work in a goroutine and suspends co; the
// loop resumes co with work's results, which become the LGFunction's return
// values. Return its result from the LGFunction.
func (b *GLBridge) Go(co *lua.LState, work func() []lua.LValue) int {
	done := b.done
	go func() { done <- glCompletion{co: co, results: work()} }()
	return co.Yield(b.marker)
}

// spawn(fn, ...) -> handle: a new coroutine running fn(...), started by
// the loop.
func (b *GLBridge) spawn(L *lua.LState) int {
	fn := L.CheckFunction(1)
	args := make([]lua.LValue, L.GetTop()-1)
	for i := range args {
		args[i] = L.Get(i + 2)
	}
	co, _ := b.L.NewThread()
	t := &glTask{co: co, fn: fn, args: args, done: make(chan struct{})}
	b.live++
	b.starts = append(b.starts, t)
	ud := L.NewUserData()
	ud.Value = t
	L.Push(ud)
	return 1
}

// join(handle): waits until the coroutine has finished.
func (b *GLBridge) join(co *lua.LState) int {
	t, ok := co.CheckUserData(1).Value.(*glTask)
	if !ok {
		co.ArgError(1, "spawn handle expected")
	}
	select {
	case <-t.done:
		return 0
	default:
	}
	return b.Go(co, func() []lua.LValue {
		<-t.done
		return nil
	})
}

// finished ends a coroutine started by spawn, if co is one.
func (b *GLBridge) finished(co *lua.LState) {
	if t, ok := b.tasks[co]; ok {
		delete(b.tasks, co)
		close(t.done)
	}
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
		if b.tasks != nil {
			b.finished(co)
		}
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
		if b.tasks != nil {
			b.finished(co)
		}
		if b.err == nil {
			b.err = err
		}
	}
}

// Run drives all coroutines until none is ready or pending.
func (b *GLBridge) Run() error {
	for b.err == nil {
		if len(b.starts) > 0 {
			// Coroutines spawned from Lua, in order.
			starts := b.starts
			b.starts = nil
			if b.tasks == nil {
				b.tasks = make(map[*lua.LState]*glTask)
			}
			for _, t := range starts {
				b.tasks[t.co] = t
				b.step(t.co, t.fn, t.args)
			}
			continue
		}
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

// ---------------------------------------------------------------------------
// The llm module, gopher-lua style, over the same llm.Provider as
// moonbridge's: generate is an async call (GLBridge.Go: a goroutine per
// call runs p.Generate; the coroutine yields until its completion);
// stream starts a goroutine running p.Stream that sends each chunk on a
// buffered Go channel (LLMStreamWindow chunks, moonbridge's window) and
// returns an iterator that receives from it (blocking the state's
// goroutine, as a gopher-lua iterator over a channel does) and makes a
// fresh chunk table, sized for its fields (L.NewTable() preallocates 32
// array slots and a 32-entry map: 3x slower in StreamChunks); generate_all is Lua (GLGenerateAllLua) over generate,
// spawn and join.

// GLLLM is an llm module registered on a GLBridge.
type GLLLM struct {
	br     *GLBridge
	p      llm.Provider
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // stream goroutines
}

// RegisterLLM sets the global name to an llm module over p: generate,
// stream and generate_all. Close the GLLLM (before the bridge) to cancel
// and wait for its goroutines.
func (b *GLBridge) RegisterLLM(name string, p llm.Provider) *GLLLM {
	m := &GLLLM{br: b, p: p}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	L := b.L
	mod := L.NewTable()
	L.SetField(mod, "generate", L.NewFunction(m.generate))
	L.SetField(mod, "stream", L.NewFunction(m.stream))
	L.SetGlobal(name, mod)
	fn, err := L.LoadString(GLGenerateAllLua)
	if err != nil {
		panic(err)
	}
	if err := L.CallByParam(lua.P{Fn: fn, Protect: true}, mod); err != nil {
		panic(err)
	}
	return m
}

// Close cancels the module's streams still running and waits for their
// goroutines.
func (m *GLLLM) Close() {
	m.cancel()
	m.wg.Wait()
}

// generate(prompt) -> text, info, or nil, message.
func (m *GLLLM) generate(co *lua.LState) int {
	req := llm.Request{Prompt: co.CheckString(1)}
	return m.br.Go(co, func() []lua.LValue {
		resp, err := m.p.Generate(m.ctx, req)
		if err != nil {
			return []lua.LValue{lua.LNil, lua.LString(err.Error())}
		}
		// A table made here is the goroutine's until the loop gets it.
		info, usage := co.CreateTable(0, 3), co.CreateTable(0, 3)
		info.RawSetString("finish_reason", lua.LString(resp.FinishReason))
		info.RawSetString("model", lua.LString(resp.Model))
		usage.RawSetString("prompt_tokens", lua.LNumber(resp.Usage.PromptTokens))
		usage.RawSetString("completion_tokens", lua.LNumber(resp.Usage.CompletionTokens))
		usage.RawSetString("total_tokens", lua.LNumber(resp.Usage.TotalTokens))
		info.RawSetString("usage", usage)
		return []lua.LValue{lua.LString(resp.Text), info}
	})
}

// stream(prompt) -> iterator over chunk tables {content=, done=}; the last
// has done = true and finish_reason, then the iterator returns nil. A
// stream error is raised by the iterator.
func (m *GLLLM) stream(L *lua.LState) int {
	req := llm.Request{Prompt: L.CheckString(1)}
	ctx, cancel := context.WithCancel(m.ctx)
	ch := make(chan llm.Chunk, LLMStreamWindow)
	var serr error // set before ch is closed
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(ch)
		serr = m.p.Stream(ctx, req, func(c llm.Chunk) error {
			select {
			case ch <- c:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	L.Push(L.NewFunction(func(L *lua.LState) int {
		c, ok := <-ch
		if !ok {
			cancel()
			if serr != nil {
				L.RaiseError("llm.stream: %v", serr)
			}
			L.Push(lua.LNil)
			return 1
		}
		t := L.CreateTable(0, 3)
		t.RawSetString("content", lua.LString(c.Content))
		t.RawSetString("done", lua.LBool(c.Done))
		if c.Done {
			t.RawSetString("finish_reason", lua.LString(c.FinishReason))
		}
		L.Push(t)
		return 1
	}))
	return 1
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
