---@meta json
-- LuaLS annotations for moonbridge's json module (implemented in the C
-- core). Put luamod/ on your language server's workspace.library.

---A value JSON text can hold: nil and json.null are null; integers stay
---integers, floats stay floats; a table is an array (marked, or keys 1..n)
---or an object (string keys).
---@alias JSONValue nil|boolean|integer|number|string|table|JSONNull

---decode's null. It encodes as null; tostring gives "json.null".
---@class JSONNull: userdata

---@class JSONEncodeOptions
---Pretty-print: true is two spaces; a number is that many spaces (0..16,
---0 being compact); a string of spaces and tabs (up to 16) is the unit.
---@field indent? boolean|integer|string
---Write each object's keys in byte order, so equal values give equal text.
---@field sort_keys? boolean

---@class jsonmodule
---decode's null; encodes as null.
---@field null JSONNull
local json = {}

---Encode a value as JSON text. Tables are read raw (no metamethod is
---called). Errors (kind "runtime", op "json.encode") name the path of
---the value, with Lua's 1-based indices, e.g.
---"json.encode: cannot encode a function at $.tools[2].fn": NaN and the
---infinities, functions, threads, userdata other than json.null, cycles,
---sparse arrays, tables mixing string and integer keys or with other
---keys, strings that are not valid UTF-8, nesting deeper than 1000.
---@param v JSONValue
---@param options? JSONEncodeOptions
---@return string
function json.encode(v, options) end

---Decode JSON text (the whole string: one value, whitespace around it).
---Integers that fit in an int64 are integers, other numbers floats;
---null is json.null; arrays come back marked (json.array), so they
---encode as arrays even when empty. Duplicate keys: the last wins.
---Errors (kind "runtime", op "json.decode") give the 1-based byte and
---what was expected, e.g. "json.decode: expected ',' or ']' but found
---'}' at byte 17". Beyond JSON's grammar it refuses nesting deeper than
---1000, lone surrogates in \u escapes, numbers longer than 1024 bytes and
---numbers too large for a float.
---@param s string
---@return JSONValue
function json.decode(s) end

---Mark t (or, without it, a new table) as an array, so it encodes as
---one even when empty. The mark is a protected metatable: getmetatable
---gives "json.array", setmetatable refuses to replace it, and a table
---that already has a metatable cannot be marked.
---@generic T: table
---@param t? T
---@return T
function json.array(t) end

return json
