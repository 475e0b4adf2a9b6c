package bench

// The LLM workloads' Go side, shared by every implementation: a trivial
// streaming provider (StreamChunks) and a local OpenAI-compatible server
// with the client that talks to it (GenerateAll).

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"

	"github.com/moonbridge/moonbridge/bridge/llm"
)

// ChunkProvider is an llm.Provider whose Stream emits N chunks of Content
// " tok", then a Done chunk with FinishReason "length", as fast as the
// consumer takes them: StreamChunks measures the bridge, not a generator.
// Generate is llm.Collect over Stream.
type ChunkProvider struct{ N int }

var _ llm.Provider = ChunkProvider{}

// Stream emits the chunks; it stops when fn fails or ctx is cancelled.
func (p ChunkProvider) Stream(ctx context.Context, req llm.Request, fn func(llm.Chunk) error) error {
	done := ctx.Done()
	c := llm.Chunk{Content: " tok"}
	for range p.N {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return fn(llm.Chunk{Done: true, FinishReason: "length"})
}

// Generate collects the stream.
func (p ChunkProvider) Generate(ctx context.Context, req llm.Request) (llm.Response, error) {
	return llm.Collect(ctx, p, req)
}

// streamingGenerate makes Generate a stream read to its end (llm.Collect),
// so every GenerateAll request really streams.
type streamingGenerate struct{ llm.Provider }

func (s streamingGenerate) Generate(ctx context.Context, req llm.Request) (llm.Response, error) {
	return llm.Collect(ctx, s.Provider, req)
}

// ChatServer is a local server speaking OpenAI's chat completions API as
// server-sent events (POST /v1/chat/completions, stream: true): each reply
// is ChatReplyTokens content events, each flushed on its own, echoing the
// words of the last message and then filler ("question 17 lorem ipsum
// ..."), then an event with finish_reason "stop" and "data: [DONE]". No
// artificial delay.
type ChatServer struct {
	*httptest.Server
	conns atomic.Int64 // connections accepted
}

// chatFiller pads a reply after the prompt's words.
var chatFiller = strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor")

// NewChatServer starts a ChatServer; Close it.
func NewChatServer() *ChatServer {
	s := &ChatServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	return s
}

// Conns is the number of connections the server has accepted.
func (s *ChatServer) Conns() int64 { return s.conns.Load() }

func (s *ChatServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	var req struct {
		Messages []llm.Message `json:"messages"`
		Stream   bool          `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 || !req.Stream {
		http.Error(w, "want a streamed chat request", http.StatusBadRequest)
		return
	}
	words := strings.Fields(req.Messages[len(req.Messages)-1].Content)
	f := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	for i := range ChatReplyTokens {
		var tok string
		if i < len(words) {
			tok = words[i]
		} else {
			tok = chatFiller[(i-len(words))%len(chatFiller)]
		}
		if i > 0 {
			tok = " " + tok
		}
		content, _ := json.Marshal(tok)
		fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":%s}}]}\n\n", content)
		f.Flush()
	}
	fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n")
	f.Flush()
	fmt.Fprint(w, "data: [DONE]\n\n")
	f.Flush()
}

// Provider is the GenerateAll provider: llm.NewOpenAI at this server, over
// a Transport keeping enough idle connections for GenerateAllConcurrency
// requests in flight (so connections are reused), with Generate streaming
// (llm.Collect). close drops the idle connections.
func (s *ChatServer) Provider() (p llm.Provider, close func()) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * GenerateAllConcurrency
	tr.MaxIdleConnsPerHost = 2 * GenerateAllConcurrency
	o := llm.NewOpenAI(llm.OpenAIOptions{
		BaseURL:    s.URL + "/v1",
		Model:      "bench",
		HTTPClient: &http.Client{Transport: tr},
	})
	return streamingGenerate{o}, tr.CloseIdleConnections
}
