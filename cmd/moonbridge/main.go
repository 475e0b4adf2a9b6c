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
		fmt.Fprintf(stdout, "moonbridge %s (Lua 5.4, libuv)\n", version)
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "moonbridge: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// signalContext is cancelled by the first Ctrl-C; a second one kills.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
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
	fmt.Fprintf(stderr, "moonbridge: %v\n", err)
}

func cmdRun(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, lf := commandFlags("run", "Usage: moonbridge run [flags] script.lua [args...]\n\n"+
		"Runs a Lua 5.4 script with moonbridge's modules (task, channel, promise,\n"+
		"pipeline, timers) and require(\"llm\"). The script's arguments are in\n"+
		"the global table arg (arg[0] is the script) and, as with lua, in the\n"+
		"main chunk's \"...\".", 0, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	script := fs.Arg(0)
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

	// arg counts from 0 (the script); build it in Lua from a sequence.
	luaArgs := make([]any, fs.NArg())
	for i, a := range fs.Args() {
		luaArgs[i] = a
	}
	if err := rt.SetGlobal(ctx, "arg", luaArgs); err != nil {
		report(stderr, err)
		return 1
	}
	if err := rt.RunString(ctx, "=(arg)", "local a = arg; arg = {}; for i, v in ipairs(a) do arg[i - 1] = v end"); err != nil {
		report(stderr, err)
		return 1
	}
	if script == "-" {
		src, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "moonbridge: %v\n", err)
			return 1
		}
		return exitCode(stderr, rt.RunString(ctx, "stdin", string(src), luaArgs[1:]...))
	}
	return exitCode(stderr, rt.RunFile(ctx, script, luaArgs[1:]...))
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
