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

---Cancel the task: an error of kind "cancelled" is raised where it is
---suspended. False when it had already finished. A task that finishes
---without reaching another suspension point ends normally.
---@param reason any?
---@return boolean
function Task:cancel(reason) end

---Fire and forget: the run does not wait for it.
---@return Task
function Task:detach() end

---@class Group
local Group = {}

---@param fn fun(...): ...
---@return Task
function Group:spawn(fn, ...) end

---Wait for every child; raise the first failure (which cancelled the rest).
function Group:wait() end

---@class taskmodule
local task = {}

---Run fn(...) concurrently; it starts on the scheduler's next turn, in spawn order.
---An options table {name=, priority=1..100} may come first.
---@param fn fun(...): ...|{name: string?, priority: integer?}
---@return Task
function task.spawn(fn, ...) end

---Each entry (function, Task or Promise) to a table of its results ({n=});
---the first error cancels the rest and is raised.
---@param list any[]
---@return table[]
function task.all(list) end

---The first entry to finish wins: its index and results; the others are cancelled.
---@param list any[]
---@return integer, any ...
function task.race(list) end

---The first awaitable ready: its index and results; the others keep running.
---@param list any[]
---@return integer, any ...
function task.select(list) end

---fn(...) within the time, or an error of kind "timeout" (fn is cancelled).
---@param seconds number
---@param fn fun(...): ...
---@return any ...
function task.timeout(seconds, fn, ...) end

---@return Group
function task.group() end

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
