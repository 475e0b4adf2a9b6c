-- Pipeline: draft a paragraph per topic, then summarise it. Each stage
-- runs several workers; the stages are joined by bounded channels, and
-- the output keeps the input's order.
-- Run it with: moonbridge run examples/lua/pipeline.lua
local pipeline = require("pipeline")
local llm = require("llm")

local p = pipeline.new({
  {name = "draft", parallel = 3, fn = function(topic)
    return {topic = topic, text = llm.generate("Write about " .. topic, {max_tokens = 30})}
  end},
  {name = "summarise", parallel = 2, fn = function(doc)
    doc.summary = llm.generate("Summarise: " .. doc.text, {max_tokens = 10})
    return doc
  end},
})

for doc in p:run({"bridges", "tides", "gardens", "event loops"}) do
  print(doc.topic .. ": " .. doc.summary)
end
