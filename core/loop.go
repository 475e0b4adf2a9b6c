package core

/*
#include <stdlib.h>
#include "bridge.h"
#include "call.h"
#include "limit.h"
#include "rt.h"
#include "run.h"
#include "sandbox.h"
#include "stream.h"
#include "task.h"

// The step, called with the runtime's address as an integer: cgo checks
// every pointer argument for Go pointers (a span lookup), on the hottest
// call there is.
static inline int mb_loop_step(uintptr_t rt) { return mb_rt_step((mb_rt *)rt); }

// A stream's chunk, for the same reason: the bytes are Go memory, and C
// copies them before it returns.
static inline int mb_loop_emit(uintptr_t rt, uintptr_t s, uintptr_t data, size_t len) {
  return mb_stream_emit((mb_rt *)rt, (mb_stream *)s, (const char *)data, len);
}

// The completion path: these keep no Go pointer and never call into Go.
#cgo noescape uv_async_send
#cgo nocallback uv_async_send
#cgo noescape mb_buf_reserve
#cgo nocallback mb_buf_reserve
#cgo noescape mb_call_complete
#cgo nocallback mb_call_complete
#cgo noescape mb_stream_end
#cgo nocallback mb_stream_end
#cgo nocallback mb_stream_room
#cgo nocallback mb_run_submit_driver
*/
import "C"

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/moonbridge/moonbridge/internal/leaks"
	"github.com/moonbridge/moonbridge/internal/oom"
	"github.com/moonbridge/moonbridge/luamod"
)

// A call's outcome, as call.h's MB_OK, MB_ERR, MB_PANIC (export.go's
// preamble, copied into _cgo_export.h for every C file, includes no more
// than buf.h).
const (
	statusOK    = C.MB_OK
	statusErr   = C.MB_ERR
	statusPanic = C.MB_PANIC
)

// Function kinds, as the C core knows them.
const (
	KindAsync  = C.MB_FN_ASYNC
	KindInline = C.MB_FN_INLINE
	KindStream = C.MB_FN_STREAM
)

// Func is a bridge function as the loop sees it: decoded arguments in,
// values out. An inline function's args are reused by the next inline
// call: it must keep the values, not the slice.
type Func func(ctx context.Context, args []Value) ([]any, error)

// StreamFunc is a streaming bridge function: it calls emit for each value
// Lua's for loop receives.
type StreamFunc func(ctx context.Context, args []Value, emit func(any) error) error

// ErrClosed is returned by a Loop that has been closed.
var ErrClosed = errors.New("moonbridge: runtime is closed")

// errInlineReentry: a Go function the loop runs inline (on its own thread)
// asked the loop for a run and would wait for it, while the loop waits
// for the function.
var errInlineReentry = errors.New("moonbridge: a Go function registered with Inline runs on the loop's thread and cannot wait for a run, Call, Get or Tasks of its own Runtime; make the request from another goroutine, or register the function without Inline")

// Error is an error that ended a run: the fields of a moonbridge error
// table. Code is os.exit's code for Kind "exit", else 0. GoErr is the Go
// error a bridge function returned, when the Lua error is the one its
// call raised (see OpError).
type Error struct {
	Message   string
	Kind      string
	Op        string
	Traceback string
	Code      int
	GoErr     error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns GoErr.
func (e *Error) Unwrap() error { return e.GoErr }

type function struct {
	name   string
	kind   int
	fn     Func
	stream StreamFunc
	blocks atomic.Bool  // a call was seen waiting: each call gets a goroutine (pool.go)
	quick  atomic.Int32 // calls in a row that did not wait, while blocks is set
}

// callState is the driver's record of a call in flight.
type callState struct {
	ctx    *callCtx
	credit chan struct{} // streams: room again after backpressure
}

type runWaiter struct {
	ctx   context.Context
	done  chan runResult
	calls *runCalls // its calls the loop cancelled, made by the driver when a call starts
}

type runResult struct {
	vals []any
	err  error
}

// Loop is one C runtime (a lua_State on a libuv loop) and the goroutines
// that step it, one at a time. All its methods are safe from any goroutine.
type Loop struct {
	c      *C.mb_rt
	id     uintptr // index in loops, which the C runtime carries for callbacks
	stdout io.Writer
	stderr io.Writer

	// Driving. Exactly one goroutine at a time steps the C loop: the one
	// holding token. A goroutine that finds nothing to do gives the token
	// back and waits on wake; a push that finds the loop parked signals
	// wake, and the waiter that receives it takes the token. Two such
	// goroutines exist per Loop, so one can take over while the other runs
	// a call itself (see runHere). The token is a mutex, not a channel:
	// giving it back and taking it again around every sequential call is
	// then two atomic operations. Shutdown never gives it back; it closes
	// stop, which a waiting driver checks once it has the token (close
	// hands it on, so every waiter gets out).
	token   sync.Mutex
	wake    chan struct{} // capacity 1: the parked loop has work
	stop    chan struct{} // closed at shutdown: waiters leave
	stopped atomic.Bool   // set just before stop is closed
	standby atomic.Int32  // goroutines waiting on wake
	trimSet atomic.Bool   // a timer will ask the parked loop to trim (armTrim)
	done    chan struct{} // closed when everything is freed
	freeing chan struct{} // closed when shutdown starts freeing (lua_close: finalizers run)

	mu     sync.RWMutex // held for reading while pushing requests; Close takes it
	closed bool

	funcs  atomic.Pointer[[]*function] // copy on write, indexed by fn
	regMu  sync.Mutex
	nextID atomic.Int64
	runs   sync.Map // id -> *runWaiter

	// Driver-owned: no other goroutine touches these.
	calls     []callState
	free      []int32
	args      []Value // inline calls' arguments, reused (mbGoInline says why it may be)
	batch     []job   // calls of this step, for the pool
	pool      *pool
	ctxs      []callCtx // a slab of fresh call contexts (see newCtx)
	lastID    int64     // the run whose context runCtx found last, that context and its calls
	last      context.Context
	lastCalls *runCalls
	trimTimer *time.Timer // armTrim's, stopped at shutdown

	raceSync atomic.Int64 // the race detector's view of hand-offs through C (race.go)

	insnLimit int64         // each run's instruction budget, or 0
	grace     time.Duration // how long Close waits for bridge functions
	closeErr  error         // set before done is closed

	goErrs goErrors // Go errors of bridge calls, per run (goerrors.go)

	wg       callCount // calls and streams whose Go side has not returned
	baseCtx  context.Context
	baseStop context.CancelFunc
}

// Options configure a Runtime (bridge.Options is this type). The zero
// value is ready to use; NewLoop applies the defaults.
type Options struct {
	// Stdout and Stderr receive print, io.write and writes to io.stdout and
	// io.stderr. They default to os.Stdout and os.Stderr.
	Stdout io.Writer
	Stderr io.Writer

	// TimeSlice, when positive, is the preemption time slice in Lua VM
	// instructions: a task that runs that many without suspending is moved
	// to the back of the run queue (a count hook; Lua 5.4 hooks may yield),
	// so a greedy loop cannot starve other tasks, timers or Go completions.
	// A pending cancellation is raised there too. 0, the default, installs
	// no hook and costs nothing. Around 10000 suits most scripts.
	TimeSlice int

	// Sandbox opens only what keeps a script inside the Runtime, for
	// scripts you do not trust: no io library (print still writes to
	// Stdout), no os.execute, os.exit, os.getenv, os.remove, os.rename,
	// os.tmpname or os.setlocale, no debug library, load of text chunks
	// only, no package.loadlib and no C modules. dofile, loadfile and
	// require's file search work only inside SandboxDirs (none by default:
	// then require finds only preloaded modules, moonbridge's and those
	// registered from Go). What remains: the base library, string, table,
	// math, utf8, coroutine, os.time, os.clock, os.date, os.difftime, and
	// moonbridge's modules.
	Sandbox bool

	// SandboxDirs, with Sandbox, are the directories Lua files may be
	// loaded from (dofile, loadfile, require as NAME.lua or NAME/init.lua,
	// in order): a file's real path, symbolic links resolved, must lie
	// inside one of them, whatever package.path says; text chunks only.
	SandboxDirs []string

	// MemoryLimit, when positive, bounds the memory Lua holds, in bytes.
	// Lua's allocator enforces it: a task's allocation past it fails, Lua
	// collects garbage and tries once more, then raises "not enough
	// memory" in the task, which pcall may catch as in stock Lua. Uncaught,
	// it ends the task's run with an error of kind "limit" that
	// errors.Is(err, bridge.ErrMemoryLimit). The Runtime keeps serving other runs.
	MemoryLimit int64

	// InstructionLimit, when positive, bounds the Lua VM instructions each
	// run (RunString, RunFile, Call) may execute, over all its tasks. A run
	// that goes over it ends with a "limit" error that errors.Is(err,
	// bridge.ErrInstructionLimit); a script cannot catch it and go on. It is
	// checked every 1,000 instructions by a count hook, which (like
	// TimeSlice's, and like the hook a context with a deadline brings)
	// costs a tight loop about half its speed. A hook never sees the last,
	// partial period of a thread that ends, so each task and coroutine is
	// charged that period in full when it starts: a run is charged every
	// instruction it ran, and at most 1,000 more per task or coroutine.
	InstructionLimit int64

	// OutputLimit, when positive, bounds the bytes each run may write
	// (print, io.write, io.stdout/io.stderr writes): what passes the limit
	// is cut, and the run ends with a "limit" error of op "output"
	// (errors.Is(err, bridge.ErrOutputLimit)) that a script cannot catch
	// and go on.
	OutputLimit int64

	// CloseGrace bounds how long Close waits for bridge functions to
	// return once it has cancelled their contexts, and for Lua to give
	// the loop's thread back; 0 means 5 s. A function that ignores its
	// context past it, or Lua held where no preemption reaches (a
	// finalizer or hook function that never returns: Lua runs them with
	// hooks off), makes Close return an error; the Runtime's C memory is
	// freed when the last such function, or Lua, returns.
	CloseGrace time.Duration

	// TracerProvider, when set, receives OpenTelemetry spans: one per run
	// (RunString, RunFile, Call; named after the chunk or the function)
	// and one per call of a bridge function (named after its Lua name,
	// such as "kv.get"; a stream's lasts until its function returns), a
	// child of its run's. The function's ctx carries its span, so spans a
	// host starts from that ctx nest under it. Inline functions are not
	// traced. Nil, the default, costs nothing: no span, no wrapper. (The
	// loop only carries it: package bridge makes the spans.)
	TracerProvider trace.TracerProvider
}

// DefaultCloseGrace is Options.CloseGrace's default.
const DefaultCloseGrace = 5 * time.Second

// NewLoop creates the C runtime and starts its two driving goroutines.
func NewLoop(opts Options) (*Loop, error) {
	l := &Loop{
		insnLimit: opts.InstructionLimit,
		grace:     opts.CloseGrace,
		stdout:    opts.Stdout,
		stderr:    opts.Stderr,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		freeing:   make(chan struct{}),
	}
	if l.grace <= 0 {
		l.grace = DefaultCloseGrace
	}
	if l.stdout == nil {
		l.stdout = os.Stdout
	}
	if l.stderr == nil {
		l.stderr = os.Stderr
	}
	l.id = addLoop(l)
	c := C.mb_rt_new(C.uintptr_t(l.id))
	if c == nil {
		dropLoop(l.id)
		return nil, errors.New("moonbridge: cannot create the runtime (out of memory or libuv failure)")
	}
	l.c = c
	leaks.Allocated()
	if err := l.configure(opts); err != nil {
		l.freeC()
		return nil, err
	}
	l.baseCtx, l.baseStop = context.WithCancel(context.Background())
	l.args = make([]Value, 0, 8)
	l.pool = newPool(l)
	l.funcs.Store(&[]*function{})
	go l.driver()
	go l.driver()
	return l, nil
}

// configure applies opts to the fresh C runtime before the drivers start,
// so it may call into C directly.
func (l *Loop) configure(opts Options) error {
	if err := preload(l.c); err != nil {
		return err
	}
	if opts.Sandbox {
		if err := sandbox(l.c, opts.SandboxDirs); err != nil {
			return err
		}
	}
	if opts.OutputLimit > 0 {
		C.mb_limit_set_output(l.c, C.int64_t(opts.OutputLimit))
	}
	if opts.MemoryLimit > 0 {
		C.mb_limit_set_memory(l.c, C.size_t(opts.MemoryLimit))
	}
	if opts.TimeSlice > 0 {
		C.mb_task_set_slice(l.c, C.int(min(opts.TimeSlice, math.MaxInt32)))
	}
	return nil
}

// preload makes the Lua modules of luamod requirable; try is also a global.
// It runs before the drivers start, so it may call into C directly.
func preload(c *C.mb_rt) error {
	for _, m := range luamod.Modules() {
		name := C.CString(m.Name)
		src := C.CBytes(m.Source)
		global := 0
		if m.Name == "try" {
			global = 1
		}
		rc := C.mb_rt_preload(c, name, (*C.char)(src), C.size_t(len(m.Source)), C.int(global))
		C.free(unsafe.Pointer(name))
		C.free(src)
		if rc != 0 {
			return fmt.Errorf("moonbridge: preloading Lua modules: %s", C.GoString(&c.fatal[0]))
		}
	}
	return nil
}

// sandbox applies the sandbox, allowing files in dirs (resolved here to
// real, absolute paths: the C side compares real paths).
func sandbox(c *C.mb_rt, dirs []string) error {
	var list []byte
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err == nil {
			var fi os.FileInfo
			if fi, err = os.Stat(abs); err == nil && !fi.IsDir() {
				err = errors.New("not a directory")
			}
		}
		if err != nil {
			return fmt.Errorf("moonbridge: sandbox directory %q: %w", d, err)
		}
		list = append(append(list, abs...), 0)
	}
	p, n := cbytes(list)
	if C.mb_sandbox_apply(c, p, n) != 0 {
		return errors.New("moonbridge: " + C.GoString(&c.fatal[0]))
	}
	return nil
}

// signal wakes a driving goroutine when the loop is parked (or about to).
func (l *Loop) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Loop) pushed(rc C.int) {
	if rc == 1 {
		l.signal()
	}
}

// register makes f callable from Lua under its name. Later registrations
// of the same name replace earlier ones.
func (l *Loop) register(name string, f *function) error {
	l.regMu.Lock()
	defer l.regMu.Unlock()
	old := *l.funcs.Load()
	fs := make([]*function, len(old), len(old)+1)
	copy(fs, old)
	fs = append(fs, f)
	l.funcs.Store(&fs)
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	rc := C.mb_bridge_submit_register(l.c, cname, C.int(len(fs)-1), C.int(f.kind))
	if rc < 0 {
		return errors.New("moonbridge: out of memory registering " + name)
	}
	l.pushed(rc)
	return nil
}

// RegisterFunc registers an async or inline function.
func (l *Loop) RegisterFunc(name string, inline bool, fn Func) error {
	kind := KindAsync
	if inline {
		kind = KindInline
	}
	return l.register(name, &function{name: name, kind: kind, fn: fn})
}

// RegisterStream registers a streaming function.
func (l *Loop) RegisterStream(name string, fn StreamFunc) error {
	return l.register(name, &function{name: name, kind: KindStream, stream: fn})
}

// Env says where a run's globals live (core/env.c). The zero value is the
// Runtime's globals: the global table, or under the sandbox the run's own
// over the read-only base.
type Env struct {
	// Script: a Call finds its function among this Script's globals
	// (then the global table's); a DropScript drops them.
	Script int64
	// Keep: the chunk's globals are kept as a Script, whose id RunChunkEnv
	// returns (Runtime.Load).
	Keep bool
	// Internal: moonbridge's own Lua (a prelude), in the private
	// environment where the internal modules can be required.
	Internal bool
}

// RunChunk runs Lua source as a new run, with args as the chunk's "...",
// and waits until it and every task it spawned have finished.
func (l *Loop) RunChunk(ctx context.Context, name string, src []byte, args []any) error {
	_, err := l.RunChunkEnv(ctx, name, src, args, Env{})
	return err
}

// RunChunkEnv is RunChunk with the run's globals where env says. It
// returns the run's id: with env.Keep, the id of the Script that now holds
// the chunk's globals (drop it with DropScript when done, also when the run
// failed).
func (l *Loop) RunChunkEnv(ctx context.Context, name string, src []byte, args []any, env Env) (int64, error) {
	data := make([]byte, 8, 8+len(src)+4)
	binary.LittleEndian.PutUint64(data, uint64(len(src)))
	data, err := AppendMessage(append(data, src...), args...)
	if err != nil {
		return 0, fmt.Errorf("moonbridge: the arguments of %s: %w", strings.TrimLeft(name, "=@"), err)
	}
	id, _, err := l.submit(ctx, C.MB_RUN_CHUNK, name, data, env)
	return id, err
}

// CallGlobal runs the global function name with args as a task and waits
// for its results.
func (l *Loop) CallGlobal(ctx context.Context, name string, args []any) ([]any, error) {
	return l.CallEnv(ctx, name, args, Env{})
}

// CallEnv runs the function name of env.Script's globals (else the global
// table's) with args as a task and waits for its results.
func (l *Loop) CallEnv(ctx context.Context, name string, args []any, env Env) ([]any, error) {
	enc, err := AppendMessage(nil, args...)
	if err != nil {
		return nil, fmt.Errorf("moonbridge: Call %q: %w", name, err)
	}
	_, vals, err := l.submit(ctx, C.MB_RUN_CALL, name, enc, env)
	return vals, err
}

// DropScript lets the globals kept as Script id go (RunChunkEnv's Keep).
func (l *Loop) DropScript(ctx context.Context, id int64) error {
	_, _, err := l.submit(ctx, C.MB_RUN_DROP, "", nil, Env{Script: id})
	return err
}

// SetGlobal sets a Lua global variable.
func (l *Loop) SetGlobal(ctx context.Context, name string, v any) error {
	enc, err := AppendMessage(nil, v)
	if err != nil {
		return fmt.Errorf("moonbridge: SetGlobal %q: %w", name, err)
	}
	_, _, err = l.submit(ctx, C.MB_RUN_SET, name, enc, Env{})
	return err
}

// GetGlobal reads a Lua global variable (raw: no __index of _G runs).
func (l *Loop) GetGlobal(ctx context.Context, name string) (any, error) {
	_, vals, err := l.submit(ctx, C.MB_RUN_GET, name, nil, Env{})
	if err != nil || len(vals) == 0 {
		return nil, err
	}
	return vals[0], nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// cptr is p as an integer, for the hot calls whose pointer arguments cgo
// would otherwise check one by one (see mb_loop_step).
func cptr(p unsafe.Pointer) C.uintptr_t { return C.uintptr_t(uintptr(p)) }

func cbytes(b []byte) (*C.char, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.char)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// InstructionLimitKey is the context key of a run's instruction limit (an
// int64, 0 or less for none), which replaces Options.InstructionLimit for
// the runs started with that context.
type InstructionLimitKey struct{}

func (l *Loop) submit(ctx context.Context, kind C.int, name string, data []byte, env Env) (int64, []any, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	id := l.nextID.Add(1)
	w := waiterPool.Get().(*runWaiter)
	w.ctx = ctx
	defer func() { w.ctx = nil; waiterPool.Put(w) }()
	nb := []byte(name)
	np, nn := cbytes(nb)
	dp, dn := cbytes(data)
	// A context that can end gets its cancellation request now: sending
	// it later must not need memory, or a cancellation could be lost.
	cancellable := ctx.Done() != nil
	r := C.mb_run_new(C.int64_t(id), kind, np, nn, dp, dn, cbool(cancellable))
	if r == nil {
		return 0, nil, errors.New("moonbridge: out of memory")
	}
	C.mb_run_set_env(r, C.int64_t(env.Script), cbool(env.Keep), cbool(env.Internal))
	cancelReq := r.cancel
	var deadline time.Duration
	if dl, ok := ctx.Deadline(); ok {
		deadline = max(time.Until(dl), 1)
	}
	insn := l.insnLimit
	if n, ok := ctx.Value(InstructionLimitKey{}).(int64); ok { // a per-run override
		insn = n
	}
	C.mb_run_set_limits(r, C.int64_t(insn), C.int64_t(deadline))
	l.runs.Store(id, w)
	drop := func(err error) (int64, []any, error) { // the run is not sent after all
		l.mu.RUnlock()
		l.runs.Delete(id)
		C.mb_run_free(r)
		if cancelReq != nil {
			C.mb_run_cancel_free(cancelReq)
		}
		return 0, nil, err
	}
	l.mu.RLock()
	if l.closed {
		return drop(ErrClosed)
	}
	// If nobody is stepping the loop, step it here: the run starts on this
	// goroutine with no hand-off to another (a Call on an idle Runtime is
	// a few cgo calls, not two goroutine wake-ups).
	driving := l.token.TryLock()
	if !driving && l.onLoopThread() {
		return drop(errInlineReentry)
	}
	l.raceRelease()
	if driving {
		C.mb_run_submit_driver(l.c, r)
	} else {
		l.pushed(C.mb_run_submit(l.c, r))
	}
	l.mu.RUnlock()

	stop := func() bool { return false }
	if cancellable { // end the run with its context
		stop = context.AfterFunc(ctx, func() {
			defer l.interruptRun(ctx, id) // after the request below is sent
			l.mu.RLock()
			defer l.mu.RUnlock()
			if l.closed {
				C.mb_run_cancel_free(cancelReq)
				return
			}
			deadline := 0
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				deadline = 1
			}
			l.raceRelease()
			l.pushed(C.mb_run_cancel(l.c, cancelReq, C.int(deadline)))
		})
	}
	if driving {
		l.drive(w)
	}
	res := <-w.done
	if stop() { // the request was never sent: it is ours to free
		C.mb_run_cancel_free(cancelReq)
	}
	if rc := w.calls; rc != nil {
		w.calls = nil
		l.awaitCancelled(rc)
	}
	return id, res.vals, res.err
}

// awaitCancelled returns once the bridge calls the run cancelled (their
// task was cancelled or killed, or the run ended) have returned, or after
// CloseGrace: a run ends only when the Go functions it stopped waiting for
// have (the README's promise), and a function that ignores its context
// cannot hold the run longer than it could hold Close.
func (l *Loop) awaitCancelled(rc *runCalls) {
	if rc.n.Load() == 0 {
		return
	}
	rc.idle = make(chan struct{})
	rc.waiting.Store(true) // after idle is set: done reads it once it sees this
	if rc.n.Load() == 0 {
		return
	}
	if testHookAwaitCancelled != nil {
		testHookAwaitCancelled()
	}
	t := time.NewTimer(l.grace)
	defer t.Stop()
	select {
	case <-rc.idle:
	case <-t.C:
	}
}

// testHookAwaitCancelled, when set (by tests), runs when a run's end is
// about to wait for the calls it cancelled.
var testHookAwaitCancelled func()

// waiterPool recycles run waiters; each is used by one submit at a time and
// its channel is empty when it is put back.
var waiterPool = sync.Pool{New: func() any { return &runWaiter{done: make(chan runResult, 1)} }}

// Close stops the loop: every run ends with ErrClosed, every in-flight
// call's context is cancelled, and Close returns once those goroutines
// have returned and every C resource is freed. It is idempotent.
//
// Called from a Go function the loop runs inline (on its own thread),
// Close cannot wait for the loop it runs on: it ends every run as usual
// and returns nil at once; the runtime finishes closing, and frees its
// memory, once that function has returned.
func (l *Loop) Close() error {
	l.mu.Lock()
	already := l.closed
	l.closed = true
	if !already {
		l.pushed(C.mb_rt_close(l.c))
	}
	// Under the lock, the runtime is not freed: stopped is set under it.
	inside := !l.stopped.Load() && l.onLoopThread()
	l.mu.Unlock()
	if inside {
		if !already {
			go l.interruptClose() // the task may go on spinning once the function returns
		}
		return nil
	}
	if !already {
		go l.interruptClose() // until the loop stops
	}
	// Lua may hold the thread where no preemption reaches: a finalizer or
	// a hook function, which Lua runs with hooks off, in an endless loop,
	// or a C module's call. Close does not wait for it past the grace;
	// the loop goes on closing, and frees everything, if it ever returns.
	t := time.NewTimer(l.grace)
	defer t.Stop()
	select {
	case <-l.stop:
	case <-t.C:
		return fmt.Errorf("moonbridge: closed, but Lua had not given the loop's thread back %v after Close asked (a finalizer, a hook function or a C call that does not return); the runtime's memory is freed if it does", l.grace)
	}
	// Shutdown waits for bridge functions (at most the grace), then frees
	// the runtime, and lua_close runs every finalizer Lua still holds:
	// one that never returns is waited for the grace too.
	select {
	case <-l.done:
		return l.closeErr
	case <-l.freeing:
	}
	t.Reset(l.grace)
	select {
	case <-l.done:
		return l.closeErr
	case <-t.C:
		return fmt.Errorf("moonbridge: closed, but Lua had not returned from the runtime's finalizers %v after freeing began (a finalizer that does not return); the runtime's memory is freed if it does", l.grace)
	}
}

// ---------------------------------------------------------------------
// The driver.

// driver is one of the Loop's driving goroutines: it steps the loop while
// it holds the token, and waits for work while it does not.
func (l *Loop) driver() {
	for {
		l.standby.Add(1)
		select {
		case <-l.wake:
		case <-l.stop:
			l.standby.Add(-1)
			return
		}
		l.standby.Add(-1)
		l.token.Lock()
		select {
		case <-l.stop: // shut down meanwhile: pass the token on, and leave
			l.token.Unlock()
			return
		default:
		}
		if !l.drive(nil) {
			return
		}
	}
}

// drive steps the loop until it parks (true: the token is given back) or
// stops (false: everything is freed). A goroutine driving for its own run
// (w) stops sooner: once w has its result it hands a busy loop to a
// standby driver.
func (l *Loop) drive(w *runWaiter) bool {
	for {
		st := C.mb_loop_step(cptr(unsafe.Pointer(l.c)))
		l.raceAcquire()
		switch st {
		case C.MB_STEP_EVENTS:
			l.events(false)
			if w != nil && len(w.done) > 0 {
				l.token.Unlock()
				l.signal()
				return true
			}
		case C.MB_STEP_EVENTS_PARK:
			l.armTrim()
			// A call run here holds this goroutine until the function
			// returns. Driving for a run that its context can end, this
			// goroutine must be free to return then (a function that
			// ignores its context holds the run at most CloseGrace), and
			// once the run has its result, at once.
			if c := l.events(w == nil || w.ctx.Done() == nil); c != nil {
				if w == nil || len(w.done) == 0 {
					if l.runHere(c) {
						continue // nobody took over: still the driver
					}
					return true
				}
				l.start(c)
				l.flushBatch()
			}
			l.token.Unlock()
			return true
		case C.MB_STEP_PARK:
			l.armTrim()
			l.token.Unlock()
			return true
		case C.MB_STEP_CLOSED:
			l.shutdown(nil)
			return false
		case C.MB_STEP_FATAL:
			l.shutdown(errors.New("moonbridge: scheduler failed: " + C.GoString(&l.c.fatal[0])))
			return false
		}
	}
}

// armTrim, as the loop parks (the token held, so the C runtime is still),
// sets a timer when its pool holds more finished threads than it keeps:
// an idle loop puts none back, so nothing else would let a burst's go.
// The timer asks the loop to trim (mb_task_pool_trim), which lets go of
// those that stayed a whole period; a park with some left sets another.
func (l *Loop) armTrim() {
	if l.c.npool <= C.MB_POOL_KEEP || l.trimSet.Load() {
		return
	}
	l.trimSet.Store(true)
	period := C.MB_POOL_AGE_MS * time.Millisecond
	// A little over a period: the loop's clock is coarse.
	l.trimTimer = time.AfterFunc(period+period/8, func() {
		l.mu.RLock()
		defer l.mu.RUnlock()
		l.trimSet.Store(false)
		if !l.closed {
			l.pushed(C.mb_rt_trim(l.c))
		}
	})
}

// runHere runs the one call the loop waits for on this goroutine instead
// of a new one: with nothing else to do the loop is parked, so the token
// is given back and a standby driver takes over should anything arrive
// meanwhile. Afterwards, if nobody did, this goroutine takes the token
// back and hands the result straight to the loop: a sequential call costs
// no goroutine and no wake-up. Reports whether it is still the driver.
func (l *Loop) runHere(c *C.mb_call) bool {
	f := (*l.funcs.Load())[c.fn]
	ctx := l.begin(c)
	l.token.Unlock()
	return l.runCall(f, c, ctx, runReclaim)
}

// shutdown runs on the goroutine that stepped the loop to its stop: cancel
// what is still in flight, wait for it, then free the C runtime.
func (l *Loop) shutdown(fatal error) {
	l.baseStop()
	if l.trimTimer != nil {
		l.trimTimer.Stop()
	}
	for i := range l.calls {
		if c := l.calls[i].ctx; c != nil {
			c.cancel()
		}
	}
	if fatal != nil {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.runs.Range(func(k, v any) bool {
			v.(*runWaiter).done <- runResult{err: fatal}
			l.runs.Delete(k)
			return true
		})
	}
	l.mu.Lock() // interruptClose kicks under the read lock: no kick after this
	l.stopped.Store(true)
	l.mu.Unlock()
	close(l.stop)
	l.token.Unlock() // a driver waiting for it sees stop and leaves
	l.pool.drain()
	// A bridge function that ignores its cancelled context must not hold
	// Close forever. Its goroutine will still complete into the C runtime,
	// so that stays until the last one returns, and is freed then.
	// With nothing in flight (the loop has stopped, so nothing new can
	// start) free now: racing a waiter goroutine against the grace timer
	// could report an idle Runtime as stuck under a short grace.
	if l.wg.n.Load() == 0 {
		close(l.freeing)
		l.freeC()
		close(l.done)
		return
	}
	returned := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(returned)
	}()
	select {
	case <-returned:
		close(l.freeing)
		l.freeC()
	case <-time.After(l.grace):
		l.closeErr = fmt.Errorf("moonbridge: closed, but bridge functions had not returned %v after their contexts were cancelled; the runtime's memory is freed when they do", l.grace)
		go func() {
			<-returned
			l.freeC()
		}()
	}
	close(l.done)
}

// callCount counts the calls and streams whose Go side has not returned:
// one atomic operation each way. Wait is for shutdown only, once nothing
// new can start: the Done that brings the count to zero while someone
// waits closes zero.
type callCount struct {
	n       atomic.Int64
	waiting atomic.Bool
	closed  atomic.Bool
	zero    chan struct{}
}

func (c *callCount) Add() { c.n.Add(1) }

func (c *callCount) Done() {
	if c.n.Add(-1) == 0 && c.waiting.Load() {
		c.signal()
	}
}

func (c *callCount) signal() {
	if c.closed.CompareAndSwap(false, true) {
		close(c.zero)
	}
}

// Wait returns once the count is zero. Call it once.
func (c *callCount) Wait() {
	c.zero = make(chan struct{})
	c.waiting.Store(true)
	if c.n.Load() == 0 {
		c.signal()
	}
	<-c.zero
}

func (l *Loop) freeC() {
	var luaBytes C.int64_t
	var loopOpen C.int
	caught := int64(l.c.oom_caught)
	C.mb_rt_free(l.c, &luaBytes, &loopOpen)
	oom.Record(caught)
	leaks.Freed(int64(luaBytes), int64(loopOpen)) // last: a test waiting for it sees the rest
	l.c = nil
	dropLoop(l.id)
}

// events handles the events of the last step. With park set (the loop
// parks right after), a lone call to an ordinary function is not started
// but returned, for runHere, provided a standby driver exists to take over.
func (l *Loop) events(park bool) (here *C.mb_call) {
	evs := unsafe.Slice(l.c.ev.v, int(l.c.ev.n))
	if park && l.standby.Load() > 0 {
		here = l.loneCall(evs)
	}
	credited := false
	for i := range evs {
		e := &evs[i]
		switch e.kind {
		case C.MB_EV_CALL:
			if c := (*C.mb_call)(e.ptr); c != here {
				l.start(c)
			}
		case C.MB_EV_CANCEL:
			slot := int(e.slot)
			if e.ptr != nil {
				slot = int((*C.mb_call)(e.ptr).slot)
			}
			if slot >= 0 && l.calls[slot].ctx != nil {
				l.calls[slot].ctx.cancel()
			}
		case C.MB_EV_FREE:
			l.release(int(e.slot))
		case C.MB_EV_CREDIT:
			select {
			case l.calls[e.slot].credit <- struct{}{}:
				credited = true
			default:
			}
		}
	}
	// A stream's producer just got room: let it run now, on this thread,
	// and this driver go on from the run queue, on the other P when there
	// is one. Otherwise the readied producer waits in this P's next slot
	// until the driver parks, which is when Lua has emptied the ring: the
	// two halves of the stream would take turns instead of overlapping.
	if credited {
		runtime.Gosched()
	}
	// Runs whose result is ready: one look at the list's head, no C call,
	// when there are none (the common case for a step of bridge calls).
	for l.c.done.next != &l.c.done {
		l.finish(C.mb_run_take_done(l.c))
	}
	l.flushBatch()
	return here
}

// flushBatch hands the calls start queued to the pool.
func (l *Loop) flushBatch() {
	if len(l.batch) > 0 {
		l.pool.submit(l.batch)
		clear(l.batch)
		l.batch = l.batch[:0]
	}
}

// loneCall returns the batch's only call if there is exactly one and it is
// an ordinary (not streaming) function, not marked as blocking, that
// nothing has cancelled.
func (l *Loop) loneCall(evs []C.mb_event) *C.mb_call {
	var lone *C.mb_call
	for i := range evs {
		switch evs[i].kind {
		case C.MB_EV_CALL:
			if lone != nil {
				return nil
			}
			lone = (*C.mb_call)(evs[i].ptr)
		case C.MB_EV_CANCEL:
			return nil
		}
	}
	if lone == nil {
		return nil
	}
	if f := (*l.funcs.Load())[lone.fn]; f.kind != KindAsync || f.blocks.Load() {
		return nil // a function that blocks gets a goroutine of its own
	}
	return lone
}

func (l *Loop) alloc() int {
	if n := len(l.free); n > 0 {
		s := l.free[n-1]
		l.free = l.free[:n-1]
		return int(s)
	}
	l.calls = append(l.calls, callState{})
	return len(l.calls) - 1
}

func (l *Loop) release(slot int) {
	if slot < 0 {
		return
	}
	l.calls[slot] = callState{}
	l.free = append(l.free, int32(slot))
}

// runCtx returns the context of run id and its record of cancelled calls
// (made on first use), or the Runtime's context and nil once Go no longer
// waits for the run (a detached task's calls). Consecutive calls mostly
// come from one run, so the last answer is kept (finish forgets it with
// its run).
func (l *Loop) runCtx(id int64) (context.Context, *runCalls) {
	if id == l.lastID && l.last != nil {
		return l.last, l.lastCalls
	}
	ctx, rc := l.baseCtx, (*runCalls)(nil)
	if wv, ok := l.runs.Load(id); ok {
		w := wv.(*runWaiter)
		if w.calls == nil {
			w.calls = new(runCalls)
		}
		ctx, rc = w.ctx, w.calls
	}
	l.lastID, l.last, l.lastCalls = id, ctx, rc
	return ctx, rc
}

// ctxSlab is how many call contexts newCtx allocates at once.
const ctxSlab = 64

// newCtx returns a fresh call context. Each call has its own, never
// reused (a function may keep its ctx after it returned), but they are
// allocated ctxSlab at a time: a call costs no allocation of its own, and
// a context kept long keeps its slab, a few KiB, alive.
func (l *Loop) newCtx(parent context.Context) *callCtx {
	if len(l.ctxs) == 0 {
		l.ctxs = make([]callCtx, ctxSlab)
	}
	ctx := &l.ctxs[0]
	l.ctxs = l.ctxs[1:]
	ctx.parent = parent
	return ctx
}

// begin gives a call its slot and context; the caller runs it.
func (l *Loop) begin(c *C.mb_call) *callCtx {
	slot := l.alloc()
	c.slot = C.int(slot)
	parent, rc := l.runCtx(int64(c.run))
	ctx := l.newCtx(parent)
	ctx.run = rc
	l.calls[slot].ctx = ctx
	l.wg.Add()
	return ctx
}

// start hands a call to the pool (queued with the step's others), or a
// stream to a goroutine of its own: it lives as long as Lua reads it; so
// does a call of a function that has been seen to block.
func (l *Loop) start(c *C.mb_call) {
	f := (*l.funcs.Load())[c.fn]
	ctx := l.begin(c)
	if f.kind == KindStream {
		credit := make(chan struct{}, 1)
		l.calls[c.slot].credit = credit
		go l.runStream(f, (*C.mb_stream)(unsafe.Pointer(c)), ctx, credit)
		return
	}
	if f.blocks.Load() {
		go l.runCall(f, c, ctx, runOwn)
		return
	}
	l.batch = append(l.batch, job{f: f, c: c, ctx: ctx})
}

func (l *Loop) finish(r *C.mb_run) {
	id := int64(r.id)
	if id == l.lastID {
		l.last, l.lastCalls = nil, nil
	}
	wv, ok := l.runs.LoadAndDelete(id)
	if ok {
		w := wv.(*runWaiter)
		out := C.GoBytes(unsafe.Pointer(r.out.data), C.int(r.out.len))
		var res runResult
		if r.status != C.MB_RUNST_OK {
			e, goerr := decodeError(out)
			e.GoErr = l.releaseGoErrors(id, goerr)
			res.err = e
		} else {
			l.releaseGoErrors(id, 0)
			if r.kind == C.MB_RUN_CALL || r.kind == C.MB_RUN_GET || r.kind == C.MB_RUN_TASKS {
				res.vals, res.err = DecodeMessage(out)
			}
		}
		w.done <- res
	}
	C.mb_run_release(l.c, r)
}

// decodeError decodes mb_errors_fields' record, and the id of the Go
// error it carries (0: none).
func decodeError(b []byte) (*Error, int64) {
	vals, err := DecodeMessage(b)
	if err != nil || len(vals) != 6 {
		return &Error{Message: "moonbridge: undecodable error", Kind: "runtime"}, 0
	}
	s := func(i int) string { v, _ := vals[i].(string); return v }
	code, _ := vals[4].(int64)
	goerr, _ := vals[5].(int64)
	return &Error{Message: s(0), Kind: s(1), Op: s(2), Traceback: s(3), Code: int(code)}, goerr
}

// ---------------------------------------------------------------------
// Goroutines of calls and streams.

func cslice(p *C.char, n C.size_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// call decodes a call's arguments and runs f, turning an error or a panic
// into the status the C side raises.
func call(f *function, ctx context.Context, data []byte) (vals []any, status C.int, err error) {
	args, err := AppendValues(nil, data)
	if err != nil {
		return nil, C.MB_ERR, err
	}
	return invoke(f, ctx, args)
}

// invoke runs f, turning an error or a panic into the status the C side
// raises.
func invoke(f *function, ctx context.Context, args []Value) (vals []any, status C.int, err error) {
	defer func() {
		if p := recover(); p != nil {
			vals, status, err = nil, C.MB_PANIC, fmt.Errorf("%v", p)
		}
	}()
	if vals, err = f.fn(ctx, args); err != nil {
		return nil, C.MB_ERR, err
	}
	return vals, C.MB_OK, nil
}

// statusOf is the status of a Go function's return with err.
func statusOf(err error) C.int {
	if err != nil {
		return C.MB_ERR
	}
	return C.MB_OK
}

// errBadResult is the error for results that cannot cross to Lua.
func errBadResult(err error) error { return fmt.Errorf("bad result: %w", err) }

// moveOut gives an inline call's result buffer n bytes on the heap.
func moveOut(out *C.mb_buf, n int) bool { return C.mb_bridge_out_move(out, C.size_t(n)) == 0 }

// How runCall runs a call: on a pool worker, on a goroutine of its own
// (its function blocks: the call is timed, pool.go), or on the goroutine
// that drove the loop (runHere: it then reclaims the loop).
const (
	runPooled int32 = iota
	runOwn
	runReclaim
)

// runCall runs an ordinary call and hands its outcome to the loop. With
// runReclaim, it first tries to take back the loop's token: if it
// gets it, it queues the result as the driver, waking nobody, and reports
// true — it is the driver again.
//
// The call's arguments are decoded and its function called here, and its
// panic recovered by the deferred hand-off, not in helpers: a call parked
// in the Go function sits on this goroutine's stack, and the frames below
// the function decide whether the stack fits in Go's first 2 KB (or the
// collector can shrink it back there) or stays at 4 KB — that was two
// thirds of what a suspended call held.
func (l *Loop) runCall(f *function, c *C.mb_call, ctx *callCtx, how int32) (held bool) {
	ctx.c, ctx.how, ctx.ret = c, how, errRunning
	defer l.handOff(ctx, &held)
	if how == runOwn {
		ctx.began = time.Since(clock)
	}
	args, err := AppendValues(nil, cslice(c.buf.data, c.buf.len))
	if err != nil {
		ctx.ret = err
		return
	}
	ctx.vals, ctx.ret = f.fn(ctx, args)
	return
}

// errRunning is a call's error until its function returns: still there
// after, the function neither returned nor panicked (runtime.Goexit).
var errRunning = errors.New("the Go function exited its goroutine (runtime.Goexit) instead of returning")

// handOff ends runCall: it turns a panic into the call's error, stores the
// outcome in the call's record and queues it for the loop (as the driver
// again, with runReclaim, if the token is free).
func (l *Loop) handOff(ctx *callCtx, held *bool) {
	c, how := ctx.c, ctx.how
	vals, err, status := ctx.vals, ctx.ret, statusOf(ctx.ret)
	if p := recover(); p != nil {
		vals, err, status = nil, fmt.Errorf("%v", p), C.MB_PANIC
	} else if err == errRunning {
		// runtime.Goexit: the call still ends, and this goroutine, on its
		// way out, does not take the loop back.
		vals, status, how = nil, C.MB_PANIC, runPooled
	}
	if how == runOwn {
		(*l.funcs.Load())[c.fn].timed(time.Since(clock) - ctx.began)
	}
	ctx.vals, ctx.ret = nil, nil
	ctx.returned()
	l.store(c, vals, status, err)
	if how == runReclaim && l.token.TryLock() {
		if !l.stopped.Load() {
			atomic.StoreInt32(sleepFlag(&l.c.q), C.MB_SLEEP_NONE)
			l.raceRelease()
			enqueue(&l.c.q, &c.msg)
			l.wg.Done()
			*held = true
			return
		}
		l.token.Unlock() // shut down meanwhile: the token is no use
	}
	l.push(&c.msg)
	l.wg.Done() // after the push: once all are done, freeC drains the queue
}

// store writes a call's outcome into its record, in C memory, as
// mb_call_store does: the results encoded in place over the arguments in
// its buffer, or the error (a Go error as appendGoError writes it, kept
// for the run). Only a result bigger than the buffer
// costs a C call (to grow it); one that cannot be stored is an error with
// no text, which Lua reports as running out of memory.
func (l *Loop) store(c *C.mb_call, vals []any, status C.int, err error) {
	buf := unsafe.Slice((*byte)(unsafe.Pointer(c.buf.data)), int(c.buf.cap))[:0]
	var out []byte
	if status == C.MB_OK {
		enc, eerr := AppendMessage(buf, vals...)
		if eerr == nil {
			out = enc
		} else {
			status, err = C.MB_ERR, errBadResult(eerr)
		}
	}
	if status == C.MB_ERR { // a Go error: kept for the run (goerrors.go)
		out, status = l.appendGoError(buf, int64(c.run), err)
	} else if status != C.MB_OK {
		msg := err.Error()
		if msg == "" {
			msg = "error"
		}
		out = append(buf, msg...)
	}
	if len(out) > 0 && unsafe.Pointer(&out[0]) != unsafe.Pointer(c.buf.data) { // it did not fit
		c.buf.len = 0
		if C.mb_buf_reserve(&c.buf, C.size_t(len(out))) != 0 {
			status, out = C.MB_ERR, nil
		} else {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(c.buf.data)), len(out)), out)
		}
	}
	c.buf.len = C.size_t(len(out))
	c.status = status
	c.msg.kind = C.MB_MSG_RESULT
}

// raceRelease and raceAcquire mirror a hand-off through C memory for the
// race detector (race.go); without it they compile to nothing.
func (l *Loop) raceRelease() {
	if raceEnabled {
		l.raceSync.Add(1)
	}
}

func (l *Loop) raceAcquire() {
	if raceEnabled {
		l.raceSync.Load()
	}
}

// push puts m on the completion queue as mb_queue_push (queue.c) does,
// here in Go, so that completing a call crosses into C not at all: the
// exchange of the head and the link (Vyukov's queue), then, if the driver
// sleeps, the exchange of the sleep flag that makes exactly one producer
// responsible for waking it — the Go way (signal), or through libuv while
// timers are pending (uv_async_send, the one C call left, then).
func (l *Loop) push(m *C.mb_msg) {
	q := &l.c.q
	l.raceRelease()
	enqueue(q, m)
	flag := sleepFlag(q)
	if atomic.LoadInt32(flag) == C.MB_SLEEP_NONE {
		return
	}
	switch atomic.SwapInt32(flag, C.MB_SLEEP_NONE) {
	case C.MB_SLEEP_GO:
		l.signal()
	case C.MB_SLEEP_UV:
		C.uv_async_send(&q.async)
	}
}

// enqueue is the push of queue.c's Vyukov queue: any goroutine. Until the
// link is stored the consumer sees a queue it cannot pop yet, and comes
// back.
func enqueue(q *C.mb_queue, m *C.mb_msg) {
	atomic.StorePointer(msgPtr(&m.next), nil)
	prev := (*C.mb_msg)(atomic.SwapPointer(msgPtr(&q.head), unsafe.Pointer(m)))
	atomic.StorePointer(msgPtr(&prev.next), unsafe.Pointer(m))
}

// msgPtr views a C pointer field as what sync/atomic works on. The
// pointers are C memory: the garbage collector ignores them.
func msgPtr(p **C.mb_msg) *unsafe.Pointer { return (*unsafe.Pointer)(unsafe.Pointer(p)) }

// sleepFlag is the queue's sleep flag (MB_SLEEP_*), for sync/atomic.
func sleepFlag(q *C.mb_queue) *int32 { return (*int32)(unsafe.Pointer(&q.sleeping)) }

var errNilChunk = errors.New("emit: nil cannot be sent: it would end the Lua for loop")
var errEmitAfterReturn = errors.New("emit: called after the stream function returned")

func (l *Loop) runStream(f *function, s *C.mb_stream, ctx context.Context, credit chan struct{}) {
	defer l.wg.Done()
	defer ctx.(*callCtx).returned()
	// emit may be called from several goroutines at once: stream.c's
	// producer half takes one at a time, so mu serialises them, and with
	// them the window's state (full) and the encoding buffer.
	var mu sync.Mutex
	returned := false
	full := false // the last emit filled the window (stream.c keeps the count)
	buf := make([]byte, 0, 128)
	emit := func(v any) error {
		if v == nil {
			return errNilChunk
		}
		mu.Lock()
		defer mu.Unlock()
		if returned {
			return errEmitAfterReturn
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// Backpressure: wait while Lua is a whole window behind.
		for full && C.mb_stream_room(s) == 0 {
			select {
			case <-credit:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		out, err := AppendMessage(buf[:0], v)
		if err != nil {
			return fmt.Errorf("emit: %w", err)
		}
		buf = out
		l.raceRelease()
		rc := C.mb_loop_emit(cptr(unsafe.Pointer(l.c)), cptr(unsafe.Pointer(s)),
			cptr(unsafe.Pointer(unsafe.SliceData(out))), C.size_t(len(out)))
		runtime.KeepAlive(out)
		if rc < 0 {
			return errors.New("emit: out of memory")
		}
		full = rc&C.MB_STREAM_FULL != 0
		l.pushed(rc & C.MB_STREAM_WAKE)
		return nil
	}
	streamer := &function{name: f.name, fn: func(ctx context.Context, args []Value) ([]any, error) {
		return nil, f.stream(ctx, args, emit)
	}}
	_, status, err := call(streamer, ctx, cslice(s.call.buf.data, s.call.buf.len))
	mu.Lock() // an emit still running elsewhere finishes first: END comes last
	returned = true
	mu.Unlock()
	if status == C.MB_OK {
		buf = buf[:0]
	} else if status == C.MB_ERR {
		buf, status = l.appendGoError(buf[:0], int64(s.call.run), err)
	} else {
		buf = append(buf[:0], err.Error()...)
	}
	p, n := cbytes(buf)
	l.raceRelease()
	l.pushed(C.mb_stream_end(l.c, s, status, p, n))
}
