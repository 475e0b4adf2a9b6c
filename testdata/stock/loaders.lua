-- load, loadfile and dofile as stock Lua 5.4 has them: compared with lua5.4
-- by TestStockLua. moonbridge replaces them with versions that fix Lua
-- 5.4.4's 'break' bug in what they load (core/lbug.c); names, chunk names,
-- env, modes, readers and every error must stay as they were.

print("-- load of a string")
print(load("return 1 + 1")())
print(load("return ...", "=args")(1, 2, 3))
print(load("syntax error here"))
print(load("x = ", "=named"))
print(load("x = ", "@named.lua"))
print(load("return 1 +", "chunk name"))
print(pcall(load("error('boom')", "=boom")))
print(pcall(load("error('boom')", "@boom.lua")))
print(pcall(load("error('boom')")))
print(pcall(load("\n\nlocal t = nil; return t.x")))
print(load(123))
print(load(12)) -- a number is its text
print(pcall(load))
print(pcall(load, nil))
print(pcall(load, {}))
print(pcall(load, "return 1", {}))
print(pcall(load, "return 1", nil, {}))
print(pcall(function() local ld = load; local f = ld({}); return f end))
print(load("return 1", "=m", "b"))
print(load("return 1", "=m", "x"))
print(load(string.dump(function() return 7 end), "=d", "t"))
print(load(string.dump(function() return 7 end))())
print(load(string.dump(function() return 7 end), "=d", "b")())
print(load("\27Lua garbage"))

print("-- env")
local env = {y = 5}
print(load("return y", "=e", "t", env)())
print(load("y = 6; return y", "=e", "t", env)(), env.y)
print(pcall(load("return y", "=e", "t", nil)))
print(load("local a = 1 return a", "=noenv", "t", env)())
local up = 10
local bin = string.dump(function() return up end)
print(pcall(load(bin, "=bin", "b", 42)))
print(type(select(2, pcall(load(bin, "=bin", "b")))))
print(select("#", load("return 1", "=n", "t", nil)))

print("-- load with a reader")
local parts = {"return ", "1 ", "+ 41"}
local i = 0
print(load(function() i = i + 1 return parts[i] end)())
i = 0
print(load(function() i = i + 1 return parts[i] end, "=reader")())
i = 0
print(pcall(load(function() i = i + 1 return ({"error(", "'x')"})[i] end)))
print(type(load(function() return nil end)))
print(pcall(load, function() return {} end)) -- pcall: no message handler
local once = 1
print(load(function() local r = once; once = nil; return r end)) -- a number is a string
print(pcall(load, function() error("in reader") end)) -- pcall: no message handler
local ok2, f2, e2 = pcall(load, function() error({}) end)
print(ok2, f2, type(e2))
print(pcall(load, function() error() end)) -- pcall: no message handler
local n = 0
print(load(function() n = n + 1; if n == 1 then return "return 'a'" end return "" end)())
i = 0
print(load(function() i = i + 1 return ({"x =", " "})[i] end, "=partial"))

print("-- loadfile and dofile")
print(loadfile("/nonexistent/file.lua"))
print(pcall(dofile, "/nonexistent/file.lua"))
print(pcall(loadfile, {}))
print(pcall(dofile, {}))
print(pcall(loadfile, "/nonexistent/file.lua", {}))
local name = os.tmpname()
local function clean(s) return (tostring(s):gsub(name:gsub("%p", "%%%0"), "FILE")) end
local fh = io.open(name, "w")
fh:write("#!/usr/bin/lua\nlocal a = ... return (a or 0) + (z or 1)\n")
fh:close()
print(loadfile(name)(1))
print(loadfile(name, "t", {z = 5})())
print(loadfile(name, "t", {z = 5}, "extra")())
local f, e = loadfile(name, "b")
print(f, clean(e))
print(dofile(name))
fh = io.open(name, "w")
fh:write("local x = 1\nerror('in file')")
fh:close()
local ok
ok, e = pcall(dofile, name)
print(ok, clean(e))
f, e = loadfile(name)
ok, e = pcall(f)
print(ok, clean(e))
fh = io.open(name, "w")
fh:write("return +")
fh:close()
f, e = loadfile(name)
print(f, clean(e))
ok, e = pcall(dofile, name)
print(ok, clean(e))
fh = io.open(name, "wb")
fh:write(string.dump(function(...) return "binary", select("#", ...) end))
fh:close()
print(loadfile(name)(1, 2))
print(dofile(name))
f, e = loadfile(name, "t")
print(f, clean(e))
os.remove(name)
