package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// wireWant is what a fixture stream must assemble into.
type wireWant struct {
	text, reasoning, refusal, finish string
	calls                            []ToolCall
	usage                            *Usage
	err                              string // a substring of the error, if one
	apiErr                           *APIError
}

func tc(id, name, args string) ToolCall {
	return ToolCall{ID: id, Name: name, Arguments: json.RawMessage(args)}
}

// TestOpenAIWireFixtures replays each testdata/wire/*.sse stream from a
// test server, whole and a byte at a time, through Stream and Generate's
// stream path, and checks what was assembled.
func TestOpenAIWireFixtures(t *testing.T) {
	for file, want := range map[string]wireWant{
		"openai_tool_calls.sse": {finish: "tool_calls", usage: &Usage{82, 41, 123},
			calls: []ToolCall{tc("call_abc", "get_weather", `{"city":"Paris"}`), tc("call_def", "get_time", `{"city":"Paris","utc":false}`)}},
		"vllm_repeated_id.sse": {finish: "tool_calls", usage: &Usage{30, 12, 42},
			calls: []ToolCall{tc("chatcmpl-tool-7", "search", `{"query":"tides"}`)}},
		"qwen_reused_index.sse": {finish: "tool_calls",
			calls: []ToolCall{tc("call_1a", "add", `{"a":1,"b":2}`), tc("call_2b", "mul", `{"a":3,"b":4}`)}},
		"same_index_in_one_chunk.sse": {finish: "tool_calls", calls: []ToolCall{tc("c1", "lookup", `{"key":"moon"}`)}},
		"proxy_index_one.sse": {finish: "tool_calls",
			calls: []ToolCall{tc("call_1", "first", `{}`), tc("call_2", "second", `{}`)}},
		"ollama_compat_stop.sse": {finish: "tool_calls", calls: []ToolCall{tc("call_x1", "get_weather", `{"city":"Lima"}`)}},
		"refusal.sse":            {finish: "stop", refusal: "I'm sorry, I can't help with that."},
		"reasoning.sse": {finish: "stop", text: "7", reasoning: "The user asks for a number. Seven.",
			usage: &Usage{5, 9, 14}},
		"midstream_error.sse": {text: "Once", apiErr: &APIError{Provider: "openai", StatusCode: 200,
			Message: "The server had an error while processing your request.", Type: "server_error"}},
		"llamacpp_error.sse": {text: "Once", apiErr: &APIError{Provider: "openai", StatusCode: 200,
			Message: "the request exceeds the available context size", Type: "exceed_context_size_error"}},
		"event_error.sse": {text: "Once", apiErr: &APIError{Provider: "openai", StatusCode: 200,
			Message: "upstream timed out", Type: "timeout"}},
		"done_only.sse":     {err: "the stream ended ([DONE]) without a reply"},
		"bad_arguments.sse": {err: `openai: tool call 1 ("f"): arguments are not valid JSON: "{\"a\":"`},
	} {
		body, err := os.ReadFile(filepath.Join("testdata", "wire", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, bytewise := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/bytewise=%v", file, bytewise), func(t *testing.T) {
				ht := sseServer(t, string(body), bytewise)
				p := newOpenAITest(ht.srv.URL, ht.client)
				cs, err := collect(p, Request{Prompt: "hi"})
				checkWire(t, cs, err, want)
			})
		}
	}
}

func checkWire(t *testing.T, cs []Chunk, err error, want wireWant) {
	t.Helper()
	var text, reasoning, refusal strings.Builder
	var last Chunk
	for _, c := range cs {
		text.WriteString(c.Content)
		reasoning.WriteString(c.Reasoning)
		refusal.WriteString(c.Refusal)
		if c.Done {
			last = c
		}
		if !c.Done && len(c.ToolCalls) > 0 {
			t.Errorf("tool calls before the last chunk: %+v", c)
		}
	}
	if text.String() != want.text || reasoning.String() != want.reasoning || refusal.String() != want.refusal {
		t.Errorf("text %q reasoning %q refusal %q; want %q %q %q", text.String(), reasoning.String(), refusal.String(),
			want.text, want.reasoning, want.refusal)
	}
	switch {
	case want.apiErr != nil:
		var ae *APIError
		if !errors.As(err, &ae) || *ae != *want.apiErr {
			t.Errorf("err = %#v, want %#v", err, want.apiErr)
		}
		return
	case want.err != "":
		if err == nil || !strings.Contains(err.Error(), want.err) {
			t.Errorf("err = %v, want %q", err, want.err)
		}
		return
	case err != nil:
		t.Fatalf("err = %v", err)
	}
	if !last.Done || last.FinishReason != want.finish || !reflect.DeepEqual(last.ToolCalls, want.calls) {
		t.Errorf("last chunk %+v\nwant finish %q calls %+v", last, want.finish, want.calls)
	}
	if !reflect.DeepEqual(last.Usage, want.usage) {
		t.Errorf("usage %+v, want %+v", last.Usage, want.usage)
	}
}

func TestOllamaWireToolsAndThinking(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "wire", "ollama_tools.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	want := wireWant{finish: "tool_calls", reasoning: "The user wants the weather.", usage: &Usage{60, 25, 85},
		calls: []ToolCall{tc("call_1", "get_weather", `{"city":"Oslo","days":2}`), tc("call_k", "get_time", `{}`)}}
	for _, bytewise := range []bool{false, true} {
		ht := ndjsonServer(t, string(body), bytewise)
		cs, err := collect(newOllamaTest(ht.srv.URL, ht.client), Request{Prompt: "hi", Tools: []Tool{{Name: "get_weather"}}})
		checkWire(t, cs, err, want)
		r := ht.request(t)
		if r.Path != "/api/chat" {
			t.Errorf("tools went to %s, want /api/chat", r.Path)
		}
	}
	// The whole (non-streamed) reply carries them too.
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"model":"qwen3","message":{"role":"assistant","content":"","thinking":"hmm","tool_calls":[{"function":{"name":"f","arguments":{"x":[1,2]}}}]},"done":true,"done_reason":"stop"}`)
	})
	r, err := newOllamaTest(ht.srv.URL, ht.client).Generate(context.Background(), Request{Prompt: "hi", Tools: []Tool{{Name: "f"}}})
	if err != nil || r.FinishReason != "tool_calls" || r.Reasoning != "hmm" || !reflect.DeepEqual(r.ToolCalls, []ToolCall{tc("call_1", "f", `{"x":[1,2]}`)}) {
		t.Errorf("%+v, %v", r, err)
	}
}

// TestOpenAIRequestCarriesToolsAndSchema: tools, tool_choice, the strict
// response_format, max_completion_tokens, and a follow-up's assistant
// message with its calls (content null) before the tool messages.
func TestOpenAIRequestCarriesToolsAndSchema(t *testing.T) {
	ht := sseServer(t, sseRole+sseDone, false)
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client, Model: "m", MaxCompletionTokens: true})
	req := Request{
		Messages: []Message{
			{Role: "user", Content: "weather?"},
			{Role: "assistant", ToolCalls: []ToolCall{tc("c1", "get_weather", `{"city":"Oslo"}`)}},
			{Role: "tool", ToolCallID: "c1", Content: `{"temp":3}`},
		},
		MaxTokens:  50,
		Tools:      []Tool{{Name: "get_weather", Description: "Weather", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}},
		ToolChoice: "get_weather",
		Schema:     json.RawMessage(`{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}`),
		SchemaName: "answer",
	}
	if _, err := collect(p, req); err != nil {
		t.Fatal(err)
	}
	assertJSON(t, ht.request(t).Body, `{"model":"m","messages":[
		{"role":"user","content":"weather?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
		{"role":"tool","content":"{\"temp\":3}","tool_call_id":"c1"}],
		"stream":true,"max_completion_tokens":50,
		"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
		"tool_choice":{"type":"function","function":{"name":"get_weather"}},
		"response_format":{"type":"json_schema","json_schema":{"name":"answer","strict":true,
			"schema":{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"],"additionalProperties":false}}},
		"stream_options":{"include_usage":true}}`)
}

func TestStrictSchema(t *testing.T) {
	for _, c := range []struct {
		in, out string
		strict  bool
	}{
		{`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`,
			`{"additionalProperties":false,"properties":{"a":{"type":"string"}},"required":["a"],"type":"object"}`, true},
		// nested objects and arrays of objects get it too
		{`{"type":"object","properties":{"l":{"type":"array","items":{"type":"object","properties":{"x":{"type":"integer"}},"required":["x"]}}},"required":["l"]}`,
			`{"additionalProperties":false,"properties":{"l":{"items":{"additionalProperties":false,"properties":{"x":{"type":"integer"}},"required":["x"],"type":"object"},"type":"array"}},"required":["l"],"type":"object"}`, true},
		// an optional property: sent as it is, not strict
		{`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"required":["a"]}`, "", false},
		{`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":true}`, "", false},
		{`{"type":"object","properties":{"o":{"type":"object","properties":{"y":{}}}},"required":["o"]}`, "", false},
	} {
		out, strict := StrictSchema(json.RawMessage(c.in))
		if strict != c.strict {
			t.Errorf("%s: strict %v", c.in, strict)
		}
		if !strict {
			if string(out) != c.in {
				t.Errorf("%s: changed to %s", c.in, out)
			}
			continue
		}
		var v any
		json.Unmarshal(out, &v)
		if b, _ := json.Marshal(v); string(b) != c.out {
			t.Errorf("%s:\n got %s\nwant %s", c.in, b, c.out)
		}
	}
}

func TestOllamaRequestCarriesToolsAndFormat(t *testing.T) {
	ht := ndjsonServer(t, `{"message":{"content":"{}"},"done":true}`+"\n", false)
	p := newOllamaTest(ht.srv.URL, ht.client)
	_, err := collect(p, Request{
		Messages: []Message{
			{Role: "user", Content: "weather?"},
			{Role: "assistant", ToolCalls: []ToolCall{tc("c1", "get_weather", `{"city":"Oslo"}`)}},
			{Role: "tool", ToolCallID: "c1", Content: "3 degrees"},
		},
		Tools:  []Tool{{Name: "get_weather", Parameters: json.RawMessage(`{"type":"object"}`)}},
		Schema: json.RawMessage(`{"type":"object"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, ht.request(t).Body, `{"model":"m","messages":[
		{"role":"user","content":"weather?"},
		{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Oslo"}}}]},
		{"role":"tool","content":"3 degrees","tool_name":"get_weather"}],
		"stream":true,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
		"format":{"type":"object"}}`)
	// Ollama needs a model: a request without one says which option.
	noModel := NewOllama(OllamaOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client})
	if _, err := noModel.Generate(context.Background(), Request{Prompt: "x"}); err == nil ||
		!strings.Contains(err.Error(), "set option model in Lua, OllamaOptions.Model in Go, or --model") {
		t.Errorf("err = %v", err)
	}
}

func TestOpenAIMissingModelIsNamed(t *testing.T) {
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"message":"you must provide a model parameter","type":"invalid_request_error"}}`)
	})
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client, APIKey: "k"})
	_, err := p.Generate(context.Background(), Request{Prompt: "x"})
	if err == nil || !strings.Contains(err.Error(), "you must provide a model parameter (the request named no model: set option model") {
		t.Errorf("err = %v", err)
	}
}

// TestOpenAIWholeReplyToolCalls: a non-streamed reply's tool calls,
// arguments as the usual string and as an object.
func TestOpenAIWholeReplyToolCalls(t *testing.T) {
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"model":"m","choices":[{"message":{"role":"assistant","content":null,"refusal":null,
			"reasoning_content":"think","tool_calls":[
			{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\": 1}"}},
			{"id":"b","type":"function","function":{"name":"g","arguments":{"y":2}}}]},"finish_reason":"tool_calls"}]}`)
	})
	r, err := newOpenAITest(ht.srv.URL, ht.client).Generate(context.Background(), Request{Prompt: "x"})
	want := []ToolCall{tc("a", "f", `{"x":1}`), tc("b", "g", `{"y":2}`)}
	if err != nil || r.FinishReason != "tool_calls" || r.Reasoning != "think" || !reflect.DeepEqual(r.ToolCalls, want) {
		t.Errorf("%+v, %v", r, err)
	}
}
