-- Pure Lua coroutine semantics: must print the same under stock lua5.4
-- and under moonbridge run.
local function gen(n)
  return coroutine.wrap(function()
    for i = 1, n do coroutine.yield(i) end
    return "last"
  end)
end
local g = gen(3)
print(g(), g(), g(), g())
print(pcall(g))

local co = coroutine.create(function(a, b)
  print("start", a, b, coroutine.isyieldable(), coroutine.status(coroutine.running()))
  local c = coroutine.yield(a + b)
  print("got", c)
  local d, e = coroutine.yield(c * 2)
  return d + e
end)
print(coroutine.status(co))
print(coroutine.resume(co, 1, 2))
print(coroutine.resume(co, 10))
print(coroutine.resume(co, 3, 4))
print(coroutine.status(co), coroutine.resume(co))

-- main thread
local main, ismain = coroutine.running()
print(type(main), ismain, coroutine.isyieldable())
print(pcall(coroutine.yield, 1))
print(coroutine.status(main))

-- errors
local bad = coroutine.create(function() error("boom") end)
print(coroutine.resume(bad))
print(coroutine.status(bad))
local badt = coroutine.create(function() error({code = 7}) end)
local ok, e = coroutine.resume(badt)
print(ok, type(e), e.code)
print(pcall(coroutine.wrap(function() error("wrapped") end)))
print(type(select(2, pcall(coroutine.wrap(function() error({}) end)))))
print(select("#", pcall(coroutine.resume, coroutine.running())))

-- close, with to-be-closed variables
local closed = {}
local cc = coroutine.create(function()
  local x <close> = setmetatable({}, {__close = function() closed[#closed + 1] = "x" end})
  coroutine.yield(1)
end)
print(coroutine.resume(cc))
print(coroutine.close(cc), coroutine.status(cc), closed[1])
print(pcall(coroutine.close, coroutine.running()))

-- yield across pcall inside a coroutine
local pc = coroutine.wrap(function()
  local ok2, v = pcall(function() return coroutine.yield("inside pcall") + 1 end)
  return ok2, v
end)
print(pc())
print(pc(41))

-- status "normal" seen from a nested coroutine
local outer
outer = coroutine.create(function()
  local inner = coroutine.create(function() return coroutine.status(outer) end)
  return coroutine.resume(inner)
end)
print(coroutine.resume(outer))

-- yield from a nested function, metamethods and iterators
local mt = {__index = function(_, k) return coroutine.yield(k) end}
local obj = setmetatable({}, mt)
local mm = coroutine.wrap(function() return "v=" .. obj.key end)
print(mm(), mm("val"))
local function iter()
  return coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i, i * i) end end)
end
for i, sq in iter() do io.write(i, ":", sq, " ") end
print()
print(coroutine.isyieldable(), select("#", coroutine.running()))
