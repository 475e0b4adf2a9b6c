// Command httpserver serves HTTP with a Lua handler: each request is a
// Call of the Lua global handle on a bridge.Pool, one Runtime per core, run
// as its own task, so many requests are served at once while their LLM
// calls wait in Go. The request's context bounds the call: a client that
// hangs up cancels its task and its LLM request.
//
// The Runtimes of a Pool share no Lua state, so what the requests share —
// here the count of requests served — lives in Go, in a function every
// Runtime registers. The handler reads its request's number first, before
// anything that waits: a number read from a shared global after a wait
// would be another request's.
//
//	go run ./examples/httpserver -addr 127.0.0.1:8080
//	curl '127.0.0.1:8080/ask?q=Tell+me+about+the+moon&max=20'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

const handlers = `
local llm = require("llm")
local requests = require("requests")

-- handle(method, path, query) -> status, body
function handle(method, path, query)
  local n = requests.next() -- this request's number, taken before any wait
  if path == "/ask" and method == "GET" then
    local text, info = llm.generate(query.q or "Say something", {max_tokens = tonumber(query.max) or 30})
    return 200, string.format("%s\n(%d tokens, request %d)\n", text, info.usage.completion_tokens, n)
  elseif path == "/health" then
    return 200, "ok\n"
  end
  return 404, "no route for " .. method .. " " .. path .. "\n"
end
`

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	delay := flag.Duration("token-delay", 5*time.Millisecond, "the local generator's pause per token")
	runtimes := flag.Int("runtimes", 0, "Runtimes in the pool (0: one per core)")
	flag.Parse()

	provider := llm.NewLocal(llm.LocalOptions{Seed: 1, TokenDelay: *delay})
	var served atomic.Int64 // shared by every Runtime, through Go
	pool, err := bridge.NewPool(*runtimes, bridge.Options{}, func(rt *bridge.Runtime) error {
		if err := rt.RegisterLLM("llm", provider); err != nil {
			return err
		}
		err := rt.RegisterFunc("requests.next", func(ctx context.Context, args bridge.Args) ([]any, error) {
			return []any{served.Add(1)}, nil
		}, bridge.Inline())
		if err != nil {
			return err
		}
		return rt.RunString(context.Background(), "handlers", handlers)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: handler(pool)}
	fmt.Printf("listening on http://%s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	fmt.Println("shut down")
}

// handler turns each request into a call of the Lua global handle on the
// least loaded Runtime of the pool.
func handler(pool *bridge.Pool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query := map[string]any{}
		for k, v := range r.URL.Query() {
			query[k] = v[0]
		}
		out, err := pool.Call(r.Context(), "handle", r.Method, r.URL.Path, query)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		status, _ := out[0].(int64)
		body, _ := out[1].(string)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(int(status))
		fmt.Fprint(w, body)
	})
}
