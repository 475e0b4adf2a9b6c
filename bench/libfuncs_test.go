package bench

// moonbridge's own string and table functions (core/strlib.c,
// core/tablib.c: they charge their work to the run's deadline and
// instruction budget) against stock Lua 5.4's, on ordinary inputs. Each
// workload is one Lua text run twice: in a plain lua5.4 process (stock
// functions, Debian's static interpreter) and in a moonbridge Runtime (our
// functions, on the same Lua 5.4.4 VM, linked statically since issue 18). The Lua loop times itself with
// os.clock around b.N calls, so neither process start nor Runtime setup is
// counted; ns/op is per call. Both sides must return the same check value.
//
//	go test -run '^$' -bench '^BenchmarkLibFunctions$' -count 5 .
//
// The loop itself runs on two builds of the VM (moonbridge's is now
// linked statically too: fib(35) within a few % of stock, RESULTS.md,
// issue 18): the "len" workload, a call of string.len that neither side
// replaced, shows what difference is left. The function-level comparison on one VM is BenchmarkStrlib in
// ../core.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// libWorkloads: the body of a function of n that calls one library
// function n times and returns a check value that depends on the results
// but not on n.
var libWorkloads = []struct{ name, body string }{
	{"len", `local s, c = "the quick brown fox", 0
		for i = 1, n do c = string.len(s) end return c`},
	{"find/plain", `local s, c = "the quick brown fox jumps over the lazy dog", 0
		for i = 1, n do c = s:find("lazy", 1, true) end return c`},
	{"find/pattern", `local s, c = "GET /index.html HTTP/1.1 200 1234", 0
		for i = 1, n do c = s:find("%d+") end return c`},
	{"match/captures", `local s, k, v = "  key_1 = some value  "
		for i = 1, n do k, v = s:match("^%s*([%w_]+)%s*=%s*(.-)%s*$") end return k .. "|" .. v`},
	{"gmatch/words", `local s, c = "the quick brown fox jumps over the lazy dog", 0
		for i = 1, n do c = 0 for w in s:gmatch("%a+") do c = c + #w end end return c`},
	{"gsub/string", `local s, r = "a  few   words\tand \n spaces  here"
		for i = 1, n do r = s:gsub("%s+", " ") end return r`},
	{"gsub/function", `local s, r = "$name is $age years old"
		local vars = {name = "Ada", age = "36"}
		local function repl(k) return vars[k] end
		for i = 1, n do r = s:gsub("%$(%w+)", repl) end return r`},
	{"rep/100", `local r for i = 1, n do r = ("ab"):rep(100, ",") end return #r`},
	{"upper/40", `local s, r = "The Quick Brown Fox Jumps Over The Dog" for i = 1, n do r = s:upper() end return r`},
	{"sub/4", `local s, c = "hello world", 0 for i = 1, n do c = c + #s:sub(3, 6) end return c // n`},
	{"concat/100", `local t, r = {} for i = 1, 100 do t[i] = "item" .. i end
		for i = 1, n do r = table.concat(t, ",") end return #r`},
	{"sort/100", `local src, t = {}, {}
		local x = 1 for i = 1, 100 do x = (x * 1103515245 + 12345) % 2147483648 src[i] = x end
		for i = 1, n do table.move(src, 1, 100, 1, t) table.sort(t) end
		local ok = true for i = 2, 100 do ok = ok and t[i - 1] <= t[i] end return tostring(ok) .. t[1]`},
	{"insert+remove", `local t, c = {}, 0
		for i = 1, n do table.insert(t, i) c = c + table.remove(t) end return c == n * (n + 1) // 2`},
	{"unpack/10", `local t, c = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0
		for i = 1, n do c = select("#", table.unpack(t)) end return c`},
	{"move/100", `local a, b = {}, {} for i = 1, 100 do a[i] = i end
		for i = 1, n do table.move(a, 1, 100, 1, b) end return b[100]`},
}

// libChunk makes the chunk both sides run: n from its first argument; it
// prints the seconds the loop took and the check value.
func libChunk(body string) string {
	return "local n = math.tointeger(tonumber((...)))\n" +
		"local function work(n)\n" + body + "\nend\n" +
		"work(100) -- warm up\n" +
		"local t0 = os.clock()\nlocal check = work(n)\nlocal dt = os.clock() - t0\n" +
		"print(string.format('%.9f', dt), check)\n"
}

// libResult parses "seconds check" and reports ns per call.
func libResult(b *testing.B, out string) (check string) {
	b.Helper()
	secs, check, ok := strings.Cut(strings.TrimSpace(out), "\t")
	if !ok {
		b.Fatalf("unexpected output %q", out)
	}
	dt, err := strconv.ParseFloat(secs, 64)
	if err != nil {
		b.Fatalf("unexpected output %q", out)
	}
	b.ReportMetric(dt*1e9/float64(b.N), "ns/op")
	return check
}

func BenchmarkLibFunctions(b *testing.B) {
	lua, err := exec.LookPath("lua5.4")
	if err != nil {
		b.Fatal("lua5.4 is needed: apt-get install lua5.4")
	}
	dir := b.TempDir()
	out := &bytes.Buffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	for _, w := range libWorkloads {
		src := libChunk(w.body)
		file := filepath.Join(dir, strings.ReplaceAll(w.name, "/", "_")+".lua")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			b.Fatal(err)
		}
		// The check value stock Lua computes, for both sides to match.
		want, err := exec.Command(lua, file, "1").Output()
		if err != nil {
			b.Fatalf("%s: lua5.4: %v", w.name, err)
		}
		_, wantCheck, _ := strings.Cut(strings.TrimSpace(string(want)), "\t")
		b.Run(w.name+"/lua5.4", func(b *testing.B) {
			res, err := exec.Command(lua, file, strconv.Itoa(b.N)).Output()
			if err != nil {
				b.Fatalf("lua5.4: %v", err)
			}
			if check := libResult(b, string(res)); check != wantCheck {
				b.Fatalf("check %q, want %q", check, wantCheck)
			}
		})
		b.Run(w.name+"/moonbridge", func(b *testing.B) {
			out.Reset()
			if err := rt.RunString(context.Background(), w.name, src, fmt.Sprint(b.N)); err != nil {
				b.Fatal(err)
			}
			if check := libResult(b, out.String()); check != wantCheck {
				b.Fatalf("check %q, want %q", check, wantCheck)
			}
		})
	}
}

// longCalls are single C calls stock Lua would run for years, and loops of
// linear calls on 30 MB strings; the first ones and the loops of our
// functions must end within a few ms of a 200 ms deadline. The last two
// are not ours (the VM's `..`, string.format): they show what is left.
var longCalls = []struct{ name, src string }{
	{"find backtracking", `return string.rep("a", 20000):find(".-.-.-.-.-b")`},
	{"gsub backtracking", `return (string.rep("a", 20000):gsub(".-.-.-.-.-b", "x"))`},
	{"find %b()", `return string.rep("(", 1000000):find("%b()")`},
	{"find back reference", `return string.rep("a", 1000000):find("(.-)%1b")`},
	{"table.move 1e14", `table.move({}, 1, 1e14, 1)`},
	{"table.insert __len 2^50", `table.insert(setmetatable({}, {__len = function() return 1 << 50 end}), 1, "x")`},
	{"table.sort 64KiB strings", `local s, t = string.rep("x", 65536), {} for i = 1, 1000000 do t[i] = s end table.sort(t)`},
	{"loop s:upper() 30MB", `local s = ("x"):rep(3e7) while true do local u = s:upper() end`},
	{"loop utf8.len 30MB", `local s = ("x"):rep(3e7) while true do local u = utf8.len(s) end`},
	{"loop s:sub(2) 30MB", `local s = ("x"):rep(3e7) while true do local u = s:sub(2) end`},
	{"loop s..'y' 30MB (VM)", `local s = ("x"):rep(3e7) while true do local u = s .. "y" end`},
	{"loop format 30MB (not ours)", `local s = ("x"):rep(3e7) while true do local u = string.format("%s", s) end`},
}

// BenchmarkLongCallOverrun: how long after a 200 ms deadline each run
// returns (ms/op is the overrun); each must end with the deadline's limit
// error. A run per b.N iteration, on a fresh Runtime with a 256 MiB
// MemoryLimit.
//
//	go test -run '^$' -bench '^BenchmarkLongCallOverrun$' -benchtime 3x .
func BenchmarkLongCallOverrun(b *testing.B) {
	const deadline = 200 * time.Millisecond
	for _, c := range longCalls {
		b.Run(c.name, func(b *testing.B) {
			var over time.Duration
			for range b.N {
				rt, err := bridge.New(bridge.Options{MemoryLimit: 256 << 20})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				err = rt.RunString(ctx, c.name, c.src)
				over += time.Since(start) - deadline
				cancel()
				rt.Close()
				var le *bridge.LuaError
				if !errors.As(err, &le) || le.Kind != "limit" || le.Op != "deadline" {
					b.Fatalf("want the deadline's limit error, got %v", err)
				}
			}
			b.ReportMetric(over.Seconds()*1000/float64(b.N), "ms/op")
			b.ReportMetric(0, "ns/op")
		})
	}
}
