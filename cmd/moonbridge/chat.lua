-- moonbridge chat: one turn of the conversation per call from Go, which
-- reads the user's lines (and Ctrl-C, which cancels the turn's task). With
-- tools on (--tools: current_time and calculate), a reply that calls tools is answered here: the calls
-- are shown, run, and their results sent back, and the reply streams on.
local tools_on = ...
local llm = require("llm")

local history = {}

-- calculate evaluates arithmetic only: digits, operators, parentheses.
local function calculate(args)
  local expr = tostring(args.expression or "")
  if expr == "" or expr:find("[^%d%s%.%+%-%*/%%%^%(%)eE]") then
    error("not an arithmetic expression: " .. expr, 0)
  end
  local f = load("return " .. expr, "=expression", "t", {})
  local ok, v = pcall(f or error, "not an arithmetic expression: " .. expr)
  if not ok or type(v) ~= "number" then error("cannot calculate " .. expr, 0) end
  return v
end

local tools = {
  {name = "current_time", description = "The current date and time",
   fn = function() return os.date("%Y-%m-%d %H:%M") end},
  {name = "calculate", description = "Calculate an arithmetic expression",
   parameters = {type = "object", properties = {expression = {type = "string"}}, required = {"expression"}},
   fn = calculate},
}
local by_name, specs = {}, {}
for i, t in ipairs(tools) do
  by_name[t.name] = t
  specs[i] = {name = t.name, description = t.description, parameters = t.parameters}
end

-- show renders a call's arguments: a=1, b="x".
local function show(args)
  local keys = {}
  for k in pairs(args) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = string.format("%s=%q", k, tostring(args[k])) end
  return table.concat(keys, ", ")
end

-- answer runs the tool calls of a reply, showing each, and adds the
-- assistant message and the tool messages to msgs.
local function answer(msgs, reply, calls)
  local asked = {role = "assistant", content = reply, tool_calls = {}}
  msgs[#msgs + 1] = asked
  for i, c in ipairs(calls) do
    asked.tool_calls[i] = {id = c.id, name = c.name, arguments = c.arguments}
    local tool, ok, result = by_name[c.name], false, "there is no such tool"
    if tool then ok, result = pcall(tool.fn, c.arguments) end
    local content = ok and result or ("error: " .. tostring(result))
    print(string.format("[tool] %s(%s) -> %s", c.name, show(c.arguments), tostring(content)))
    msgs[#msgs + 1] = {role = "tool", tool_call_id = c.id, content = content}
  end
end

-- chat_turn streams the reply to line, and keeps the turn in the history
-- only once the reply is complete: a cancelled turn leaves no trace. A
-- failure after part of a line was written ends that line first, so the
-- error starts on a line of its own.
function chat_turn(line)
  local msgs = table.move(history, 1, #history, 1, {})
  msgs[#msgs + 1] = {role = "user", content = line}
  local opts = tools_on and {tools = specs} or nil
  local open = false -- a partial line is on the screen
  local ok, err = pcall(function()
    for _ = 1, 8 do
      local parts, calls, refused = {}, nil, {}
      for chunk in llm.stream(msgs, opts) do
        if chunk.content ~= "" then
          io.write(chunk.content)
          open = true
          parts[#parts + 1] = chunk.content
        end
        if chunk.refusal then refused[#refused + 1] = chunk.refusal end
        if chunk.done then calls = chunk.tool_calls end
      end
      local reply = table.concat(parts)
      if open then io.write("\n"); open = false end
      if #refused > 0 then print("[refused] " .. table.concat(refused)) end
      if calls == nil then
        msgs[#msgs + 1] = {role = "assistant", content = reply}
        history = msgs
        return
      end
      answer(msgs, reply, calls)
    end
    error("the model kept calling tools; giving up on this turn", 0)
  end)
  if not ok then
    if open and not (type(err) == "table" and err.kind == "cancelled") then io.write("\n") end
    error(err, 0)
  end
end

function chat_reset()
  history = {}
end
