-- moonbridge.llm.lua — the Lua half of an LLM module registered with
-- Runtime.RegisterLLM. Go provides generate, stream and chat; this adds
-- generate_all, a bounded fan-out over generate built on task groups.
--
-- Not meant to be required by scripts: RegisterLLM calls
-- require("moonbridge.llm").extend(module, name) once per module.

local task = require("task")
local errors = require("moonbridge.errors")

local M = {}

-- Options generate_all passes on to each generate call.
local passed = {model = true, max_tokens = true, temperature = true, stop = true, seed = true}

local function fail(op, fmt, ...)
  error(errors.new({message = op .. ": " .. string.format(fmt, ...), kind = "bridge", op = op}))
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
      fail(op, "unknown option %q (options are concurrency, max_tokens, model, on_result, seed, stop, temperature)",
        tostring(k))
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

function M.extend(mod, name)
  local generate = mod.generate
  local op = name .. ".generate_all"

  -- generate_all(list, opts) -> texts in input order. At most
  -- opts.concurrency requests are in flight: that many workers take the
  -- next index in turn. The first error cancels the others and is raised.
  function mod.generate_all(list, opts)
    check_list(op, list)
    if opts ~= nil and type(opts) ~= "table" then
      fail(op, "bad argument #2 (options table expected, got %s)", type(opts))
    end
    local concurrency, on_result, rest = split_options(op, opts or {})
    local n, results, next_index = #list, {}, 0
    local g <close> = task.group()
    for _ = 1, math.min(concurrency, n) do
      g:spawn(function()
        while next_index < n do
          next_index = next_index + 1
          local i = next_index
          local text, info = generate(list[i], rest)
          results[i] = text
          if on_result then on_result(i, text, info) end
        end
      end)
    end
    g:wait()
    return results
  end
  return mod
end

return M
