package main

// moonbridge submit: put a script job on the queue, and with --wait print
// its result.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moonbridge/moonbridge/bridge/worker"
	"github.com/moonbridge/moonbridge/bridge/worker/embedded"
	"github.com/nats-io/nats.go"
)

const submitUsage = `Usage: moonbridge submit [flags] script.lua [args...]
       moonbridge submit [flags] --name NAME [args...]

Puts a job on the queue that 'moonbridge worker' serves: the script (or
the name of one in the workers' --scripts directory) and its arguments,
which it gets as "..." (strings). Prints the job's key; with --wait,
waits for the result instead and prints what the script printed, then
its return values (tab-separated; tables as JSON), as 'moonbridge run'
would; a failed job prints its error and exits 1. Flags may also follow
the script; after '--' everything is an argument.`

func cmdSubmit(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signalContext()
	defer stop()
	return runSubmit(ctx, args, stdout, stderr)
}

func runSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, submitUsage+"\n\nFlags:\n")
		fs.PrintDefaults()
	}
	natsURL := fs.String("nats", "nats://"+embedded.DefaultAddr, "URL(s) of the NATS server or cluster")
	stream := fs.String("stream", worker.DefaultStream, "the queue's stream name")
	name := fs.String("name", "", "run the script NAME that the workers resolve, instead of a file")
	key := fs.String("key", "", "the job's idempotency key (default: a random one); a key already done is not run again")
	wait := fs.Bool("wait", false, "wait for the result and print it")
	asJSON := fs.Bool("json", false, "with --wait, print the whole result record as JSON")
	timeout := fs.Duration("timeout", 0, "the job's deadline (0: the worker's default)")
	instructions := fs.Int64("instruction-limit", 0, "the job's limit of Lua VM instructions")
	memory := fs.Int64("memory", 0, "bytes of memory the job needs (refused by workers that have less)")
	tokens := fs.Int64("tokens", 0, "the job's LLM token budget")
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		left := fs.Args()
		if len(left) == 0 {
			break
		}
		if len(rest) > len(left) && rest[len(rest)-len(left)-1] == "--" {
			pos = append(pos, left...) // after "--": arguments only
			break
		}
		pos = append(pos, left[0])
		rest = left[1:]
	}
	job := worker.Job{Key: *key, Name: *name, Limits: worker.Limits{
		Timeout: *timeout, Instructions: *instructions, Memory: *memory, Tokens: *tokens,
	}}
	if *name == "" {
		if len(pos) == 0 {
			fs.Usage()
			return 2
		}
		src, err := os.ReadFile(pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "moonbridge submit: %v\n", err)
			return 1
		}
		job.Script, job.Source = string(src), filepath.Base(pos[0])
		pos = pos[1:]
	}
	for _, a := range pos {
		job.Args = append(job.Args, a)
	}

	nc, err := nats.Connect(*natsURL, nats.Name("moonbridge submit"))
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge submit: connecting to %s: %v (is 'moonbridge worker' running, or give --nats URL)\n", *natsURL, err)
		return 1
	}
	defer nc.Close()
	c, err := worker.NewClient(ctx, nc, worker.QueueOptions{Stream: *stream})
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge submit: %v\n", err)
		return 1
	}
	k, err := c.Submit(ctx, job)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge submit: %v\n", err)
		return 1
	}
	if !*wait {
		fmt.Fprintln(stdout, k)
		return 0
	}
	res, err := c.Result(ctx, k)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge submit: %v\n", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	if *asJSON {
		out, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintf(stdout, "%s\n", out)
	} else {
		printResult(stdout, stderr, res)
	}
	switch {
	case res.OK:
		return 0
	case res.Error.Kind == "exit":
		return res.Error.Code
	}
	return 1
}

// printResult prints a result as 'moonbridge run' would print the script's
// output and an error; return values follow the output, tab-separated,
// strings as they are and other values as JSON.
func printResult(stdout, stderr io.Writer, r *worker.Result) {
	io.WriteString(stdout, r.Output)
	if r.OutputTruncated {
		fmt.Fprintf(stderr, "moonbridge submit: output cut at %d bytes\n", r.Usage.OutputBytes)
	}
	if !r.OK {
		if r.Error.Kind != "exit" {
			fmt.Fprintf(stderr, "moonbridge: %s\n", r.Error.Message)
			if r.Error.Traceback != "" {
				fmt.Fprintln(stderr, r.Error.Traceback)
			}
		}
		return
	}
	var vals []json.RawMessage
	if err := json.Unmarshal(r.Values, &vals); err != nil || len(vals) == 0 {
		return
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		var s string
		if json.Unmarshal(v, &s) == nil {
			parts[i] = s
			continue
		}
		var b bytes.Buffer
		json.Compact(&b, v)
		parts[i] = b.String()
	}
	fmt.Fprintln(stdout, strings.Join(parts, "\t"))
}
