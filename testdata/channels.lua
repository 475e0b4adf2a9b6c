-- Channels: rendezvous, buffers, closing, select, fairness.
local task = require("task")
local channel = require("channel")

-- The kind of a misuse error (moonbridge's errors are tables with a kind).
local function kindof(e)
  if type(e) == "table" then return e.kind end
  return "a " .. type(e) .. " error"
end

print("-- unbuffered rendezvous")
local ch = channel.new()
print(ch:cap(), ch:len(), ch:closed())
local log = {}
local sender = task.spawn(function()
  log[#log + 1] = "sending"
  local ok = ch:send("hello")
  log[#log + 1] = "sent " .. tostring(ok)
end)
task.yield() -- the sender blocks: nobody receives yet
log[#log + 1] = "receiving"
local v, ok = ch:recv()
log[#log + 1] = "got " .. v .. " " .. tostring(ok)
sender:wait()
print(table.concat(log, ", "))
-- the receiver arrives first
log = {}
task.spawn(function()
  task.sleep(0.001)
  log[#log + 1] = "sending"
  log[#log + 1] = "sent " .. tostring(ch:send("world"))
end)
log[#log + 1] = "receiving"
v, ok = ch:recv()
log[#log + 1] = "got " .. v .. " " .. tostring(ok)
print(table.concat(log, ", "))
print(ch:try_send("nobody waits"))
print(ch:try_recv())

print("-- bounded buffer")
local bc = channel.new(2)
print(bc:cap(), bc:len())
print(bc:send("a"), bc:send("b"), bc:len())
print(bc:try_send("c"))
log = {}
local bs = task.spawn(function()
  log[#log + 1] = "sending c"
  bc:send("c")
  log[#log + 1] = "sent c"
end)
task.yield()
log[#log + 1] = "len " .. bc:len()
print(bc:recv())
log[#log + 1] = "len " .. bc:len()
bs:wait()
print(table.concat(log, ", "))
print(bc:recv())
print(bc:try_recv())
print(bc:try_recv())
print(bc:try_send("d"))
print(bc:len(), bc:try_recv())

print("-- false is a value")
bc:send(false)
print(bc:recv())

print("-- close")
local cc = channel.new(3)
cc:send(1)
cc:send(2)
cc:close()
print(cc:closed(), cc:len())
print(cc:recv())
print(cc:try_recv())
print(cc:recv())
print(cc:try_recv())
print(cc:send(3))
print(cc:try_send(3))
local perr
ok, perr = pcall(cc.close, cc)
print(ok, kindof(perr), tostring(perr))

print("-- close wakes blocked receivers and senders")
local wc = channel.new()
local rec = task.spawn(function() return wc:recv() end)
local wc2 = channel.new()
local snd = task.spawn(function() return wc2:send("stuck") end)
task.yield()
print(rec:status(), snd:status())
wc:close()
wc2:close()
print(rec:wait())
print(snd:wait())

print("-- try_send and try_recv meet waiting peers")
local u = channel.new()
local waiting_recv = task.spawn(function() return u:recv() end)
task.yield()
print(u:try_send("hi"))
print(waiting_recv:wait())
local waiting_send = task.spawn(function() return u:send("there") end)
task.yield()
print(u:len(), u:try_recv())
print(waiting_send:wait())

print("-- cancelled waiters give up their place")
local cw = channel.new()
local ghost = task.spawn(function() cw:send("ghost") end)
task.yield()
print(ghost:cancel(), cw:try_recv())
local cs = channel.new()
local selector = task.spawn(function() return channel.select({{cs, "recv"}}) end)
task.yield()
print(selector:cancel(), cs:try_send(1))
print(pcall(ghost.wait, ghost) == false, pcall(selector.wait, selector) == false)
-- a value handed over before the cancellation is not lost
local handed = channel.new()
local kept
local taker = task.spawn(function() kept = handed:recv(); task.sleep(10) end)
task.yield()
print(handed:send("x"), taker:cancel())
local tok, terr = pcall(taker.wait, taker)
print(tok, terr.kind, kept)

print("-- nil cannot be sent")
local nc = channel.new(1)
ok, perr = pcall(nc.send, nc, nil)
print(ok, kindof(perr), tostring(perr))
ok, perr = pcall(nc.try_send, nc)
print(ok, kindof(perr))
print(nc:len())

print("-- waiting receivers are served in order")
local fifo = channel.new()
local order = {}
local rs = {}
for i = 1, 3 do
  rs[i] = task.spawn(function() local x = fifo:recv(); order[#order + 1] = i .. "=" .. x end)
end
task.yield()
for _, x in ipairs({"p", "q", "r"}) do fifo:send(x) end
for i = 1, 3 do rs[i]:wait() end
print(table.concat(order, " "))

print("-- iter")
local ic = channel.new(1)
task.spawn(function()
  for i = 1, 5 do ic:send(i) end
  ic:close()
end)
local items = {}
for x in ic:iter() do items[#items + 1] = x end
print(table.concat(items, ","))
local bools = channel.new(3)
bools:send(true)
bools:send(false)
bools:send(true)
bools:close()
items = {}
for x in bools:iter() do items[#items + 1] = tostring(x) end
print(table.concat(items, ","))

print("-- select")
local c1, c2 = channel.new(1), channel.new(1)
c2:send("two")
print(channel.select({{c1, "recv"}, {c2, "recv"}}))
print(channel.select({{c1, "recv"}, "default"}))
print(channel.select({"default", {c1, "recv"}}))
print(channel.select({{c1, "send", "x"}, {c2, "recv"}}))
print(c1:recv())
-- blocks until a case is ready
local sc = channel.new()
task.spawn(function() task.sleep(0.002); sc:send("late") end)
print(channel.select({{c1, "recv"}, {sc, "recv"}}))
-- a blocked send case completes when a receiver comes
local uc = channel.new()
task.spawn(function() task.sleep(0.001); print("received", uc:recv()) end)
print(channel.select({{uc, "send", "hi"}, {c1, "recv"}}))
-- closed channels
local closed = channel.new()
closed:close()
print(channel.select({{closed, "recv"}}))
print(channel.select({{closed, "send", 1}}))
local later = channel.new()
task.spawn(function() task.sleep(0.001); later:close() end)
print(channel.select({{c1, "recv"}, {later, "recv"}}))
-- misuse
ok, perr = pcall(channel.select, {})
print(ok, kindof(perr), tostring(perr))
ok, perr = pcall(channel.select, {{c1, "send", nil}})
print(ok, kindof(perr))

-- a loop that sends and receives through one select
local inbox, outbox = channel.new(), channel.new()
task.spawn(function()
  for x in inbox:iter() do outbox:send(x * 2) end
  outbox:close()
end)
local outgoing, next_i, echoed = {1, 2, 3, 4, 5}, 1, {}
while true do
  local cases = {{outbox, "recv"}}
  if next_i <= #outgoing then cases[2] = {inbox, "send", outgoing[next_i]} end
  local idx, x, xok = channel.select(cases)
  if idx == 2 then
    next_i = next_i + 1
    if next_i > #outgoing then inbox:close() end
  elseif xok then
    echoed[#echoed + 1] = x
  else
    break
  end
end
print(table.concat(echoed, " "))

print("-- fairness")
local f1, f2 = channel.new(1), channel.new(1)
local n1, n2 = 0, 0
for _ = 1, 1000 do
  if f1:len() == 0 then f1:send(1) end
  if f2:len() == 0 then f2:send(2) end
  local idx, x = channel.select({{f1, "recv"}, {f2, "recv"}})
  if idx == 1 then n1 = n1 + 1 else n2 = n2 + 1 end
  assert(x == idx)
end
print(n1 > 300, n2 > 300, n1 + n2)
-- also when both cases are sends
local g1, g2 = channel.new(1), channel.new(1)
n1, n2 = 0, 0
for _ = 1, 1000 do
  local idx = channel.select({{g1, "send", 1}, {g2, "send", 2}})
  if idx == 1 then n1 = n1 + 1; g1:recv() else n2 = n2 + 1; g2:recv() end
end
print(n1 > 300, n2 > 300, n1 + n2)
