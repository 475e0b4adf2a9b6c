-- moonbridge's own table.move/concat/unpack/sort/insert/remove
-- (core/tablib.c) against stock Lua 5.4's: this prints the same under
-- lua5.4 and under moonbridge run, including what metamethods see and in
-- which order, and where sort leaves elements that compare equal.

local function list(t, n)
  local out = {}
  for i = 1, n or #t do out[#out + 1] = tostring(t[i]) end
  return table.concat(out, " ")
end

local function try(label, f, ...)
  print(label, pcall(f, ...))
end

-- A proxy whose __index, __newindex and __len write a log.
local function proxy(data)
  local log = {}
  local p = setmetatable({}, {
    __index = function(_, k) log[#log + 1] = "r" .. tostring(k) return data[k] end,
    __newindex = function(_, k, v) log[#log + 1] = "w" .. tostring(k) data[k] = v end,
    __len = function() log[#log + 1] = "#" return #data end,
  })
  return p, log, data
end

-- insert, remove
local t = {1, 2, 3}
table.insert(t, 4) table.insert(t, 1, 0) table.insert(t, 3, 1.5) print(list(t))
print(table.remove(t), table.remove(t, 1), table.remove(t, #t + 1), list(t))
print(table.remove({}), table.remove({}, 0), #t)
try("insert pos", table.insert, {1, 2}, 5, "x")
try("insert pos 0", table.insert, {1, 2}, 0, "x")
try("insert args", table.insert, {1, 2}, 1, 2, 3)
try("insert one arg", table.insert, {1, 2})
try("remove pos", table.remove, {1, 2}, 5)
try("insert not table", table.insert, 1, 2)
do
  local p, log, data = proxy({10, 20, 30})
  table.insert(p, 2, 15) table.remove(p, 1) table.insert(p, 99)
  print(list(data), table.concat(log, " "))
end

-- move
print(list(table.move({1, 2, 3, 4, 5}, 1, 3, 3)), list(table.move({1, 2, 3, 4, 5}, 2, 5, 1)))
print(list(table.move({1, 2, 3}, 1, 3, 1, {})), list(table.move({1, 2, 3}, 1, 0, 1, {9})))
print(list(table.move({1, 2, 3}, -1, 1, 2), 4))
try("move too many", table.move, {}, -1, math.maxinteger, 1)
try("move wrap", table.move, {}, 1, math.maxinteger, 2)
try("move bad dest", table.move, {}, 1, 2, 1, 3)
try("move no args", table.move, {})
do
  local p, log, data = proxy({1, 2, 3, 4})
  table.move(p, 1, 3, 2) table.move(p, 2, 4, 1) table.move(p, 1, 2, 1, {})
  print(list(data), table.concat(log, " "))
  local eq = {__eq = function() print("__eq called") return true end}
  local a, b = setmetatable({1, 2, 3}, eq), setmetatable({}, eq)
  table.move(a, 1, 3, 2, b) print(list(a, 4), list(b, 4))
end

-- concat
print(table.concat({1, 2, "x", 4.5, -0.0, math.maxinteger}, ", "), table.concat({}, "x"), table.concat({1, 2, 3}, "-", 2, 3))
print(table.concat({"a", "b"}, "", 3), table.concat({"a", "b"}, "", 2, 1), table.concat({"a", "b", "c"}, ",", -1 + 2))
try("concat bad value", table.concat, {1, {}, 3})
try("concat nil", table.concat, {1, nil, 3}, ",", 1, 3)
try("concat bad sep", table.concat, {1}, {})
do
  local p, log = proxy({"a", "b", "c"})
  print(table.concat(p, "+"), table.concat(log, " "))
end

-- unpack
print(table.unpack({1, 2, 3}))
print(table.unpack({1, 2, 3}, 2))
print(table.unpack({1, 2, 3}, 2, 5))
print(table.unpack({1, 2, 3}, 3, 1))
print(select("#", table.unpack({}, 1, 0)), select("#", table.unpack({n = 3}, 1, 3)))
try("unpack too many", table.unpack, {}, 1, 1e8)
try("unpack huge", table.unpack, {}, math.mininteger, math.maxinteger)
do
  local p, log = proxy({"x", "y"})
  print(table.unpack(p)) print(table.concat(log, " "))
  print(table.unpack(setmetatable({}, {__index = function(_, i) return i * 10 end}), 1, 3))
end

-- sort: results, the order of equal elements, the accesses, errors
local x = 7
local function rnd(n) x = (x * 1103515245 + 12345) % 2147483648 return x % n end
for _, n in ipairs{0, 1, 2, 3, 4, 5, 10, 99, 100, 101, 250} do
  local a, b, c = {}, {}, {}
  for i = 1, n do a[i] = rnd(1000) b[i] = {k = rnd(5), id = i} c[i] = tostring(rnd(50)) end
  table.sort(a) table.sort(b, function(u, v) return u.k < v.k end) table.sort(c, function(u, v) return u > v end)
  local ids = {} for i = 1, n do ids[i] = b[i].k .. ":" .. b[i].id end
  print(n, list(a), "|", table.concat(ids, " "), "|", list(c))
end
do
  local p, log, data = proxy({5, 3, 9, 1, 7, 3, 8, 2, 6, 4})
  table.sort(p) print(list(data), table.concat(log, " "))
  local calls = {}
  table.sort({3, 1, 2, 5, 4}, function(a, b) calls[#calls + 1] = a .. "<" .. b return a < b end)
  print(table.concat(calls, " "))
  local lt = {__lt = function(a, b) return a.v < b.v end}
  local objs = {} for i = 1, 20 do objs[i] = setmetatable({v = (i * 7) % 20}, lt) end
  table.sort(objs) local vs = {} for i = 1, 20 do vs[i] = objs[i].v end print(table.concat(vs, " "))
end
for _, n in ipairs{2, 3, 4, 5, 6, 10, 50} do
  local t = {} for i = 1, n do t[i] = i end
  try("sort always true " .. n, table.sort, t, function() return true end)
  t = {} for i = 1, n do t[i] = n - i end
  try("sort <= " .. n, table.sort, t, function(a, b) return a <= b end)
  print(list(t))
end
try("sort mixed", table.sort, {1, "x", 2})
try("sort bad comparator", table.sort, {1, 2}, 3)
try("sort too big", table.sort, setmetatable({}, {__len = function() return math.maxinteger end}))
try("sort comparator error", table.sort, {1, 2, 3}, function(a, b) error("cmp " .. a .. b) end)
try("sort not table", table.sort, "abc")
