-- Bytes per task suspended in task.sleep, counted by Lua's own allocator
-- (every byte a task holds: its thread, its Task record, its registry slot).
-- Run: moonbridge run bench/suspended_sleep.lua
local task = require("task")
collectgarbage(); collectgarbage()
local before = collectgarbage("count") * 1024
local N = 10000
local ts = {}
for i = 1, N do ts[i] = task.spawn(function() task.sleep(0.2) end) end
task.yield()
collectgarbage(); collectgarbage()
local after = collectgarbage("count") * 1024
for i = 1, N do assert(ts[i]:status() == "suspended", "a task is not asleep") end
print(string.format("%.0f bytes per task suspended in task.sleep (incl. the handle table slot)", (after - before) / N))
