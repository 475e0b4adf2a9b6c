package llm

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

const ndjsonType = "application/x-ndjson"

func newOllamaTest(url string, c *http.Client) Provider {
	return NewOllama(OllamaOptions{BaseURL: url, HTTPClient: c, Model: "m", Retry: RetryPolicy{Clock: &testClock{}}})
}

// ndjsonServer answers every request with body, written in one go or a
// byte at a time.
func ndjsonServer(t *testing.T, body string, bytewise bool) *httpTest {
	return startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ndjsonType)
		if bytewise {
			writeBytewise(w, body)
		} else {
			writeFlush(w, body)
		}
	})
}

// genLine is a /api/generate stream line with one piece of text.
func genLine(s string) string {
	b, _ := json.Marshal(s)
	return `{"model":"llama3","created_at":"2024-01-01T00:00:00Z","response":` + string(b) + `,"done":false}` + "\n"
}

// chatLine is an /api/chat stream line with one piece of text.
func chatLine(s string) string {
	b, _ := json.Marshal(s)
	return `{"model":"llama3","message":{"role":"assistant","content":` + string(b) + `},"done":false}` + "\n"
}

func TestOllamaStreamChat(t *testing.T) {
	body := chatLine("Hel") + "\r\n" + strings.TrimSuffix(chatLine("lo"), "\n") + "\r\n" + "\n" +
		`{"model":"llama3","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","total_duration":1,"prompt_eval_count":9,"eval_count":2}` + "\n"
	ht := ndjsonServer(t, body, false)
	p := NewOllama(OllamaOptions{BaseURL: ht.srv.URL + "/", Model: "default", HTTPClient: ht.client})
	cs, err := collect(p, Request{
		Model:       "llama3",
		Messages:    []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}},
		MaxTokens:   2,
		Temperature: Float(0.25),
		Stop:        []string{"\n"},
		Seed:        Int(3),
	})
	if err != nil {
		t.Fatal(err)
	}
	text, last := joinChunks(t, cs)
	if text != "Hello" || len(cs) != 3 {
		t.Errorf("text %q in %d chunks", text, len(cs))
	}
	if last.FinishReason != "length" || last.Usage == nil || *last.Usage != (Usage{9, 2, 11}) {
		t.Errorf("last chunk %+v (usage %+v)", last, last.Usage)
	}
	r := ht.request(t)
	if r.Method != "POST" || r.Path != "/api/chat" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s %v", r.Method, r.Path, r.Header)
	}
	assertJSON(t, r.Body, `{"model":"llama3","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],
		"stream":true,"options":{"num_predict":2,"temperature":0.25,"stop":["\n"],"seed":3}}`)
}

func TestOllamaStreamGenerate(t *testing.T) {
	// no done_reason, and a last line without a newline
	body := genLine("Once") + genLine(" upon") + `{"model":"llama3","response":"","done":true,"prompt_eval_count":4,"eval_count":2}`
	ht := ndjsonServer(t, body, false)
	cs, err := collect(NewOllama(OllamaOptions{BaseURL: ht.srv.URL, Model: "default", HTTPClient: ht.client}), Request{Prompt: "Tell"})
	if err != nil {
		t.Fatal(err)
	}
	text, last := joinChunks(t, cs)
	if text != "Once upon" || last.FinishReason != "stop" || last.Usage == nil || *last.Usage != (Usage{4, 2, 6}) {
		t.Errorf("text %q, last %+v", text, last)
	}
	r := ht.request(t)
	if r.Path != "/api/generate" {
		t.Errorf("path %s", r.Path)
	}
	assertJSON(t, r.Body, `{"model":"default","prompt":"Tell","stream":true}`)
}

func TestOllamaDefaults(t *testing.T) {
	if o := NewOllama(OllamaOptions{}); o.baseURL != "http://localhost:11434" || o.client == nil || o.client.Timeout != 0 {
		t.Errorf("defaults: %+v", o)
	}
	if o := NewOllama(OllamaOptions{BaseURL: "http://h:1/"}); o.baseURL != "http://h:1" {
		t.Errorf("trailing slash kept: %q", o.baseURL)
	}
}

func TestOllamaStreamBytewise(t *testing.T) {
	body := "\r\n" + strings.ReplaceAll(chatLine("héllo "), "\n", "\r\n") + chatLine("世界 🌍") + "\n\n" +
		`{"message":{"role":"assistant","content":"!"},"done":true,"done_reason":"stop"}` + "\r\n"
	ht := ndjsonServer(t, body, true)
	cs, err := collect(newOllamaTest(ht.srv.URL, ht.client), Request{Messages: []Message{{Role: "user", Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	text, last := joinChunks(t, cs)
	if text != "héllo 世界 🌍!" || last.FinishReason != "stop" || last.Usage != nil {
		t.Errorf("text %q, last %+v", text, last)
	}
}

func TestOllamaStreamTruncated(t *testing.T) {
	t.Run("ends before done", func(t *testing.T) {
		ht := ndjsonServer(t, genLine("a")+genLine("b"), false)
		cs, err := collect(newOllamaTest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
		if !errors.Is(err, ErrTruncated) || !strings.HasPrefix(err.Error(), "ollama: ") || len(cs) != 2 {
			t.Errorf("chunks %+v, err = %v, want ErrTruncated", cs, err)
		}
	})
	t.Run("ends mid-line", func(t *testing.T) {
		ht := ndjsonServer(t, genLine("a")+`{"response":"b","do`, false)
		_, err := collect(newOllamaTest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("err = %v, want ErrTruncated", err)
		}
	})
	t.Run("connection dropped", func(t *testing.T) {
		ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
			writeFlush(w, genLine("a")+`{"response":"b","do`)
			panic(http.ErrAbortHandler)
		})
		_, err := collect(newOllamaTest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("err = %v, want ErrTruncated", err)
		}
	})
}

func TestOllamaStreamMalformed(t *testing.T) {
	ht := ndjsonServer(t, genLine("a")+"{\"response\": nope}\n"+`{"done":true}`+"\n", false)
	_, err := collect(newOllamaTest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
	var se *json.SyntaxError
	if err == nil || !strings.Contains(err.Error(), `ollama: malformed stream line "{\"response\": nope}"`) || !errors.As(err, &se) {
		t.Errorf("err = %v", err)
	}
}

func TestOllamaStreamErrorLine(t *testing.T) {
	ht := ndjsonServer(t, genLine("a")+`{"error":"an error was encountered while running the model"}`+"\n", false)
	cs, err := collect(newOllamaTest(ht.srv.URL, ht.client), Request{Prompt: "hi"})
	assertAPIError(t, err, "ollama", 200, "an error was encountered while running the model", "")
	if len(cs) != 1 {
		t.Errorf("chunks %+v", cs)
	}
}

func TestOllamaHTTPErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		msg    string
	}{
		{"404", 404, `{"error":"model 'x' not found"}`, "model 'x' not found"},
		{"400", 400, `{"error":"model is required"}`, "model is required"},
		{"500 text", 500, "Internal Server Error\n", "Internal Server Error"},
		{"502 empty", 502, "", "Bad Gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				writeFlush(w, tt.body)
			})
			p := newOllamaTest(ht.srv.URL, ht.client)
			_, err := collect(p, Request{Prompt: "hi"})
			assertAPIError(t, err, "ollama", tt.status, tt.msg, "")
			_, err = p.Generate(context.Background(), Request{Messages: []Message{{Role: "user", Content: "hi"}}})
			assertAPIError(t, err, "ollama", tt.status, tt.msg, "")
		})
	}
}

func TestOllamaConnectionError(t *testing.T) {
	ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {})
	url := ht.srv.URL
	ht.srv.Close()
	_, err := newOllamaTest(url, ht.client).Generate(context.Background(), Request{Prompt: "hi"})
	if err == nil || !strings.HasPrefix(err.Error(), `ollama: Post "`+url+`/api/generate": `) {
		t.Errorf("err = %v", err)
	}
}

func TestOllamaStreamFnError(t *testing.T) {
	testStreamFnError(t, newOllamaTest, ndjsonType, genLine("a"))
}

func TestOllamaStreamCancel(t *testing.T) {
	testStreamCancel(t, newOllamaTest, ndjsonType, genLine("first"), "first")
}

func TestOllamaCancelledBeforeStart(t *testing.T) {
	ht := ndjsonServer(t, `{"done":true}`, false)
	testCancelledBeforeStart(t, newOllamaTest(ht.srv.URL, ht.client))
}

func TestOllamaGenerate(t *testing.T) {
	t.Run("generate", func(t *testing.T) {
		ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
			writeFlush(w, `{"model":"llama3","response":"Hello there","done":true,"done_reason":"length","prompt_eval_count":5,"eval_count":2}`)
		})
		got, err := newOllamaTest(ht.srv.URL, ht.client).Generate(context.Background(), Request{Prompt: "Hi", MaxTokens: 2})
		want := Response{Text: "Hello there", FinishReason: "length", Model: "llama3", Usage: Usage{5, 2, 7}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, %v; want %+v", got, err, want)
		}
		r := ht.request(t)
		if r.Path != "/api/generate" {
			t.Errorf("path %s", r.Path)
		}
		assertJSON(t, r.Body, `{"model":"m","prompt":"Hi","stream":false,"options":{"num_predict":2}}`)
	})
	t.Run("chat", func(t *testing.T) {
		ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) {
			writeFlush(w, `{"message":{"role":"assistant","content":"Yes."},"done":true}`+"\n")
		})
		got, err := newOllamaTest(ht.srv.URL, ht.client).Generate(context.Background(),
			Request{Messages: []Message{{Role: "user", Content: "Ok?"}}, Stop: []string{"!"}})
		want := Response{Text: "Yes.", FinishReason: "stop", Model: "m"}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, %v; want %+v", got, err, want)
		}
		r := ht.request(t)
		if r.Path != "/api/chat" {
			t.Errorf("path %s", r.Path)
		}
		assertJSON(t, r.Body, `{"model":"m","messages":[{"role":"user","content":"Ok?"}],"stream":false,"options":{"stop":["!"]}}`)
	})
	t.Run("error object", func(t *testing.T) {
		ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) { writeFlush(w, `{"error":"out of memory"}`) })
		_, err := newOllamaTest(ht.srv.URL, ht.client).Generate(context.Background(), Request{Prompt: "Hi"})
		assertAPIError(t, err, "ollama", 200, "out of memory", "")
	})
	t.Run("malformed", func(t *testing.T) {
		ht := startHTTPTest(t, func(w http.ResponseWriter, r *http.Request) { writeFlush(w, `{"response":`) })
		_, err := newOllamaTest(ht.srv.URL, ht.client).Generate(context.Background(), Request{Prompt: "Hi"})
		if err == nil || !strings.HasPrefix(err.Error(), "ollama: malformed reply") {
			t.Errorf("err = %v", err)
		}
	})
}

// ndjsonLines reads every line of r, and the error that ended it.
func ndjsonLines(r io.Reader) ([]string, error) {
	nr := newNDJSONReader(r)
	var lines []string
	for {
		l, err := nr.next()
		if err != nil {
			return lines, err
		}
		lines = append(lines, string(l))
	}
}

func TestNDJSONReader(t *testing.T) {
	for in, want := range map[string][]string{
		"":                      nil,
		"\n\r\n  \n":            nil,
		"{}\n":                  {"{}"},
		"{}":                    {"{}"},
		"{}\r\n[1]\r\n":         {"{}", "[1]"},
		"\n{\"a\":1}\n\n\n{}\n": {`{"a":1}`, "{}"},
		" {} \r\n{\"b\":\"é\"}": {"{}", `{"b":"é"}`},
	} {
		for how, r := range map[string]io.Reader{
			"whole":    strings.NewReader(in),
			"bytewise": iotest.OneByteReader(strings.NewReader(in)),
		} {
			got, err := ndjsonLines(r)
			if err != io.EOF || !reflect.DeepEqual(got, want) {
				t.Errorf("%q %s: lines %q, err %v; want %q", in, how, got, err, want)
			}
		}
	}
	long := strings.Repeat("x", maxEvent+1) + "\n"
	if _, err := ndjsonLines(strings.NewReader(long)); !errors.Is(err, errTooLarge) {
		t.Errorf("long line: err = %v", err)
	}
	boom := errors.New("boom")
	got, err := ndjsonLines(io.MultiReader(strings.NewReader("{}\n{\"x"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || !reflect.DeepEqual(got, []string{"{}"}) {
		t.Errorf("read error: lines %q, err %v", got, err)
	}
}
