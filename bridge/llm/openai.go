// LLM providers: the OpenAI-compatible HTTP client (OpenAI, llama.cpp
// server, vLLM and the like), over POST /chat/completions.

package llm

import (
	"context"
	"encoding/json"
	"errors"
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
	// Model is used when a Request's Model is empty. OpenAI and vLLM need
	// one; llama.cpp's server does not.
	Model string
	// HTTPClient defaults to a client with no overall timeout (streams are
	// long; cancel the context instead).
	HTTPClient *http.Client
	// MaxCompletionTokens sends Request.MaxTokens as
	// "max_completion_tokens" instead of "max_tokens". OpenAI's reasoning
	// models (o1, o3, gpt-5 ...) refuse max_tokens and need it; llama.cpp,
	// vLLM, Ollama and older servers read max_tokens, the default.
	MaxCompletionTokens bool
	// Retry is the retry policy for failed requests; the zero value retries
	// twice (see RetryPolicy). Attempts: 1 turns retries off.
	Retry RetryPolicy
}

// OpenAI is a Provider for servers that speak OpenAI's chat completions
// API. It is safe for concurrent use.
type OpenAI struct {
	baseURL       string
	apiKey        string
	model         string
	client        *http.Client
	maxCompletion bool
	retry         RetryPolicy
}

var _ Provider = (*OpenAI)(nil)

// NewOpenAI returns a client for an OpenAI-compatible server.
func NewOpenAI(opts OpenAIOptions) *OpenAI {
	o := &OpenAI{
		baseURL:       openAIBaseURL(opts.BaseURL),
		apiKey:        opts.APIKey,
		model:         opts.Model,
		client:        opts.HTTPClient,
		maxCompletion: opts.MaxCompletionTokens,
		retry:         opts.Retry,
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
	body, err := o.body(req, false)
	if err != nil {
		return Response{}, err
	}
	var r Response
	err = o.retry.do(ctx, func() (bool, error) {
		resp, err := o.post(ctx, body, req, false)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, err := readBody(ctx, "openai", resp)
		if err != nil {
			return false, err
		}
		r, err = parseOpenAIResponse(b, o.modelFor(req))
		return false, err
	})
	return r, err
}

// Stream asks for the reply as server-sent events and calls fn with each
// piece; see Provider.
func (o *OpenAI) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	body, err := o.body(req, true)
	if err != nil {
		return err
	}
	return o.retry.do(ctx, func() (bool, error) {
		resp, err := o.post(ctx, body, req, true)
		if err != nil {
			return false, err
		}
		started := false
		err = readOpenAIStream(ctx, newSSEReader(resp.Body), func(c Chunk) error {
			started = true
			return fn(c)
		})
		return started, finishStream(resp.Body, err)
	})
}

type openAIRequest struct {
	Model               string                `json:"model,omitempty"`
	Messages            []openAIMessage       `json:"messages"`
	Stream              bool                  `json:"stream"`
	MaxTokens           int                   `json:"max_tokens,omitempty"`
	MaxCompletionTokens int                   `json:"max_completion_tokens,omitempty"`
	Temperature         *float64              `json:"temperature,omitempty"`
	Stop                []string              `json:"stop,omitempty"`
	Seed                *int64                `json:"seed,omitempty"`
	Tools               []openAITool          `json:"tools,omitempty"`
	ToolChoice          any                   `json:"tool_choice,omitempty"`
	ResponseFormat      *openAIResponseFormat `json:"response_format,omitempty"`
	StreamOptions       *openAIStreamOpt      `json:"stream_options,omitempty"`
}

type openAIStreamOpt struct {
	IncludeUsage bool `json:"include_usage"`
}

// openAIMessage is a Message on the wire. An assistant message that only
// calls tools has content null.
type openAIMessage struct {
	Role       string           `json:"role"`
	Content    *string          `json:"content"`
	ToolCalls  []openAIToolCall `json:"tool_calls,omitempty"`
	ToolCallID string           `json:"tool_call_id,omitempty"`
}

type openAIToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"` // a JSON object, as a string
	} `json:"function"`
}

type openAITool struct {
	Type     string         `json:"type"`
	Function openAIFunction `json:"function"`
}

type openAIFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

type openAIResponseFormat struct {
	Type       string `json:"type"`
	JSONSchema struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict bool            `json:"strict"`
	} `json:"json_schema"`
}

func (o *OpenAI) modelFor(req Request) string {
	if req.Model != "" {
		return req.Model
	}
	return o.model
}

// body encodes req for /chat/completions.
func (o *OpenAI) body(req Request, stream bool) ([]byte, error) {
	b := openAIRequest{
		Model:       o.modelFor(req),
		Messages:    openAIMessages(chatMessages(req)),
		Stream:      stream,
		Temperature: req.Temperature,
		Stop:        req.Stop,
		Seed:        req.Seed,
		ToolChoice:  openAIToolChoice(req.ToolChoice),
	}
	if o.maxCompletion {
		b.MaxCompletionTokens = req.MaxTokens
	} else {
		b.MaxTokens = req.MaxTokens
	}
	for _, t := range req.Tools {
		b.Tools = append(b.Tools, openAITool{Type: "function", Function: openAIFunction{t.Name, t.Description, t.Parameters}})
	}
	if len(req.Schema) > 0 {
		f := &openAIResponseFormat{Type: "json_schema"}
		f.JSONSchema.Name = schemaName(req.SchemaName)
		f.JSONSchema.Schema, f.JSONSchema.Strict = StrictSchema(req.Schema)
		b.ResponseFormat = f
	}
	if stream {
		b.StreamOptions = &openAIStreamOpt{IncludeUsage: true}
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("openai: encoding request: %w", err)
	}
	return out, nil
}

// post sends an encoded request to /chat/completions.
func (o *OpenAI) post(ctx context.Context, body []byte, req Request, stream bool) (*http.Response, error) {
	h := http.Header{"Accept": {"application/json"}}
	if stream {
		h.Set("Accept", "text/event-stream")
	}
	if o.apiKey != "" {
		h.Set("Authorization", "Bearer "+o.apiKey)
	}
	resp, err := postJSON(ctx, o.client, "openai", o.baseURL+"/chat/completions", h, body)
	var ae *APIError
	if err != nil && o.modelFor(req) == "" && errors.As(err, &ae) &&
		(ae.StatusCode == http.StatusBadRequest || ae.StatusCode == http.StatusNotFound || ae.StatusCode == http.StatusUnprocessableEntity) {
		ae.Message += " (the request named no model: set option model in Lua, OpenAIOptions.Model in Go, or --model)"
	}
	return resp, err
}

// openAIToolChoice is tool_choice on the wire: the mode as a string, or
// the object naming the one tool.
func openAIToolChoice(c string) any {
	switch c {
	case "":
		return nil
	case "auto", "none", "required":
		return c
	}
	return map[string]any{"type": "function", "function": map[string]string{"name": c}}
}

// schemaName is the name a structured-output request gives its schema.
func schemaName(n string) string {
	if n == "" {
		return "reply"
	}
	return n
}

// chatMessages is req's conversation: its Messages, or its Prompt as one
// user message.
func chatMessages(req Request) []Message {
	if len(req.Messages) > 0 {
		return req.Messages
	}
	return []Message{{Role: "user", Content: req.Prompt}}
}

func openAIMessages(msgs []Message) []openAIMessage {
	out := make([]openAIMessage, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		w := openAIMessage{Role: m.Role, ToolCallID: m.ToolCallID}
		if m.Content != "" || len(m.ToolCalls) == 0 {
			w.Content = &m.Content
		}
		for _, c := range m.ToolCalls {
			var tc openAIToolCall
			tc.ID, tc.Type = c.ID, "function"
			tc.Function.Name = c.Name
			tc.Function.Arguments = string(c.Arguments)
			if len(c.Arguments) == 0 {
				tc.Function.Arguments = "{}"
			}
			w.ToolCalls = append(w.ToolCalls, tc)
		}
		out[i] = w
	}
	return out
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

// openAIText is the text fields of a message or of a delta. Reasoning
// comes as reasoning_content (DeepSeek, vLLM, llama.cpp) or reasoning
// (OpenRouter, newer vLLM).
type openAIText struct {
	Content          string `json:"content"`
	Refusal          string `json:"refusal"`
	ReasoningContent string `json:"reasoning_content"`
	Reasoning        string `json:"reasoning"`
}

func (t *openAIText) reasoning() string {
	if t.ReasoningContent != "" {
		return t.ReasoningContent
	}
	return t.Reasoning
}

type openAIResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			openAIText
			ToolCalls []toolDelta `json:"tool_calls"`
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
	c := &v.Choices[0]
	m := &c.Message
	r := Response{Text: m.Content, Refusal: m.Refusal, Reasoning: m.reasoning(), FinishReason: "stop", Model: v.Model}
	if c.FinishReason != nil && *c.FinishReason != "" {
		r.FinishReason = *c.FinishReason
	}
	var a toolAssembler
	for i := range m.ToolCalls {
		if m.ToolCalls[i].Index == nil {
			m.ToolCalls[i].Index = &i // whole calls: each its own
		}
		a.add(&m.ToolCalls[i])
	}
	calls, err := a.result("openai")
	if err != nil {
		return Response{}, err
	}
	if len(calls) > 0 {
		r.ToolCalls, r.FinishReason = calls, "tool_calls"
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
			openAIText
			ToolCalls []toolDelta `json:"tool_calls"`
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
	tools  toolAssembler
	events int // JSON events read
}

// readOpenAIStream reads events until "data: [DONE]", calling fn.
//
// A stream that ends without [DONE] is truncated, unless a finish_reason
// was seen: some servers (older llama.cpp) end the stream after the
// chunk with the finish_reason and never send [DONE], so then the stream
// ends normally. A stream of nothing but [DONE] is an error: it is no
// reply, empty or not.
func readOpenAIStream(ctx context.Context, sr *sseReader, fn func(Chunk) error) error {
	var st openAIStream
	for {
		data, err := sr.next()
		if err == io.EOF && st.finish != "" && ctx.Err() == nil {
			return st.end(fn)
		}
		if err != nil {
			return endError(ctx, "openai", err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("openai: %w", err)
		}
		if strings.TrimSpace(data) == "[DONE]" {
			if st.events == 0 {
				return fmt.Errorf("openai: %w", ErrEmptyStream)
			}
			return st.end(fn)
		}
		if sr.Event == "error" {
			return eventError(data)
		}
		if err := st.event(data, fn); err != nil {
			return err
		}
	}
}

// eventError is the error an "error" event reports (llama.cpp): its data
// is an error object, bare or under "error", or text.
func eventError(data string) error {
	var v struct {
		Error json.RawMessage `json:"error"`
	}
	raw := json.RawMessage(data)
	if json.Unmarshal(raw, &v) == nil && len(v.Error) > 0 {
		raw = v.Error
	} else if !json.Valid(raw) {
		raw, _ = json.Marshal(data)
	}
	if err := streamError("openai", raw); err != nil {
		return err
	}
	return &APIError{Provider: "openai", StatusCode: http.StatusOK, Message: "error event in the stream"}
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
	st.events++
	if c.Usage != nil {
		u := c.Usage.usage()
		st.usage = &u
	}
	if len(c.Choices) == 0 {
		return nil // a usage-only chunk: choices [] or null
	}
	ch := &c.Choices[0]
	if ch.FinishReason != nil && *ch.FinishReason != "" {
		st.finish = *ch.FinishReason
	}
	for i := range ch.Delta.ToolCalls {
		st.tools.add(&ch.Delta.ToolCalls[i])
	}
	d := &ch.Delta
	if d.Content == "" && d.Refusal == "" && d.reasoning() == "" {
		return nil
	}
	return fn(Chunk{Content: d.Content, Refusal: d.Refusal, Reasoning: d.reasoning()})
}

// end sends the stream's last chunk. Whether tool calls were seen decides
// the finish reason: Ollama's compatible endpoint says "stop" after them.
func (st *openAIStream) end(fn func(Chunk) error) error {
	c := Chunk{Done: true, FinishReason: st.finish, Usage: st.usage}
	calls, err := st.tools.result("openai")
	if err != nil {
		return err
	}
	if len(calls) > 0 {
		c.ToolCalls, c.FinishReason = calls, "tool_calls"
	}
	if c.FinishReason == "" {
		c.FinishReason = "stop"
	}
	return fn(c)
}
