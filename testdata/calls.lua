-- Bridge calls read like plain calls: from the main chunk, tasks, pcall, xpcall.
local task = require("task")
local t = require("t")

print(t.echo("hello", 42, 1.5, true, nil))
print(t.add(2, 3), t.inc(41))

-- from tasks, concurrently: results in spawn order
local ts = {}
for i = 1, 5 do ts[i] = task.spawn(function(n) return t.sleep_echo(0.01 * (6 - n), n) end, i) end
local got = {}
for i = 1, 5 do got[#got + 1] = ts[i]:wait() end
print(table.concat(got, " "))

-- inside pcall and xpcall
print(pcall(t.add, 1, 2))
print(xpcall(t.add, debug.traceback, 10, 20))

-- Go errors are Lua errors with kind "bridge"
local ok, err = pcall(t.fail, "no such key")
print(ok, err.kind, err.op, err.message)
print(tostring(err))

-- Go panics too, and the runtime keeps going
ok, err = pcall(t.panic, "boom")
print(ok, err.kind, err.message)
print(t.add(1, 1))

-- a bad argument type is named
ok, err = pcall(t.add, "x", 1)
print(ok, err.message)

-- values that cannot cross are named
ok, err = pcall(t.echo, {f = print})
print(ok, err.message)

-- many concurrent calls from many tasks
local sum = 0
local workers = {}
for i = 1, 200 do
  workers[i] = task.spawn(function() local v = t.add(i, 0); sum = sum + v end)
end
for _, w in ipairs(workers) do w:wait() end
print("sum", sum)

-- task status and current
local s = task.spawn(function() return task.current():status() end)
print(s:status(), s:wait(), s:status(), s:done())
