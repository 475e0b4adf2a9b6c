-- Pipelines: stages of parallel workers connected by bounded channels.
local pipeline = require("pipeline")
local task = require("task")
local channel = require("channel")
local t = require("t")

local function range(n)
  local l = {}
  for i = 1, n do l[i] = i end
  return l
end

local function sorted(list)
  local c = table.move(list, 1, #list, 1, {})
  table.sort(c)
  return c
end

print("-- parallel workers, order kept")
local active, max_active = 0, 0
local p = pipeline.new({
  {name = "double", parallel = 4, fn = function(x)
    active = active + 1
    if active > max_active then max_active = active end
    task.sleep((9 - x) * 0.001) -- later items finish first
    active = active - 1
    return x * 2
  end},
  {name = "label", fn = function(x) return "v" .. x end},
})
print(table.concat(p:collect(range(8)), " "))
print(max_active)

print("-- ordered = false still yields every item")
local up = pipeline.new({
  {name = "slow", parallel = 3, fn = function(x) task.sleep((7 - x) * 0.001); return x * 10 end},
}, {ordered = false})
local out = up:collect(range(6))
print(#out, table.concat(sorted(out), " "))
local per_stage = pipeline.new({
  {name = "a", parallel = 2, ordered = false, fn = function(x) task.sleep((5 - x) * 0.001); return x end},
  {name = "b", fn = function(x) return x + 100 end},
})
print(table.concat(sorted(per_stage:collect(range(4))), " "))

print("-- nil drops an item, false is kept")
local filter = pipeline.new({
  {name = "odd", fn = function(x) if x % 2 == 1 then return x end end},
  {name = "tag", parallel = 2, fn = function(x) if x == 5 then return false end return x end},
})
local kept = filter:collect(range(7))
for i = 1, #kept do kept[i] = tostring(kept[i]) end
print(table.concat(kept, " "))

print("-- stages may call Go")
local go = pipeline.new({{name = "add", parallel = 3, fn = function(x) return t.add(x, 1000) end}})
print(table.concat(go:collect({1, 2, 3}), " "))

print("-- errors carry the stage and the item")
local bad = pipeline.new({
  {name = "check", fn = function(x) return x end},
  {name = "parse", parallel = 2, fn = function(x)
    if x == 3 then error("bad item", 0) end
    task.sleep(0.001)
    return x
  end},
})
local ok, e = pcall(bad.collect, bad, range(6))
print(ok, e.kind, e.op, e.item, e.message, tostring(e))
local bridge_bad = pipeline.new({{name = "fetch", fn = function(x) return t.fail("no " .. x) end}})
ok, e = pcall(bridge_bad.collect, bridge_bad, {"page"})
print(ok, e.kind, e.op, e.item, e.cause.op, e.cause.message)
-- through the run iterator
local got = {}
ok, e = pcall(function()
  for v in bad:run(range(6)) do got[#got + 1] = v end
end)
print(ok, e.op, e.item, #got <= 2)
-- an error in the source
local n = 0
ok, e = pcall(p.collect, p, function()
  n = n + 1
  if n == 3 then error("source broke", 0) end
  return n
end)
print(ok, e.kind, e.op, e.message)

print("-- run, with an early break")
local produced, busy = 0, 0
local lazy = pipeline.new({
  {name = "work", parallel = 2, fn = function(x)
    busy = busy + 1
    local _ <close> = setmetatable({}, {__close = function() busy = busy - 1 end})
    task.sleep(0.001)
    return x * x
  end},
})
local seen = {}
for v in lazy:run(function()
  produced = produced + 1
  if produced <= 1000 then return produced end
end) do
  seen[#seen + 1] = v
  if #seen == 3 then break end
end
print(table.concat(seen, " "), produced < 20, busy)
-- and to the end
seen = {}
for v in lazy:run({1, 2, 3, 4}) do seen[#seen + 1] = v end
print(table.concat(seen, " "))

print("-- a Channel as the source")
local src = channel.new(2)
task.spawn(function()
  for i = 1, 5 do src:send(i) end
  src:close()
end)
print(table.concat(p:collect(src), " "))

print("-- a stream as the source")
print(table.concat(go:collect(t.count(4)), " "))

print("-- a pipeline is reusable")
print(table.concat(p:collect({3, 1}), " "), table.concat(p:collect({}), " ") == "")
