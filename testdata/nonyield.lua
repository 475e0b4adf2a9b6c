-- Where Lua cannot yield, a bridge call fails with a clear error naming the
-- function in the way, and the runtime keeps running.
local t = require("t")

local ok, err = pcall(table.sort, {3, 1, 2}, function(a, b) return t.add(a, 0) < b end)
print(ok, err.message)

ok, err = pcall(string.gsub, "abc", "%w", function(c) return t.echo(c) end)
print(ok, err.message)

-- inline functions never yield, so they work anywhere
local list = {3, 1, 2}
table.sort(list, function(a, b) return t.inc(a) < t.inc(b) end)
print(table.concat(list, ","))

-- a coroutine waiting inside a non-yieldable resumer gets the error inside
local gen = coroutine.wrap(function() return t.add(1, 2) end)
ok, err = pcall(table.sort, {1, 2}, function(a, b) gen(); return a < b end)
print(ok, tostring(err):match("attempt to yield across a C%-call boundary") ~= nil)
print(t.add(20, 22))
