-- Structured output: a JSON Schema as a Lua table; the reply comes back
-- as a Lua value that matches it (validated; a reply that does not match
-- is sent back to the model once with what was wrong).
-- Run it with: moonbridge run examples/lua/llm_extract.lua
local llm = require("llm")

local trip_schema = {
  type = "object",
  properties = {
    traveller = {type = "string"},
    from = {type = "string"},
    to = {type = "string"},
    bags = {type = "integer", minimum = 0},
    class = {enum = {"economy", "business"}},
  },
  required = {"traveller", "from", "to", "bags"},
}

local notes = {
  "Extract the trip: Ada flies from Lisbon to Oslo with 2 bags in business",
  "Extract the trip: Grace goes from Paris to Rome with 1 bag",
}
for _, note in ipairs(notes) do
  local trip = llm.generate(note, {schema = trip_schema})
  print(string.format("%s: %s -> %s, %d bag(s), %s", trip.traveller, trip.from, trip.to, trip.bags, trip.class))
end
local u = llm.usage()
print(string.format("%d requests, %d tokens", u.requests, u.total_tokens))
