// Package bridge embeds Lua 5.4 scripts that drive asynchronous Go work.
//
// A Runtime is one Lua state on a libuv event loop, run by a C core.
// Go functions registered with RegisterFunc are called from Lua like plain
// functions: the calling coroutine suspends while the function runs in its
// own goroutine, other Lua tasks run meanwhile, and the call returns the
// function's results. Streams registered with RegisterStream are read with
// a generic for loop, with backpressure; leaving the loop early cancels the
// Go side's context.
//
//	rt, err := bridge.New(bridge.Options{})
//	if err != nil { ... }
//	defer rt.Close()
//	rt.RegisterFunc("kv.get", func(ctx context.Context, args bridge.Args) ([]any, error) {
//		key, err := args.String(0)
//		if err != nil {
//			return nil, err
//		}
//		return []any{store[key]}, nil
//	})
//	err = rt.RunString(ctx, "main", `
//		local kv = require("kv")
//		local task = require("task")
//		local a = task.spawn(kv.get, "a")   -- two lookups at once
//		print(kv.get("b"), a:wait())
//	`)
//
// Scripts get moonbridge's concurrency library, implemented in the C core:
// tasks (require("task"): spawn, wait, cancel, all, race, select, timeout,
// group), channels (require("channel"), with select), promises
// (require("promise"), with the globals async and await), the timer
// globals setTimeout and setInterval, pipelines (require("pipeline")) and
// try. Cancelling a task cancels the context of the Go call it waits on.
//
// Values crossing between Go and Lua are nil, booleans, integers (int64),
// floats (float64), strings (bytes), sequences ([]any) and string-keyed
// maps (map[string]any), nested to any depth; Go structs cross as maps
// through `lua:"name"` field tags. Functions, channels and cycles cannot
// cross and give an error naming the value.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/moonbridge/moonbridge/core"
)

// Func is a Go function callable from Lua. It runs in its own goroutine;
// ctx is cancelled when the run ends, the runtime closes, or the calling
// task no longer waits for the result.
type Func func(ctx context.Context, args Args) ([]any, error)

// StreamFunc is a Go function that Lua iterates with a generic for. Each
// emit delivers one value to the loop; emit blocks while Lua is behind, and
// returns an error (ctx's) once Lua has left the loop. emit encodes the
// value before it returns, so the caller may reuse or change it after. emit
// must be called from the goroutine running the StreamFunc, and not after
// it returned.
type StreamFunc func(ctx context.Context, args Args, emit func(any) error) error

// Options configure a Runtime. The zero value is ready to use.
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
	// errors.Is(err, ErrMemoryLimit). The Runtime keeps serving other runs.
	MemoryLimit int64

	// InstructionLimit, when positive, bounds the Lua VM instructions each
	// run (RunString, RunFile, Call) may execute, over all its tasks. A run
	// that goes over it ends with a "limit" error that errors.Is(err,
	// ErrInstructionLimit); a script cannot catch it and go on. It is
	// checked every 1,000 instructions by a count hook, which (like
	// TimeSlice's, and like the hook a context with a deadline brings)
	// costs a tight loop about half its speed.
	InstructionLimit int64

	// CloseGrace bounds how long Close waits for bridge functions to
	// return once it has cancelled their contexts; 0 means 5 s. A function
	// that ignores its context past it makes Close return an error; the
	// Runtime's C memory is freed when the last such function returns.
	CloseGrace time.Duration
}

// Runtime is a Lua 5.4 state on an event loop. Every method is safe to
// call from any goroutine.
type Runtime struct {
	loop     *core.Loop
	preludes preludes
}

// New creates a Runtime with the standard libraries and moonbridge's
// modules (task, channel, promise, pipeline, try, timers) loaded.
func New(opts Options) (*Runtime, error) {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	l, err := core.NewLoop(core.Options{
		Stdout: opts.Stdout, Stderr: opts.Stderr, TimeSlice: opts.TimeSlice,
		Sandbox: opts.Sandbox, SandboxDirs: opts.SandboxDirs,
		MemoryLimit: opts.MemoryLimit, InstructionLimit: opts.InstructionLimit,
		CloseGrace: opts.CloseGrace,
	})
	if err != nil {
		return nil, err
	}
	return &Runtime{loop: l}, nil
}

// FuncOption modifies how RegisterFunc registers a function.
type FuncOption interface{ apply(*funcConfig) }

type funcConfig struct{ inline bool }

type inlineOption struct{}

func (inlineOption) apply(c *funcConfig) { c.inline = true }

// Inline registers a function that never blocks (a lookup, an encoding):
// it runs on the loop's own thread, with no goroutine and no wake-up, and
// its ctx is the Runtime's. Blocking in an inline function stalls every
// task of the Runtime: that is a misuse. Its Args are reused by the next
// inline call: keep the values, not the Args, past the call.
func Inline() FuncOption { return inlineOption{} }

// RegisterFunc makes fn callable from Lua. A name with dots, "kv.get", is
// field get of module kv (require("kv"), also the global kv); a name
// without one is a global function. Registering a name again replaces it.
func (rt *Runtime) RegisterFunc(name string, fn Func, opts ...FuncOption) error {
	if err := checkName(name); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("moonbridge: RegisterFunc %q: nil function", name)
	}
	var cfg funcConfig
	for _, o := range opts {
		o.apply(&cfg)
	}
	return rt.loop.RegisterFunc(name, cfg.inline, func(ctx context.Context, args []any) ([]any, error) {
		return fn(ctx, Args{fn: name, vals: args})
	})
}

// RegisterStream makes fn iterable from Lua: `for v in name(args) do`.
func (rt *Runtime) RegisterStream(name string, fn StreamFunc) error {
	if err := checkName(name); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("moonbridge: RegisterStream %q: nil function", name)
	}
	return rt.loop.RegisterStream(name, func(ctx context.Context, args []any, emit func(any) error) error {
		return fn(ctx, Args{fn: name, vals: args}, emit)
	})
}

func checkName(name string) error {
	if name == "" || name[0] == '.' || name[len(name)-1] == '.' {
		return fmt.Errorf("moonbridge: invalid function name %q", name)
	}
	return nil
}

// RunString runs src as the main chunk of a run and returns when the chunk
// and every task it spawned have finished. name appears in error messages
// and tracebacks. ctx bounds the run: its cancellation cancels every task
// and in-flight call of the run. args, if any, are the chunk's "...", as
// the lua program passes a script its command-line arguments.
func (rt *Runtime) RunString(ctx context.Context, name, src string, args ...any) error {
	ctx, err := rt.beginRun(ctx)
	if err != nil {
		return err
	}
	return wrap(rt.loop.RunChunk(ctx, "="+name, []byte(src), args), ctx)
}

// RunFile runs the Lua file at path, as RunString does (args are the
// chunk's "..."). A first line starting with '#' is skipped, as lua does.
func (rt *Runtime) RunFile(ctx context.Context, path string, args ...any) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("moonbridge: %w", err)
	}
	if len(src) > 0 && src[0] == '#' { // a shebang line, as lua does
		for i, b := range src {
			if b == '\n' {
				src = append([]byte("--"), src[i:]...)
				break
			}
		}
	}
	if ctx, err = rt.beginRun(ctx); err != nil {
		return err
	}
	return wrap(rt.loop.RunChunk(ctx, "@"+filepath.Clean(path), src, args), ctx)
}

// Call runs the Lua global function fn with args as a new task and returns
// its results. It is safe from any goroutine, including while a run is in
// progress: the call runs concurrently with the run's tasks.
func (rt *Runtime) Call(ctx context.Context, fn string, args ...any) ([]any, error) {
	ctx, err := rt.beginRun(ctx)
	if err != nil {
		return nil, err
	}
	vals, err := rt.loop.CallGlobal(ctx, fn, args)
	return vals, wrap(err, ctx)
}

// SetGlobal sets the Lua global name to v (any value that can cross).
func (rt *Runtime) SetGlobal(ctx context.Context, name string, v any) error {
	return wrap(rt.loop.SetGlobal(ctx, name, v), ctx)
}

// Close cancels every in-flight call's context, ends every run with
// ErrClosed, waits for the loop and for the goroutines of calls to return,
// and frees every C resource. It is idempotent. A bridge function that
// has not returned Options.CloseGrace after its context was cancelled
// makes Close return an error instead of waiting on; the C resources are
// then freed when it returns.
func (rt *Runtime) Close() error {
	return rt.loop.Close()
}

// WithInstructionLimit returns a context under which runs (RunString,
// RunFile, Call) have an instruction limit of n VM instructions in place of
// Options.InstructionLimit; n <= 0 means no limit. It lets a host give each
// run its own budget, e.g. per job or per tenant, on one Runtime or Pool.
func WithInstructionLimit(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, core.InstructionLimitKey{}, n)
}

// Errors that runs end with, for errors.Is.
var (
	// ErrDeadlock: every remaining task waits for something that nothing
	// can bring about any more.
	ErrDeadlock = errors.New("moonbridge: deadlock")
	// ErrCancelled: the run's context was cancelled or its task was.
	ErrCancelled = errors.New("moonbridge: cancelled")
	// ErrClosed: the Runtime was closed.
	ErrClosed = core.ErrClosed
	// ErrMemoryLimit: the run ran out of Options.MemoryLimit.
	ErrMemoryLimit = errors.New("moonbridge: memory limit reached")
	// ErrInstructionLimit: the run went over Options.InstructionLimit.
	ErrInstructionLimit = errors.New("moonbridge: instruction limit reached")
)

// ExitError reports that the script called os.exit with a non-zero code.
// os.exit ends the run (every task of it), never the host process; with
// code 0 (or true) the run simply succeeds.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("moonbridge: os.exit(%d)", e.Code) }

// LuaError is an error raised in Lua that ended a run or a Call.
type LuaError struct {
	Message   string // the error message
	Kind      string // "runtime", "bridge", "cancelled", "deadlock", "closed", "limit", ...
	Op        string // the bridge function involved; for "limit": "memory", "instructions" or "deadline"
	Traceback string // the failing task's traceback, then each awaiting task's
	ctxErr    error
}

func (e *LuaError) Error() string { return e.Message }

// Is reports whether the error is of the kind target names.
func (e *LuaError) Is(target error) bool {
	switch target {
	case ErrDeadlock:
		return e.Kind == "deadlock"
	case ErrCancelled:
		return e.Kind == "cancelled"
	case ErrClosed:
		return e.Kind == "closed"
	case ErrMemoryLimit:
		return e.Kind == "limit" && e.Op == "memory"
	case ErrInstructionLimit:
		return e.Kind == "limit" && e.Op == "instructions"
	}
	return false
}

// Unwrap returns the context's error when the run was cancelled through
// it, so errors.Is(err, context.Canceled) holds, and
// context.DeadlineExceeded when its deadline passed.
func (e *LuaError) Unwrap() error { return e.ctxErr }

func wrap(err error, ctx context.Context) error {
	var ce *core.Error
	if !errors.As(err, &ce) {
		return err
	}
	if ce.Kind == "exit" {
		var code int
		fmt.Sscanf(ce.Message, "os.exit(%d)", &code)
		if code == 0 {
			return nil
		}
		return &ExitError{Code: code}
	}
	le := &LuaError{Message: ce.Message, Kind: ce.Kind, Op: ce.Op, Traceback: ce.Traceback}
	switch {
	case le.Kind == "cancelled":
		le.ctxErr = context.Cause(ctx)
	case le.Kind == "limit" && le.Op == "deadline":
		le.ctxErr = context.DeadlineExceeded
	}
	return le
}
