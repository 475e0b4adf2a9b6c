package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/internal/leaks"
)

// jsonRuntime makes a Runtime whose Lua globals enc(v [, sort]) and
// dec(s) call the json module, for Call.
func jsonRuntime(t *testing.T, opts bridge.Options) *bridge.Runtime {
	t.Helper()
	rt, err := bridge.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	mustRun(t, rt, `
		json = require("json")
		function enc(v, sort) return json.encode(v, {sort_keys = sort or false}) end
		function dec(s) return json.decode(s) end`)
	return rt
}

func call(t *testing.T, rt *bridge.Runtime, fn string, args ...any) []any {
	t.Helper()
	out, err := rt.Call(context.Background(), fn, args...)
	if err != nil {
		var le *bridge.LuaError
		if errors.As(err, &le) {
			t.Fatalf("%s: %v\n%s", fn, err, le.Traceback)
		}
		t.Fatalf("%s: %v", fn, err)
	}
	return out
}

// goValue decodes s with encoding/json, numbers kept as text.
func goValue(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("encoding/json rejects %q: %v", s, err)
	}
	if d.More() {
		t.Fatalf("encoding/json finds more after the value in %q", s)
	}
	return v
}

// TestJSONOutputIsWhatGoReads encodes values in Lua and reads the text
// with encoding/json: the same structure, strings byte for byte, integers
// as integers and floats with a point or an exponent.
func TestJSONOutputIsWhatGoReads(t *testing.T) {
	rt := jsonRuntime(t, bridge.Options{})
	mustRun(t, rt, `
		function sample()
			return json.encode({
				text = "quote \" backslash \\ slash / nl \n tab \t nul \0 ctl \1 del \127 é ✓ 😀",
				ints = {0, -1, 7, math.maxinteger, math.mininteger},
				floats = {1.0, -0.0, 0.1, 1e300, 5e-324, 2^53, 1/3},
				nested = {{}, json.array(), {a = {b = {c = json.null}}}},
				flags = {true, false},
			})
		end`)
	s := call(t, rt, "sample")[0].(string)
	v := goValue(t, s).(map[string]any)
	if got := v["text"]; got != "quote \" backslash \\ slash / nl \n tab \t nul \x00 ctl \x01 del \x7f é ✓ 😀" {
		t.Errorf("text: %q", got)
	}
	var ints []string
	for _, n := range v["ints"].([]any) {
		ints = append(ints, string(n.(json.Number)))
	}
	if want := "0 -1 7 9223372036854775807 -9223372036854775808"; strings.Join(ints, " ") != want {
		t.Errorf("ints: %v", ints)
	}
	for i, want := range []float64{1.0, math.Copysign(0, -1), 0.1, 1e300, 5e-324, 1 << 53, 1.0 / 3} {
		n := string(v["floats"].([]any)[i].(json.Number))
		if !strings.ContainsAny(n, ".e") {
			t.Errorf("float %d written as %s: it would read back as an integer", i, n)
		}
		f, err := strconv.ParseFloat(n, 64)
		if err != nil || math.Float64bits(f) != math.Float64bits(want) {
			t.Errorf("float %d: %s reads as %v, want %v", i, n, f, want)
		}
	}
	want := []any{map[string]any{}, []any{}, map[string]any{"a": map[string]any{"b": map[string]any{"c": nil}}}}
	if !reflect.DeepEqual(v["nested"], want) {
		t.Errorf("nested: %#v", v["nested"])
	}
	if !reflect.DeepEqual(v["flags"], []any{true, false}) {
		t.Errorf("flags: %#v", v["flags"])
	}
}

// TestJSONReadsWhatGoWrites decodes encoding/json's output (which escapes
// <, >, &, U+2028 and U+2029 and writes every other character as it is)
// and encodes it again: the same value.
func TestJSONReadsWhatGoWrites(t *testing.T) {
	rt := jsonRuntime(t, bridge.Options{})
	type toolCall struct {
		ID        string         `json:"id"`
		Arguments map[string]any `json:"arguments"`
	}
	in := map[string]any{
		"html":     "<b>&amp;</b> \u2028\u2029",
		"unicode":  "héllo ✓ 😀 \x00\x1f",
		"ints":     []int64{0, -5, math.MaxInt64, math.MinInt64},
		"floats":   []float64{0.5, -2.25, 1e-9, 123456.789},
		"calls":    []toolCall{{ID: "call_1", Arguments: map[string]any{"city": "Paris", "days": []int{1, 2}}}},
		"empty":    []any{},
		"emptyMap": map[string]any{},
		"null":     nil,
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := call(t, rt, "enc", nil, true) // warm: enc(nil) is "null"
	if out[0] != "null" {
		t.Fatalf("enc(nil) = %v", out[0])
	}
	mustRun(t, rt, `function again(s) return json.encode(json.decode(s), {sort_keys = true}) end`)
	s := callOne(t, rt, "again", string(b))
	if !reflect.DeepEqual(goValue(t, s), goValue(t, string(b))) {
		t.Errorf("round trip through Lua changed the value:\n go: %s\nlua: %s", b, s)
	}
	// Integers reach Go as int64, not float64.
	mustRun(t, rt, `function ints(s) local v = json.decode(s) return v.ints[3], v.ints[4], math.type(v.ints[2]) end`)
	res := call(t, rt, "ints", string(b))
	if res[0] != int64(math.MaxInt64) || res[1] != int64(math.MinInt64) || res[2] != "integer" {
		t.Errorf("integers: %#v", res)
	}
}

func callOne(t *testing.T, rt *bridge.Runtime, fn string, args ...any) string {
	t.Helper()
	out := call(t, rt, fn, args...)
	s, ok := out[0].(string)
	if !ok {
		t.Fatalf("%s returned %#v", fn, out)
	}
	return s
}

// TestJSONFloatsRoundTripExactly checks floats both ways against Go's
// strconv: what Lua writes, Go reads as the same bits, with as few
// digits as Go's shortest; what Go writes, shortest or
// with 17 digits or as a long decimal, Lua reads as the same bits.
func TestJSONFloatsRoundTripExactly(t *testing.T) {
	rt := jsonRuntime(t, bridge.Options{})
	mustRun(t, rt, `
		function encfloats(list) return json.encode(list) end
		function decfloats(s)
			local v = json.decode(s)
			for i, x in ipairs(v) do
				if math.type(x) ~= "float" then error("item " .. i .. " is not a float: " .. tostring(x)) end
			end
			return v
		end`)
	r := rand.New(rand.NewSource(1))
	var floats []any
	for _, f := range []float64{0, math.Copysign(0, -1), 1, 0.1, 0.2, 0.3, 1.0 / 3, 2.0 / 3, 1e21, 1e22, 1e23,
		1e-6, 1e-7, math.MaxFloat64, math.SmallestNonzeroFloat64, 2.2250738585072014e-308,
		2.225073858507201e-308, 1 << 53, 1<<53 + 2, 1 << 63, 9007199254740993, math.Pi, math.E} {
		floats = append(floats, f, -f)
	}
	for len(floats) < 20000 {
		var f float64
		switch len(floats) % 4 {
		case 0: // any bit pattern
			f = math.Float64frombits(r.Uint64())
		case 1: // a "human" decimal
			f = float64(r.Intn(2000000)-1000000) / math.Pow(10, float64(r.Intn(8)))
		case 2: // across the exponent range
			f = r.Float64() * math.Pow(10, float64(r.Intn(600)-300))
		default: // subnormal
			f = math.Float64frombits(r.Uint64() >> 12)
		}
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			floats = append(floats, f)
		}
	}
	// Lua writes, Go reads.
	var got []json.Number
	d := json.NewDecoder(strings.NewReader(callOne(t, rt, "encfloats", floats)))
	d.UseNumber()
	if err := d.Decode(&got); err != nil || len(got) != len(floats) {
		t.Fatalf("decoding Lua's floats: %v (%d of %d)", err, len(got), len(floats))
	}
	for i, n := range got {
		want := floats[i].(float64)
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.Float64bits(f) != math.Float64bits(want) {
			t.Fatalf("Lua wrote %v as %s, which reads back as %v", want, n, f)
		}
		if !strings.ContainsAny(string(n), ".e") {
			t.Fatalf("Lua wrote the float %v as %s, an integer", want, n)
		}
		if shortest := strconv.FormatFloat(want, 'e', -1, 64); digits(string(n)) != digits(shortest) {
			t.Errorf("Lua wrote %s, not the shortest (%s)", n, shortest)
		}
	}
	// Go writes, Lua reads: shortest, 17 digits, and long decimals that
	// need more than the fast path (strtod's correct rounding).
	for _, format := range []func(float64) string{
		func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) },
		func(f float64) string { return strconv.FormatFloat(f, 'e', 16, 64) },
		func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		func(f float64) string { return strconv.FormatFloat(f, 'e', 40, 64) },
	} {
		var sb strings.Builder
		var want []float64
		sb.WriteByte('[')
		for _, v := range floats {
			f := v.(float64)
			s := format(f)
			if len(s) > 1024 || (!strings.ContainsAny(s, ".eE")) { // keep integers-looking out: they decode as integers
				continue
			}
			if len(want) > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(s)
			want = append(want, f)
		}
		sb.WriteByte(']')
		res := call(t, rt, "decfloats", sb.String())
		list, ok := res[0].([]any)
		if !ok || len(list) != len(want) {
			t.Fatalf("decfloats returned %T with %d items, want %d", res[0], len(list), len(want))
		}
		for i, x := range list {
			if math.Float64bits(x.(float64)) != math.Float64bits(want[i]) {
				t.Fatalf("Lua read %s as %v", format(want[i]), x)
			}
		}
	}
}

// digits counts the significant digits of a number's text.
func digits(s string) int {
	s = strings.TrimLeft(s, "-")
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s = s[:i]
	}
	s = strings.Replace(s, ".", "", 1)
	s = strings.Trim(s, "0")
	return max(len(s), 1)
}

// TestJSONIntegersStayIntegers: every int64 reads and writes as itself;
// past the int64 range a number becomes the nearest float.
func TestJSONIntegersStayIntegers(t *testing.T) {
	rt := jsonRuntime(t, bridge.Options{})
	mustRun(t, rt, `function kind(s) local v = json.decode(s) return v, math.type(v), json.encode(v) end`)
	r := rand.New(rand.NewSource(2))
	ints := []int64{0, 1, -1, 7, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1, 1 << 53, 1<<53 + 1}
	for range 2000 {
		ints = append(ints, r.Int63()>>r.Intn(63)*int64(1-2*r.Intn(2)))
	}
	for _, n := range ints {
		s := strconv.FormatInt(n, 10)
		res := call(t, rt, "kind", s)
		if res[0] != n || res[1] != "integer" || res[2] != s {
			t.Fatalf("%s: got %#v", s, res)
		}
	}
	for _, s := range []string{"9223372036854775808", "-9223372036854775809", "18446744073709551616", "123456789012345678901234567890"} {
		res := call(t, rt, "kind", s)
		f, _ := strconv.ParseFloat(s, 64)
		if res[0] != f || res[1] != "float" {
			t.Errorf("%s: got %#v, want the float %v", s, res, f)
		}
	}
}

// TestJSONErrorsReachGoAsRuntimeErrors: an uncaught json error ends the
// run with kind "runtime", op json.encode or json.decode, and the
// message naming the path or the byte.
func TestJSONErrorsReachGoAsRuntimeErrors(t *testing.T) {
	rt := jsonRuntime(t, bridge.Options{})
	for _, c := range []struct{ src, op, msg string }{
		{`json.decode('{"a": [1, 2,, 3]}')`, "json.decode", "json.decode: expected a value but found ',' at byte 13"},
		{`json.encode({tools = {{}, {fn = print}}})`, "json.encode", "json.encode: cannot encode a function at $.tools[2].fn"},
	} {
		err := run(t, rt, c.src)
		var le *bridge.LuaError
		if !errors.As(err, &le) || le.Kind != "runtime" || le.Op != c.op || le.Message != c.msg {
			t.Errorf("%s: got %#v", c.src, err)
			continue
		}
		if !strings.Contains(le.Traceback, c.op) {
			t.Errorf("%s: the traceback does not show %s:\n%s", c.src, c.op, le.Traceback)
		}
	}
}

// TestJSONInSandbox: a sandboxed script has the module, and cannot reach
// the metatables of json.null or of the arrays (which every run of the
// Runtime shares) to change how another run's values behave.
func TestJSONInSandbox(t *testing.T) {
	rt, out := func() (*bridge.Runtime, *syncBuffer) {
		out := &syncBuffer{}
		rt, err := bridge.New(bridge.Options{Stdout: out, Sandbox: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Close() })
		return rt, out
	}()
	mustRun(t, rt, `
		local json = require("json")
		local arr = json.decode("[1, 2]")
		print(getmetatable(arr), getmetatable(json.null), json.encode(arr))
		print(pcall(setmetatable, arr, {__index = function() return "evil" end}))
		print(pcall(function() getmetatable(arr).__index = function() return "evil" end end))
		print(pcall(function() getmetatable(json.null).__tostring = function() return "evil" end end))`)
	mustRun(t, rt, `
		local json = require("json")
		local arr = json.decode("[1, 2]")
		print(arr[5], tostring(json.null), json.encode(json.array({})))`)
	want := "json.array\tjson.null\t[1,2]\n" +
		"false\tcannot change a protected metatable\n"
	lines := strings.SplitAfter(out.String(), "\n")
	if len(lines) < 5 || lines[0]+lines[1] != want || !strings.HasPrefix(lines[2], "false") ||
		!strings.HasPrefix(lines[3], "false") || lines[4] != "nil\tjson.null\t[]\n" {
		t.Errorf("output:\n%s", out.String())
	}
}

// TestJSONSurvivesFinalizersThatChangeTheTable: a collection step can run
// inside encode (its buffers are Lua allocations), and a finalizer is Lua
// code that may empty or grow the very table being encoded. Each encode
// then returns text that decodes, or raises an error: never a crash (run
// under -asan by make asan).
func TestJSONSurvivesFinalizersThatChangeTheTable(t *testing.T) {
	rt := jsonRuntime(t, bridge.Options{})
	mustRun(t, rt, `
		function churn_test()
			collectgarbage("incremental", 10, 400) -- collect all the time
			local victim, inside, during = nil, false, 0
			local function arm()
				setmetatable({}, {__gc = function()
					if inside then during = during + 1 end
					if victim then
						for k in next, victim do victim[k] = nil end
						for i = 1, 20 do victim["new" .. i] = string.rep("x", i) end
						victim[#victim + 1] = {}
					end
					arm()
				end})
			end
			arm()
			local ok, failed = 0, 0
			for round = 1, 40 do
				local t = {}
				for i = 1, 200 do t[i] = {name = string.rep("n", i % 50), list = {i, i + 1}} end
				local o = {}
				for i = 1, 100 do o["k" .. i] = string.rep("v", 100) end
				victim = round % 2 == 0 and t or o
				for _, v in ipairs({t, o}) do
					for _, sort in ipairs({false, true}) do
						inside = true
						local good, s = pcall(json.encode, v, {sort_keys = sort})
						inside = false
						if good then json.decode(s); ok = ok + 1 else failed = failed + 1 end
					end
				end
			end
			victim = nil
			collectgarbage("incremental", 200, 100)
			return ok, failed, during
		end`)
	res := call(t, rt, "churn_test")
	ok, failed, during := res[0].(int64), res[1].(int64), res[2].(int64)
	if ok+failed != 160 || ok == 0 {
		t.Errorf("%d encodes succeeded, %d failed", ok, failed)
	}
	if during == 0 {
		t.Error("no finalizer ran inside json.encode: the test proves nothing")
	}
	t.Logf("%d encodes succeeded, %d failed, %d finalizers ran inside encode", ok, failed, during)
}

// lateRun runs src with a deadline of d and returns its error.
func lateRun(rt *bridge.Runtime, d time.Duration, src string) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return rt.RunString(ctx, "late", src)
}

// shared builds, in few instructions, a value whose JSON text is huge:
// depth levels of a table holding its child twice (a shared child, not a
// cycle), so 2^depth copies of leaf.
const jsonShared = `
	local function shared(depth, leaf)
		local v = leaf
		for _ = 1, depth do v = {v, v} end
		return v
	end
`

// TestJSONLimitsStopALongEncodeOrDecode: json's work happens inside one C
// call, where the count hook does not run. It is charged to the run's
// instruction budget (a byte a instruction) and the deadline is looked at
// as it goes, so one huge encode or decode still ends with the run's
// limit error raised inside it, and the Runtime goes on serving.
func TestJSONLimitsStopALongEncodeOrDecode(t *testing.T) {
	big := "[" + strings.Repeat(`{"a":[1,2.5,"x"]},`, 1<<16) + "1]" // 1.2 MB
	for _, c := range []struct {
		name, src, op string
		limit         int64
		deadline      time.Duration
	}{
		{"decode, instructions", `json.decode(big)`, "instructions", 300_000, time.Minute},
		{"encode, instructions", jsonShared + `json.encode(shared(16, string.rep("x", 30)))`, "instructions", 300_000, time.Minute},
		// 2^40 leaves: without the deadline it would run until the memory
		// limit (and then fail with op "memory", not "deadline").
		{"encode, deadline", jsonShared + `json.encode(shared(40, string.rep("x", 30)))`, "deadline", 0, 50 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := &syncBuffer{}
			rt, err := bridge.New(bridge.Options{Stdout: out, InstructionLimit: c.limit, MemoryLimit: 1 << 30})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			if err := rt.SetGlobal(context.Background(), "big", big); err != nil {
				t.Fatal(err)
			}
			err = lateRun(rt, c.deadline, `json = require("json")`+"\n"+c.src+"\nprint('finished')")
			le := limitError(t, err, c.op)
			if !strings.Contains(le.Traceback, "json.") {
				t.Errorf("the limit was not raised inside json:\n%s", le.Traceback)
			}
			if out.String() != "" {
				t.Errorf("the run went on: %q", out.String())
			}
			mustRun(t, rt, `assert(require("json").encode({1}) == "[1]")`)
		})
	}
	// The same work within the budget finishes: the figures above are not
	// simply too small for any decode.
	rt, err := bridge.New(bridge.Options{InstructionLimit: 5_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.SetGlobal(context.Background(), "big", big); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `local json = require("json"); assert(#json.decode(big) == 65537)`)
	mustRun(t, rt, jsonShared+`assert(#require("json").encode(shared(12, "x")) > 4096 * 3)`)
}

// TestJSONMemoryLimit: an encode or decode that needs more memory than the
// limit raises "not enough memory" (catchable, as any memory error), the
// run goes on, nothing leaks, and uncaught it is a limit error.
func TestJSONMemoryLimit(t *testing.T) {
	leakedLua, leakedLoops := leaks.Counts()
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, MemoryLimit: 48 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// 8 MB of JSON text (in the Runtime before the limit applies to it)
	// for a million tables: over 48 MB once decoded.
	big := "[" + strings.Repeat(`{"a":1},`, 1<<20) + "0]"
	if err := rt.SetGlobal(context.Background(), "big", big); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `
		local json = require("json")`+jsonShared+`
		print(pcall(json.decode, big))
		print(pcall(json.encode, shared(22, "abcdefghij"))) -- 2^22 leaves: 55 MB of text
		print(pcall(json.encode, shared(21, "x"), {indent = true}))
		big = nil
		collectgarbage()
		print(json.encode(json.decode('{"still": ["fine"]}')))`)
	want := "false\tnot enough memory\nfalse\tnot enough memory\nfalse\tnot enough memory\n{\"still\":[\"fine\"]}\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	err = run(t, rt, `local json = require("json")`+jsonShared+`json.encode(shared(22, "abcdefghij"))`)
	limitError(t, err, "memory")
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if lua, loops := leaks.Counts(); lua != leakedLua || loops != leakedLoops {
		t.Errorf("leaked: %d Lua bytes, %d loops", lua-leakedLua, loops-leakedLoops)
	}
}

// TestJSONDeepTextOutOfMemory: a stack that cannot grow because the
// memory limit refused it is out of memory, not a stack overflow: deep
// text decoded and encoded with the memory nearly full, at many fill
// levels, fails only with "not enough memory".
func TestJSONDeepTextOutOfMemory(t *testing.T) {
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, MemoryLimit: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	mustRun(t, rt, `
		local json = require("json")
		local text = ("["):rep(900) .. ("]"):rep(900)
		local value = json.decode(text)
		local hog, errs = {}, {}
		local function grow() hog[#hog + 1] = {} end -- made once: a closure made at the
		while pcall(grow) do end                       -- limit would fail outside the pcall
		for _ = 1, 300 do
			for _ = 1, 4 do hog[#hog] = nil end
			collectgarbage()
			local ok, e = pcall(json.decode, text)
			if not ok then errs[tostring(e)] = true end
			ok, e = pcall(json.encode, value)
			if not ok then errs[tostring(e)] = true end
		end
		for e in pairs(errs) do print(e) end`)
	if got := out.String(); got != "not enough memory\n" {
		t.Errorf("errors: %q, want only \"not enough memory\"", got)
	}
}

// TestJSONHugeString: a 100 MB string decodes and encodes back to the
// same text, escapes and all.
func TestJSONHugeString(t *testing.T) {
	rt := jsonRuntime(t, bridge.Options{})
	body := strings.Repeat("0123456789abcdef", 100<<20/16)
	// As encode writes it: escapes only where JSON needs them.
	text := `"\n\u0001é😀` + body + `\"\\"`
	if err := rt.SetGlobal(context.Background(), "big", text); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `
		local s = json.decode(big)
		assert(#s == `+fmt.Sprint(1+1+2+4+len(body)+2)+`, #s)
		assert(s:sub(1, 8) == "\n\1é😀" and s:sub(-2) == "\"\\")
		assert(json.encode(s) == big, "encode differs")`)
}

// TestJSONDepthIsBoundedBothWays: 1000 levels encode and decode; the
// 1001st is an error, also for input far deeper (no C stack overflow).
func TestJSONDepthIsBoundedBothWays(t *testing.T) {
	rt := jsonRuntime(t, bridge.Options{})
	ok := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	mustRun(t, rt, `function re(s) return json.encode(json.decode(s)) end`)
	if got := callOne(t, rt, "re", ok); got != ok {
		t.Errorf("1000 levels: %.40s...", got)
	}
	for _, s := range []string{"[" + ok + "]", strings.Repeat(`{"a":`, 1_000_000)} {
		_, err := rt.Call(context.Background(), "dec", s)
		var le *bridge.LuaError
		if !errors.As(err, &le) || !strings.Contains(le.Message, "nesting deeper than 1000 levels at byte") {
			t.Errorf("%.20s...: %v", s, err)
		}
	}
	mustRun(t, rt, `
		local t = {}
		local cur = t
		for _ = 1, 999 do cur[1] = {}; cur = cur[1] end
		assert(#json.encode(t) == 2000)
		cur[1] = {}
		local ok, err = pcall(json.encode, t)
		assert(not ok and err.message:find("nesting deeper than 1000 levels", 1, true), tostring(err))`)
}
