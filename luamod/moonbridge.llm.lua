-- moonbridge.llm.lua — the Lua half of an LLM module registered with
-- llm.Register (Runtime.RegisterLLM). Go provides generate, stream, chat
-- and usage; this wraps them to raise errors of their proper kind (a Go
-- function can only raise "bridge" errors: limit and schema errors come
-- back as values), runs the agent loop of chat with tools, and adds
-- generate_all, a bounded fan-out over generate built on task groups.
--
-- Not meant to be required by scripts: a prelude run by the Runtime calls
-- require("moonbridge.llm").extend(module, name) once per module. The Go
-- functions end up as upvalues here, never on a table a script can reach.

local task = require("task")
local errors = require("moonbridge.errors")

local M = {}

-- Modules already extended, with their generate wrapper (weak: a Runtime
-- may drop one). Registering again puts fresh Go functions in the table:
-- then generate is no longer the wrapper, and the module is extended anew.
local extended = setmetatable({}, {__mode = "k"})

-- Options generate_all passes on to each generate call.
local passed = {model = true, max_tokens = true, temperature = true, stop = true, seed = true,
  tools = true, tool_choice = true, schema = true, schema_name = true}

local function fail(op, fmt, ...)
  error(errors.new({message = op .. ": " .. string.format(fmt, ...), kind = "bridge", op = op}))
end

-- results turns a Go function's answer into results, or raises the error
-- it carries: true, ... or false, fields.
local function results(ok, a, b)
  if not ok then error(errors.new(a)) end
  return a, b
end

-- Split generate_all's options into its own and generate's.
local function split_options(op, opts)
  local concurrency, on_result, rest = 4, nil, {}
  for k, v in pairs(opts) do
    if k == "concurrency" then
      local c = type(v) == "number" and math.tointeger(v)
      if not c or c < 1 then
        fail(op, "option 'concurrency' must be an integer >= 1, got %s", tostring(v))
      end
      concurrency = c
    elseif k == "on_result" then
      if type(v) ~= "function" then
        fail(op, "option 'on_result' must be a function, got %s", type(v))
      end
      on_result = v
    elseif passed[k] then
      rest[k] = v
    else
      fail(op, "unknown option %q (options are concurrency, max_tokens, model, on_result, schema, "
        .. "schema_name, seed, stop, temperature, tool_choice, tools)", tostring(k))
    end
  end
  return concurrency, on_result, rest
end

local function check_list(op, list)
  if type(list) ~= "table" then
    fail(op, "bad argument #1 (list of prompts expected, got %s)", type(list))
  end
  for i = 1, #list do
    local t = type(list[i])
    if t ~= "string" and t ~= "table" then
      fail(op, "item %d must be a prompt string or a list of messages, got %s", i, t)
    end
  end
end

-- chat_plan reads chat's tools: nil when chat is a single request (no
-- tools, or tools without fn), else the tools by name, the options to send
-- (tools without fn, no max_steps) and max_steps.
local function chat_plan(op, opts)
  if type(opts) ~= "table" then return nil, opts end
  local max_steps = opts.max_steps
  if max_steps ~= nil then
    local n = type(max_steps) == "number" and math.tointeger(max_steps)
    if not n or n < 1 then
      fail(op, "option 'max_steps' must be an integer >= 1, got %s", tostring(max_steps))
    end
    max_steps = n
  end
  local tools = opts.tools
  local with_fn, without = 0, nil
  if type(tools) == "table" then
    for i = 1, #tools do
      local t = tools[i]
      if type(t) == "table" and t.fn ~= nil then
        if type(t.fn) ~= "function" then
          fail(op, "option 'tools': tool %d field 'fn' must be a function, got %s", i, type(t.fn))
        end
        with_fn = with_fn + 1
      elseif without == nil then
        without = i
      end
    end
  end
  if with_fn > 0 and without ~= nil then
    fail(op, "option 'tools': tool %d has no fn: give every tool a fn (chat then runs them) "
      .. "or none (chat then returns the calls)", without)
  end
  if with_fn == 0 and max_steps == nil then return nil, opts end
  local send, by_name = {}, {}
  for k, v in pairs(opts) do
    if k ~= "max_steps" and k ~= "tools" then send[k] = v end
  end
  if with_fn > 0 then
    send.tools = {}
    for i = 1, #tools do
      local t = tools[i]
      send.tools[i] = {name = t.name, description = t.description, parameters = t.parameters}
      if type(t.name) == "string" then by_name[t.name] = t end
    end
  else
    send.tools = tools
  end
  if with_fn == 0 then return nil, send end
  return {tools = by_name, max_steps = max_steps or 8}, send
end

-- without_fn is opts with its tools' fn left out (a function cannot go to
-- Go): generate and stream offer the tools and return the calls.
local function without_fn(opts)
  if type(opts) ~= "table" or type(opts.tools) ~= "table" then return opts end
  local any = false
  for i = 1, #opts.tools do
    if type(opts.tools[i]) == "table" and opts.tools[i].fn ~= nil then any = true break end
  end
  if not any then return opts end
  local copy = {}
  for k, v in pairs(opts) do copy[k] = v end
  copy.tools = {}
  for i, t in ipairs(opts.tools) do
    if type(t) == "table" then
      copy.tools[i] = {name = t.name, description = t.description, parameters = t.parameters}
    else
      copy.tools[i] = t
    end
  end
  return copy
end

-- run_tool runs one call's fn as a task of the step's group. An error is
-- the tool's answer (the model may recover); a cancellation is not: it is
-- kept for the step to raise (the group's wait does not raise it).
local function run_tool(tool, call, out, i)
  local ok, r = pcall(tool.fn, call.arguments)
  if ok then
    out[i] = {result = r}
  elseif errors.is(r) and r.kind == "cancelled" then
    out[i] = {cancelled = r}
    error(r, 0)
  else
    out[i] = {error = tostring(r)}
  end
end

-- A tool's task that was cancelled (by itself, or by whoever holds its
-- Task) ends the chat with that cancellation, as a cancelled chat would;
-- one cancelled before it ran left no record.
local function raise_cancelled(op, call, r)
  if r ~= nil then error(r.cancelled, 0) end
  error(errors.new({kind = "cancelled", op = op,
    message = string.format("%s: the task of tool %q was cancelled", op, tostring(call.name))}), 0)
end

local function add_usage(sum, u)
  if u == nil then return end
  sum.prompt_tokens = sum.prompt_tokens + (u.prompt_tokens or 0)
  sum.completion_tokens = sum.completion_tokens + (u.completion_tokens or 0)
  sum.total_tokens = sum.total_tokens + (u.total_tokens or 0)
end

-- agent runs chat's loop: ask, run the calls of the reply concurrently,
-- answer each with a tool message, ask again, until a reply calls no tool.
-- The conversation is kept in Go between steps (the first step opens a
-- session, chat(messages, opts, true)); each later step sends only its
-- tool messages (chat(session, tool messages)). The transcript for info
-- is built here alike.
local function agent(raw_chat, op, messages, send, plan)
  if type(messages) ~= "table" then return results(raw_chat(messages, send)) end
  local transcript = table.move(messages, 1, #messages, 1, {})
  local calls_made, usage = {}, {prompt_tokens = 0, completion_tokens = 0, total_tokens = 0}
  local ok, reply, info, session = raw_chat(messages, send, true)
  for step = 1, plan.max_steps do
    reply, info = results(ok, reply, info)
    add_usage(usage, info.usage)
    local calls = info.tool_calls
    if calls == nil then
      transcript[#transcript + 1] = {role = "assistant", content = reply}
      info.steps, info.tool_calls, info.messages, info.usage = step, calls_made, transcript, usage
      return reply, info
    end
    transcript[#transcript + 1] = info.message
    if step == plan.max_steps then break end
    local out = {}
    do
      local g <close> = task.group()
      for i = 1, #calls do
        local tool = plan.tools[calls[i].name]
        if tool then
          g:spawn(run_tool, tool, calls[i], out, i)
        else
          out[i] = {error = string.format("there is no tool %q", tostring(calls[i].name))}
        end
      end
      g:wait()
    end
    local answers = {}
    for i = 1, #calls do
      if out[i] == nil or out[i].cancelled ~= nil then raise_cancelled(op, calls[i], out[i]) end
    end
    for i = 1, #calls do
      local c, r = calls[i], out[i]
      local rec = {id = c.id, name = c.name, arguments = c.arguments}
      local content
      if r.error ~= nil then
        rec.error, content = r.error, "error: " .. r.error
      else
        rec.result, content = r.result, r.result
        if content == nil then content = "null" end
      end
      calls_made[#calls_made + 1] = rec
      answers[i] = {role = "tool", tool_call_id = c.id, content = content}
      transcript[#transcript + 1] = answers[i]
    end
    ok, reply, info = raw_chat(session, answers)
  end
  error(errors.new({kind = "limit", op = "max_steps",
    message = string.format("%s: the model still called tools after %d steps (option max_steps)", op, plan.max_steps),
    messages = transcript, tool_calls = calls_made}))
end

function M.extend(mod, name)
  if extended[mod] ~= nil and extended[mod] == mod.generate then return mod end
  local raw_generate, raw_chat, raw_stream = mod.generate, mod.chat, mod.stream
  local chat_op = name .. ".chat"
  local all_op = name .. ".generate_all"

  function mod.generate(prompt, opts)
    return results(raw_generate(prompt, without_fn(opts)))
  end

  -- chat(messages, opts): with tools that all have fn, the agent loop;
  -- otherwise one request.
  function mod.chat(messages, opts)
    if type(messages) ~= "table" then
      fail(chat_op, "bad argument #1 (list of messages expected, got %s)", type(messages))
    end
    local plan, send = chat_plan(chat_op, opts)
    if plan == nil then return results(raw_chat(messages, send)) end
    return agent(raw_chat, chat_op, messages, send, plan)
  end

  -- stream(prompt, opts) -> the Go stream's iterator, checked for a last
  -- chunk that carries an error; the closing value is the Go stream's, so
  -- leaving the loop early still cancels the request.
  function mod.stream(prompt, opts)
    local next_chunk, state, control, closing = raw_stream(prompt, without_fn(opts))
    return function()
      local chunk = next_chunk()
      if chunk ~= nil and chunk.error ~= nil then error(errors.new(chunk.error)) end
      return chunk
    end, state, control, closing
  end

  local generate = mod.generate
  extended[mod] = generate

  -- generate_all(list, opts) -> texts in input order. At most
  -- opts.concurrency requests are in flight: that many workers take the
  -- next index in turn. The first error cancels the others and is raised.
  function mod.generate_all(list, opts)
    check_list(all_op, list)
    if opts ~= nil and type(opts) ~= "table" then
      fail(all_op, "bad argument #2 (options table expected, got %s)", type(opts))
    end
    local concurrency, on_result, rest = split_options(all_op, opts or {})
    local n, texts, next_index = #list, {}, 0
    local g <close> = task.group()
    for _ = 1, math.min(concurrency, n) do
      g:spawn(function()
        while next_index < n do
          next_index = next_index + 1
          local i = next_index
          local text, info = generate(list[i], rest)
          texts[i] = text
          if on_result then on_result(i, text, info) end
        end
      end)
    end
    g:wait()
    return texts
  end
  return mod
end

return M
