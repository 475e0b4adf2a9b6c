// Tests of tools, the agent loop, structured output, usage and budgets
// through the Lua module.

package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

// scriptLLM answers each request with the next of its replies (the last
// one again once they run out), streamed as one chunk and a last chunk;
// it records the requests.
type scriptLLM struct {
	mu      sync.Mutex
	replies []llm.Response
	reqs    []llm.Request
	// block, when set, makes request number block (counting from 1) wait
	// for its context, after sending on inflight.
	block     int
	inflight  chan struct{}
	abortedCh chan struct{}
}

func (s *scriptLLM) Generate(ctx context.Context, req llm.Request) (llm.Response, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	n := len(s.reqs)
	r := s.replies[min(n, len(s.replies))-1]
	s.mu.Unlock()
	if n == s.block {
		s.inflight <- struct{}{}
		<-ctx.Done()
		close(s.abortedCh)
		return llm.Response{}, ctx.Err()
	}
	return r, nil
}

func (s *scriptLLM) Stream(ctx context.Context, req llm.Request, fn func(llm.Chunk) error) error {
	r, err := s.Generate(ctx, req)
	if err != nil {
		return err
	}
	if r.Text != "" || r.Reasoning != "" || r.Refusal != "" {
		if err := fn(llm.Chunk{Content: r.Text, Reasoning: r.Reasoning, Refusal: r.Refusal}); err != nil {
			return err
		}
	}
	u := r.Usage
	return fn(llm.Chunk{Done: true, FinishReason: r.FinishReason, ToolCalls: r.ToolCalls, Usage: &u})
}

func (s *scriptLLM) requests() []llm.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]llm.Request(nil), s.reqs...)
}

func call(id, name, args string) llm.ToolCall {
	return llm.ToolCall{ID: id, Name: name, Arguments: json.RawMessage(args)}
}

func toolReply(calls ...llm.ToolCall) llm.Response {
	return llm.Response{FinishReason: "tool_calls", ToolCalls: calls, Usage: llm.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}}
}

func textReply(s string) llm.Response {
	return llm.Response{Text: s, FinishReason: "stop", Usage: llm.Usage{PromptTokens: 20, CompletionTokens: 3, TotalTokens: 23}}
}

func newProviderRuntime(t *testing.T, p llm.Provider, opts ...llm.RegisterOption) (*bridge.Runtime, *syncBuffer) {
	t.Helper()
	rt, out := newRuntime(t)
	if err := llm.Register(rt, "llm", p, opts...); err != nil {
		t.Fatal(err)
	}
	return rt, out
}

// TestAgentLoopRunsToolsAndKeepsTheTranscript: two calls in one step (a
// Lua tool and a Go bridge function), then a final answer; the transcript
// has the assistant's calls before the tool messages, in call order.
func TestAgentLoopRunsToolsAndKeepsTheTranscript(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{
		toolReply(call("c1", "get_weather", `{"city":"Oslo"}`), call("c2", "lookup", `{"key":"tide"}`)),
		textReply("Oslo is 21 degrees; the tide is high."),
	}}
	rt, out := newProviderRuntime(t, p)
	var gotKey atomic.Value
	if err := rt.RegisterFunc("kv.get", func(ctx context.Context, args bridge.Args) ([]any, error) {
		m, err := args.Map(0)
		if err != nil {
			return nil, err
		}
		gotKey.Store(m["key"])
		return []any{map[string]any{"tide": "high"}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `
		local llm, kv = require("llm"), require("kv")
		local reply, info = llm.chat({{role = "user", content = "weather in Oslo, and the tide?"}}, {
			tools = {
				{name = "get_weather", description = "Current weather for a city",
				 parameters = {type = "object", properties = {city = {type = "string"}}, required = {"city"}},
				 fn = function(args) return {temp = 21, city = args.city} end},
				{name = "lookup", description = "Look a key up", fn = kv.get},
			},
		})
		print(reply)
		print(info.steps, #info.tool_calls, info.finish_reason, info.usage.total_tokens)
		for _, c in ipairs(info.tool_calls) do
			print(c.id, c.name, c.arguments.city or c.arguments.key, type(c.result))
		end
		for _, m in ipairs(info.messages) do
			io.write(m.role, m.tool_calls and ("+" .. #m.tool_calls) or "", m.tool_call_id and (":" .. m.tool_call_id) or "", " ")
		end
		print()`)
	want := "Oslo is 21 degrees; the tide is high.\n" +
		"2\t2\tstop\t38\n" +
		"c1\tget_weather\tOslo\ttable\n" +
		"c2\tlookup\ttide\ttable\n" +
		"user assistant+2 tool:c1 tool:c2 assistant \n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
	if gotKey.Load() != "tide" {
		t.Errorf("the Go tool got key %v", gotKey.Load())
	}
	reqs := p.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	// The follow-up: user, assistant with its calls, then one tool message
	// per call, in order, results JSON-encoded.
	m := reqs[1].Messages
	if len(m) != 4 || m[1].Role != "assistant" || len(m[1].ToolCalls) != 2 || m[1].ToolCalls[0].ID != "c1" ||
		string(m[1].ToolCalls[0].Arguments) != `{"city":"Oslo"}` ||
		m[2].Role != "tool" || m[2].ToolCallID != "c1" || m[2].Content != `{"city":"Oslo","temp":21}` ||
		m[3].ToolCallID != "c2" || m[3].Content != `{"tide":"high"}` {
		t.Errorf("follow-up messages %+v", m)
	}
	if len(reqs[0].Tools) != 2 || reqs[0].Tools[0].Name != "get_weather" ||
		string(reqs[0].Tools[1].Parameters) != `{"type":"object","properties":{}}` {
		t.Errorf("tools %+v", reqs[0].Tools)
	}
}

// TestAgentToolsOfAStepRunConcurrently: each tool waits for the other
// (a rendezvous over two channels), which only concurrent tasks get past;
// run one after the other they would deadlock.
func TestAgentToolsOfAStepRunConcurrently(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{
		toolReply(call("a", "ping", `{}`), call("b", "pong", ``)),
		textReply("done"),
	}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `
		local llm, channel = require("llm"), require("channel")
		local to_b, to_a = channel.new(), channel.new()
		local order = {}
		local reply, info = llm.chat({{role = "user", content = "go"}}, {tools = {
			{name = "ping", fn = function() order[#order+1] = "a1"; to_b:send("x"); local v = to_a:recv(); order[#order+1] = "a2"; return v end},
			{name = "pong", fn = function() order[#order+1] = "b1"; local v = to_b:recv(); to_a:send(v .. "y"); order[#order+1] = "b2"; return "ok" end},
		}})
		print(reply, table.concat(order, " "), info.tool_calls[1].result, info.tool_calls[2].result)`)
	if got := out.String(); got != "done\ta1 b1 a2 b2\txy\tok\n" {
		t.Errorf("output %q", got)
	}
}

func TestAgentToolErrorsGoBackToTheModel(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{
		toolReply(call("c1", "divide", `{"a":1,"b":0}`), call("c2", "nowhere", `{}`)),
		textReply("cannot divide by zero"),
	}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `
		local reply, info = require("llm").chat({{role = "user", content = "1/0"}}, {tools = {
			{name = "divide", fn = function(a) if a.b == 0 then error("division by zero", 0) end return a.a / a.b end},
		}})
		print(reply, info.tool_calls[1].error, info.tool_calls[1].result, info.tool_calls[2].error)`)
	if got := out.String(); got != "cannot divide by zero\tdivision by zero\tnil\tthere is no tool \"nowhere\"\n" {
		t.Errorf("output %q", got)
	}
	m := p.requests()[1].Messages
	if m[2].Content != "error: division by zero" || m[3].Content != `error: there is no tool "nowhere"` {
		t.Errorf("tool messages %+v", m[2:])
	}
}

// TestAgentToolTaskCancelledEndsTheChat: a tool's own task cancelled (by
// itself here, by another tool holding its Task there) ends the chat with
// the cancellation, not with an internal error, and asks the model no more.
func TestAgentToolTaskCancelledEndsTheChat(t *testing.T) {
	for name, tools := range map[string]string{
		"by itself": `{name = "t", fn = function() task.current():cancel(); task.yield() end}`,
		"by another tool": `{name = "t", fn = function() victim = task.current(); task.sleep(10) end},
			{name = "u", fn = function() task.yield(); victim:cancel(); return "done" end}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := &scriptLLM{replies: []llm.Response{toolReply(call("c", "t", `{}`), call("d", "u", `{}`)), textReply("never")}}
			rt, out := newProviderRuntime(t, p)
			mustRun(t, rt, `
				task = require("task")
				local ok, err = pcall(require("llm").chat, {{role = "user", content = "x"}}, {tools = {`+tools+`}})
				print(ok, err.kind)`)
			if got := out.String(); got != "false\tcancelled\n" {
				t.Errorf("output %q, want the cancellation", got)
			}
			if n := len(p.requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestAgentStopsAtMaxSteps(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{toolReply(call("c", "again", `{}`))}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `
		local runs = 0
		local ok, err = pcall(require("llm").chat, {{role = "user", content = "loop"}}, {max_steps = 3,
			tools = {{name = "again", fn = function() runs = runs + 1 return "more" end}}})
		print(ok, err.kind, err.op, runs, #err.messages, err.message)`)
	want := "false\tlimit\tmax_steps\t2\t6\tllm.chat: the model still called tools after 3 steps (option max_steps)\n"
	if got := out.String(); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if n := len(p.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// TestAgentCancelStopsTheRequestAndTheTools: the chat task is cancelled
// while one tool waits in a Go call and, in a second test, while the model
// request is in flight; both see their contexts end.
func TestAgentCancelStopsTheRequestAndTheTools(t *testing.T) {
	t.Run("tools", func(t *testing.T) {
		p := &scriptLLM{replies: []llm.Response{toolReply(call("c", "slow", `{}`), call("d", "quick", `{}`)), textReply("never")}}
		rt, out := newProviderRuntime(t, p)
		started, cancelled := make(chan struct{}), make(chan struct{})
		rt.RegisterFunc("slow.wait", func(ctx context.Context, args bridge.Args) ([]any, error) {
			close(started)
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		})
		rt.RegisterFunc("test.started", func(ctx context.Context, args bridge.Args) ([]any, error) {
			<-started
			return nil, nil
		})
		mustRun(t, rt, `
			local task = require("task")
			local t = task.spawn(require("llm").chat, {{role = "user", content = "x"}}, {tools = {
				{name = "slow", fn = require("slow").wait},
				{name = "quick", fn = function() return "fine" end},
			}})
			require("test").started()
			t:cancel()
			local ok, err = pcall(t.wait, t)
			print(ok, err.kind, t:status())`)
		if got := out.String(); got != "false\tcancelled\tcancelled\n" {
			t.Errorf("output %q", got)
		}
		<-cancelled // the Go tool's context ends (the test times out if not)
		if n := len(p.requests()); n != 1 {
			t.Errorf("%d requests", n)
		}
	})
	t.Run("request", func(t *testing.T) {
		p := &scriptLLM{replies: []llm.Response{toolReply(call("c", "quick", `{}`)), textReply("never")},
			block: 2, inflight: make(chan struct{}), abortedCh: make(chan struct{})}
		rt, out := newProviderRuntime(t, p)
		rt.RegisterFunc("test.inflight", func(ctx context.Context, args bridge.Args) ([]any, error) {
			<-p.inflight
			return nil, nil
		})
		mustRun(t, rt, `
			local task = require("task")
			local t = task.spawn(require("llm").chat, {{role = "user", content = "x"}}, {tools = {
				{name = "quick", fn = function() return "fine" end}}})
			require("test").inflight()
			t:cancel()
			local ok, err = pcall(t.wait, t)
			print(ok, err.kind)`)
		if got := out.String(); got != "false\tcancelled\n" {
			t.Errorf("output %q", got)
		}
		<-p.abortedCh // the second request's context ends (the test times out if not)
	})
}

func TestChatWithoutFnReturnsTheCalls(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{toolReply(call("c9", "get_weather", `{"city":"Lima","days":3,"ok":true,"tags":["a"]}`))}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `
		local reply, info = require("llm").chat({{role = "user", content = "weather"}}, {tools = {
			{name = "get_weather", parameters = {type = "object", properties = {city = {type = "string"}}}}}})
		local a = info.tool_calls[1].arguments
		print(reply == "", info.finish_reason, #info.tool_calls, info.tool_calls[1].id, a.city, math.type(a.days), a.ok, a.tags[1])
		-- the script runs its own loop with the assistant message it got
		print(info.message.role, info.message.tool_calls[1].arguments)`)
	want := "true\ttool_calls\t1\tc9\tLima\tinteger\ttrue\ta\n" +
		"assistant\t{\"city\":\"Lima\",\"days\":3,\"ok\":true,\"tags\":[\"a\"]}\n"
	if got := out.String(); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

func TestChatToolOptionsAreChecked(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{textReply("x")}}
	rt, _ := newProviderRuntime(t, p)
	for _, c := range []struct{ opts, want string }{
		{`{tools = {{name = "a", fn = print}, {name = "b"}}}`, "tool 2 has no fn"},
		{`{tools = {{name = "a", fn = 3}}}`, "tool 1 field 'fn' must be a function, got number"},
		{`{tools = {{name = "a"}}, max_steps = 0}`, "option 'max_steps' must be an integer >= 1, got 0"},
		{`{tools = {{description = "x"}}}`, "tool 1 needs a name"},
		{`{tools = {{name = "a"}, {name = "a"}}}`, `tool 2: the name "a" is taken`},
		{`{tools = {{name = "a", parameters = {type = 5}}}}`, "tool 1 field 'parameters'"},
		{`{tools = {{name = "a", colour = "red"}}}`, "tool 1 field 'colour' is unknown"},
		{`{tools = {{name = "a"}}, tool_choice = "b"}`, `option 'tool_choice' must be "auto", "none", "required" or the name of a tool, got "b"`},
		{`{tool_choice = "required"}`, `"required" needs option tools`},
		{`{schema = {type = "object", properties = 5}}`, "option 'schema' at properties must be a table of schemas, got integer"},
		{`{schema = "{nope"}`, "option 'schema' is not valid JSON"},
		{`{schema = {type = "objekt"}}`, "option 'schema': bad schema"},
		{`{schema = {["$ref"] = "file:///etc/passwd"}}`, "option 'schema': bad schema"},
		{`{colour = 1}`, `unknown option "colour" (options are max_steps, max_tokens`},
	} {
		err := run(t, rt, fmt.Sprintf(`
			local ok, err = pcall(require("llm").chat, {{role = "user", content = "x"}}, %s)
			assert(not ok and err.kind == "bridge", tostring(err))
			error(err.message, 0)`, c.opts))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.opts, err, c.want)
		}
	}
}

// TestSchemaEmptyTablesFollowTheKeyword: properties = {} is an object,
// required = {} a list, items = {} the schema that allows anything.
func TestSchemaEmptyTablesFollowTheKeyword(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{textReply(`{"tags":[1,"x"]}`)}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `
		local v = require("llm").generate("x", {schema = {type = "object", properties = {
			tags = {type = "array", items = {}}, meta = {type = "object", properties = {}, required = {}}},
			required = {"tags"}, ["$defs"] = {}, enum_free = nil}})
		print(#v.tags, v.tags[1], v.tags[2])`)
	if out.String() != "2\t1\tx\n" {
		t.Errorf("output %q", out.String())
	}
	var got map[string]any
	json.Unmarshal(p.requests()[0].Schema, &got)
	want := `{"$defs":{},"properties":{"meta":{"properties":{},"required":[],"type":"object"},"tags":{"items":{},"type":"array"}},"required":["tags"],"type":"object"}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("schema sent\n%s\nwant\n%s", b, want)
	}
}

func TestSchemaRepairOnceThenFail(t *testing.T) {
	schema := `{type = "object", properties = {name = {type = "string"}, age = {type = "integer", minimum = 0}}, required = {"name", "age"}}`
	t.Run("repaired", func(t *testing.T) {
		p := &scriptLLM{replies: []llm.Response{textReply(`{"name":"Ada","age":"old"}`), textReply("```json\n{\"name\":\"Ada\",\"age\":36}\n```")}}
		rt, out := newProviderRuntime(t, p)
		mustRun(t, rt, `
			local v, info = require("llm").generate("Ada, 36", {schema = `+schema+`})
			print(v.name, v.age, math.type(v.age), info.repaired, info.usage.total_tokens)`)
		if out.String() != "Ada\t36\tinteger\ttrue\t46\n" {
			t.Errorf("output %q", out.String())
		}
		reqs := p.requests()
		fix := reqs[1].Messages
		if len(fix) != 3 || fix[1].Content != `{"name":"Ada","age":"old"}` || !strings.Contains(fix[2].Content, "at /age") {
			t.Errorf("repair request %+v", fix)
		}
	})
	t.Run("still wrong", func(t *testing.T) {
		p := &scriptLLM{replies: []llm.Response{textReply(`{"name":"Ada"}`), textReply(`not json`)}}
		rt, out := newProviderRuntime(t, p)
		mustRun(t, rt, `
			local ok, err = pcall(require("llm").generate, "Ada", {schema = `+schema+`})
			print(ok, err.kind, err.op, err.text, #err.errors, err.message)`)
		want := "false\tbridge\tschema\tnot json\t1\tllm.generate: the reply does not match the schema: the reply is not JSON"
		if !strings.HasPrefix(out.String(), want) || !strings.HasSuffix(out.String(), "(after one repair attempt)\n") {
			t.Errorf("output %q", out.String())
		}
	})
}

func TestLocalGeneratorCallsToolsAndAnswers(t *testing.T) {
	rt, out := newProviderRuntime(t, llm.NewLocal(llm.LocalOptions{Seed: 1}))
	mustRun(t, rt, `
		local llm = require("llm")
		local reply, info = llm.chat({{role = "user", content = "What is the weather in Paris, and what time is it there?"}}, {tools = {
			{name = "get_weather", description = "Current weather for a city",
			 parameters = {type = "object", properties = {city = {type = "string"}}, required = {"city"}},
			 fn = function(a) return {city = a.city, temp = 18} end},
			{name = "get_time", description = "The local time in a city",
			 parameters = {type = "object", properties = {city = {type = "string"}}, required = {"city"}},
			 fn = function(a) return "09:30 in " .. a.city end},
			{name = "convert_currency", description = "Convert an amount of money",
			 parameters = {type = "object", properties = {amount = {type = "number"}}},
			 fn = function() error("not called") end},
		}})
		print(info.steps, #info.tool_calls, info.tool_calls[1].name, info.tool_calls[1].arguments.city, info.tool_calls[2].name)
		print(reply)`)
	want := "2\t2\tget_weather\tParis\tget_time\n" +
		`Here is what I found: get_weather says {"city":"Paris","temp":18}; get_time says 09:30 in Paris.` + "\n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}

func TestLocalGeneratorWritesJSONThatValidates(t *testing.T) {
	rt, out := newProviderRuntime(t, llm.NewLocal(llm.LocalOptions{Seed: 1}))
	mustRun(t, rt, `
		local trip, info = require("llm").generate("Extract the trip: Ada flies from Lisbon to Oslo with 2 bags", {schema = {
			type = "object",
			properties = {
				traveller = {type = "string"}, from = {type = "string"}, to = {type = "string"},
				bags = {type = "integer", minimum = 0, maximum = 10},
				class = {enum = {"economy", "business"}},
				legs = {type = "array", minItems = 1, items = {type = "object", properties = {code = {type = "string", minLength = 3}}, required = {"code"}}},
			},
			required = {"traveller", "from", "to", "bags"},
		}})
		print(trip.bags, math.type(trip.bags), trip.class, #trip.legs, info.repaired)
		print(trip.from, trip.to, trip.traveller)`)
	if out.String() != "2\tinteger\teconomy\t1\tfalse\nLisbon\tOslo\tAda\n" {
		t.Errorf("output %q", out.String())
	}
}

func TestStreamGivesReasoningAndToolCalls(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{{Reasoning: "thinking...", FinishReason: "tool_calls",
		ToolCalls: []llm.ToolCall{call("c1", "f", `{"x":1}`)}}}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `
		for chunk in require("llm").stream("go", {tools = {{name = "f"}}}) do
			if chunk.done then
				print("last", chunk.finish_reason, chunk.tool_calls[1].name, chunk.tool_calls[1].arguments.x)
			else
				print("part", chunk.content == "", chunk.reasoning)
			end
		end`)
	if out.String() != "part\ttrue\tthinking...\nlast\ttool_calls\tf\t1\n" {
		t.Errorf("output %q", out.String())
	}
}

func TestStreamWithSchemaGivesTheValue(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{textReply(`{"n": 1}`), textReply(`{"n": 2}`)}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `
		local llm = require("llm")
		local s = {type = "object", properties = {n = {type = "integer", minimum = 2}}, required = {"n"}}
		for chunk in llm.stream("go", {schema = s}) do
			if chunk.done then print(chunk.value.n, chunk.repaired, chunk.text) end
		end
		local ok, err = pcall(function()
			for chunk in llm.stream("go", {schema = {type = "object", required = {"m"}}}) do end
		end)
		print(ok, err.kind, err.op)`)
	if out.String() != "2\ttrue\t{\"n\": 2}\nfalse\tbridge\tschema\n" {
		t.Errorf("output %q", out.String())
	}
}

func TestRefusalAndReasoningReachInfo(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{{Refusal: "I can't help with that.", Reasoning: "policy", FinishReason: "stop"}}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `
		local text, info = require("llm").chat({{role = "user", content = "x"}})
		print(text == "", info.refusal, info.reasoning)`)
	if out.String() != "true\tI can't help with that.\tpolicy\n" {
		t.Errorf("output %q", out.String())
	}
}

// TestUsageAndBudgetArePerRun: llm.usage() counts this run only, the Go
// meter sees the same figures, and the budget stops the request after the
// one that spent it, with kind limit, op tokens.
func TestUsageAndBudgetArePerRun(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{textReply("a")}} // 23 tokens each
	rt, out := newProviderRuntime(t, p, llm.Budget(50))
	ctx, meter := llm.WithUsageMeter(context.Background())
	src := `
		local llm = require("llm")
		for i = 1, 5 do
			local ok, err = pcall(llm.generate, "x")
			if not ok then print(i, err.kind, err.op, err.message) break end
		end
		local u = llm.usage()
		print(u.requests, u.prompt_tokens, u.completion_tokens, u.total_tokens)`
	if err := rt.RunString(ctx, "budget", src); err != nil {
		t.Fatal(err)
	}
	want := "4\tlimit\ttokens\tllm: the run's token budget of 50 is spent (69 used)\n3\t60\t9\t69\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if u := meter.Usage(); u != (llm.Totals{Requests: 3, PromptTokens: 60, CompletionTokens: 9}) || u.Tokens() != 69 {
		t.Errorf("meter %+v", u)
	}
	// A new run starts afresh; WithTokenBudget replaces the budget.
	mustRun(t, rt, `local llm = require("llm"); assert(llm.usage().requests == 0); llm.generate("x"); print(llm.usage().requests)`)
	if err := rt.RunString(llm.WithTokenBudget(context.Background(), 10), "small", `
		local llm = require("llm")
		llm.generate("x")
		local ok, err = pcall(llm.generate, "x")
		print(ok, err.op)
		for c in llm.stream("x") do end`); err == nil || !strings.Contains(err.Error(), "budget of 10") {
		t.Errorf("stream over budget: %v", err)
	}
	if !strings.HasSuffix(out.String(), "1\nfalse\ttokens\n") {
		t.Errorf("output %q", out.String())
	}
}

func TestRegisterLLMShim(t *testing.T) {
	rt, _ := newRuntime(t)
	if err := rt.RegisterLLM("llm", "not a provider"); err == nil || !strings.Contains(err.Error(), "want an llm.Provider, got string") {
		t.Errorf("err = %v", err)
	}
	if err := rt.RegisterLLM("llm", &scriptLLM{}, 5); err == nil || !strings.Contains(err.Error(), "option 1 is a int") {
		t.Errorf("err = %v", err)
	}
	if err := rt.RegisterLLM("llm", &scriptLLM{replies: []llm.Response{textReply("x")}}, llm.Budget(1)); err != nil {
		t.Fatal(err)
	}
	err := run(t, rt, `local llm = require("llm"); llm.generate("a"); llm.generate("b")`)
	var le *bridge.LuaError
	if !errors.As(err, &le) || le.Kind != "limit" || le.Op != "tokens" {
		t.Errorf("err = %v", err)
	}
}

// TestModuleHidesItsGoHalf: the wrappers hold the Go functions as
// upvalues; the module table has only its public names.
func TestModuleHidesItsGoHalf(t *testing.T) {
	rt, out := newProviderRuntime(t, &scriptLLM{replies: []llm.Response{textReply("x")}})
	mustRun(t, rt, `
		local names = {}
		for k in pairs(require("llm")) do names[#names + 1] = k end
		table.sort(names)
		print(table.concat(names, " "))
		-- the Lua half is moonbridge's own: no script can reach it
		print(pcall(require, "moonbridge.llm"))`)
	if !strings.HasPrefix(out.String(), "chat generate generate_all stream usage\nfalse\tmodule 'moonbridge.llm' not found") {
		t.Errorf("output %q", out.String())
	}
}

// TestLimitsAreSharedAcrossRuntimes: two Runtimes register one provider
// wrapped with a concurrency of 1; while a request of the first holds the
// slot, the second's waits, and its task's timeout ends the wait (the
// slot never frees, so the timeout always wins).
func TestLimitsAreSharedAcrossRuntimes(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{textReply("x")}, block: 1, inflight: make(chan struct{}), abortedCh: make(chan struct{})}
	shared := llm.WithLimits(p, llm.Limits{Concurrency: 1})
	rtA, _ := newProviderRuntime(t, shared)
	rtB, out := newProviderRuntime(t, shared)
	errA := make(chan error, 1)
	go func() { errA <- run(t, rtA, `require("llm").generate("hold the slot")`) }()
	<-p.inflight
	mustRun(t, rtB, `
		local ok, err = pcall(require("task").timeout, 0.01, require("llm").generate, "wait")
		print(ok, err.kind)`)
	if out.String() != "false\ttimeout\n" {
		t.Errorf("output %q", out.String())
	}
	if n := len(p.requests()); n != 1 {
		t.Errorf("%d requests reached the provider, want 1", n)
	}
	rtA.Close()
	<-errA
}

// TestAgentForcedToolChoiceOnlyFirst: a forced tool (or "required") holds
// for the first step; later steps are "auto", or the loop could not end.
func TestAgentForcedToolChoiceOnlyFirst(t *testing.T) {
	p := &scriptLLM{replies: []llm.Response{toolReply(call("c1", "f", `{}`)), toolReply(call("c2", "f", `{}`)), textReply("ok")}}
	rt, out := newProviderRuntime(t, p)
	mustRun(t, rt, `print((require("llm").chat({{role = "user", content = "x"}}, {tool_choice = "f",
		tools = {{name = "f", fn = function() return 1 end}}})))`)
	reqs := p.requests()
	if out.String() != "ok\n" || len(reqs) != 3 || reqs[0].ToolChoice != "f" || reqs[1].ToolChoice != "auto" || reqs[2].ToolChoice != "auto" {
		t.Errorf("output %q, %d requests", out.String(), len(reqs))
	}
	// The third request carries the whole conversation, kept in Go.
	if m := reqs[2].Messages; len(m) != 5 || m[3].ToolCalls[0].ID != "c2" || m[4].ToolCallID != "c2" {
		t.Errorf("third request's messages %+v", m)
	}
}

// TestHostileScriptsUnderSandbox: the module works in a sandboxed Runtime,
// and what a hostile script can hand it gets a clear error, the Runtime
// serving on: a schema nested past the bound, a cyclic tool result, a
// table with a function as a message, a tool with fn given to generate.
func TestHostileScriptsUnderSandbox(t *testing.T) {
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Sandbox: true, Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := llm.Register(rt, "llm", llm.NewLocal(llm.LocalOptions{Seed: 1})); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `
		local llm = require("llm")
		local function try(f, ...)
			local ok, err = pcall(f, ...)
			print(ok, ok or tostring(err):sub(1, 70))
		end
		local deep = {type = "object"}
		local cur = deep
		for i = 1, 200 do cur.properties = {x = {type = "object"}}; cur = cur.properties.x end
		try(llm.generate, "x", {schema = deep})
		local cyc = {}; cyc.self = cyc
		try(llm.chat, {{role = "user", content = "weather in Oslo?"}}, {tools = {
			{name = "get_weather", description = "weather", fn = function() return cyc end}}})
		try(llm.chat, {{role = "user", content = print}})
		local _, info = llm.generate("weather in Oslo?", {tools = {{name = "get_weather", description = "weather", fn = print}}})
		print(info.finish_reason, info.tool_calls[1].name)
		print((llm.generate("still here", {max_tokens = 3})) ~= nil)`)
	want := "false\tllm.generate: argument #2: nested too deeply (more than 100 levels)\n" +
		"false\tllm.chat: argument #2: table is cyclic (field '[1].content.self' refer\n" +
		"false\tllm.chat: argument #1 (field '[1].content'): cannot send a function to\n" +
		"tool_calls\tget_weather\ntrue\n"
	if out.String() != want {
		t.Errorf("output\n%s", out.String())
	}
}

// TestRegisteringAgainReplacesTheProvider: the new provider answers, and
// through the Lua half (errors of their kind, the agent loop).
func TestRegisteringAgainReplacesTheProvider(t *testing.T) {
	rt, out := newProviderRuntime(t, &scriptLLM{replies: []llm.Response{textReply("first")}})
	mustRun(t, rt, `print((require("llm").generate("x")))`)
	if err := llm.Register(rt, "llm", &scriptLLM{replies: []llm.Response{toolReply(call("c", "f", `{}`)), textReply("second")}}, llm.Budget(30)); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `
		local llm = require("llm")
		print((llm.chat({{role = "user", content = "x"}}, {tools = {{name = "f", fn = function() return 1 end}}})))
		local ok, err = pcall(llm.generate, "x")
		print(err.kind, err.op)`)
	if out.String() != "first\nsecond\nlimit\ttokens\n" {
		t.Errorf("output %q", out.String())
	}
}
