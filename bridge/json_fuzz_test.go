package bridge_test

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/moonbridge/moonbridge/bridge"
)

// FuzzJSONDecode feeds any bytes to json.decode. It must not crash; what
// it accepts must be valid JSON and valid UTF-8 (encoding/json agrees),
// decode to what encoding/json decodes, and encode to a canonical text
// that decodes and encodes to itself again; what it refuses while
// encoding/json accepts must be one of its documented limits.
func FuzzJSONDecode(f *testing.F) {
	for _, seed := range []string{
		`{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[]}}]}`,
		`[1, -0, 1.5e3, 1E-2, 12345678901234567890, 9223372036854775807, -9223372036854775808]`,
		`"\u00e9\ud83d\ude00\n\"\\\/\b\f\r\t\u0000"`, `{"a":{"a":{"a":[[],{}]}}}`, `{"a":1,"a":2}`,
		`[1e-400, 5e-324, 2.4703282292062327e-324, 2.4703282292062328e-324, 1.7976931348623158e308]`,
		`null`, `true`, ` [ ] `, `[1,]`, `{"a" 1}`, `01`, `"\ud800"`, "\"\xff\"", `1e999`, `[[[[`,
		strings.Repeat("[", 1001) + strings.Repeat("]", 1001),
	} {
		f.Add(seed)
	}
	rt, err := bridge.New(bridge.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer rt.Close()
	if err := rt.RunString(context.Background(), "fuzz", `
		local json = require("json")
		function fuzz(s)
			local ok, v = pcall(json.decode, s)
			if not ok then
				if type(v) ~= "table" or v.op ~= "json.decode" then error(v) end
				return false, v.message
			end
			local e1 = json.encode(v, {sort_keys = true})
			local e2 = json.encode(json.decode(e1), {sort_keys = true})
			if e1 ~= e2 then error("not stable:\n" .. e1 .. "\n" .. e2) end
			return true, e1
		end`); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := rt.Call(context.Background(), "fuzz", in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		ok, text := out[0].(bool), out[1].(string)
		valid := json.Valid([]byte(in)) && utf8.ValidString(in)
		if !ok {
			if valid && !jsonDocumentedLimit(text) {
				t.Fatalf("%q is valid JSON, refused: %s", in, text)
			}
			return
		}
		if !valid {
			t.Fatalf("%q is not valid JSON or not UTF-8, accepted as %s", in, text)
		}
		if !sameJSON(fuzzValue(t, in), fuzzValue(t, text)) {
			t.Fatalf("%q decoded and encoded again as %s: a different value", in, text)
		}
	})
}

// jsonDocumentedLimit says whether a decode error is one of the limits
// json.decode documents beyond JSON's grammar.
func jsonDocumentedLimit(msg string) bool {
	for _, s := range []string{"nesting deeper than", "surrogate", "number too large", "number longer than"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func fuzzValue(t *testing.T, s string) any {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("encoding/json: %q: %v", s, err)
	}
	return v
}

// sameJSON compares decoded values; numbers by value (integers exactly,
// others as the float64 both read as).
func sameJSON(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameJSON(v, w) {
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
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			j, err := strconv.ParseInt(string(y), 10, 64)
			return err == nil && i == j
		}
		f, err1 := strconv.ParseFloat(string(x), 64)
		g, err2 := strconv.ParseFloat(string(y), 64)
		return err1 == nil && err2 == nil && (f == g || math.IsNaN(f) && math.IsNaN(g))
	default:
		return a == b
	}
}
