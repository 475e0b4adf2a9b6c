---@meta task
-- LuaLS annotations for moonbridge's task module (implemented in the C
-- core). Put luamod/ on your language server's workspace.library.

---@class Task
local Task = {}

---Suspend until the task ends; return its results, or raise its error
---(with the task's traceback, then the waiter's).
---@return any ...
function Task:wait() end

---@return boolean
function Task:done() end

---@return "pending"|"running"|"suspended"|"done"|"failed"|"cancelled"
function Task:status() end

---@class taskmodule
local task = {}

---Run fn(...) concurrently; it starts on the scheduler's next turn, in spawn order.
---@param fn fun(...): ...
---@return Task
function task.spawn(fn, ...) end

---Let every other ready task run once.
function task.yield() end

---Suspend this task for the given number of seconds (floats allowed).
---@param seconds number
function task.sleep(seconds) end

---@return Task
function task.current() end

---@class MoonbridgeError
---@field message string
---@field kind "bridge"|"runtime"|"cancelled"|"timeout"|"closed"|"deadlock"|"limit"|"exit"
---@field op string?
---@field traceback string?
---@field cause any

return task
