-- try.lua — try(fn, catch[, finally]), also the global `try`.
--
--   local v = try(function() return risky() end,
--                 function(err) return fallback(err) end,
--                 function() cleanup() end)
--
-- Layer: Lua module. fn runs protected. If it raises, catch(err) runs and
-- its results are try's (a nil catch re-raises the error after finally).
-- finally() runs last in every case, even when catch raises; an error in
-- finally replaces whatever was under way. Each may await — even while the
-- task is being cancelled: the cancellation is held until finally is done,
-- then raised again (at once if catch re-raised it, otherwise at the task's
-- next suspension point), so try cannot swallow it for good.

local errors = require("moonbridge.errors")
local pack, unpack = table.pack, table.unpack
local rawpcall, swallowed = errors.rawpcall, errors.swallowed

local function try(fn, catch, finally)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'try' (function expected, got " .. type(fn) .. ")", 2)
  end
  if catch ~= nil and type(catch) ~= "function" then
    error("bad argument #2 to 'try' (function or nil expected, got " .. type(catch) .. ")", 2)
  end
  if finally ~= nil and type(finally) ~= "function" then
    error("bad argument #3 to 'try' (function or nil expected, got " .. type(finally) .. ")", 2)
  end
  local r = pack(rawpcall(fn))
  local caught = not r[1] and r[2] or nil
  if caught ~= nil and catch ~= nil then r = pack(rawpcall(catch, caught)) end
  if finally ~= nil then finally() end
  if not r[1] then error(r[2], 0) end
  if caught ~= nil then swallowed(caught) end
  return unpack(r, 2, r.n)
end

return try
