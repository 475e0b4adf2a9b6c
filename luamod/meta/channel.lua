---@meta channel
-- LuaLS annotations for moonbridge's channel module (implemented in the C core).

---@class Channel
local Channel = {}

---Suspends while full. nil cannot be sent.
---@return true|nil ok, "closed"? err
function Channel:send(v) end

---Suspends while empty; ok is false once closed and drained.
---@return any v, boolean ok
function Channel:recv() end

---@return boolean ok, ("full"|"closed")? why
function Channel:try_send(v) end

---@return any v, boolean ok, ("empty"|"closed")? why
function Channel:try_recv() end

---Queued values stay receivable.
function Channel:close() end

---@return integer
function Channel:len() end

---@return integer
function Channel:cap() end

---@return boolean
function Channel:closed() end

---for v in ch:iter() do ... end, until closed and drained.
---@return fun(): any
function Channel:iter() end

---@class channelmodule
local channel = {}

---@param capacity integer? 0 (the default): an unbuffered rendezvous
---@return Channel
function channel.new(capacity) end

---Cases {ch, "recv"}, {ch, "send", v} and "default"; fair among ready cases.
---@param cases any[]
---@return integer index, any ...
function channel.select(cases) end

return channel
