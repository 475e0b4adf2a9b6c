-- moonbridge demo: a Lua script driving an LLM (by default the embedded
-- generator) with tasks, streams, a pipeline and a timeout. Every bridge
-- call below reads as a plain function call; the waiting happens in Go.
local llm = require("llm")
local task = require("task")
local pipeline = require("pipeline")

local function since(t0)
  return string.format("%.2f s", clock() - t0)
end

local function clip(s, n)
  s = s:gsub("%s+", " ")
  if #s <= n then return s end
  return s:sub(1, n - 3):gsub("%s*%S*$", "") .. "..."
end

print("1. Fan-out: six questions, three in flight at a time")
local questions = {
  "Tell me about the moon", "Describe an old harbour at dawn", "What does a lighthouse keeper do",
  "Explain an event loop", "Write about a river in spring", "Describe a library at night",
}
local t0, answered = clock(), 0
local answers = llm.generate_all(questions, {
  concurrency = 3, max_tokens = 24,
  on_result = function()
    answered = answered + 1
    io.write(string.format("\r   [%-6s] %d/%d answered", string.rep("#", answered), answered, #questions))
  end,
})
print(string.format("  (%s)", since(t0)))
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
