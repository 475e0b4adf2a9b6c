package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"
	"unicode"

	"github.com/moonbridge/moonbridge/bridge"
)

//go:embed chat.lua
var chatScript string

func cmdChat(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, lf := commandFlags("chat", "Usage: moonbridge chat [flags] [prompt...]\n\n"+
		"Streams a reply to the prompt token by token. Without a prompt, chats:\n"+
		"one line per turn, the conversation kept; Ctrl-C cancels the reply\n"+
		"being written, and at the prompt ends the chat, as do Ctrl-D, /exit.\n"+
		"/reset forgets the conversation, /help lists the commands. With\n"+
		"--tools the model may call two tools, current_time and calculate;\n"+
		"each call is shown with its result. Refusals are shown as [refused].", 25*time.Millisecond, stderr)
	tools := fs.Bool("tools", false, "offer the model the tools current_time and calculate (the server must support tool calls)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	p, err := lf.provider(fs)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 2
	}
	rt, err := newLLMRuntime(stdout, stderr, p)
	if err != nil {
		fmt.Fprintf(stderr, "moonbridge: %v\n", err)
		return 1
	}
	defer rt.Close()
	if err := rt.RunString(context.Background(), "chat", chatScript, *tools); err != nil {
		report(stderr, err)
		return 1
	}
	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, os.Interrupt)
	defer signal.Stop(interrupts)
	c := &chat{rt: rt, stdout: stdout, stderr: stderr, interrupts: interrupts}
	if fs.NArg() > 0 {
		err := c.turn(strings.Join(fs.Args(), " "))
		switch {
		case err == nil:
			return 0
		case errors.Is(err, context.Canceled):
			return 130 // as a shell reports an interrupted command
		}
		return 1
	}
	fmt.Fprintf(stderr, "moonbridge chat: %s; /help for commands\n", lf.describe())
	return c.loop(stdin, isTerminal(stdin))
}

const chatHelp = `commands:
  /help    this list
  /reset   forget the conversation
  /exit    end the chat (also /quit, Ctrl-D, or Ctrl-C at the prompt)
Ctrl-C while a reply is written cancels that reply.`

type chat struct {
	rt         *bridge.Runtime
	stdout     io.Writer
	stderr     io.Writer
	interrupts <-chan os.Signal
}

// loop reads a line per turn until end of input, /exit or Ctrl-C at the
// prompt. The prompt is shown only to a terminal.
func (c *chat) loop(stdin io.Reader, prompt bool) int {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		if prompt {
			fmt.Fprint(c.stdout, "> ")
		}
		var line string
		select {
		case l, ok := <-lines:
			if !ok {
				if prompt {
					fmt.Fprintln(c.stdout)
				}
				return 0
			}
			line = strings.TrimSpace(l)
		case <-c.interrupts:
			fmt.Fprintln(c.stdout)
			return 0
		}
		switch {
		case line == "":
			continue
		case line == "/exit" || line == "/quit":
			return 0
		case line == "/help":
			fmt.Fprintln(c.stdout, chatHelp)
			continue
		case line == "/reset":
			if _, err := c.rt.Call(context.Background(), "chat_reset"); err != nil {
				report(c.stderr, err)
				continue
			}
			fmt.Fprintln(c.stdout, "(conversation forgotten)")
			continue
		case isCommand(line):
			fmt.Fprintf(c.stderr, "moonbridge: unknown command %s (/help lists them)\n", strings.Fields(line)[0])
			continue
		}
		c.turn(line) // an error is reported, and the chat goes on
	}
}

// isCommand reports whether line is a /word command rather than text: a
// first word of a slash and letters ("/etc/hosts?" is text).
func isCommand(line string) bool {
	w := strings.Fields(line)[0]
	if len(w) < 2 || w[0] != '/' {
		return false
	}
	for _, r := range w[1:] {
		if !unicode.IsLetter(r) {
			return false
		}
	}
	return true
}

// turn streams one reply; Ctrl-C meanwhile cancels it (the conversation
// forgets the turn) without ending the program.
func (c *chat) turn(line string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.rt.Call(ctx, "chat_turn", line)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			c.report(err)
		}
		return err
	case <-c.interrupts:
		cancel()
		err := <-done
		switch {
		case err == nil: // finished just before the interrupt
		case errors.Is(err, context.Canceled):
			fmt.Fprintln(c.stdout, "\n[reply cancelled]")
		default:
			c.report(err)
		}
		return err
	}
}

// report prints a failed turn: for the provider's errors (a server that is
// down, an HTTP error) the message says it all; the chat script's
// traceback is noise to someone chatting.
func (c *chat) report(err error) {
	var le *bridge.LuaError
	if errors.As(err, &le) && le.Kind == "bridge" {
		fmt.Fprintf(c.stderr, "moonbridge: %s\n", le.Message)
		return
	}
	report(c.stderr, err)
}

// isTerminal reports whether r is a character device (a terminal), where
// a prompt makes sense.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
