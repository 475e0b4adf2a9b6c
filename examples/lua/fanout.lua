-- Fan-out: start several tasks at once, then gather their results in order.
-- Run it with: moonbridge run examples/lua/fanout.lua
local task = require("task")

local function work(name, seconds)
  task.sleep(seconds)          -- stands in for a slow call
  return name .. " done"
end

local started = os.clock()
local tasks = {}
for i, d in ipairs({0.03, 0.01, 0.02}) do
  tasks[i] = task.spawn(work, "job" .. i, d)
end
for _, t in ipairs(tasks) do print(t:wait()) end

-- Generators stay plain Lua: a coroutine that waits inside.
local ticks = coroutine.wrap(function()
  for i = 1, 3 do task.sleep(0.001); coroutine.yield(i) end
end)
print(ticks(), ticks(), ticks())
assert(os.clock() - started < 1)
