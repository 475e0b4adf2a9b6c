package core

// Speed of moonbridge's string and table functions against the stock
// ones, on one private state (the same VM, the same calls): each
// workload's Lua loop runs b.N calls of the stock function, then of ours.
// Besides ns/op it reports cpu-ns/op, the thread's CPU time per call, which
// other work on the machine disturbs less. The figures are in
// bench/RESULTS.md. Run with:
//
//	go test -run '^$' -bench '^BenchmarkStrlib$' ./core

import (
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// threadCPU is the CPU time the calling OS thread has used. On a machine
// shared with other work, it moves far less than the wall clock.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD, Linux
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// strlibWorkloads: name -> Lua chunk taking (impl, n) and returning a
// check value that must not depend on which implementation ran.
var strlibWorkloads = []struct{ name, lib, fn, src string }{
	{"find/plain", "string", "find", `local f, n = ... local s, c = "the quick brown fox jumps over the lazy dog", 0
		for i = 1, n do c = c + f(s, "lazy", 1, true) end return c // n`},
	{"find/pattern", "string", "find", `local f, n = ... local s, c = "GET /index.html HTTP/1.1 200 1234", 0
		for i = 1, n do c = c + f(s, "%d+") end return c // n`},
	{"match/captures", "string", "match", `local f, n = ... local s, c = "  key_1 = some value  ", 0
		for i = 1, n do local k, v = f(s, "^%s*([%w_]+)%s*=%s*(.-)%s*$") c = c + #k + #v end return c // n`},
	{"gmatch/words", "string", "gmatch", `local f, n = ... local s, c = "the quick brown fox jumps over the lazy dog", 0
		for i = 1, n do for w in f(s, "%a+") do c = c + #w end end return c // n`},
	{"gsub/string", "string", "gsub", `local f, n = ... local s, c = "a  few   words\tand \n spaces  here", 0
		for i = 1, n do local r, k = f(s, "%s+", " ") c = c + #r + k end return c // n`},
	{"gsub/function", "string", "gsub", `local f, n = ... local s, c = "$name is $age years old", 0
		local vars = {name = "Ada", age = "36"}
		local function repl(k) return vars[k] end
		for i = 1, n do local r = f(s, "%$(%w+)", repl) c = c + #r end return c // n`},
	{"gsub/table", "string", "gsub", `local f, n = ... local s, c = "$name is $age years old", 0
		local vars = {name = "Ada", age = "36"}
		for i = 1, n do local r = f(s, "%$(%w+)", vars) c = c + #r end return c // n`},
	{"rep/100", "string", "rep", `local f, n = ... local c = 0
		for i = 1, n do c = c + #f("ab", 100, ",") end return c // n`},
	{"rep/1MiB", "string", "rep", `local f, n = ... local c = 0
		for i = 1, n do c = c + #f("abcdefgh", 131072) end return c // n`},
	{"concat/100", "table", "concat", `local f, n = ... local t, c = {}, 0
		for i = 1, 100 do t[i] = "item" .. i end
		for i = 1, n do c = c + #f(t, ",") end return c // n`},
	{"sort/1000", "table", "sort", `local f, n = ... local src, t, c = {}, {}, 0
		local x = 1 for i = 1, 1000 do x = (x * 1103515245 + 12345) % 2147483648 src[i] = x end
		for i = 1, n do for j = 1, 1000 do t[j] = src[j] end f(t) c = c + t[1] end return c // n`},
	{"sort/1000 function", "table", "sort", `local f, n = ... local src, t, c = {}, {}, 0
		local x = 1 for i = 1, 1000 do x = (x * 1103515245 + 12345) % 2147483648 src[i] = x end
		local function gt(a, b) return a > b end
		for i = 1, n do for j = 1, 1000 do t[j] = src[j] end f(t, gt) c = c + t[1] end return c // n`},
	{"insert+remove/end", "table", "insert", `local f, n = ... local t, r = {}, table.remove
		for i = 1, n do f(t, i) end local c = #t for i = 1, n do r(t) end return c // n`},
	{"unpack/10", "table", "unpack", `local f, n = ... local t, c = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0
		for i = 1, n do c = c + select("#", f(t)) end return c // n`},
	{"move/100", "table", "move", `local f, n = ... local a, b, c = {}, {}, 0
		for i = 1, 100 do a[i] = i end
		for i = 1, n do f(a, 1, 100, 1, b) c = c + b[100] end return c // n`},
}

// strlibBenchHarness runs a workload's chunk with the stock function or
// ours and returns its check value.
const strlibBenchHarness = `
local stock, src, lib, fn, which, n = ...
local chunk = assert(load(src))
local impl = which == "stock" and stock[lib][fn] or _G[lib][fn]
return chunk(impl, math.tointeger(n))
`

func BenchmarkStrlib(b *testing.B) {
	st, err := newStrlibState()
	if err != nil {
		b.Fatal(err)
	}
	defer st.close()
	for _, w := range strlibWorkloads {
		want := ""
		for _, which := range []string{"stock", "ours"} {
			b.Run(w.name+"/"+which, func(b *testing.B) {
				runtime.LockOSThread() // the Lua loop runs in one cgo call on this thread
				defer runtime.UnlockOSThread()
				cpu := threadCPU(b)
				out, err := st.call(strlibBenchHarness, w.src, w.lib, w.fn, which, strconv.Itoa(b.N))
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(threadCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
				if want == "" {
					want = out[0]
				} else if out[0] != want {
					b.Fatalf("check value %s, stock gave %s", out[0], want)
				}
			})
		}
	}
}
