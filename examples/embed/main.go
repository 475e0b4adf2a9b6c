// Command embed shows a Go program embedding moonbridge: it registers a
// Go function, runs a script that calls it from concurrent tasks, then
// calls a Lua function from several goroutines at once.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

const script = `
local task = require("task")
local text = require("text")

-- Three slow Go calls at once: about one latency, not three.
local ts = {}
for i, w in ipairs({"alpha", "beta", "gamma"}) do
  ts[i] = task.spawn(text.shout, w)
end
for _, t in ipairs(ts) do print(t:wait()) end

function handler(name)
  return "hello, " .. text.shout(name)
end
`

func main() {
	if err := run(os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(out *os.File) error {
	rt, err := bridge.New(bridge.Options{Stdout: out})
	if err != nil {
		return err
	}
	defer rt.Close()

	err = rt.RegisterFunc("text.shout", func(ctx context.Context, args bridge.Args) ([]any, error) {
		s, err := args.String(0)
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(20 * time.Millisecond): // a slow service
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []any{strings.ToUpper(s)}, nil
	})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := rt.RunString(ctx, "main", script); err != nil {
		return err
	}

	// Lua handlers called from many goroutines, as an HTTP server would.
	var wg sync.WaitGroup
	replies := make([]string, 3)
	for i, name := range []string{"ada", "grace", "barbara"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := rt.Call(ctx, "handler", name)
			if err != nil {
				replies[i] = err.Error()
				return
			}
			replies[i] = res[0].(string)
		}()
	}
	wg.Wait()
	for _, r := range replies {
		fmt.Fprintln(out, r)
	}
	return nil
}
