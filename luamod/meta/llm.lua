---@meta llm
-- LuaLS annotations for the module Runtime.RegisterLLM("llm", provider)
-- registers (Go: bridge/llm.go; generate_all: luamod/moonbridge.llm.lua).

---@class llm.Message
---@field role "system"|"user"|"assistant"
---@field content string

---@class llm.Options
---@field model string?
---@field max_tokens integer?
---@field temperature number?
---@field stop string|string[]?
---@field seed integer?

---@class llm.Usage
---@field prompt_tokens integer
---@field completion_tokens integer
---@field total_tokens integer

---@class llm.Info
---@field finish_reason string "stop", "length" or what the server said
---@field model string?
---@field usage llm.Usage zeros when the server reports none

---@class llm.Chunk
---@field content string
---@field done boolean true on the last chunk only
---@field finish_reason string? on the last chunk
---@field usage llm.Usage? on the last chunk, where reported

---@class llm.AllOptions: llm.Options
---@field concurrency integer? requests in flight at most (default 4)
---@field on_result fun(i: integer, text: string, info: llm.Info)? called as each finishes

local llm = {}

---The whole reply to a prompt or a conversation.
---@param input string|llm.Message[]
---@param opts llm.Options?
---@return string text
---@return llm.Info info
function llm.generate(input, opts) end

---The reply chunk by chunk, for a generic for; leaving the loop early
---cancels the request.
---@param input string|llm.Message[]
---@param opts llm.Options?
---@return fun(): llm.Chunk?
function llm.stream(input, opts) end

---The next message of a conversation.
---@param messages llm.Message[]
---@param opts llm.Options?
---@return string text
---@return llm.Info info
function llm.chat(messages, opts) end

---generate over every item, at most opts.concurrency at a time; the texts
---in input order. The first error cancels the rest and is raised.
---@param list (string|llm.Message[])[]
---@param opts llm.AllOptions?
---@return string[]
function llm.generate_all(list, opts) end

return llm
