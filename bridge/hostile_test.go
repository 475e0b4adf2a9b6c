package bridge_test

// Hostile scripts (issue 13): each reproducer of the outside audit, run
// the way the audit ran it — Options{Sandbox, 64 MiB MemoryLimit, 50 M
// InstructionLimit} and a 2 s context deadline — must end with a clear
// error, leave the process alive, and leave the Runtime serving a run and
// a Call, with Close returning. A hang is turned into a failure by a
// watchdog far above the deadline: these tests assert that runs end, not
// how fast.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

const (
	hostileMemory = 64 << 20
	hostileInsns  = 50_000_000
	hostileWindow = 2 * time.Second  // the run's deadline, as the audit had it
	hostileHang   = 60 * time.Second // a run still going after this is stuck
)

// hostileRuntime is a Runtime with the audit's options (changed by mod)
// and the host function it registered: host.iecho, an inline echo.
func hostileRuntime(t *testing.T, mod func(*bridge.Options)) (*bridge.Runtime, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	opts := bridge.Options{Stdout: out, Stderr: out, Sandbox: true,
		MemoryLimit: hostileMemory, InstructionLimit: hostileInsns, CloseGrace: 5 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	rt, err := bridge.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	echo := func(_ context.Context, a bridge.Args) ([]any, error) {
		vals := make([]any, a.Len())
		for i := range vals {
			vals[i] = a.Get(i)
		}
		return vals, nil
	}
	if err := rt.RegisterFunc("host.iecho", echo, bridge.Inline()); err != nil {
		t.Fatal(err)
	}
	return rt, out
}

// hostileDo runs f (a run, a Call, a Close) and fails the test if it has
// not returned after hostileHang.
func hostileDo(t *testing.T, what string, f func() error) error {
	t.Helper()
	err, ok := within(hostileHang, f)
	if !ok {
		t.Fatalf("%s: still running after %v", what, hostileHang)
	}
	return err
}

// within runs f and returns its error, and whether it returned within
// limit (if not, f goes on in the background).
func within(limit time.Duration, f func() error) (err error, ok bool) {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err, true
	case <-time.After(limit):
		return nil, false
	}
}

// nestedCloseChain leaves in co the last of 20,000 coroutines, each
// suspended with a to-be-closed variable whose __close closes the one
// before: closing co nests 20,000 deep (Lua 5.4.4's C-stack crash).
const nestedCloseChain = `
		local co = false
		for i = 1, 20000 do
			local prev = co
			co = coroutine.create(function()
				local c <close> = setmetatable({}, {__close = function()
					if prev then assert(coroutine.close(prev)) end
				end})
				coroutine.yield()
			end)
			assert(coroutine.resume(co))
		end`

// hostileRun runs src under the audit's 2 s deadline.
func hostileRun(t *testing.T, rt *bridge.Runtime, src string) error {
	t.Helper()
	return hostileDo(t, "the hostile run", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), hostileWindow)
		defer cancel()
		return rt.RunString(ctx, "hostile", src)
	})
}

// wantKind checks that err is a *bridge.LuaError of the given kind (and
// op, if not empty) whose message contains each of the fragments.
func wantKind(t *testing.T, err error, kind, op string, fragments ...string) *bridge.LuaError {
	t.Helper()
	var le *bridge.LuaError
	if !errors.As(err, &le) {
		t.Fatalf("want a %s error, got %T %v", kind, err, err)
	}
	if le.Kind != kind || (op != "" && le.Op != op) {
		t.Fatalf("want kind %q op %q, got kind %q op %q: %v", kind, op, le.Kind, le.Op, err)
	}
	for _, f := range fragments {
		if !strings.Contains(le.Message, f) {
			t.Errorf("message %q lacks %q", le.Message, f)
		}
	}
	return le
}

// wantStopped checks the run was stopped by one of its limits: the
// deadline or the instruction budget (which one comes first depends on
// the machine's speed).
func wantStopped(t *testing.T, err error) {
	t.Helper()
	var le *bridge.LuaError
	if !errors.As(err, &le) || le.Kind != "limit" || (le.Op != "deadline" && le.Op != "instructions") {
		t.Fatalf("want the run stopped by its deadline or instruction limit, got %T %v", err, err)
	}
}

// servesAfter checks that the Runtime still serves: a run, a Call of a
// base function, and a script loaded then called; then Close returns.
func servesAfter(t *testing.T, rt *bridge.Runtime, out *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileHang)
	defer cancel()
	out.Reset()
	err := hostileDo(t, "a run after", func() error {
		return rt.RunString(ctx, "after", `print(string.format("%d-%s", 1 + 1, tostring(true)))`)
	})
	if err != nil || out.String() != "2-true\n" {
		t.Fatalf("a run after: %v, output %q", err, out.String())
	}
	vals, err := hostileCall(t, rt, ctx, "tostring", int64(42))
	if err != nil || len(vals) != 1 || vals[0] != "42" {
		t.Fatalf("a Call after: %v %v", vals, err)
	}
	var s *bridge.Script
	err = hostileDo(t, "a Load after", func() (err error) {
		s, err = rt.Load(ctx, "after", `function twice(x) return 2 * x end`)
		return err
	})
	if err != nil {
		t.Fatalf("a Load after: %v", err)
	}
	err = hostileDo(t, "a Script.Call after", func() error {
		vals, err = s.Call(ctx, "twice", 21)
		return err
	})
	if err != nil || len(vals) != 1 || vals[0] != int64(42) {
		t.Fatalf("a Script.Call after: %v %v", vals, err)
	}
	if err := hostileDo(t, "Close", rt.Close); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func hostileCall(t *testing.T, rt *bridge.Runtime, ctx context.Context, fn string, args ...any) (vals []any, err error) {
	t.Helper()
	err = hostileDo(t, "Call "+fn, func() error {
		vals, err = rt.Call(ctx, fn, args...)
		return err
	})
	return vals, err
}

// A chain of coroutines each closing the previous from a __close handler
// overflowed the C stack in Lua 5.4.4's coroutine.close (a bug on
// lua.org's list; stock lua5.4 crashes). moonbridge's coroutine.close
// counts the nesting and fails with Lua 5.4.6's error instead.
func TestHostileNestedCoroutineCloseIsAnErrorNotACrash(t *testing.T) {
	rt, out := hostileRuntime(t, nil)
	err := hostileRun(t, rt, nestedCloseChain+`
		print(coroutine.close(co))`)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := out.String(); !strings.HasPrefix(got, "false\t") || !strings.Contains(got, "C stack overflow") {
		t.Errorf("coroutine.close of the chain printed %q, want false and a C stack overflow", got)
	}
	servesAfter(t, rt, out)
}

// Under the sandbox a metatable with __gc is refused: Lua runs finalizers
// with hooks off, so no limit could stop one (Luau makes the same choice).
func TestHostileSandboxRefusesFinalizers(t *testing.T) {
	for name, src := range map[string]string{
		"looping finalizer":    `setmetatable({}, {__gc = function() while true do end end}) collectgarbage()`,
		"allocating finalizer": `setmetatable({}, {__gc = function() local t = {} for i = 1, 1e9 do t[i] = i end end})`,
		"__gc of any value":    `setmetatable({}, {__gc = true})`,
	} {
		t.Run(name, func(t *testing.T) {
			rt, out := hostileRuntime(t, nil)
			err := hostileRun(t, rt, src)
			wantKind(t, err, "runtime", "", "__gc")
			servesAfter(t, rt, out)
		})
	}
	// A metatable without __gc is fine, and adding __gc to it later does
	// not make a finalizer (Lua marks objects only in setmetatable).
	rt, out := hostileRuntime(t, nil)
	err := hostileRun(t, rt, `
		local mt = {}
		local t = setmetatable({}, mt)
		mt.__gc = function() while true do end end
		t = nil
		collectgarbage(); collectgarbage()
		print("no finalizer ran")`)
	if err != nil || out.String() != "no finalizer ran\n" {
		t.Fatalf("%v %q", err, out.String())
	}
	servesAfter(t, rt, out)
}

// Finalizers are the host's own business outside the sandbox, but one
// that calls an inline function while another inline call's results are
// being decoded must neither overwrite nor move the buffer under the
// decoder (ASan found a use-after-free there), and the memory limit holds
// inside them. Most finalizers echo a small string (each would overwrite
// a shared buffer); every 50th echoes a bigger one than any before (it
// would move it). An error in __gc is only a warning, so a finalizer notes
// a wrong echo for the loop to raise. The sizes keep the run well inside
// its budget and deadline even under -race (string.rep is charged to the
// budget): 128 KiB more at every finalizer made gigabytes of copies, and
// the run ended at its limit or deadline instead.
func TestHostileInlineCallsFromFinalizers(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = false })
	err := hostileRun(t, rt, `
		local size, calls, bad = 128 * 1024, 0, nil
		local function mk()
			setmetatable({}, {__gc = function()
				calls = calls + 1
				local s = string.rep("y", 1000) .. calls
				if calls % 50 == 0 then
					size = size + 32 * 1024
					s = string.rep("y", size)
				end
				if host.iecho(s) ~= s then bad = "a finalizer's results decoded wrong" end
			end})
		end
		local a = {}
		for i = 1, 5000 do a[i] = "s" .. i .. string.rep("z", 20) end
		for r = 1, 20 do
			for i = 1, 50 do mk() end
			local ok, b = pcall(host.iecho, a)
			assert(ok and #b == #a and b[5000] == a[5000], "results decoded wrong")
			assert(not bad, bad)
		end
		print("done", calls > 0)`)
	if err != nil && !errors.Is(err, bridge.ErrMemoryLimit) {
		t.Fatalf("run: %v", err)
	}
	if err == nil && out.String() != "done\ttrue\n" {
		t.Fatalf("printed %q, want done and some finalizers run", out.String())
	}
	servesAfter(t, rt, out)
}

// Errors in handlers and cleanup that never end.
func TestHostileLoopsWhereLuaRunsHandlersAreStopped(t *testing.T) {
	for name, src := range map[string]string{
		"message handler": `xpcall(function() error("x") end, function() while true do end end)`,
		"nested message handlers": `
			local function h() xpcall(function() error("y") end, function() while true do end end) while true do end end
			xpcall(function() error("x") end, h)`,
		"__close of a task killed by the deadline": `
			local x <close> = setmetatable({}, {__close = function() while true do end end})
			require("task").sleep(100)`,
		"__close after an error": `
			local x <close> = setmetatable({}, {__close = function() while true do end end})
			error("boom")`,
		"__close in a coroutine closed by the script": `
			local co = coroutine.create(function()
				local x <close> = setmetatable({}, {__close = function() while true do end end})
				coroutine.yield()
			end)
			coroutine.resume(co)
			coroutine.close(co)`,
		"__close loops, then pcall swallows": `
			for i = 1, 1e9 do
				pcall(function()
					local x <close> = setmetatable({}, {__close = function() while true do end end})
				end)
			end`,
		"__tostring in error reporting": `
			error(setmetatable({}, {__tostring = function() while true do end end}))`,
	} {
		t.Run(name, func(t *testing.T) {
			rt, out := hostileRuntime(t, nil)
			wantStopped(t, hostileRun(t, rt, src))
			servesAfter(t, rt, out)
		})
	}
	// The core reads an error value raw and calls only its __tostring (as
	// Lua's own reporting does): an __index that loops is never run, and
	// the run ends at once with the error as it is.
	t.Run("__index of an error value", func(t *testing.T) {
		rt, out := hostileRuntime(t, nil)
		err := hostileRun(t, rt, `error(setmetatable({}, {__index = function() while true do end end}))`)
		wantKind(t, err, "runtime", "", "(error object is a table value)")
		servesAfter(t, rt, out)
	})
}

// An error value crosses as it is: nothing reads its fields, so an
// __index that never returns is never run, and the run ends with the table.
func TestHostileErrorValueIndexIsNotRun(t *testing.T) {
	rt, out := hostileRuntime(t, nil)
	err := hostileRun(t, rt, `error(setmetatable({}, {__index = function() while true do end end}))`)
	wantKind(t, err, "runtime", "", "(error object is a table value)")
	servesAfter(t, rt, out)
}

// A sibling that goes over the instruction limit ends the run; a task it
// takes down with it may not loop in its cleanup.
func TestHostileCleanupOfATaskKilledByASiblingsLimit(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.InstructionLimit = 5_000_000 })
	err := hostileDo(t, "run", func() error {
		return rt.RunString(context.Background(), "hostile", `
			local task = require("task")
			task.spawn(function()
				local x <close> = setmetatable({}, {__close = function() while true do end end})
				task.sleep(100)
			end)
			task.spawn(function() while true do end end)
			task.sleep(100)`)
	})
	var le *bridge.LuaError
	if !errors.As(err, &le) || !errors.Is(err, bridge.ErrInstructionLimit) {
		t.Fatalf("want the instruction limit, got %v", err)
	}
	servesAfter(t, rt, out)
}

// The memory limit holds in the cleanup of a killed task, and a killed
// run returns promptly: the audit saw 40 × 50 MiB allocated and a 1 s
// deadline kept for 10.8 s.
func TestHostileCleanupIsHeldToTheMemoryLimit(t *testing.T) {
	rt, out := hostileRuntime(t, nil)
	peak := watchPeakRSS(t)
	err := hostileRun(t, rt, `
		local task = require("task")
		task.spawn(function()
			local x <close> = setmetatable({}, {__close = function()
				local keep = {}
				for i = 1, 40 do keep[i] = string.rep("x", 50 * 1024 * 1024) end
			end})
			task.sleep(100)
		end)
		task.sleep(0.01)
		error("boom")`)
	wantKind(t, err, "runtime", "", "boom")
	if grew := peak(); grew > hostileMemory+256<<20 {
		t.Errorf("peak resident memory grew by %d MiB under a %d MiB limit", grew>>20, hostileMemory>>20)
	}
	servesAfter(t, rt, out)
}

// Outside the sandbox finalizers may exist; the ones Close runs are held
// to the memory limit too (the audit saw 8 × 256 MiB held at Close).
func TestHostileFinalizersAtCloseAreHeldToTheMemoryLimit(t *testing.T) {
	rt, _ := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = false })
	peak := watchPeakRSS(t)
	err := hostileRun(t, rt, `
		for i = 1, 8 do
			keep = keep or {}
			keep[i] = setmetatable({}, {__gc = function(o)
				o.big = string.rep("x", 256 * 1024 * 1024)
				grabbed = (grabbed or {})
				grabbed[#grabbed + 1] = o
			end})
		end`)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := hostileDo(t, "Close", rt.Close); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if grew := peak(); grew > hostileMemory+256<<20 {
		t.Errorf("peak resident memory grew by %d MiB under a %d MiB limit", grew>>20, hostileMemory>>20)
	}
}

// watchPeakRSS resets the kernel's peak-RSS mark and returns a function
// that reports how far the peak rose above the resident size at the start.
func watchPeakRSS(t *testing.T) func() int64 {
	t.Helper()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("resetting the peak RSS mark: %v", err)
	}
	start := procStatus(t, "VmRSS")
	return func() int64 { return procStatus(t, "VmHWM") - start }
}

func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// No internal helper is reachable from a script: moonbridge.errors'
// rawpcall swallowed the instruction limit.
func TestHostileInternalModulesAreUnreachable(t *testing.T) {
	for _, sandbox := range []bool{true, false} {
		t.Run(fmt.Sprintf("sandbox=%v", sandbox), func(t *testing.T) {
			rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = sandbox })
			err := hostileRun(t, rt, `
				local found = {}
				for name in pairs(package.loaded) do
					if name:match("^moonbridge") then found[#found + 1] = name end
				end
				for name in pairs(package.preload) do
					if name:match("^moonbridge") then found[#found + 1] = name end
				end
				for _, name in ipairs{"moonbridge.errors", "moonbridge.llm", "moonbridge.http"} do
					if pcall(require, name) then found[#found + 1] = "require " .. name end
				end
				print(#found == 0 and "none" or table.concat(found, " "))`)
			if err != nil || out.String() != "none\n" {
				t.Fatalf("%v: reachable: %q", err, out.String())
			}
			servesAfter(t, rt, out)
		})
	}
}

// The long C calls of the audit stop at the deadline.
func TestHostileLongCCallsStop(t *testing.T) {
	for name, src := range map[string]string{
		"pattern backtracking": `return string.rep("a", 20000):find(".-.-.-.-.-b")`,
		"table.move":           `table.move({}, 1, 1e14, 1)`,
	} {
		t.Run(name, func(t *testing.T) {
			rt, out := hostileRuntime(t, nil)
			wantStopped(t, hostileRun(t, rt, src))
			servesAfter(t, rt, out)
		})
	}
}

// Under the sandbox every library table, module table and metatable a
// script can reach is read-only, and each run has its own globals: run A
// cannot change what run B sees.
func TestHostileRunsCannotChangeWhatOthersSee(t *testing.T) {
	writes := map[string]string{
		"string.format":            `string.format = function() return "pwned" end`,
		"string via rawset":        `rawset(string, "format", function() return "pwned" end)`,
		"string metatable":         `getmetatable("").__index = {format = function() return "pwned" end}`,
		"string metatable rawset":  `rawset(getmetatable(""), "__index", {})`,
		"string metatable setmt":   `setmetatable(getmetatable(""), {})`,
		"string metatable rawget":  `rawget(getmetatable(""), "__index").format = function() return "pwned" end`,
		"next on a library":        `local k, v = next(getmetatable("")); while k ~= "__index" do k, v = next(getmetatable(""), k) end; v.format = function() return "pwned" end`,
		"task.spawn":               `require("task").spawn = function() return "pwned" end`,
		"Task.wait":                `getmetatable(require("task").spawn(function() end)).__index.wait = function() return "pwned" end`,
		"Task metatable":           `getmetatable(require("task").spawn(function() end)).__index = function() return function() return "pwned" end end`,
		"error metatable":          `local task = require("task"); local ok, e = pcall(task.timeout, 0, task.sleep, 1); getmetatable(e).__index = function() while true do end end`,
		"error metatable tostring": `local task = require("task"); local ok, e = pcall(task.timeout, 0, task.sleep, 1); getmetatable(e).__tostring = function() return "pwned" end`,
		"channel":                  `require("channel").new = nil`,
		"promise":                  `require("promise").resolve = nil`,
		"host module":              `host.iecho = function() return "pwned" end`,
		"require host module":      `require("host").iecho = function() return "pwned" end`,
		"package.preload":          `package.preload.evil = function() return "pwned" end`,
		"package.loaded.string":    `package.loaded.string.format = nil`,
		"package.searchers":        `package.searchers[1] = function() return function() return "pwned" end end`,
		"math":                     `math.floor = function() return "pwned" end`,
		"table.insert":             `table.insert(table, "pwned")`,
		"coroutine":                `coroutine.wrap = function() return "pwned" end`,
		"os":                       `os.time = function() return "pwned" end`,
		"utf8":                     `utf8.char = function() return "pwned" end`,
	}
	globals := map[string]string{
		"tostring": `tostring = function() return "pwned" end`,
		"a global": `shared_secret = "pwned"`,
		"_G":       `_G.print = function() end`,
		"_G meta":  `setmetatable(_G, {__index = function() while true do end end, __newindex = function() while true do end end})`,
		// package.loaded is the run's own too (over the runtime's,
		// read-only): a script may register its own modules there.
		"package.loaded":      `package.loaded.task = {spawn = function() return "pwned" end}; assert(require("task").spawn() == "pwned")`,
		"package.loaded meta": `setmetatable(package.loaded, {__index = function() while true do end end})`,
	}
	const check = `
		local task, channel, promise = require("task"), require("channel"), require("promise")
		local t = task.spawn(function() return 7 end)
		print(string.format("%d", 1), ("x"):rep(2), t:wait(), tostring(1), shared_secret,
			math.floor(1.5), type(channel.new), type(promise.resolve), host.iecho("e"),
			require("host").iecho("r"), #table, type(coroutine.wrap), type(os.time()), utf8.char(65),
			package.preload.evil)
		local ok, e = pcall(task.timeout, 0, task.sleep, 1)
		print(type(e), tostring(e) ~= "pwned", e.kind)`
	const want = "1\txx\t7\t1\tnil\t1\tfunction\tfunction\te\tr\t0\tfunction\tnumber\tA\tnil\ntable\ttrue\ttimeout\n"
	for name, src := range writes {
		t.Run(name, func(t *testing.T) {
			rt, out := hostileRuntime(t, nil)
			err := hostileRun(t, rt, src)
			var le *bridge.LuaError
			if !errors.As(err, &le) || le.Kind != "runtime" {
				t.Errorf("the write was not refused: %v", err)
			}
			out.Reset()
			if err := hostileRun(t, rt, check); err != nil || out.String() != want {
				t.Errorf("the next run saw a change: %v\n%s", err, out.String())
			}
			servesAfter(t, rt, out)
		})
	}
	for name, src := range globals {
		t.Run(name, func(t *testing.T) {
			rt, out := hostileRuntime(t, nil)
			err := hostileRun(t, rt, src)
			if err != nil && !strings.Contains(name, "meta") {
				t.Errorf("a run's own globals are its own to change: %v", err)
			}
			out.Reset()
			if err := hostileRun(t, rt, check); err != nil || out.String() != want {
				t.Errorf("the next run saw a change: %v\n%s", err, out.String())
			}
			servesAfter(t, rt, out)
		})
	}
}

// Outside the sandbox globals are shared (the README says so), but the
// core reads its own state raw: metamethods a script put on _G or on
// package.loaded cannot hang the host's SetGlobal, Call, registration or
// Close.
func TestHostileMetamethodsOnGlobalsCannotHangTheHost(t *testing.T) {
	for _, sandbox := range []bool{false, true} {
		t.Run(fmt.Sprintf("sandbox=%v", sandbox), func(t *testing.T) {
			rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = sandbox })
			loop := `function() while true do end end`
			src := fmt.Sprintf(`
				setmetatable(_G, {__index = %s, __newindex = %s})
				pcall(setmetatable, package.loaded, {__index = %s, __newindex = %s})
				pcall(setmetatable, package, {__index = %s, __newindex = %s})`, loop, loop, loop, loop, loop, loop)
			// Without the sandbox pcall is found raw in _G and the run ends;
			// under it the script replaced its own globals' metatable, the
			// one that reached the libraries: its pcall lookup loops, and
			// its limits stop it.
			if err := hostileRun(t, rt, src); !sandbox && err != nil {
				t.Fatalf("run: %v", err)
			} else if sandbox {
				wantStopped(t, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), hostileWindow)
			defer cancel()
			if err := hostileDo(t, "SetGlobal", func() error { return rt.SetGlobal(ctx, "x", 1) }); err != nil {
				t.Errorf("SetGlobal: %v", err)
			}
			_, err := hostileCall(t, rt, ctx, "nosuchfn")
			wantKind(t, err, "runtime", "", "nosuchfn")
			if err := rt.RegisterFunc("later.fn", func(context.Context, bridge.Args) ([]any, error) {
				return []any{"later"}, nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := rt.RegisterFunc("laterglobal", func(context.Context, bridge.Args) ([]any, error) {
				return []any{"g"}, nil
			}); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			err = hostileDo(t, "run after registering", func() error {
				return rt.RunString(ctx, "after", `print(rawget(package.loaded, "later") and "ok" or "?")`)
			})
			if sandbox {
				err = hostileDo(t, "run after registering", func() error {
					return rt.RunString(ctx, "after", `print(require("later").fn(), laterglobal())`)
				})
			}
			if err != nil {
				t.Errorf("run after registering: %v", err)
			}
			servesAfter(t, rt, out)
		})
	}
}

// A coroutine created in a run without a deadline, resumed in a later run
// that has one, is held to the later run's limits.
func TestHostileCoroutineFromAnEarlierRunIsHeldToTheLaterRunsLimits(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = false; o.InstructionLimit = 0 })
	if err := hostileDo(t, "run one", func() error {
		return rt.RunString(context.Background(), "one", `spin = coroutine.create(function() while true do end end)`)
	}); err != nil {
		t.Fatal(err)
	}
	wantStopped(t, hostileRun(t, rt, `coroutine.resume(spin)`))
	servesAfter(t, rt, out)
}

// package.searchpath and loadfile must not tell a sandboxed script which
// files exist outside SandboxDirs.
func TestHostileSandboxDoesNotRevealFiles(t *testing.T) {
	dir := t.TempDir()
	allowed := filepath.Join(dir, "allowed")
	if err := os.Mkdir(allowed, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(dir, "secret.lua")
	if err := os.WriteFile(outside, []byte("return 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.SandboxDirs = []string{allowed} })
	src := fmt.Sprintf(`
		local exists, missing = %q, %q
		local function answer(f, ...) return select("#", f(...)), tostring((select(2, f(...)))) end
		local function strip(m, s) -- m with s replaced by F, plainly
			local i, j = m:find(s, 1, true)
			if i then return m:sub(1, i - 1) .. "F" .. m:sub(j + 1) end
			return m
		end
		local sp = package.searchpath
		local a = sp and {sp("secret", %q)} or {}
		local b = sp and {sp("nosuch", %q)} or {}
		print(#a == #b and strip(tostring(a[2]), "secret") == strip(tostring(b[2]), "nosuch") and "same" or "differs")
		local n1, m1 = answer(loadfile, exists)
		local n2, m2 = answer(loadfile, missing)
		print(n1 == n2 and strip(m1, exists) == strip(m2, missing) and "same" or ("differs: " .. m1 .. " | " .. m2))`,
		outside, filepath.Join(dir, "nosuch.lua"), dir+"/?.lua", dir+"/?.lua")
	if err := hostileRun(t, rt, src); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := out.String(); got != "same\nsame\n" {
		t.Errorf("the sandbox tells existing from missing files: %q", got)
	}
	servesAfter(t, rt, out)
}

// Names with a zero byte (or otherwise unusable) are refused, not cut.
func TestHostileRegisterRefusesBadNames(t *testing.T) {
	rt, out := hostileRuntime(t, nil)
	fn := func(context.Context, bridge.Args) ([]any, error) { return nil, nil }
	for _, name := range []string{"a\x00b", "", ".a", "a.", "a..b", "a b", "1a", "a.1"} {
		if err := rt.RegisterFunc(name, fn); err == nil {
			t.Errorf("RegisterFunc(%q) was accepted", name)
		}
	}
	err := hostileRun(t, rt, `print(type(a))`)
	if err != nil || out.String() != "nil\n" {
		t.Errorf("%v %q", err, out.String())
	}
	servesAfter(t, rt, out)
}

// Options.OutputLimit ends a run that writes too much (the audit wrote
// 24 GiB in 5.5 s).
func TestHostileOutputLimit(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.OutputLimit = 1 << 20 })
	err := hostileRun(t, rt, `local s = string.rep("x", 8 * 1024 * 1024) for i = 1, 1e9 do print(s) end`)
	wantKind(t, err, "limit", "output")
	if n := len(out.String()); n > 1<<20 {
		t.Errorf("%d bytes were written past a 1 MiB limit", n)
	}
	// The limit is per run: the next run may write again.
	servesAfter(t, rt, out)
}

// One stream read from two tasks: the second reader gets a clear error;
// emit from several goroutines is safe.
func TestHostileStreamSharedBetweenTasks(t *testing.T) {
	rt, out := hostileRuntime(t, nil)
	if err := rt.RegisterStream("host.count", func(ctx context.Context, a bridge.Args, emit func(any) error) error {
		n, _ := a.Int(0)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int64(0); i < n; i++ {
					if err := emit(i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}); err != nil {
		t.Fatal(err)
	}
	err := hostileRun(t, rt, `
		local task = require("task")
		local it = host.count(1000)
		local n = 0
		for _ in it do n = n + 1 end
		print(n)
		local f, s, c, closer = host.count(1e6)
		local a = task.spawn(function() for _ in f, s, c, closer do task.yield() end end)
		task.yield()
		local ok, err = pcall(function() for _ in f, s, c do end end)
		print(ok, tostring(err):match("another task") ~= nil)
		a:cancel()`)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := out.String(); got != "4000\nfalse\ttrue\n" {
		t.Errorf("output %q", got)
	}
	servesAfter(t, rt, out)
}

// A coroutine resumed where its resumer cannot yield (here a __close run
// by coroutine.wrap's error path) cannot carry a task's wait up to the
// task's root: task.yield, t:wait and a bridge call there are refused at
// once with an error, and leave the task's scheduling as it was. Letting
// them yield and then aborting the wait left the finished main task on the
// run queue; the next run resumed it after its run was freed (ASan: a use
// after free in mb_task_resume; FuzzHostile found it).
func TestHostileWaitsUnderAResumerThatCannotYield(t *testing.T) {
	for _, sandbox := range []bool{false, true} {
		rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = sandbox })
		err := hostileRun(t, rt, `
			local task = require("task")
			pcall(coroutine.wrap(function()
				local c <close> = setmetatable({}, {__close = function()
					print(pcall(coroutine.wrap(function()
						local t = task.spawn(function() end)
						local ok, e = pcall(task.yield)
						print("yield", ok, tostring(e):match("yield across") ~= nil)
						ok, e = pcall(t.wait, t)
						print("wait", ok, tostring(e):match("yield across") ~= nil)
						ok, e = pcall(host.iecho, 1)
						print("inline", ok, e)
						error("w")
					end)))
				end})
				error("w")
			end))
			print("main ends")`)
		if err != nil {
			t.Fatalf("sandbox %v: %v", sandbox, err)
		}
		got := out.String()
		for _, want := range []string{"yield\tfalse\ttrue\n", "wait\tfalse\ttrue\n", "inline\ttrue\t1\n", "main ends\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("sandbox %v: output %q lacks %q", sandbox, got, want)
			}
		}
		servesAfter(t, rt, out)
	}
}

// The run knows its main task by its record, which is freed once main has
// ended and its Task collected; a later task may get the same address.
// That task's end must not be taken for main's: a cancelled one made the
// run report "the run's main task was cancelled" while its other tasks
// ran on into the next run (FuzzHostile found it).
func TestMainTasksRecordReusedByALaterTask(t *testing.T) {
	rt, out := hostileRuntime(t, func(o *bridge.Options) { o.Sandbox = false })
	err := hostileRun(t, rt, `
		local task = require("task")
		task.spawn(function()
			task.yield() -- main ends
			collectgarbage() collectgarbage() -- and its Task is freed
			for i = 1, 200 do
				local t = task.spawn(function() task.sleep(1) end)
				t:cancel()
				pcall(t.wait, t)
			end
			print("done")
		end)`)
	if err != nil || out.String() != "done\n" {
		t.Fatalf("run: %v, output %q", err, out.String())
	}
	servesAfter(t, rt, out)
}

// A limit's error raised from a C function that filled its stack with
// results (table.unpack of 200,000 values, charged as it runs) is built
// with room of its own: before, the error and its traceback were written
// past the thread's stack (ASan with an instrumented Lua: heap overflow
// in luaL_traceback), and the traceback came out as "[C]: in ?".
func TestHostileLimitErrorFromAFullStack(t *testing.T) {
	const src = `local t = {}
for i = 1, 200000 do t[i] = i end
local function unpack_all() return table.unpack(t) end
return select("#", unpack_all())`
	for _, limit := range []int64{700_000, 900_000, 1_100_000} {
		rt, err := bridge.New(bridge.Options{Sandbox: true, InstructionLimit: limit})
		if err != nil {
			t.Fatal(err)
		}
		err = rt.RunString(context.Background(), "full", src)
		var le *bridge.LuaError
		if !errors.Is(err, bridge.ErrInstructionLimit) || !errors.As(err, &le) {
			t.Fatalf("limit %d: got %v, want the instruction limit's error", limit, err)
		}
		for _, want := range []string{"in function 'table.unpack'", "full:3: in "} {
			if !strings.Contains(le.Traceback, want) {
				t.Errorf("limit %d: traceback lacks %q:\n%s", limit, want, le.Traceback)
			}
		}
		if err := rt.RunString(context.Background(), "after", `assert(select("#", table.unpack({1, 2, 3})) == 3)`); err != nil {
			t.Errorf("limit %d: the Runtime does not serve on: %v", limit, err)
		}
		rt.Close()
	}
}

// Outside the sandbox debug.setuservalue and debug.setmetatable work as
// stock's, except on the runtime's own objects: a Task's user values
// anchor its thread (a script that replaced them let the collector free a
// thread the core still ran: SIGSEGV), and an object's metatable says what
// the core takes it for (a channel given the Task metatable was read as a
// Task; io.stdout given it, as one too).
func TestDebugCannotUnanchorOrRetypeTheRuntimesObjects(t *testing.T) {
	rt, _ := newRuntime(t)
	for _, opts := range [][]bridge.FuncOption{nil, {bridge.Inline()}} {
		name := "inc"
		if opts != nil {
			name = "inc_inline"
		}
		if err := rt.RegisterFunc(name, func(ctx context.Context, a bridge.Args) ([]any, error) {
			x, err := a.Int(0)
			return []any{x + 1}, err
		}, opts...); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, rt, `
-- A bridge function's upvalue is its index in the Go side's table: a
-- script that replaced it made Go index past the table and panic.
for _, f in ipairs({inc, inc_inline, string.gmatch("a", "a")}) do
  local ok, err = pcall(debug.setupvalue, f, 1, 123456789)
  assert(not ok and tostring(err):find("upvalues of a C function are its own"), tostring(err))
end
assert(inc(1) == 2 and inc_inline(2) == 3)
local up = 1
local function lua_fn() return up end
assert(debug.setupvalue(lua_fn, 1, 7) == "up" and lua_fn() == 7) -- Lua functions as stock
-- A task waiting in select keeps its registrations in its C frame's
-- slots: a script that cleared them had them freed under the wait (the
-- select then returned without its value).
do
  local task, channel = require("task"), require("channel")
  local a, b = channel.new(), channel.new()
  local co
  local sel = task.spawn(function()
    co = coroutine.running()
    local mine = "lua local"
    local r = table.pack(channel.select({{a, "recv"}, {b, "recv"}}))
    return mine, table.unpack(r, 1, r.n)
  end)
  task.yield()
  local refused = 0
  for level = 0, 3 do -- the C frames of the wait: select's, and the task's root
    local info = debug.getinfo(co, level, "S")
    for i = 1, info and info.what == "C" and 8 or 0 do
      local ok, err = pcall(debug.setlocal, co, level, i, nil)
      assert(not ok and tostring(err):find("slots of a C function are its own"), tostring(err))
      refused = refused + 1
    end
  end
  assert(refused > 0)
  collectgarbage(); collectgarbage()
  a:send("v")
  local mine, i, v, ok = sel:wait()
  assert(i == 1 and v == "v" and ok == true, tostring(i) .. " " .. tostring(v) .. " " .. tostring(ok))
  local function lua_level() local l = 1; debug.setlocal(1, 1, 5); return l end
  assert(lua_level() == 5) -- a Lua function's locals as stock
end
local task, channel = require("task"), require("channel")
local t = task.spawn(function() task.sleep(0.001); return 1, 2 end)
local taskmt = debug.getmetatable(t)
for _, u in ipairs({t, channel.new(), task.group()}) do
  local ok, err = pcall(debug.setuservalue, u, 42, 1)
  assert(not ok and tostring(err):find("user values of the runtime's objects"), tostring(err))
  ok, err = pcall(debug.setmetatable, u, nil)
  assert(not ok and tostring(err):find("metatables of the runtime's objects"), tostring(err))
end
for _, v in ipairs({channel.new(), io.stdout, {}, 1}) do
  local ok, err = pcall(debug.setmetatable, v, taskmt)
  assert(not ok and tostring(err):find("metatables of the runtime's objects"), tostring(err))
end
collectgarbage()
local a, b = t:wait()
assert(a == 1 and b == 2)
-- stock's behaviour otherwise
assert(debug.setuservalue(io.stdout, 1, 1) == nil) -- no such user value
local ok, err = pcall(debug.setuservalue, {}, 1)
assert(not ok and err:find("bad argument #1 to 'debug.setuservalue'"), err)
local mt = {__index = function() return "x" end}
assert(debug.setmetatable(10, mt) == 10 and (5).anything == "x")
debug.setmetatable(10, nil)
ok, err = pcall(debug.setmetatable, {}, 5)
assert(not ok and err:find("nil or table expected"), err)`)
}
