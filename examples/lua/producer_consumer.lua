-- Producer/consumer: a producer task writes prompts into a bounded channel;
-- two consumers take them as they come and ask the model. The channel's
-- capacity holds the producer back when the consumers are busy.
-- Run it with: moonbridge run examples/lua/producer_consumer.lua
local task = require("task")
local channel = require("channel")
local llm = require("llm")

local jobs = channel.new(2)
local results = channel.new()

task.spawn(function()
  for _, topic in ipairs({"the moon", "a harbour", "rivers", "lighthouses", "queues"}) do
    jobs:send("Write one line about " .. topic)
  end
  jobs:close() -- consumers leave their loops once it is drained
end)

local consumers = {}
for id = 1, 2 do
  consumers[id] = task.spawn(function()
    for prompt in jobs:iter() do
      local text = llm.generate(prompt, {max_tokens = 8})
      results:send({prompt = prompt, words = select(2, text:gsub("%S+", ""))})
    end
  end)
end

-- Close results once both consumers are done, so the loop below ends.
task.spawn(function()
  task.all(consumers)
  results:close()
end)

local total = 0
for r in results:iter() do total = total + 1 end
print(("%d prompts answered by 2 consumers"):format(total))
