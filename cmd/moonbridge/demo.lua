-- moonbridge demo: a Lua script driving an LLM (by default the embedded
-- generator) with tasks, streams, a pipeline, a timeout, an agent with
-- tools and structured output. Every bridge call below reads as a plain
-- function call; the waiting happens in Go. The Go side passes whether
-- stdout is a terminal (live progress lines only then) and registers
-- clock() and the tide_times tool.
local interactive = ...
local llm = require("llm")
local task = require("task")
local pipeline = require("pipeline")
local almanac = require("almanac")

local function since(t0)
  return string.format("%.2f s", clock() - t0)
end

local function clip(s, n)
  s = s:gsub("%s+", " ")
  if #s <= n then return s end
  return s:sub(1, n - 3):gsub("%s*%S*$", "") .. "..."
end

print("1. Fan-out: six questions, one after the other, then three in flight at a time")
local questions = {
  "Tell me about the moon", "Describe an old harbour at dawn", "What does a lighthouse keeper do",
  "Explain an event loop", "Write about a river in spring", "Describe a library at night",
}
local opts = {max_tokens = 24}
local t0 = clock()
for _, q in ipairs(questions) do llm.generate(q, opts) end
local sequential = clock() - t0
print(string.format("   one after the other: %.2f s", sequential))
t0 = clock()
local answered = 0
local answers = llm.generate_all(questions, {
  concurrency = 3, max_tokens = 24,
  on_result = function()
    answered = answered + 1
    if interactive then
      io.write(string.format("\r   [%-6s] %d/%d answered", string.rep("#", answered), answered, #questions))
    end
  end,
})
local concurrent = clock() - t0
if interactive then io.write("\r") end
print(string.format("   three at a time:     %.2f s  (%d/%d answered, %.1fx faster)",
  concurrent, answered, #questions, sequential / math.max(concurrent, 1e-9)))
for i, text in ipairs(answers) do
  print(string.format("   %-34s -> %s", questions[i], clip(text, 44)))
end

print("\n2. One answer, streamed token by token")
io.write("   ")
local tokens = 0
for chunk in llm.stream("Tell me about the night sky over the sea", {max_tokens = 48}) do
  io.write(chunk.content)
  if not chunk.done then tokens = tokens + 1 end
end
print(string.format("\n   (%d tokens)", tokens))

print("\n3. A pipeline: draft a paragraph per topic, then summarise each draft")
t0 = clock()
local p = pipeline.new({
  {name = "draft", parallel = 3, fn = function(topic)
    return {topic = topic, text = llm.generate("Write about " .. topic, {max_tokens = 36})}
  end},
  {name = "summarise", parallel = 3, fn = function(d)
    d.summary = llm.generate("Summarise: " .. d.text, {max_tokens = 14})
    return d
  end},
})
for d in p:run({"bridges", "tides", "queues"}) do
  print(string.format("   %-8s %3d chars -> %s", d.topic, #d.text, clip(d.summary, 56)))
end
print(string.format("   (%s)", since(t0)))

print("\n4. A race against a timeout")
t0 = clock()
local ok, err = pcall(task.timeout, 0.25, llm.generate, "Write a long essay about the sea", {max_tokens = 2000})
print(string.format("   a 2000-token essay with 0.25 s to spare: %s (after %s%s)",
  ok and "finished" or "gave up", since(t0), ok and "" or "; " .. err.kind .. ", and its request was cancelled"))
local short = task.spawn(llm.generate, "Name a star", {max_tokens = 4})
local long = task.spawn(llm.generate, "Describe every star", {max_tokens = 200})
local winner, text = task.race({long, short})
print(string.format("   race of a 200-token and a 4-token reply: #%d won with %q; the loser is %s",
  winner, clip(text, 40), long:status()))

print("\n5. An agent: the model calls tools, the calls of a step run concurrently")
local question = "When is high tide in Brest tonight, what is the moon phase, and when is sunset?"
print("   Q: " .. question)
t0 = clock()
local function traced(name, work)
  return function(args)
    local started = clock() - t0
    local result = work(args)
    print(string.format("   [%5.2f s -> %5.2f s] %s(%s) = %s", started, clock() - t0, name,
      args.harbour or args.town or "", tostring(result)))
    return result
  end
end
local reply, info = llm.chat({{role = "user", content = question}}, {tools = {
  {name = "tide_times", description = "High and low tide times for a harbour",
   parameters = {type = "object", properties = {harbour = {type = "string"}}, required = {"harbour"}},
   fn = traced("tide_times (Go)", almanac.tide_times)},
  {name = "moon_phase", description = "The phase of the moon tonight",
   fn = traced("moon_phase (Lua)", function() task.sleep(0.2); return "waxing gibbous" end)},
  {name = "sunset_time", description = "Sunset time for a town",
   parameters = {type = "object", properties = {town = {type = "string"}}, required = {"town"}},
   fn = traced("sunset_time (Lua)", function(a) task.sleep(0.25); return "21:47 in " .. a.town end)},
}})
print(string.format("   A: %s", clip(reply, 150)))
print(string.format("   (%d steps, %d tool calls, %s; run one after the other the tools alone take 0.75 s)",
  info.steps, #info.tool_calls, since(t0)))

print("\n6. Structured output: a JSON Schema, and the reply as a validated Lua table")
local trip = llm.generate("Extract the trip: Ada flies from Lisbon to Oslo with 2 bags", {schema = {
  type = "object",
  properties = {
    traveller = {type = "string"}, from = {type = "string"}, to = {type = "string"},
    bags = {type = "integer", minimum = 0},
  },
  required = {"traveller", "from", "to", "bags"},
}})
print(string.format("   traveller=%s from=%s to=%s bags=%d (%s)", trip.traveller, trip.from, trip.to,
  trip.bags, math.type(trip.bags)))
local u = llm.usage()
print(string.format("\nThis run: %d requests, %d prompt and %d completion tokens.",
  u.requests, u.prompt_tokens, u.completion_tokens))
