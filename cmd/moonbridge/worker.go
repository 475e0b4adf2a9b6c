package main

// moonbridge worker: run script jobs from a NATS JetStream queue, with an
// embedded NATS server unless --nats names one.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/worker"
	"github.com/moonbridge/moonbridge/bridge/worker/embedded"
	"github.com/nats-io/nats.go"
)

const workerUsage = `Usage: moonbridge worker [flags]

Runs script jobs from a NATS JetStream work queue (submitted with
'moonbridge submit'), several at a time on a pool of Lua runtimes, and
stores each job's result once. Without --nats it starts a NATS server in
the process, storing the queue in --embedded's directory and listening on
--listen (this machine only, by default). With --nats it joins the queue
on that server or cluster. Ctrl-C stops taking jobs and lets the running
ones finish (up to --grace); a second Ctrl-C stops at once.`

func cmdWorker(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signalContext()
	defer stop()
	go func() { // after the first Ctrl-C, a second one ends the process
		<-ctx.Done()
		stop()
	}()
	return runWorker(ctx, args, stdout, stderr, nil)
}

// runWorker is the worker command; ctx ends it. ready, if not nil, is
// called with the queue's URL once the worker consumes.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(url string)) int {
	fs, lf := commandFlags("worker", workerUsage, 0, stderr)
	natsURL := fs.String("nats", "", "URL(s) of a NATS server or cluster with JetStream (comma-separated); none: run one embedded")
	dir := fs.String("embedded", "", "directory of the embedded server's storage (default: $XDG_STATE_HOME/moonbridge/jetstream)")
	listen := fs.String("listen", embedded.DefaultAddr, "address the embedded server listens on (host:port; port 0 picks a free one)")
	stream := fs.String("stream", worker.DefaultStream, "the queue's stream name")
	concurrency := fs.Int("concurrency", 0, "jobs run at once (default 4 per runtime)")
	runtimes := fs.Int("runtimes", 0, "Lua runtimes in the pool (default one per core)")
	scripts := fs.String("scripts", "", "directory of the scripts jobs may name (NAME runs NAME.lua there)")
	memory := fs.Int64("memory-limit", 256<<20, "bytes of Lua memory per runtime; also the most a job may ask for (0: none)")
	timeout := fs.Duration("timeout", 10*time.Minute, "a job's deadline when it sets none")
	grace := fs.Duration("grace", 30*time.Second, "how long running jobs may finish after Ctrl-C")
	ackWait := fs.Duration("ack-wait", 30*time.Second, "the queue consumer's acknowledgement wait (when this worker creates it)")
	maxDeliver := fs.Int("max-deliver", 5, "deliveries of a job at most (when this worker creates the consumer)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "moonbridge worker: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *natsURL != "" && (set["embedded"] || set["listen"]) {
		fmt.Fprintln(stderr, "moonbridge worker: --embedded and --listen are for the embedded server, not with --nats")
		return 2
	}
	p, err := lf.provider(fs)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge worker: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	url := *natsURL
	if url == "" {
		if *dir == "" {
			if *dir, err = stateDir(); err != nil {
				fmt.Fprintf(stderr, "moonbridge worker: %v (give --embedded DIR)\n", err)
				return 1
			}
		}
		srv, err := embedded.Start(embedded.Options{Dir: *dir, Addr: *listen})
		if err != nil {
			fmt.Fprintf(stderr, "moonbridge worker: %v\n", err)
			return 1
		}
		defer srv.Shutdown()
		url = srv.URL()
		fmt.Fprintf(stderr, "moonbridge worker: embedded NATS server listening on %s (JetStream storage in %s)\n", url, *dir)
	}
	nc, err := nats.Connect(url, nats.Name("moonbridge worker"), nats.MaxReconnects(-1))
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge worker: connecting to %s: %v\n", url, err)
		return 1
	}
	defer nc.Close()

	opts := worker.Options{
		Queue:       worker.QueueOptions{Stream: *stream},
		AckWait:     *ackWait,
		MaxDeliver:  *maxDeliver,
		Concurrency: *concurrency,
		Runtimes:    *runtimes,
		Runtime:     bridge.Options{Stdout: stderr, Stderr: stderr, MemoryLimit: *memory},
		LLM:         p,
		Timeout:     *timeout,
		Grace:       *grace,
		Logger:      log,
	}
	if *scripts != "" {
		opts.Scripts = os.DirFS(*scripts)
	}
	w, err := worker.New(ctx, nc, opts)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge worker: %v\n", err)
		return 1
	}
	defer w.Close()
	n := w.Names()
	fmt.Fprintf(stderr, "moonbridge worker: taking jobs from %s (stream %s); results in %s, dead letters in %s\n",
		n.Jobs, n.Stream, n.ResultsStream, n.DeadStream)
	if ready != nil {
		ready(url)
	}
	if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "moonbridge worker: %v\n", err)
		return 1
	}
	fmt.Fprintln(stderr, "moonbridge worker: stopped")
	return 0
}

// stateDir is where the embedded server keeps the queue by default:
// $XDG_STATE_HOME/moonbridge/jetstream, or ~/.local/state/moonbridge/jetstream.
func stateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "moonbridge", "jetstream"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "state", "moonbridge", "jetstream"), nil
}
