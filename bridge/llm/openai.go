// LLM providers: the OpenAI-compatible HTTP client (OpenAI, llama.cpp
// server, vLLM and the like), over POST /chat/completions.

package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// OpenAIOptions configures an OpenAI-compatible client.
type OpenAIOptions struct {
	// BaseURL is the API's root, "https://api.openai.com/v1" when empty. A
	// URL with no path (or "/") gets "/v1", so "http://localhost:8080"
	// reaches a llama.cpp server.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer KEY" when not empty; empty
	// means the OPENAI_API_KEY environment variable.
	APIKey string
	// Model is used when a Request's Model is empty.
	Model string
	// HTTPClient defaults to a client with no overall timeout (streams are
	// long; cancel the context instead).
	HTTPClient *http.Client
}

// OpenAI is a Provider for servers that speak OpenAI's chat completions
// API. It is safe for concurrent use.
type OpenAI struct {
	baseURL string
	apiKey  string
	model   string
	client  *http.Client
}

var _ Provider = (*OpenAI)(nil)

// NewOpenAI returns a client for an OpenAI-compatible server.
func NewOpenAI(opts OpenAIOptions) *OpenAI {
	o := &OpenAI{
		baseURL: openAIBaseURL(opts.BaseURL),
		apiKey:  opts.APIKey,
		model:   opts.Model,
		client:  opts.HTTPClient,
	}
	if o.apiKey == "" {
		o.apiKey = os.Getenv("OPENAI_API_KEY")
	}
	if o.client == nil {
		o.client = newHTTPClient()
	}
	return o
}

// openAIBaseURL applies the BaseURL defaults, without a trailing slash.
func openAIBaseURL(s string) string {
	if s == "" {
		return "https://api.openai.com/v1"
	}
	s = strings.TrimRight(s, "/")
	if u, err := url.Parse(s); err == nil && u.Path == "" {
		s += "/v1"
	}
	return s
}

// Generate asks for the whole reply at once.
func (o *OpenAI) Generate(ctx context.Context, req Request) (Response, error) {
	resp, err := o.post(ctx, req, false)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	body, err := readBody(ctx, "openai", resp)
	if err != nil {
		return Response{}, err
	}
	return parseOpenAIResponse(body, o.modelFor(req))
}

// Stream asks for the reply as server-sent events and calls fn with each
// piece; see Provider.
func (o *OpenAI) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	resp, err := o.post(ctx, req, true)
	if err != nil {
		return err
	}
	return finishStream(resp.Body, readOpenAIStream(ctx, newSSEReader(resp.Body), fn))
}

type openAIRequest struct {
	Model         string           `json:"model,omitempty"`
	Messages      []Message        `json:"messages"`
	Stream        bool             `json:"stream"`
	MaxTokens     int              `json:"max_tokens,omitempty"`
	Temperature   *float64         `json:"temperature,omitempty"`
	Stop          []string         `json:"stop,omitempty"`
	Seed          *int64           `json:"seed,omitempty"`
	StreamOptions *openAIStreamOpt `json:"stream_options,omitempty"`
}

type openAIStreamOpt struct {
	IncludeUsage bool `json:"include_usage"`
}

func (o *OpenAI) modelFor(req Request) string {
	if req.Model != "" {
		return req.Model
	}
	return o.model
}

// post sends req to /chat/completions.
func (o *OpenAI) post(ctx context.Context, req Request, stream bool) (*http.Response, error) {
	body := openAIRequest{
		Model:       o.modelFor(req),
		Messages:    chatMessages(req),
		Stream:      stream,
		MaxTokens:   req.MaxTokens,
		Temperature: req.Temperature,
		Stop:        req.Stop,
		Seed:        req.Seed,
	}
	h := http.Header{"Accept": {"application/json"}}
	if stream {
		body.StreamOptions = &openAIStreamOpt{IncludeUsage: true}
		h.Set("Accept", "text/event-stream")
	}
	if o.apiKey != "" {
		h.Set("Authorization", "Bearer "+o.apiKey)
	}
	return postJSON(ctx, o.client, "openai", o.baseURL+"/chat/completions", h, body)
}

// chatMessages is req's conversation: its Messages, or its Prompt as one
// user message.
func chatMessages(req Request) []Message {
	if len(req.Messages) > 0 {
		return req.Messages
	}
	return []Message{{Role: "user", Content: req.Prompt}}
}

type openAIUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func (u *openAIUsage) usage() Usage {
	r := Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	if r.TotalTokens == 0 {
		r.TotalTokens = r.PromptTokens + r.CompletionTokens
	}
	return r
}

type openAIResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *openAIUsage    `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// parseOpenAIResponse reads a whole (non-streamed) reply.
func parseOpenAIResponse(body []byte, model string) (Response, error) {
	var v openAIResponse
	if err := json.Unmarshal(body, &v); err != nil {
		return Response{}, fmt.Errorf("openai: malformed reply %q: %w", truncate(string(body), maxQuoted), err)
	}
	if err := streamError("openai", v.Error); err != nil {
		return Response{}, err
	}
	if len(v.Choices) == 0 {
		return Response{}, fmt.Errorf("openai: reply has no choices: %q", truncate(string(body), maxQuoted))
	}
	c := v.Choices[0]
	r := Response{Text: c.Message.Content, FinishReason: "stop", Model: v.Model}
	if c.FinishReason != nil && *c.FinishReason != "" {
		r.FinishReason = *c.FinishReason
	}
	if r.Model == "" {
		r.Model = model
	}
	if v.Usage != nil {
		r.Usage = v.Usage.usage()
	}
	return r, nil
}

type openAIChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *openAIUsage    `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// openAIStream is what a stream has told so far.
type openAIStream struct {
	finish string // the last finish_reason seen
	usage  *Usage
}

// readOpenAIStream reads events until "data: [DONE]", calling fn.
//
// A stream that ends without [DONE] is truncated, unless a finish_reason
// was seen: some servers (older llama.cpp) end the stream after the
// chunk with the finish_reason and never send [DONE], so then the stream
// ends normally.
func readOpenAIStream(ctx context.Context, sr *sseReader, fn func(Chunk) error) error {
	var st openAIStream
	for {
		data, err := sr.next()
		if err == io.EOF && st.finish != "" && ctx.Err() == nil {
			return fn(st.final())
		}
		if err != nil {
			return endError(ctx, "openai", err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("openai: %w", err)
		}
		if strings.TrimSpace(data) == "[DONE]" {
			return fn(st.final())
		}
		if err := st.event(data, fn); err != nil {
			return err
		}
	}
}

// event handles the data of one event.
func (st *openAIStream) event(data string, fn func(Chunk) error) error {
	if strings.TrimSpace(data) == "" {
		return nil // an empty "data:" carries nothing; ignore it
	}
	var c openAIChunk
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return fmt.Errorf("openai: malformed stream chunk %q: %w", truncate(data, maxQuoted), err)
	}
	if err := streamError("openai", c.Error); err != nil {
		return err
	}
	if c.Usage != nil {
		u := c.Usage.usage()
		st.usage = &u
	}
	if len(c.Choices) == 0 {
		return nil
	}
	ch := c.Choices[0]
	if ch.FinishReason != nil && *ch.FinishReason != "" {
		st.finish = *ch.FinishReason
	}
	if ch.Delta.Content == "" {
		return nil
	}
	return fn(Chunk{Content: ch.Delta.Content})
}

// final is the stream's last chunk.
func (st *openAIStream) final() Chunk {
	c := Chunk{Done: true, FinishReason: st.finish, Usage: st.usage}
	if c.FinishReason == "" {
		c.FinishReason = "stop"
	}
	return c
}
