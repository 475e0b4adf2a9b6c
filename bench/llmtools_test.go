package bench

// LLM orchestration benchmarks (issue 16): streamed tool-call assembly
// beside openai-go's accumulator, and the agent loop's cost per step
// beside a plain Go loop making the same calls. Run them with
//
//	cd bench && go test -run '^$' -bench 'ToolCallAssembly|AgentStep' -benchmem -count 3
//
// (run.sh's IMPLS filter leaves out the openai-go and go-loop columns).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

// Tool-call streams: toolCalls calls, each of toolFragments argument
// fragments (the id and name in the first, as OpenAI sends them).
const (
	toolCalls     = 4
	toolFragments = 250
	toolDeltas    = toolCalls * toolFragments
)

// toolStream builds the SSE body and each call's whole arguments.
func toolStream() (body string, want []string) {
	var b strings.Builder
	for c := range toolCalls {
		frags := make([]string, toolFragments)
		frags[0] = `{"text":"`
		for i := 1; i < toolFragments-1; i++ {
			frags[i] = fmt.Sprintf("w%03d ", i)
		}
		frags[toolFragments-1] = fmt.Sprintf(`","n":%d}`, c)
		want = append(want, strings.Join(frags, ""))
		for i, f := range frags {
			arg, _ := json.Marshal(f)
			head := ""
			if i == 0 {
				head = fmt.Sprintf(`"id":"call_%d","type":"function",`, c)
			}
			name := ""
			if i == 0 {
				name = `"name":"write",`
			}
			fmt.Fprintf(&b, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":%d,%s"function":{%s"arguments":%s}}]},"finish_reason":null}]}`+"\n\n",
				c, head, name, arg)
		}
	}
	b.WriteString(`data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return b.String(), want
}

func toolServer(b *testing.B) (*httptest.Server, []string) {
	body, want := toolStream()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte(body))
	}))
	b.Cleanup(srv.Close)
	return srv, want
}

func BenchmarkToolCallAssembly(b *testing.B) {
	b.Run("moonbridge", func(b *testing.B) {
		srv, want := toolServer(b)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		p := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: srv.URL, Model: "m", HTTPClient: &http.Client{Transport: tr}, Retry: llm.RetryPolicy{Attempts: 1}})
		req := llm.Request{Prompt: "write", Tools: []llm.Tool{{Name: "write"}}}
		ctx := context.Background()
		start := time.Now()
		for b.Loop() {
			var calls []llm.ToolCall
			err := p.Stream(ctx, req, func(c llm.Chunk) error {
				if c.Done {
					calls = c.ToolCalls
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			checkCalls(b, len(calls), func(i int) (string, string) {
				var v struct {
					Text string `json:"text"`
					N    int    `json:"n"`
				}
				json.Unmarshal(calls[i].Arguments, &v)
				return calls[i].ID, fmt.Sprintf(`{"text":"%s","n":%d}`, v.Text, v.N)
			}, want)
		}
		b.ReportMetric(float64(b.N*toolDeltas)/time.Since(start).Seconds(), "deltas/s")
	})
	b.Run("openai-go", func(b *testing.B) {
		srv, want := toolServer(b)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		client := openai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey("k"),
			option.WithMaxRetries(0), option.WithHTTPClient(&http.Client{Transport: tr}))
		params := openai.ChatCompletionNewParams{Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("write")}}
		ctx := context.Background()
		start := time.Now()
		for b.Loop() {
			stream := client.Chat.Completions.NewStreaming(ctx, params)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				b.Fatal(err)
			}
			stream.Close()
			calls := acc.Choices[0].Message.ToolCalls
			checkCalls(b, len(calls), func(i int) (string, string) {
				return calls[i].ID, calls[i].Function.Arguments
			}, want)
		}
		b.ReportMetric(float64(b.N*toolDeltas)/time.Since(start).Seconds(), "deltas/s")
	})
}

// checkCalls verifies the assembled calls: ids in order, whole arguments.
func checkCalls(b *testing.B, n int, call func(i int) (id, args string), want []string) {
	if n != len(want) {
		b.Fatalf("%d calls assembled, want %d", n, len(want))
	}
	for i := range n {
		id, args := call(i)
		if id != fmt.Sprintf("call_%d", i) || args != want[i] {
			b.Fatalf("call %d: %s %.60q..., want %.60q...", i, id, args, want[i])
		}
	}
}

// agentSteps is the model round trips of one agent run: agentSteps-1
// steps that call the tool, then the answer.
const agentSteps = 8

// stepProvider answers instantly: a call of add while fewer than
// agentSteps-1 tool results are in the conversation, then the answer.
// Both loops below pay it alike, so their difference is the loop's cost.
type stepProvider struct{}

func (stepProvider) Generate(ctx context.Context, req llm.Request) (llm.Response, error) {
	results := 0
	for _, m := range req.Messages {
		if m.Role == "tool" {
			results++
		}
	}
	if results >= agentSteps-1 {
		return llm.Response{Text: fmt.Sprintf("done after %d results", results), FinishReason: "stop"}, nil
	}
	return llm.Response{FinishReason: "tool_calls", ToolCalls: []llm.ToolCall{
		{ID: fmt.Sprintf("call_%d", results), Name: "add", Arguments: json.RawMessage(`{"a":1,"b":2}`)}}}, nil
}

func (s stepProvider) Stream(ctx context.Context, req llm.Request, fn func(llm.Chunk) error) error {
	r, err := s.Generate(ctx, req)
	if err != nil {
		return err
	}
	return fn(llm.Chunk{Content: r.Text, Done: true, FinishReason: r.FinishReason, ToolCalls: r.ToolCalls})
}

const agentLua = `
local llm = require("llm")
local tools = {{name = "add", description = "Add two numbers",
  parameters = {type = "object", properties = {a = {type = "number"}, b = {type = "number"}}, required = {"a", "b"}},
  fn = function(args) return args.a + args.b end}}
function agent()
  local reply, info = llm.chat({{role = "user", content = "add, again and again"}}, {tools = tools, max_steps = 8})
  assert(info.steps == 8 and #info.tool_calls == 7 and info.tool_calls[7].result == 3, "wrong agent run")
  return reply
end`

func BenchmarkAgentStep(b *testing.B) {
	want := fmt.Sprintf("done after %d results", agentSteps-1)
	b.Run("moonbridge", func(b *testing.B) {
		rt, err := bridge.New(bridge.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer rt.Close()
		if err := llm.Register(rt, "llm", stepProvider{}); err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := rt.RunString(ctx, "agent", agentLua); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for b.Loop() {
			out, err := rt.Call(ctx, "agent")
			if err != nil || len(out) != 1 || out[0] != want {
				b.Fatalf("%v, %v", out, err)
			}
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*agentSteps), "ns/step")
	})
	b.Run("go-loop", func(b *testing.B) {
		var p llm.Provider = stepProvider{}
		tools := []llm.Tool{{Name: "add", Description: "Add two numbers",
			Parameters: json.RawMessage(`{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}`)}}
		ctx := context.Background()
		start := time.Now()
		for b.Loop() {
			msgs := []llm.Message{{Role: "user", Content: "add, again and again"}}
			var reply string
			steps := 0
			for steps < agentSteps {
				steps++
				r, err := p.Generate(ctx, llm.Request{Messages: msgs, Tools: tools})
				if err != nil {
					b.Fatal(err)
				}
				if len(r.ToolCalls) == 0 {
					reply = r.Text
					break
				}
				msgs = append(msgs, llm.Message{Role: "assistant", Content: r.Text, ToolCalls: r.ToolCalls})
				for _, c := range r.ToolCalls {
					var args struct{ A, B float64 }
					if err := json.Unmarshal(c.Arguments, &args); err != nil {
						b.Fatal(err)
					}
					res, _ := json.Marshal(args.A + args.B)
					msgs = append(msgs, llm.Message{Role: "tool", ToolCallID: c.ID, Content: string(res)})
				}
			}
			if steps != agentSteps || reply != want {
				b.Fatalf("%d steps, %q", steps, reply)
			}
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*agentSteps), "ns/step")
	})
}
