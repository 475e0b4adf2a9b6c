package bridge_test

// FuzzHostile: Lua programs generated from a grammar of hostile constructs
// (finalizers outside the sandbox, metamethods, coroutines and their close,
// to-be-closed variables, errors and their handlers, long C calls, deep
// nesting, huge strings, tasks and channels, load of generated text) run
// under every limit: Sandbox (mostly), MemoryLimit, InstructionLimit,
// OutputLimit and a deadline. It asserts only what must hold for any
// script: the process does not crash, the run ends (a watchdog far above
// its budget), with no error or a Lua error (never the loop's own
// failure), the Runtime then serves a run, and Close frees everything.
//
// An input whose first byte is 0xFF is Lua source as it is (the seeds
// include the audit's reproducers so); any other is a list of choices the
// grammar makes, so that mutations stay programs.
//
// Run it with: go test -run '^$' -fuzz '^FuzzHostile$' -fuzztime 10m ./bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/leaks"
)

const (
	fhMemory   = 16 << 20
	fhInsns    = 1_000_000
	fhDeadline = 100 * time.Millisecond
	fhWatchdog = 30 * time.Second // a run, a serve or a Close still going after this is stuck
)

// fhGen turns fuzz bytes into a program: each byte read is a choice (0
// once the input is spent, so every input is a finite program).
type fhGen struct {
	data    []byte
	pos     int
	sandbox bool
	nvar    int
	stmts   int
	gc      int // inside a finalizer's body (outside the sandbox only)
}

func (g *fhGen) byte() int {
	if g.pos >= len(g.data) {
		return 0
	}
	b := g.data[g.pos]
	g.pos++
	return int(b)
}

func (g *fhGen) pick(n int) int { return g.byte() % n }

// small is a count for loops and sizes: 0..15, sometimes 2^k up to 2^20.
func (g *fhGen) small() int {
	b := g.byte()
	if b&0x80 != 0 {
		return 1 << (b & 0x0f) << 4
	}
	return b & 0x0f
}

func (g *fhGen) name() string {
	g.nvar++
	return fmt.Sprintf("v%d", g.nvar)
}

// loop is a body that never ends by itself.
var fhLoops = []string{
	`while true do end`,
	`local t = {} while true do t[#t + 1] = {} end`,
	`local s = "x" while true do s = s .. s end`,
	`repeat local x = {} until false`,
	`local function f() return f() end f()`,
	`local function f() return 1 + f() end f()`,
}

// fhGCLoops are the loops a finalizer may hold outside the sandbox: Lua
// runs finalizers with hooks off, so no limit can end one that neither
// allocates nor overflows a stack (that is why the sandbox refuses __gc,
// and the README says so); these end at MemoryLimit or a stack's limit.
var fhGCLoops = []string{
	`local t = {} while true do t[#t + 1] = {} end`,
	`local s = "x" while true do s = s .. s end`,
	`local function f() return 1 + f() end f()`,
}

// value is an expression, perhaps a hostile one.
func (g *fhGen) value(depth int) string {
	switch g.pick(12) {
	case 0:
		return fmt.Sprint(g.small())
	case 1:
		return fmt.Sprintf("string.rep(%q, %d)", "ab", g.small())
	case 2:
		return "{}"
	case 3:
		return fmt.Sprintf(`setmetatable({}, {__tostring = function() %s end})`, g.body(depth+1))
	case 4:
		return fmt.Sprintf(`setmetatable({}, {__index = function(t, k) %s end, __newindex = function() %s end})`,
			g.body(depth+1), g.body(depth+1))
	case 5:
		return `setmetatable({}, {__eq = function() return true end, __lt = function() error("lt") end, __len = function() return 1e9 end})`
	case 6:
		return `nil`
	case 7:
		return fmt.Sprintf(`coroutine.create(function() %s end)`, g.body(depth+1))
	case 8:
		return fmt.Sprintf(`(function() %s end)`, g.body(depth+1))
	case 9:
		return `0/0`
	case 10:
		return `"\x80\xbf\xff"`
	default:
		return fmt.Sprintf(`string.rep("x", %d)`, 1<<(g.byte()%24))
	}
}

// body is a short block: statements, some of which never end.
func (g *fhGen) body(depth int) string {
	if depth > 4 || g.pos >= len(g.data) {
		return ""
	}
	n := 1 + g.pick(3)
	var b strings.Builder
	for i := 0; i < n && g.stmts < 200; i++ {
		b.WriteString(g.stmt(depth))
		b.WriteString("\n")
	}
	return b.String()
}

// stmt is one hostile construct.
func (g *fhGen) stmt(depth int) string {
	g.stmts++
	d := depth + 1
	switch g.pick(32) {
	case 0:
		if g.gc > 0 {
			return fhGCLoops[g.pick(len(fhGCLoops))]
		}
		return fhLoops[g.pick(len(fhLoops))]
	case 1: // a to-be-closed variable whose handler does anything
		return fmt.Sprintf(`local %s <close> = setmetatable({}, {__close = function(o, e) %s end})`, g.name(), g.body(d))
	case 2: // a finalizer: refused under the sandbox, run by the collector and Close outside it
		if !g.sandbox {
			g.gc++
			defer func() { g.gc-- }()
		}
		body := g.body(d)
		return fmt.Sprintf(`pcall(setmetatable, {}, {__gc = function(o) %s end}) collectgarbage()`, body)
	case 3:
		return fmt.Sprintf(`pcall(function() %s end)`, g.body(d))
	case 4:
		return fmt.Sprintf(`xpcall(function() %s end, function(e) %s return e end)`, g.body(d), g.body(d))
	case 5:
		return fmt.Sprintf(`error(%s)`, g.value(d))
	case 6: // a coroutine resumed, then closed
		co := g.name()
		return fmt.Sprintf(`local %s = coroutine.create(function(...) %s coroutine.yield() %s end)
			print(coroutine.resume(%s)) print(coroutine.close(%s))`, co, g.body(d), g.body(d), co, co)
	case 7: // wrap, whose error closes the coroutine
		return fmt.Sprintf(`pcall(coroutine.wrap(function() local c <close> = setmetatable({}, {__close = function() %s end}) %s error("w") end))`,
			g.body(d), g.body(d))
	case 8: // a chain of closes, each from a __close
		return fmt.Sprintf(`do local co = false
			for i = 1, %d do local prev = co
				co = coroutine.create(function() local c <close> = setmetatable({}, {__close = function()
					if prev then assert(coroutine.close(prev)) end end}) coroutine.yield() end)
				coroutine.resume(co) end
			print(coroutine.close(co)) end`, 1+g.small()*g.small()*g.small())
	case 9: // long C calls
		if g.gc > 0 { // some of them never end: see fhGCLoops
			return `local t = {} for i = 1, 1e5 do t[i] = "x" end local s = table.concat(t) print(#s)`
		}
		return []string{
			`string.rep("a", 20000):find(".-.-.-.-.-b")`,
			`table.move({}, 1, 1e14, 1)`,
			`local t = {} for i = 1, 1e5 do t[i] = "x" end local s = table.concat(t) print(#s)`,
			`string.rep("x", 1 << 20):gsub(".", {x = "yy"})`,
			`table.sort({5, 3, 1, 4, 2}, function(a, b) while true do end end)`,
			`string.format("%s%s%s", string.rep("x", 1e6), string.rep("y", 1e6), "z")`,
			`utf8.char(table.unpack({}, 1, 1e5))`,
			`string.pack("s4s4", string.rep("x", 1e6), string.rep("y", 1e6))`,
			`local a, b = string.rep("x", 1 << 22), string.rep("x", 1 << 22) while a == b do end`,
			`require("json").encode(setmetatable({}, {__index = function() while true do end end}))`,
		}[g.pick(10)]
	case 10: // deep nesting
		return []string{
			fmt.Sprintf(`local function r(n) if n > 0 then return r(n - 1) + 1 end %s return 0 end r(%d)`, g.body(d), g.small()*1000),
			fmt.Sprintf(`local function p(n) if n > 0 then return pcall(p, n - 1) end %s end p(%d)`, g.body(d), g.small()*20),
			fmt.Sprintf(`local function c(n) if n > 0 then return coroutine.wrap(c)(n - 1) end %s end pcall(c, %d)`, g.body(d), g.small()*20),
			fmt.Sprintf(`local t = {} for i = 1, %d do t = {t} end print(pcall(require("json").encode, t))`, g.small()*100),
		}[g.pick(4)]
	case 11: // huge strings
		return fmt.Sprintf(`local %s = string.rep("x", %d) .. string.rep("y", %d)`, g.name(), 1<<(g.byte()%26), 1<<(g.byte()%26))
	case 12: // a task
		return fmt.Sprintf(`local %s = require("task").spawn(function() %s end)`, g.name(), g.body(d))
	case 13:
		return `require("task").yield()`
	case 14:
		return fmt.Sprintf(`require("task").sleep(%g)`, float64(g.small())/100)
	case 15: // tasks and a channel
		return fmt.Sprintf(`do local ch = require("channel").new(%d)
			local t = require("task").spawn(function() for i = 1, 3 do ch:send(i) end %s ch:close() end)
			for v in ch:iter() do %s end
			pcall(t.wait, t) end`, g.pick(3), g.body(d), g.body(d))
	case 16: // a task cancelled while it does anything
		return fmt.Sprintf(`do local t = require("task").spawn(function() %s end) require("task").yield() t:cancel() print(pcall(t.wait, t)) end`, g.body(d))
	case 17: // load of generated text
		return []string{
			fmt.Sprintf(`print(pcall(load, "return " .. string.rep("(", %d) .. "1" .. string.rep(")", %d)))`, g.small()*50, g.small()*50),
			fmt.Sprintf(`print(pcall(load, string.rep("local a = 1 ", %d)))`, g.small()*1000),
			fmt.Sprintf(`print(pcall(load, "\27Lua" .. string.rep("\255", %d)))`, g.small()),
			fmt.Sprintf(`print(pcall(load, function() %s return nil end))`, g.body(d)),
			fmt.Sprintf(`local f = load(%q) if f then pcall(f) end`, g.body(d)),
		}[g.pick(5)]
	case 18: // metamethods on what the core reads
		return fmt.Sprintf(`pcall(setmetatable, _G, {__index = function() %s end, __newindex = function() %s end})`, g.body(d), g.body(d))
	case 19:
		return fmt.Sprintf(`do local ok, e = pcall(require("task").timeout, 0, require("task").sleep, 1)
			pcall(function() getmetatable(e).__index = function() %s end end) end`, g.body(d))
	case 20: // a promise
		return fmt.Sprintf(`pcall(function() local p = require("promise").new(function(res, rej) %s res(1) end) p:andThen(function() %s end) p:await() end)`,
			g.body(d), g.body(d))
	case 21: // a timer
		return fmt.Sprintf(`setTimeout(function() %s end, %d)`, g.body(d), g.small())
	case 22:
		return fmt.Sprintf(`print(%s)`, g.value(d))
	case 23:
		return fmt.Sprintf(`print(tostring(%s))`, g.value(d))
	case 24: // utf8 on what it may reject
		return fmt.Sprintf(`print(pcall(function() for p, c in utf8.codes(%s) do end end))`, g.value(d))
	case 25:
		return fmt.Sprintf(`os.exit(%d)`, g.small())
	case 26: // a detached task that fails or loops
		return fmt.Sprintf(`require("task").spawn(function() %s end):detach()`, g.body(d))
	case 27:
		return fmt.Sprintf(`collectgarbage(%q)`, []string{"collect", "generational", "incremental", "step"}[g.pick(4)])
	case 28:
		return fmt.Sprintf(`for i = 1, %d do %s end`, g.small(), g.body(d))
	case 29: // a group whose child fails
		return fmt.Sprintf(`pcall(function() local g <close> = require("task").group() g:spawn(function() %s end) g:spawn(function() %s end) g:wait() end)`,
			g.body(d), g.body(d))
	case 30: // break out of a generic for with a closing value
		return fmt.Sprintf(`for k in next, {1, 2}, nil, setmetatable({}, {__close = function() %s end}) do local f = function() return k end break end`, g.body(d))
	default:
		return fmt.Sprintf(`local %s = %s`, g.name(), g.value(d))
	}
}

// fhProgram is the program data stands for, and whether it runs under
// the sandbox.
func fhProgram(data []byte) (src string, sandbox bool) {
	if len(data) > 0 && data[0] == 0xFF {
		return string(data[1:]), true
	}
	g := &fhGen{data: data}
	g.sandbox = g.byte()%5 != 0 // outside it a fifth of the time: finalizers exist there
	var b strings.Builder
	for g.pos < len(data) && g.stmts < 200 {
		b.WriteString(g.stmt(0))
		b.WriteString("\n")
	}
	return b.String(), g.sandbox
}

// fhDo runs f and fails the test if it has not returned after fhWatchdog
// (setting *stuck: the Runtime cannot be closed then).
func fhDo(t *testing.T, stuck *bool, what, src string, f func() error) error {
	t.Helper()
	err, ok := within(fhWatchdog, f)
	if !ok {
		*stuck = true
		t.Fatalf("%s: still running after %v; the program:\n%s", what, fhWatchdog, src)
	}
	return err
}

func FuzzHostile(f *testing.F) {
	// The audit's reproducers (issue 13), as they are.
	for _, src := range []string{
		`local co=false for i=1,20000 do local prev=co co=coroutine.create(function() local c <close> = setmetatable({}, {__close=function() if prev then assert(coroutine.close(prev)) end end}) coroutine.yield() end) assert(coroutine.resume(co)) end coroutine.close(co)`,
		`setmetatable({}, {__gc=function() while true do end end}) collectgarbage()`,
		`xpcall(function() error("x") end, function() while true do end end)`,
		`string.rep("a",20000):find(".-.-.-.-.-b")`,
		`table.move({},1,1e14,1)`,
		`local x <close> = setmetatable({}, {__close=function() while true do end end}) require("task").sleep(100)`,
		`setmetatable(_G, {__index=function() while true do end end, __newindex=function() while true do end end}) x = y`,
		`spin = coroutine.create(function() while true do end end) coroutine.resume(spin)`,
		`local task = require("task") task.spawn(function() local x <close> = setmetatable({}, {__close = function() local keep = {} for i = 1, 40 do keep[i] = string.rep("x", 50 * 1024 * 1024) end end}) task.sleep(100) end) task.sleep(0.01) error("boom")`,
		`local s = string.rep("x", 8 * 1024 * 1024) for i = 1, 1e9 do print(s) end`,
		`error(setmetatable({}, {__tostring = function() while true do end end}))`,
		`local task = require("task") local b = task.spawn(function() xpcall(function() while true do end end, function() while true do end end) end) task.yield() b:cancel() b:wait()`,
		`local a, b = string.rep("x", 1 << 22), string.rep("x", 1 << 22) while a == b do end`,
		// Lua 5.4.4's break out of a closing generic for (grammar case 30 found
		// it): a segfault in luaF_newtbcupval unless core/lbug.c fixes the code.
		`for k in next, {1, 2}, nil, setmetatable({}, {__close = function() end}) do local f = function() return k end break end
local v1 <close> = setmetatable({}, {__close = function() end})`,
	} {
		f.Add(append([]byte{0xFF}, src...))
	}
	// Grammar inputs: one per construct, then some mixes.
	for c := 0; c < 32; c++ {
		f.Add([]byte{1, byte(c), 0, 3, 1, 2})
		f.Add([]byte{0, byte(c), 1, byte(c + 7), 4, 9, 2})
	}
	f.Add([]byte{1, 1, 2, 0, 0, 12, 0, 1, 1, 0, 8, 0xff, 3, 4, 9, 1, 16, 1, 1, 0})
	f.Add([]byte{0, 2, 1, 22, 3, 0, 2, 4, 6, 1, 0, 0, 19, 0, 1, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		src, sandbox := fhProgram(data)
		lua0, loops0 := leaks.Counts()
		live0 := leaks.Live()
		out := &syncBuffer{}
		rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out, Sandbox: sandbox,
			MemoryLimit: fhMemory, InstructionLimit: fhInsns, OutputLimit: 64 << 10,
			CloseGrace: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		closed, stuck := false, false
		defer func() {
			if !closed && !stuck {
				rt.Close()
			}
		}()
		err = fhDo(t, &stuck, "the run", src, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), fhDeadline)
			defer cancel()
			return rt.RunString(ctx, "fuzz", src)
		})
		var le *bridge.LuaError
		var ee *bridge.ExitError
		if err != nil && !errors.As(err, &le) && (sandbox || !errors.As(err, &ee)) { // os.exit exists outside the sandbox
			t.Fatalf("the run ended with %T %v, not a Lua error; the program:\n%s", err, err, src)
		}
		// It serves: a run, under no deadline but its limits.
		out.Reset()
		err = fhDo(t, &stuck, "a run after", src, func() error {
			return rt.RunString(context.Background(), "after", `print(string.format("%d", 1 + 1))`)
		})
		if err != nil || !strings.HasSuffix(out.String(), "2\n") {
			t.Fatalf("a run after: %v, output %q; the program:\n%s", err, out.String(), src)
		}
		closed = true
		if err := fhDo(t, &stuck, "Close", src, rt.Close); err != nil {
			// Outside the sandbox a finalizer may still be running when
			// the grace is over, as the runtime is freed: Close says so,
			// and the runtime is freed once it returns.
			if sandbox || !strings.Contains(err.Error(), "had not returned from the runtime's finalizers") {
				t.Fatalf("Close: %v; the program:\n%s", err, src)
			}
			ctx, cancel := context.WithTimeout(context.Background(), fhWatchdog)
			defer cancel()
			if err := leaks.WaitLive(ctx, live0); err != nil {
				stuck = true
				t.Fatalf("the runtime's finalizers still running %v after Close gave up on them: %v; the program:\n%s", fhWatchdog, err, src)
			}
		}
		// Nothing leaks: the C side is freed (no bridge function can hold
		// it: none is registered), with no Lua byte and no libuv handle
		// left behind.
		if n := leaks.Live(); n > live0 { // fewer: another test's runtime was freed meanwhile
			t.Fatalf("%d Runtimes' C sides live after Close, %d before; the program:\n%s", n, live0, src)
		}
		if lua, loops := leaks.Counts(); lua != lua0 || loops != loops0 {
			t.Fatalf("Close left %d Lua bytes and %d open loops; the program:\n%s", lua-lua0, loops-loops0, src)
		}
	})
}
