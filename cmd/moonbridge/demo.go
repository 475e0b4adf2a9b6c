package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

//go:embed demo.lua
var demoScript string

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs, lf := commandFlags("demo", "Usage: moonbridge demo [flags]\n\n"+
		"Runs the showcase script on the embedded generator (no network):\n"+
		"the same fan-out of generations one after the other and then\n"+
		"concurrently, a streamed answer, a generate -> summarise pipeline,\n"+
		"a race against a timeout, an agent whose tools (two in Lua, one in\n"+
		"Go) run concurrently, and structured output. --llm points it at a\n"+
		"real server instead.", 12*time.Millisecond, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	p, err := lf.provider(fs)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	rt, err := newLLMRuntime(stdout, stderr, p)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 1
	}
	defer rt.Close()
	start := time.Now()
	if err := rt.RegisterFunc("clock", func(context.Context, bridge.Args) ([]any, error) {
		return []any{time.Since(start).Seconds()}, nil
	}, bridge.Inline()); err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 1
	}
	if err := rt.RegisterFunc("almanac.tide_times", tideTimes); err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 1
	}
	if err := rt.RunString(ctx, "demo", demoScript, isTerminal(stdout)); err != nil {
		report(stderr, err)
		return 1
	}
	return 0
}

// tideTimes is the demo agent's Go tool: a lookup that takes a while, as
// a call to a service would, and gives up when its context ends.
func tideTimes(ctx context.Context, args bridge.Args) ([]any, error) {
	a, err := args.Map(0)
	if err != nil {
		return nil, err
	}
	harbour, _ := a["harbour"].(string)
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []any{"high water 19:42, low water 01:55 at " + harbour}, nil
}
