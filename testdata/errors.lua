-- Errors: moonbridge's error tables, try(), and tracebacks across awaits.
local task = require("task")
local promise = require("promise")
local t = require("t")

local function has(s, needle) return type(s) == "string" and s:find(needle, 1, true) ~= nil end

print("-- a bridge error")
local ok, e = pcall(t.fail, "disk full")
print(ok, type(e), e.kind, e.op, e.message)
print(tostring(e), tostring(e) == e.message, type(e.traceback))
print(e)

print("-- a script's error value crosses a wait unchanged")
local failing = task.spawn({name = "worker"}, function() error("plain string", 0) end)
ok, e = pcall(failing.wait, failing)
print(ok, type(e), e, "x: " .. e)
print(has(task.traceback(e), "in task 'worker'"), has(task.traceback(failing), "in task 'worker'"))
local positioned = task.spawn(function() error("boom") end)
ok, e = pcall(await, positioned)
print(ok, e, e:match("^errors:(%d+): boom$"))
local tbl = {code = 42}
local with_table = task.spawn(function() error(tbl) end)
ok, e = pcall(with_table.wait, with_table)
print(ok, e == tbl, e.code, has(task.traceback(e), "stack traceback"))
local with_tostring = task.spawn(function()
  error(setmetatable({}, {__tostring = function() return "custom text" end}))
end)
ok, e = pcall(with_tostring.wait, with_tostring)
print(ok, type(e), tostring(e))
ok, e = pcall(task.all, {function() error(7) end})
print(ok, math.type(e), e)
local g_ok, g_e = pcall(function()
  local g = task.group()
  g:spawn(function() error({code = "E_GROUP"}) end)
  g:wait()
end)
print(g_ok, g_e.code)
ok, e = pcall(await, async(function() error("rejected", 0) end)())
print(ok, e)
print(task.traceback("never raised"), task.traceback(42))

print("-- load returns its error as a string, as stock Lua does")
local f, lerr = load(function() error("hhi") end)
print(f, type(lerr), lerr)
f, lerr = load(function() error({code = 1}) end)
print(f, type(lerr), lerr.code)
f, lerr = load("return " .. string.rep("(", 300) .. "1" .. string.rep(")", 300))
print(f, type(lerr), lerr)
f, lerr = load("x = = 1", "=chunk")
print(f, "bad: " .. lerr)

print("-- inside one task, Lua's own errors stay stock")
print(pcall(error, "stock", 0))
print(pcall(error, tbl) == false, select(2, pcall(error, tbl)) == tbl)
print(select(2, pcall(error)))

print("-- the kinds raised by moonbridge")
local sleeper = task.spawn({name = "sleepy"}, function() task.sleep(10) end)
task.yield()
sleeper:cancel()
ok, e = pcall(sleeper.wait, sleeper)
print(ok, e.kind, e.message, e.op, tostring(e) == e.message)
ok, e = pcall(task.timeout, 0.001, task.sleep, 3600)
print(ok, e.kind, e.message, e.op, tostring(e))
ok, e = pcall(t.panic, "kaboom")
print(ok, e.kind, e.op, e.message)

print("-- try")
print(try(function() return 1, nil, 3 end))
print(try(function() error("e1", 0) end, function(err) return "caught " .. err end))
local log = {}
print(try(function() return "value" end,
  function() log[#log + 1] = "catch (not called)" end,
  function() log[#log + 1] = "finally 1" end))
print(try(function() error("e2", 0) end,
  function(err) log[#log + 1] = "catch " .. err; return "recovered" end,
  function() log[#log + 1] = "finally 2" end))
print(table.concat(log, ", "))
-- no catch: the error goes on, after finally
log = {}
ok, e = pcall(try, function() error("e3", 0) end, nil, function() log[#log + 1] = "finally 3" end)
print(ok, e, table.concat(log, ", "))
-- an error in catch goes on, after finally
log = {}
ok, e = pcall(try, function() error("e4", 0) end,
  function(err) error("catch failed on " .. err, 0) end,
  function() log[#log + 1] = "finally 4" end)
print(ok, e, table.concat(log, ", "))
-- an error in finally replaces whatever was under way
ok, e = pcall(try, function() return "v" end, nil, function() error("finally failed", 0) end)
print(ok, e)
ok, e = pcall(try, function() error("e5", 0) end, function() return "handled" end,
  function() error("finally failed too", 0) end)
print(ok, e)
-- moonbridge errors and awaits inside try
print(try(function() return t.fail("gone") end, function(err) return err.kind, err.op end))
print(try(function() task.sleep(0.001); return t.add(2, 3) end, nil, function() task.sleep(0.001) end))
ok, e = pcall(try, function() error("x", 0) end, "not a function")
print(ok)

-- finally completes even while a cancellation unwinds through try
local flog = {}
local cancelled_try = task.spawn(function()
  try(function() task.sleep(10) end, nil, function()
    flog[#flog + 1] = "finally start"
    task.sleep(0.001)
    flog[#flog + 1] = "finally done"
  end)
  flog[#flog + 1] = "not reached"
end)
task.yield()
cancelled_try:cancel()
ok, e = pcall(cancelled_try.wait, cancelled_try)
print(ok, e.kind, table.concat(flog, ", "))

print("-- a traceback shows every await hop")
local C = task.spawn({name = "C"}, function() task.sleep(0.001); error("deep failure", 0) end)
local B = task.spawn({name = "B"}, function() return C:wait() end)
local A = task.spawn({name = "A"}, function() return B:wait() end)
ok, e = pcall(A.wait, A)
local tb = task.traceback(e)
print(ok, e, type(tb))
local ca, cb, cc = tb:find("in task 'A'", 1, true), tb:find("in task 'B'", 1, true),
  tb:find("in task 'C'", 1, true)
print(ca ~= nil, cb ~= nil, cc ~= nil)
print(cc ~= nil and cb ~= nil and ca ~= nil and cc < cb and cb < ca)
-- the same through await and promises
local inner = async(function() task.sleep(0.001); error("promise failure", 0) end)
local outer = task.spawn({name = "outer"}, function() return await(inner()) end)
local top = task.spawn({name = "top"}, function() return await(outer) end)
ok, e = pcall(await, top)
tb = task.traceback(e)
print(ok, e, has(tb, "in task #"), has(tb, "in task 'outer'"), has(tb, "in task 'top'"))
-- and through task.all
local leaf = task.spawn({name = "leaf"}, function() error("leaf failure", 0) end)
local joiner = task.spawn({name = "joiner"}, function() return task.all({leaf}) end)
ok, e = pcall(joiner.wait, joiner)
tb = task.traceback(e)
print(ok, e, has(tb, "in task 'leaf'"), has(tb, "in task 'joiner'"))
-- moonbridge's own errors carry their hops in the table
local bridged = task.spawn({name = "bridged"}, function() return t.fail("no route") end)
local relay = task.spawn({name = "relay"}, function() return bridged:wait() end)
ok, e = pcall(relay.wait, relay)
print(ok, e.kind, e.op, e.message, has(e.traceback, "in task 'bridged'"), has(e.traceback, "in task 'relay'"),
  task.traceback(e) == e.traceback)
-- each waiter's error shows the hops it crossed, and only those
local root = task.spawn({name = "root"}, function() task.sleep(0.001); error("shared failure", 0) end)
local w1 = task.spawn({name = "w1"}, function() return root:wait() end)
local w2 = task.spawn({name = "w2"}, function() return root:wait() end)
local via2 = task.spawn({name = "via2"}, function() return w2:wait() end)
ok, e = pcall(via2.wait, via2)
tb = task.traceback(e)
print(e, has(tb, "in task 'root'"), has(tb, "in task 'w2'"), has(tb, "in task 'w1'"))
local ok1, e1 = pcall(w1.wait, w1)
tb = task.traceback(e1)
print(e1, has(tb, "in task 'w1'"), has(tb, "in task 'w2'"), has(tb, "in task 'via2'"))
local okr, er = pcall(root.wait, root)
tb = task.traceback(er)
print(er, has(tb, "in task 'root'"), has(tb, "in task 'w1'"), has(tb, "in task 'via2'"))
