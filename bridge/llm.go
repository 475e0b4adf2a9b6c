package bridge

// The Lua face of an llm.Provider: RegisterLLM and the decoding of its
// arguments and options. generate_all is Lua (luamod/moonbridge.llm.lua),
// built on generate and the task module.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/moonbridge/moonbridge/bridge/llm"
)

// RegisterLLM makes p available to Lua as the module name:
//
//	local llm = require("llm")
//	local text, info = llm.generate("Write a haiku", {max_tokens = 64})
//	for chunk in llm.stream("Tell a story") do io.write(chunk.content) end
//	local reply = llm.chat({{role = "user", content = "hi"}})
//	local answers = llm.generate_all({"q1", "q2", "q3"}, {concurrency = 8})
//
// generate, stream and chat take a prompt string or a list of messages
// ({role=, content=}) and an optional options table: model (string),
// max_tokens (integer), temperature (number), stop (string or list of
// strings), seed (integer). A misspelt or mistyped option raises a bridge
// error naming it. generate and chat return the reply's text and an info
// table {finish_reason=, model=, usage={prompt_tokens=, completion_tokens=,
// total_tokens=}}. stream gives chunk tables {content=, done=}; the last
// has done = true, finish_reason and, where reported, usage. Leaving the
// for loop early cancels the request. generate_all(list, opts) runs
// generate over list with at most opts.concurrency (default 4) requests in
// flight and returns the texts in input order; opts.on_result(i, text,
// info), if given, is called as each finishes; the first error cancels the
// rest and is raised.
func (rt *Runtime) RegisterLLM(name string, p llm.Provider) error {
	if p == nil {
		return fmt.Errorf("moonbridge: RegisterLLM %q: nil provider", name)
	}
	if err := checkName(name); err != nil {
		return err
	}
	generate := func(ctx context.Context, args Args) ([]any, error) {
		req, err := llmRequest(args)
		if err != nil {
			return nil, err
		}
		resp, err := p.Generate(ctx, req)
		if err != nil {
			return nil, err
		}
		return []any{resp.Text, llmInfo(resp)}, nil
	}
	stream := func(ctx context.Context, args Args, emit func(any) error) error {
		req, err := llmRequest(args)
		if err != nil {
			return err
		}
		// emit encodes its value before it returns, so one table serves
		// every chunk but the last: no allocation per token.
		part := map[string]any{"content": "", "done": false}
		return p.Stream(ctx, req, func(c llm.Chunk) error {
			if c.Done {
				return emit(llmChunk(c))
			}
			part["content"] = c.Content
			return emit(part)
		})
	}
	chat := func(ctx context.Context, args Args) ([]any, error) {
		if _, ok := args.Get(0).([]any); !ok {
			return nil, args.bad(0, "list of messages")
		}
		return generate(ctx, args)
	}
	for _, err := range []error{
		rt.RegisterFunc(name+".generate", generate),
		rt.RegisterStream(name+".stream", stream),
		rt.RegisterFunc(name+".chat", chat),
	} {
		if err != nil {
			return err
		}
	}
	// generate_all and friends are Lua; they find generate in the module.
	src := fmt.Sprintf("require(%q).extend(require(%q), %q)", "moonbridge.llm", name, name)
	return rt.RunString(context.Background(), "RegisterLLM", src)
}

// llmRequest reads the arguments shared by generate, stream and chat:
// a prompt or a list of messages, then the options.
func llmRequest(args Args) (llm.Request, error) {
	var req llm.Request
	switch v := args.Get(0).(type) {
	case string:
		req.Prompt = v
	case []any:
		msgs, err := llmMessages(v)
		if err != nil {
			return req, fmt.Errorf("bad argument #1 (%w)", err)
		}
		req.Messages = msgs
	default:
		return req, args.bad(0, "prompt string or list of messages")
	}
	if args.Len() < 2 || args.Get(1) == nil {
		return req, nil
	}
	opts, err := args.Map(1)
	if err != nil {
		return req, args.bad(1, "options table")
	}
	return req, llmOptions(&req, opts)
}

func llmMessages(list []any) ([]llm.Message, error) {
	if len(list) == 0 {
		return nil, errors.New("the list of messages is empty")
	}
	msgs := make([]llm.Message, len(list))
	for i, v := range list {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("message %d is a %s, not a table {role=, content=}", i+1, luaType(v))
		}
		role, ok1 := m["role"].(string)
		content, ok2 := m["content"].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("message %d needs string fields role and content", i+1)
		}
		msgs[i] = llm.Message{Role: role, Content: content}
	}
	return msgs, nil
}

// llmOptionNames are the options generate, stream and chat accept, sorted.
var llmOptionNames = []string{"max_tokens", "model", "seed", "stop", "temperature"}

// llmOptions applies opts to req; the error names the option at fault.
func llmOptions(req *llm.Request, opts map[string]any) error {
	for k, v := range opts {
		var err error
		switch k {
		case "model":
			req.Model, err = optString(v)
		case "max_tokens":
			var n int64
			n, err = optInt(v)
			if err == nil && (n < 0 || n > math.MaxInt32) {
				err = fmt.Errorf("must be between 0 and %d, got %d", math.MaxInt32, n)
			}
			req.MaxTokens = int(n)
		case "temperature":
			var t float64
			t, err = optFloat(v)
			if err == nil && (t < 0 || math.IsNaN(t)) {
				err = fmt.Errorf("must be a number >= 0, got %v", t)
			}
			req.Temperature = &t
		case "stop":
			req.Stop, err = optStrings(v)
		case "seed":
			var s int64
			s, err = optInt(v)
			req.Seed = &s
		default:
			return fmt.Errorf("unknown option %q (options are %s)", k, strings.Join(llmOptionNames, ", "))
		}
		if err != nil {
			return fmt.Errorf("option '%s' %w", k, err)
		}
	}
	return nil
}

func optString(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("must be a string, got %s", luaType(v))
}

func optInt(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case float64:
		if n == math.Trunc(n) && n >= math.MinInt64 && n < math.MaxInt64 {
			return int64(n), nil
		}
		return 0, fmt.Errorf("must be an integer, got %v", n)
	}
	return 0, fmt.Errorf("must be an integer, got %s", luaType(v))
}

func optFloat(v any) (float64, error) {
	switch n := v.(type) {
	case int64:
		return float64(n), nil
	case float64:
		return n, nil
	}
	return 0, fmt.Errorf("must be a number, got %s", luaType(v))
}

func optStrings(v any) ([]string, error) {
	switch s := v.(type) {
	case string:
		return []string{s}, nil
	case []any:
		out := make([]string, len(s))
		for i, x := range s {
			str, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("must be a string or a list of strings, got a %s at %d", luaType(x), i+1)
			}
			out[i] = str
		}
		return out, nil
	case map[string]any:
		if len(s) == 0 {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("must be a string or a list of strings, got %s", luaType(v))
}

// llmInfo is generate's second result.
func llmInfo(r llm.Response) map[string]any {
	info := map[string]any{"finish_reason": r.FinishReason, "usage": llmUsage(r.Usage)}
	if r.Model != "" {
		info["model"] = r.Model
	}
	return info
}

func llmUsage(u llm.Usage) map[string]any {
	return map[string]any{
		"prompt_tokens":     int64(u.PromptTokens),
		"completion_tokens": int64(u.CompletionTokens),
		"total_tokens":      int64(u.TotalTokens),
	}
}

// llmChunk is the last chunk as the Lua for loop sees it.
func llmChunk(c llm.Chunk) map[string]any {
	m := map[string]any{"content": c.Content, "done": true, "finish_reason": c.FinishReason}
	if c.Usage != nil {
		m["usage"] = llmUsage(*c.Usage)
	}
	return m
}
