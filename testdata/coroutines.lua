-- Bridge calls inside user coroutines: the runtime's yield passes through.
local task = require("task")
local t = require("t")

-- a generator that calls Go inside
local gen = coroutine.wrap(function()
  for i = 1, 3 do coroutine.yield(t.add(i, 100)) end
  return "done"
end)
print(gen(), gen(), gen(), gen())

-- coroutine.resume returns the user's yields, never the runtime's
local co = coroutine.create(function(a)
  local x = t.add(a, 1)
  local b = coroutine.yield(x)
  local y = t.add(b, 1)
  return y, "end"
end)
print(coroutine.resume(co, 1))
print(coroutine.status(co))
print(coroutine.resume(co, 10))
print(coroutine.status(co))
print(coroutine.resume(co))

-- nested coroutines, three deep, each calling Go
local function level(n)
  if n == 0 then return t.add(0, 1) end
  local c = coroutine.wrap(function() return level(n - 1) + t.add(0, 1) end)
  return c()
end
print(level(3))

-- while a coroutine waits for Go, another task sees it busy ("normal"); the
-- Go call returns once the watcher has looked (it starts after main waits)
local slow = coroutine.create(function() return t.hold("slow") end)
local watcher = task.spawn(function()
  print("watcher sees", coroutine.status(slow))
  print("watcher resume", coroutine.resume(slow))
  t.release("slow")
end)
print(coroutine.resume(slow))
watcher:wait()
print(coroutine.status(slow))

-- a producer/consumer pair of coroutines calling Go
local producer = coroutine.wrap(function()
  for i = 1, 3 do coroutine.yield(t.echo("item" .. i)) end
end)
for _ = 1, 3 do io.write(producer(), " ") end
print()

-- at a task's root, stock main-thread semantics
print(select(2, coroutine.running()), coroutine.isyieldable())
print(pcall(coroutine.yield, 1))
task.spawn(function()
  print("task root", select(2, coroutine.running()), coroutine.isyieldable())
  print(pcall(coroutine.yield))
end):wait()

-- a coroutine that errors after a Go call: wrap adds the position, as stock
local bad = coroutine.wrap(function() t.add(1, 1); error("oops") end)
local ok, err = pcall(bad)
print(ok, err)
