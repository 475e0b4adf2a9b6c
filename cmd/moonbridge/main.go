// Command moonbridge runs Lua 5.4 scripts on moonbridge's event loop, with
// the concurrency library and the llm bridge (the embedded generator by
// default, or an OpenAI-compatible or Ollama server).
//
//	moonbridge run [flags] script.lua [args...]
//	moonbridge chat [flags] [prompt...]
//	moonbridge demo
//	moonbridge worker [flags]
//	moonbridge submit [flags] script.lua [args...]
//	moonbridge version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"

	"github.com/moonbridge/moonbridge/bridge"
)

// version is the program's version; release builds set it with -ldflags.
var version = "0.1.0-dev"

const usage = `moonbridge runs Lua 5.4 scripts that drive asynchronous Go work.

Usage:
  moonbridge run [flags] script.lua [args...]   run a script ("-" reads standard input)
  moonbridge chat [flags] [prompt...]           stream a reply, or chat when no prompt is given
  moonbridge demo                               run the showcase (embedded generator)
  moonbridge worker [flags]                     run script jobs from a NATS JetStream queue
  moonbridge submit [flags] script.lua [args]   put a job on that queue (--wait: print its result)
  moonbridge version                            print the version

Run 'moonbridge COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdin, stdout, stderr)
	case "chat":
		return cmdChat(args[1:], stdin, stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "worker":
		return cmdWorker(args[1:], stdout, stderr)
	case "submit":
		return cmdSubmit(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "moonbridge: version takes no arguments, got %q\n", args[1])
			return 2
		}
		fmt.Fprintf(stdout, "moonbridge %s (Lua 5.4, libuv)\n", version)
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "moonbridge: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// errInterrupted is the cause of a context signalContext cancelled.
var errInterrupted = errors.New("interrupted")

// exitNow ends the program on a second Ctrl-C (a variable for tests).
var exitNow = os.Exit

// signalContext is cancelled by the first Ctrl-C, with errInterrupted as
// its cause; a second one exits with code 130 at once, whatever the run
// is doing. stop stops listening.
func signalContext() (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel(errInterrupted)
		case <-done:
			return
		}
		select {
		case <-sigs:
			exitNow(130)
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			cancel(nil)
		})
	}
}

// interrupted reports whether Ctrl-C cancelled ctx.
func interrupted(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errInterrupted)
}

// report prints an error that ended a run as lua does: the message, then
// the traceback.
func report(stderr io.Writer, err error) {
	var ee *bridge.ExitError
	if errors.As(err, &ee) {
		return // os.exit: the code says it all
	}
	var le *bridge.LuaError
	if errors.As(err, &le) {
		fmt.Fprintf(stderr, "moonbridge: %s\n", le.Message)
		if le.Traceback != "" {
			fmt.Fprintln(stderr, le.Traceback)
		}
		return
	}
	// The library's errors say "moonbridge:" already.
	fmt.Fprintf(stderr, "moonbridge: %s\n", strings.TrimPrefix(err.Error(), "moonbridge: "))
}

func cmdRun(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, lf := commandFlags("run", "Usage: moonbridge run [flags] script.lua [args...]\n\n"+
		"Runs a Lua 5.4 script with moonbridge's modules (task, channel, promise,\n"+
		"pipeline, timers), require(\"llm\") and require(\"http\"). The script's\n"+
		"arguments are in the global table arg (arg[0] is the script) and, as\n"+
		"with lua, in the main chunk's \"...\". The first Ctrl-C cancels the run\n"+
		"(its tasks unwind, then the program exits with code 130); a second one\n"+
		"exits at once.", 0, stderr)
	rf := &runFlags{}
	rf.register(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if err := rf.check(); err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 2
	}
	script := fs.Arg(0)
	if script != "-" {
		if fi, err := os.Stat(script); err != nil {
			fmt.Fprintf(stderr, "moonbridge: %s\n", strings.TrimPrefix(err.Error(), "stat "))
			return 1
		} else if fi.IsDir() {
			fmt.Fprintf(stderr, "moonbridge: %s is a directory, not a script\n", script)
			return 1
		}
	}
	p, err := lf.provider(fs)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 2
	}
	sigCtx, stop := signalContext()
	defer stop()
	ctx, cancel := rf.runContext(sigCtx)
	defer cancel()

	opts := rf.options(stdout, stderr)
	var tree *spanTree
	if rf.trace {
		tp, t := newTracer()
		opts.TracerProvider, tree = tp, t
		defer tp.Shutdown(context.Background())
	}
	rt, err := newLLMRuntime(opts, p)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 1
	}
	if err := bridge.RegisterHTTP(rt, rf.httpOptions()); err != nil {
		rt.Close()
		fmt.Fprintf(stderr, "moonbridge: %s\n", strings.TrimPrefix(err.Error(), "moonbridge: "))
		return 2
	}
	stopDump := dumpOnQuit(rt, stderr)
	name, err := runScript(ctx, rt, fs.Args(), stdin)
	stopDump()
	// Close fails only when the script's Lua or Go functions would not
	// stop (a finalizer that loops, say): say so, and do not exit 0.
	closeErr := rt.Close()
	if tree != nil {
		tree.print(stderr, name)
	}
	if closeErr != nil {
		fmt.Fprintf(stderr, "moonbridge: %s\n", strings.TrimPrefix(closeErr.Error(), "moonbridge: "))
		if err == nil {
			return 1
		}
	}
	if interrupted(sigCtx) {
		if err != nil && errors.Is(err, bridge.ErrCancelled) {
			fmt.Fprintln(stderr, "moonbridge: interrupted")
		} else if err != nil {
			report(stderr, err)
		}
		return 130 // as a shell reports an interrupted command
	}
	return exitCode(stderr, err)
}

// runScript sets arg and runs the script; name is its run's name.
func runScript(ctx context.Context, rt *bridge.Runtime, args []string, stdin io.Reader) (name string, err error) {
	// arg counts from 0 (the script), as lua's does: a map with integer
	// keys crosses as such a table.
	arg := make(map[int]any, len(args))
	luaArgs := make([]any, len(args))
	for i, a := range args {
		arg[i] = a
		luaArgs[i] = a
	}
	if err := rt.SetGlobal(ctx, "arg", arg); err != nil {
		return "", err
	}
	if args[0] == "-" {
		src, err := io.ReadAll(stdin)
		if err != nil {
			return "", err
		}
		return "stdin", rt.RunString(ctx, "stdin", string(src), luaArgs[1:]...)
	}
	return args[0], rt.RunFile(ctx, args[0], luaArgs[1:]...)
}

// exitCode reports err and turns it into the program's exit code: the
// script's own for os.exit, 1 for an error.
func exitCode(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	report(stderr, err)
	var ee *bridge.ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}
