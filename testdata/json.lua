-- The json module: values, round trips, arrays and objects, options,
-- errors with their paths and offsets, and tables whose metatables would
-- misbehave if the encoder asked them anything.
local json = require("json")

-- A string as Lua would write it, every byte outside ASCII escaped.
local function show(s)
  return (string.format("%q", s):gsub("\\\n", "\\n"):gsub("[\128-\255]", function(c)
    return "\\" .. c:byte()
  end))
end

local function try(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return "ok: " .. tostring(err) end
  return "error: " .. tostring(err)
end

print("-- numbers: integers stay integers, floats stay floats")
for _, s in ipairs {"7", "-0", "0", "1234567890123456789", "9223372036854775807",
                    "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
                    "123456789012345678901234567890", "1.0", "-0.0", "1e2", "1E+2", "2.5e-3",
                    "0.1", "1e+300", "1e-320", "4.9e-324"} do
  local v = json.decode(s)
  print(s, math.type(v), v, json.encode(v))
end
for _, v in ipairs {1.0, 0.1, 1 / 3, 2 ^ 53, 2 ^ 63, 1e21, 1e20, 1e-6, 1e-7, -1.5, 100.0,
                    0.1 + 0.2, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308,
                    math.pi, -0.0, 3, -7, math.maxinteger, math.mininteger} do
  local s = json.encode(v)
  local back = json.decode(s)
  print(s, math.type(back) == math.type(v) and back == v and 1 / back == 1 / v)
end

print("-- strings")
print(json.encode("plain"), json.encode(""), json.encode("a\"b\\c/d"))
print(json.encode("\0\1\8\9\10\12\13\31\127"))
print(json.encode("héllo wörld ✓ 😀"))
print(json.decode([["\u00e9\u2713\ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t"]]) == "é✓😀 \"q\" \\ / \b\f\n\r\t")
print(#json.decode([["\u0000"]]), json.encode(json.decode([["a\u0000b"]])))
print(json.decode([["\uD83D\uDE00"]]) == "😀", json.decode([["\u00E9"]]) == "é")

print("-- null")
print(json.null, type(json.null), json.decode("null") == json.null)
print(json.encode(json.null), json.encode(nil), json.encode({json.null, json.null}))
local withnull = json.decode([[{"a": null, "b": [null, 1]}]])
print(withnull.a == json.null, withnull.b[1] == json.null, #withnull.b)
print(json.encode(withnull, {sort_keys = true}))

print("-- arrays and objects")
print(json.encode({}), json.encode(json.array({})), json.encode(json.array()))
print(json.encode(json.decode("[]")), json.encode(json.decode("{}")), json.encode(json.decode("[[],{}]")))
print(json.encode({1, 2, 3}), json.encode({{1}, {2, {3}}}), json.encode({a = {}}))
print(json.encode(json.array({1, 2})), json.encode({"x", true, false, 1.5}))
local arr = json.decode("[1, 2, 3]")
arr[3], arr[2], arr[1] = nil, nil, nil
print("emptied decoded array:", json.encode(arr))
local t = {}
t[3], t[2], t[1] = "c", "b", "a" -- filled backwards: still 1..n
print(json.encode(t))
print(json.array(t) == t, json.encode(t))
print(getmetatable(json.decode("[1]")), getmetatable(json.decode("{}")), getmetatable(json.null))
print(try(setmetatable, json.array({}), {}))
print(try(json.array, setmetatable({}, {})), try(json.array, 42))

print("-- sort_keys and indent")
local doc = {name = "moonbridge", tags = {"lua", "go"}, nested = {z = 1, a = {b = json.array()}},
             empty = {}, n = json.null}
print(json.encode(doc, {sort_keys = true}))
print(json.encode(doc, {sort_keys = true, indent = true}))
print(json.encode({1, {2, 3}, {}}, {indent = "\t"}))
print(json.encode({a = {1}}, {indent = 4, sort_keys = true}))
print(json.encode({a = 1}, {indent = false}), json.encode({a = 1}, {indent = 0}), json.encode({a = 1}, {indent = ""}))
local keys = {}
for i = 1, 50 do keys["k" .. (i * 7919 % 101)] = i end
local sorted = json.encode(keys, {sort_keys = true})
print(sorted == json.encode(json.decode(sorted), {sort_keys = true}), sorted:sub(1, 40))

print("-- round trips")
local src = [[{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\"\n","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls","logprobs":null}],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46},"ratio":0.25,"flags":[],"meta":{}}]]
local v = json.decode(src)
print(v.choices[1].message.tool_calls[1]["function"].name, math.type(v.usage.total_tokens), v.ratio)
print(json.decode(v.choices[1].message.tool_calls[1]["function"].arguments).city)
local again = json.encode(v, {sort_keys = true})
print(again == json.encode(json.decode(again), {sort_keys = true}))
print(again)

print("-- encode errors name the path")
local function f() end
print(try(json.encode, {f}))
print(try(json.encode, {tools = {{name = "a"}, {name = "b", fn = f}}}))
print(try(json.encode, {a = {b = {["not an identifier"] = coroutine.create(f)}}}))
print(try(json.encode, {1, 2, nil, 4}))
print(try(json.encode, {[2] = "b"}))
print(try(json.encode, {[0] = "z", "a"}))
print(try(json.encode, {1, 2, x = 3}))
print((try(json.encode, {x = 3, [1] = 1}):match("^[^(]*"))) -- which key comes first: hash order
print(try(json.encode, {[1.5] = 1}))
print(try(json.encode, {[true] = 1}))
print(try(json.encode, json.array({a = 1})))
print(try(json.encode, {0 / 0}), try(json.encode, {x = 1 / 0}), try(json.encode, -1 / 0))
print(try(json.encode, {s = "ok", bad = "\255"}))
print(try(json.encode, {["\255"] = 1}))
print(try(json.encode, io and io.stdout or newproxy and newproxy() or coroutine.running()))
local cyc = {a = {}}
cyc.a.self = cyc
print(try(json.encode, cyc))
local self = {}
self[1] = self
print(try(json.encode, self))
local shared = {1}
print(try(json.encode, {shared, shared, {shared}})) -- shared, not a cycle
print(try(json.encode))
print(try(json.encode, 1, "indent"))
print(try(json.encode, 1, {indnet = true}))
print(try(json.encode, 1, {indent = "--"}))
print(try(json.encode, 1, {sort_keys = 1}))
print(try(json.encode, 1, {[1] = true}))

print("-- decode errors give the byte")
for _, s in ipairs {"", "   ", "[1,]", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{a:1}", "01", "-",
                    "1.", ".5", "1e", "+1", "0x10", "NaN", "Infinity", "tru", "nul", "[1]x",
                    "\"abc", "\"\\q\"", "\"\\u12\"", "\"\\ud800\"", "\"\\ud800\\u0041\"",
                    "\"\\udc00\"", "\"a\1b\"", "\"\255\"", "\"\192\128\"", "\"\237\160\128\"",
                    "1e999", "[\"a\"\0]", "\239\187\191{}"} do
  print(show(s), try(json.decode, s))
end
print(try(json.decode, 42), try(json.decode))
print(try(json.decode, "1" .. string.rep("0", 1100)))

print("-- depth: 1000 levels both ways")
local deep = string.rep("[", 1000) .. string.rep("]", 1000)
print(#json.encode(json.decode(deep)))
print(try(json.decode, "[" .. deep .. "]"))
print(try(json.decode, string.rep("[", 100000)))
local d = {}
local cur = d
for _ = 1, 1000 do cur[1] = {} cur = cur[1] end
print(try(json.encode, d))

print("-- errors are moonbridge errors")
local ok, e = pcall(json.decode, "[")
print(ok, e.kind, e.op, e.message)
ok, e = pcall(json.encode, {f})
print(ok, e.kind, e.op, e.message)

print("-- metamethods are never asked")
local function boom(name) return function() error(name .. " was called", 2) end end
local trap = {__index = boom("__index"), __newindex = boom("__newindex"), __len = boom("__len"),
              __pairs = boom("__pairs"), __tostring = boom("__tostring"), __name = "trap",
              __eq = boom("__eq"), __lt = boom("__lt"), __le = boom("__le"), __concat = boom("__concat")}
local obj = setmetatable({a = 1, b = setmetatable({1, 2}, trap)}, trap)
print(json.encode(obj, setmetatable({sort_keys = true}, trap)))
local opts = setmetatable({}, {__index = function() error("options' __index was called") end})
print(json.encode({1}, opts))
local smt = getmetatable("")
local saved = smt.__index
smt.__index = boom("string __index")
print(json.encode({s = "x"}), json.decode('"y"'))
smt.__index = saved
print(json.encode(setmetatable({}, {__index = {1, 2, 3}})))
