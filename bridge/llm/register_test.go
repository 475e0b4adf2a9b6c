// Tests of the Lua module Register makes, over a scripted provider.

package llm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newRuntime(t testing.TB) (*bridge.Runtime, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	rt, err := bridge.New(bridge.Options{Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, out
}

func run(t testing.TB, rt *bridge.Runtime, src string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rt.RunString(ctx, "test", src)
}

func mustRun(t testing.TB, rt *bridge.Runtime, src string) {
	t.Helper()
	if err := run(t, rt, src); err != nil {
		var le *bridge.LuaError
		if errors.As(err, &le) {
			t.Fatalf("%v\n%s", err, le.Traceback)
		}
		t.Fatal(err)
	}
}

// checkGoroutines waits for the goroutine count to settle back to at most n.
func checkGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echoLLM is a provider whose reply is the prompt's words (or the last
// message's) upper-cased, one chunk per word. A prompt starting "fail"
// errors; one starting "hang" blocks until cancelled. It records each
// request and how many are in flight.
type echoLLM struct {
	mu       sync.Mutex
	reqs     []llm.Request
	inflight atomic.Int32
	peak     atomic.Int32
	cancels  chan struct{} // a send for each request that saw its context end
	// gate, when set, holds each request until gate(inflight) is true;
	// requests wait on cond, which every start and end broadcasts.
	gate func(inflight, finished int) bool
	cond *sync.Cond
	done int
}

func (e *echoLLM) words(req llm.Request) []string {
	text := req.Prompt
	if len(req.Messages) > 0 {
		text = req.Messages[len(req.Messages)-1].Content
	}
	return strings.Fields(strings.ToUpper(text))
}

func (e *echoLLM) Stream(ctx context.Context, req llm.Request, fn func(llm.Chunk) error) error {
	e.mu.Lock()
	e.reqs = append(e.reqs, req)
	e.mu.Unlock()
	n := e.inflight.Add(1)
	defer e.inflight.Add(-1)
	for {
		p := e.peak.Load()
		if n <= p || e.peak.CompareAndSwap(p, n) {
			break
		}
	}
	words := e.words(req)
	if len(words) > 0 && words[0] == "FAIL" {
		return fmt.Errorf("echo: refused %q", req.Prompt)
	}
	if len(words) > 0 && words[0] == "HANG" {
		<-ctx.Done()
		e.cancels <- struct{}{}
		return ctx.Err()
	}
	if e.gate != nil {
		e.mu.Lock()
		e.cond.Broadcast()
		for !e.gate(int(e.inflight.Load()), e.done) {
			e.cond.Wait()
		}
		e.done++
		e.cond.Broadcast()
		e.mu.Unlock()
	}
	for i, w := range words {
		if i > 0 {
			w = " " + w
		}
		if err := fn(llm.Chunk{Content: w}); err != nil {
			if ctx.Err() != nil {
				e.cancels <- struct{}{}
			}
			return err
		}
	}
	u := llm.Usage{PromptTokens: len(words), CompletionTokens: len(words), TotalTokens: 2 * len(words)}
	return fn(llm.Chunk{Done: true, FinishReason: "stop", Usage: &u})
}

func (e *echoLLM) Generate(ctx context.Context, req llm.Request) (llm.Response, error) {
	return llm.Collect(ctx, e, req)
}

func (e *echoLLM) last() llm.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reqs[len(e.reqs)-1]
}

func newLLMRuntime(t *testing.T) (*bridge.Runtime, *syncBuffer, *echoLLM) {
	t.Helper()
	rt, out := newRuntime(t)
	p := &echoLLM{cancels: make(chan struct{}, 16)}
	if err := rt.RegisterLLM("llm", p); err != nil {
		t.Fatal(err)
	}
	return rt, out, p
}

func TestLLMGenerateReturnsTextAndInfo(t *testing.T) {
	rt, out, _ := newLLMRuntime(t)
	mustRun(t, rt, `
		local llm = require("llm")
		local text, info = llm.generate("write a haiku")
		print(text, info.finish_reason, info.usage.completion_tokens, info.usage.total_tokens)`)
	if got, want := out.String(), "WRITE A HAIKU\tstop\t3\t6\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLLMOptionsReachTheRequest(t *testing.T) {
	rt, _, p := newLLMRuntime(t)
	mustRun(t, rt, `require("llm").generate("hi", {model = "m1", max_tokens = 64.0,
		temperature = 0, stop = {"\n\n", "END"}, seed = 7})`)
	req := p.last()
	if req.Model != "m1" || req.MaxTokens != 64 || req.Temperature == nil || *req.Temperature != 0 ||
		len(req.Stop) != 2 || req.Stop[1] != "END" || req.Seed == nil || *req.Seed != 7 {
		t.Errorf("request %+v", req)
	}
	mustRun(t, rt, `require("llm").generate("hi", {stop = "END"})`)
	if req := p.last(); len(req.Stop) != 1 || req.Stop[0] != "END" || req.Temperature != nil || req.Seed != nil {
		t.Errorf("request %+v", req)
	}
}

func TestLLMBadOptionsNameTheOption(t *testing.T) {
	rt, _, _ := newLLMRuntime(t)
	for _, c := range []struct{ call, want string }{
		{`llm.generate("x", {max_tokens = "many"})`, "llm.generate: option 'max_tokens' must be an integer, got string"},
		{`llm.generate("x", {max_tokens = 1.5})`, "option 'max_tokens' must be an integer, got 1.5"},
		{`llm.generate("x", {max_tokens = -1})`, "option 'max_tokens' must be between 0"},
		{`llm.generate("x", {temperature = "hot"})`, "option 'temperature' must be a number, got string"},
		{`for _ in llm.stream("x", {stop = {1}}) do end`, "llm.stream: option 'stop' must be a string or a list of strings"},
		{`llm.chat({{role = "user", content = "x"}}, {model = 3})`, "llm.chat: option 'model' must be a string, got integer"},
		{`llm.generate("x", {max_token = 5})`, `unknown option "max_token"`},
		{`llm.generate(42)`, "bad argument #1 (prompt string or list of messages expected, got integer)"},
		{`llm.generate("x", "fast")`, "bad argument #2 (options table expected, got string)"},
		{`llm.chat("hi")`, "llm.chat: bad argument #1 (list of messages expected, got string)"},
		{`llm.chat({{role = "user"}})`, "message 1 needs string fields role and content"},
		{`llm.generate_all({"a"}, {concurrency = 0})`, "llm.generate_all: option 'concurrency' must be an integer >= 1, got 0"},
		{`llm.generate_all({"a"}, {concurrency = "x"})`, "option 'concurrency' must be an integer >= 1, got x"},
		{`llm.generate_all({"a"}, {on_result = 1})`, "option 'on_result' must be a function, got number"},
		{`llm.generate_all({"a"}, {concurency = 2})`, `llm.generate_all: unknown option "concurency"`},
		{`llm.generate_all({"a", 5})`, "item 2 must be a prompt string or a list of messages, got number"},
		{`llm.generate_all("a")`, "bad argument #1 (list of prompts expected, got string)"},
	} {
		src := fmt.Sprintf(`
			local llm = require("llm")
			local ok, err = pcall(function() %s end)
			assert(not ok, "no error")
			assert(err.kind == "bridge", "kind " .. tostring(err.kind))
			error(err.message, 0)`, c.call)
		err := run(t, rt, src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want it to contain %q", c.call, err, c.want)
		}
	}
	// The runtime keeps serving after every bad call.
	mustRun(t, rt, `assert(require("llm").generate("still here") == "STILL HERE")`)
}

func TestLLMStreamGivesChunkTables(t *testing.T) {
	rt, out, _ := newLLMRuntime(t)
	mustRun(t, rt, `
		local llm = require("llm")
		for chunk in llm.stream({{role = "system", content = "be loud"}, {role = "user", content = "tell a story"}}) do
			if chunk.done then
				print("|", chunk.finish_reason, chunk.usage.prompt_tokens, chunk.content == "")
			else
				io.write("[", chunk.content, "]")
			end
		end`)
	if got, want := out.String(), "[TELL][ A][ STORY]|\tstop\t3\ttrue\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLLMStreamEarlyExitCancelsTheRequest(t *testing.T) {
	before := runtime.NumGoroutine()
	rt, _, p := newLLMRuntime(t)
	long := strings.Repeat("word ", 10000)
	mustRun(t, rt, fmt.Sprintf(`
		local n = 0
		for chunk in require("llm").stream(%q) do
			n = n + 1
			if n == 3 then break end
		end`, long))
	<-p.cancels // break cancelled the provider's context (else the test times out)
	rt.Close()
	checkGoroutines(t, before)
}

func TestLLMChatKeepsTheConversation(t *testing.T) {
	rt, out, p := newLLMRuntime(t)
	mustRun(t, rt, `
		local llm = require("llm")
		local msgs = {{role = "user", content = "hello there"}}
		local reply = llm.chat(msgs)
		msgs[#msgs + 1] = {role = "assistant", content = reply}
		msgs[#msgs + 1] = {role = "user", content = "and again"}
		print(reply, (llm.chat(msgs)))`)
	if got, want := out.String(), "HELLO THERE\tAND AGAIN\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	req := p.last()
	if len(req.Messages) != 3 || !reflect.DeepEqual(req.Messages[1], llm.Message{Role: "assistant", Content: "HELLO THERE"}) {
		t.Errorf("messages %+v", req.Messages)
	}
}

// TestLLMGenerateAllKeepsOrderAndBoundsConcurrency holds every request
// until as many as the bound allows are in flight (all that are left, at
// the end): the run completes only if generate_all really keeps 6 in
// flight, and the peak shows it never keeps more.
func TestLLMGenerateAllKeepsOrderAndBoundsConcurrency(t *testing.T) {
	rt, out, p := newLLMRuntime(t)
	const total, bound = 40, 6
	p.cond = sync.NewCond(&p.mu)
	p.gate = func(inflight, finished int) bool { return inflight >= min(bound, total-finished) }
	mustRun(t, rt, `
		local llm = require("llm")
		local list = {}
		for i = 1, 40 do list[i] = "prompt number " .. i end
		local seen = 0
		local texts = llm.generate_all(list, {concurrency = 6, max_tokens = 9,
			on_result = function(i, text, info)
				assert(text == list[i]:upper() and info.finish_reason == "stop")
				seen = seen + 1
			end})
		assert(#texts == 40 and seen == 40)
		for i = 1, 40 do assert(texts[i] == "PROMPT NUMBER " .. i, texts[i]) end
		print(#llm.generate_all({}))`)
	if out.String() != "0\n" {
		t.Errorf("output %q", out.String())
	}
	if peak := p.peak.Load(); peak != bound {
		t.Errorf("peak concurrency %d, want %d", peak, bound)
	}
	if p.last().MaxTokens != 9 {
		t.Errorf("max_tokens not passed on: %+v", p.last())
	}
}

func TestLLMGenerateAllFirstErrorCancelsTheRest(t *testing.T) {
	rt, _, p := newLLMRuntime(t)
	err := run(t, rt, `
		local llm = require("llm")
		llm.generate_all({"hang one", "hang two", "fail now", "never started"}, {concurrency = 3})`)
	var le *bridge.LuaError
	if !errors.As(err, &le) || le.Kind != "bridge" || !strings.Contains(le.Message, `llm.generate: echo: refused "fail now"`) {
		t.Fatalf("got %v", err)
	}
	// The tasks have unwound; their Go calls see the cancellation on their
	// own goroutines, a moment later: wait for both.
	<-p.cancels
	<-p.cancels
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.reqs); n != 3 {
		t.Errorf("%d requests started, want 3", n)
	}
}

func TestLLMGoErrorIsCatchable(t *testing.T) {
	rt, out, _ := newLLMRuntime(t)
	mustRun(t, rt, `
		local ok, err = pcall(require("llm").generate, "fail please")
		print(ok, err.kind, err.op, err.message)`)
	want := "false\tbridge\tllm.generate\tllm.generate: echo: refused \"fail please\"\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// A server's error reply that a script does not catch ends the run with
// an error from which Go reaches the *llm.APIError (status, Retry-After),
// from generate, stream, chat and generate_all alike.
func TestLLMAPIErrorReachesTheRunsError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests"}}`)
	}))
	defer srv.Close()
	rt, _ := newRuntime(t)
	p := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: srv.URL, Model: "m", Retry: llm.RetryPolicy{Attempts: 1}})
	if err := rt.RegisterLLM("llm", p); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		`require("llm").generate("hi")`,
		`for c in require("llm").stream("hi") do end`,
		`require("llm").chat({{role = "user", content = "hi"}})`,
		`require("llm").generate_all({"a", "b"})`,
		`local ok, e = pcall(require("llm").generate, "hi"); error(e)`,
	} {
		err := run(t, rt, src)
		var ae *llm.APIError
		if !errors.As(err, &ae) {
			t.Errorf("%s: errors.As(err, *llm.APIError) fails on %T %v", src, err, err)
			continue
		}
		if ae.StatusCode != http.StatusTooManyRequests || ae.RetryAfter != 7*time.Second {
			t.Errorf("%s: APIError %+v", src, *ae)
		}
	}
}

func TestRegisterLLMRejectsNil(t *testing.T) {
	rt, _ := newRuntime(t)
	if err := rt.RegisterLLM("llm", nil); err == nil {
		t.Error("nil provider accepted")
	}
}

// TestLLMStreamBreakClosesTheHTTPConnection is the whole path: a Lua for
// loop over an OpenAI-compatible server's event stream, left after two
// chunks, cancels the request, and the server sees its client go.
func TestLLMStreamBreakClosesTheHTTPConnection(t *testing.T) {
	before := runtime.NumGoroutine()
	gone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d \"}}]}\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				close(gone)
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}))
	tr := &http.Transport{}
	rt, out := newRuntime(t)
	p := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: srv.URL, HTTPClient: &http.Client{Transport: tr}})
	if err := rt.RegisterLLM("llm", p); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `
		local seen = {}
		for chunk in require("llm").stream("go on forever") do
			seen[#seen + 1] = chunk.content
			if #seen == 2 then break end
		end
		print(table.concat(seen))`)
	if out.String() != "t0 t1 \n" {
		t.Errorf("output %q", out.String())
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the server never saw the connection close")
	}
	rt.Close()
	tr.CloseIdleConnections()
	srv.Close()
	checkGoroutines(t, before)
}

// strictServer is an OpenAI-compatible server that, like real ones,
// answers 400 to a tool message that does not follow an assistant message
// calling it. Its first reply calls a tool twice (streamed in fragments,
// or whole); once it has both results it answers with them.
func strictServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		var body struct {
			Stream   bool `json:"stream"`
			Messages []struct {
				Role       string `json:"role"`
				Content    *string
				ToolCallID string `json:"tool_call_id"`
				ToolCalls  []struct {
					ID string `json:"id"`
				} `json:"tool_calls"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		open := map[string]bool{}
		var results []string
		for _, m := range body.Messages {
			switch m.Role {
			case "assistant":
				open = map[string]bool{}
				for _, c := range m.ToolCalls {
					open[c.ID] = true
				}
			case "tool":
				if !open[m.ToolCallID] {
					w.WriteHeader(400)
					fmt.Fprintf(w, `{"error":{"message":"tool message %q follows no call","type":"invalid_request_error"}}`, m.ToolCallID)
					return
				}
				delete(open, m.ToolCallID)
				results = append(results, *m.Content)
			}
		}
		if !body.Stream {
			if len(results) == 0 {
				io.WriteString(w, `{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[
					{"id":"call_a","type":"function","function":{"name":"square","arguments":"{\"n\": 7}"}},
					{"id":"call_b","type":"function","function":{"name":"square","arguments":"{\"n\": 9}"}}]},
					"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":40,"completion_tokens":20,"total_tokens":60}}`)
				return
			}
			b, _ := json.Marshal("squares: " + strings.Join(results, ", "))
			fmt.Fprintf(w, `{"choices":[{"message":{"role":"assistant","content":%s},"finish_reason":"stop"}]}`, b)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		if len(results) == 0 {
			io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"square","arguments":""}}]}}]}`+"\n\n"+
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"n\": 7}"}}]}}]}`+"\n\n"+
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"square","arguments":"{\"n\":"}}]}}]}`+"\n\n"+
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":" 9}"}}]}}]}`+"\n\n"+
				`data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`+"\n\n"+
				`data: {"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":20,"total_tokens":60}}`+"\n\ndata: [DONE]\n\n")
			return
		}
		b, _ := json.Marshal("squares: " + strings.Join(results, ", "))
		fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%s},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", b)
	}))
	return srv, &n
}

// TestAgentLoopOverHTTP: the whole path, Lua agent loop to a server that
// checks the follow-up's order; nothing is left behind.
func TestAgentLoopOverHTTP(t *testing.T) {
	before := runtime.NumGoroutine()
	srv, n := strictServer(t)
	tr := &http.Transport{}
	rt, out := newRuntime(t)
	if err := rt.RegisterLLM("llm", llm.NewOpenAI(llm.OpenAIOptions{BaseURL: srv.URL, HTTPClient: &http.Client{Transport: tr}})); err != nil {
		t.Fatal(err)
	}
	mustRun(t, rt, `
		local reply, info = require("llm").chat({{role = "user", content = "square 7 and 9"}}, {tools = {
			{name = "square", parameters = {type = "object", properties = {n = {type = "integer"}}, required = {"n"}},
			 fn = function(a) return a.n * a.n end}}})
		print(reply, info.steps, info.usage.total_tokens, info.tool_calls[2].arguments.n)`)
	if got := out.String(); got != "squares: 49, 81\t2\t60\t9\n" {
		t.Errorf("output %q", got)
	}
	if n.Load() != 2 {
		t.Errorf("%d requests", n.Load())
	}
	// A script's own loop over llm.stream: the last chunk's assembled
	// calls, answered with the assistant message and tool messages.
	mustRun(t, rt, `
		local llm = require("llm")
		local msgs = {{role = "user", content = "square 7 and 9"}}
		local calls
		for chunk in llm.stream(msgs, {tools = {{name = "square"}}}) do
			if chunk.done then calls = chunk.tool_calls end
		end
		local asked = {role = "assistant", content = "", tool_calls = {}}
		msgs[2] = asked
		for i, c in ipairs(calls) do
			asked.tool_calls[i] = {id = c.id, name = c.name, arguments = c.arguments}
			msgs[#msgs + 1] = {role = "tool", tool_call_id = c.id, content = c.arguments.n * c.arguments.n}
		end
		print((llm.chat(msgs)))`)
	if got := out.String(); !strings.HasSuffix(got, "\nsquares: 49, 81\n") {
		t.Errorf("output %q", got)
	}
	rt.Close()
	tr.CloseIdleConnections()
	srv.Close()
	checkGoroutines(t, before)
}
