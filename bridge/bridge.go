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
	"path/filepath"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/moonbridge/moonbridge/core"
)

// Func is a Go function callable from Lua. It runs off the loop's thread,
// on a goroutine — quick calls on a pool of them, and every call of a
// function once seen blocking (one call of it took longer than 100 µs) on
// one of its own, so any number may wait at once; ctx is cancelled when
// the run ends, the runtime closes, or the calling task no longer waits
// for the result.
type Func func(ctx context.Context, args Args) ([]any, error)

// StreamFunc is a Go function that Lua iterates with a generic for. Each
// emit delivers one value to the loop; emit blocks while Lua is behind, and
// returns an error (ctx's) once Lua has left the loop. emit encodes the
// value before it returns, so the caller may reuse or change it after. emit
// may be called from several goroutines at once (each goroutine's values
// arrive in the order it emitted them), and not after the StreamFunc
// returned. A stream is read by one task: the first that calls its
// iterator; another gets an error.
type StreamFunc func(ctx context.Context, args Args, emit func(any) error) error

// Options configure a Runtime. The zero value is ready to use. It is
// core.Options, where each field is documented: one definition, whose
// defaults are applied in one place.
type Options = core.Options

// Runtime is a Lua 5.4 state on an event loop. Every method is safe to
// call from any goroutine.
type Runtime struct {
	loop     *core.Loop
	tracer   trace.Tracer // nil: tracing off
	sandbox  bool
	preludes preludes

	closeMu sync.Mutex
	onClose []func() // run by Close, after the loop has stopped
}

// New creates a Runtime with the standard libraries and moonbridge's
// modules (task, channel, promise, pipeline, try, timers) loaded.
func New(opts Options) (*Runtime, error) {
	l, err := core.NewLoop(opts)
	if err != nil {
		return nil, err
	}
	rt := &Runtime{loop: l, sandbox: opts.Sandbox}
	if opts.TracerProvider != nil {
		rt.tracer = opts.TracerProvider.Tracer(TracerName)
	}
	return rt, nil
}

// Fields is a Lua table with string keys that a Func returns or a
// StreamFunc emits, encoded in its order without a map's hashing: for
// values of a fixed shape sent often (a stream's chunks). A Field whose
// Value is nil is left out, as in a Lua table. Values are what a result
// may be (the same as in a map[string]any). A *Fields, and a Fields held in
// a struct, slice or map, encode the same way; a stream that emits &f and
// keeps a *string in a field boxes nothing per value (the llm module's
// chunks do).
type Fields = core.Fields

// Field is one key and value of Fields.
type Field = core.Field

// FuncOption modifies how RegisterFunc registers a function.
type FuncOption interface{ apply(*funcConfig) }

type funcConfig struct{ inline bool }

type inlineOption struct{}

func (inlineOption) apply(c *funcConfig) { c.inline = true }

// Inline registers a function that never blocks (a lookup, an encoding):
// it runs on the loop's own thread, with no goroutine and no wake-up, and
// its ctx is the Runtime's. Blocking in an inline function stalls every
// task of the Runtime: that is a misuse. Its Args are reused by the next
// inline call: keep the values, not the Args, past the call. For the same
// reason it cannot wait for its own Runtime: a RunString, RunFile, Call,
// Get or Tasks of that Runtime made from it fails at once with an error
// that says so (Tasks returns nil), and its Close returns at once.
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
	call := func(ctx context.Context, args []core.Value) ([]any, error) {
		return fn(ctx, Args{fn: name, vals: args})
	}
	if rt.tracer != nil && !cfg.inline {
		call = rt.tracedFunc(name, call)
	}
	return rt.loop.RegisterFunc(name, cfg.inline, call)
}

// RegisterStream makes fn iterable from Lua: `for v in name(args) do`.
func (rt *Runtime) RegisterStream(name string, fn StreamFunc) error {
	if err := checkName(name); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("moonbridge: RegisterStream %q: nil function", name)
	}
	stream := func(ctx context.Context, args []core.Value, emit func(any) error) error {
		return fn(ctx, Args{fn: name, vals: args}, emit)
	}
	if rt.tracer != nil {
		stream = rt.tracedStream(name, stream)
	}
	return rt.loop.RegisterStream(name, stream)
}

// checkName checks a name Lua will see: names (identifiers) joined by
// dots, "kv.get" or "get". Anything else — a zero byte (C would cut the
// name there), a space, an empty part — is refused rather than mangled.
func checkName(name string) error {
	if name == "" {
		return errors.New("moonbridge: empty function name")
	}
	for part := range strings.SplitSeq(name, ".") {
		if !isLuaName(part) {
			return fmt.Errorf("moonbridge: invalid function name %q: each part between dots must be a Lua name (letters, digits and _, not starting with a digit)", name)
		}
	}
	return nil
}

// isLuaName reports whether s is a Lua identifier.
func isLuaName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
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
	ctx, span := rt.startRun(ctx, "string", name)
	err = rt.wrap(rt.loop.RunChunk(ctx, "="+name, []byte(src), args), ctx)
	endRun(span, err)
	return err
}

// RunFile runs the Lua file at path, as RunString does (args are the
// chunk's "..."). A first line starting with '#' is skipped, as lua does.
func (rt *Runtime) RunFile(ctx context.Context, path string, args ...any) error {
	src, err := readChunkFile(path)
	if err != nil {
		return err
	}
	if ctx, err = rt.beginRun(ctx); err != nil {
		return err
	}
	ctx, span := rt.startRun(ctx, "file", path)
	err = rt.wrap(rt.loop.RunChunk(ctx, "@"+filepath.Clean(path), src, args), ctx)
	endRun(span, err)
	return err
}

// Call runs the Lua global function fn with args as a new task and returns
// its results. It is safe from any goroutine, including while a run is in
// progress: the call runs concurrently with the run's tasks.
func (rt *Runtime) Call(ctx context.Context, fn string, args ...any) ([]any, error) {
	ctx, err := rt.beginRun(ctx)
	if err != nil {
		return nil, err
	}
	ctx, span := rt.startRun(ctx, "call", fn)
	vals, err := rt.loop.CallGlobal(ctx, fn, args)
	err = rt.wrap(err, ctx)
	endRun(span, err)
	return vals, err
}

// SetGlobal sets the Lua global name to v (any value that can cross). It
// writes the global table directly: a __newindex metamethod a script set
// on _G does not run.
func (rt *Runtime) SetGlobal(ctx context.Context, name string, v any) error {
	return rt.wrap(rt.loop.SetGlobal(ctx, name, v), ctx)
}

// Get returns the value of the Lua global name, converted as a bridge
// function's arguments are: nil, bool, int64, float64, string, []any or
// map[string]any. It pairs with SetGlobal. It reads the global table
// directly, so an __index metamethod a script set on _G does not run. A
// value that cannot cross (a function, a coroutine, userdata, a cyclic
// table) gives an error naming the global and the place in it.
func (rt *Runtime) Get(ctx context.Context, name string) (any, error) {
	v, err := rt.loop.GetGlobal(ctx, name)
	return v, rt.wrap(err, ctx)
}

// TaskInfo describes a live task of a Runtime, as t:info() does for a
// script: its run, number, name, status, what it waits for and where,
// when it was spawned, its CPU time and turns.
type TaskInfo = core.TaskInfo

// Tasks returns a snapshot of every live task of every run, safe to call
// from any goroutine: the loop takes it between two tasks' turns (so it
// waits while a task runs without yielding, under no Options.TimeSlice)
// and Go gets a copy. CPU times are counted from the first time the
// Runtime was inspected (Tasks, task.list or t:info): until then the loop
// pays nothing for them. On a closed Runtime it returns nil.
func (rt *Runtime) Tasks() []TaskInfo {
	ts, err := rt.loop.Tasks(context.Background())
	if err != nil {
		return nil
	}
	return ts
}

// Close cancels every in-flight call's context, ends every run with
// ErrClosed, waits for the loop and for the goroutines of calls to return,
// and frees every C resource. It is idempotent. A task that never yields
// is preempted, wherever it spins, so no task keeps Close waiting. A
// bridge function that has not returned Options.CloseGrace after its
// context was cancelled, or Lua that has not given the loop's thread back
// by then (a finalizer or hook function in an endless loop, which Lua
// runs with hooks off, so nothing preempts it; the sandbox allows
// neither), makes Close return an error instead of waiting on; the C
// resources are then freed when it returns. Called from a Go
// function registered with Inline (which runs on the loop's own thread),
// Close cannot wait for the loop it runs on: it ends every run and
// returns nil at once, and the Runtime finishes closing once that
// function has returned.
func (rt *Runtime) Close() error {
	err := rt.loop.Close()
	rt.closeMu.Lock()
	fns := rt.onClose
	rt.onClose = nil
	rt.closeMu.Unlock()
	for _, f := range fns {
		f()
	}
	return err
}

// atClose makes Close run f once the loop has stopped (and every bridge
// call has returned, or CloseGrace has passed): for resources a
// registration owns, such as the http module's idle connections.
func (rt *Runtime) atClose(f func()) {
	rt.closeMu.Lock()
	rt.onClose = append(rt.onClose, f)
	rt.closeMu.Unlock()
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
	// ErrOutputLimit: the run wrote more than Options.OutputLimit.
	ErrOutputLimit = errors.New("moonbridge: output limit reached")
)

// OpError, returned by a bridge function (or found in the chain of the
// error it returns, errors.As-style), sets the kind and op of the Lua error
// its call raises: Kind "" is "bridge", Op "" the function's Lua name. The
// message is the function's name and Err's text, as for any error. Err
// stays reachable from Go: when the Lua error ends the run, errors.Is and
// errors.As on the run's error see it (as they see any error a bridge
// function returns).
//
//	return nil, &bridge.OpError{Op: "db", Err: err} // Lua: err.kind == "bridge", err.op == "db"
type OpError = core.OpError

// ExitError reports that the script called os.exit with a non-zero code.
// os.exit ends the run (every task of it), never the host process; with
// code 0 (or true) the run simply succeeds.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("moonbridge: os.exit(%d)", e.Code) }

// LuaError is an error raised in Lua that ended a run or a Call. When it
// is the error a bridge function's call raised (and the script let it go
// on, or raised the same error table again), it wraps the Go error the
// function returned: errors.Is and errors.As reach it through Unwrap.
type LuaError struct {
	Message   string // the error message
	Kind      string // "runtime", "bridge", "cancelled", "deadlock", "closed", "limit", ...
	Op        string // the bridge function involved; for "limit": "memory", "instructions" or "deadline"
	Traceback string // the failing task's traceback, then each awaiting task's
	ctxErr    error
	goErr     error
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
	case ErrOutputLimit:
		return e.Kind == "limit" && e.Op == "output"
	}
	return false
}

// Unwrap returns the Go error a bridge function returned, when the run
// ended with the Lua error its call raised; the context's error when the
// run was cancelled through it, so errors.Is(err, context.Canceled) holds;
// and context.DeadlineExceeded when its deadline passed.
func (e *LuaError) Unwrap() error {
	if e.goErr != nil {
		return e.goErr
	}
	return e.ctxErr
}

// wrap turns the loop's error into the bridge's: os.exit's into an
// ExitError (nil for code 0), the others into a LuaError. Under the
// sandbox os.exit does not exist, so an error of kind "exit" there is an
// error table the script rewrote: it fails the run as a LuaError, never
// as an exit code the host did not allow, nor as success.
func (rt *Runtime) wrap(err error, ctx context.Context) error {
	return wrapError(err, ctx, rt.sandbox)
}

func wrapError(err error, ctx context.Context, sandbox bool) error {
	var ce *core.Error
	if !errors.As(err, &ce) {
		return err
	}
	if ce.Kind == "exit" && !sandbox {
		if ce.Code == 0 {
			return nil
		}
		return &ExitError{Code: ce.Code}
	}
	le := &LuaError{Message: ce.Message, Kind: ce.Kind, Op: ce.Op, Traceback: ce.Traceback, goErr: ce.GoErr}
	switch {
	case le.Kind == "cancelled":
		le.ctxErr = context.Cause(ctx)
	case le.Kind == "limit" && le.Op == "deadline":
		le.ctxErr = context.DeadlineExceeded
	}
	return le
}
