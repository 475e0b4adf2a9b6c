// Command worker runs a moonbridge job queue in one process: an embedded
// NATS server with JetStream, a worker whose Lua runtimes get a Go
// function through worker.Options.Setup, and a client that submits jobs
// and waits for their results. With `moonbridge worker --nats URL` and
// `moonbridge submit --nats URL` the same pieces run on many machines.
//
//	go run ./examples/worker
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
	"github.com/moonbridge/moonbridge/bridge/worker"
	"github.com/moonbridge/moonbridge/bridge/worker/embedded"
	"github.com/nats-io/nats.go"
)

// A job: fetch a document through the Go function docs.get, ask the LLM
// for a summary, and return both.
const summarise = `
local docs, llm = require("docs"), require("llm")
local id = ...
local text = docs.get(id)
print("summarising " .. id)
local summary = llm.generate("Summarise: " .. text, {max_tokens = 8})
return id, #text, summary
`

var documents = map[string]string{
	"tides":   "The tides rise and fall twice a day, pulled by the moon.",
	"bridges": "A suspension bridge hangs its deck from cables over towers.",
	"harbour": "The harbour shelters boats from the open sea.",
}

func main() {
	dir, err := os.MkdirTemp("", "moonbridge-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Options{Dir: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()

	w, err := worker.New(ctx, nc, worker.Options{
		LLM: llm.NewLocal(llm.LocalOptions{Seed: 1}),
		// Setup runs on every Runtime of the worker's pool: the place to
		// register the Go functions jobs may call. WatchFunc lets a
		// temporary error (worker.Temporary) make the job retry.
		Setup: func(rt *bridge.Runtime) error {
			return rt.RegisterFunc("docs.get", worker.WatchFunc(func(ctx context.Context, a bridge.Args) ([]any, error) {
				id, err := a.String(0)
				if err != nil {
					return nil, err
				}
				text, ok := documents[id]
				if !ok {
					return nil, fmt.Errorf("no document %q", id)
				}
				return []any{text}, nil
			}))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()

	client, err := worker.NewClient(ctx, nc, worker.QueueOptions{})
	if err != nil {
		log.Fatal(err)
	}
	var keys []string
	for _, id := range []string{"tides", "bridges", "harbour", "moon"} {
		key, err := client.Submit(ctx, worker.Job{
			Key:    "summary-" + id, // resubmitting it would not run it again
			Script: summarise,
			Source: "summarise.lua",
			Args:   []any{id},
			Limits: worker.Limits{Timeout: time.Minute},
		})
		if err != nil {
			log.Fatal(err)
		}
		keys = append(keys, key)
	}
	for _, key := range keys {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		r, err := client.Result(wctx, key)
		cancel()
		if err != nil {
			log.Fatal(err)
		}
		if !r.OK {
			fmt.Printf("%s: %s error: %s\n", key, r.Error.Kind, r.Error.Message)
			continue
		}
		fmt.Printf("%s: %s%s\n", key, strings.TrimSpace(r.Output)+" -> ", r.Values)
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}
