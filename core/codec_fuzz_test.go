package core

// Fuzz targets for the value codec, beside FuzzDecode and FuzzRoundTrip in
// codec_test.go (whose helpers they reuse):
//
//   - FuzzDecodeMessage: arbitrary bytes into the Go decoder alone.
//   - FuzzCodecRoundTrip: value trees of the decoded types (special floats,
//     strings with zeros and invalid UTF-8, nested arrays and maps) through
//     Go -> C -> Lua -> C -> Go, and as Lua source through the C encoder.
//   - FuzzCodecDecodeC: arbitrary bytes into the C decoder, on a state with
//     a fuzzed memory limit, and through decode + encode on one state. Run
//     it under -asan too: this is the C memory-safety target.
//
// Run one with: go test -run '^$' -fuzz '^FuzzCodecDecodeC$' -fuzztime 30s ./core

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"
)

// fzHasMap reports whether a decoded value holds a map anywhere: only maps
// (entry order, duplicate keys) keep a re-encoding from being byte-equal.
func fzHasMap(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return true
	case []any:
		for _, el := range x {
			if fzHasMap(el) {
				return true
			}
		}
	}
	return false
}

// fzWireSeeds adds messages covering each wire type, well formed and not.
func fzWireSeeds(f *testing.F) {
	f.Add([]byte{})
	f.Add(wireU32(0))
	f.Add(wireCat(wireU32(1), []byte{wireNil}))
	f.Add(wireCat(wireU32(2), []byte{wireFalse, wireTrue}))
	f.Add(codecEncode(f, int64(0), int64(-1), int64(math.MinInt64), int64(math.MaxInt64)))
	f.Add(codecEncode(f, 0.5, math.NaN(), math.Float64frombits(0x7ff0_0000_0000_0001), math.Inf(1), math.Inf(-1), math.Copysign(0, -1)))
	f.Add(codecEncode(f, "", "a\x00b", "\xff\xfe\xc0\x80", strings.Repeat("z", 300)))
	f.Add(codecEncode(f, []any{}, []any{nil}, []any{int64(1), "two", 3.0, []any{true}}))
	f.Add(codecEncode(f, map[string]any{}, map[string]any{"": nil, "\x00": []any{}, "k": map[string]any{"x": 1.5}}))
	f.Add(codecRichMessage(f))
	f.Add(wireNested(100))
	f.Add(wireNested(101))
	f.Add(wireNested(200))
	f.Add(wireNested(201))
	// Maps with duplicate keys, counts and lengths past the end, bad tags.
	f.Add(wireCat(wireU32(1), []byte{wireMap}, wireU32(2), wireU32(1), []byte{'k', wireNil}, wireU32(1), []byte{'k', wireTrue}))
	f.Add(wireCat(wireU32(1), []byte{wireArray}, wireU32(math.MaxUint32)))
	f.Add(wireCat(wireU32(1), []byte{wireMap}, wireU32(math.MaxUint32), wireU32(0), []byte{wireNil}))
	f.Add(wireCat(wireU32(1), []byte{wireString}, wireU32(math.MaxUint32), []byte("abc")))
	f.Add(wireCat(wireU32(1), []byte{wireMap}, wireU32(1), wireU32(math.MaxUint32), []byte{wireNil}))
	f.Add(wireCat(wireU32(1), []byte{wireInt, 1, 2, 3}))
	f.Add(wireCat(wireU32(1), []byte{0x08}))
	f.Add(wireCat(wireU32(math.MaxUint32), []byte{wireNil}))
	f.Add(wireCat(wireU32(0), []byte{0}))
	f.Add(wireCat(wireU32(1), bytes.Repeat([]byte{wireArray, 0xff, 0xff, 0, 0}, 50)))
}

// FuzzDecodeMessage feeds arbitrary bytes to the Go decoder: it must not
// panic, and what it accepts must re-encode to a message that decodes to
// equal values (byte for byte the same message when no map is involved).
func FuzzDecodeMessage(f *testing.F) {
	fzWireSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, err := DecodeMessage(data)

		// AppendDecoded agrees, and keeps what dst held.
		prefix := []any{"keep", int64(1)}
		app, appErr := AppendDecoded(prefix, data)
		if (err == nil) != (appErr == nil) || err != nil && err.Error() != appErr.Error() {
			t.Fatalf("DecodeMessage: %v; AppendDecoded: %v", err, appErr)
		}
		if err != nil {
			if vals != nil || app != nil {
				t.Fatalf("values with an error: %#v, %#v", vals, app)
			}
			msg := err.Error()
			off, _, ok := strings.Cut(strings.TrimPrefix(msg, "malformed message at offset "), ":")
			n, convErr := strconv.Atoi(off)
			if !strings.HasPrefix(msg, "malformed message at offset ") || !ok || convErr != nil || n < 0 || n > len(data) {
				t.Fatalf("error %q does not name an offset within the %d bytes", msg, len(data))
			}
			return
		}
		if len(app) != len(prefix)+len(vals) || !codecEqualBits(app[:len(prefix)], prefix) || !codecEqualBits(app[len(prefix):], vals) {
			t.Fatalf("AppendDecoded gave %#v, want %#v then %#v", app, prefix, vals)
		}

		deep, maps := false, false
		for _, v := range vals {
			deep = deep || codecDepth(v) > wireMaxEncodeDepth
			maps = maps || fzHasMap(v)
		}
		again, err := AppendMessage(nil, vals...)
		if deep {
			codecErrContains(t, err, "nested too deeply (more than 100 levels)")
			return
		}
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !maps && !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs:\n got % x\nwant % x", again, data)
		}
		back, err := DecodeMessage(again)
		if err != nil {
			t.Fatalf("decoding the re-encoding: %v", err)
		}
		if !codecEqualBits(back, vals) {
			t.Fatalf("round trip: got %#v, want %#v", back, vals)
		}

		// DecodeInto must not panic on any decoded value.
		for _, v := range vals {
			var a any
			var o codecOpts
			var s []string
			var m map[string]float32
			var i int8
			var arr [2]uint
			if err := DecodeInto(v, &a); err != nil || !codecEqualBits(a, v) {
				t.Fatalf("DecodeInto any: %#v, %v", a, err)
			}
			_ = DecodeInto(v, &o)
			_ = DecodeInto(v, &s)
			_ = DecodeInto(v, &m)
			_ = DecodeInto(v, &i)
			_ = DecodeInto(v, &arr)
		}
	})
}

// fzGen builds value trees of the decoded types from fuzz bytes.
type fzGen struct {
	data  []byte
	pos   int
	nodes int
}

const (
	fzMaxNodes = 400
	fzMaxDepth = 104 // a few levels past the encoders' limit
)

func (g *fzGen) byte() byte {
	if g.pos >= len(g.data) {
		return 0
	}
	g.pos++
	return g.data[g.pos-1]
}

func (g *fzGen) u64() uint64 {
	var v uint64
	for i := range 8 {
		v |= uint64(g.byte()) << (8 * i)
	}
	return v
}

var fzFloats = []float64{
	0, math.Copysign(0, -1), math.NaN(), -math.NaN(),
	math.Float64frombits(0x7ff8_0000_0000_0123), // quiet NaN with a payload
	math.Float64frombits(0x7ff0_0000_0000_0001), // signalling NaN
	math.Float64frombits(0xfff4_0000_0000_0000), // negative signalling NaN
	math.Inf(1), math.Inf(-1), math.MaxFloat64, -math.MaxFloat64,
	math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64, 2.2250738585072014e-308,
	1 << 53, 1<<53 + 2, 1 << 63, -(1 << 63), 1 << 64, 0.1, -1.5, 1e300, 3.0,
}

var fzInts = []int64{0, 1, -1, math.MinInt64, math.MaxInt64, math.MinInt64 + 1, math.MaxInt64 - 1,
	1 << 53, 1<<53 + 1, -(1 << 53), math.MaxInt32, math.MinInt32, math.MaxUint32, 255, -128}

var fzStrings = []string{
	"", "\x00", "a\x00b", "\x00\x00\x00", "\xff", "\xff\xfe\xfd", "\xc0\x80", "\xed\xa0\x80",
	"\xf4\x90\x80\x80", "é", "世界", "\xe4\xb8", "\x80", "\"\\\n\r'", "]]", "[[", "nil", "1", "1.0", "-0",
}

func (g *fzGen) str() string {
	switch c := g.byte(); {
	case c < 64:
		return fzStrings[int(c)%len(fzStrings)]
	case c < 72:
		return strings.Repeat(string(rune(g.byte())), 200+int(g.byte()))
	default:
		b := make([]byte, int(c)%20)
		for i := range b {
			b[i] = g.byte()
		}
		return string(b)
	}
}

// value returns a tree of nil, bool, int64, float64, string, []any and
// map[string]any.
func (g *fzGen) value(depth int) any {
	g.nodes++
	op := g.byte()
	if g.pos >= len(g.data) || depth >= fzMaxDepth || g.nodes >= fzMaxNodes {
		op %= 8 // leaves only
	}
	switch op % 12 {
	case 0:
		return nil
	case 1:
		return g.byte()&1 == 1
	case 2:
		return int64(g.u64())
	case 3:
		return fzInts[int(g.byte())%len(fzInts)]
	case 4:
		return math.Float64frombits(g.u64())
	case 5:
		return fzFloats[int(g.byte())%len(fzFloats)]
	case 6, 7:
		return g.str()
	case 8:
		n := int(g.byte() % 7)
		a := make([]any, n)
		for i := range a {
			a[i] = g.value(depth + 1)
		}
		return a
	case 9, 10:
		n := int(g.byte() % 5)
		m := make(map[string]any, n)
		for range n {
			k := g.str()
			m[k] = g.value(depth + 1)
		}
		return m
	default: // a chain, to reach the depth limits
		if g.byte()&1 == 0 {
			return []any{g.value(depth + 1)}
		}
		return map[string]any{g.str(): g.value(depth + 1)}
	}
}

// fzLuaString is s as a Lua string literal.
func fzLuaString(s string) string {
	var b strings.Builder
	b.Grow(2 + 4*len(s))
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ' ' {
			b.WriteByte(c)
			continue
		}
		b.WriteString(`\x`)
		b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
		b.WriteString(strconv.FormatUint(uint64(c)&15, 16))
	}
	b.WriteByte('"')
	return b.String()
}

// fzLuaFloat is f as a Lua expression giving exactly its bits.
func fzLuaFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		var raw [8]byte
		u := math.Float64bits(f)
		for i := range raw {
			raw[i] = byte(u >> (8 * i))
		}
		return "(string.unpack('<d', " + fzLuaString(string(raw[:])) + "))"
	case math.IsInf(f, 1):
		return "math.huge"
	case math.IsInf(f, -1):
		return "(-math.huge)"
	}
	return "(" + strconv.FormatFloat(f, 'x', -1, 64) + ")"
}

// fzLua writes v as Lua source. style picks how arrays are written:
// positionally ({a, b}), or with explicit keys in ascending or descending
// order, which puts the elements in the hash part of the table.
func fzLua(b *strings.Builder, v any, style byte) {
	switch x := v.(type) {
	case nil:
		b.WriteString("nil")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int64:
		if x == math.MinInt64 {
			b.WriteString("math.mininteger")
		} else {
			b.WriteString("(" + strconv.FormatInt(x, 10) + ")")
		}
	case float64:
		b.WriteString(fzLuaFloat(x))
	case string:
		b.WriteString(fzLuaString(x))
	case []any:
		b.WriteByte('{')
		for j := range x {
			i := j
			if style%3 == 2 {
				i = len(x) - 1 - j
			}
			if style%3 != 0 {
				b.WriteString("[" + strconv.Itoa(i+1) + "]=")
			}
			fzLua(b, x[i], style)
			b.WriteByte(',')
		}
		b.WriteByte('}')
	case map[string]any:
		b.WriteByte('{')
		for k, el := range x {
			b.WriteString("[" + fzLuaString(k) + "]=")
			fzLua(b, el, style)
			b.WriteByte(',')
		}
		b.WriteByte('}')
	default:
		panic("fzLua: unexpected type")
	}
}

func fzLuaErr(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "not a sequence") || strings.Contains(err.Error(), "nested too deeply"))
}

// FuzzCodecRoundTrip builds values from fuzz bytes, sends them Go -> C ->
// Lua -> C -> Go and compares (NaN payloads and -0 by their bits); then
// writes them as a Lua chunk and has the C encoder send the chunk's
// results, which must come out the same.
func FuzzCodecRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 4, 0xf8, 0x7f, 0, 0, 0, 0, 0, 0, 5, 2, 5, 1})
	f.Add([]byte{1, 6, 0, 6, 65, 6, 70, 200, 0x80, 6, 66})
	f.Add([]byte{2, 8, 4, 0, 2, 1, 0, 5, 3, 8, 0})
	f.Add([]byte{0, 9, 3, 0, 0, 1, 1, 3, 0, 66, 2, 4, 99, 0, 0, 0, 0, 0, 0, 0})
	f.Add(append([]byte{0}, bytes.Repeat([]byte{11, 0}, 99)...))
	f.Add(append([]byte{1}, bytes.Repeat([]byte{11, 1, 2}, 101)...))
	f.Add([]byte{0, 8, 3, 0, 1, 1, 0})
	f.Add([]byte{2, 8, 3, 1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var style byte
		if len(data) > 0 {
			style = data[0]
		}
		g := &fzGen{data: data, pos: min(1, len(data))}
		var vals []any
		for g.pos < len(data) && len(vals) < 8 && g.nodes < fzMaxNodes {
			vals = append(vals, g.value(0))
		}
		deep := false
		for _, v := range vals {
			deep = deep || codecDepth(v) > wireMaxEncodeDepth
		}
		want, ok := codecLuaViewAll(vals)

		msg, err := AppendMessage(nil, vals...)
		switch {
		case deep:
			codecErrContains(t, err, "nested too deeply (more than 100 levels)")
		case err != nil:
			t.Fatalf("AppendMessage: %v", err)
		default:
			if got := codecDecode(t, msg); !codecEqualBits(got, vals) {
				t.Fatalf("Go: got %#v\nwant %#v", got, vals)
			}
			back, err := luaRoundTrip(msg)
			if !ok {
				if !fzLuaErr(err) {
					t.Fatalf("luaRoundTrip sent back what Lua cannot hold: %v", err)
				}
			} else if err != nil {
				t.Fatalf("luaRoundTrip: %v", err)
			} else if got := codecDecode(t, back); !codecEqualBits(got, want) {
				t.Fatalf("Lua: got %#v\nwant %#v", got, want)
			}
		}

		// The same values built by a Lua chunk.
		var src strings.Builder
		src.WriteString("return ")
		for i, v := range vals {
			if i > 0 {
				src.WriteByte(',')
			}
			fzLua(&src, v, style)
		}
		back, err := luaEncodeChunk(src.String())
		if !ok {
			if !fzLuaErr(err) {
				t.Fatalf("chunk sent what it cannot: %v\n%s", err, src.String())
			}
			return
		}
		if err != nil {
			t.Fatalf("chunk: %v\n%s", err, src.String())
		}
		if got := codecDecode(t, back); !codecEqualBits(got, want) {
			t.Fatalf("chunk: got %#v\nwant %#v\n%s", got, want, src.String())
		}
	})
}

// FuzzCodecDecodeC feeds arbitrary bytes to the C decoder (mb_codec_decode)
// on a lua_State whose allocator fails past a fuzzed limit, so allocation
// failures strike at every point of a decode, and through decode + encode
// twice on one state. It must return or raise a memory error, never crash
// or leak (run with -asan to check), and agree with the Go decoder on
// whether the message is well formed.
func FuzzCodecDecodeC(f *testing.F) {
	fzWireSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, goErr := DecodeMessage(data)
		cErr := luaDecodeCheck(data)
		stack := cErr != nil && strings.Contains(cErr.Error(), "for the Lua stack")
		if !stack && ((goErr == nil) != (cErr == nil) || goErr != nil && goErr.Error() != cErr.Error()) {
			t.Fatalf("decoders disagree:\n Go: %v\n  C: %v", goErr, cErr)
		}

		// Under a memory limit: the same verdict, or a memory error. The
		// limit comes from the data so that the fuzzer can steer it.
		var h uint32 = 2166136261
		for _, c := range data {
			h = (h ^ uint32(c)) * 16777619
		}
		limit := 2048 + int(h%(64<<10))
		err := luaDecodeLimited(data, limit)
		switch {
		case err == nil:
			if cErr != nil {
				t.Fatalf("accepted under a limit, refused without: %v", cErr)
			}
		case strings.Contains(err.Error(), "not enough memory"),
			strings.Contains(err.Error(), "cannot create a Lua state"):
		case cErr == nil || err.Error() != cErr.Error():
			t.Fatalf("limit %d: %v; without a limit: %v", limit, err, cErr)
		}

		// Decode and re-encode twice on one state: the stack and the
		// output buffer are reused.
		err = luaCodecLoop(data, 2)
		if cErr != nil {
			if err == nil {
				t.Fatalf("codec loop accepted what decode refused: %v", cErr)
			}
			return
		}
		if _, ok := codecLuaViewAll(vals); ok && err != nil {
			t.Fatalf("codec loop: %v", err)
		} else if !ok && !fzLuaErr(err) {
			t.Fatalf("codec loop sent back what Lua cannot hold: %v", err)
		}
	})
}
