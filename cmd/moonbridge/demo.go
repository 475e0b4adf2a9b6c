package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
)

//go:embed demo.lua
var demoScript string

// demoWords is what the demo's stream function sends, word by word.
const demoWords = "Lua scripts read like sequential code while Go does the waiting: " +
	"every bridge call suspends only the task that made it, so the others keep running."

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	latency := fs.Duration("latency", 100*time.Millisecond, "simulated latency of each Go call")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: moonbridge demo [flags]\n\n"+
			"Runs the showcase: Lua tasks calling a slow Go function one after\n"+
			"another and then concurrently, a stream read with a for loop, and a\n"+
			"coroutine generator that calls Go inside.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
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
	if err := registerDemo(rt, *latency); err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 1
	}
	if err := rt.RunString(ctx, "demo", demoScript); err != nil {
		report(stderr, err)
		return 1
	}
	return 0
}

func registerDemo(rt *bridge.Runtime, latency time.Duration) error {
	start := time.Now()
	if err := rt.RegisterFunc("clock", func(ctx context.Context, args bridge.Args) ([]any, error) {
		return []any{time.Since(start).Seconds()}, nil
	}, bridge.Inline()); err != nil {
		return err
	}
	if err := rt.RegisterFunc("work.fetch", func(ctx context.Context, args bridge.Args) ([]any, error) {
		what, err := args.String(0)
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(latency):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []any{strings.ToUpper(what), len(what)}, nil
	}); err != nil {
		return err
	}
	return rt.RegisterStream("work.words", func(ctx context.Context, args bridge.Args, emit func(any) error) error {
		for _, w := range strings.Fields(demoWords) {
			select {
			case <-time.After(latency / 5):
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := emit(w + " "); err != nil {
				return err
			}
		}
		return nil
	})
}
