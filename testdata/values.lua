-- Values cross both ways intact.
local t = require("t")
local s = "bin\0ary\255"
local r = t.echo(s)
print(#r, r == s)
print(math.type(t.echo(3)), math.type(t.echo(3.0)), t.echo(math.maxinteger) == math.maxinteger)
local nested = t.echo({list = {1, 2, {3, 4}}, map = {a = "x", b = {c = true}}})
print(nested.list[3][2], nested.map.b.c, #nested.list)
print(t.echo(0/0) ~= t.echo(0/0), t.echo(1/0), t.echo(-0.0))
local n = 0
for _ in pairs(t.echo({})) do n = n + 1 end
print("empty", n)
local st = t.person()
print(st.name, st.age, st.tags[2], st.Hidden)
local cyc = {}
cyc.self = cyc
local ok, err = pcall(t.echo, cyc)
print(ok, err.message)
ok, err = pcall(t.echo, {1, 2, nil, 4})
print(ok)
ok, err = pcall(t.echo, {1, x = 2})
print(ok, err.message)
