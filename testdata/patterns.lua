-- Classic concurrency patterns built on tasks, channels and timeouts.
local task = require("task")
local channel = require("channel")
local t = require("t")

print("-- producer/consumer with backpressure")
local buf = channel.new(2)
local log = {}
local producer = task.spawn(function()
  for i = 1, 5 do
    log[#log + 1] = "send " .. i
    buf:send(i)
    log[#log + 1] = "sent " .. i
  end
  buf:close()
  log[#log + 1] = "closed"
end)
local consumer = task.spawn(function()
  task.sleep(0.005) -- start late: the producer fills the buffer and blocks
  for v in buf:iter() do
    log[#log + 1] = "take " .. v .. " (len " .. buf:len() .. ")"
    task.sleep(0.001)
  end
end)
producer:wait()
consumer:wait()
for _, line in ipairs(log) do print(line) end

print("-- round robin in strict alternation")
local names = {"A", "B", "C"}
local ring = {}
for i = 1, 3 do ring[i] = channel.new(1) end
local turns = {}
local players = {}
for i = 1, 3 do
  players[i] = task.spawn(function()
    for round = 1, 3 do
      local baton = ring[i]:recv()
      turns[#turns + 1] = names[i] .. round
      task.yield() -- give the others every chance to cut in
      ring[i % 3 + 1]:send(baton + 1)
    end
  end)
end
ring[1]:send(1)
for i = 1, 3 do players[i]:wait() end
print(table.concat(turns, " "), ring[1]:recv())

print("-- a staged pipeline on channels")
local function generate(n)
  local out = channel.new()
  task.spawn(function()
    for i = 1, n do out:send(i) end
    out:close()
  end)
  return out
end
local function stage(input, fn)
  local out = channel.new()
  task.spawn(function()
    for v in input:iter() do out:send(fn(v)) end
    out:close()
  end)
  return out
end
local squares = stage(stage(generate(5), function(x) return x * x end), function(x) return t.add(x, 1) end)
local outs = {}
for v in squares:iter() do outs[#outs + 1] = v end
print(table.concat(outs, " "))

print("-- fan-out, fan-in")
local jobs = channel.new()
local results = channel.new()
local used = {}
local fan = task.group()
for w = 1, 3 do
  fan:spawn(function()
    for j in jobs:iter() do
      used[w] = true
      task.sleep(0.001)
      results:send(j * 10)
    end
  end)
end
task.spawn(function()
  for j = 1, 9 do jobs:send(j) end
  jobs:close()
end)
task.spawn(function()
  fan:wait()
  results:close()
end)
local merged = {}
for r in results:iter() do merged[#merged + 1] = r end
table.sort(merged)
local nused = 0
for _ in pairs(used) do nused = nused + 1 end
print(table.concat(merged, " "), nused)
-- merging several channels into one
local function merge(...)
  local out = channel.new()
  local inputs = {...}
  local left = #inputs
  for _, input in ipairs(inputs) do
    task.spawn(function()
      for v in input:iter() do out:send(v) end
      left = left - 1
      if left == 0 then out:close() end
    end)
  end
  return out
end
local all = {}
for v in merge(generate(3), stage(generate(3), function(x) return x + 10 end), generate(2)):iter() do
  all[#all + 1] = v
end
table.sort(all)
print(table.concat(all, " "))

print("-- a worker pool of 4 over 20 jobs")
local queue = channel.new(20)
for j = 1, 20 do queue:send(j) end
queue:close()
local done = {}
local running, peak = 0, 0
local pool = task.group()
for _ = 1, 4 do
  pool:spawn(function()
    for j in queue:iter() do
      running = running + 1
      if running > peak then peak = running end
      local v = t.sleep_echo(0.001, j * j) -- the work happens in Go
      running = running - 1
      done[#done + 1] = v
    end
  end)
end
pool:wait()
table.sort(done)
print(#done, table.concat(done, " "))
print(peak)

print("-- a semaphore from a buffered channel")
local sem = channel.new(2)
local inside, most = 0, 0
local users = task.group()
for _ = 1, 6 do
  users:spawn(function()
    sem:send(true) -- acquire
    inside = inside + 1
    if inside > most then most = inside end
    task.sleep(0.001)
    inside = inside - 1
    sem:recv() -- release
  end)
end
users:wait()
print(most, sem:len())

print("-- racing a timeout")
print(task.timeout(60, t.sleep_echo, 0.001, "fast enough"))
local ok, e = pcall(task.timeout, 0.005, t.hold, "too slow") -- it returns only when cancelled
print(ok, e.kind, e.message)
local reply = channel.new()
task.spawn(function() task.sleep(0.001); reply:send("reply") end)
print(task.race({reply, function() task.sleep(3600); return "timed out" end}))
local never = channel.new()
print(task.race({never, function() task.sleep(0.002); return "timed out" end}))
-- the classic select-with-timeout loop
local ticks = channel.new()
task.spawn(function()
  for i = 1, 3 do ticks:send(i) end
end)
local seen = {}
while true do
  local i, v = task.select({ticks, setTimeout(function() end, 20)})
  if i == 2 then break end
  seen[#seen + 1] = v
end
print(table.concat(seen, " "), "then timeout")
