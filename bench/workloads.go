// Package bench compares moonbridge with a gopher-lua peer on the same
// workloads and measures the machine's floor with small C programs
// (floor/*.c). It is its own module so that the peer never becomes a
// dependency of the library.
//
// Every workload's Lua text lives here, one constant per workload, so each
// implementation runs the same script. Conventions:
//
//   - A script is a chunk; its arguments arrive as `...` (e.g. the number of
//     iterations) and it returns its result, which the Go side checks.
//   - async_inc(x): a Go function run off the Lua thread (a goroutine); the
//     calling coroutine is suspended until it completes with x+1.
//   - sync_inc(x): a plain synchronous Go function returning x+1.
package bench

import (
	"os"
	"strconv"
)

// Sizes shared by every implementation.
const (
	ConcurrentTasks     = 10_000  // RoundTripConcurrent: coroutines in flight
	ConcurrentCallsEach = 100     // RoundTripConcurrent: async calls per coroutine
	YieldTasks          = 100     // YieldSwitch: coroutines in the round robin
	SuspendedTasks      = 10_000  // SuspendedMemory: coroutines parked in async_inc
	FibN                = 27      // Fib: argument
	FibResult           = 196418  // fib(27)
	StringBuildN        = 200_000 // StringBuild: strings built then concatenated
	SelectChannels      = 8       // SelectEight: channels in every select
	PromiseChainLen     = 1_000   // PromiseChain: andThen steps per chain
	PipelineItems       = 100_000 // Pipeline3: items per run
	PipelineBuffer      = 64      // Pipeline3: capacity of each channel between stages
	SleepingN           = 100_000 // SleepingTasks: tasks parked in a long sleep (SleepingLua)

	FanOutTasks            = 10_000  // FanOut: coroutines, each making one async go_sleep call
	FanOutSleepMs          = 1       // FanOut: milliseconds each go_sleep sleeps
	StreamChunkN           = 100_000 // StreamChunks: chunks per stream (plus the final done chunk)
	LLMStreamWindow        = 256     // StreamChunks: chunks buffered between provider and Lua (moonbridge's MB_STREAM_WINDOW)
	GenerateAllN           = 1_000   // GenerateAll: requests per run
	GenerateAllConcurrency = 64      // GenerateAll: requests in flight
	ChatReplyTokens        = 20      // GenerateAll: content events per reply (ChatServer)
)

// SleepingCount is the number of tasks per SleepingTasks batch: SleepingN,
// or the MB_SLEEPING_N environment variable when it is set, for a manual
// run of the 1,000,000-task target:
//
//	MB_SLEEPING_N=1000000 BENCH=SleepingTasks COUNT=1 bench/run.sh
func SleepingCount() int {
	if s := os.Getenv("MB_SLEEPING_N"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
		panic("MB_SLEEPING_N: want a positive integer, got " + strconv.Quote(s))
	}
	return SleepingN
}

// RoundTripSeqLua: one coroutine making n sequential async calls.
// Args: n. Returns n.
const RoundTripSeqLua = `
local n = ...
local x = 0
for i = 1, n do
  x = async_inc(x)
end
return x
`

// RoundTripConcurrentLua: the body of each of ConcurrentTasks coroutines,
// each making ConcurrentCallsEach sequential async calls: the sequential
// workload's text, run by many at once. Args: n (calls). Returns n.
const RoundTripConcurrentLua = RoundTripSeqLua

// FanOutLua: the body of each of FanOutTasks coroutines: one call of the
// async Go function go_sleep(ms), which sleeps ms milliseconds off the Lua
// thread (time.Sleep in a goroutine) and returns ms. Args: ms. Returns ms.
// (Not a tail call: gopher-lua cannot resume a yielding Go function called
// in tail position.)
const FanOutLua = `
local ms = ...
local r = go_sleep(ms)
return r
`

// SyncCallLua: n calls of a synchronous Go function from a Lua loop.
// Args: n. Returns n.
const SyncCallLua = `
local n = ...
local x = 0
for i = 1, n do
  x = sync_inc(x)
end
return x
`

// SpawnFinishLua: the (empty) body of a task that is spawned and run to
// completion.
const SpawnFinishLua = `-- empty task body
`

// YieldSwitchLua: the body of each of YieldTasks coroutines; each yields n
// times cooperatively (no value) and the Go side resumes them round robin.
// Args: n. Returns n.
const YieldSwitchLua = `
local n = ...
local yield = coroutine.yield
for i = 1, n do
  yield()
end
return n
`

// CallFromGoLua defines the global function Go calls: add(a, b) -> a + b.
const CallFromGoLua = `
function add(a, b)
  return a + b
end
`

// SuspendedMemoryLua: the body of each of SuspendedTasks coroutines; it
// parks in an async call whose Go side never completes during measurement.
const SuspendedMemoryLua = `
local x = async_inc(0)
return x
`

// FibLua: naive recursive fib. Args: n. Returns fib(n).
const FibLua = `
local n = ...
local function fib(k)
  if k < 2 then return k end
  return fib(k - 1) + fib(k - 2)
end
return fib(n)
`

// StringBuildLua: build n strings into a table, then table.concat them.
// Args: n. Returns the length of the result.
const StringBuildLua = `
local n = ...
local t = {}
for i = 1, n do
  t[i] = "item" .. i
end
local s = table.concat(t, ",")
return #s
`

// ChannelPingLua runs on the first state: sends 1..n on ping and waits for
// each echo on pong. Args: n. Returns the sum of the echoes.
const ChannelPingLua = `
local n = ...
local sum = 0
for i = 1, n do
  ping:send(i)
  local ok, v = pong:receive()
  sum = sum + v
end
ping:close()
return sum
`

// ChannelPongLua runs on the second state: echoes every value from ping to
// pong until ping is closed.
const ChannelPongLua = `
while true do
  local ok, v = ping:receive()
  if not ok then break end
  pong:send(v)
end
`

// SelectProducerLua feeds the select workload: sends 1..n, value i on
// chans[i % SelectChannels + 1] (rotating through the channels), each an
// unbuffered channel, so every send is one hand-off to the selecting
// consumer. Args: chans (a list of SelectChannels channels), n.
const SelectProducerLua = `
local chans, n = ...
for i = 1, n do
  chans[i % 8 + 1]:send(i)
end
`

// SelectCheckLua is the check each consumer makes after each select: the
// index is the channel the producer used and the sum of the values comes
// back. (Pasted into each implementation's consumer loop.)
const SelectCheckLua = `
if idx ~= i % 8 + 1 or not ok then
  error(string.format("select %d: index %s ok %s", i, tostring(idx), tostring(ok)))
end
sum = sum + v
`

// GLSelectConsumerLua: gopher-lua's consumer: n selects over the eight
// channels with channel.select({"|<-", ch}, ...), its receive cases (no
// handler function: the index, value and ok come back as results, the same
// as moonbridge's channel.select). Args: chans, n. Returns the sum.
const GLSelectConsumerLua = `
local chans, n = ...
local select = channel.select
local c1, c2, c3, c4 = {"|<-", chans[1]}, {"|<-", chans[2]}, {"|<-", chans[3]}, {"|<-", chans[4]}
local c5, c6, c7, c8 = {"|<-", chans[5]}, {"|<-", chans[6]}, {"|<-", chans[7]}, {"|<-", chans[8]}
local sum = 0
for i = 1, n do
  local idx, v, ok = select(c1, c2, c3, c4, c5, c6, c7, c8)
` + SelectCheckLua + `
end
return sum
`

// Pipeline stage functions, as Lua expressions: item x becomes
// ((x + 1) * 2) - 1 = 2x + 1.
const (
	PipelineFnA = `function(x) return x + 1 end`
	PipelineFnB = `function(x) return x * 2 end`
	PipelineFnC = `function(x) return x - 1 end`
)

// PipelineItemsLua builds the input list 1..n in the global items (before
// timing). Args: n.
const PipelineItemsLua = `
local n = ...
items = {}
for i = 1, n do items[i] = i end
`

// PipelineResult is the last item out of the pipeline for n items.
func PipelineResult(n int) int { return 2*n + 1 }

// GLPipelineFeedLua: gopher-lua's source: sends every item of the global
// items on out, then closes it. Args: out.
const GLPipelineFeedLua = `
local out = ...
local items = items
for i = 1, #items do out:send(items[i]) end
out:close()
`

// GLPipelineStageLua: one gopher-lua stage (a state of its own, on a
// goroutine of its own): applies fn to every item from in and sends the
// result on out; closes out when in is closed. fn is PipelineFnA/B/C.
const GLPipelineStageLua = `
local inq, outq = ...
local fn = %s
while true do
  local ok, v = inq:receive()
  if not ok then break end
  outq:send(fn(v))
end
outq:close()
`

// GLPipelineCollectLua: gopher-lua's sink: collects every item from in into
// a list, in order. Args: in, n. Returns the list's length after checking
// its last item.
const GLPipelineCollectLua = `
local inq, n = ...
local out, k = {}, 0
while true do
  local ok, v = inq:receive()
  if not ok then break end
  k = k + 1
  out[k] = v
end
if k ~= n or out[n] ~= 2 * n + 1 then
  error(string.format("collected %d items, last %s", k, tostring(out[k])))
end
return k
`

// SleepingLua: the body of each of SleepingN tasks: a sleep of an hour,
// which never ends during the measurement. sleep is
// task.sleep on moonbridge and, on gopher-lua, a function that yields the
// seconds to the Go scheduler, which keeps the coroutine in a timer heap.
const SleepingLua = `
sleep(3600)
`

// The moonbridge side of the concurrency workloads (issue 3), written with
// moonbridge's own modules the way a user of them writes it: tasks, the
// channel module (ch:send(v), ch:recv() -> v, ok), channel.select, promises
// and pipeline. Each runs as one Call (b.N units of work in one script) and
// returns what the Go side checks.

// MBChannelPingPongLua: the calling task sends 1..n on ping, a second task
// echoes each value on pong; two unbuffered channels, so every send is one
// hand-off between the two tasks. Args: n. Returns the sum of the echoes.
const MBChannelPingPongLua = `
local n = ...
local channel = require("channel")
local ping, pong = channel.new(), channel.new()
local echo = task.spawn(function()
  while true do
    local v, ok = ping:recv()
    if not ok then break end
    pong:send(v)
  end
end)
local sum = 0
for i = 1, n do
  ping:send(i)
  sum = sum + pong:recv()
end
ping:close()
echo:wait()
return sum
`

// MBSelectConsumerLua: moonbridge's consumer: a producer task (the global
// produce, SelectProducerLua) sends on a rotating one of eight unbuffered
// channels while the calling task makes n channel.select calls over their
// receive cases. Args: n. Returns the sum.
const MBSelectConsumerLua = `
local n = ...
local channel = require("channel")
local chans, cases = {}, {}
for k = 1, 8 do
  chans[k] = channel.new()
  cases[k] = {chans[k], "recv"}
end
local producer = task.spawn(produce, chans, n)
local select = channel.select
local sum = 0
for i = 1, n do
  local idx, v, ok = select(cases)
` + SelectCheckLua + `
end
producer:wait()
return sum
`

// MBPromiseChainLua: chains promise chains of len andThen steps, each
// adding one, and awaits each. Args: chains, len. Returns the sum of the
// chains' results (chains * len).
const MBPromiseChainLua = `
local chains, len = ...
local promise = require("promise")
local total = 0
for c = 1, chains do
  local p = promise.resolve(0)
  for i = 1, len do
    p = p:andThen(function(v) return v + 1 end)
  end
  local v = p:await()
  if v ~= len then error("chain gave " .. tostring(v)) end
  total = total + v
end
return total
`

// MBPipeline3Lua: a three-stage pipeline (default options: one worker and
// a one-slot buffer per stage, ordered) collecting the global items (made
// by PipelineItemsLua), runs times. Args: runs, n. Returns the number of
// items collected over all runs after checking each run's output.
const MBPipeline3Lua = `
local runs, n = ...
local pipeline = require("pipeline")
local p = pipeline.new({
  {name = "a", fn = ` + PipelineFnA + `},
  {name = "b", fn = ` + PipelineFnB + `},
  {name = "c", fn = ` + PipelineFnC + `},
})
local total = 0
for r = 1, runs do
  local out = p:collect(items)
  if #out ~= n or out[1] ~= 3 or out[n] ~= 2 * n + 1 then
    error(string.format("collected %d items, last %s", #out, tostring(out[#out])))
  end
  total = total + #out
end
return total
`

// MBSleepersLua: spawns n tasks running the global body (SleepingLua, with
// sleep = task.sleep), lets each run into its sleep and signals spawned()
// (the end of the timing). It checks every task is suspended, collects
// garbage and calls parked(), a Go function that returns once the Go side
// has measured the memory; then it cancels every task and waits for each.
// Args: n. Returns the number of tasks that ended cancelled and the Lua
// heap's growth in bytes while they slept (collectgarbage("count")).
const MBSleepersLua = `
local n = ...
collectgarbage(); collectgarbage()
local before = collectgarbage("count")
local spawn = task.spawn
local ts = {}
for i = 1, n do ts[i] = spawn(body) end
task.yield() -- every task runs into its sleep
spawned()
for i = 1, n do
  local st = ts[i]:status()
  if st ~= "suspended" then error("task " .. i .. " is " .. st) end
end
collectgarbage(); collectgarbage()
local grown = math.floor((collectgarbage("count") - before) * 1024)
parked()
for i = 1, n do ts[i]:cancel() end
local cancelled = 0
for i = 1, n do
  local ok, e = pcall(ts[i].wait, ts[i])
  if not ok and type(e) == "table" and e.kind == "cancelled" then cancelled = cancelled + 1 end
end
return cancelled, grown
`

// The LLM workloads. llm is the module registered for the provider
// (moonbridge: Runtime.RegisterLLM; gopher-lua: GLBridge.RegisterLLM):
// llm.stream(prompt) iterates over chunk tables {content=, done=}, the last
// with done = true and finish_reason; llm.generate_all(list, {concurrency =
// c}) returns the replies in input order.

// StreamChunksLua: counts the chunks of one stream from ChunkProvider
// (StreamChunkN chunks, then the done chunk) and checks its finish reason.
// Returns the count.
const StreamChunksLua = `
local n, finish = 0, nil
for c in llm.stream("x") do
  if not c.done then n = n + 1 else finish = c.finish_reason end
end
if finish ~= "length" then error("finish_reason " .. tostring(finish)) end
return n
`

// GenerateAllLua: n prompts "question i" through llm.generate_all at
// concurrency c against the ChatServer, whose replies echo the prompt;
// each reply is checked to be its own question's, in order. Args: n, c.
// Returns the number of replies.
const GenerateAllLua = `
local n, c = ...
local list = {}
for i = 1, n do list[i] = "question " .. i end
local r = llm.generate_all(list, {concurrency = c})
for i = 1, n do
  local s = r[i]
  if type(s) ~= "string" or not string.find(s, "question " .. tostring(i) .. " ", 1, true) then
    error(string.format("reply %d is %q", i, tostring(s)))
  end
end
return #r
`

// GLGenerateAllLua: gopher-lua's generate_all, added to its llm module
// (the argument): the same orchestration as moonbridge's (a Lua function
// over its async generate): min(concurrency, #list) worker coroutines
// (spawn, driven by GLBridge) each take the next index from a shared
// counter until the list is done; the caller joins every worker and
// returns the texts in input order. An error in generate is raised.
const GLGenerateAllLua = `
local llm = ...
local generate = llm.generate
function llm.generate_all(list, opts)
  local n = #list
  local concurrency = opts and opts.concurrency or 4
  local results, next_index = {}, 0
  local workers = {}
  for w = 1, math.min(concurrency, n) do
    workers[w] = spawn(function()
      while next_index < n do
        next_index = next_index + 1
        local i = next_index
        local text, err = generate(list[i])
        if text == nil then error(err) end
        results[i] = text
      end
    end)
  end
  for w = 1, #workers do join(workers[w]) end
  return results
end
`
