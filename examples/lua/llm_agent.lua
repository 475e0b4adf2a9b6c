-- An agent: the model is offered tools; chat calls the ones it asks for
-- (the calls of one step run concurrently, as tasks) and sends the results
-- back until the model answers. A tool may be Lua, as here, or a Go
-- bridge function. Run it with: moonbridge run examples/lua/llm_agent.lua
local llm = require("llm")
local task = require("task")

local stations = {Oslo = {temp = 4, sky = "snow"}, Lisbon = {temp = 19, sky = "sun"}}

local tools = {
  {name = "get_weather", description = "Current weather for a city",
   parameters = {type = "object", properties = {city = {type = "string"}}, required = {"city"}},
   fn = function(args)
     task.sleep(0.01) -- a slow service
     local s = stations[args.city]
     if not s then error("no station in " .. tostring(args.city), 0) end
     return {city = args.city, temp = s.temp, sky = s.sky}
   end},
  {name = "convert_temperature", description = "Convert a temperature from Celsius to Fahrenheit",
   parameters = {type = "object", properties = {celsius = {type = "number"}}, required = {"celsius"}},
   fn = function(args) return args.celsius * 9 / 5 + 32 end},
}

local reply, info = llm.chat({{role = "user", content = "What is the weather in Lisbon today?"}}, {tools = tools})
print(reply)
print("steps: " .. info.steps)
for _, call in ipairs(info.tool_calls) do
  print(string.format("called %s(city=%s): %s", call.name, call.arguments.city,
    call.error or string.format("%d degrees, %s", call.result.temp, call.result.sky)))
end

-- A tool that fails sends its error to the model, which may recover.
reply, info = llm.chat({{role = "user", content = "And the weather in Atlantis?"}}, {tools = tools})
print(reply)

-- The transcript continues the conversation.
info.messages[#info.messages + 1] = {role = "user", content = "Thanks!"}
print(#info.messages .. " messages so far")
