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

print("-- a Lua error that ends a task becomes an error table")
local failing = task.spawn({name = "worker"}, function() error("plain string", 0) end)
ok, e = pcall(failing.wait, failing)
print(ok, type(e), e.kind, e.op, e.message, e.cause)
print(tostring(e), has(e.traceback, "in task 'worker'"))
local tbl = {code = 42}
local with_table = task.spawn(function() error(tbl) end)
ok, e = pcall(with_table.wait, with_table)
print(ok, e.kind, e.cause == tbl, e.cause.code, e.message)
local with_tostring = task.spawn(function()
  error(setmetatable({}, {__tostring = function() return "custom text" end}))
end)
ok, e = pcall(with_tostring.wait, with_tostring)
print(ok, e.kind, e.message, tostring(e))

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
print(ok, e.kind, e.message, e.cause)
local ca, cb, cc = e.traceback:find("in task 'A'", 1, true), e.traceback:find("in task 'B'", 1, true),
  e.traceback:find("in task 'C'", 1, true)
print(ca ~= nil, cb ~= nil, cc ~= nil)
print(cc ~= nil and cb ~= nil and ca ~= nil and cc < cb and cb < ca)
-- the same through await and promises
local inner = async(function() task.sleep(0.001); error("promise failure", 0) end)
local outer = task.spawn({name = "outer"}, function() return await(inner()) end)
local top = task.spawn({name = "top"}, function() return await(outer) end)
ok, e = pcall(await, top)
print(ok, e.kind, e.message, has(e.traceback, "in task 'outer'"), has(e.traceback, "in task 'top'"))
-- and through task.all
local leaf = task.spawn({name = "leaf"}, function() error("leaf failure", 0) end)
local joiner = task.spawn({name = "joiner"}, function() return task.all({leaf}) end)
ok, e = pcall(joiner.wait, joiner)
print(ok, e.message, has(e.traceback, "in task 'leaf'"), has(e.traceback, "in task 'joiner'"))
-- each waiter's error shows the hops it crossed, and only those
local root = task.spawn({name = "root"}, function() task.sleep(0.001); error("shared failure", 0) end)
local w1 = task.spawn({name = "w1"}, function() return root:wait() end)
local w2 = task.spawn({name = "w2"}, function() return root:wait() end)
local via2 = task.spawn({name = "via2"}, function() return w2:wait() end)
ok, e = pcall(via2.wait, via2)
print(e.message, has(e.traceback, "in task 'root'"), has(e.traceback, "in task 'w2'"), has(e.traceback, "in task 'w1'"))
local ok1, e1 = pcall(w1.wait, w1)
print(e1.message, has(e1.traceback, "in task 'w1'"), has(e1.traceback, "in task 'w2'"), has(e1.traceback, "in task 'via2'"))
local okr, er = pcall(root.wait, root)
print(er.message, has(er.traceback, "in task 'root'"), has(er.traceback, "in task 'w1'"), has(er.traceback, "in task 'via2'"))
