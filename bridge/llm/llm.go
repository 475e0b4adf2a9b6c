// Package llm is moonbridge's LLM bridge: one Provider interface, with a
// client for OpenAI-compatible servers (llama.cpp server, vLLM, OpenAI),
// a client for Ollama, and an embedded local generator that needs no
// network and is the default everywhere.
//
// A Provider is registered in a Runtime with Register (or
// bridge.Runtime.RegisterLLM, which calls it), giving Lua scripts
// require("llm") with generate, stream, chat (with tools, an agent loop
// and structured output), generate_all and usage. Go programs may also
// call a Provider directly:
//
//	p := llm.NewLocal(llm.LocalOptions{Seed: 1})
//	err := p.Stream(ctx, llm.Request{Prompt: "Tell a story", MaxTokens: 40},
//		func(c llm.Chunk) error {
//			fmt.Print(c.Content)
//			return nil
//		})
package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Provider generates text. Its methods are safe for concurrent use.
type Provider interface {
	// Generate returns the whole reply.
	Generate(ctx context.Context, req Request) (Response, error)
	// Stream calls fn with each piece of the reply as it arrives, then once
	// with Done set (and the finish reason). An error from fn stops the
	// stream and is returned. Cancelling ctx stops it at once, closing the
	// connection, and Stream returns ctx's error.
	Stream(ctx context.Context, req Request, fn func(Chunk) error) error
}

// Message is one turn of a chat. An assistant turn that asked for tools
// carries its ToolCalls (Content may then be empty); the answer to each call
// is a message of role "tool" with the call's ID in ToolCallID. A follow-up
// request must carry the assistant message before its tool messages, in
// that order: servers refuse tool messages they cannot match to a call.
type Message struct {
	Role       string     `json:"role" lua:"role"` // "system", "user", "assistant" or "tool"
	Content    string     `json:"content" lua:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty" lua:"tool_calls"`
	ToolCallID string     `json:"tool_call_id,omitempty" lua:"tool_call_id"`
}

// Tool is a function the model may ask to call. Parameters is a JSON
// Schema for its arguments (an object schema); nil means no arguments.
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage
}

// ToolCall is the model asking for a tool: Arguments is a JSON object
// ("{}" when the model gave none). ID matches the call to its tool message;
// a server that gives none gets one made up ("call_1", ...).
type ToolCall struct {
	ID        string          `json:"id" lua:"id"`
	Name      string          `json:"name" lua:"name"`
	Arguments json.RawMessage `json:"arguments" lua:"arguments"`
}

// Request is what to generate. Set Prompt for a completion, or Messages
// for a chat; a Prompt alone is sent to chat servers as one user message.
type Request struct {
	Model    string    // provider's model name; "" uses the provider's default
	Prompt   string    // a prompt to complete
	Messages []Message // a conversation to continue
	// MaxTokens bounds the reply's length in tokens; 0 is the provider's
	// default.
	MaxTokens int
	// Temperature, when set, is the sampling temperature (0 is greedy).
	Temperature *float64
	// Stop lists sequences that end the reply; the reply excludes them.
	Stop []string
	// Seed, when set, asks for a reproducible reply.
	Seed *int64

	// Tools the model may call; its reply then may carry ToolCalls instead
	// of (or besides) text.
	Tools []Tool
	// ToolChoice is "auto" (the default when Tools are given), "none",
	// "required", or the name of the one tool the model must call.
	ToolChoice string

	// Schema, when set, is a JSON Schema the reply must match: the reply
	// is then JSON. Servers that support it constrain the model to it
	// (OpenAI's response_format json_schema, strict; Ollama's format).
	// Providers do not validate the reply; the Lua module does (option
	// schema). SchemaName names it where the wire needs a name ("reply"
	// when empty).
	Schema     json.RawMessage
	SchemaName string
}

// Response is a whole reply.
type Response struct {
	Text string
	// FinishReason says why the reply ended: "stop" (natural end or a stop
	// sequence), "length" (MaxTokens), "tool_calls" (the reply asks for
	// tools), or what the server reported.
	FinishReason string
	Model        string
	Usage        Usage // zero when the server reports none
	// ToolCalls are the tools the model asks to call, in its order.
	ToolCalls []ToolCall
	// Refusal is the model's refusal to answer (OpenAI's refusal field);
	// Text is then usually empty.
	Refusal string
	// Reasoning is the model's reasoning, where the server sends it apart
	// from the reply (reasoning_content, reasoning, Ollama's thinking).
	Reasoning string
}

// Usage counts tokens, where the server reports them.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
}

// Chunk is one piece of a streamed reply: Content, Reasoning or Refusal
// text, any of which may be empty. The last chunk of a stream has Done set
// and carries the FinishReason, the ToolCalls the reply asks for (whole:
// streamed tool calls are assembled first) and Usage, where reported; its
// Content may be empty.
type Chunk struct {
	Content      string
	Reasoning    string
	Refusal      string
	Done         bool
	FinishReason string
	ToolCalls    []ToolCall
	Usage        *Usage
}

// Float returns a pointer to v, for Request.Temperature.
func Float(v float64) *float64 { return &v }

// Int returns a pointer to v, for Request.Seed.
func Int(v int64) *int64 { return &v }

// APIError is an error reply from a server: an HTTP status other than 200,
// or an error object inside a stream (then StatusCode is 200).
type APIError struct {
	Provider   string // "openai" or "ollama"
	StatusCode int    // HTTP status code
	Message    string // the server's message, or the status text
	Type       string // the server's error type or code, when it gives one
	// RetryAfter is how long the server asked the client to wait before
	// trying again (its Retry-After header), or 0.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d", e.Provider, e.StatusCode)
	if e.Type != "" {
		s += " (" + e.Type + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// ErrTruncated reports a stream that ended before the server said it was
// complete (no "data: [DONE]", no final "done": true).
var ErrTruncated = errors.New("llm: stream ended before the reply was complete")

// ErrEmptyStream reports a stream that said it was complete without
// saying anything first (an OpenAI-compatible stream of only "data:
// [DONE]"): no reply, rather than an empty one.
var ErrEmptyStream = errors.New("llm: the stream ended ([DONE]) without a reply")

// Collect streams req from p and joins the chunks into a Response, for
// providers whose Generate is a stream read to its end.
func Collect(ctx context.Context, p Provider, req Request) (Response, error) {
	var r Response
	var text, reasoning, refusal []byte
	err := p.Stream(ctx, req, func(c Chunk) error {
		text = append(text, c.Content...)
		reasoning = append(reasoning, c.Reasoning...)
		refusal = append(refusal, c.Refusal...)
		if c.Done {
			r.FinishReason = c.FinishReason
			r.ToolCalls = c.ToolCalls
			if c.Usage != nil {
				r.Usage = *c.Usage
			}
		}
		return nil
	})
	r.Text, r.Reasoning, r.Refusal = string(text), string(reasoning), string(refusal)
	r.Model = req.Model
	return r, err
}
