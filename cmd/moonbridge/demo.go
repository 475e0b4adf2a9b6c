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
		"a fan-out of generations with a live progress line, a streamed\n"+
		"answer, a generate -> summarise pipeline and a race against a\n"+
		"timeout. --llm points it at a real server instead.", 12*time.Millisecond, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "moonbridge: demo takes no arguments, got %q\n", fs.Arg(0))
		return 2
	}
	p, err := lf.provider(fs)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	rt, err := newLLMRuntime(bridge.Options{Stdout: stdout, Stderr: stderr}, p)
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
	if err := rt.RunString(ctx, "demo", demoScript); err != nil {
		report(stderr, err)
		return 1
	}
	return 0
}
