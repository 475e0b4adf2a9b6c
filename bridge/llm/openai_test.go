package llm

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const sseType = "text/event-stream"

func newOpenAITest(url string, c *http.Client) Provider {
	return NewOpenAI(OpenAIOptions{BaseURL: url, HTTPClient: c, APIKey: "k", Model: "m", Retry: RetryPolicy{Clock: &testClock{}}})
}

// sseServer answers every request with the SSE body, written in one go
// or a byte at a time.
func sseServer(t *testing.T, body string, bytewise bool) *httpTest {
	return startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", sseType)
		if bytewise {
			writeBytewise(w, body)
		} else {
			writeFlush(w, body)
		}
	})
}

// delta is an SSE event carrying one piece of content.
func delta(s string) string {
	b, _ := json.Marshal(s)
	return `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + string(b) + `},"finish_reason":null}]}` + "\n\n"
}

const (
	sseRole   = `data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n"
	sseFinish = `data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}` + "\n\n"
	sseUsage  = `data: {"id":"c1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}` + "\n\n"
	sseDone   = "data: [DONE]\n\n"
)

func TestOpenAIStream(t *testing.T) {
	ht := sseServer(t, sseRole+delta("Hel")+delta("lo, ")+delta("world")+sseFinish+sseUsage+sseDone, false)
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, APIKey: "sk-opt", Model: "default", HTTPClient: ht.client})
	cs, err := collect(p, Request{
		Model:       "m1",
		Messages:    []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}},
		MaxTokens:   3,
		Temperature: Float(0.5),
		Stop:        []string{"\n\n", "END"},
		Seed:        Int(42),
	})
	if err != nil {
		t.Fatal(err)
	}
	text, last := joinChunks(t, cs)
	if text != "Hello, world" || len(cs) != 4 {
		t.Errorf("text %q in %d chunks", text, len(cs))
	}
	if last.FinishReason != "length" || last.Usage == nil || *last.Usage != (Usage{12, 3, 15}) {
		t.Errorf("last chunk = %+v (usage %+v)", last, last.Usage)
	}
	r := ht.request(t)
	if r.Method != "POST" || r.Path != "/v1/chat/completions" {
		t.Errorf("%s %s", r.Method, r.Path)
	}
	if h := r.Header; h.Get("Authorization") != "Bearer sk-opt" || h.Get("Accept") != sseType || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", h)
	}
	assertJSON(t, r.Body, `{"model":"m1","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],
		"stream":true,"max_tokens":3,"temperature":0.5,"stop":["\n\n","END"],"seed":42,"stream_options":{"include_usage":true}}`)
}

func TestOpenAIPromptDefaultsAndEnvKey(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-env")
	ht := sseServer(t, delta("ok")+sseDone, false)
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL + "/", Model: "default", HTTPClient: ht.client})
	cs, err := collect(p, Request{Prompt: "Say ok", Temperature: Float(0)})
	if err != nil {
		t.Fatal(err)
	}
	text, last := joinChunks(t, cs)
	if text != "ok" || last.FinishReason != "stop" || last.Usage != nil {
		t.Errorf("text %q, last %+v", text, last)
	}
	r := ht.request(t)
	if r.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-env" {
		t.Errorf("path %s, auth %q", r.Path, r.Header.Get("Authorization"))
	}
	assertJSON(t, r.Body, `{"model":"default","messages":[{"role":"user","content":"Say ok"}],
		"stream":true,"temperature":0,"stream_options":{"include_usage":true}}`)
}

func TestOpenAINoKey(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "")
	ht := sseServer(t, sseRole+sseDone, false)
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, HTTPClient: ht.client})
	cs, err := collect(p, Request{Prompt: "x"})
	if err != nil || len(cs) != 1 || !cs[0].Done {
		t.Fatalf("chunks %+v, err %v", cs, err)
	}
	r := ht.request(t)
	if _, ok := r.Header["Authorization"]; ok {
		t.Errorf("Authorization sent: %q", r.Header.Get("Authorization"))
	}
	assertJSON(t, r.Body, `{"messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}`)
}

func TestOpenAIBaseURL(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "")
	for in, want := range map[string]string{
		"":                           "https://api.openai.com/v1",
		"http://localhost:8080":      "http://localhost:8080/v1",
		"http://localhost:8080/":     "http://localhost:8080/v1",
		"http://h:1/v1/":             "http://h:1/v1",
		"https://example.com/api/v1": "https://example.com/api/v1",
		"http://h/openai/":           "http://h/openai",
	} {
		if got := NewOpenAI(OpenAIOptions{BaseURL: in}).baseURL; !reflect.DeepEqual(got, want) {
			t.Errorf("BaseURL %q -> %q, want %q", in, got, want)
		}
	}
	if o := NewOpenAI(OpenAIOptions{}); o.client == nil || o.client.Timeout != 0 || o.apiKey != "" {
		t.Errorf("defaults: %+v", o)
	}
}

// TestOpenAIStreamAwkward sends comments, extra blank lines, CRLF and CR
// line ends and a multi-line data event, a byte at a time, so reads split
// inside runes and between CR and LF.
func TestOpenAIStreamAwkward(t *testing.T) {
	body := ": ping\r\n\r\n" +
		"\r\n" +
		`data: {"choices":[{"delta":{"content":"héllo "}}]}` + "\r\n\r\n" +
		": keep-alive\n" +
		`data: {"choices":[{"delta":` + "\r\n" + // one JSON value over two data lines
		`data: {"content":"世界 🌍"},"finish_reason":null}]}` + "\r\n\r\n" +
		"event: message\rid: 3\r" + `data: {"choices":[{"delta":{"content":"!"}}]}` + "\r\r" +
		"retry: 10\n\n" +
		`data:{"choices":[{"delta":{},"finish_reason":"stop"}]}` + "\n\n" +
		"data: [DONE]\r\n\r\n"
	ht := sseServer(t, body, true)
	cs, err := collect(newOpenAITest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	text, last := joinChunks(t, cs)
	if text != "héllo 世界 🌍!" || last.FinishReason != "stop" {
		t.Errorf("text %q, last %+v", text, last)
	}
}

func TestOpenAIStreamTruncated(t *testing.T) {
	t.Run("ends without DONE", func(t *testing.T) {
		ht := sseServer(t, delta("a")+delta("b"), false)
		cs, err := collect(newOpenAITest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
		if !errors.Is(err, ErrTruncated) || !strings.HasPrefix(err.Error(), "openai: ") {
			t.Errorf("err = %v, want ErrTruncated", err)
		}
		if len(cs) != 2 {
			t.Errorf("chunks %+v", cs)
		}
	})
	t.Run("connection dropped", func(t *testing.T) {
		ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", sseType)
			writeFlush(w, delta("a")+`data: {"choices":[{"delta":{"con`)
			panic(http.ErrAbortHandler) // close the connection mid-body
		})
		_, err := collect(newOpenAITest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("err = %v, want ErrTruncated", err)
		}
	})
	t.Run("finish reason then end", func(t *testing.T) {
		// older llama.cpp servers end with the finish_reason and no [DONE]
		ht := sseServer(t, delta("a")+sseFinish, false)
		cs, err := collect(newOpenAITest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		if text, last := joinChunks(t, cs); text != "a" || last.FinishReason != "length" {
			t.Errorf("text %q, last %+v", text, last)
		}
	})
}

func TestOpenAIStreamMalformed(t *testing.T) {
	ht := sseServer(t, delta("a")+`data: {"choices":[{"delta":{"content":"b"}}]`+"\n\n"+sseDone, false)
	_, err := collect(newOpenAITest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
	var se *json.SyntaxError
	if err == nil || !strings.Contains(err.Error(), "openai: malformed stream chunk") ||
		!strings.Contains(err.Error(), `{\"choices\":[{\"delta\"`) || !errors.As(err, &se) {
		t.Errorf("err = %v", err)
	}
	long := `data: {"x":"` + strings.Repeat("y", 500) + "\n\n"
	ht2 := sseServer(t, long, false)
	_, err = collect(newOpenAITest(ht2.srv.URL, ht2.client), Request{Prompt: "hi"})
	if err == nil || len(err.Error()) > 250 {
		t.Errorf("long payload: err = %v", err)
	}
}

func TestOpenAIStreamErrorEvent(t *testing.T) {
	ht := sseServer(t, delta("a")+`data: {"error":{"message":"context length exceeded","type":"invalid_request_error","code":null}}`+"\n\n", false)
	cs, err := collect(newOpenAITest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
	assertAPIError(t, err, "openai", 200, "context length exceeded", "invalid_request_error")
	if len(cs) != 1 {
		t.Errorf("chunks %+v", cs)
	}
}

func TestOpenAIHTTPErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		msg, typ  string
		maxMsgLen int
	}{
		{"429", 429, `{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`, "Rate limit reached for requests", "requests", 0},
		{"500 numeric code", 500, `{"error":{"message":"boom","code":500}}`, "boom", "500", 0},
		{"400 string code", 400, `{"error":{"message":"bad","type":null,"code":"invalid_value"}}`, "bad", "invalid_value", 0},
		{"vllm", 400, `{"object":"error","message":"too long","type":"BadRequestError","code":400}`, "too long", "BadRequestError", 0},
		{"502 html", 502, "  <html>Bad gateway</html>\n", "<html>Bad gateway</html>", "", 0},
		{"503 empty", 503, "", "Service Unavailable", "", 0},
		{"long text", 500, strings.Repeat("é", 1000), strings.Repeat("é", 100) + "...", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				writeFlush(w, tt.body)
			})
			p := newOpenAITest(ht.srv.URL, ht.client)
			_, err := collect(p, Request{Prompt: "hi"})
			assertAPIError(t, err, "openai", tt.status, tt.msg, tt.typ)
			_, err = p.Generate(context.Background(), Request{Prompt: "hi"})
			assertAPIError(t, err, "openai", tt.status, tt.msg, tt.typ)
		})
	}
}

func TestOpenAIConnectionError(t *testing.T) {
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {})
	url := ht.srv.URL
	ht.srv.Close()
	_, err := collect(newOpenAITest(url, ht.client), Request{Prompt: "hi"})
	if err == nil || !strings.HasPrefix(err.Error(), `openai: Post "`+url+`/v1/chat/completions": `) {
		t.Errorf("err = %v", err)
	}
}

func TestOpenAIStreamFnError(t *testing.T) {
	testStreamFnError(t, newOpenAITest, sseType, delta("a"))
}

func TestOpenAIStreamCancel(t *testing.T) {
	testStreamCancel(t, newOpenAITest, sseType, sseRole+": ping\n\n"+delta("first"), "first")
}

func TestOpenAICancelledBeforeStart(t *testing.T) {
	ht := sseServer(t, sseDone, false)
	testCancelledBeforeStart(t, newOpenAITest(ht.srv.URL, ht.client))
}

func TestOpenAIGenerate(t *testing.T) {
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		writeFlush(w, `{"id":"x","object":"chat.completion","model":"m1-2024","choices":[{"index":0,
			"message":{"role":"assistant","content":"Hello there"},"finish_reason":"length"}],
			"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`)
	})
	p := NewOpenAI(OpenAIOptions{BaseURL: ht.srv.URL, APIKey: "sk", HTTPClient: ht.client})
	got, err := p.Generate(context.Background(), Request{Model: "m1", Prompt: "Hi", MaxTokens: 2, Stop: []string{"."}})
	if err != nil {
		t.Fatal(err)
	}
	want := Response{Text: "Hello there", FinishReason: "length", Model: "m1-2024", Usage: Usage{5, 2, 7}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	r := ht.request(t)
	if r.Header.Get("Authorization") != "Bearer sk" || r.Header.Get("Accept") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	assertJSON(t, r.Body, `{"model":"m1","messages":[{"role":"user","content":"Hi"}],"stream":false,"max_tokens":2,"stop":["."]}`)
}

func TestOpenAIGenerateBadReplies(t *testing.T) {
	for body, want := range map[string]string{
		`{"choices":[]}`: "openai: reply has no choices",
		`{"choices":[`:   "openai: malformed reply",
		`{"error":{"message":"nope","type":"server_error"}}`: "openai: HTTP 200 (server_error): nope",
	} {
		ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) { writeFlush(w, body) })
		_, err := newOpenAITest(ht.srv.URL, ht.client).Generate(context.Background(), Request{Prompt: "hi"})
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("body %s: err = %v, want %q", body, err, want)
		}
	}
	// a reply without usage, finish_reason or model
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		writeFlush(w, `{"choices":[{"message":{"content":"x"},"finish_reason":null}]}`)
	})
	got, err := newOpenAITest(ht.srv.URL, ht.client).Generate(context.Background(), Request{Prompt: "hi"})
	if want := (Response{Text: "x", FinishReason: "stop", Model: "m"}); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
}

// TestStreamsReuseTheConnection: a complete reply leaves the connection in
// the pool, even when the end of the chunked body arrives after [DONE] (or
// after Ollama's done line); a new stream does not dial again.
func TestStreamsReuseTheConnection(t *testing.T) {
	for _, c := range []struct {
		name string
		newP func(url string, c *http.Client) Provider
		body string
	}{
		{"openai", newOpenAITest, delta("hi") + sseFinish + sseDone},
		{"ollama", func(url string, c *http.Client) Provider {
			return NewOllama(OllamaOptions{BaseURL: url, HTTPClient: c, Model: "m", Retry: RetryPolicy{Clock: &testClock{}}})
		}, `{"response":"hi","done":false}` + "\n" + `{"response":"","done":true,"done_reason":"stop"}` + "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
				writeFlush(w, c.body)
				time.Sleep(5 * time.Millisecond) // the body's end comes later
			})
			var dials atomic.Int32
			var d net.Dialer
			ht.client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return d.DialContext(ctx, network, addr)
			}
			p := c.newP(ht.srv.URL, ht.client)
			for range 5 {
				if _, err := collect(p, Request{Prompt: "x"}); err != nil {
					t.Fatal(err)
				}
				ht.request(t)
			}
			if n := dials.Load(); n != 1 {
				t.Errorf("%d connections for 5 streams, want 1", n)
			}
		})
	}
}
