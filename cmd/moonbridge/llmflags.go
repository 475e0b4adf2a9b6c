package main

// The LLM flags shared by run, chat and demo, and the provider they choose.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

// commandFlags makes the flag set of a command that talks to an LLM: the
// LLM flags (delay: the local generator's default pause per token) and
// usage, the help text printed before the flags.
func commandFlags(name, usage string, delay time.Duration, stderr io.Writer) (*flag.FlagSet, *llmFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	lf := &llmFlags{}
	lf.register(fs, delay)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage+"\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs, lf
}

// parseFlags parses args; when ok is false the command exits with code
// (0 after --help, 2 for a bad flag).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}

// newLLMRuntime makes the Runtime of a command, with p as require("llm").
func newLLMRuntime(stdout, stderr io.Writer, p llm.Provider) (*bridge.Runtime, error) {
	rt, err := bridge.New(bridge.Options{Stdout: stdout, Stderr: stderr})
	if err != nil {
		return nil, err
	}
	if err := rt.RegisterLLM("llm", p); err != nil {
		rt.Close()
		return nil, err
	}
	return rt, nil
}

type llmFlags struct {
	kind      string
	url       string
	model     string
	seed      int64
	maxTokens int
	delay     time.Duration
	retries   int
	maxComp   bool
	set       map[string]bool // flags given on the command line
}

// register adds the flags to fs; delay is the local generator's default
// pause per token for this command.
func (f *llmFlags) register(fs *flag.FlagSet, delay time.Duration) {
	fs.StringVar(&f.kind, "llm", "local", "LLM provider: local (embedded generator, no network), openai or ollama")
	fs.StringVar(&f.url, "llm-url", "", "base URL of the server (default https://api.openai.com/v1 or http://localhost:11434); the key comes from OPENAI_API_KEY")
	fs.StringVar(&f.model, "model", "", "model name (required by most servers)")
	fs.Int64Var(&f.seed, "seed", 1, "seed, for reproducible replies")
	fs.IntVar(&f.maxTokens, "max-tokens", 0, "default reply length limit in tokens (0: the provider's default)")
	fs.DurationVar(&f.delay, "token-delay", delay, "local generator: pause before each token, to look like a model")
	fs.IntVar(&f.retries, "llm-retries", 2, "openai, ollama: retries of a request that failed for a passing reason (429, 5xx, a dropped connection)")
	fs.BoolVar(&f.maxComp, "max-completion-tokens", false, "openai: send the length limit as max_completion_tokens (OpenAI's reasoning models need it) instead of max_tokens")
}

// provider builds the chosen provider, with the flags as the defaults of
// every request.
func (f *llmFlags) provider(fs *flag.FlagSet) (llm.Provider, error) {
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	var p llm.Provider
	switch f.kind {
	case "local":
		if f.url != "" {
			return nil, fmt.Errorf("--llm-url is for --llm openai or ollama, not local")
		}
		p = llm.NewLocal(llm.LocalOptions{Seed: f.seed, TokenDelay: f.delay, MaxTokens: f.maxTokens})
	case "openai":
		p = llm.NewOpenAI(llm.OpenAIOptions{BaseURL: f.url, Model: f.model, Retry: f.retry(), MaxCompletionTokens: f.maxComp})
	case "ollama":
		p = llm.NewOllama(llm.OllamaOptions{BaseURL: f.url, Model: f.model, Retry: f.retry()})
	default:
		return nil, fmt.Errorf("--llm %q: want local, openai or ollama", f.kind)
	}
	d := defaults{p: p, maxTokens: f.maxTokens}
	if f.set["seed"] && f.kind != "local" { // local has it as its own default
		d.seed = &f.seed
	}
	return d, nil
}

// describe names the provider and model, for chat's banner.
func (f *llmFlags) describe() string {
	model := f.model
	switch {
	case model != "":
	case f.kind == "local":
		model = llm.LocalModel
	default:
		model = "the server's default model"
	}
	where := ""
	if f.url != "" {
		where = " at " + f.url
	}
	return fmt.Sprintf("%s%s, %s", f.kind, where, model)
}

// retry is the retry policy --llm-retries asks for.
func (f *llmFlags) retry() llm.RetryPolicy {
	return llm.RetryPolicy{Attempts: max(f.retries, 0) + 1}
}

// defaults fills in what a request leaves unset from the command line.
type defaults struct {
	p         llm.Provider
	maxTokens int
	seed      *int64
}

func (d defaults) fill(req llm.Request) llm.Request {
	if req.MaxTokens == 0 {
		req.MaxTokens = d.maxTokens
	}
	if req.Seed == nil {
		req.Seed = d.seed
	}
	return req
}

func (d defaults) Generate(ctx context.Context, req llm.Request) (llm.Response, error) {
	return d.p.Generate(ctx, d.fill(req))
}

func (d defaults) Stream(ctx context.Context, req llm.Request, fn func(llm.Chunk) error) error {
	return d.p.Stream(ctx, d.fill(req), fn)
}
