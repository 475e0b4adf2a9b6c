package core

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
)

// registerEcho registers name as an inline function returning its
// arguments.
func registerEcho(t *testing.T, l *Loop, name string) {
	t.Helper()
	if err := l.RegisterFunc(name, true, func(_ context.Context, args []Value) ([]any, error) {
		vals := make([]any, len(args))
		for i, a := range args {
			vals[i] = a.Any()
		}
		return vals, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// An inline call nested in another's decoding — a finalizer that runs
// while a big result is pushed, or while the arguments of a small one are
// read — has buffers of its own: the outer call's results come back whole
// (issue 13 found a shared buffer moved under the decoder). Run it under
// `make asan` too.
func TestInlineCallsNestedInDecodingKeepTheirResults(t *testing.T) {
	l, out := newTestLoop(t, Options{})
	registerEcho(t, l, "iecho")
	err := l.RunChunk(context.Background(), "=nested", []byte(`
		local nested = 0
		local function mk(size)
			setmetatable({}, {__gc = function()
				local s = string.rep("y", size)
				local r = iecho(s)
				assert(r == s, "a nested call's own result")
				nested = nested + 1
			end})
		end
		local a = {}
		for i = 1, 20000 do a[i] = "s" .. i .. string.rep("z", 20) end
		for r = 1, 10 do
			for i = 1, 50 do mk(r % 2 == 0 and (1 << 20) or 100) end
			local b = iecho(a) -- a big result: decoded from the heap, finalizers run meanwhile
			assert(#b == #a, "length")
			for i = 1, #a, 997 do assert(b[i] == a[i], "element " .. i) end
			assert(b[#a] == a[#a], "last element")
			for i = 1, 300 do -- small ones: the stack buffers
				mk(i)
				local x, y, z = iecho(i, "s" .. i, i + 0.5)
				assert(x == i and y == "s" .. i and z == i + 0.5, "small results")
			end
		end
		collectgarbage()
		assert(nested > 0, "no finalizer ran an inline call")
		print("ok", nested > 500)`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "ok\ttrue\n" {
		t.Errorf("printed %q", got)
	}
}

// Inline calls carry every kind of value both ways, through the stack
// buffers and past them: big strings, tables, many values.
func TestInlineCallsCarryValuesPastTheirBuffers(t *testing.T) {
	l, out := newTestLoop(t, Options{})
	registerEcho(t, l, "iecho")
	err := l.RunChunk(context.Background(), "=values", []byte(`
		local function same(a, b)
			if type(a) ~= type(b) then return false end
			if type(a) ~= "table" then return a == b and math.type(a) == math.type(b) end
			for k, v in pairs(a) do if not same(v, b[k]) then return false end end
			for k in pairs(b) do if a[k] == nil then return false end end
			return true
		end
		local big = string.rep("x", 300)
		local cases = {
			{}, {nil}, {true, false}, {1, 2.5, -3, 3.0, math.maxinteger, math.mininteger},
			{"", "a\0b", big}, {string.rep("q", 1 << 16)}, {{1, 2, {x = "y"}}, {k = {true}}},
		}
		local many = {}
		for i = 1, 100 do many[i] = i * 7 end
		cases[#cases + 1] = many
		for i, c in ipairs(cases) do
			local n = select("#", table.unpack(c))
			local r = table.pack(iecho(table.unpack(c, 1, n)))
			assert(r.n == n, "case " .. i .. ": " .. r.n .. " results, want " .. n)
			for k = 1, n do assert(same(r[k], c[k]), "case " .. i .. " value " .. k) end
		end
		local ok, err = pcall(iecho, print)
		print(ok, err)`), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "false\t") || !strings.Contains(got, "iecho: argument #1: cannot send a function to Go") {
		t.Errorf("printed %q", got)
	}
}

// Up to MB_INLINE_VALS arguments that are nil, booleans, numbers or
// strings, and as many scalar results, cross without the message codec;
// more, or other kinds, take the codec. Both ways give Go and Lua the
// same values: kinds, integer against float, NaN, -0.0, the extremes,
// strings with zero bytes and strings longer than the stack buffers.
func TestInlineCallsCrossScalarsExactly(t *testing.T) {
	l, out := newTestLoop(t, Options{})
	registerEcho(t, l, "iecho")
	if err := l.RegisterFunc("ikinds", true, func(_ context.Context, args []Value) ([]any, error) {
		kinds := make([]string, len(args))
		for i := range args {
			kinds[i] = args[i].KindName()
			if s, ok := args[i].Str(); ok {
				kinds[i] += ":" + strconv.Itoa(len(s))
			}
		}
		return []any{strings.Join(kinds, " ")}, nil
	}); err != nil {
		t.Fatal(err)
	}
	results := map[int64][]any{
		1: {int(7), int64(-1), 2.5, true, false, nil, int64(math.MaxInt64), math.Inf(-1)}, // 8: in place
		2: {1, 2, 3, 4, 5, 6, 7, 8, 9},                                                    // 9: the codec
		3: {1, "two", 3.0},                                                                // a string: the codec
		4: {math.NaN(), math.Copysign(0, -1), int64(math.MinInt64)},
		5: {},
	}
	if err := l.RegisterFunc("ires", true, func(_ context.Context, args []Value) ([]any, error) {
		k, _ := args[0].Int()
		return results[k], nil
	}); err != nil {
		t.Fatal(err)
	}
	err := l.RunChunk(context.Background(), "=scalars", []byte(`
		local big = string.rep("b", 1000)
		print(ikinds(1, 2.0, true, false, nil, "a\0b", big, ""))
		print(ikinds(1, 2, 3, 4, 5, 6, 7, 8, 9))
		print(ikinds(nil, nil))
		print(ikinds())
		print(ikinds("x", {}))
		local function show(...)
			local t = table.pack(...)
			for i = 1, t.n do t[i] = math.type(t[i]) or tostring(t[i]) end
			return t.n .. ": " .. table.concat(t, " ", 1, t.n)
		end
		print(show(ires(1)))
		print(select(7, ires(1)) == math.maxinteger, select(8, ires(1)) == -math.huge)
		print(show(ires(2)), select(9, ires(2)))
		print(show(ires(3)), select(2, ires(3)))
		local nan, negz, minint = ires(4)
		print(nan ~= nan, 1 / negz, minint == math.mininteger)
		print(select("#", ires(5)))
		local x, y, z, w = iecho(0.0, -0.0, 0/0, math.mininteger)
		print(math.type(x), 1 / y, z ~= z, w == math.mininteger)
		local s = iecho(big .. "\0" .. big)
		print(#s, s == big .. "\0" .. big)`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `integer float boolean boolean nil string:3 string:1000 string:0
integer integer integer integer integer integer integer integer integer
nil nil

string:1 table
8: integer integer float true false nil integer float
true	true
9: integer integer integer integer integer integer integer integer integer	9
3: integer two float	two	3.0
true	-inf	true
0
float	-inf	true	true
2001	true
`
	if got := out.String(); got != want {
		t.Errorf("printed\n%s\nwant\n%s", got, want)
	}
}

// A panic in an inline function, with its arguments in place or in a
// message, is the call's error, and the next call starts clean.
func TestInlinePanicsBecomeErrorsAndTheNextCallWorks(t *testing.T) {
	l, out := newTestLoop(t, Options{})
	registerEcho(t, l, "iecho")
	if err := l.RegisterFunc("ipanic", true, func(_ context.Context, args []Value) ([]any, error) {
		s, _ := args[0].Str()
		panic("boom " + s + " " + strconv.Itoa(len(args)))
	}); err != nil {
		t.Fatal(err)
	}
	err := l.RunChunk(context.Background(), "=panics", []byte(`
		for _, n in ipairs({1, 8, 9, 30}) do
			local args = {}
			for i = 1, n do args[i] = "a" .. i end
			local ok, e = pcall(ipanic, table.unpack(args, 1, n))
			print(ok, e.message)
			print(iecho(n, "x", 2.5))
		end`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, n := range []int{1, 8, 9, 30} {
		want += "false\tipanic: panic: boom a1 " + strconv.Itoa(n) + "\n" + strconv.Itoa(n) + "\tx\t2.5\n"
	}
	if got := out.String(); got != want {
		t.Errorf("printed\n%s\nwant\n%s", got, want)
	}
}
