package bench

// The json module (require("json"), C in moonbridge's core) beside its
// peers in the same Lua 5.4 VM: Debian's lua-cjson (a C module, package
// lua-cjson) and dkjson (pure Lua, package lua-dkjson), each loaded with
// require into a non-sandboxed moonbridge Runtime of its own. run.sh
// installs both when they are missing.
//
// Workloads (b.N = documents; ns/op per document, MB/s of JSON text, and
// cpu-ns/op: the process's CPU time per document, which time spent
// waiting for a core on a busy machine does not inflate):
//
//	JSONEncodeLLM / JSONDecodeLLM    a ~100 KB chat completion: choices,
//	                                 a long unicode message, tool calls with
//	                                 nested JSON arguments, logprobs, usage
//	JSONEncodeSmall / JSONDecodeSmall  an array of 100,000 small objects
//
// Every implementation encodes the same Lua value (plain tables, built by
// moonbridge's codec from Go values, so no implementation's marks are on
// it) and decodes the same text (written by encoding/json). After the
// timed loop the last result is checked: decoded values must equal the
// document, encoded text must decode (with encoding/json) to it. The
// documents hold no null and no empty array or object (the three disagree
// on those) and only floats that lua-cjson's %.14g writes exactly.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/moonbridge/moonbridge/bridge"
)

// jsonPeers: sub-benchmark name and the module require loads.
var jsonPeers = []struct{ name, module string }{
	{"moonbridge", "json"},
	{"lua-cjson", "cjson"},
	{"dkjson", "dkjson"},
}

// JSONSmallN is the number of objects in the Small workloads.
const JSONSmallN = 100_000

type jsonDoc struct {
	text  string // as encoding/json writes it
	value any    // as encoding/json reads it, numbers as int64 or float64
}

var (
	jsonLLMOnce, jsonSmallOnce sync.Once
	jsonLLM, jsonSmall         jsonDoc
)

func makeJSONDoc(v any) jsonDoc {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	text := strings.TrimSuffix(buf.String(), "\n")
	return jsonDoc{text: text, value: jsonNumbers(mustDecode(text))}
}

func mustDecode(s string) any {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		panic(err)
	}
	return v
}

// jsonNumbers turns json.Numbers into int64 (when integral text) or
// float64, as they cross into Lua.
func jsonNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = jsonNumbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, err := x.Float64()
		if err != nil {
			panic(err)
		}
		return f
	}
	return v
}

// llmDoc is a chat completion of about 100 KB, as an OpenAI-compatible
// server returns one with tool calls and logprobs.
func llmDoc() jsonDoc {
	jsonLLMOnce.Do(func() {
		r := rand.New(rand.NewSource(16))
		words := []string{"the", "weather", "in", "Paris", "is", "mild", "today,", "with", "a", "light", "breeze",
			"— température", "19 °C,", "ciel dégagé", "☀️", "and", "\"quoted\"", "text", "over\nlines", "naïve", "café", "東京", "🙂"}
		text := func(n int) string {
			var sb strings.Builder
			for i := range n {
				if i > 0 {
					sb.WriteByte(' ')
				}
				sb.WriteString(words[r.Intn(len(words))])
			}
			return sb.String()
		}
		round8 := func(f float64) float64 { return math.Round(f*1e8) / 1e8 }
		var calls []any
		for i := range 24 {
			args, _ := json.Marshal(map[string]any{
				"city": "Paris", "units": "metric", "days": []int{1, 2, 3},
				"filters": map[string]any{"min_temp": -5 + i, "max_temp": 30, "tags": []string{"outdoor", "family"},
					"window": map[string]any{"from": "2026-01-01T00:00:00Z", "to": "2026-01-08T00:00:00Z"}},
				"note": text(20),
			})
			calls = append(calls, map[string]any{
				"id": fmt.Sprintf("call_%024d", i), "type": "function",
				"function": map[string]any{"name": "get_weather_forecast", "arguments": string(args)},
			})
		}
		var tokens []any
		for range 260 {
			tok := words[r.Intn(len(words))]
			var top []any
			for range 3 {
				alt := words[r.Intn(len(words))]
				var bs []int
				for _, c := range []byte(alt) {
					bs = append(bs, int(c))
				}
				top = append(top, map[string]any{"token": alt, "logprob": round8(-r.Float64() * 8), "bytes": bs})
			}
			tokens = append(tokens, map[string]any{"token": tok, "logprob": round8(-r.Float64()), "top_logprobs": top})
		}
		jsonLLM = makeJSONDoc(map[string]any{
			"id": "chatcmpl-9aZ3kX2mQ7", "object": "chat.completion", "created": 1767225600,
			"model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_5f20662549",
			"choices": []any{map[string]any{
				"index": 0, "finish_reason": "tool_calls",
				"message":  map[string]any{"role": "assistant", "content": text(2500), "tool_calls": calls},
				"logprobs": map[string]any{"content": tokens},
			}},
			"usage": map[string]any{"prompt_tokens": 18234, "completion_tokens": 3120, "total_tokens": 21354,
				"completion_tokens_details": map[string]any{"reasoning_tokens": 1024}},
		})
	})
	return jsonLLM
}

// smallDoc is an array of JSONSmallN small objects.
func smallDoc() jsonDoc {
	jsonSmallOnce.Do(func() {
		items := make([]any, JSONSmallN)
		for i := range items {
			items[i] = map[string]any{"id": i + 1, "name": fmt.Sprintf("item %d", i+1), "price": float64(i%100000) / 100,
				"active": i%3 == 0, "tags": []string{"a", "bb"}}
		}
		jsonSmall = makeJSONDoc(items)
	})
	return jsonSmall
}

// jsonRuntime makes a Runtime with the document (value and text) in
// globals and functions running n encodes or decodes with the module.
func jsonRuntime(b *testing.B, module string, doc jsonDoc) *bridge.Runtime {
	b.Helper()
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	must(b, rt.SetGlobal(ctx, "doc", doc.value))
	must(b, rt.SetGlobal(ctx, "text", doc.text))
	err = rt.RunString(ctx, "setup", `
		local name = ...
		local ok, m = pcall(require, "`+module+`")
		if not ok then
			error("require('`+module+`') failed (bench/run.sh installs lua-cjson and lua-dkjson): " .. tostring(m))
		end
		local enc, dec = m.encode, m.decode
		if "`+module+`" == "dkjson" then
			dec = function(s)
				local v, _, err = m.decode(s)
				if err then error(err) end
				return v
			end
		end
		function encode_n(n)
			local out
			for _ = 1, n do out = enc(doc) end
			last = out
		end
		function decode_n(n)
			local out
			for _ = 1, n do out = dec(text) end
			last = out
		end
		function result() local r = last; last = nil; return r end`)
	if err != nil {
		rt.Close()
		b.Fatal(err)
	}
	return rt
}

func benchJSON(b *testing.B, doc func() jsonDoc, encode bool) {
	d := doc()
	for _, p := range jsonPeers {
		b.Run(p.name, func(b *testing.B) {
			rt := jsonRuntime(b, p.module, d)
			defer rt.Close()
			mbCall(b, rt, "collectgarbage")
			b.SetBytes(int64(len(d.text)))
			cpu := processCPU()
			b.ResetTimer()
			if encode {
				mbCall(b, rt, "encode_n", b.N)
			} else {
				mbCall(b, rt, "decode_n", b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
			got := mbCall(b, rt, "result")[0]
			if encode {
				s, ok := got.(string)
				if !ok {
					b.Fatalf("%s: encode returned %T", p.name, got)
				}
				got = jsonNumbers(mustDecode(s))
			}
			if !sameValue(got, d.value) {
				b.Fatalf("%s: the %s result differs from the document", p.name, map[bool]string{true: "encode", false: "decode"}[encode])
			}
		})
	}
}

// processCPU is the CPU time the process has used (user and system, all
// threads), in ns. On a busy machine ns/op counts the time spent waiting
// for a core; cpu-ns/op does not.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// sameValue compares values as they come from Lua or encoding/json:
// numbers by value (lua-cjson and dkjson decode every number as a float).
func sameValue(a, b any) bool {
	num := func(v any) (float64, bool) {
		switch x := v.(type) {
		case int64:
			return float64(x), true
		case float64:
			return x, true
		}
		return 0, false
	}
	if x, ok := num(a); ok {
		y, ok := num(b)
		return ok && x == y
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !sameValue(v, y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func BenchmarkJSONEncodeLLM(b *testing.B)   { benchJSON(b, llmDoc, true) }
func BenchmarkJSONDecodeLLM(b *testing.B)   { benchJSON(b, llmDoc, false) }
func BenchmarkJSONEncodeSmall(b *testing.B) { benchJSON(b, smallDoc, true) }
func BenchmarkJSONDecodeSmall(b *testing.B) { benchJSON(b, smallDoc, false) }

// TestJSONDocuments checks the documents have the sizes the workloads
// promise, and that every peer's results pass the check (run once, not
// timed).
func TestJSONDocuments(t *testing.T) {
	if n := len(llmDoc().text); n < 90_000 || n > 130_000 {
		t.Errorf("the LLM document is %d bytes, want about 100 KB", n)
	}
	if n := len(smallDoc().value.([]any)); n != JSONSmallN {
		t.Errorf("the small document has %d objects", n)
	}
}
