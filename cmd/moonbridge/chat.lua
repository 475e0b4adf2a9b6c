-- moonbridge chat: one turn of the conversation per call from Go, which
-- reads the user's lines (and Ctrl-C, which cancels the turn's task).
local llm = require("llm")

local history = {}

-- chat_turn streams the reply to line, and keeps both in the history only
-- once the reply is complete: a cancelled turn leaves no trace.
function chat_turn(line)
  local msgs = table.move(history, 1, #history, 1, {})
  msgs[#msgs + 1] = {role = "user", content = line}
  local parts = {}
  for chunk in llm.stream(msgs) do
    io.write(chunk.content)
    parts[#parts + 1] = chunk.content
  end
  io.write("\n")
  local reply = table.concat(parts)
  history[#history + 1] = msgs[#msgs]
  history[#history + 1] = {role = "assistant", content = reply}
  return reply
end

function chat_reset()
  history = {}
end
