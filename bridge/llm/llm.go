// Package llm is moonbridge's LLM bridge: one Provider interface, with a
// client for OpenAI-compatible servers (llama.cpp server, vLLM, OpenAI),
// a client for Ollama, and an embedded local generator that needs no
// network and is the default everywhere.
//
// A Provider is registered in a Runtime with bridge.Runtime.RegisterLLM,
// which gives Lua scripts require("llm") with generate, stream, chat and
// generate_all. Go programs may also call a Provider directly:
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
	"errors"
	"fmt"
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

// Message is one turn of a chat.
type Message struct {
	Role    string `json:"role" lua:"role"` // "system", "user" or "assistant"
	Content string `json:"content" lua:"content"`
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
}

// Response is a whole reply.
type Response struct {
	Text string
	// FinishReason says why the reply ended: "stop" (natural end or a stop
	// sequence), "length" (MaxTokens), or what the server reported.
	FinishReason string
	Model        string
	Usage        Usage // zero when the server reports none
}

// Usage counts tokens, where the server reports them.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
}

// Chunk is one piece of a streamed reply. The last chunk of a stream has
// Done set and carries the FinishReason (and Usage, where reported); its
// Content may be empty.
type Chunk struct {
	Content      string
	Done         bool
	FinishReason string
	Usage        *Usage
}

// Float returns a pointer to v, for Request.Temperature.
func Float(v float64) *float64 { return &v }

// Int returns a pointer to v, for Request.Seed.
func Int(v int64) *int64 { return &v }

// APIError is an error reply from a server: an HTTP status other than 200,
// or an error object inside a stream (then Status is 200).
type APIError struct {
	Provider string // "openai" or "ollama"
	Status   int    // HTTP status code
	Message  string // the server's message, or the status text
	Type     string // the server's error type or code, when it gives one
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d", e.Provider, e.Status)
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

// Collect streams req from p and joins the chunks into a Response, for
// providers whose Generate is a stream read to its end.
func Collect(ctx context.Context, p Provider, req Request) (Response, error) {
	var r Response
	var text []byte
	err := p.Stream(ctx, req, func(c Chunk) error {
		text = append(text, c.Content...)
		if c.Done {
			r.FinishReason = c.FinishReason
			if c.Usage != nil {
				r.Usage = *c.Usage
			}
		}
		return nil
	})
	r.Text = string(text)
	r.Model = req.Model
	return r, err
}
