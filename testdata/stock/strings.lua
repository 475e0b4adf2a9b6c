-- moonbridge's own string.find/match/gmatch/gsub/rep/sub/byte/upper/lower/
-- reverse and utf8.len/codepoint/offset (core/strlib.c) against stock Lua
-- 5.4's: this prints the same under lua5.4 and under moonbridge run.

-- Every value returned, with its type where print would hide it.
local function show(...)
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if math.type(v) == "float" then v = "float:" .. string.format("%.17g", v)
    elseif type(v) == "string" then v = string.format("%q", v)
    elseif type(v) == "table" then v = "table" end
    out[#out + 1] = tostring(v)
  end
  return table.concat(out, " ")
end

local function try(label, f, ...)
  print(label, show(pcall(f, ...)))
end

-- print's buffer growing at a tab (moonbridge's print crashed here)
print(("x"):rep(2048), ("y"):rep(2048), 1)
print(("x"):rep(1023), 2, ("z"):rep(5000), {} ~= nil)

-- find and match: the manual's examples and the corners
local subjects = {"hello world", "", "aaa", "  key = value  ", "THE (quick) fox", "f(a(b)c)d",
  "x=1, y=22, z=333", "a\0b\0c", "[[nested]]", "%d%%", "one\ntwo\nthree", "caf\u{e9}"}
local patterns = {"o", "l+", "l-", "^h", "d$", "^$", ".-", ".*", "(%w+) (%w+)", "()ll()", "%s*",
  "%a+", "[%w_]+", "[^%s]+", "%((%a+)%)", "%b()", "%f[%w]%w+", "%f[%W]", "(.)%1", "[a-c]+",
  "%d+", "^(%w+)%s*=%s*(%w+)", "\0", "%z", "[%z]", "[]]", "[^]]", "%%", "^%[%[(.-)%]%]$",
  "\n", "^.-\n", "(h)(e)(l)(l)(o)", "x?y?", ".$", "[\u{e9}]", "%u+", "%l+"}
for _, s in ipairs(subjects) do
  for _, p in ipairs(patterns) do
    print(show(s, p), "|", show(string.find(s, p)), "|", show(string.match(s, p)),
      "|", show(s:find(p, 3)), "|", show(s:match(p, -4)))
  end
end

-- plain find, init past the end, negative init, empty needle
for _, args in ipairs{{"a.b", ".", 1, true}, {"a.b", ".", 1}, {"abc", "", 4}, {"abc", "", 5},
    {"abc", "c", -1}, {"abc", "a", -10}, {"abc", "", 0}, {"a+b", "+", 1, true},
    {"aaab", "aab", 1, true}, {string.rep("a", 100) .. "b", string.rep("a", 50) .. "b", 1, true}} do
  print("find", show(table.unpack(args, 1, 4)), "=", show(string.find(table.unpack(args, 1, 4))))
end

-- errors, with their exact messages
for _, p in ipairs{"%", "[a", "[^", "(", ")", "%1", "(%1)", "%0", "%b", "%bx", "%f", "%fx", "%f[a",
    "((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))", "(()", "[%", "a%"} do
  try("find " .. p, string.find, "abc", p)
  try("gsub " .. p, string.gsub, "abc", p, "x")
end
try("too complex", string.match, string.rep("a", 300), string.rep("a?", 300))
try("too many captures", string.find, "x", string.rep("()", 33))
try("unfinished capture", string.find, "abc", "(a")
try("unfinished capture match", string.match, "abc", "(a")
try("bad init", string.find, "abc", "a", "x")
try("no pattern", string.find, "abc")
try("no subject", string.match)

-- gmatch: captures, positions, anchors are literal, init (5.4), empty matches
local function all(s, p, init)
  local out = {}
  for a, b in string.gmatch(s, p, init) do out[#out + 1] = show(a, b) end
  return table.concat(out, ", ")
end
print(all("hello world from Lua", "%a+"))
print(all("k1=v1, k2=v2", "(%w+)=(%w+)"))
print(all("abc", "()"))
print(all("abc", ""))
print(all("abc", "a*"))
print(all("aaa", "a-"))
print(all("^a^b", "^."))
print(all("hello world", "%a+", 3))
print(all("hello world", "%a+", -5))
print(all("hello world", "%a+", 100))
print(all("one two", "(%a+)()"))
try("gmatch bad pattern", function() for x in ("abc"):gmatch("[a") do end end)
do -- the iterator after the end, and from another coroutine
  local it = ("a b"):gmatch("%a")
  print(it(), coroutine.wrap(function() return it() end)(), it(), it())
end

-- gsub: strings, %0-%9, %%, tables, functions, max n, anchors, empty matches
print(string.gsub("hello world", "(%w+)", "<%1>"))
print(string.gsub("hello world", "%w+", "%0 %0", 1))
print(string.gsub("hello world", "(%w+)%s*(%w+)", "%2 %1"))
print(string.gsub("abc", "%w", "%%%0"))
print(string.gsub("abc", "", "-"))
print(string.gsub("abc", ".-", "-"))
print(string.gsub("abc", "b*", "-"))
print(string.gsub("hello", "^h", "H"))
print(string.gsub("hello", "^x", "H"))
print(string.gsub("hello", "l", "L", 1))
print(string.gsub("hello", "l", "L", 0))
print(string.gsub("hello", "l", "L", -1))
print(string.gsub("hello", "l", 1.5))
print(string.gsub("hello", "l", 7))
print(string.gsub("abc", "()", "%1"))
print(string.gsub("$name is $age", "%$(%w+)", {name = "Ada", age = 36}))
print(string.gsub("$name is $x", "%$(%w+)", {name = false}))
print(string.gsub("hello world", "%w+", string.upper))
print(string.gsub("hello world", "(o)", function(o) return nil end))
print(string.gsub("abc", "(a)(b)(c)", function(...) return select("#", ...) .. table.concat({...}) end))
print(string.gsub("abc", "()b()", function(p, q) return p + q end))
print(string.gsub("a,b,,c", ",", ";"))
print(string.gsub("a\0b", "%z", "0"))
for _, r in ipairs{"%", "%2", "%x", "a%", "%9", "%\0"} do try("gsub repl " .. r, string.gsub, "abc", "(b)", r) end
try("gsub bad repl value", string.gsub, "abc", "b", function() return {} end)
try("gsub bad repl value 2", string.gsub, "abc", "b", {b = true})
try("gsub no repl", string.gsub, "abc", "b")
try("gsub bad repl type", string.gsub, "abc", "b", true)
try("gsub bad n", string.gsub, "abc", "b", "x", "many")
try("gsub n and repl", string.gsub, "abc", "b", nil, "many")
try("gsub callback error", string.gsub, "abc", "b", function() error("oops") end)
try("gsub callback error table", string.gsub, "abc", "b", function() error({code = 7}) end)
do -- a coroutine inside a callback may yield to its resumer
  local r = string.gsub("a b c", "%a", function(c)
    local co = coroutine.wrap(function(x) coroutine.yield(x:upper()) end)
    return co(c)
  end)
  print(r)
end
do -- __index on the replacement table
  local t = setmetatable({}, {__index = function(_, k) return k:rep(2) end})
  print(string.gsub("ab", "%w", t))
end

-- rep
print(string.rep("ab", 3), string.rep("ab", 3, ","), string.rep("x", 0), string.rep("x", -1), string.rep("", 5))
print(#string.rep("abc", 1000, "--"), string.rep("abc", 1000, "--"):sub(-8))
print(string.rep("x", 1, ","), string.rep("", 3, ","), #string.rep("", 1e6), #string.rep("", 1e6, ""))
try("rep too large", string.rep, "x", 1 << 40)
try("rep too large sep", string.rep, "x", 1 << 30, "yy")
try("rep bad n", string.rep, "x", 1.5)
try("rep no n", string.rep, "x")

-- sub, byte, upper, lower, reverse
local s = "Hello, World"
for _, ij in ipairs{{1}, {3}, {-3}, {0}, {-100}, {100}, {2, 4}, {-5, -2}, {4, 2}, {1, -1}, {0, 0},
    {-100, 100}, {math.maxinteger}, {math.mininteger, math.maxinteger}} do
  print("sub", show(ij[1], ij[2]), show(s:sub(ij[1], ij[2])), show(s:byte(ij[1], ij[2])))
end
print(s:upper(), s:lower(), s:reverse(), ("a\0b"):upper(), (""):reverse())
try("sub no i", string.sub, "abc")
try("byte bad", string.byte, "abc", "x")
try("upper table", string.upper, {})
try("byte huge", string.byte, "abc", math.mininteger, math.maxinteger)

-- utf8
local texts = {"h\u{e9}llo", "\u{4e2d}\u{6587}\u{1F600}", "\xff", "a\x80b", "\xc0\x80", "\xed\xa0\x80",
  "\xf4\x90\x80\x80", "\xfc\x84\x80\x80\x80\x80", "", "ascii"}
for _, t in ipairs(texts) do
  print("utf8", show(t), "|", show(utf8.len(t)), "|", show(utf8.len(t, 1, -1, true)), "|",
    show(pcall(utf8.codepoint, t, 1, -1)), "|", show(pcall(utf8.codepoint, t, 1, -1, true)), "|",
    show(utf8.offset(t, 2)), show(utf8.offset(t, -1)), show(pcall(utf8.offset, t, 0, 2)))
end
try("utf8.len bad i", utf8.len, "abc", 5)
try("utf8.len bad j", utf8.len, "abc", 1, 5)
try("utf8.codepoint bad", utf8.codepoint, "abc", 0)
try("utf8.codepoint bad j", utf8.codepoint, "abc", 1, 4)
try("utf8.offset bad", utf8.offset, "abc", 1, 5)
try("utf8.offset cont", utf8.offset, "\u{e9}", 1, 2)
