-- The workloads of ir.c: each calls one library function (f, the stock one
-- or ours, by WHICH) n times on ordinary input; the loop is the same for
-- both, so the difference of the counts is the functions'.
local W = {
  ["find/plain"] = {"string", "find", function(f, n) local s, c = "the quick brown fox jumps over the lazy dog", 0
    for i = 1, n do c = c + f(s, "lazy", 1, true) end return c end},
  ["find/pattern"] = {"string", "find", function(f, n) local s, c = "GET /index.html HTTP/1.1 200 1234", 0
    for i = 1, n do c = c + f(s, "%d+") end return c end},
  ["match/captures"] = {"string", "match", function(f, n) local s, c = "  key_1 = some value  ", 0
    for i = 1, n do local k, v = f(s, "^%s*([%w_]+)%s*=%s*(.-)%s*$") c = c + #k + #v end return c end},
  ["gmatch/words"] = {"string", "gmatch", function(f, n) local s, c = "the quick brown fox jumps over the lazy dog", 0
    for i = 1, n do for w in f(s, "%a+") do c = c + #w end end return c end},
  ["gsub/string"] = {"string", "gsub", function(f, n) local s, c = "a  few   words\tand \n spaces  here", 0
    for i = 1, n do local r, k = f(s, "%s+", " ") c = c + #r + k end return c end},
  ["gsub/function"] = {"string", "gsub", function(f, n) local s, c = "$name is $age years old", 0
    local vars = {name = "Ada", age = "36"} local function repl(k) return vars[k] end
    for i = 1, n do local r = f(s, "%$(%w+)", repl) c = c + #r end return c end},
  ["gsub/table"] = {"string", "gsub", function(f, n) local s, c = "$name is $age years old", 0
    local vars = {name = "Ada", age = "36"}
    for i = 1, n do local r = f(s, "%$(%w+)", vars) c = c + #r end return c end},
  ["rep/100"] = {"string", "rep", function(f, n) local c = 0 for i = 1, n do c = c + #f("ab", 100, ",") end return c end},
  ["sub/4"] = {"string", "sub", function(f, n) local s, c = "hello world", 0 for i = 1, n do c = c + #f(s, 3, 6) end return c end},
  ["byte/1"] = {"string", "byte", function(f, n) local s, c = "hello world", 0 for i = 1, n do c = c + f(s, 3) end return c end},
  ["upper/40"] = {"string", "upper", function(f, n) local s, c = "The Quick Brown Fox Jumps Over The Dog", 0
    for i = 1, n do c = c + #f(s) end return c end},
  ["utf8.len/20"] = {"utf8", "len", function(f, n) local s, c = "h\u{e9}llo w\u{f6}rld \u{4e2d}\u{6587}", 0
    for i = 1, n do c = c + f(s) end return c end},
  ["concat/100"] = {"table", "concat", function(f, n) local t, c = {}, 0 for i = 1, 100 do t[i] = "item" .. i end
    for i = 1, n do c = c + #f(t, ",") end return c end},
  ["sort/1000"] = {"table", "sort", function(f, n) local src, t, c = {}, {}, 0
    local x = 1 for i = 1, 1000 do x = (x * 1103515245 + 12345) % 2147483648 src[i] = x end
    for i = 1, n do for j = 1, 1000 do t[j] = src[j] end f(t) c = c + t[1] end return c end},
  ["sort/1000 function"] = {"table", "sort", function(f, n) local src, t, c = {}, {}, 0
    local x = 1 for i = 1, 1000 do x = (x * 1103515245 + 12345) % 2147483648 src[i] = x end
    local function gt(a, b) return a > b end
    for i = 1, n do for j = 1, 1000 do t[j] = src[j] end f(t, gt) c = c + t[1] end return c end},
  ["insert/end"] = {"table", "insert", function(f, n) local t = {} for i = 1, n do f(t, i) end return #t end},
  ["remove/end"] = {"table", "remove", function(f, n) local t = {} for i = 1, 100000 do t[i] = i end
    local c = 0 for i = 1, n do c = c + f(t) end return c end},
  ["unpack/10"] = {"table", "unpack", function(f, n) local t, c = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0
    for i = 1, n do c = c + select("#", f(t)) end return c end},
  ["move/100"] = {"table", "move", function(f, n) local a, b, c = {}, {}, 0 for i = 1, 100 do a[i] = i end
    for i = 1, n do f(a, 1, 100, 1, b) c = c + b[100] end return c end},
}
local w = assert(W[WORK], "no such workload")
local impl = WHICH == "stock" and STOCK[w[1]][w[2]] or _G[w[1]][w[2]]
print(WORK, WHICH, w[3](impl, N))
