package core

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// ---------------------------------------------------------------------------
// helpers

// equalBits is reflect.DeepEqual for decoded values, comparing floats by
// their bits so that NaN equals itself and -0.0 differs from 0.0.
func codecEqualBits(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !codecEqualBits(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		return codecEqualMaps(x, b)
	case map[int64]any: // a table with integer keys that is not a sequence
		return codecEqualMaps(x, b)
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b) && a == b
}

// codecEqualMaps is codecEqualBits for two maps of x's type.
func codecEqualMaps[K comparable](x map[K]any, b any) bool {
	y, ok := b.(map[K]any)
	if !ok || len(x) != len(y) {
		return false
	}
	for k, xv := range x {
		yv, ok := y[k]
		if !ok || !codecEqualBits(xv, yv) {
			return false
		}
	}
	return true
}

// luaView predicts what a decoded value becomes after a trip through Lua:
// empty arrays turn into empty maps, nil map values vanish, trailing nils
// of arrays vanish. It reports false when Lua cannot send the value back:
// an array with a hole, or more than maxEncodeDepth levels.
func codecLuaView(v any, depth int) (any, bool) {
	switch x := v.(type) {
	case []any:
		if depth >= wireMaxEncodeDepth {
			return nil, false
		}
		n, last := 0, -1
		for i, el := range x {
			if el != nil {
				n, last = n+1, i
			}
		}
		if n == 0 {
			return map[string]any{}, true
		}
		if last+1 != n {
			return nil, false // a hole: not a sequence
		}
		out := make([]any, n)
		for i := range out {
			var ok bool
			if out[i], ok = codecLuaView(x[i], depth+1); !ok {
				return nil, false
			}
		}
		return out, true
	case map[string]any:
		if depth >= wireMaxEncodeDepth {
			return nil, false
		}
		out := make(map[string]any, len(x))
		for k, el := range x {
			if el == nil {
				continue
			}
			var ok bool
			if out[k], ok = codecLuaView(el, depth+1); !ok {
				return nil, false
			}
		}
		return out, true
	case map[int64]any: // Go -> Lua only: Lua sends it back as a sequence, or cannot
		if depth >= wireMaxEncodeDepth {
			return nil, false
		}
		n := 0
		for _, el := range x {
			if el != nil {
				n++
			}
		}
		if n == 0 {
			return map[string]any{}, true
		}
		out := make([]any, n)
		for i := range out {
			el := x[int64(i+1)]
			if el == nil {
				return nil, false // not 1..n: not a sequence
			}
			var ok bool
			if out[i], ok = codecLuaView(el, depth+1); !ok {
				return nil, false
			}
		}
		return out, true
	}
	return v, true
}

func codecLuaViewAll(vals []any) ([]any, bool) {
	out := make([]any, len(vals))
	for i, v := range vals {
		var ok bool
		if out[i], ok = codecLuaView(v, 0); !ok {
			return nil, false
		}
	}
	return out, true
}

// containerDepth is the number of nested arrays and maps in v.
func codecDepth(v any) int {
	d := 0
	switch x := v.(type) {
	case []any:
		for _, el := range x {
			d = max(d, codecDepth(el))
		}
		return d + 1
	case map[string]any:
		for _, el := range x {
			d = max(d, codecDepth(el))
		}
		return d + 1
	case map[int64]any:
		for _, el := range x {
			d = max(d, codecDepth(el))
		}
		return d + 1
	}
	return 0
}

func codecEncode(t testing.TB, vals ...any) []byte {
	t.Helper()
	msg, err := AppendMessage(nil, vals...)
	if err != nil {
		t.Fatalf("AppendMessage: %v", err)
	}
	return msg
}

func codecDecode(t testing.TB, msg []byte) []any {
	t.Helper()
	vals, err := DecodeMessage(msg)
	if err != nil {
		t.Fatalf("DecodeMessage(% x): %v", msg, err)
	}
	return vals
}

func codecNestArrays(levels int) any {
	var v any = "leaf"
	for range levels {
		v = []any{v}
	}
	return v
}

func codecNestMaps(levels int) any {
	var v any = int64(1)
	for range levels {
		v = map[string]any{"k": v}
	}
	return v
}

func codecErrContains(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

// ---------------------------------------------------------------------------
// round trips Go -> C/Lua -> Go

type (
	codecString    string
	codecInt       int16
	codecFloat     float32
	codecBytes     []byte
	codecSlice     []codecInt
	codecMap       map[codecString]codecInt
	codecFieldList []Field
)

type codecInner struct {
	X int      `lua:"x"`
	Y []string `lua:"y,omitempty"`
}

type codecEmbedded struct {
	E     int `lua:"e"`
	Other string
}

type codecOuter struct {
	Name     string `lua:"name"`
	Skip     int    `lua:"-"`
	Untagged bool
	In       codecInner  `lua:"in"`
	P        *codecInner `lua:"p"`
	Opt      string      `lua:"opt,omitempty"`
	Any      any         `lua:"any,omitempty"`
	hidden   int
	codecEmbedded
}

func TestCodecRoundTrip(t *testing.T) {
	negZero := math.Copysign(0, -1)
	payloadNaN := math.Float64frombits(0x7ff8_0000_0000_0123)
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	long := strings.Repeat("0123456789\x00", 10000)
	var nilPtr *codecInner
	var nilSlice []int
	var nilMap map[string]any
	var iface fmt.Stringer

	cases := []struct {
		name string
		in   any
		want any // after Go -> Lua -> Go
	}{
		{"nil", nil, nil},
		{"true", true, true},
		{"false", false, false},
		{"int zero", 0, int64(0)},
		{"int", -42, int64(-42)},
		{"int64 min", int64(math.MinInt64), int64(math.MinInt64)},
		{"int64 max", int64(math.MaxInt64), int64(math.MaxInt64)},
		{"int8", int8(-128), int64(-128)},
		{"uint8", uint8(255), int64(255)},
		{"uint32", uint32(math.MaxUint32), int64(math.MaxUint32)},
		{"uint64 max int64", uint64(math.MaxInt64), int64(math.MaxInt64)},
		{"uintptr", uintptr(7), int64(7)},
		{"float", 1.5, 1.5},
		{"float integral stays float", 2.0, 2.0},
		{"float 2^53", 9007199254740992.0, 9007199254740992.0},
		{"float32", float32(0.25), 0.25},
		{"float -0", negZero, negZero},
		{"float +inf", math.Inf(1), math.Inf(1)},
		{"float -inf", math.Inf(-1), math.Inf(-1)},
		{"float nan", math.NaN(), math.NaN()},
		{"float nan payload", payloadNaN, payloadNaN},
		{"float smallest", math.SmallestNonzeroFloat64, math.SmallestNonzeroFloat64},
		{"empty string", "", ""},
		{"string", "hello", "hello"},
		{"string zeros", "a\x00b\x00", "a\x00b\x00"},
		{"string all bytes", string(allBytes), string(allBytes)},
		{"string long", long, long},
		{"bytes", []byte("x\x00y"), "x\x00y"},
		{"nil bytes", []byte(nil), ""},
		{"array", []any{1, "a", 2.5, true}, []any{int64(1), "a", 2.5, true}},
		{"array trailing nil", []any{1, nil}, []any{int64(1)}},
		{"empty slice becomes empty map", []any{}, map[string]any{}},
		{"nil slice becomes empty map", nilSlice, map[string]any{}},
		{"typed slice", []string{"a", "b"}, []any{"a", "b"}},
		{"go array", [3]int{1, 2, 3}, []any{int64(1), int64(2), int64(3)}},
		{"byte array is an array", [2]byte{1, 2}, []any{int64(1), int64(2)}},
		{"empty map", map[string]any{}, map[string]any{}},
		{"nil map", nilMap, map[string]any{}},
		{"map", map[string]any{"a": 1, "": "empty key", "\x00": 0.5}, map[string]any{"a": int64(1), "": "empty key", "\x00": 0.5}},
		{"map nil value vanishes", map[string]any{"a": nil, "b": 1}, map[string]any{"b": int64(1)}},
		{"fields", Fields{{"content", " tok"}, {"done", false}, {"n", 3}}, map[string]any{"content": " tok", "done": false, "n": int64(3)}},
		{"fields nil value left out", Fields{{"a", nil}, {"b", 1}, {"c", nil}}, map[string]any{"b": int64(1)}},
		{"fields key twice keeps the last", Fields{{"a", 1}, {"a", "two"}}, map[string]any{"a": "two"}},
		{"fields nested", Fields{{"in", Fields{{"x", []any{1}}}}, {"m", map[string]any{"y": 2.5}}}, map[string]any{"in": map[string]any{"x": []any{int64(1)}}, "m": map[string]any{"y": 2.5}}},
		{"fields empty", Fields{}, map[string]any{}},
		{"pointer to fields", &Fields{{"a", 1}, {"b", nil}}, map[string]any{"a": int64(1)}},
		{"nil pointer to fields", (*Fields)(nil), nil},
		{"typed slice of fields", []Fields{{{"a", 1}}, {{"b", "x"}}}, []any{map[string]any{"a": int64(1)}, map[string]any{"b": "x"}}},
		{"fields in a struct", struct{ Chunk Fields }{Fields{{"a", true}}}, map[string]any{"Chunk": map[string]any{"a": true}}},
		{"fields in a typed map", map[string]Fields{"k": {{"n", 2.5}}}, map[string]any{"k": map[string]any{"n": 2.5}}},
		{"named slice of Field", codecFieldList{{"a", "z"}}, map[string]any{"a": "z"}},
		{"pointer to string", func() *string { s := "p"; return &s }(), "p"},
		{"nil pointer to string", (*string)(nil), nil},
		{"typed map", map[string]int{"a": 1}, map[string]any{"a": int64(1)}},
		{"named string", codecString("s"), "s"},
		{"named int", codecInt(-3), int64(-3)},
		{"named float", codecFloat(0.5), 0.5},
		{"named bytes", codecBytes("b"), "b"},
		{"named slice", codecSlice{1, 2}, []any{int64(1), int64(2)}},
		{"named map", codecMap{"k": 9}, map[string]any{"k": int64(9)}},
		{"nil pointer", nilPtr, nil},
		{"nil interface", iface, nil},
		{"pointer to int", new(int), int64(0)},
		{"struct", codecOuter{
			Name: "n", Skip: 5, Untagged: true, In: codecInner{X: 1, Y: []string{"y"}},
			hidden: 3, codecEmbedded: codecEmbedded{E: 4, Other: "o"},
		}, map[string]any{
			"name": "n", "Untagged": true, "in": map[string]any{"x": int64(1), "y": []any{"y"}},
			"e": int64(4), "Other": "o", // p (nil) vanishes in Lua
		}},
		{"pointer to struct", &codecOuter{P: &codecInner{X: 2}, Opt: "o", Any: 1.5}, map[string]any{
			"name": "", "Untagged": false, "in": map[string]any{"x": int64(0)},
			"p": map[string]any{"x": int64(2)}, "opt": "o", "any": 1.5, "e": int64(0), "Other": "",
		}},
		{"nested arrays 50", codecNestArrays(50), codecNestArrays(50)},
		{"nested maps 50", codecNestMaps(50), codecNestMaps(50)},
		{"nested 100", codecNestArrays(100), codecNestArrays(100)},
		{"shared subvalue", func() any { s := []any{1}; return []any{s, s} }(),
			[]any{[]any{int64(1)}, []any{int64(1)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := codecEncode(t, c.in, "after")
			back, err := luaRoundTrip(msg)
			if err != nil {
				t.Fatalf("luaRoundTrip: %v", err)
			}
			got := codecDecode(t, back)
			if want := []any{c.want, "after"}; !codecEqualBits(got, want) {
				t.Fatalf("got %#v\nwant %#v", got, want)
			}
			// The Go decoder alone sees the value as encoded.
			direct := codecDecode(t, msg)
			if view, ok := codecLuaViewAll(direct); !ok || !codecEqualBits(view, got) {
				t.Fatalf("luaView(%#v) = %#v, %v; Lua gave %#v", direct, view, ok, got)
			}
		})
	}
}

func TestCodecRoundTripGoOnly(t *testing.T) {
	// Without Lua in the middle, empty slices and nil values survive.
	in := []any{[]any{}, []any{nil, 1, nil}, map[string]any{"n": nil}, codecNestArrays(100)}
	got := codecDecode(t, codecEncode(t, in...))
	want := []any{[]any{}, []any{nil, int64(1), nil}, map[string]any{"n": nil}, codecNestArrays(100)}
	if !codecEqualBits(got, want) {
		t.Fatalf("got %#v", got)
	}
}

func TestAppendMessageAppends(t *testing.T) {
	prefix := []byte("prefix")
	msg, err := AppendMessage(prefix, "x")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg, prefix) {
		t.Fatalf("prefix lost: %q", msg)
	}
	if got := codecDecode(t, msg[len(prefix):]); !codecEqualBits(got, []any{"x"}) {
		t.Fatalf("got %#v", got)
	}
	// On error dst comes back unchanged.
	out, err := AppendMessage(prefix, "ok", func() {})
	if err == nil || string(out) != "prefix" {
		t.Fatalf("got %q, %v", out, err)
	}
	// No values: just a zero count.
	if msg := codecEncode(t); !bytes.Equal(msg, []byte{0, 0, 0, 0}) {
		t.Fatalf("empty message % x", msg)
	}
}

func TestCodecWireFormat(t *testing.T) {
	msg := codecEncode(t, nil, false, true, int64(-2), 1.0, "ab", []any{1}, map[string]any{"k": nil})
	want := []byte{
		8, 0, 0, 0,
		0x00,
		0x01,
		0x02,
		0x03, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0x04, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,
		0x05, 2, 0, 0, 0, 'a', 'b',
		0x06, 1, 0, 0, 0, 0x03, 1, 0, 0, 0, 0, 0, 0, 0,
		0x07, 1, 0, 0, 0, 1, 0, 0, 0, 'k', 0x00,
	}
	if !bytes.Equal(msg, want) {
		t.Fatalf("got  % x\nwant % x", msg, want)
	}
}

// ---------------------------------------------------------------------------
// Lua -> Go

func TestCodecLuaEncode(t *testing.T) {
	cases := []struct {
		src   string
		first int
		want  []any
	}{
		{`return {1,2,3}, {a=1}, "x\0y", 2^53, 1.5`, 1, []any{
			[]any{int64(1), int64(2), int64(3)}, map[string]any{"a": int64(1)}, "x\x00y", 9007199254740992.0, 1.5}},
		{`return`, 1, []any{}},
		{`return nil, true, false, {}, 0, 2.0, -0.0, math.mininteger, math.maxinteger`, 1, []any{
			nil, true, false, map[string]any{}, int64(0), 2.0, math.Copysign(0, -1), int64(math.MinInt64), int64(math.MaxInt64)}},
		{`return 1/0, -1/0`, 1, []any{math.Inf(1), math.Inf(-1)}},
		{`return {[2]="b", [1]="a", [3]="c"}`, 1, []any{[]any{"a", "b", "c"}}},
		{`return {[1.0]="float key normalised"}`, 1, []any{[]any{"float key normalised"}}},
		{`local s = {1}; return {s, s, {x=s}}`, 1, []any{[]any{[]any{int64(1)}, []any{int64(1)}, map[string]any{"x": []any{int64(1)}}}}},
		{`return {["1"]=1, [""]=2}`, 1, []any{map[string]any{"1": int64(1), "": int64(2)}}},
		{`return string.rep("ab\0", 100000)`, 1, []any{strings.Repeat("ab\x00", 100000)}},
		{`return "skip", 1, 2`, 2, []any{int64(1), int64(2)}},
		{`return "skip", 1, 2`, -1, []any{int64(2)}},
		{`return "skip", 1, 2`, 4, []any{}},
		{`local t = {} for i = 1, 99 do t = {t} end return t`, 1, []any{func() any {
			var v any = map[string]any{}
			for range 99 {
				v = []any{v}
			}
			return v
		}()}},
		{`local t = {}; for i = 1, 1000 do t[i] = i * 0.5 end; return #t, t[1000]`, 1, []any{int64(1000), 500.0}},
	}
	for _, c := range cases {
		msg, err := luaEncodeChunkFrom(c.src, c.first)
		if err != nil {
			t.Errorf("%s: %v", c.src, err)
			continue
		}
		if got := codecDecode(t, msg); !codecEqualBits(got, c.want) {
			t.Errorf("%s:\ngot  %#v\nwant %#v", c.src, got, c.want)
		}
	}
}

func TestCodecLuaEncodeErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`return 1, function() end`, "argument #2: cannot send a function to Go"},
		{`return print`, "argument #1: cannot send a function to Go"},
		{`return {opts={stop={1,2,io.stdout}}}`, "argument #1 (field 'opts.stop[3]'): cannot send a userdata to Go"},
		{`return coroutine.create(print)`, "argument #1: cannot send a thread to Go"},
		{`local t = {a={}}; t.a.b = t; return t`, "argument #1: table is cyclic (field 'a.b' refers back to an enclosing table)"},
		{`local t = {}; t[1] = t; return 0, t`, "argument #2: table is cyclic (field '[1]' refers back to an enclosing table)"},
		{`local t = {x={y={}}}; t.x.y.z = t.x; return t`, "argument #1: table is cyclic (field 'x.y.z' refers back to an enclosing table)"},
		{`return 1, 2, {1, x=2}`, "argument #3: table mixes integer and string keys"},
		{`return {[true]=1}`, "argument #1: table key of type boolean cannot cross to Go"},
		{`return {k={[{}]=1}}`, "argument #1 (field 'k'): table key of type table cannot cross to Go"},
		{`return {[1]=1, [3]=3}`, "argument #1: table is not a sequence: integer keys are not 1..n"},
		{`return {[0]=1}`, "argument #1: table is not a sequence: integer keys are not 1..n"},
		{`return {[-1]=1, [1]=1}`, "argument #1: table is not a sequence: integer keys are not 1..n"},
		{`return {[1.5]=1}`, "argument #1: table key 1.5 is not an integer"},
		{`local t = {} for i = 1, 100 do t = {t} end return t`, "argument #1: nested too deeply (more than 100 levels)"},
		{`local t = {} for i = 1, 100 do t = {x=t} end return 1, {t}`, "argument #2: nested too deeply (more than 100 levels)"},
		{`local t = {f=print} for i = 1, 30 do t = {["key_"..i]=t} end return t`,
			"argument #1 (field 'key_30.key_29.key_28...key_7.key_6.key_5.key_4.key_3.key_2.key_1.f'): cannot send a function to Go"},
		{`local t = {f=print} for i = 1, 50 do t = {t} end return t`,
			"argument #1 (field '[1][1][1][1][1][1][1][1]...[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1].f'): cannot send a function to Go"},
		{`return {[string.rep("x", 40)]=print}`, `argument #1 (field 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'): cannot`},
		{`return {[string.rep("x", 200)]=print}`, `argument #1 (field '["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."]'): cannot`},
		{`return {[string.rep("\1", 200)]={f=print}}`, `argument #1 (field '["` + strings.Repeat(`\1`, 32) + `..."].f'): cannot send a function to Go`},
		{`return {["a b"]={f=print}}`, `argument #1 (field '["a b"].f'): cannot send a function to Go`},
		{`return {["q\"\n"]=print}`, `argument #1 (field '["q\"\10"]'): cannot send a function to Go`},
		{`return {[string.rep("k", 40)]=print}`, `(field 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk')`},
		{`return {[string.rep("k ", 20)]=print}`, `(field '["k k k k k k k k k k k k k k k k ..."]')`},
		{`return {a={b={1,{c=print}}}}`, "argument #1 (field 'a.b[2].c'): cannot send a function to Go"},
	}
	for _, c := range cases {
		_, err := luaEncodeChunk(c.src)
		if err == nil {
			t.Errorf("%s: no error, want %q", c.src, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.src, err, c.want)
		}
	}
	// A bad stack range is refused, not crashed on.
	_, err := luaEncodeChunkFrom(`return 1`, 3)
	codecErrContains(t, err, "bad stack range")
}

// ---------------------------------------------------------------------------
// Go encode errors

type codecNode struct {
	Next *codecNode `lua:"next"`
}

type codecWithFunc struct {
	Cb func() `lua:"cb"`
}

func TestCodecEncodeErrors(t *testing.T) {
	cyclicSlice := []any{nil}
	cyclicSlice[0] = cyclicSlice
	cyclicMap := map[string]any{}
	cyclicMap["a"] = map[string]any{"b": cyclicMap}
	var n codecNode
	n.Next = &n
	var self any
	self = &self
	typedCycle := map[string][]any{"l": {nil}}
	typedCycle["l"][0] = typedCycle
	cyclicFields := Fields{{"self", nil}}
	cyclicFields[0].Value = cyclicFields

	// Not a cycle, although the sub-slice shares its data pointer.
	notCycle := []any{nil, nil}
	notCycle[1] = notCycle[:1]
	if _, err := AppendMessage(nil, notCycle); err != nil {
		t.Fatalf("sub-slice taken for a cycle: %v", err)
	}

	cases := []struct {
		vals []any
		want string
	}{
		{[]any{1, map[string]any{"opts": map[string]any{"cb": func() {}}}}, `value #2 (field "opts.cb"): cannot send a func to Lua`},
		{[]any{make(chan int)}, "value #1: cannot send a chan to Lua"},
		{[]any{complex(1, 2)}, "value #1: cannot send a complex128 to Lua"},
		{[]any{unsafe.Pointer(&n)}, "value #1: cannot send a unsafe.Pointer to Lua"},
		{[]any{codecWithFunc{}}, `value #1 (field "cb"): cannot send a func to Lua`},
		{[]any{map[float64]string{1: "a"}}, "value #1: map key type float64 cannot cross to Lua (keys must be strings or signed integers)"},
		{[]any{[]any{map[bool]int{}}}, `value #1 (field "[0]"): map key type bool cannot cross`},
		{[]any{uint64(math.MaxUint64)}, "value #1: uint64 value 18446744073709551615 overflows int64"},
		{[]any{"ok", []uint{1 << 63}}, `value #2 (field "[0]"): uint value 9223372036854775808 overflows int64`},
		{[]any{cyclicSlice}, `value #1: value is cyclic (field "[0]" refers back to an enclosing value)`},
		{[]any{cyclicMap}, `value #1: value is cyclic (field "a.b" refers back to an enclosing value)`},
		{[]any{&n}, `value #1: value is cyclic (field "next" refers back to an enclosing value)`},
		{[]any{n}, `value #1: value is cyclic (field "next.next" refers back to an enclosing value)`},
		{[]any{self}, `value #1: value is cyclic (a pointer refers back to itself)`},
		{[]any{typedCycle}, `value #1: value is cyclic (field "l[0]" refers back to an enclosing value)`},
		{[]any{codecNestArrays(101)}, "value #1: nested too deeply (more than 100 levels)"},
		{[]any{codecNestMaps(101)}, "nested too deeply (more than 100 levels)"},
		{[]any{map[string]any{"a b": func() {}}}, `value #1 (field "["a b"]"): cannot send a func to Lua`},
		{[]any{Fields{{"ok", 1}, {"cb", func() {}}}}, `value #1 (field "cb"): cannot send a func to Lua`},
		{[]any{cyclicFields}, `value #1: value is cyclic (field "self" refers back to an enclosing value)`},
	}
	for _, c := range cases {
		_, err := AppendMessage(nil, c.vals...)
		if err == nil {
			t.Errorf("%#v: no error, want %q", c.vals, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %q\nwant %q", err, c.want)
		}
	}
}

// ---------------------------------------------------------------------------
// malformed messages, for both decoders

// decodeBoth runs both decoders and checks they agree, word for word.
func codecDecodeBoth(t *testing.T, msg []byte) error {
	t.Helper()
	_, goErr := DecodeMessage(msg)
	cErr := luaDecodeCheck(msg)
	if (goErr == nil) != (cErr == nil) || goErr != nil && goErr.Error() != cErr.Error() {
		t.Fatalf("decoders disagree on % x:\n Go: %v\n  C: %v", msg, goErr, cErr)
	}
	return goErr
}

func wireU32(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }

func wireCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func wireNested(levels int) []byte {
	b := wireU32(1)
	for range levels {
		b = append(b, wireArray, 1, 0, 0, 0)
	}
	return append(b, wireNil)
}

func TestCodecDecodeMalformed(t *testing.T) {
	cases := []struct {
		msg  []byte
		want string
	}{
		{nil, "malformed message at offset 0: truncated (need 4 bytes, have 0)"},
		{[]byte{1, 0}, "offset 0: truncated (need 4 bytes, have 2)"},
		{wireU32(1), "offset 0: value count 1 exceeds the 0 bytes left"},
		{wireCat(wireU32(1), []byte{0x09}), "offset 4: unknown tag 0x09"},
		{wireCat(wireU32(1), []byte{wireIntMap}, wireU32(2), make([]byte, 17)), "offset 4: map count 2 exceeds what the 17 bytes left can hold"},
		{wireCat(wireU32(1), []byte{0xff}), "offset 4: unknown tag 0xff"},
		{wireCat(wireU32(1), []byte{0}, []byte{0}), "offset 5: 1 bytes of trailing garbage"},
		{wireCat(wireU32(0), []byte{1, 2, 3}), "offset 4: 3 bytes of trailing garbage"},
		{wireU32(math.MaxUint32), "offset 0: value count 4294967295 exceeds the 0 bytes left"},
		{wireCat(wireU32(2), []byte{0}), "offset 0: value count 2 exceeds the 1 bytes left"},
		{wireCat(wireU32(2), []byte{wireArray}, wireU32(0)), "offset 9: truncated (need 1 bytes, have 0)"},
		{wireCat(wireU32(1), []byte{wireInt, 1, 2, 3}), "offset 5: truncated (need 8 bytes, have 3)"},
		{wireCat(wireU32(1), []byte{wireFloat}), "offset 5: truncated (need 8 bytes, have 0)"},
		{wireCat(wireU32(1), []byte{wireString, 1, 0}), "offset 5: truncated (need 4 bytes, have 2)"},
		{wireCat(wireU32(1), []byte{wireString}, wireU32(5), []byte("abc")), "offset 4: string length 5 exceeds the 3 bytes left"},
		{wireCat(wireU32(1), []byte{wireArray}, wireU32(3), []byte{0, 0}), "offset 4: array count 3 exceeds the 2 bytes left"},
		{wireCat(wireU32(1), []byte{wireArray}, wireU32(math.MaxUint32)), "array count 4294967295 exceeds the 0 bytes left"},
		{wireCat(wireU32(1), []byte{wireMap}, wireU32(2), make([]byte, 9)), "offset 4: map count 2 exceeds what the 9 bytes left can hold"},
		{wireCat(wireU32(1), []byte{wireMap}, wireU32(1), wireU32(9), []byte{0}), "offset 9: key length 9 exceeds the 1 bytes left"},
		{wireCat(wireU32(1), []byte{wireMap}, wireU32(1), wireU32(0), []byte{9}), "offset 13: unknown tag 0x09"},
		{wireCat(wireU32(1), []byte{wireArray}, wireU32(1), []byte{wireArray}), "offset 10: truncated (need 4 bytes, have 0)"},
		{wireNested(201), "nested too deeply (more than 200 levels)"},
		{wireCat(wireU32(1), []byte{wireMap}, wireU32(1), wireU32(1), []byte{'k', wireArray}, wireU32(1)), "offset 14: array count 1 exceeds the 0 bytes left"},
		{wireCat(wireU32(1), []byte{wireMap}, wireU32(1), wireU32(1), []byte{'k', wireArray}, wireU32(0), []byte{0}), "offset 19: 1 bytes of trailing garbage"},
	}
	for _, c := range cases {
		err := codecDecodeBoth(t, c.msg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("% x: got %v, want %q", c.msg, err, c.want)
		}
	}
	// 200 levels are accepted by both decoders, but Lua cannot send them back.
	if err := codecDecodeBoth(t, wireNested(200)); err != nil {
		t.Fatalf("200 levels: %v", err)
	}
	_, err := luaRoundTrip(wireNested(200))
	codecErrContains(t, err, "nested too deeply (more than 100 levels)")
}

func codecRichMessage(t testing.TB) []byte {
	return codecEncode(t, nil, true, false, -7, 2.5, "str\x00", []byte{},
		[]any{1, "two", []any{3.0}, map[string]any{"four": 4}},
		map[string]any{"a": []any{"b"}, "c": map[string]any{"d": nil}, "": 1},
		codecOuter{Name: "x", P: &codecInner{Y: []string{"z"}}})
}

func TestCodecDecodeTruncations(t *testing.T) {
	msg := codecRichMessage(t)
	if err := codecDecodeBoth(t, msg); err != nil {
		t.Fatal(err)
	}
	for i := range msg {
		if err := codecDecodeBoth(t, msg[:i]); err == nil {
			t.Fatalf("prefix of %d/%d bytes accepted", i, len(msg))
		}
	}
	for _, extra := range [][]byte{{0}, {0xff}, msg} {
		if err := codecDecodeBoth(t, wireCat(msg, extra)); err == nil {
			t.Fatalf("trailing % x accepted", extra)
		}
	}
	// Flipping any single byte must not crash either decoder.
	for i := range msg {
		for _, x := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
			m := bytes.Clone(msg)
			m[i] ^= x
			codecDecodeBoth(t, m)
		}
	}
}

func TestCodecLuaDecodeOutOfMemory(t *testing.T) {
	msg := codecEncode(t, strings.Repeat("x", 1<<16), []any{codecNestMaps(20), strings.Repeat("y", 1<<12)})
	sawMemErr, sawOK := false, false
	for limit := 1 << 10; limit < 1<<20; limit += limit / 4 {
		err := luaDecodeLimited(msg, limit)
		switch {
		case err == nil:
			sawOK = true
		case strings.Contains(err.Error(), "not enough memory"):
			sawMemErr = true
		case strings.Contains(err.Error(), "cannot create a Lua state"):
		default:
			t.Fatalf("limit %d: %v", limit, err)
		}
	}
	if !sawMemErr || !sawOK {
		t.Fatalf("memory error seen %v, success seen %v", sawMemErr, sawOK)
	}
}

// ---------------------------------------------------------------------------
// DecodeInto

type codecItem struct {
	Name string `lua:"name"`
	N    int    `lua:"n"`
}

type codecOpts struct {
	MaxTokens   int            `lua:"max_tokens"`
	Temperature float64        `lua:"temperature"`
	Stop        []string       `lua:"stop"`
	Model       string         // matches "Model", then "model"
	Meta        map[string]int `lua:"meta"`
	Inner       *codecItem     `lua:"inner"`
	Inners      []codecItem    `lua:"inners"`
	Any         any            `lua:"any"`
	Skip        string         `lua:"-"`
	U8          uint8          `lua:"u8"`
	I8          int8           `lua:"i8"`
	F32         float32        `lua:"f32"`
	Arr         [2]int         `lua:"arr"`
	Bytes       []byte         `lua:"bytes"`
	Named       codecString    `lua:"named"`
	Flag        bool           `lua:"flag"`
	Keep        string         `lua:"keep"`
	codecEmbedded
}

func codecFromLua(t *testing.T, src string) any {
	t.Helper()
	msg, err := luaEncodeChunk(src)
	if err != nil {
		t.Fatal(err)
	}
	vals := codecDecode(t, msg)
	if len(vals) != 1 {
		t.Fatalf("%d values", len(vals))
	}
	return vals[0]
}

func TestDecodeInto(t *testing.T) {
	v := codecFromLua(t, `return {
		max_tokens = 100, temperature = 1, stop = {"a", "b"}, model = "m",
		meta = {x = 1, y = 2.0}, inner = {name = "in", n = 3.0}, inners = {{n = 1}, {name = "b"}},
		any = {1, {k = "v"}}, Skip = "no", u8 = 255, i8 = -128, f32 = 1.5, arr = {1, 2},
		bytes = "a\0b", named = "nm", flag = true, unknown = {1, 2, 3}, e = 7, other = "o",
	}`)
	opts := codecOpts{Keep: "kept", Skip: "skip"}
	if err := DecodeInto(v, &opts); err != nil {
		t.Fatal(err)
	}
	want := codecOpts{
		MaxTokens: 100, Temperature: 1, Stop: []string{"a", "b"}, Model: "m",
		Meta: map[string]int{"x": 1, "y": 2}, Inner: &codecItem{Name: "in", N: 3},
		Inners: []codecItem{{N: 1}, {Name: "b"}},
		Any:    []any{int64(1), map[string]any{"k": "v"}}, Skip: "skip", U8: 255, I8: -128, F32: 1.5,
		Arr: [2]int{1, 2}, Bytes: []byte("a\x00b"), Named: "nm", Flag: true, Keep: "kept",
		codecEmbedded: codecEmbedded{E: 7, Other: "o"},
	}
	if !reflect.DeepEqual(opts, want) {
		t.Fatalf("got  %+v\nwant %+v", opts, want)
	}

	// {} arrives as an empty map and still fills a slice; nil clears.
	var o2 codecOpts
	if err := DecodeInto(codecFromLua(t, `return {stop = {}, inner = {}, meta = {}}`), &o2); err != nil {
		t.Fatal(err)
	}
	if o2.Stop == nil || len(o2.Stop) != 0 || o2.Inner == nil || o2.Meta == nil || len(o2.Meta) != 0 {
		t.Fatalf("got %+v", o2)
	}
	p := &codecItem{}
	if err := DecodeInto(nil, &p); err != nil || p != nil {
		t.Fatalf("nil into pointer: %v, %v", p, err)
	}

	// The exact key wins over a case-insensitive one, whatever the order.
	for range 20 {
		var o codecOpts
		if err := DecodeInto(map[string]any{"model": "lower", "Model": "exact", "MAX_TOKENS": int64(3)}, &o); err != nil {
			t.Fatal(err)
		}
		if o.Model != "exact" || o.MaxTokens != 3 {
			t.Fatalf("got %+v", o)
		}
	}

	// Scalars and any.
	var i int
	var f float64
	var s string
	var a any
	var u uint64
	for _, c := range []struct {
		src, dst any
		want     any
	}{
		{int64(-5), &i, -5},
		{3.0, &i, 3},
		{-0.0, &i, 0},
		{int64(1) << 53, &f, float64(1 << 53)},
		{"s", &s, "s"},
		{map[string]any{"a": int64(1)}, &a, map[string]any{"a": int64(1)}},
		{1.8446744073709550e19, &u, uint64(18446744073709549568)},
		{int64(math.MaxInt64), &u, uint64(math.MaxInt64)},
	} {
		if err := DecodeInto(c.src, c.dst); err != nil {
			t.Errorf("%v into %T: %v", c.src, c.dst, err)
			continue
		}
		if got := reflect.ValueOf(c.dst).Elem().Interface(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v into %T: got %v", c.src, c.dst, got)
		}
	}
}

func TestDecodeIntoErrors(t *testing.T) {
	var i int
	var i64 int64
	var u8 uint8
	var i8 int8
	var f32 float32
	var f64 float64
	var arr [3]int
	var ch chan int
	var mi map[int]int
	cases := []struct {
		src  any
		dst  any
		want string
	}{
		{map[string]any{"max_tokens": "x"}, &codecOpts{}, `field "max_tokens": cannot use string as int`},
		{map[string]any{"u8": int64(256)}, &codecOpts{}, `field "u8": integer 256 overflows uint8`},
		{map[string]any{"u8": int64(-1)}, &codecOpts{}, `field "u8": integer -1 overflows uint8`},
		{map[string]any{"i8": int64(128)}, &codecOpts{}, `field "i8": integer 128 overflows int8`},
		{map[string]any{"max_tokens": 3.5}, &codecOpts{}, `field "max_tokens": float 3.5 is not an integer, cannot use it as int`},
		{map[string]any{"inner": map[string]any{"n": "x"}}, &codecOpts{}, `field "inner.n": cannot use string as int`},
		{map[string]any{"inners": []any{map[string]any{}, map[string]any{"n": true}}}, &codecOpts{}, `field "inners[1].n": cannot use boolean as int`},
		{map[string]any{"stop": []any{"a", int64(1)}}, &codecOpts{}, `field "stop[1]": cannot use integer as string`},
		{map[string]any{"stop": map[string]any{"a": "b"}}, &codecOpts{}, `field "stop": cannot use table as []string`},
		{map[string]any{"meta": map[string]any{"x": 1.5}}, &codecOpts{}, `field "meta.x": float 1.5 is not an integer`},
		{map[string]any{"arr": []any{int64(1)}}, &codecOpts{}, `field "arr": array of 1 elements does not fit [2]int`},
		{map[string]any{"named": int64(1)}, &codecOpts{}, `field "named": cannot use integer as core.codecString`},
		{map[string]any{"a b": map[string]any{}}, &map[string]int{}, `field "["a b"]": cannot use table as int`},
		{"x", &codecOpts{}, `cannot use string as core.codecOpts`},
		{[]any{int64(1)}, &codecOpts{}, `cannot use table as core.codecOpts`},
		{math.NaN(), &i, "float NaN is not an integer"},
		{math.Inf(1), &i, "float +Inf overflows int"},
		{math.Inf(-1), &u8, "float -Inf overflows uint8"},
		{9.3e18, &i64, "float 9.3e+18 overflows int64"},
		{-1.0, &u8, "float -1 overflows uint8"},
		{300.0, &u8, "float 300 overflows uint8"},
		{300.0, &i8, "float 300 overflows int8"},
		{1e300, &f32, "float 1e+300 overflows float32"},
		{int64(1)<<53 + 1, &f64, "integer 9007199254740993 cannot be represented exactly as float64"},
		{int64(1)<<24 + 1, &f32, "integer 16777217 cannot be represented exactly as float32"},
		{int64(math.MaxInt64), &f64, "integer 9223372036854775807 cannot be represented exactly as float64"},
		{true, &f64, "cannot use boolean as float64"},
		{[]any{int64(1)}, &arr, "array of 1 elements does not fit [3]int"},
		{int64(1), &ch, "cannot decode into chan int"},
		{map[string]any{}, &mi, "cannot decode into map[int]int: keys must be strings"},
	}
	for _, c := range cases {
		err := DecodeInto(c.src, c.dst)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%#v into %T: got %v, want %q", c.src, c.dst, err, c.want)
		}
	}
	for _, out := range []any{nil, codecOpts{}, (*codecOpts)(nil)} {
		codecErrContains(t, DecodeInto(map[string]any{}, out), "out must be a non-nil pointer")
	}
}

type codecAmbiguous struct {
	codecA
	codecB
	Name string `lua:"x"`
}

type codecA struct {
	Dup  int `lua:"dup"`
	Only int `lua:"only"`
	Name string
}

type codecB struct {
	Dup int `lua:"dup"`
	X   int `lua:"x"`
}

func TestCodecStructFields(t *testing.T) {
	si := luaStructOf(reflect.TypeFor[codecAmbiguous]())
	var names []string
	for _, f := range si.fields {
		names = append(names, f.name)
	}
	// dup is ambiguous (same depth twice) and dropped; x at depth 0 shadows B.X.
	if got := strings.Join(names, ","); got != "only,Name,x" {
		t.Fatalf("fields %s", got)
	}
	got := codecDecode(t, codecEncode(t, codecAmbiguous{codecA: codecA{Dup: 1, Only: 2, Name: "a"}, Name: "outer"}))
	want := []any{map[string]any{"only": int64(2), "Name": "a", "x": "outer"}}
	if !codecEqualBits(got, want) {
		t.Fatalf("got %#v", got)
	}
}

// ---------------------------------------------------------------------------
// fuzzing

func codecFuzzSeeds(f *testing.F) {
	f.Add([]byte{})
	f.Add(wireU32(0))
	f.Add(codecRichMessage(f))
	f.Add(wireNested(99))
	f.Add(wireNested(101))
	f.Add(wireNested(200))
	f.Add(codecEncode(f, []any{nil, 1}, []any{1, nil}, map[string]any{"a": nil}, []any{}))
	f.Add(codecEncode(f, math.NaN(), math.Copysign(0, -1), "x\x00", int64(math.MinInt64)))
	f.Add(wireCat(wireU32(1), []byte{wireMap}, wireU32(2), wireU32(1), []byte{'k', wireNil}, wireU32(1), []byte{'k', wireTrue}))
	f.Add(wireCat(wireU32(1), []byte{wireMap}, wireU32(2), wireU32(1), []byte{'k', wireTrue}, wireU32(1), []byte{'k', wireNil}))
}

func FuzzDecode(f *testing.F) {
	codecFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, goErr := DecodeMessage(data)
		cErr := luaDecodeCheck(data)
		if goErr != nil || cErr != nil {
			if cErr != nil && goErr == nil && strings.Contains(cErr.Error(), "for the Lua stack") {
				return
			}
			if (goErr == nil) != (cErr == nil) || goErr.Error() != cErr.Error() {
				t.Fatalf("decoders disagree:\n Go: %v\n  C: %v", goErr, cErr)
			}
			return
		}

		// Go re-encodes what it decoded, unless it is too deep to send.
		deep := false
		for _, v := range vals {
			deep = deep || codecDepth(v) > wireMaxEncodeDepth
		}
		again, err := AppendMessage(nil, vals...)
		if deep {
			codecErrContains(t, err, "nested too deeply")
		} else if err != nil {
			t.Fatalf("re-encode: %v", err)
		} else if got := codecDecode(t, again); !codecEqualBits(got, vals) {
			t.Fatalf("Go round trip: got %#v, want %#v", got, vals)
		}

		back, err := luaRoundTrip(data)
		want, ok := codecLuaViewAll(vals)
		if !ok {
			if err == nil || !strings.Contains(err.Error(), "not a sequence") && !strings.Contains(err.Error(), "nested too deeply") {
				t.Fatalf("Lua sent back what it cannot hold: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("luaRoundTrip: %v", err)
		}
		got, err := DecodeMessage(back)
		if err != nil {
			t.Fatalf("decoding what Lua sent: %v", err)
		}
		if !codecEqualBits(got, want) {
			t.Fatalf("Lua round trip:\ngot  %#v\nwant %#v", got, want)
		}
	})
}

// valueGen builds Go values, and what they decode to, from fuzz bytes.
type codecGen struct {
	data []byte
	pos  int
}

func (g *codecGen) byte() byte {
	if g.pos >= len(g.data) {
		return 0
	}
	g.pos++
	return g.data[g.pos-1]
}

func (g *codecGen) u64() uint64 {
	var v uint64
	for i := range 8 {
		v |= uint64(g.byte()) << (8 * i)
	}
	return v
}

func (g *codecGen) str() string {
	b := make([]byte, g.byte()%24)
	for i := range b {
		b[i] = g.byte()
	}
	return string(b)
}

type codecFuzzStruct struct {
	A int64  `lua:"a"`
	B any    `lua:"b,omitempty"`
	C string // untagged
	d int
}

// value returns a Go value and its decoded form.
func (g *codecGen) value(depth, ptrs int) (any, any) {
	op := g.byte()
	if depth > 110 || g.pos >= len(g.data) {
		op %= 9 // leaves only
	}
	switch op % 16 {
	case 0:
		return nil, nil
	case 1:
		b := g.byte()&1 == 1
		return b, b
	case 2:
		i := int64(g.u64())
		return i, i
	case 3:
		f := math.Float64frombits(g.u64())
		return f, f
	case 4:
		s := g.str()
		return s, s
	case 5:
		i := int8(g.byte())
		return i, int64(i)
	case 6:
		u := uint16(g.byte())<<8 | uint16(g.byte())
		return codecInt(u), int64(int16(u))
	case 7:
		f := float32(int8(g.byte())) / 4
		return f, float64(f)
	case 8:
		s := g.str()
		return []byte(s), s
	case 9, 10:
		n := int(g.byte() % 5)
		if op%16 == 10 {
			n = 1 // long chains reach the depth limits
		}
		vs, cs := make([]any, n), make([]any, n)
		for i := range vs {
			vs[i], cs[i] = g.value(depth+1, ptrs)
		}
		return vs, cs
	case 11:
		n := int(g.byte() % 5)
		vs, cs := make(map[string]any, n), make(map[string]any, n)
		for range n {
			k := g.str()
			vs[k], cs[k] = g.value(depth+1, ptrs)
		}
		return vs, cs
	case 12:
		n := int(g.byte() % 4)
		vs, cs := make([]int32, n), make([]any, n)
		for i := range vs {
			vs[i] = int32(g.u64())
			cs[i] = int64(vs[i])
		}
		return vs, cs
	case 13:
		n := int(g.byte() % 3)
		vs, cs := make(map[codecString][]string, n), make(map[string]any, n)
		for range n {
			k, s := g.str(), g.str()
			vs[codecString(k)], cs[k] = []string{s}, []any{s}
		}
		return vs, cs
	case 14:
		if ptrs >= 3 {
			return nil, nil
		}
		v, c := g.value(depth, ptrs+1)
		return &v, c
	default:
		s := codecFuzzStruct{A: int64(g.u64()), C: g.str(), d: 1}
		var cb any
		s.B, cb = g.value(depth+1, ptrs)
		c := map[string]any{"a": s.A, "C": s.C}
		if s.B != nil {
			c["b"] = cb
		}
		return s, c
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{9, 3, 1, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 4, 3, 'a', 0, 'b'})
	f.Add([]byte{11, 2, 1, 'k', 3, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 0, 'n', 0})
	f.Add([]byte{15, 1, 2, 3, 4, 5, 6, 7, 8, 1, 'c', 9, 0})
	f.Add(bytes.Repeat([]byte{10}, 120))
	f.Add(bytes.Repeat([]byte{14}, 10))
	f.Add([]byte{9, 3, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &codecGen{data: data}
		var vals, canon []any
		for g.pos < len(data) && len(vals) < 8 {
			v, c := g.value(0, 0)
			vals, canon = append(vals, v), append(canon, c)
		}
		deep := false
		for _, c := range canon {
			deep = deep || codecDepth(c) > wireMaxEncodeDepth
		}
		msg, err := AppendMessage(nil, vals...)
		if deep {
			codecErrContains(t, err, "nested too deeply (more than 100 levels)")
			return
		}
		if err != nil {
			t.Fatalf("AppendMessage: %v", err)
		}
		if got := codecDecode(t, msg); !codecEqualBits(got, canon) {
			t.Fatalf("Go: got %#v\nwant %#v", got, canon)
		}
		back, err := luaRoundTrip(msg)
		want, ok := codecLuaViewAll(canon)
		if !ok {
			codecErrContains(t, err, "not a sequence")
			return
		}
		if err != nil {
			t.Fatalf("luaRoundTrip: %v", err)
		}
		if got := codecDecode(t, back); !codecEqualBits(got, want) {
			t.Fatalf("Lua: got %#v\nwant %#v", got, want)
		}
	})
}

// ---------------------------------------------------------------------------
// benchmarks

func codecNested1K() map[string]any {
	m := map[string]any{
		"model":       "some-model-name",
		"max_tokens":  1024,
		"temperature": 0.7,
		"stream":      true,
		"stop":        []any{"\n\n", "END", "STOP"},
	}
	var msgs []any
	for i := range 6 {
		msgs = append(msgs, map[string]any{
			"role":    []string{"user", "assistant"}[i%2],
			"content": strings.Repeat("lorem ipsum ", 6),
			"meta":    map[string]any{"index": i, "score": float64(i) / 3, "tags": []any{"a", "b"}},
		})
	}
	m["messages"] = msgs
	return m
}

func codecBenchAppend(b *testing.B, vals ...any) {
	buf, err := AppendMessage(nil, vals...)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendMessage(buf[:0], vals...)
	}
}

func codecBenchDecode(b *testing.B, msg []byte) {
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func codecBenchLuaRoundTrip(b *testing.B, msg []byte) {
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := luaRoundTrip(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func codecBenchLuaCodec(b *testing.B, msg []byte) {
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	if err := luaCodecLoop(msg, b.N); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkAppendMessageSmall(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendMessage(buf[:0], "hello", 42, 3.25)
	}
}

func BenchmarkDecodeMessageSmall(b *testing.B) {
	codecBenchDecode(b, codecEncode(b, "hello", 42, 3.25))
}

// BenchmarkLuaRoundTripSmall includes creating and closing a lua_State.
func BenchmarkLuaRoundTripSmall(b *testing.B) {
	codecBenchLuaRoundTrip(b, codecEncode(b, "hello", 42, 3.25))
}

// BenchmarkLuaCodecSmall is decode + encode in C on one lua_State.
func BenchmarkLuaCodecSmall(b *testing.B) {
	codecBenchLuaCodec(b, codecEncode(b, "hello", 42, 3.25))
}

func BenchmarkAppendMessageNested1K(b *testing.B) { codecBenchAppend(b, codecNested1K()) }

func BenchmarkDecodeMessageNested1K(b *testing.B) {
	codecBenchDecode(b, codecEncode(b, codecNested1K()))
}

func BenchmarkLuaRoundTripNested1K(b *testing.B) {
	codecBenchLuaRoundTrip(b, codecEncode(b, codecNested1K()))
}

func BenchmarkLuaCodecNested1K(b *testing.B) { codecBenchLuaCodec(b, codecEncode(b, codecNested1K())) }

func TestCodecNested1KSize(t *testing.T) {
	n := len(codecEncode(t, codecNested1K()))
	if n < 900 || n > 1300 {
		t.Fatalf("nested1K encodes to %d bytes", n)
	}
}
