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

// Sizes shared by every implementation.
const (
	ConcurrentTasks     = 10_000  // RoundTripConcurrent: coroutines in flight
	ConcurrentCallsEach = 100     // RoundTripConcurrent: async calls per coroutine
	YieldTasks          = 100     // YieldSwitch: coroutines in the round robin
	SuspendedTasks      = 10_000  // SuspendedMemory: coroutines parked in async_inc
	FibN                = 27      // Fib: argument
	FibResult           = 196418  // fib(27)
	StringBuildN        = 200_000 // StringBuild: strings built then concatenated
)

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
