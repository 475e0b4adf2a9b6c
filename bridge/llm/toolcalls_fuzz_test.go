package llm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzToolCallAssembly feeds arbitrary SSE bodies (seeded with the tool
// fixtures) to readOpenAIStream. Whatever the fragments, it must not
// panic, and when the stream ends well every assembled call has an id and
// a name, and arguments that are one JSON object. The same body split
// anywhere (a byte at a time) assembles the same calls.
func FuzzToolCallAssembly(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "wire", "*.sse"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), uint64(7))
	}
	f.Add(`data: {"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"x","arguments":{"k":1}}},{"index":0,"id":"b"}]}}]}`+"\n\ndata: [DONE]\n\n", uint64(1))
	f.Fuzz(func(t *testing.T, body string, seed uint64) {
		var whole []ToolCall
		err := readOpenAIStream(context.Background(), newSSEReader(strings.NewReader(body)), func(c Chunk) error {
			if c.Done {
				whole = c.ToolCalls
			} else if len(c.ToolCalls) > 0 {
				t.Fatalf("tool calls before the last chunk: %+v", c)
			}
			return nil
		})
		if err != nil {
			return
		}
		for _, c := range whole {
			var obj map[string]json.RawMessage
			if c.ID == "" || c.Name == "" || json.Unmarshal(c.Arguments, &obj) != nil {
				t.Fatalf("bad call %+v", c)
			}
		}
		var split []ToolCall
		err = readOpenAIStream(context.Background(), newSSEReader(newFzSplitReader(body, seed)), func(c Chunk) error {
			if c.Done {
				split = c.ToolCalls
			}
			return nil
		})
		if err != nil {
			t.Fatalf("whole body fine, split body: %v", err)
		}
		a, _ := json.Marshal(whole)
		b, _ := json.Marshal(split)
		if string(a) != string(b) {
			t.Fatalf("split differently, assembled differently:\n%s\n%s", a, b)
		}
	})
}
