-- Many values through every path that moves them between stacks: far
-- more than a C function's LUA_MINSTACK, so each path must make room
-- before it pushes. `make asan` runs this against a Lua built with
-- AddressSanitizer and its API checks, where a missing lua_checkstack
-- aborts instead of writing past a frame unnoticed.
local task = require("task")
local promise = require("promise")
local channel = require("channel")
local json = require("json")
local t = require("t")

local N = 300
local many = {}
for i = 1, N do many[i] = i end
local function values() return table.unpack(many) end
-- How many values came, and the last one.
local function count(...) return select("#", ...), (select(select("#", ...), ...)) end

print("-- promises")
print("resolve", count(promise.resolve(values()):await()))
print("new", count(promise.new(function(resolve) resolve(values()) end):await()))
print("andThen in", count(promise.resolve(values()):andThen(count):await()))
print("andThen out", count(promise.resolve(1):andThen(values):await()))
print("catch out", count(promise.reject("x"):catch(values):await()))
print("finally", count(promise.resolve(values()):finally(values):await()))
print("await()", count(await(promise.resolve(values()))))
local settled = promise.allSettled({promise.resolve(values())}):await()
print("allSettled", settled[1].status, settled[1].value)

print("-- tasks")
print("spawn and wait", count(task.spawn(values):wait()))
print("await a task", count(await(task.spawn(values))))
print("spawn arguments", task.spawn(count, values()):wait())
local done = channel.new()
task.spawn(function(...) done:send(select("#", ...)) end, values())
print("detached arguments", done:recv())
local g = task.group()
local gt = g:spawn(values)
g:wait()
print("group", count(gt:wait()))
print("timer", count(await(setTimeout(values, 1))))

print("-- coroutines inside a task")
local co = coroutine.wrap(function(...)
  local n = select("#", ...)
  local back = table.pack(coroutine.yield(values()))
  return n, back.n
end)
print("yield out", count(co(values())))
print("resume in", co(values()))
local co2 = coroutine.create(function() task.sleep(0.001); return values() end)
print("a task's sleep in a coroutine", count(select(2, coroutine.resume(co2))))

print("-- Go calls")
print("echo", count(t.echo(values())))
print("echo in a task", count(task.spawn(function() return t.echo(values()) end):wait()))

print("-- errors raised over a full frame")
local function deep(n, ...)
  if n == 0 then return pcall(json.encode, setmetatable({}, {__index = ...})) end
  return deep(n - 1, ...)
end
local cyc = {}
local cur = cyc
for _ = 1, 200 do cur.next = {}; cur = cur.next end
cur.next = cyc
local ok, err = (function(...) return pcall(json.encode, cyc) end)(values())
print("json cycle", ok, type(err) == "table" and err.kind, #tostring(err) > 0)
print("json after values", deep(3, values()))
ok, err = pcall(function(...) error({n = select("#", ...)}) end, values())
print("error with values on the stack", ok, err.n)
print("spawn from a full frame", (function(...) return task.spawn(count, ...):wait() end)(values()))
