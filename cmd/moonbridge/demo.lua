-- moonbridge demo: Lua drives slow Go work, sequentially and concurrently.
local task = require("task")
local work = require("work")

local function timed(label, fn)
  local t0 = clock()
  local result = fn()
  print(string.format("  %-34s %6.0f ms", label, (clock() - t0) * 1000))
  return result
end

print("1. Five Go calls, one after another (each takes the simulated latency):")
timed("sequential", function()
  for i = 1, 5 do work.fetch("item" .. i) end
end)

print("2. The same five calls as five tasks: they wait together.")
local results = timed("concurrent", function()
  local tasks = {}
  for i = 1, 5 do tasks[i] = task.spawn(work.fetch, "item" .. i) end
  local out = {}
  for i, t in ipairs(tasks) do out[i] = t:wait() end
  return out
end)
print("  results: " .. table.concat(results, ", "))

print("3. A stream from Go, read with a for loop, while a ticker task runs:")
local ticks = 0
local ticker = task.spawn(function()
  for _ = 1, 5 do task.sleep(0.05); ticks = ticks + 1 end
end)
io.write("  ")
for word in work.words() do io.write(word) end
io.write("\n")
ticker:wait()
print(string.format("  (the ticker ticked %d times meanwhile)", ticks))

print("4. A coroutine generator that calls Go inside, as plain Lua:")
local gen = coroutine.wrap(function()
  for _, name in ipairs({"alpha", "beta", "gamma"}) do
    coroutine.yield(work.fetch(name))
  end
end)
for _ = 1, 3 do io.write("  ", gen(), "\n") end

print("5. Errors from Go are Lua errors, caught with pcall:")
local ok, err = pcall(work.fetch, {})
print("  ", ok, tostring(err))
