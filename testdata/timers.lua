-- Browser-style timers: setTimeout, clearTimeout, setInterval, clearInterval.
local task = require("task")
local channel = require("channel")
local t = require("t")

print("-- setTimeout order")
local log = {}
local last = setTimeout(function() log[#log + 1] = "20ms" end, 20)
setTimeout(function() log[#log + 1] = "5ms" end, 5)
setTimeout(function() log[#log + 1] = "10ms" end, 10)
setTimeout(function() log[#log + 1] = "0ms" end, 0)
log[#log + 1] = "sync"
await(last) -- the others are due earlier: they have run (a sleep could race them)
print(table.concat(log, " "))

print("-- equal delays fire in creation order")
log = {}
for i = 1, 4 do setTimeout(function() log[#log + 1] = i end, 0) end
for i = 5, 12 do last = setTimeout(function() log[#log + 1] = i end, 3) end
await(last)
print(table.concat(log, " "))

print("-- clearTimeout")
log = {}
local keep = setTimeout(function() log[#log + 1] = "kept" end, 2)
local drop = setTimeout(function() log[#log + 1] = "dropped" end, 1)
clearTimeout(drop)
clearTimeout(drop)  -- twice is harmless
clearTimeout(nil)   -- so is anything that is not a live timer
clearTimeout(12345)
await(keep)
clearTimeout(keep)  -- already fired: nothing happens
print(table.concat(log, " "))

print("-- a callback is a task: it may call Go and sleep")
local ch = channel.new(1)
setTimeout(function()
  local v = t.add(40, 2)
  task.sleep(0.001)
  ch:send(v)
end, 1)
print(ch:recv())

print("-- nested timers")
log = {}
local nested = channel.new(1)
setTimeout(function()
  log[#log + 1] = "outer"
  setTimeout(function() log[#log + 1] = "inner"; nested:send(true) end, 1)
  log[#log + 1] = "outer end"
end, 1)
nested:recv()
print(table.concat(log, " "))

print("-- setInterval")
local ticks = 0
local fifth = channel.new(1)
local iv
iv = setInterval(function()
  ticks = ticks + 1
  if ticks == 5 then clearInterval(iv); fifth:send(true) end
end, 1)
fifth:recv()
task.sleep(0.01)
print(ticks)
-- cleared from outside, once it has ticked three times
local n = 0
local third = channel.new(1)
local iv2 = setInterval(function()
  n = n + 1
  if n == 3 then third:send(true) end
end, 2)
third:recv()
clearInterval(iv2)
local at_clear = n
task.sleep(0.02)
print(at_clear, n)
-- an interval and a timeout due in the same turn (the loop was busy): they
-- run in deadline order, and a cleared interval never ticks again
log = {}
local iv3
iv3 = setInterval(function() log[#log + 1] = "tick" end, 5)
setTimeout(function() clearInterval(iv3); log[#log + 1] = "cleared" end, 6)
t.busy(20) -- the loop is busy: both become due meanwhile
task.sleep(0.02)
print(table.concat(log, " "))

print("-- resuming a coroutine from a timer callback")
local co = coroutine.create(function(a)
  local b = coroutine.yield("first " .. a)
  local x = t.add(b, 1) -- a bridge call inside the resumed coroutine
  local c = coroutine.yield("second " .. x)
  return "done " .. c
end)
print(coroutine.resume(co, "x"))
local done = channel.new(1)
setTimeout(function()
  print("timer 1", coroutine.resume(co, 10))
  setTimeout(function()
    print("timer 2", coroutine.resume(co, "z"))
    print("timer 2", coroutine.status(co), coroutine.resume(co))
    done:send(true)
  end, 1)
end, 1)
done:recv()
-- a generator made in one callback, driven by the next ones
local gen
local got = {}
local function step(k)
  got[#got + 1] = gen()
  if k < 3 then setTimeout(function() step(k + 1) end, 1) else done:send(true) end
end
setTimeout(function()
  gen = coroutine.wrap(function()
    for i = 1, 3 do coroutine.yield(t.echo(i * 10)) end
  end)
  setTimeout(function() step(1) end, 1)
end, 1)
done:recv()
print(table.concat(got, " "))

print("-- await a timer")
local ran = false
local id = setTimeout(function() task.sleep(0.001); ran = true end, 2)
await(id)
print("awaited", ran)
local cleared = setTimeout(function() end, 50)
clearTimeout(cleared)
local ok, e = pcall(await, cleared)
print(ok, e.kind)
local wins = task.select({setTimeout(function() end, 20), setTimeout(function() end, 1)})
print(wins)

print("-- timers keep the run alive")
setTimeout(function() print("last timer") end, 5)
print("main end")
