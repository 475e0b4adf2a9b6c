package llm_test

import (
	"context"
	"fmt"

	"github.com/moonbridge/moonbridge/bridge/llm"
)

// The local generator needs no network, and a seed makes its replies
// reproducible.
func ExampleNewLocal() {
	p := llm.NewLocal(llm.LocalOptions{Seed: 1})
	r, err := p.Generate(context.Background(), llm.Request{
		Prompt:    "Tell me about the moon",
		MaxTokens: 20,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Text)
	fmt.Println(r.FinishReason, r.Model, r.Usage.CompletionTokens)
	// Output:
	// The result is two bulges of water, one under the moon.
	// stop moonbridge-local 13
}

// Stream passes each token as it is generated; a Stop sequence ends the
// reply before it.
func ExampleLocal_Stream() {
	p := llm.NewLocal(llm.LocalOptions{})
	req := llm.Request{Prompt: "bridges", Seed: llm.Int(2), Stop: []string{","}}
	err := p.Stream(context.Background(), req, func(c llm.Chunk) error {
		if c.Done {
			fmt.Printf("[%s]\n", c.FinishReason)
			return nil
		}
		fmt.Printf("%q ", c.Content)
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// "The" " oldest" " bridges" " were" " simple" " beams" ":" " a" " fallen" " tree" [stop]
}
