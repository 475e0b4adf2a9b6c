package core

// moonbridge's string and table functions (strlib.c, tablib.c) against the
// stock Lua 5.4 ones, call by call, on one private state (strlib_cgo.go):
// results, errors and their messages, and what a mutating function leaves
// in its table must be identical. TestStrlibMatchesStock runs a table of
// cases; FuzzStrlib generates subjects, patterns, replacements and
// arguments. Run it with:
//
//	go test -run '^$' -fuzz '^FuzzStrlib$' -fuzztime 60s ./core

import (
	"strconv"
	"strings"
	"sync"
	"testing"
)

// cmpHarness is called with (stock, op, s, p, r, a, b): it runs operation
// op on those inputs once with the stock function and once with ours, each
// installed under its library name for the call (so that argument errors
// name the same function), and returns "" when the outcomes are the same
// or both outcomes. Its own work uses the stock functions only.
const cmpHarness = `
local stock, op, s, p, r, a, b = ...
a, b = math.tointeger(tonumber(a)), math.tointeger(tonumber(b))
local S, T = stock.string, stock.table
local concat, format, byte, sub = T.concat, S.format, S.byte, S.sub

-- A value as text that tells types apart (1 and 1.0, "1" and 1).
local function show(v)
  local t = type(v)
  if t == "string" then return format("%q", v) end
  if t == "number" then return math.type(v) .. ":" .. format("%.17g", v) end
  if t == "table" then
    local parts, n = {}, 0
    for k in pairs(v) do n = n + 1 end
    for i = -1, 40 do
      if rawget(v, i) ~= nil then parts[#parts + 1] = i .. "=" .. show(rawget(v, i)) end
    end
    return "{" .. concat(parts, ",") .. " n=" .. n .. "}"
  end
  return t
end

local function outcome(ok, ...)
  local parts = {ok and "ok" or "error"}
  for i = 1, select("#", ...) do parts[#parts + 1] = show((select(i, ...))) end
  return concat(parts, " ")
end

-- Run f(impl) with lib[name] set to impl meanwhile.
local function with(lib, name, impl, f)
  local t = _G[lib]
  local saved = t[name]
  t[name] = impl
  local res = f(impl)
  t[name] = saved
  return res
end

-- The replacement functions and tables gsub is given.
local function repl_fn(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  if n % 3 == 2 then return false end
  if #parts[1] % 4 == 3 then return #parts[1] end
  return concat(parts, "|")
end
local repl_tbl = setmetatable({}, {__index = function(_, k)
  local x = tostring(k)
  if #x % 5 == 1 then return nil end
  if #x % 5 == 2 then return {} end  -- an invalid replacement
  if #x % 5 == 3 then return 2.5 end
  return "<" .. x .. ">"
end})

-- A table from the bytes of s: small numbers (with ties), or mixed values.
local function numbers(n)
  local t = {}
  for i = 1, math.min(#s, n) do t[i] = byte(s, i) % 32 end
  return t
end
local function mixed()
  local t = {}
  for i = 1, #s do
    local c = byte(s, i)
    if c % 5 == 0 then t[i] = c + 0.5
    elseif c % 5 == 1 then t[i] = sub(s, i, i + 1)
    elseif c % 17 == 2 then t[i] = {}
    else t[i] = c end
  end
  return t
end

local orders = {
  false,
  function(x, y) return x > y end,
  function(x, y) return x % 3 < y % 3 end,
  function(x, y) return x <= y end,         -- not a strict order
  function() return true end,               -- not an order at all
  function(x, y) return (x * 7 + y) % 5 < 2 end,
  function(x, y) if x == 13 then error("boom " .. y) end return x < y end,
}

local ops = {
  find = {"string", "find", function(f) return outcome(pcall(f, s, p, a)) end},
  find_plain = {"string", "find", function(f) return outcome(pcall(f, s, p, a, b % 2 == 0)) end},
  match = {"string", "match", function(f) return outcome(pcall(f, s, p, a)) end},
  gmatch = {"string", "gmatch", function(f)
    local ok, it = pcall(f, s, p, a)
    if not ok then return outcome(ok, it) end
    local all = {}
    for i = 1, 200 do
      local res = {pcall(it)}
      all[#all + 1] = outcome(T.unpack(res, 1, #res))
      if not res[1] or res[2] == nil then break end
    end
    return concat(all, "; ")
  end},
  gsub = {"string", "gsub", function(f) return outcome(pcall(f, s, p, r)) end},
  gsub_n = {"string", "gsub", function(f) return outcome(pcall(f, s, p, r, b % 6 - 1)) end},
  gsub_fn = {"string", "gsub", function(f) return outcome(pcall(f, s, p, repl_fn, b % 4 == 0 and 2 or nil)) end},
  gsub_tbl = {"string", "gsub", function(f) return outcome(pcall(f, s, p, repl_tbl)) end},
  gsub_bad = {"string", "gsub", function(f) return outcome(pcall(f, s, p, b % 2 == 0 and true or nil)) end},
  rep = {"string", "rep", function(f)
    local sep = b % 3 == 0 and r or nil
    local unit, n = #s + #(sep or ""), a
    -- small counts, or counts stock rejects at once as too large
    if n > 6 and (unit == 0 or unit * n < 1 << 31) then n = n % 7 end
    return outcome(pcall(f, s, n, sep))
  end},
  sub = {"string", "sub", function(f)
    if b % 4 == 0 then return outcome(pcall(f, s, a)) end
    return outcome(pcall(f, s, a, b % 40 - 20))
  end},
  byte = {"string", "byte", function(f)
    if b % 4 == 0 then return outcome(pcall(f, s, a)) end
    return outcome(pcall(f, s, a, b % 40 - 20))
  end},
  upper = {"string", "upper", function(f) return outcome(pcall(f, b % 7 == 0 and {} or s)) end},
  lower = {"string", "lower", function(f) return outcome(pcall(f, b % 7 == 0 and {} or s)) end},
  reverse = {"string", "reverse", function(f) return outcome(pcall(f, b % 7 == 0 and {} or s)) end},
  utf8_len = {"utf8", "len", function(f)
    if b % 5 == 0 then return outcome(pcall(f, s)) end
    return outcome(pcall(f, s, a, b % 40 - 20, b % 3 == 0))
  end},
  utf8_codepoint = {"utf8", "codepoint", function(f)
    if b % 5 == 0 then return outcome(pcall(f, s)) end
    return outcome(pcall(f, s, a, b % 40 - 20, b % 3 == 0))
  end},
  utf8_offset = {"utf8", "offset", function(f)
    if b % 3 == 0 then return outcome(pcall(f, s, a)) end
    return outcome(pcall(f, s, a, b % 40 - 20))
  end},
  sort = {"table", "sort", function(f)
    local t, order = numbers(b % 64), orders[a % #orders + 1]
    return outcome(pcall(f, t, order or nil)) .. " " .. show(t)
  end},
  insert = {"table", "insert", function(f)
    local t = numbers(8)
    local res
    if b % 3 == 0 then res = outcome(pcall(f, t, "v"))
    elseif b % 3 == 1 then res = outcome(pcall(f, t, a, "v"))
    else res = outcome(pcall(f, t, a, "v", "w")) end
    return res .. " " .. show(t)
  end},
  remove = {"table", "remove", function(f)
    local t = numbers(8)
    local res = b % 2 == 0 and outcome(pcall(f, t)) or outcome(pcall(f, t, a))
    return res .. " " .. show(t)
  end},
  move = {"table", "move", function(f)
    local t, u = numbers(12), {}
    local from, e = a, b % 16 - 4
    -- a range stock accepts is kept short: it would loop over all of it
    if (from > 0 or e < math.maxinteger + from) and from < e - 64 then from = e - a % 64 end
    local res = b % 2 == 0 and outcome(pcall(f, t, from, e, #r - 2))
                            or outcome(pcall(f, t, from, e, #r - 2, u))
    return res .. " " .. show(t) .. " " .. show(u)
  end},
  concat = {"table", "concat", function(f)
    local t = mixed()
    if b % 3 == 0 then return outcome(pcall(f, t, r)) end
    return outcome(pcall(f, t, r, a, b % 20 - 2))
  end},
  unpack = {"table", "unpack", function(f)
    local t = mixed()
    if b % 3 == 0 then return outcome(pcall(f, t)) end
    return outcome(pcall(f, t, a, b % 40 - 5))
  end},
}

local o = ops[op]
local lib, name, run = o[1], o[2], o[3]
local ours = _G[lib][name]
local want = with(lib, name, stock[lib][name], run)
local got = with(lib, name, ours, run)
if want == got then return "" end
return "stock: " .. want .. "\nours:  " .. got
`

// cmpOps are the operations cmpHarness knows, in the order FuzzStrlib
// picks them by number.
var cmpOps = []string{
	"find", "find_plain", "match", "gmatch", "gsub", "gsub_n", "gsub_fn", "gsub_tbl",
	"gsub_bad", "rep", "sort", "insert", "remove", "move", "concat", "unpack",
	"sub", "byte", "upper", "lower", "reverse", "utf8_len", "utf8_codepoint", "utf8_offset",
}

var (
	cmpOnce  sync.Once
	cmpState *strlibState
	cmpErr   error
)

// compareWithStock runs one case; it returns "" when ours did what stock
// did, else both outcomes.
func compareWithStock(tb testing.TB, op, s, p, r string, a, b int64) string {
	tb.Helper()
	cmpOnce.Do(func() { cmpState, cmpErr = newStrlibState() })
	if cmpErr != nil {
		tb.Fatal(cmpErr)
	}
	out, err := cmpState.call(cmpHarness, op, s, p, r, strconv.FormatInt(a, 10), strconv.FormatInt(b, 10))
	if err != nil {
		tb.Fatalf("harness: %v", err)
	}
	return out[0]
}

// cmpCase is one comparison: operation, subject, pattern, replacement or
// separator, and two numbers whose use depends on the operation.
type cmpCase struct {
	op, s, p, r string
	a, b        int64
}

// cmpCases are the deterministic cases, also the fuzz target's seeds:
// the manual's examples, every error message, and the corners (anchors,
// empty matches, %f at the ends, %b, back references, positions).
var cmpCases = func() []cmpCase {
	var cs []cmpCase
	pats := []string{
		"", "a", "^a", "a$", "^$", "$", "^", ".", ".-", ".*", "a*", "a+", "a?", "a-b",
		"%a+", "%A", "%d+", "%D*", "%w+", "%s", "%S+", "%p", "%l%u", "%x+", "%c", "%g+", "%z", "%Z", "%.", "%%",
		"[abc]", "[^abc]", "[a-c]+", "[%a-]", "[]]", "[^]]", "[a-]", "[-a]", "[%]]", "[a%-z]", "[%w_]+",
		"(a)", "(a)(b)", "()", "()a()", "(a*(.)%w(%s*))", "(.)%1", "(.-)%1", "%1", "(%1)", "(a)%2", "%0",
		"%bxy", "%b()", "%b", "%bx", "%f[%w]%w+", "%f[%W]", "%f[%a]", "%f[^%z]", "%f", "%fx", "%f[a",
		"%", "a%", "[a", "[^", "[%", "(", ")", "a)", "((a)", "(()", "a(", "x$y", "$$", "^^a", "a^",
		"[a-%%]", "[%a-z]", "[z-a]", "%[", "[[]", "[a]-", "(a)-", "()+", "%b()*", "%f[a]*",
		"\x00", "[\x00-\x01]", "%z+", "a\x00b", ".-b", "(.-)b", "a.-$", "^(.-)%s*$",
	}
	subjects := []string{
		"", "a", "aaa", "abc", "aXb", "hello world", "  trim me  ", "a,b,,c", "(foo(bar))baz", "xyz",
		"THE (quick) fox", "f[oo]", "a\x00b\x00", "123 456", "ab]cd", "x=1, y=2", "aaab", "^$a^$", "%a%",
	}
	reps := []string{"", "x", "%0", "%1", "%2", "%%", "[%0]", "%", "a%b", "%1%1", "%9", "\x00"}
	for i, p := range pats {
		for j, s := range subjects {
			k := int64(i*len(subjects) + j)
			cs = append(cs,
				cmpCase{"find", s, p, "", []int64{1, 2, -1, 0, -100, 10}[k%6], 0},
				cmpCase{"match", s, p, "", []int64{1, 3, -2}[k%3], 0},
				cmpCase{"gmatch", s, p, "", []int64{1, 2, -3, 100}[k%4], 0},
				cmpCase{"gsub", s, p, reps[k%int64(len(reps))], 0, 0},
				cmpCase{"gsub_fn", s, p, "", 0, k},
				cmpCase{"gsub_tbl", s, p, "", 0, k},
			)
			if k%5 == 0 {
				cs = append(cs,
					cmpCase{"find_plain", s, p, "", 1 + k%3, k},
					cmpCase{"gsub_n", s, p, reps[k%int64(len(reps))], 0, k},
					cmpCase{"gsub_bad", s, p, "", 0, k},
				)
			}
		}
	}
	for i, s := range []string{"", "x", "ab", "\x00\x01", strings.Repeat("q", 40)} {
		for a := int64(-1); a < 6; a++ {
			cs = append(cs, cmpCase{"rep", s, "", ",", a, int64(i)})
		}
	}
	texts := []string{"", "a", "hello World", "h\u00e9llo w\u00f6rld", "\u4e2d\u6587\U0001F600", "\xff", "a\x80b",
		"\xc0\x80", "\xc2", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80",
		"\xfd\xbf\xbf\xbf\xbf\xbf", "\xfe\x80", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf0\x90\x80\x80", "\xe2\x82", "x\xe2\x82\xacy", "\x00\u00e9\x00"}
	for i, s := range texts {
		for a := int64(-8); a < 9; a++ {
			for _, op := range []string{"sub", "byte", "upper", "lower", "reverse", "utf8_len", "utf8_codepoint", "utf8_offset"} {
				cs = append(cs, cmpCase{op, s, "", "", a, int64(i) + a*7 + 20})
			}
		}
		cs = append(cs, cmpCase{"utf8_offset", s, "", "", 1 << 40, 1}, cmpCase{"sub", s, "", "", -(1 << 62), 3},
			cmpCase{"byte", s, "", "", 1 << 62, 3}, cmpCase{"utf8_len", s, "", "", -(1 << 62), 3})
	}
	tables := []string{"", "\x05", "\x03\x01\x02", "hello, world", "zyxwvutsrqponmlkjihgfedcba",
		strings.Repeat("\x07\x03\x0b\x01", 16), "\x0d\x0d\x01\x0d\x02\x0d", "aaaaaaa", "\x00\x01\x02\x03\x04\x05\x06\x07"}
	for i, s := range tables {
		for a := int64(-3); a < 12; a++ {
			b := int64(i)*7 + a
			for _, op := range []string{"sort", "insert", "remove", "move", "concat", "unpack"} {
				cs = append(cs, cmpCase{op, s, "", strings.Repeat("-", int(a+3)%6), a, b + 60})
				cs = append(cs, cmpCase{op, s, "", ",", a, b + 61})
			}
		}
	}
	return cs
}()

func TestStrlibMatchesStock(t *testing.T) {
	for _, c := range cmpCases {
		if d := compareWithStock(t, c.op, c.s, c.p, c.r, c.a, c.b); d != "" {
			t.Errorf("%s(%q, %q, %q, %d, %d):\n%s", c.op, c.s, c.p, c.r, c.a, c.b, d)
		}
	}
	// Cases too costly for the fuzz target's bounds: nesting and capture
	// limits, long subjects.
	long := strings.Repeat("a", 300)
	for _, c := range []cmpCase{
		{"match", long, strings.Repeat("a?", 300), "", 1, 0},  // pattern too complex
		{"match", long, strings.Repeat("a?", 199), "", 1, 0},  // just within
		{"find", "x", strings.Repeat("()", 33), "", 1, 0},     // too many captures
		{"find", "x", strings.Repeat("()", 32), "", 1, 0},     // 32 is fine
		{"gsub", long, strings.Repeat("(a)", 32), "%9", 1, 0}, // all captures
		{"gmatch", long + "b" + long, "a-b", "", 1, 0},        // a long match
		{"gsub", long, "", "-", 1, 0},                         // empty matches everywhere
		{"find", long + "b", strings.Repeat("a", 299) + "b", "", 1, 0},
		{"find_plain", long + "b", strings.Repeat("a", 299) + "b", "", 1, 0},
		{"find_plain", long, strings.Repeat("a", 301), "", 1, 0},
		{"find", long, ".-b", "", 1, 0},
		{"rep", "abc", "", "", 1 << 40, 0}, // resulting string too large
	} {
		if d := compareWithStock(t, c.op, c.s, c.p, c.r, c.a, c.b); d != "" {
			t.Errorf("%s(%.20q, %.20q, %q, %d, %d):\n%s", c.op, c.s, c.p, c.r, c.a, c.b, d)
		}
	}
}

// quantifiers counts the pattern characters that can make a match
// backtrack; the fuzz target bounds them so stock Lua (which charges
// nothing) finishes each case quickly.
func quantifiers(p string) int {
	return strings.Count(p, "*") + strings.Count(p, "-") + strings.Count(p, "+") + strings.Count(p, "?")
}

func FuzzStrlib(f *testing.F) {
	// A tenth of the cases as seeds (TestStrlibMatchesStock runs them all):
	// enough of every operation and shape, and a short run gets past them.
	for k, c := range cmpCases {
		if k%10 != 0 {
			continue
		}
		for i, op := range cmpOps {
			if op == c.op {
				f.Add(uint8(i), c.s, c.p, c.r, c.a, c.b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, op uint8, s, p, r string, a, b int64) {
		if len(s) > 48 || len(p) > 24 || len(r) > 16 || quantifiers(p) > 4 {
			return
		}
		name := cmpOps[int(op)%len(cmpOps)]
		if d := compareWithStock(t, name, s, p, r, a, b); d != "" {
			t.Errorf("%s(%q, %q, %q, %d, %d):\n%s", name, s, p, r, a, b, d)
		}
	})
}
