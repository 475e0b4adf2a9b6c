package bridge_test

// FuzzCallArgs: Lua calls a Go function with arguments built from fuzz
// input and checks, in Lua, that what comes back equals what it sent, or
// that a value that cannot cross gives a catchable "bridge" error.
//
// Run it with: go test -run '^$' -fuzz '^FuzzCallArgs$' -fuzztime 30s ./bridge

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

// fzPrelude defines the Lua side once per Runtime.
const fzPrelude = `
-- deep(n): n tables nested in each other
function __fz_deep(n)
  local t = {}
  for _ = 2, n do t = {t} end
  return t
end

-- cyc(k): a table that refers back to itself
function __fz_cyc(k)
  local t
  if k == 0 then t = {1}; t[2] = t
  elseif k == 1 then t = {a = {}}; t.a.b = t
  else t = {x = {y = {}}}; t.x.y.z = t.x end
  return t
end

-- withmeta(t): t with metamethods the encoder must not follow
function __fz_meta(t)
  return setmetatable(t, {
    __index = function() return "meta" end,
    __len = function() return 99 end,
    __pairs = function() error("__pairs called") end,
    __newindex = function() error("__newindex called") end,
  })
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if math.type(v) == "float" then return string.format("%a", v) end
  return tostring(v)
end

-- eq compares raw contents; floats by their bits (NaN payloads, -0.0).
local function eq(a, b, path)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return false, path .. ": sent a " .. ta .. ", got a " .. tb end
  if ta == "number" then
    if math.type(a) ~= math.type(b) then
      return false, path .. ": sent " .. math.type(a) .. " " .. show(a) .. ", got " .. math.type(b) .. " " .. show(b)
    end
    if math.type(a) == "float" then
      if string.pack("<d", a) ~= string.pack("<d", b) then
        return false, path .. ": sent float bits " .. show(string.pack("<d", a)) .. ", got " .. show(string.pack("<d", b))
      end
      return true
    end
  elseif ta == "table" then
    for k, v in next, a do
      local ok, where = eq(v, rawget(b, k), path .. "[" .. show(k) .. "]")
      if not ok then return false, where end
    end
    for k in next, b do
      if rawget(a, k) == nil then return false, path .. ": extra key " .. show(k) end
    end
    return true
  end
  if a ~= b then return false, path .. ": sent " .. show(a) .. ", got " .. show(b) end
  return true
end

local function kinds(args)
  local s = {}
  for i = 1, args.n do
    local v = args[i]
    s[i] = type(v) == "number" and math.type(v) or type(v)
  end
  return table.concat(s, ",")
end

-- check: args went to echo (r is table.pack(pcall(echo, ...))).
function __fz_check(crosses, echo, args, r)
  if crosses then
    if not r[1] then error("echo failed: " .. tostring(r[2]), 0) end
    if r.n - 1 ~= args.n then error(("sent %d values, echo returned %d"):format(args.n, r.n - 1), 0) end
    for i = 1, args.n do
      local ok, where = eq(args[i], r[i + 1], "#" .. i)
      if not ok then error(where, 0) end
    end
    local want, got = kinds(args), probe(table.unpack(args, 1, args.n))
    if got ~= want then error("probe saw " .. got .. ", sent " .. want, 0) end
  else
    if r[1] then error("a value that cannot cross came back: " .. show(r[2]), 0) end
    local e = r[2]
    if type(e) ~= "table" and type(e) ~= "userdata" or e.kind ~= "bridge" then
      error("want a bridge error, got " .. tostring(e), 0)
    end
  end
  -- the runtime keeps working
  local a, b, c = echo("alive", 1, {x = {2.5}})
  assert(a == "alive" and b == 1 and c.x[1] == 2.5, "echo after the call")
end
`

// fzOpts is a struct for Args.Decode; it refers to itself.
type fzOpts struct {
	Model     string         `lua:"model"`
	MaxTokens int            `lua:"max_tokens"`
	Temp      *float64       `lua:"temperature"`
	Stop      []string       `lua:"stop"`
	Meta      map[string]any `lua:"meta"`
	Arr       [2]int8        `lua:"arr"`
	U16       uint16
	F32       float32
	Bytes     []byte
	Any       any
	Str       fmt.Stringer
	Inner     *fzOpts        `lua:"inner"`
	Items     []fzOpts       `lua:"items"`
	Counts    map[string]int `lua:"counts"`
	Skip      string         `lua:"-"`
}

func fzLuaType(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "float"
	case string:
		return "string"
	case []any, map[string]any:
		return "table"
	}
	return fmt.Sprintf("unexpected Go type %T", v)
}

// fzProbe calls every Args accessor on every argument; errors are fine,
// panics (turned into errors by the bridge) and inconsistencies are not.
func fzProbe(_ context.Context, a bridge.Args) ([]any, error) {
	kinds := make([]string, a.Len())
	for i := -1; i <= a.Len(); i++ {
		v := a.Get(i)
		if i >= 0 && i < a.Len() {
			kinds[i] = fzLuaType(v)
		} else if v != nil {
			return nil, fmt.Errorf("Get(%d) = %#v, want nil", i, v)
		}
		s, errS := a.String(i)
		n, errI := a.Int(i)
		x, errF := a.Float(i)
		b, errB := a.Bool(i)
		m, errM := a.Map(i)
		sl, errL := a.Slice(i)
		switch v := v.(type) {
		case string:
			if errS != nil || s != v {
				return nil, fmt.Errorf("String(%d) = %q, %v", i, s, errS)
			}
		case int64:
			if errI != nil || n != v || errF != nil || x != float64(v) || errS != nil {
				return nil, fmt.Errorf("Int(%d) = %d, %v; Float = %v, %v; String: %v", i, n, errI, x, errF, errS)
			}
		case float64:
			if errF != nil || math.Float64bits(x) != math.Float64bits(v) {
				return nil, fmt.Errorf("Float(%d) = %v, %v", i, x, errF)
			}
			if errI == nil && float64(n) != v {
				return nil, fmt.Errorf("Int(%d) = %d for %v", i, n, v)
			}
		case bool:
			if errB != nil || b != v {
				return nil, fmt.Errorf("Bool(%d) = %v, %v", i, b, errB)
			}
		case map[string]any:
			if errM != nil || len(m) != len(v) || errL == nil && len(v) != 0 {
				return nil, fmt.Errorf("Map(%d): %d entries, %v; Slice: %v", i, len(m), errM, errL)
			}
		case []any:
			if errL != nil || len(sl) != len(v) || errM == nil && len(v) != 0 {
				return nil, fmt.Errorf("Slice(%d): %d elements, %v; Map: %v", i, len(sl), errL, errM)
			}
		}
		var o fzOpts
		var os []fzOpts
		var ip *int
		var u8 uint8
		var ms map[string]string
		var anyv any
		var arr [3]float32
		_ = a.Decode(i, &o)
		_ = a.Decode(i, &os)
		_ = a.Decode(i, &ip)
		_ = a.Decode(i, &u8)
		_ = a.Decode(i, &ms)
		_ = a.Decode(i, &arr)
		if err := a.Decode(i, &anyv); (err == nil) != (i >= 0 && i < a.Len()) {
			return nil, fmt.Errorf("Decode(%d) into any: %v", i, err)
		}
	}
	return []any{strings.Join(kinds, ",")}, nil
}

func fzEcho(_ context.Context, a bridge.Args) ([]any, error) {
	out := make([]any, a.Len())
	for i := range out {
		out[i] = a.Get(i)
	}
	return out, nil
}

// fzLuaGen writes Lua expressions from fuzz bytes, knowing for each
// whether it can cross to Go.
type fzLuaGen struct {
	data  []byte
	pos   int
	nodes int
}

// fzExpr is a Lua expression (one value) and what is known about it.
type fzExpr struct {
	src     string
	isNil   bool // the value is nil
	crosses bool // every part can cross, depth aside
	levels  int  // tables nested, this one included
}

func (g *fzLuaGen) byte() byte {
	if g.pos >= len(g.data) {
		return 0
	}
	g.pos++
	return g.data[g.pos-1]
}

func (g *fzLuaGen) u64() uint64 {
	var v uint64
	for i := range 8 {
		v |= uint64(g.byte()) << (8 * i)
	}
	return v
}

func fzQuote(b []byte) string {
	var s strings.Builder
	s.WriteByte('"')
	for _, c := range b {
		fmt.Fprintf(&s, "\\x%02x", c)
	}
	s.WriteByte('"')
	return s.String()
}

func fzInt(i int64) string {
	if i == math.MinInt64 {
		return "math.mininteger"
	}
	return "(" + strconv.FormatInt(i, 10) + ")"
}

var fzSpecialInts = []string{
	"0", "-0", "1", "-1", "math.maxinteger", "math.mininteger", "(math.maxinteger + 1)",
	"(math.mininteger - 1)", "0x7fffffffffffffff", "0xffffffffffffffff", "(1 << 53)", "(1 << 63)",
	"(-(1 << 53) - 1)", "(3 // 2)", "('10' + 0)", "math.tointeger(2.0)", "(7 % -3)",
}

var fzSpecialFloats = []string{
	"math.huge", "(-math.huge)", "(-0.0)", "(0/0)", "(-(0/0))", "(2^53)", "(2^63)", "(-2^63)",
	"(1e308 * 10)", "0.1", "3.0", "math.pi", "(1/3)", "(2^-1074)", "(-2^-1074)", "2.2250738585072014e-308",
	"1.7976931348623157e308", "(10 / 2)", "(3 // 2.0)", "(-7 % 0.0)", "('0x1p4' + 0.0)", "1.5",
}

var fzStrings = []string{
	`""`, `"\0"`, `"a\0b"`, `"\xff\xfe"`, `"\xc0\x80"`, `"\xed\xa0\x80"`, `"héllo 世界"`, `"\u{7FFFFFFF}"`,
	`string.rep("\0", 100)`, `string.rep("ab", 3000)`, `("x"):rep(0)`, `tostring(1.5)`, `"nil"`, `"1"`,
}

// Values that cannot cross.
var fzUncrossable = []string{
	"print", "(function() end)", "coroutine.create(print)", "coroutine.running()", "io.stdout",
	"__fz_cyc(0)", "__fz_cyc(1)", "__fz_cyc(2)", "string.gmatch('', '')", "setmetatable",
}

func (g *fzLuaGen) value(depth int) fzExpr {
	g.nodes++
	op := g.byte()
	if g.pos >= len(g.data) || depth >= 6 || g.nodes >= 80 {
		op %= 10 // leaves only
	}
	switch op % 16 {
	case 0:
		return fzExpr{src: "nil", isNil: true, crosses: true}
	case 1:
		return fzExpr{src: strconv.FormatBool(g.byte()&1 == 1), crosses: true}
	case 2:
		return fzExpr{src: fzInt(int64(g.u64())), crosses: true}
	case 3:
		return fzExpr{src: fzSpecialInts[int(g.byte())%len(fzSpecialInts)], crosses: true}
	case 4: // any bits, NaN payloads included
		var raw [8]byte
		for i := range raw {
			raw[i] = g.byte()
		}
		return fzExpr{src: "(string.unpack('<d', " + fzQuote(raw[:]) + "))", crosses: true}
	case 5:
		return fzExpr{src: fzSpecialFloats[int(g.byte())%len(fzSpecialFloats)], crosses: true}
	case 6:
		b := make([]byte, g.byte()%12)
		parts := make([]string, len(b))
		for i := range b {
			parts[i] = strconv.Itoa(int(g.byte()))
		}
		return fzExpr{src: "string.char(" + strings.Join(parts, ",") + ")", crosses: true}
	case 7:
		if c := g.byte(); c < 128 {
			return fzExpr{src: fzStrings[int(c)%len(fzStrings)], crosses: true}
		} else {
			b := make([]byte, c%24)
			for i := range b {
				b[i] = g.byte()
			}
			return fzExpr{src: fzQuote(b), crosses: true}
		}
	case 8:
		if g.byte() < 0xf0 {
			f := math.Float64frombits(g.u64())
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return fzExpr{src: "0.5", crosses: true}
			}
			return fzExpr{src: "(" + strconv.FormatFloat(f, 'x', -1, 64) + ")", crosses: true}
		}
		return fzExpr{src: fzUncrossable[int(g.byte())%len(fzUncrossable)]}
	case 9: // deep(n)
		var n int
		switch c := g.byte(); c % 4 {
		case 0:
			n = 1 + int(c>>2)%8
		case 1:
			n = 98 + int(c>>2)%5
		default:
			n = 1 + int(c)%110
		}
		return fzExpr{src: "__fz_deep(" + strconv.Itoa(n) + ")", crosses: true, levels: n}
	case 10: // a table shared twice: not a cycle
		t := g.table(depth + 1)
		return fzExpr{src: "(function(s) return {s, s} end)(" + t.src + ")", crosses: t.crosses, levels: t.levels + 1}
	case 11: // metamethods are not followed
		t := g.table(depth)
		t.src = "__fz_meta(" + t.src + ")"
		return t
	default:
		return g.table(depth)
	}
}

// table writes a constructor with positional items, then keyed entries.
func (g *fzLuaGen) table(depth int) fzExpr {
	var parts []string
	crosses := true
	levels := 0
	used := map[string]bool{} // keys given, so no key is given twice
	ints := map[int64]bool{}  // integer keys with a non-nil value
	strs, others := 0, 0      // string keys, and keys that cannot cross
	add := func(v fzExpr, isInt bool, k int64, isStr bool) {
		crosses = crosses && v.crosses
		levels = max(levels, v.levels)
		if v.isNil {
			return
		}
		switch {
		case isInt:
			ints[k] = true
		case isStr:
			strs++
		default:
			others++
		}
	}
	npos := int(g.byte() % 6)
	for i := 1; i <= npos; i++ {
		v := g.value(depth + 1)
		parts = append(parts, "("+v.src+")")
		used["i"+strconv.Itoa(i)] = true
		add(v, true, int64(i), false)
	}
	nkey := int(g.byte() % 5)
	for range nkey {
		var key, id string
		var k int64
		isInt, isStr := false, false
		switch c := g.byte(); c % 8 {
		case 0, 1, 2, 3:
			b := make([]byte, g.byte()%6)
			for i := range b {
				b[i] = g.byte()
			}
			key, id, isStr = fzQuote(b), "s"+string(b), true
		case 4:
			if c >= 0x80 {
				k = int64(int8(g.byte()))
			} else {
				k = int64(len(ints) + 1)
			}
			key, id, isInt = fzInt(k), "i"+strconv.FormatInt(k, 10), true
		case 5: // a float key: integral ones become integer keys
			switch (c >> 3) % 4 {
			case 0:
				k = int64(1 + g.byte()%8)
				key, id, isInt = strconv.FormatInt(k, 10)+".0", "i"+strconv.FormatInt(k, 10), true
			case 1:
				key, id = "0.5", "f0.5"
			case 2:
				key, id = "math.huge", "finf"
			default:
				key, id, isInt, k = "-0.0", "i0", true, 0
			}
		case 6:
			key, id = "true", "btrue"
		default:
			key, id = "{}", ""
		}
		if id != "" && used[id] {
			continue
		}
		if id != "" {
			used[id] = true
		}
		v := g.value(depth + 1)
		parts = append(parts, "["+key+"]=("+v.src+")")
		add(v, isInt, k, isStr)
	}
	if others > 0 || len(ints) > 0 && strs > 0 {
		crosses = false
	}
	for k := range ints {
		if k < 1 || k > int64(len(ints)) {
			crosses = false
		}
	}
	return fzExpr{src: "{" + strings.Join(parts, ", ") + "}", crosses: crosses, levels: levels + 1}
}

func FuzzCallArgs(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 3, 5, 5, 3})
	f.Add([]byte{1, 4, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 4, 1, 0, 0, 0, 0, 0, 0xf0, 0x7f, 5, 4})
	f.Add([]byte{0, 6, 5, 0, 1, 255, 128, 65, 7, 200, 0, 0xff, 0xc3, 7, 3})
	f.Add([]byte{1, 12, 3, 2, 1, 0, 3, 0, 0, 2, 4, 0, 'k', 1, 1})                // positional, a hole, a string key
	f.Add([]byte{0, 12, 2, 1, 1, 0, 3, 0, 4, 4, 4, 1, 5, 0x00, 3, 9})            // integer and float keys
	f.Add([]byte{0, 12, 0, 2, 6, 1, 1, 7, 5, 1, 0})                              // boolean and table keys
	f.Add([]byte{1, 9, 1, 9, 6, 9, 100, 12, 1, 9, 1})                            // deep tables
	f.Add([]byte{0, 9, 9, 12, 1, 9, 5, 0})                                       // 100 levels: crosses
	f.Add([]byte{1, 9, 13})                                                      // 101 levels: does not
	f.Add([]byte{0, 12, 1, 9, 9, 0})                                             // 101 levels inside a table
	f.Add([]byte{0, 8, 0xf0, 0, 8, 0xf0, 2, 8, 0xf0, 4, 8, 0xf0, 5, 8, 0xf0, 6}) // uncrossable leaves
	f.Add([]byte{0, 10, 2, 1, 1, 0, 11, 1, 1, 1, 0})                             // shared, metatables
	f.Add([]byte{1, 0, 0, 0, 0})                                                 // nils only

	rt, _ := newRuntime(f)
	for name, fn := range map[string]bridge.Func{"echo": fzEcho, "probe": fzProbe} {
		if err := rt.RegisterFunc(name, fn); err != nil {
			f.Fatal(err)
		}
	}
	if err := rt.RegisterFunc("echo_inline", fzEcho, bridge.Inline()); err != nil {
		f.Fatal(err)
	}
	mustRun(f, rt, fzPrelude)

	f.Fuzz(func(t *testing.T, data []byte) {
		g := &fzLuaGen{data: data}
		echo := "echo"
		if g.byte()&1 == 1 {
			echo = "echo_inline"
		}
		var args []string
		crosses := true
		for g.pos < len(data) && len(args) < 8 && g.nodes < 80 {
			v := g.value(0)
			args = append(args, "("+v.src+")")
			crosses = crosses && v.crosses && v.levels <= 100
		}
		src := fmt.Sprintf("local args = table.pack(%s)\n"+
			"local r = table.pack(pcall(%s, table.unpack(args, 1, args.n)))\n"+
			"__fz_check(%v, %s, args, r)\n",
			strings.Join(args, ",\n  "), echo, crosses, echo)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rt.RunString(ctx, "fuzz", src); err != nil {
			t.Fatalf("%v\n%s", err, src)
		}
	})
}
