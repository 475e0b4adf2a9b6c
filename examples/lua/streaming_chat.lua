-- Streaming chat: a conversation kept as a list of messages; each reply is
-- streamed chunk by chunk with a generic for, then added to the history.
-- Run it with: moonbridge run examples/lua/streaming_chat.lua
local llm = require("llm")

local history = {{role = "system", content = "You are a patient guide."}}

local function ask(question)
  history[#history + 1] = {role = "user", content = question}
  io.write("> ", question, "\n")
  local parts = {}
  for chunk in llm.stream(history, {max_tokens = 24}) do
    io.write(chunk.content)
    parts[#parts + 1] = chunk.content
    if chunk.done then io.write("\n[", chunk.finish_reason, "]\n") end
  end
  history[#history + 1] = {role = "assistant", content = table.concat(parts)}
end

ask("Tell me about the tides")
ask("And the moon?")

-- Leaving the loop early cancels the request in Go.
for chunk in llm.stream("Describe the sea") do
  io.write(chunk.content, "|")
  break
end
print()
print(#history .. " messages in the history")
