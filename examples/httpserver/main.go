// Command httpserver serves HTTP with a Lua handler: each request is a
// Runtime.Call of the Lua global handle, run as its own task, so many
// requests are served at once by one Lua state while their LLM calls wait
// in Go. The request's context bounds the call: a client that hangs up
// cancels its task and its LLM request.
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
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

const handlers = `
local llm = require("llm")
local served = 0

-- handle(method, path, query) -> status, body
function handle(method, path, query)
  served = served + 1
  if path == "/ask" and method == "GET" then
    local text, info = llm.generate(query.q or "Say something", {max_tokens = tonumber(query.max) or 30})
    return 200, string.format("%s\n(%d tokens, request %d)\n", text, info.usage.completion_tokens, served)
  elseif path == "/health" then
    return 200, "ok\n"
  end
  return 404, "no route for " .. method .. " " .. path .. "\n"
end
`

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	delay := flag.Duration("token-delay", 5*time.Millisecond, "the local generator's pause per token")
	flag.Parse()

	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	if err := rt.RegisterLLM("llm", llm.NewLocal(llm.LocalOptions{Seed: 1, TokenDelay: *delay})); err != nil {
		log.Fatal(err)
	}
	if err := rt.RunString(context.Background(), "handlers", handlers); err != nil {
		log.Fatal(err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: handler(rt)}
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

// handler turns each request into a call of the Lua global handle.
func handler(rt *bridge.Runtime) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query := map[string]any{}
		for k, v := range r.URL.Query() {
			query[k] = v[0]
		}
		out, err := rt.Call(r.Context(), "handle", r.Method, r.URL.Path, query)
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
