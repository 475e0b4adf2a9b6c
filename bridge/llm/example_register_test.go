package llm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

// An agent: the script offers the model two tools, a Lua function and a
// Go bridge function; chat runs the calls the model asks for (those of one
// step concurrently) and returns its final answer. The embedded generator
// needs no network and calls tools deterministically.
func ExampleRegister() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	if err := llm.Register(rt, "llm", llm.NewLocal(llm.LocalOptions{Seed: 1})); err != nil {
		panic(err)
	}
	// A Go tool: Lua passes the arguments as a table.
	rt.RegisterFunc("almanac.sunset", func(ctx context.Context, args bridge.Args) ([]any, error) {
		a, err := args.Map(0)
		if err != nil {
			return nil, err
		}
		return []any{fmt.Sprintf("21:47 in %v", a["town"])}, nil
	})
	err = rt.RunString(context.Background(), "agent", `
local llm, almanac = require("llm"), require("almanac")
local reply, info = llm.chat({{role = "user", content = "When is sunset in Brest, and what is the moon phase?"}}, {
  tools = {
    {name = "sunset_time", description = "Sunset time for a town",
     parameters = {type = "object", properties = {town = {type = "string"}}, required = {"town"}},
     fn = almanac.sunset},
    {name = "moon_phase", description = "The phase of the moon tonight",
     fn = function() return "waxing gibbous" end},
  },
})
print(reply)
print(info.steps, #info.tool_calls, info.tool_calls[1].arguments.town)
`)
	if err != nil {
		panic(err)
	}
	// Output:
	// Here is what I found: sunset_time says 21:47 in Brest; moon_phase says waxing gibbous.
	// 2	2	Brest
}

// Per-run figures and budgets for a job queue: each job's context gets a
// meter (its usage, read after the run) and a token budget (over it, the
// script's next request raises a limit error).
func ExampleWithUsageMeter() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	if err := rt.RegisterLLM("llm", llm.NewLocal(llm.LocalOptions{Seed: 1}), llm.Budget(10_000)); err != nil {
		panic(err)
	}
	ctx, meter := llm.WithUsageMeter(context.Background())
	ctx = llm.WithTokenBudget(ctx, 40) // this job: 40 tokens, not 10,000
	err = rt.RunString(ctx, "job", `
local llm = require("llm")
while true do llm.generate("Tell me about tides", {max_tokens = 10}) end`)
	var le *bridge.LuaError
	if errors.As(err, &le) {
		fmt.Println(le.Kind, le.Op)
	}
	u := meter.Usage()
	fmt.Println(u.Requests, u.Tokens() >= 40)
	// Output:
	// limit tokens
	// 3 true
}

// Resilience: retry what may pass (429, 5xx, dropped connections, with
// backoff and Retry-After), and hold requests to a server's limits. One
// wrapped provider, registered in several Runtimes, shares the limits
// between them.
func ExampleWithLimits() {
	base := llm.NewOpenAI(llm.OpenAIOptions{
		BaseURL: "http://localhost:8080",
		Retry:   llm.RetryPolicy{Attempts: 5, MaxDelay: 20 * time.Second},
	})
	p := llm.WithLimits(base, llm.Limits{Concurrency: 8, RequestsPerMinute: 500, TokensPerMinute: 200_000})
	for range 2 {
		rt, err := bridge.New(bridge.Options{})
		if err != nil {
			panic(err)
		}
		defer rt.Close()
		if err := llm.Register(rt, "llm", p); err != nil {
			panic(err)
		}
	}
	fmt.Println("ready")
	// Output: ready
}
