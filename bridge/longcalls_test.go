package bridge_test

// Long C library calls (issue 13, point 6): Lua's count hook fires only
// between VM instructions, so one call of a stock library function whose
// work a script sizes — a pattern that backtracks, table.move over 1e14
// slots, table.insert on a table whose __len says 2^50 — would hold the
// loop long past the run's deadline and instruction budget. moonbridge's
// own string and table functions charge their work as they go; each case
// here must end with the limit error, after which the Runtime serves again
// and nothing is left behind. None of these would end within the
// watchdog in stock Lua (most would take years).

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/leaks"
)

// endlessCalls never return in stock Lua: each is one C call doing
// astronomically much work.
var endlessCalls = map[string]string{
	"find backtracking":   `return string.rep("a", 20000):find(".-.-.-.-.-b")`,
	"match backtracking":  `return string.rep("a", 20000):match("(.-)(.-)(.-)(.-)(.-)b")`,
	"gmatch backtracking": `for x in string.rep("a", 20000):gmatch(".-.-.-.-.-b") do end`,
	"gsub backtracking":   `return (string.rep("a", 20000):gsub(".-.-.-.-.-b", "x"))`,
	"gsub function":       `return (string.rep("a", 20000):gsub("a.-.-.-.-b", function(m) return m end))`,
	"greedy backtracking": `return string.rep("a", 20000):find("a*a*a*a*a*b")`,
	"balance":             `return string.rep("(", 1000000):find("%b()")`,
	"back reference":      `return string.rep("a", 1000000):find("(.-)%1b")`,
	"frontier":            `return string.rep("a", 20000):find("%f[a].-.-.-.-b")`,
	"table.move":          `table.move({}, 1, 1e14, 1)`,
	"table.move to other": `table.move({}, 1, 1e14, 1, {})`,
	"table.insert __len":  `table.insert(setmetatable({}, {__len = function() return 1 << 50 end}), 1, "x")`,
	"table.remove __len":  `table.remove(setmetatable({}, {__len = function() return 1 << 50 end}), 1)`,
	"table.remove wide":   `table.remove(setmetatable({}, {__len = function() return math.maxinteger end}), math.mininteger)`,
	// One string compared 2e7 times, 64 KiB a comparison.
	"table.sort": `local s, t = string.rep("x", 65536), {}
		for i = 1, 1000000 do t[i] = s end
		table.sort(t)`,
}

// boundedCalls finish in stock Lua within a few VM instructions' worth of
// counting, though each does millions of elements' or bytes' work in C:
// only the charge puts them over a 5,000,000-instruction budget.
var boundedCalls = map[string]string{
	"string.rep":   `for i = 1, 100 do local s = ("abc"):rep(3000000) end`,
	"plain find":   `local s = ("a"):rep(10000000) for i = 1, 20 do s:find("b", 1, true) end`,
	"gsub":         `local s = ("a"):rep(1000000) for i = 1, 8 do s:gsub("a", "bb") end`,
	"table.concat": `local t = {} for i = 1, 100000 do t[i] = "x" end for i = 1, 50 do table.concat(t) end`,
	"table.unpack": `local t = {} for i = 1, 100000 do t[i] = i end for i = 1, 50 do select("#", table.unpack(t)) end`,
	"table.sort":   `local t = {} for i = 1, 200000 do t[i] = (i * 7919) % 200000 end table.sort(t)`,
	"table.move":   `local t = {} for i = 1, 100000 do t[i] = i end for i = 1, 50 do table.move(t, 1, #t, 1, {}) end`,
	// linear, but over strings as long as memory allows
	"string.upper":   `local s = ("x"):rep(1000000) for i = 1, 100 do s:upper() end`,
	"string.lower":   `local s = ("X"):rep(1000000) for i = 1, 100 do s:lower() end`,
	"string.reverse": `local s = ("xy"):rep(500000) for i = 1, 100 do s:reverse() end`,
	"string.sub":     `local s = ("x"):rep(1000000) for i = 1, 200 do s:sub(2) end`,
	"string.byte":    `local s = ("x"):rep(100000) for i = 1, 100 do select("#", s:byte(1, -1)) end`,
	"utf8.len":       `local s = ("\u{e9}"):rep(1000000) for i = 1, 100 do utf8.len(s) end`,
	"utf8.codepoint": `local s = ("x"):rep(100000) for i = 1, 100 do select("#", utf8.codepoint(s, 1, -1)) end`,
	"utf8.offset":    `local s = ("\u{e9}"):rep(1000000) for i = 1, 100 do utf8.offset(s, -1000000) end`,
}

// watched is a Runtime whose runs fail the test, instead of hanging it, if
// they do not return within 30 s: that is a hang, not slowness (every case
// here ends within a deadline of 200 ms or a budget of 5M instructions
// plus one batch of work). A hung Runtime is not closed: Close would wait
// for its loop, stuck in C.
type watched struct {
	*bridge.Runtime
	hung bool
}

func newWatched(t *testing.T, opts bridge.Options) *watched {
	t.Helper()
	rt, err := bridge.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w := &watched{Runtime: rt}
	t.Cleanup(func() {
		if !w.hung {
			w.Close()
		}
	})
	return w
}

func (w *watched) run(t *testing.T, ctx context.Context, src string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- w.RunString(ctx, "long", src) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		w.hung = true
		t.Fatalf("the run did not return: %s", src)
		return nil
	}
}

// servesAgain checks that rt runs a script and answers a Call after a run
// ended by a limit.
func servesAgain(t *testing.T, rt *bridge.Runtime) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.RunString(ctx, "after", `function after(x) return x + 1, ("ab"):rep(2), table.concat({1, 2}, ",") end`); err != nil {
		t.Fatalf("after the limit: %v", err)
	}
	out, err := rt.Call(ctx, "after", 41)
	if err != nil || len(out) != 3 || out[0] != int64(42) || out[1] != "abab" || out[2] != "1,2" {
		t.Fatalf("after the limit: Call = %v, %v", out, err)
	}
}

// limitOptions are the configurations each case runs under: plain, and a
// hostile script's (sandbox and memory limit).
var limitOptions = map[string]bridge.Options{
	"plain":   {},
	"sandbox": {Sandbox: true, MemoryLimit: 64 << 20},
}

func TestLongCCallsStopAtTheDeadline(t *testing.T) {
	for oname, opts := range limitOptions {
		for name, src := range endlessCalls {
			t.Run(oname+"/"+name, func(t *testing.T) {
				rt := newWatched(t, opts)
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				err := rt.run(t, ctx, src)
				limitError(t, err, "deadline")
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("%v is not DeadlineExceeded", err)
				}
				servesAgain(t, rt.Runtime)
			})
		}
	}
}

func TestLongCCallsStopAtTheInstructionLimit(t *testing.T) {
	all := map[string]string{}
	for name, src := range endlessCalls {
		all["endless/"+name] = src
	}
	for name, src := range boundedCalls {
		all["bounded/"+name] = src
	}
	for oname, opts := range limitOptions {
		opts.InstructionLimit = 5_000_000
		for name, src := range all {
			t.Run(oname+"/"+name, func(t *testing.T) {
				rt := newWatched(t, opts)
				err := rt.run(t, context.Background(), src)
				limitError(t, err, "instructions")
				if !errors.Is(err, bridge.ErrInstructionLimit) {
					t.Errorf("%v is not ErrInstructionLimit", err)
				}
				servesAgain(t, rt.Runtime)
			})
		}
	}
}

// The limit error cannot be caught inside the long call's callbacks or
// around it: pcall raises it again, and the run ends.
func TestLongCCallLimitCannotBeSwallowed(t *testing.T) {
	rt := newWatched(t, bridge.Options{InstructionLimit: 5_000_000})
	for _, src := range []string{
		`while true do pcall(string.find, string.rep("a", 20000), ".-.-.-.-.-b") end`,
		`while true do pcall(table.move, {}, 1, 1e14, 1) end`,
		// the comparator catches the error raised in the nested sort
		`local t = {} for i = 1, 100 do t[i] = i end
		 table.sort(t, function(a, b)
			pcall(table.move, {}, 1, 1e14, 1)
			return a < b
		 end)`,
		`string.gsub(string.rep("a", 100), "a", function(c)
			pcall(string.find, string.rep("a", 20000), ".-.-.-.-.-b")
		 end)`,
	} {
		err := rt.run(t, context.Background(), src)
		limitError(t, err, "instructions")
	}
	servesAgain(t, rt.Runtime)
}

// Within its limits a long call completes with the right result, and many
// runs of them leave no goroutine and no Lua memory behind once closed.
func TestLongCCallsWithinLimitsLeaveNothing(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	leakedLua, leakedLoops := leaks.Counts()
	for range 3 {
		out := &syncBuffer{}
		rt := newWatched(t, bridge.Options{Stdout: out, InstructionLimit: 1 << 40, MemoryLimit: 256 << 20})
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		err := rt.run(t, ctx, `
			local s = string.rep("ab", 100000, ",")
			print(#s, select(2, s:gsub(",", ",")), s:find("b,a", 1, true), s:match("^(ab),"))
			local t = {}
			for i = 1, 100000 do t[i] = (i * 7919) % 100003 end
			table.sort(t)
			local ok, n = true, #t - 1
			for i = 2, #t do ok = ok and t[i - 1] <= t[i] end
			for i = 1, #t do n = n + #tostring(t[i]) end
			print(ok, #table.concat(t, ",") == n, select("#", table.unpack(t, 1, 5000)), #table.move(t, 1, #t, 1, {}))
			print(string.rep("", 1e18) == "", string.rep("x", 3, ""))`)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		want := "299999\t99999\t2\tab\ntrue\ttrue\t5000\t100000\ntrue\txxx\n"
		if got := out.String(); got != want {
			t.Errorf("output %q", got)
		}
		rt.Close()
	}
	checkGoroutines(t, goroutines)
	if lua, loops := leaks.Counts(); lua != leakedLua || loops != leakedLoops {
		t.Errorf("left behind: %d Lua bytes, %d loops with open handles", lua-leakedLua, loops-leakedLoops)
	}
}

// Callbacks of our functions cannot yield, as stock's: a Go call inside
// one fails with an error naming the function in the way, an Inline one
// works, and the Runtime goes on.
func TestLongCallCallbacksCannotWaitForGo(t *testing.T) {
	out := &syncBuffer{}
	rt := newWatched(t, bridge.Options{Stdout: out})
	if err := rt.RegisterFunc("host.slow", func(ctx context.Context, a bridge.Args) ([]any, error) {
		return []any{a.Get(0)}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := rt.RegisterFunc("host.fast", func(ctx context.Context, a bridge.Args) ([]any, error) {
		return []any{a.Get(0)}, nil
	}, bridge.Inline()); err != nil {
		t.Fatal(err)
	}
	err := rt.run(t, context.Background(), `
		local function try(f) local ok, e = pcall(f) print(ok, type(e) == "table" and e.message or e) end
		try(function() return ("ab"):gsub("%w", function(c) return host.slow(c) end) end)
		try(function() return string.gsub("ab", "%w", setmetatable({}, {__index = function(_, c) return host.slow(c) end})) end)
		try(function() table.sort({3, 1, 2}, function(a, b) return host.slow(a) < b end) end)
		print(("ab"):gsub("%w", function(c) return host.fast(c):upper() end))
		local t = {3, 1, 2}
		table.sort(t, function(a, b) return host.fast(a) < host.fast(b) end)
		print(table.concat(t, ","), host.slow("after"))`)
	if err != nil {
		t.Fatal(err)
	}
	want := "false\thost.slow: cannot wait for Go inside 'string.gsub', a C function Lua cannot yield across (attempt to yield across a C-call boundary)\n" +
		// the __index function is called by gsub: gsub is the C function in the way
		"false\thost.slow: cannot wait for Go inside 'string.gsub', a C function Lua cannot yield across (attempt to yield across a C-call boundary)\n" +
		"false\thost.slow: cannot wait for Go inside 'table.sort', a C function Lua cannot yield across (attempt to yield across a C-call boundary)\n" +
		"AB\t2\n1,2,3\tafter\n"
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
