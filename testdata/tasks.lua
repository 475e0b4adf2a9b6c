-- Tasks: spawning, waiting, cancelling, and the structured combinators.
local task = require("task")
local t = require("t")

-- A to-be-closed value that logs when its scope is left, and how; it takes
-- a moment (cleanup may suspend), so structured waits must wait for it.
local function closer(log, name)
  return setmetatable({}, {__close = function(_, e)
    task.sleep(0.001)
    log[#log + 1] = name .. ":" .. (e == nil and "ok" or (type(e) == "table" and e.kind or tostring(e)))
  end})
end

print("-- start order")
local log = {}
local a = task.spawn(function() log[#log + 1] = "a" end)
local b = task.spawn(function() log[#log + 1] = "b" end)
local c = task.spawn(function() log[#log + 1] = "c" end)
log[#log + 1] = "main"
print(a:status(), a:done(), #log)
task.yield()
print(table.concat(log, " "))
print(a:status(), b:status(), c:status(), c:done())

print("-- options, arguments and results")
local named = task.spawn({name = "double", priority = 2}, function(x, y) return x * 2, y, nil end, 21, "y")
print(named:wait())
print(select("#", named:wait()))
local ok, err = pcall(task.spawn, {name = 42}, function() end)
print(ok)
ok, err = pcall(task.spawn, {priority = 0}, function() end)
print(ok)

print("-- priority")
local finished = {}
local function spinner(name, n)
  return function()
    for _ = 1, n do task.yield() end
    finished[#finished + 1] = name
  end
end
local low = task.spawn({name = "low"}, spinner("low", 30))
local high = task.spawn({name = "high", priority = 3}, spinner("high", 30))
low:wait()
high:wait()
print(table.concat(finished, " "))

print("-- many waiters")
local shared = task.spawn(function() task.sleep(0.005); return "v", 7 end)
local got = {}
local waiters = {}
for i = 1, 3 do
  waiters[i] = task.spawn(function() local v, n = shared:wait(); got[i] = v .. n end)
end
print(shared:wait())
for i = 1, 3 do waiters[i]:wait() end
print(table.concat(got, " "))
print(shared:wait()) -- a finished task can be waited on again

print("-- results outlive the thread, which the next task reuses")
-- A task that returned gives its thread back for reuse; its results stay
-- with its Task, however many, whatever they are, for every later wait.
local root
local one = task.spawn(function() root = coroutine.running(); return {k = "t"} end)
print(one:wait().k)
local reused
task.spawn(function() reused = coroutine.running() end):wait()
print("thread reused", reused == root)
local shapes = {
  task.spawn(function() return nil end),
  task.spawn(function() return nil, 2, nil end),
  task.spawn(function() return false end),
  task.spawn(function() local t = {} for i = 1, 200 do t[i] = i end return table.unpack(t) end),
  task.spawn(function() end),
}
task.yield()
for _ = 1, 50 do -- more tasks, on the same threads, filling their stacks
  task.spawn(function(...) return ... end, "x", "y", "z"):wait()
end
for _, s in ipairs(shapes) do
  local r = table.pack(s:wait())
  print(s:status(), r.n, r[1], r[2], r[3], r[r.n])
end
print(select("#", shapes[2]:wait()), select("#", await(shapes[2])), shapes[4]:wait() == 1)
local many = {}
for i = 1, 300 do many[i] = i end
local function count(...) return select("#", ...), (select(300, ...)) end
print("arguments", task.spawn(count, table.unpack(many)):wait())
local g = task.group()
print("group arguments", g:spawn(count, table.unpack(many)):wait())
g:wait()
print("timer arguments", await(setTimeout(count, 1, table.unpack(many))))

print("-- wait re-raises the task's error")
local bad = task.spawn({name = "x"}, function() error("boom", 0) end)
ok, err = pcall(bad.wait, bad)
print(ok, err, tostring(err))
print(task.traceback(err):find("in task 'x'", 1, true) ~= nil)
print(bad:status(), bad:done())
local bad2 = task.spawn(function() error({code = 5}) end)
ok, err = pcall(bad2.wait, bad2)
print(ok, type(err), err.code)
local first_err = err
ok, err = pcall(bad2.wait, bad2) -- and again, for a second waiter
print(ok, err == first_err)

print("-- status in each state")
local states = {}
local probe
probe = task.spawn({name = "probe"}, function()
  states[#states + 1] = probe:status()
  task.sleep(0.002)
  return "fine"
end)
states[#states + 1] = probe:status()
task.yield()
states[#states + 1] = probe:status()
probe:wait()
states[#states + 1] = probe:status()
print(table.concat(states, " "), probe:done())
print(task.current():status())
local me
me = task.spawn(function() return task.current() == me end)
print(me:wait())

print("-- cancel")
local sleeper = task.spawn({name = "sleeper"}, function() task.sleep(10) end)
task.yield()
print(sleeper:status(), sleeper:done())
print(sleeper:cancel())
ok, err = pcall(sleeper.wait, sleeper)
print(ok, err.kind, err.message)
print(sleeper:status(), sleeper:done())
print(sleeper:cancel())
print(named:cancel())
-- cancelled with a reason
local reasoned = task.spawn(function() task.sleep(10) end)
task.yield()
print(reasoned:cancel("shutting down"))
ok, err = pcall(reasoned.wait, reasoned)
print(ok, err.kind, err.message)
-- cancelled before it started: it never runs
local ran = false
local early = task.spawn(function() ran = true end)
print(early:cancel())
ok, err = pcall(early.wait, early)
print(ok, err.kind, ran, early:status())

print("-- cleanup runs, may sleep, and cannot swallow the cancellation")
local steps = {}
local cleanup = task.spawn({name = "cleanup"}, function()
  local _ <close> = setmetatable({}, {__close = function(_, e)
    task.sleep(0.001) -- cleanup may suspend while the cancellation unwinds
    steps[#steps + 1] = "closed:" .. e.kind
  end})
  local pok, pe = pcall(task.sleep, 10)
  steps[#steps + 1] = "caught:" .. tostring(pok) .. ":" .. pe.kind
  task.sleep(0.001) -- swallowed: raised again at this suspension point
  steps[#steps + 1] = "not reached"
end)
task.yield()
print(cleanup:cancel())
ok, err = pcall(cleanup.wait, cleanup)
print(ok, err.kind, cleanup:status())
print(table.concat(steps, " "))

-- try() and coroutine.resume cannot swallow it either
steps = {}
local via_try = task.spawn(function()
  try(function() task.sleep(10) end, function(e) steps[#steps + 1] = "catch " .. e.kind end)
  steps[#steps + 1] = "after try"
  task.sleep(0.001)
  steps[#steps + 1] = "not reached"
end)
local via_co = task.spawn(function()
  local co = coroutine.create(function() task.sleep(10) end)
  local rok, re = coroutine.resume(co)
  steps[#steps + 1] = "resume " .. tostring(rok) .. " " .. re.kind
  task.sleep(0.001)
  steps[#steps + 1] = "not reached"
end)
task.yield()
via_try:cancel()
via_co:cancel()
ok, err = pcall(via_try.wait, via_try)
print(ok, err.kind, via_try:status())
ok, err = pcall(via_co.wait, via_co)
print(ok, err.kind, via_co:status())
print(table.concat(steps, ", "))

print("-- cancelling a task blocked in a bridge call")
local blocked = task.spawn(function() return t.sleep_echo(10, "x") end)
task.sleep(0.005)
print(blocked:status())
print(blocked:cancel())
ok, err = pcall(task.timeout, 1, blocked.wait, blocked)
print(ok, err.kind, blocked:status())

print("-- a dropped handle does not stop a task")
local reached = false
task.spawn(function() task.sleep(0.002); reached = true end)
collectgarbage()
collectgarbage()
task.sleep(0.01)
print(reached)

print("-- yield is round robin")
local rr = {}
local function turns(name)
  return function() for i = 1, 3 do rr[#rr + 1] = name .. i; task.yield() end end
end
local r1, r2, r3 = task.spawn(turns("a")), task.spawn(turns("b")), task.spawn(turns("c"))
r1:wait(); r2:wait(); r3:wait()
print(table.concat(rr, " "))

print("-- sleep order")
local woke = {}
local sl = {}
for i, d in ipairs({0.03, 0.01, 0.02, 0}) do
  sl[i] = task.spawn(function() task.sleep(d); woke[#woke + 1] = d end)
end
for i = 1, 4 do sl[i]:wait() end
print(table.concat(woke, " "))
-- equal sleeps wake in the order they began
woke = {}
for i = 1, 8 do sl[i] = task.spawn(function() task.sleep(0.003); woke[#woke + 1] = i end) end
for i = 1, 8 do sl[i]:wait() end
print(table.concat(woke, " "))

print("-- all")
local res = task.all({
  function() return 1, 2 end,
  function() task.sleep(0.002); return "x" end,
  task.spawn(function() return nil, 3 end),
})
print(#res, res[1].n, res[1][1], res[1][2], res[2].n, res[2][1], res[3].n, res[3][1], res[3][2])
print(#task.all({}))
local alog = {}
local slow = task.spawn(function()
  local _ <close> = closer(alog, "slow")
  task.sleep(10)
end)
ok, err = pcall(task.all, {slow, function() task.sleep(0.001); error("bad", 0) end})
print(ok, err, slow:status(), table.concat(alog, " "))

print("-- race")
local rlog = {}
local slowt = task.spawn(function() local _ <close> = closer(rlog, "loser"); task.sleep(3600); return "slow" end)
local fastt = task.spawn(function() task.sleep(0.001); return "fast", 2 end)
print(task.race({slowt, fastt}))
print(slowt:status(), fastt:status(), table.concat(rlog, " "))
ok, err = pcall(task.race, {function() error("first", 0) end, function() task.sleep(10) end})
print(ok, err)

print("-- select")
local gate = require("channel").new()
local s1 = task.spawn(function() return "s1", (gate:recv()) end)
local s2 = task.spawn(function() task.sleep(0.001); return "s2", "two" end)
print(task.select({s1, s2}))
print(s1:status(), s1:done())
gate:send("opened")
print(s1:wait())
ok, err = pcall(task.select, {})
print(ok)

print("-- race and select: the first to finish wins, not the first listed")
local handoff = require("channel").new()
local finish = {}
local first = task.spawn(function() handoff:recv(); finish[#finish + 1] = "first"; return "first" end)
local second = task.spawn(function() handoff:send(1); finish[#finish + 1] = "second"; return "second" end)
print(task.race({first, second}))
print(table.concat(finish, " "))
finish = {}
first = task.spawn(function() handoff:recv(); finish[#finish + 1] = "first"; return "first" end)
second = task.spawn(function() handoff:send(1); finish[#finish + 1] = "second"; return "second" end)
print(task.select({first, second}))
print(table.concat(finish, " "))
first = task.spawn(function() handoff:recv(); error("first failed", 0) end)
second = task.spawn(function() handoff:send(1); error("second failed", 0) end)
ok, err = pcall(task.all, {first, second})
print(ok, err)
pcall(first.wait, first) -- both failures are seen
pcall(second.wait, second)

print("-- timeout")
local tstate = {}
ok, err = pcall(task.timeout, 0.01, function()
  local _ <close> = closer(tstate, "fn")
  tstate[#tstate + 1] = "started"
  task.sleep(3600)
  tstate[#tstate + 1] = "finished"
end)
print(ok, err.kind, err.message, tostring(err), table.concat(tstate, " "))
print(task.timeout(60, function(x, y) return x + y, "sum" end, 1, 2))
ok, err = pcall(task.timeout, 60, function() error("inner", 0) end)
print(ok, err)

print("-- group")
local glog = {}
local g = task.group()
g:spawn(function() task.sleep(0.002); error("child failed", 0) end)
local sib = g:spawn(function() local _ <close> = closer(glog, "sibling"); task.sleep(10) end)
local fine = g:spawn(function() return "fine" end)
ok, err = pcall(g.wait, g)
print(ok, err, sib:status(), fine:status(), table.concat(glog, " "))
-- scoped: leaving the block waits for every child
glog = {}
do
  local sg <close> = task.group()
  sg:spawn(function() task.sleep(0.004); glog[#glog + 1] = "child1" end)
  sg:spawn(function() task.sleep(0.001); glog[#glog + 1] = "child2" end)
end
glog[#glog + 1] = "after block"
print(table.concat(glog, " "))
-- scoped, left by an error: the children are cancelled and have ended
glog = {}
local child
ok, err = pcall(function()
  local sg <close> = task.group()
  child = sg:spawn(function() local _ <close> = closer(glog, "child"); task.sleep(10) end)
  task.yield()
  error("leaving", 0)
end)
print(ok, err, child:status(), table.concat(glog, " "))
-- a task waiting on its group is cancelled: no child outlives the group
glog = {}
local kid
local owner = task.spawn(function()
  local og = task.group()
  kid = og:spawn(function() local _ <close> = closer(glog, "kid"); task.sleep(10) end)
  og:wait()
end)
task.yield()
task.yield()
print(owner:cancel())
ok, err = pcall(owner.wait, owner)
print(ok, err.kind, kid:status(), table.concat(glog, " "))

print("-- a task cancelled while it waits in all, race or timeout")
local ulog = {}
local function unwinder(name)
  return function() local _ <close> = closer(ulog, name); task.sleep(10) end
end
local in_all = task.spawn(function() return task.all({unwinder("all1"), unwinder("all2")}) end)
local in_race = task.spawn(function() return task.race({unwinder("race1"), unwinder("race2")}) end)
local in_timeout = task.spawn(function() return task.timeout(10, unwinder("timeout1")) end)
task.yield()
task.yield()
print(in_all:cancel(), in_race:cancel(), in_timeout:cancel())
for _, w in ipairs({in_all, in_race, in_timeout}) do
  ok, err = pcall(w.wait, w)
  print(ok, err.kind, w:status())
end
table.sort(ulog)
print(table.concat(ulog, " "))

print("-- a scoped group whose child fails raises when the scope ends")
glog = {}
ok, err = pcall(function()
  local sg <close> = task.group()
  sg:spawn(function() task.sleep(0.001); error("child error", 0) end)
  sg:spawn(function() local _ <close> = closer(glog, "other"); task.sleep(10) end)
  glog[#glog + 1] = "end of scope"
end)
print(ok, err, table.concat(glog, " "))
local ended = task.group()
ended:spawn(function() end)
ended:wait()
print(pcall(ended.spawn, ended, function() end) == false, select("#", ended:wait()))

print("-- detach")
local d = task.spawn(function()
  local _ <close> = setmetatable({}, {__close = function(_, e)
    print("detached cleanup", e and e.kind)
  end})
  while true do task.sleep(0.001) end
end)
d:detach()
task.sleep(0.003)
print(d:status())
setTimeout(function() print("a timer still runs before detached tasks are reaped") end, 5)
print("main done")

-- A completed wait stands: the sender's value was taken before it ran
-- again, so cancelling it now cannot undo the send; it ends done.
do
  local channel = require("channel")
  local ch = channel.new(1)
  ch:send("fill")
  local sender = task.spawn(function() ch:send("mine"); return "sent" end)
  task.yield()
  print("taken", ch:recv())
  print("cancel requested", sender:cancel())
  print("sender", pcall(sender.wait, sender))
  print("status", sender:status(), ch:recv())
end
