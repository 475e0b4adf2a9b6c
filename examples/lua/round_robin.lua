-- Round-robin: tasks take turns. Each worker does a step, then task.yield()
-- lets every other ready task run once, so their output interleaves.
-- Run it with: moonbridge run examples/lua/round_robin.lua
local task = require("task")

local order = {}
local function worker(name, steps)
  for i = 1, steps do
    order[#order + 1] = name .. i
    task.yield()
  end
end

local ts = {}
for i, name in ipairs({"a", "b", "c"}) do
  ts[i] = task.spawn(worker, name, 3)
end
task.all(ts)
print(table.concat(order, " "))

-- Handing work out round-robin over a list of worker channels.
local channel = require("channel")
local inboxes, seen = {}, {}
for w = 1, 3 do
  inboxes[w] = channel.new(8)
  seen[w] = {}
end
for job = 1, 7 do
  inboxes[(job - 1) % #inboxes + 1]:send(job)
end
for w, inbox in ipairs(inboxes) do
  inbox:close()
  for job in inbox:iter() do seen[w][#seen[w] + 1] = job end
  print(("worker %d got %s"):format(w, table.concat(seen[w], ",")))
end
