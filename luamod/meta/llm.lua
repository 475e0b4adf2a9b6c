---@meta llm
-- LuaLS annotations for the module llm.Register(rt, "llm", provider) (or
-- rt.RegisterLLM) registers (Go: bridge/llm/register.go; the agent loop
-- and generate_all: luamod/moonbridge.llm.lua).

---@class llm.ToolCall
---@field id string matches the call to its tool message
---@field name string
---@field arguments table|string decoded arguments (in info.tool_calls); in a message, a table or the JSON text

---@class llm.Message
---@field role "system"|"user"|"assistant"|"tool"
---@field content any a string; a tool message's other values are sent as JSON
---@field tool_calls llm.ToolCall[]? an assistant message's calls
---@field tool_call_id string? a tool message: the id of the call it answers

---A JSON Schema written as a Lua table (or as a JSON string). An empty
---table is an object or a list as its keyword says: properties = {} is an
---object, required = {} a list, items = {} the schema that allows anything.
---@alias llm.Schema table|string

---@class llm.Tool
---@field name string
---@field description string?
---@field parameters llm.Schema? the arguments' schema (an object schema); none means no arguments
---@field fn (fun(args: table): any)? runs the call: a Lua function or a Go bridge function. When every tool has fn, chat runs the agent loop; a string result goes to the model as is, other values as JSON; an error goes back as "error: ..."

---@class llm.Options
---@field model string?
---@field max_tokens integer?
---@field temperature number?
---@field stop string|string[]?
---@field seed integer?
---@field tools llm.Tool[]?
---@field tool_choice "auto"|"none"|"required"|string? a tool's name forces that tool (in the agent loop, at the first step only)
---@field schema llm.Schema? the reply must match it: the first result is the decoded, validated value; one repair attempt, then a bridge error of op "schema"
---@field schema_name string? the schema's name on the wire ("reply")

---@class llm.ChatOptions: llm.Options
---@field max_steps integer? model round trips the agent loop may make (default 8); past it, a limit error of op "max_steps"

---@class llm.Usage
---@field prompt_tokens integer
---@field completion_tokens integer
---@field total_tokens integer

---@class llm.ToolResult: llm.ToolCall
---@field result any what fn returned
---@field error string? what fn raised

---@class llm.Info
---@field finish_reason string "stop", "length", "tool_calls" or what the server said
---@field model string?
---@field usage llm.Usage zeros when the server reports none; summed over the steps of an agent loop
---@field refusal string? the model's refusal (the text is then "")
---@field reasoning string? the model's reasoning, where the server sends it apart
---@field tool_calls llm.ToolCall[]|llm.ToolResult[]? without fn: the calls asked for; after the agent loop: every call made, with its result or error
---@field message llm.Message? without fn: the assistant message to put in the conversation before the tool messages
---@field steps integer? after the agent loop: the model round trips made
---@field messages llm.Message[]? after the agent loop: the whole conversation, to continue it
---@field text string? with schema: the reply's text
---@field repaired boolean? with schema: whether the repair attempt was needed

---@class llm.Chunk
---@field content string
---@field reasoning string? reasoning text, never mixed into content
---@field refusal string? refusal text
---@field done boolean true on the last chunk only
---@field finish_reason string? on the last chunk
---@field usage llm.Usage? on the last chunk, where reported
---@field tool_calls llm.ToolCall[]? on the last chunk: the calls asked for, assembled, arguments decoded
---@field value any? on the last chunk, with schema: the decoded, validated reply

---@class llm.RunUsage
---@field requests integer
---@field prompt_tokens integer
---@field completion_tokens integer
---@field total_tokens integer

---@class llm.AllOptions: llm.Options
---@field concurrency integer? requests in flight at most (default 4)
---@field on_result fun(i: integer, text: any, info: llm.Info)? called as each finishes

local llm = {}

---The whole reply to a prompt or a conversation (with schema: the
---validated value).
---@param input string|llm.Message[]
---@param opts llm.Options?
---@return any text
---@return llm.Info info
function llm.generate(input, opts) end

---The reply chunk by chunk, for a generic for; leaving the loop early
---cancels the request. One task reads it: the first that calls the
---iterator (another task gets an error).
---@param input string|llm.Message[]
---@param opts llm.Options?
---@return fun(): llm.Chunk?
function llm.stream(input, opts) end

---The next message of a conversation. With tools that all have fn, the
---agent loop: the calls of each reply run concurrently as tasks, their
---results go back, until a reply calls no tool. Without fn: "" and
---info.tool_calls, finish_reason "tool_calls".
---@param messages llm.Message[]
---@param opts llm.ChatOptions?
---@return any text
---@return llm.Info info
function llm.chat(messages, opts) end

---generate over every item, at most opts.concurrency at a time; the texts
---in input order. The first error cancels the rest and is raised.
---@param list (string|llm.Message[])[]
---@param opts llm.AllOptions?
---@return any[]
function llm.generate_all(list, opts) end

---This run's requests and tokens through this module.
---@return llm.RunUsage
function llm.usage() end

return llm
