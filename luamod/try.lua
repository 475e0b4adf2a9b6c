-- try.lua — try(fn, catch[, finally]), also the global `try`.
--
--   local v = try(function() return risky() end,
--                 function(err) return fallback(err) end,
--                 function() cleanup() end)
--
-- Layer: Lua module. fn runs protected. If it raises, catch(err) runs and
-- its results are try's (a nil catch re-raises the error after finally).
-- finally() runs last in every case, even when catch raises; an error in
-- finally replaces whatever was under way. Each may await. A task's own
-- cancellation caught here is raised again at its next suspension point
-- (moonbridge's pcall sees to that), so try cannot swallow it for good.

local pack, unpack = table.pack, table.unpack

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
  local r = pack(pcall(fn))
  if not r[1] and catch ~= nil then r = pack(pcall(catch, r[2])) end
  if finally ~= nil then finally() end
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

return try
