// LLM providers: the Ollama HTTP client, over POST /api/chat (for
// Messages) and POST /api/generate (for a Prompt).

package llm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// OllamaOptions configures an Ollama client.
type OllamaOptions struct {
	// BaseURL is the server's root, "http://localhost:11434" when empty.
	BaseURL string
	// Model is used when a Request's Model is empty.
	Model string
	// HTTPClient defaults to a client with no overall timeout (streams are
	// long; cancel the context instead).
	HTTPClient *http.Client
}

// Ollama is a Provider for an Ollama server. It is safe for concurrent
// use.
type Ollama struct {
	baseURL string
	model   string
	client  *http.Client
}

var _ Provider = (*Ollama)(nil)

// NewOllama returns a client for an Ollama server.
func NewOllama(opts OllamaOptions) *Ollama {
	o := &Ollama{
		baseURL: strings.TrimRight(opts.BaseURL, "/"),
		model:   opts.Model,
		client:  opts.HTTPClient,
	}
	if o.baseURL == "" {
		o.baseURL = "http://localhost:11434"
	}
	if o.client == nil {
		o.client = newHTTPClient()
	}
	return o
}

// Generate asks for the whole reply at once.
func (o *Ollama) Generate(ctx context.Context, req Request) (Response, error) {
	resp, err := o.post(ctx, req, false)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	body, err := readBody(ctx, "ollama", resp)
	if err != nil {
		return Response{}, err
	}
	return parseOllamaResponse(body, o.modelFor(req))
}

// Stream asks for the reply as NDJSON lines and calls fn with each piece;
// see Provider.
func (o *Ollama) Stream(ctx context.Context, req Request, fn func(Chunk) error) error {
	resp, err := o.post(ctx, req, true)
	if err != nil {
		return err
	}
	return finishStream(resp.Body, readOllamaStream(ctx, newNDJSONReader(resp.Body), fn))
}

type ollamaRequest struct {
	Model    string         `json:"model"`
	Messages []Message      `json:"messages,omitempty"`
	Prompt   string         `json:"prompt,omitempty"`
	Stream   bool           `json:"stream"`
	Options  *ollamaOptions `json:"options,omitempty"`
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

// post sends req to /api/chat when it has Messages, else to /api/generate.
func (o *Ollama) post(ctx context.Context, req Request, stream bool) (*http.Response, error) {
	body := ollamaRequest{Model: o.modelFor(req), Stream: stream, Options: ollamaOptionsFor(req)}
	path := "/api/generate"
	if len(req.Messages) > 0 {
		body.Messages, path = req.Messages, "/api/chat"
	} else {
		body.Prompt = req.Prompt
	}
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
// fills Response, /api/chat fills Message.
type ollamaLine struct {
	Model    string `json:"model"`
	Response string `json:"response"`
	Message  *struct {
		Content string `json:"content"`
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

// parseOllamaResponse reads a whole (non-streamed) reply.
func parseOllamaResponse(body []byte, model string) (Response, error) {
	var l ollamaLine
	if err := json.Unmarshal(body, &l); err != nil {
		return Response{}, fmt.Errorf("ollama: malformed reply %q: %w", truncate(string(body), maxQuoted), err)
	}
	if err := streamError("ollama", l.Error); err != nil {
		return Response{}, err
	}
	r := Response{Text: l.text(), FinishReason: l.reason(), Model: l.Model}
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
		if t := l.text(); t != "" {
			if err := fn(Chunk{Content: t}); err != nil {
				return err
			}
		}
		if l.Done {
			return fn(Chunk{Done: true, FinishReason: l.reason(), Usage: l.usage()})
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
