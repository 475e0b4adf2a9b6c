package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the program, so a test can
// run it as a child process and send it real signals.
func TestMain(m *testing.M) {
	if os.Getenv("MOONBRIDGE_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// fakeOpenAI is an OpenAI-compatible server streaming "echo: <last
// message>" word by word; it records each request body.
type fakeOpenAI struct {
	mu   sync.Mutex
	reqs []map[string]any
}

func (f *fakeOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if r.URL.Path != "/v1/chat/completions" || json.NewDecoder(r.Body).Decode(&body) != nil {
		http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, body)
	f.mu.Unlock()
	msgs := body["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)["content"].(string)
	if body["stream"] != true {
		json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{
			"message": map[string]any{"role": "assistant", "content": "echo: " + last}, "finish_reason": "stop"}}})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for i, word := range strings.Fields("echo: " + last) {
		if i > 0 {
			word = " " + word
		}
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]any{"content": word}}}})
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
}

func (f *fakeOpenAI) requests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.reqs...)
}

func TestRunHasTheLLMModule(t *testing.T) {
	path := writeScript(t, `local llm = require("llm")
local a = llm.generate("Tell me about the moon", {max_tokens = 10})
local b = llm.generate("Tell me about the moon", {max_tokens = 10})
assert(a == b and #a > 0, "the local generator is deterministic")
local n = 0
for c in llm.stream("Tell me about the moon", {max_tokens = 10}) do
  if not c.done then n = n + 1 end
end
print(n)`)
	code, out, errs := runCmd(t, "", "run", path)
	if code != 0 || out != "10\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errs)
	}
}

func TestRunWithAnOpenAIServer(t *testing.T) {
	fake := &fakeOpenAI{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	path := writeScript(t, `print((require("llm").generate("hello there")))`)
	code, out, errs := runCmd(t, "", "run", "--llm", "openai", "--llm-url", srv.URL, "--model", "m7", "--max-tokens", "33", path)
	if code != 0 || out != "echo: hello there\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errs)
	}
	req := fake.requests()[0]
	if req["model"] != "m7" || req["max_tokens"] != 33.0 {
		t.Errorf("request %v", req)
	}
	if code, _, errs := runCmd(t, "", "run", "--llm", "nope", path); code != 2 || !strings.Contains(errs, `--llm "nope"`) {
		t.Errorf("bad --llm: exit %d %q", code, errs)
	}
}

func TestChatOneShotStreamsTheReply(t *testing.T) {
	code, out, errs := runCmd(t, "", "chat", "--token-delay", "0", "--max-tokens", "12", "Tell", "me", "about", "tides")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	if !strings.HasSuffix(out, "\n") || len(strings.Fields(out)) < 6 {
		t.Errorf("reply %q", out)
	}
	_, again, _ := runCmd(t, "", "chat", "--token-delay", "0", "--max-tokens", "12", "Tell me about tides")
	if again != out {
		t.Errorf("same seed, different replies:\n%q\n%q", out, again)
	}
}

func TestChatKeepsTheConversation(t *testing.T) {
	fake := &fakeOpenAI{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	code, out, errs := runCmd(t, "first question\n\nsecond one\n/reset\nthird\n/exit\nnever\n",
		"chat", "--llm", "openai", "--llm-url", srv.URL)
	if want := "moonbridge chat: openai at " + srv.URL + ", the server's default model; /help for commands\n"; code != 0 || errs != want {
		t.Fatalf("exit %d, stderr %q, want the banner %q", code, errs, want)
	}
	if want := "echo: first question\necho: second one\n(conversation forgotten)\necho: third\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	reqs := fake.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, n := range []int{1, 3, 1} { // the second turn carries the first; /reset forgets
		if got := len(reqs[i]["messages"].([]any)); got != n {
			t.Errorf("turn %d sent %d messages, want %d", i+1, got, n)
		}
	}
}

// TestChatCtrlCCancelsTheReplyOnly runs the program as a child process and
// interrupts a slow reply with a real SIGINT: the reply stops, the chat
// goes on to the next line, and ends normally at end of input.
func TestChatCtrlCCancelsTheReplyOnly(t *testing.T) {
	cmd := exec.Command(os.Args[0], "chat", "--token-delay", "20ms", "--max-tokens", "400")
	cmd.Env = append(os.Environ(), "MOONBRIDGE_TEST_MAIN=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	r := bufio.NewReader(stdout)
	io.WriteString(stdin, "Tell me a long story about the sea\n")
	first := make([]byte, 8)
	if _, err := io.ReadFull(r, first); err != nil { // the reply has begun
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString(']')
	if err != nil || !strings.HasSuffix(line, "\n[reply cancelled]") {
		t.Fatalf("after Ctrl-C: %q, %v (stderr %s)", line, err, stderr.String())
	}
	io.WriteString(stdin, "/reset\nTell me about the moon\n")
	stdin.Close()
	rest, _ := io.ReadAll(r)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v, stderr %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the chat did not end at end of input")
	}
	if reply := strings.TrimSpace(string(rest)); len(strings.Fields(reply)) < 5 {
		t.Errorf("no reply after the cancelled one: %q", rest)
	}
}

func TestChatReportsServerErrorsAndGoesOn(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit"}}`)
	}))
	defer srv.Close()
	code, out, errs := runCmd(t, "one\ntwo\n", "chat", "--llm", "openai", "--llm-url", srv.URL, "--llm-retries", "0")
	if code != 0 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	want := "moonbridge: llm.stream: openai: HTTP 429 (rate_limit): slow down\n"
	if _, after, _ := strings.Cut(errs, "/help for commands\n"); after != want+want {
		t.Errorf("stderr %q, want the message once per turn, no traceback", errs)
	}
	if code, _, _ := runCmd(t, "", "chat", "--llm", "openai", "--llm-url", srv.URL, "--llm-retries", "0", "hi"); code != 1 {
		t.Errorf("one-shot with a failing server: exit %d, want 1", code)
	}
}

func TestChatCommands(t *testing.T) {
	code, out, errs := runCmd(t, "/help\n/frobnicate now\n/etc/hosts is a file\n/exit\n", "chat", "--token-delay", "0", "--max-tokens", "5")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	if !strings.HasPrefix(errs, "moonbridge chat: local, moonbridge-local; /help for commands\n") ||
		!strings.Contains(errs, "moonbridge: unknown command /frobnicate (/help lists them)\n") {
		t.Errorf("stderr %q", errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !strings.HasPrefix(out, "commands:\n  /help") || !strings.Contains(out, "/reset   forget the conversation") ||
		len(strings.Fields(lines[len(lines)-1])) < 2 { // the text line got a reply
		t.Errorf("stdout %q", out)
	}
}

func TestChatShowsToolActivity(t *testing.T) {
	code, out, errs := runCmd(t, "calculate (6*7) + 1 please\n", "chat", "--token-delay", "0", "--tools")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	want := "[tool] calculate(expression=\"(6*7) + 1\") -> 43\nHere is what I found: calculate says 43.\n"
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
}

// TestChatRefusalsAndMidStreamErrors: a refusal is shown as such; an
// error after part of a reply starts on a line of its own.
func TestChatRefusalsAndMidStreamErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		w.Header().Set("Content-Type", "text/event-stream")
		if strings.Contains(body.Messages[len(body.Messages)-1].Content, "forbidden") {
			io.WriteString(w, `data: {"choices":[{"delta":{"refusal":"I can't help with that."}}]}`+"\n\n"+
				`data: {"choices":[{"delta":{},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
			return
		}
		io.WriteString(w, `data: {"choices":[{"delta":{"content":"Once upon"}}]}`+"\n\n"+
			`data: {"error":{"message":"the model crashed","type":"server_error"}}`+"\n\n")
	}))
	defer srv.Close()
	code, out, errs := runCmd(t, "something forbidden\ntell a story\n", "chat", "--llm", "openai", "--llm-url", srv.URL, "--llm-retries", "0")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	if out != "[refused] I can't help with that.\nOnce upon\n" {
		t.Errorf("stdout %q", out)
	}
	if !strings.HasSuffix(errs, "\nmoonbridge: llm.stream: openai: HTTP 200 (server_error): the model crashed\n") {
		t.Errorf("stderr %q", errs)
	}
}

// TestDemoShowsTheAgentAndNoProgressFrames: stdout is not a terminal here,
// so no \r frames; the fan-out is timed both ways, the agent's three tools
// run in one step, and the extraction validates.
func TestDemoShowsTheAgentAndNoProgressFrames(t *testing.T) {
	code, out, errs := runCmd(t, "", "demo", "--token-delay", "1ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if strings.Contains(out, "\r") {
		t.Errorf("progress frames in output that is not a terminal:\n%q", out)
	}
	for _, want := range []string{"one after the other: ", "three at a time: ", "(6/6 answered, ", "x faster)",
		"5. An agent", "tide_times (Go)(Brest) = high water 19:42", "moon_phase (Lua)", "sunset_time (Lua)(Brest) = 21:47 in Brest",
		"(2 steps, 3 tool calls, ", "traveller=Ada from=Lisbon to=Oslo bags=2 (integer)", "This run: "} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
