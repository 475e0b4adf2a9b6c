-- pipeline.lua — staged, concurrent processing of a stream of items.
--
--   local pipeline = require("pipeline")
--   local p = pipeline.new({
--     {name = "fetch", fn = fetch, parallel = 8},
--     {name = "parse", fn = parse},
--     {name = "keep",  fn = function(doc) if doc.ok then return doc end end},
--   })
--   for doc in p:run(urls) do print(doc.title) end
--   local docs = p:collect(urls)
--
-- Each stage runs `parallel` worker tasks that call fn(item). Stages are
-- connected by bounded channels, so a slow stage holds the ones before it
-- back (backpressure) and the source is read only as fast as the pipeline
-- drains: the source is never read more than a few items ahead (at most
-- about the sum of the stages' parallel + buffer, plus the reordering window
-- of ordered parallel stages).
--
-- Semantics:
-- * fn's first result is the stage's output; nil drops the item, so a stage
--   can filter. false is a value and is passed on.
-- * ordered (the default) keeps each stage's outputs in the order its inputs
--   arrived, even with parallel workers: with every stage ordered, the
--   pipeline's output follows the source's order. Results that finish early
--   wait in a small reordering window (2 x parallel items per stage); a
--   stage's workers pause while the window is full. ordered = false passes
--   results on as soon as they are ready. It is set for every stage with
--   pipeline.new(stages, {ordered = false}) or per stage ({ordered = false}
--   in the stage table, which wins).
-- * buffer is the capacity of the channel carrying the stage's results to
--   the next stage (for the last stage: to the reader of run's iterator).
--   The source feeds the first stage through an unbuffered channel.
-- * The first error in a stage (or in the source) stops the pipeline: every
--   task it started is cancelled and has finished unwinding before the error
--   is raised by run's iterator (or collect). The error is a moonbridge
--   error: kind = the original's kind (or "runtime"), op = the stage's name
--   ("source" for an error reading the source), item = the item being
--   processed, message = "<stage>: <original message>", cause = the
--   original error.
-- * Leaving a `for ... in p:run(src)` loop early (break, return, error)
--   cancels every task of the pipeline and waits for them to unwind: run
--   returns a to-be-closed value as the for loop's fourth value. Calling the
--   iterator by hand without a for loop and abandoning it leaves the tasks
--   blocked: drain it, or close the fourth value.
-- * A pipeline object is reusable: every run starts fresh tasks and channels.

local task = require("task")
local channel = require("channel")
local errors = require("moonbridge.errors")

local traceback = debug and debug.traceback
local mtype = math.type

---One stage of a pipeline.
---@class PipelineStage
---@field name string? the stage's name, used in errors and task names (default "stage<i>")
---@field fn fun(item: any): any? called once per item; its first result goes to the next stage, nil drops the item
---@field parallel integer? number of worker tasks (default 1)
---@field buffer integer? capacity of the channel carrying this stage's results onwards (default = parallel)
---@field ordered boolean? keep this stage's outputs in input order (default: the pipeline's `ordered`)

---@class PipelineOptions
---@field ordered boolean? default for every stage (default true)

---@class Pipeline
---@field stages PipelineStage[] the normalized stages (read-only)
local Pipeline = {}
Pipeline.__index = Pipeline

---@class pipelinemodule
local pipeline = {}

-- ---------------------------------------------------------------------------
-- Construction and argument checks

local function count(v, what, i, min)
  if v == nil then return nil end
  if mtype(v) == "float" and v == math.floor(v) then v = math.tointeger(v) end
  if mtype(v) ~= "integer" or v < min then
    error(string.format("pipeline.new: stage %d: %s must be an integer >= %d (got %s)",
      i, what, min, tostring(v)), 3)
  end
  return v
end

---Build a pipeline from a list of stages.
---@param stages PipelineStage[]
---@param opts PipelineOptions?
---@return Pipeline
function pipeline.new(stages, opts)
  if type(stages) ~= "table" or #stages == 0 then
    error("bad argument #1 to 'new' (non-empty list of stages expected, got "
      .. (type(stages) == "table" and "an empty table" or type(stages)) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'new' (table or nil expected, got " .. type(opts) .. ")", 2)
  end
  local default_ordered = true
  if opts ~= nil and opts.ordered ~= nil then default_ordered = opts.ordered and true or false end
  local list = {}
  for i, st in ipairs(stages) do
    if type(st) ~= "table" then
      error(string.format("pipeline.new: stage %d: table expected, got %s", i, type(st)), 2)
    end
    if type(st.fn) ~= "function" then
      error(string.format("pipeline.new: stage %d: fn must be a function (got %s)", i, type(st.fn)), 2)
    end
    local name = st.name
    if name == nil then name = "stage" .. i end
    if type(name) ~= "string" then
      error(string.format("pipeline.new: stage %d: name must be a string (got %s)", i, type(name)), 2)
    end
    local parallel = count(st.parallel, "parallel", i, 1) or 1
    local buffer = count(st.buffer, "buffer", i, 0) or parallel
    local ordered = default_ordered
    if st.ordered ~= nil then ordered = st.ordered and true or false end
    list[i] = {name = name, fn = st.fn, parallel = parallel, buffer = buffer, ordered = ordered}
  end
  return setmetatable({stages = list}, Pipeline)
end

-- ---------------------------------------------------------------------------
-- A run: its tasks, its output channel, how it stops.

---@class PipelineRun
---@field tasks Task[]
---@field out Channel
---@field stopped boolean
---@field finished boolean
---@field err any
local Run = {}
Run.__index = Run

-- Stop the run: remember the error (the first one wins), cancel every task
-- but the caller's own (self_index), and wake the reader.
function Run:stop(err, self_index)
  if self.stopped then return end
  self.stopped = true
  self.err = err
  for i, t in ipairs(self.tasks) do
    if i ~= self_index then t:cancel() end
  end
  if not self.out:closed() then self.out:close() end
end

-- Wait until every task of the run has ended (their errors are the run's
-- own business: the first one is in self.err).
function Run:join()
  for _, t in ipairs(self.tasks) do pcall(t.wait, t) end
end

-- End the run from the reader's side: wait for the tasks, raise the error.
function Run:finish()
  if self.finished then return end
  self.finished = true
  self:join()
  if self.err ~= nil then error(self.err, 0) end
end

Run.__close = function(self)
  if self.finished then return end
  self.finished = true
  self:stop(nil)
  self:join()
end

function Run:spawn(name, fn, ...)
  local i = #self.tasks + 1
  self.tasks[i] = task.spawn({name = name}, fn, self, i, ...)
end

local function is_cancel(e)
  return type(e) == "table" and e.kind == "cancelled"
end

local function wrap_error(op, item, e, tb)
  local kind, msg = "runtime", nil
  if type(e) == "table" then
    if type(e.kind) == "string" then kind = e.kind end
    if type(e.message) == "string" then msg = e.message end
  end
  if msg == nil then
    local ok, s = pcall(tostring, e)
    msg = ok and type(s) == "string" and s or ("(error object is a " .. type(e) .. " value)")
  end
  return errors.new({message = op .. ": " .. msg, kind = kind, op = op, item = item,
                     cause = e, traceback = tb})
end

-- Call a stage's fn on one item. Returns true, result; or false when the
-- run is over (this task must end). A failure stops the run; a failure
-- while the run is already stopping is dropped, except a cancellation,
-- which is raised again so the task ends as cancelled.
local function call(run, st, self_index, item)
  local tb
  local ok, r = xpcall(st.fn, function(e)
    if traceback and not is_cancel(e) then
      tb = traceback("in pipeline stage '" .. st.name .. "'", 2)
    end
    return e
  end, item)
  if ok then return true, r end
  if run.stopped then
    if is_cancel(r) then error(r, 0) end
    return false
  end
  run:stop(wrap_error(st.name, item, r, tb), self_index)
  return false
end

-- ---------------------------------------------------------------------------
-- Task bodies. Each gets (run, self_index, ...).

-- The source: a list, or a generic-for iterator triple, fed into `out`.
local function feed(run, self_index, out, src, state, ctl, closing)
  local _ <close> = closing
  local ok, e = pcall(function()
    if type(src) == "table" then
      for _, v in ipairs(src) do
        if not out:send(v) then return end
      end
    else
      while true do
        local v = src(state, ctl)
        if v == nil then break end
        ctl = v
        if not out:send(v) then return end
      end
    end
  end)
  if not ok then
    if run.stopped then
      if is_cancel(e) then error(e, 0) end
      return
    end
    run:stop(wrap_error("source", nil, e, nil), self_index)
    return
  end
  out:close()
end

-- A worker of a stage that passes results on as they come (unordered, or a
-- single worker, which keeps the order by itself). The last worker to
-- finish closes the output channel.
local function worker(run, self_index, st, state, input, output)
  while true do
    local v, ok = input:recv()
    if not ok then break end
    local cont, r = call(run, st, self_index, v)
    if not cont then return end
    if r ~= nil then output:send(r) end
  end
  state.active = state.active - 1
  if state.active == 0 then output:close() end
end

-- Ordered parallel stage: the dispatcher numbers the items as it receives
-- them (one task, so the numbering is the input order) and hands them to the
-- workers; it takes a window token per item, so that at most `window` items
-- are between input and output.
local function dispatch(run, self_index, state, input)
  local seq = 0
  while true do
    state.window:send(true)
    local v, ok = input:recv()
    if not ok then break end
    seq = seq + 1
    state.work:send({seq, v})
  end
  state.work:close()
end

local function ordered_worker(run, self_index, st, state)
  local work, done = state.work, state.done
  while true do
    local job, ok = work:recv()
    if not ok then break end
    local cont, r = call(run, st, self_index, job[2])
    if not cont then return end
    job[2] = r
    done:send(job)
  end
  state.active = state.active - 1
  if state.active == 0 then done:close() end
end

-- Puts results back in input order, then returns the window token.
local function collect_in_order(run, self_index, state, output)
  local pending, nextseq = {}, 1
  local done, window = state.done, state.window
  while true do
    local job, ok = done:recv()
    if not ok then break end
    pending[job[1]] = job
    job = pending[nextseq]
    while job do
      pending[nextseq] = nil
      nextseq = nextseq + 1
      if job[2] ~= nil then output:send(job[2]) end
      window:recv()
      job = pending[nextseq]
    end
  end
  output:close()
end

-- ---------------------------------------------------------------------------
-- Running

local function is_channel(v)
  if type(v) ~= "userdata" then return false end
  local ok, recv = pcall(function() return v.recv end)
  return ok and recv ~= nil
end

---@param self Pipeline
local function start(self, fname, source, state, ctl, closing)
  local input
  local run = setmetatable({tasks = {}, stopped = false, finished = false}, Run)
  if is_channel(source) then
    input = source
  elseif type(source) == "table" or type(source) == "function" then
    input = channel.new(0)
  else
    error("bad argument #1 to '" .. fname .. "' (list, iterator function or Channel expected, got "
      .. type(source) .. ")", 3)
  end
  local n = #self.stages
  local outputs = {}
  for i, st in ipairs(self.stages) do outputs[i] = channel.new(st.buffer) end
  run.out = outputs[n]
  if input ~= source then
    run:spawn("pipeline source", feed, input, source, state, ctl, closing)
  end
  for i, st in ipairs(self.stages) do
    local output = outputs[i]
    local sstate = {active = st.parallel}
    if st.ordered and st.parallel > 1 then
      sstate.window = channel.new(2 * st.parallel)
      sstate.work = channel.new(0)
      sstate.done = channel.new(st.parallel)
      run:spawn(st.name .. " (dispatch)", dispatch, sstate, input)
      for w = 1, st.parallel do
        run:spawn(st.name .. "#" .. w, ordered_worker, st, sstate)
      end
      run:spawn(st.name .. " (order)", collect_in_order, sstate, output)
    else
      for w = 1, st.parallel do
        run:spawn(st.parallel > 1 and (st.name .. "#" .. w) or st.name, worker, st, sstate, input, output)
      end
    end
    input = output
  end
  return run
end

---Run the pipeline over `source` and iterate over its outputs:
---`for out in p:run(source) do ... end`.
---
---`source` is a list (read with ipairs), a Channel (received from until it
---is closed and drained; it is not closed by the pipeline) or an iterator
---function, called like a generic for calls it (`source(state, control)`)
---until it returns nil: `p:run(t.count(10))` works with a stream, whose
---closing value is closed when the source ends or the pipeline stops.
---
---The iterator raises the pipeline's error if a stage fails. The fourth
---value is to-be-closed: leaving the loop early cancels the pipeline.
---@param source table|function|Channel
---@param state any? generic-for state, for an iterator function
---@param control any? generic-for initial control value
---@param closing any? generic-for closing value, closed when the source is done
---@return fun(): any iterator
---@return nil
---@return nil
---@return PipelineRun closing
function Pipeline:run(source, state, control, closing)
  local run = start(self, "run", source, state, control, closing)
  local out = run.out
  local function iter()
    if run.finished then return nil end
    local v, ok = out:recv()
    if ok and not run.stopped then return v end
    run:finish()
    return nil
  end
  return iter, nil, nil, run
end

---Run the pipeline over `source` (as for `run`) and return every output in
---a list. Raises the pipeline's error if a stage fails.
---@param source table|function|Channel
---@param state any?
---@param control any?
---@param closing any?
---@return any[]
function Pipeline:collect(source, state, control, closing)
  local list, n = {}, 0
  local run = start(self, "collect", source, state, control, closing)
  local _ <close> = run
  local out = run.out
  while true do
    local v, ok = out:recv()
    if not ok or run.stopped then break end
    n = n + 1
    list[n] = v
  end
  run:finish()
  return list
end

return pipeline
