package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

//go:embed demo.lua
var demoScript string

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var lf llmFlags
	lf.register(fs, 12*time.Millisecond)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: moonbridge demo [flags]\n\n"+
			"Runs the showcase script on the embedded generator (no network):\n"+
			"a fan-out of generations with a live progress line, a streamed\n"+
			"answer, a generate -> summarise pipeline and a race against a\n"+
			"timeout. --llm points it at a real server instead.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	p, err := lf.provider(fs)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	rt, err := bridge.New(bridge.Options{Stdout: stdout, Stderr: stderr})
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
	if err := rt.RegisterLLM("llm", p); err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 1
	}
	if err := rt.RunString(ctx, "demo", demoScript); err != nil {
		report(stderr, err)
		return 1
	}
	return 0
}
