// LLM providers: the Ollama HTTP client, over POST /api/chat (for
// Messages) and POST /api/generate (for a Prompt).

package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// OllamaOptions configures an Ollama client.
type OllamaOptions struct {
	// BaseURL is the server's root, "http://localhost:11434" when empty.
	BaseURL string
	// Model is used when a Request's Model is empty; Ollama needs one.
	Model string
	// HTTPClient defaults to a client with no overall timeout (streams are
	// long; cancel the context instead).
	HTTPClient *http.Client
	// Retry is the retry policy for failed requests; the zero value retries
	// twice (see RetryPolicy). Attempts: 1 turns retries off.
	Retry RetryPolicy
}

// Ollama is a Provider for an Ollama server. It is safe for concurrent
// use. Tools go to /api/chat with their schemas; Ollama has no
// tool_choice, so "none" sends no tools and "required" or a tool's name
// is only a wish. A Schema is sent as format.
type Ollama struct {
	baseURL string
	model   string
	client  *http.Client
	retry   RetryPolicy
}

var _ Provider = (*Ollama)(nil)

// NewOllama returns a client for an Ollama server.
func NewOllama(opts OllamaOptions) *Ollama {
	o := &Ollama{
		baseURL: strings.TrimRight(opts.BaseURL, "/"),
		model:   opts.Model,
		client:  opts.HTTPClient,
		retry:   opts.Retry,
	}
	if o.baseURL == "" {
		o.baseURL = "http://localhost:11434"
	}
	if o.client == nil {
		o.client = newHTTPClient()
	}
	return o
}

// errNoOllamaModel reports a request that names no model.
var errNoOllamaModel = errors.New("ollama: no model: set option model in Lua, OllamaOptions.Model in Go, or --model")

// Generate asks for the whole reply at once.
func (o *Ollama) Generate(ctx context.Context, req Request) (Response, error) {
	path, body, err := o.body(req, false)
	if err != nil {
		return Response{}, err
	}
	var r Response
	err = o.retry.do(ctx, func() (bool, error) {
		resp, err := o.post(ctx, path, body, false)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, err := readBody(ctx, "ollama", resp)
		if err != nil {
			return false, err
		}
		r, err = parseOllamaResponse(b, o.modelFor(req))
		return false, err
	})
	return r, err
}

// Stream asks for the reply as NDJSON lines and calls fn with each piece;
// see Provider.
func (o *Ollama) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	path, body, err := o.body(req, true)
	if err != nil {
		return err
	}
	return o.retry.do(ctx, func() (bool, error) {
		resp, err := o.post(ctx, path, body, true)
		if err != nil {
			return false, err
		}
		started := false
		err = readOllamaStream(ctx, newNDJSONReader(resp.Body), func(c Chunk) error {
			started = true
			return fn(c)
		})
		return started, finishStream(resp.Body, err)
	})
}

type ollamaRequest struct {
	Model    string          `json:"model"`
	Messages []ollamaMessage `json:"messages,omitempty"`
	Prompt   string          `json:"prompt,omitempty"`
	Stream   bool            `json:"stream"`
	Tools    []openAITool    `json:"tools,omitempty"` // the same shape as OpenAI's
	Format   json.RawMessage `json:"format,omitempty"`
	Options  *ollamaOptions  `json:"options,omitempty"`
}

type ollamaMessage struct {
	Role      string           `json:"role"`
	Content   string           `json:"content"`
	ToolCalls []ollamaToolCall `json:"tool_calls,omitempty"`
	ToolName  string           `json:"tool_name,omitempty"` // of a tool message
}

type ollamaToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"` // an object
	} `json:"function"`
}

type ollamaOptions struct {
	NumPredict  int      `json:"num_predict,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	Stop        []string `json:"stop,omitempty"`
	Seed        *int64   `json:"seed,omitempty"`
}

func (o *Ollama) modelFor(req Request) string {
	if req.Model != "" {
		return req.Model
	}
	return o.model
}

// body encodes req, for /api/chat when it has Messages or Tools, else for
// /api/generate.
func (o *Ollama) body(req Request, stream bool) (path string, body []byte, err error) {
	b := ollamaRequest{Model: o.modelFor(req), Stream: stream, Options: ollamaOptionsFor(req), Format: req.Schema}
	if b.Model == "" {
		return "", nil, errNoOllamaModel
	}
	path = "/api/generate"
	if len(req.Messages) > 0 || len(req.Tools) > 0 {
		b.Messages, path = ollamaMessages(chatMessages(req)), "/api/chat"
	} else {
		b.Prompt = req.Prompt
	}
	if req.ToolChoice != "none" {
		for _, t := range req.Tools {
			b.Tools = append(b.Tools, openAITool{Type: "function", Function: openAIFunction{t.Name, t.Description, t.Parameters}})
		}
	}
	body, err = json.Marshal(b)
	if err != nil {
		return "", nil, fmt.Errorf("ollama: encoding request: %w", err)
	}
	return path, body, nil
}

// ollamaMessages puts messages on the wire; a tool message carries the
// name of the tool whose call it answers.
func ollamaMessages(msgs []Message) []ollamaMessage {
	names := map[string]string{}
	out := make([]ollamaMessage, len(msgs))
	for i, m := range msgs {
		w := ollamaMessage{Role: m.Role, Content: m.Content}
		for _, c := range m.ToolCalls {
			var tc ollamaToolCall
			tc.Function.Name, tc.Function.Arguments = c.Name, c.Arguments
			if len(tc.Function.Arguments) == 0 {
				tc.Function.Arguments = json.RawMessage("{}")
			}
			w.ToolCalls = append(w.ToolCalls, tc)
			names[c.ID] = c.Name
		}
		if m.Role == "tool" {
			w.ToolName = names[m.ToolCallID]
		}
		out[i] = w
	}
	return out
}

// post sends an encoded request.
func (o *Ollama) post(ctx context.Context, path string, body []byte, stream bool) (*http.Response, error) {
	accept := "application/json"
	if stream {
		accept = "application/x-ndjson"
	}
	h := http.Header{"Accept": {accept}}
	return postJSON(ctx, o.client, "ollama", o.baseURL+path, h, body)
}

// ollamaOptionsFor is req's sampling options, or nil when it sets none.
func ollamaOptionsFor(req Request) *ollamaOptions {
	opts := ollamaOptions{NumPredict: req.MaxTokens, Temperature: req.Temperature, Stop: req.Stop, Seed: req.Seed}
	if opts.NumPredict == 0 && opts.Temperature == nil && len(opts.Stop) == 0 && opts.Seed == nil {
		return nil
	}
	return &opts
}

// ollamaLine is one line of a stream, or a whole reply; /api/generate
// fills Response (and Thinking), /api/chat fills Message.
type ollamaLine struct {
	Model    string `json:"model"`
	Response string `json:"response"`
	Thinking string `json:"thinking"`
	Message  *struct {
		Content   string           `json:"content"`
		Thinking  string           `json:"thinking"`
		ToolCalls []ollamaToolCall `json:"tool_calls"`
	} `json:"message"`
	Done            bool            `json:"done"`
	DoneReason      string          `json:"done_reason"`
	PromptEvalCount int             `json:"prompt_eval_count"`
	EvalCount       int             `json:"eval_count"`
	Error           json.RawMessage `json:"error"`
}

func (l *ollamaLine) text() string {
	if l.Message != nil {
		return l.Message.Content
	}
	return l.Response
}

func (l *ollamaLine) thinking() string {
	if l.Message != nil {
		return l.Message.Thinking
	}
	return l.Thinking
}

func (l *ollamaLine) reason() string {
	if l.DoneReason == "" {
		return "stop"
	}
	return l.DoneReason
}

// usage is the counts of a last line, or nil when it has none.
func (l *ollamaLine) usage() *Usage {
	if l.PromptEvalCount == 0 && l.EvalCount == 0 {
		return nil
	}
	return &Usage{
		PromptTokens:     l.PromptEvalCount,
		CompletionTokens: l.EvalCount,
		TotalTokens:      l.PromptEvalCount + l.EvalCount,
	}
}

// ollamaCalls collects the whole tool calls Ollama sends, with object
// arguments, in lines before the last.
type ollamaCalls struct{ calls []ToolCall }

func (c *ollamaCalls) add(l *ollamaLine) error {
	if l.Message == nil {
		return nil
	}
	for _, tc := range l.Message.ToolCalls {
		args, err := toolArguments(tc.Function.Arguments)
		if err != nil {
			return fmt.Errorf("ollama: tool call %d (%q): %w", len(c.calls)+1, tc.Function.Name, err)
		}
		if tc.Function.Name == "" {
			return fmt.Errorf("ollama: tool call %d has no function name", len(c.calls)+1)
		}
		id := tc.ID
		if id == "" {
			id = "call_" + strconv.Itoa(len(c.calls)+1)
		}
		c.calls = append(c.calls, ToolCall{ID: id, Name: tc.Function.Name, Arguments: args})
	}
	return nil
}

// parseOllamaResponse reads a whole (non-streamed) reply.
func parseOllamaResponse(body []byte, model string) (Response, error) {
	var l ollamaLine
	if err := json.Unmarshal(body, &l); err != nil {
		return Response{}, fmt.Errorf("ollama: malformed reply %q: %w", truncate(string(body), maxQuoted), err)
	}
	if err := streamError("ollama", l.Error); err != nil {
		return Response{}, err
	}
	r := Response{Text: l.text(), Reasoning: l.thinking(), FinishReason: l.reason(), Model: l.Model}
	var calls ollamaCalls
	if err := calls.add(&l); err != nil {
		return Response{}, err
	}
	if len(calls.calls) > 0 {
		r.ToolCalls, r.FinishReason = calls.calls, "tool_calls"
	}
	if r.Model == "" {
		r.Model = model
	}
	if u := l.usage(); u != nil {
		r.Usage = *u
	}
	return r, nil
}

// readOllamaStream reads lines until one with "done": true, calling fn.
func readOllamaStream(ctx context.Context, nr *ndjsonReader, fn func(Chunk) error) error {
	var calls ollamaCalls
	for {
		line, err := nr.next()
		if err != nil {
			return endError(ctx, "ollama", err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ollama: %w", err)
		}
		l, err := decodeOllamaLine(line, nr.unended)
		if err != nil {
			return err
		}
		if err := calls.add(l); err != nil {
			return err
		}
		if t, th := l.text(), l.thinking(); t != "" || th != "" {
			if err := fn(Chunk{Content: t, Reasoning: th}); err != nil {
				return err
			}
		}
		if l.Done {
			c := Chunk{Done: true, FinishReason: l.reason(), Usage: l.usage()}
			if len(calls.calls) > 0 {
				c.ToolCalls, c.FinishReason = calls.calls, "tool_calls"
			}
			return fn(c)
		}
	}
}

// decodeOllamaLine parses one stream line. A bad line that the input's end
// cut off is a truncated stream, not a malformed one.
func decodeOllamaLine(line []byte, unended bool) (*ollamaLine, error) {
	var l ollamaLine
	if err := json.Unmarshal(line, &l); err != nil {
		q := truncate(string(line), maxQuoted)
		if unended {
			return nil, fmt.Errorf("ollama: malformed stream line %q at the end of the stream: %w: %w", q, ErrTruncated, err)
		}
		return nil, fmt.Errorf("ollama: malformed stream line %q: %w", q, err)
	}
	if err := streamError("ollama", l.Error); err != nil {
		return nil, err
	}
	return &l, nil
}
