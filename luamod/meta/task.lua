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

---What the task is doing: a snapshot. cpu counts from the first time the
---Runtime was inspected (task.list, t:info, Go's rt.Tasks).
---@return TaskInfo
function Task:info() end

---@class TaskInfo
---@field id integer its number in its run (the main chunk is 0)
---@field name string? task.spawn's name option (the main chunk: its chunk name)
---@field status "pending"|"running"|"suspended"|"done"|"failed"|"cancelled"
---@field waiting_for string? while suspended: "a channel receive", "a timer", "the Go call kv.get", ...
---@field where string? file:line it runs or waits at (started and not ended)
---@field created_at number when it was spawned, in Unix seconds
---@field age number seconds since then
---@field cpu number seconds spent running it
---@field resumes integer turns it was given

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

---The live tasks of every run, in spawn order; under Options.Sandbox only
---the calling run's.
---@return Task[]
function task.list() end

---The traceback an error crossed waits with (every hop), or nil.
---@param err any an error value, or a failed Task
---@return string?
function task.traceback(err) end

---@class MoonbridgeError
---@field message string
---@field kind "bridge"|"runtime"|"cancelled"|"timeout"|"closed"|"deadlock"|"limit"|"exit"
---@field op string?
---@field traceback string?
---@field cause any

return task
