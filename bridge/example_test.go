package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

// A Go function called from Lua like a plain function; two tasks call it
// at once and wait together.
func ExampleRuntime_RegisterFunc() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()

	store := map[string]string{"a": "apple", "b": "banana"}
	rt.RegisterFunc("kv.get", func(ctx context.Context, args bridge.Args) ([]any, error) {
		key, err := args.String(0)
		if err != nil {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond) // a slow lookup
		v, ok := store[key]
		if !ok {
			return nil, fmt.Errorf("no key %q", key)
		}
		return []any{v}, nil
	})

	err = rt.RunString(context.Background(), "main", `
local kv = require("kv")
local task = require("task")
local a = task.spawn(kv.get, "a")
print(kv.get("b"), a:wait())
local ok, err = pcall(kv.get, "z")
print(ok, err.kind, err.message)
`)
	if err != nil {
		panic(err)
	}
	// Output:
	// banana	apple
	// false	bridge	kv.get: no key "z"
}

// A Go stream read with a for loop. emit blocks while Lua is a window of
// values behind; leaving the loop early cancels the stream's context, so
// even an endless producer stops.
func ExampleRuntime_RegisterStream() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()

	stopped := make(chan error, 1)
	rt.RegisterStream("words", func(ctx context.Context, args bridge.Args, emit func(any) error) error {
		text, err := args.String(0)
		if err != nil {
			return err
		}
		words := strings.Fields(text)
		for i := 0; ; i++ {
			if err := emit(words[i%len(words)]); err != nil {
				stopped <- err
				return err
			}
		}
	})

	err = rt.RunString(context.Background(), "main", `
local seen = {}
for w in words("one two three four") do
  seen[#seen + 1] = w
  if w == "three" then break end
end
print(table.concat(seen, " "))
`)
	if err != nil {
		panic(err)
	}
	fmt.Println("Go side:", <-stopped)
	// Output:
	// one two three
	// Go side: context canceled
}

// Calling a Lua function from Go, from any goroutine.
func ExampleRuntime_Call() {
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		panic(err)
	}
	defer rt.Close()

	ctx := context.Background()
	if err := rt.RunString(ctx, "handlers", `
function greet(name, times)
  return string.rep("hi " .. name .. "! ", times), #name
end`); err != nil {
		panic(err)
	}
	out, err := rt.Call(ctx, "greet", "Ada", 2)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q %v\n", out[0], out[1])
	// Output:
	// "hi Ada! hi Ada! " 3
}

// An error raised in Lua comes back as a *LuaError with its traceback.
func ExampleLuaError() {
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		panic(err)
	}
	defer rt.Close()

	err = rt.RunString(context.Background(), "main", `
local function check(x) if x > 1 then error("too big: " .. x) end end
check(5)`)
	var le *bridge.LuaError
	if errors.As(err, &le) {
		fmt.Println(le.Message)
		fmt.Println(strings.Contains(le.Traceback, "in local 'check'"))
	}
	// Output:
	// main:2: too big: 5
	// true
}

// Concurrency in a script: a worker pool fed by a bounded channel, a
// promise chain, and a race against a timeout. Go's fetch runs in
// goroutines while the Lua tasks wait.
func ExampleRuntime_RunString_concurrency() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	rt.RegisterFunc("fetch", func(ctx context.Context, args bridge.Args) ([]any, error) {
		n, err := args.Int(0)
		if err != nil {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(n) * time.Millisecond):
			return []any{n * n}, nil
		case <-ctx.Done(): // a cancelled task cancels its call
			return nil, ctx.Err()
		}
	})

	err = rt.RunString(context.Background(), "main", `
local task, channel = require("task"), require("channel")
local jobs, results = channel.new(4), channel.new()
local g = task.group()
for w = 1, 3 do
  g:spawn(function() for n in jobs:iter() do results:send(fetch(n)) end end)
end
task.spawn(function() for n = 1, 6 do jobs:send(n) end jobs:close() end)
local sum = 0
for _ = 1, 6 do sum = sum + results:recv() end
g:wait()
print("sum of squares", sum)

local p = async(fetch)(3):andThen(function(v) return v + 1 end)
print("promise", await(p))

local ok, err = pcall(task.timeout, 0.01, fetch, 60000)
print("slow call", ok, err.kind)
`)
	if err != nil {
		panic(err)
	}
	// Output:
	// sum of squares	91
	// promise	10
	// slow call	false	timeout
}

// An LLM provider registered as a Lua module: here the embedded generator,
// which needs no network and is deterministic for a seed. Any
// llm.Provider works the same way (llm.NewOpenAI, llm.NewOllama).
func ExampleRuntime_RegisterLLM() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	if err := rt.RegisterLLM("llm", llm.NewLocal(llm.LocalOptions{Seed: 1})); err != nil {
		panic(err)
	}
	err = rt.RunString(context.Background(), "main", `
local llm = require("llm")
local tokens = 0
for chunk in llm.stream("Tell me about the moon", {max_tokens = 8}) do
  if chunk.done then print(tokens, chunk.finish_reason) else tokens = tokens + 1 end
end
local answers = llm.generate_all({"bridges", "tides", "lighthouses"}, {concurrency = 2, max_tokens = 4})
print(#answers, answers[1] == llm.generate("bridges", {max_tokens = 4}))
`)
	if err != nil {
		panic(err)
	}
	// Output:
	// 8	length
	// 3	true
}

// errNoRow is a sentinel error a host's database layer might return.
var errNoRow = errors.New("no such row")

// A Go error a bridge function returns stays reachable from the run's
// error; OpError also sets the Lua error's kind and op.
func ExampleOpError() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	rt.RegisterFunc("db.get", func(ctx context.Context, args bridge.Args) ([]any, error) {
		id, _ := args.Int(0)
		return nil, &bridge.OpError{Op: "db", Err: fmt.Errorf("row %d: %w", id, errNoRow)}
	})
	err = rt.RunString(context.Background(), "main", `
local ok, e = pcall(db.get, 7)
print(e.kind, e.op, e.message)
db.get(8) -- not caught: it ends the run`)
	fmt.Println(errors.Is(err, errNoRow), err)
	// Output:
	// bridge	db	db.get: row 7: no such row
	// true db.get: row 8: no such row
}

// Tasks shows what every task of a Runtime is doing, from any goroutine;
// scripts ask task.list() and t:info().
func ExampleRuntime_Tasks() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	rt.RegisterFunc("kv.get", func(ctx context.Context, args bridge.Args) ([]any, error) {
		close(entered)
		<-release
		return []any{"v"}, nil
	})
	done := make(chan error)
	go func() {
		done <- rt.RunString(context.Background(), "main", `
local task, channel = require("task"), require("channel")
local ch = channel.new()
local reader = task.spawn({name = "reader"}, function() return ch:recv() end)
task.yield()
local info = reader:info()
print(#task.list(), info.name, info.status, info.waiting_for, info.where)
kv.get("k")
ch:send("bye")`)
	}()
	<-entered
	for _, t := range rt.Tasks() {
		fmt.Printf("#%d %s: %s on %s at %s\n", t.ID, t.Name, t.Status, t.WaitingFor, t.Where)
	}
	close(release)
	fmt.Println(<-done)
	// Output:
	// 2	reader	suspended	a channel receive	main:4
	// #0 main: suspended on the Go call kv.get at main:8
	// #1 reader: suspended on a channel receive at main:4
	// <nil>
}

// A stream whose values all have one shape emits bridge.Fields: encoded in
// order, with no map to hash, and reused from one value to the next (emit
// has encoded it by the time it returns). A nil Value leaves its field out.
func ExampleFields() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		panic(err)
	}
	defer rt.Close()

	rt.RegisterStream("tokens", func(ctx context.Context, args bridge.Args, emit func(any) error) error {
		chunk := bridge.Fields{{Key: "text"}, {Key: "index"}, {Key: "last"}}
		words := []string{"hello", "from", "Go"}
		for i, w := range words {
			chunk[0].Value, chunk[1].Value = w, i+1
			chunk[2].Value = nil
			if i == len(words)-1 {
				chunk[2].Value = true
			}
			if err := emit(chunk); err != nil {
				return err
			}
		}
		return nil
	})

	err = rt.RunString(context.Background(), "main", `
for c in tokens() do
  print(c.index, c.text, c.last)
end
`)
	if err != nil {
		panic(err)
	}
	// Output:
	// 1	hello	nil
	// 2	from	nil
	// 3	Go	true
}
