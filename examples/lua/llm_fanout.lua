-- LLM fan-out: many prompts, a few requests in flight at a time, answers
-- back in input order; on_result reports progress as each one lands.
-- Run it with: moonbridge run examples/lua/llm_fanout.lua
local llm = require("llm")

local prompts = {}
for i, topic in ipairs({"stars", "boats", "rain", "clocks", "bridges", "owls", "maps", "bells"}) do
  prompts[i] = "Write a line about " .. topic
end

local landed = 0
local answers = llm.generate_all(prompts, {concurrency = 3, max_tokens = 6,
  on_result = function() landed = landed + 1 end})

assert(landed == #prompts)
for i, text in ipairs(answers) do
  print(i, text)
end
