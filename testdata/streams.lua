-- Streams: a generic for over a Go function's emitted values.
local t = require("t")
local task = require("task")

local n, sum = 0, 0
for v in t.count(1000) do n = n + 1; sum = sum + v end
print(n, sum)

-- tables as chunks
for c in t.chunks(3) do print(c.index, c.text) end

-- leaving early cancels the Go side
for v in t.count(1000000) do if v == 5 then break end end
print("cancelled:", t.last_stream_cancelled())

-- an error while the loop is running is raised by the for loop
local ok, err = pcall(function()
  for v in t.count_then_fail(3) do io.write(v, " ") end
end)
print()
print(ok, err.kind, err.message)

-- two streams read by two tasks at once
local a = task.spawn(function() local s = 0; for v in t.count(100) do s = s + v end; return s end)
local b = task.spawn(function() local s = 0; for v in t.count(200) do s = s + v end; return s end)
print(a:wait(), b:wait())

-- inside a coroutine
local gen = coroutine.wrap(function() for v in t.count(3) do coroutine.yield(v) end end)
print(gen(), gen(), gen())
