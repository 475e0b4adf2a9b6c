---@meta promise
-- LuaLS annotations for moonbridge's promise module and the globals async
-- and await (implemented in the C core).

---@class Promise
local Promise = {}

---@param onFulfilled fun(...): ...?
---@param onRejected fun(err: any): ...?
---@return Promise
function Promise:andThen(onFulfilled, onRejected) end

---@param fn fun(err: any): ...
---@return Promise
function Promise:catch(fn) end

---@param fn fun()
---@return Promise
function Promise:finally(fn) end

---Suspend until settled; return the values or raise the rejection.
---@return any ...
function Promise:await() end

---@return "pending"|"fulfilled"|"rejected"|"cancelled"
function Promise:status() end

---@return boolean
function Promise:cancel() end

---@class promisemodule
local promise = {}

---@param executor fun(resolve: fun(...), reject: fun(err: any))
---@return Promise
function promise.new(executor) end

---@return Promise
function promise.resolve(...) end

---@return Promise
function promise.reject(err) end

---@param list any[]
---@return Promise
function promise.all(list) end

---@param list any[]
---@return Promise
function promise.race(list) end

---@param list any[]
---@return Promise
function promise.any(list) end

---@param list any[]
---@return Promise
function promise.allSettled(list) end

---A function that runs fn as a task and returns its Promise.
---@param fn fun(...): ...
---@return fun(...): Promise
function async(fn) end

---Wait for a Task, Promise, Channel (a receive) or timer; raise on failure.
---@return any ...
function await(x) end

---@param fn fun(): ...
---@param catch fun(err: any): ...?
---@param finally fun()?
---@return any ...
function try(fn, catch, finally) end

---@return Task
function setTimeout(fn, ms, ...) end
---@return Task
function setInterval(fn, ms, ...) end
function clearTimeout(id) end
function clearInterval(id) end

return promise
