// Command llm shows a Go program that embeds moonbridge with an LLM
// provider: the embedded local generator here, or an OpenAI-compatible
// server when OPENAI_BASE_URL is set (with OPENAI_API_KEY and LLM_MODEL).
// A Lua script streams one reply and fans several prompts out; Go sees the
// script's output and its error, if any.
package main

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/moonbridge/moonbridge/bridge"
	"github.com/moonbridge/moonbridge/bridge/llm"
)

const script = `
local llm = require("llm")

io.write("stream: ")
for chunk in llm.stream("Tell me about the moon", {max_tokens = 12}) do
  io.write(chunk.content)
  if chunk.done then print(" [" .. chunk.finish_reason .. "]") end
end

local answers = llm.generate_all({"Describe a bridge", "Describe a river", "Describe a bell"},
  {concurrency = 3, max_tokens = 5})
for i, a in ipairs(answers) do print(i, a) end
`

func provider() llm.Provider {
	if url := os.Getenv("OPENAI_BASE_URL"); url != "" {
		return llm.NewOpenAI(llm.OpenAIOptions{BaseURL: url, Model: os.Getenv("LLM_MODEL")})
	}
	return llm.NewLocal(llm.LocalOptions{Seed: 1, TokenDelay: 2 * time.Millisecond})
}

func main() {
	rt, err := bridge.New(bridge.Options{Stdout: os.Stdout})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	if err := rt.RegisterLLM("llm", provider()); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rt.RunString(ctx, "main", script); err != nil {
		log.Fatal(err)
	}
}
